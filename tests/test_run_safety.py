"""A run never fights another run for its folder, and a NaN loss stops it cleanly."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from test_cli_end_to_end import cli
from test_custom_task import BLOBS_TASK

from torchstarter.engine.checkpoint import load_checkpoint
from torchstarter.errors import UserError
from torchstarter.experiment.lock import LOCK, held_by_live_process, run_lock
from torchstarter.utils.locking import lock_holder


def test_a_live_run_holds_the_folder_and_a_stale_lock_is_taken_over(tmp_path):
    # Another process takes the folder's lock as a run would, then sleeps.
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from torchstarter.utils.locking import FileLock
        FileLock({str(tmp_path / LOCK)!r}).acquire()
        print("held", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert held_by_live_process(tmp_path)
        with pytest.raises(UserError, match=f"already training here \\(pid {holder.pid}\\)"), \
                run_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    # The owner was killed and its file is still there: the kernel dropped its lock.
    assert (tmp_path / LOCK).exists() and not held_by_live_process(tmp_path)
    with run_lock(tmp_path):
        assert lock_holder(tmp_path / LOCK) == f"pid {os.getpid()}"
        assert held_by_live_process(tmp_path)
    assert not (tmp_path / LOCK).exists()


NAN_AFTER = BLOBS_TASK.replace(
    "def loss_fn(logits, labels):\n    return F.cross_entropy(logits, labels)",
    "CALLS = [0]\n\ndef loss_fn(logits, labels):\n    CALLS[0] += logits.requires_grad\n"
    "    loss = F.cross_entropy(logits, labels)\n"
    "    return loss * float('nan') if CALLS[0] > 9 else loss")


def test_a_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    assert NAN_AFTER != BLOBS_TASK
    (tmp_path / "blobs.py").write_text(NAN_AFTER)
    (tmp_path / "params.json").write_text(json.dumps({
        "task": "blobs.py", "learning_rate": 0.05, "batch_size": 16, "num_epochs": 3}))
    result = cli("train", "--data-dir", tmp_path, "--model-dir", tmp_path, check=False)
    # 101 examples at batch 16 is 7 steps an epoch; the 10th training loss is step 3 of
    # epoch 2 (validation losses are not counted: they run without gradients)
    assert result.returncode == 2
    assert "loss is nan at epoch 2, step 3" in result.stderr
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert not (tmp_path / LOCK).exists()
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and "loss is nan" in record["error"]


def test_a_run_that_failed_before_its_first_checkpoint_starts_again_without_overwrite(
        tmp_path):
    nan_early = BLOBS_TASK.replace(
        "    return F.cross_entropy(logits, labels)",
        "    return F.cross_entropy(logits, labels) * float('nan')")
    assert nan_early != BLOBS_TASK
    (tmp_path / "blobs.py").write_text(nan_early)
    (tmp_path / "params.json").write_text(json.dumps({
        "task": "blobs.py", "learning_rate": 0.05, "batch_size": 16, "num_epochs": 1}))
    failed = cli("train", "--data-dir", tmp_path, "--model-dir", tmp_path, check=False)
    assert failed.returncode == 2 and "no checkpoint was written" in failed.stderr
    restore = cli("train", "--data-dir", tmp_path, "--model-dir", tmp_path, "--restore",
                  "last", check=False)
    assert restore.returncode == 2 and "train without --restore" in restore.stderr
    (tmp_path / "blobs.py").write_text(BLOBS_TASK)
    cli("train", "--data-dir", tmp_path, "--model-dir", tmp_path)
    archived = list((tmp_path / "previous_runs").iterdir())
    assert len(archived) == 1 and (archived[0] / "train.log").exists()
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "finished"


def test_a_checkpoint_of_another_task_is_refused_by_restore_and_evaluate(tmp_path,
                                                                        sample_data):
    (tmp_path / "blobs.py").write_text(BLOBS_TASK)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "params.json").write_text(json.dumps({
        "task": "../blobs.py", "learning_rate": 0.05, "batch_size": 16, "num_epochs": 1}))
    cli("train", "--data-dir", tmp_path, "--model-dir", blobs)
    signs = tmp_path / "signs"
    signs.mkdir()
    (signs / "params.json").write_text(json.dumps({
        "task": "signs", "learning_rate": 1e-3, "batch_size": 32, "num_epochs": 1,
        "num_channels": 4}))
    foreign = str(blobs / "best.pt")
    restore = cli("train", "--data-dir", sample_data, "--model-dir", signs, "--restore",
                  foreign, check=False)
    assert restore.returncode == 2
    assert "a checkpoint of task '../blobs.py'" in restore.stderr
    evaluate = cli("evaluate", "--data-dir", sample_data, "--model-dir", signs, "--restore",
                   foreign, check=False)
    assert evaluate.returncode == 2 and "task 'signs'" in evaluate.stderr
    split = cli("evaluate", "--data-dir", tmp_path, "--model-dir", blobs, "--split",
                "train/../val", check=False)
    assert split.returncode == 2 and "not a path" in split.stderr
    assert not list(blobs.glob("metrics_train*"))
