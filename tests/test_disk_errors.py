"""A disk that refuses writes (full, over quota, read-only, no permission) ends a command
with one clear line and exit 2, and every earlier file survives intact.

The full disk is the kernel's own: from the chosen save on, the temp files of the model
dir are backed by /dev/full, so the error travels through Python's buffered file and
torch.save exactly as on a real full disk (torch.save reports it as a RuntimeError
whose context is the OSError).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from conftest import TINY

from torchstarter.cli.main import main
from torchstarter.engine.checkpoint import load_checkpoint
from torchstarter.errors import UserError
from torchstarter.experiment.lock import LOCK
from torchstarter.utils import atomic
from torchstarter.utils.atomic import WriteError, write_json

HAS_DEV_FULL = Path("/dev/full").exists() and Path("/proc/self/fd").is_dir()


def run_cli(capsys, *args: object) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_one_error_line(err: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())
            if p.is_file() and p.name != "run.json"}


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".tmp", ".link"))


@pytest.fixture
def finished_run(tmp_path, sample_data, capsys) -> Path:
    model_dir = tmp_path / "exp"
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps({**TINY, "num_epochs": 1}))
    code, err = run_cli(capsys, "train", "--data-dir", sample_data, "--model-dir", model_dir)
    assert code == 0, err
    return model_dir


class FullDisk:
    """From the `from_save`-th write of last.pt on, every temp file in `folder` is /dev/full.

    os.fdopen is where atomic_open turns its temp file's descriptor into a file object;
    swapping the descriptor for /dev/full there gives real ENOSPC on every write.
    """

    def __init__(self, folder: Path, from_save: int):
        self.folder, self.from_save = folder.resolve(), from_save
        self.saves = 0
        self.full = False
        self.before: dict[str, bytes] = {}
        self.backed: set[int] = set()
        self.real_fdopen, self.real_fchmod = os.fdopen, os.fchmod

    def fdopen(self, fd: int, *args, **kwargs):
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if target.parent == self.folder and target.name.startswith(".last.pt."):
            self.saves += 1
            if self.saves == self.from_save:
                self.full = True
                self.before = {name: (self.folder / name).read_bytes()
                               for name in ("last.pt", "best.pt")}
        if self.full and target.parent == self.folder:
            device = os.open("/dev/full", os.O_WRONLY)
            os.dup2(device, fd)
            os.close(device)
            self.backed.add(fd)
        return self.real_fdopen(fd, *args, **kwargs)

    def fchmod(self, fd: int, mode: int) -> None:
        if fd not in self.backed:  # never change the permissions of /dev/full itself
            self.real_fchmod(fd, mode)


@pytest.mark.skipif(not HAS_DEV_FULL, reason="needs Linux /dev/full and /proc/self/fd")
def test_a_full_disk_at_a_checkpoint_save_keeps_the_earlier_checkpoints_and_resumes(
        tmp_path, sample_data, capsys, monkeypatch):
    model_dir = tmp_path / "exp"
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps({**TINY, "num_epochs": 3}))
    disk = FullDisk(model_dir, from_save=2)
    monkeypatch.setattr(os, "fdopen", disk.fdopen)
    monkeypatch.setattr(os, "fchmod", disk.fchmod)

    code, err = run_cli(capsys, "train", "--data-dir", sample_data, "--model-dir", model_dir)

    assert disk.full, "the disk never filled: the test did not test anything"
    assert code == 2, err
    assert_one_error_line(err)
    assert str(model_dir / "last.pt") in err and "no space left on device" in err
    assert "free some space" in err and "--restore last" in err
    for name, data in disk.before.items():  # epoch 1's checkpoints, byte for byte
        assert (model_dir / name).read_bytes() == data, name
    assert load_checkpoint(model_dir / "last.pt")["epoch"] == 1
    assert temp_files(model_dir) == []
    assert not (model_dir / LOCK).exists()

    monkeypatch.undo()  # space freed: the advice in the message works
    code, err = run_cli(capsys, "train", "--data-dir", sample_data, "--model-dir", model_dir,
                        "--restore", "last")
    assert code == 0, err
    assert load_checkpoint(model_dir / "last.pt")["epoch"] == 3


@pytest.mark.parametrize("code, words", [
    (errno.ENOSPC, "no space left on device"), (errno.EDQUOT, "disk quota exceeded"),
    (errno.EACCES, "permission denied"), (errno.EROFS, "read-only file system"),
])
def test_a_refused_write_is_a_one_line_user_error_and_the_old_file_stays(
        tmp_path, monkeypatch, code, words):
    path = tmp_path / "history.json"
    write_json(path, [{"epoch": 1}])
    before = path.read_bytes()

    def refuse(fd: int) -> None:  # e.g. NFS or delayed allocation: the data fails at fsync
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.os, "fsync", refuse)
    with pytest.raises(WriteError) as caught:
        write_json(path, [{"epoch": 1}, {"epoch": 2}])
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot write it: {words}") and "\n" not in message
    assert isinstance(caught.value, UserError) and isinstance(caught.value, OSError)
    assert caught.value.errno == code
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]


def test_other_os_errors_stay_what_they_are(tmp_path, monkeypatch):
    """An I/O error is not the user's to fix by freeing space: it keeps its traceback."""
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(atomic.os, "fsync", broken)
    with pytest.raises(OSError) as caught:
        write_json(tmp_path / "x.json", {})
    assert not isinstance(caught.value, UserError)
    assert list(tmp_path.iterdir()) == []


def test_a_permission_error_reading_another_file_is_not_blamed_on_the_target(tmp_path):
    other = tmp_path / "elsewhere" / "input.txt"

    def read_other(fh) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(other))

    target = tmp_path / "out" / "result.json"
    target.parent.mkdir()
    with pytest.raises(PermissionError) as caught:
        atomic.atomic_write(target, read_other)
    assert not isinstance(caught.value, UserError)


def deny_writes_in(folder: Path, monkeypatch) -> None:
    """What a folder without write permission does, for a test that runs as root."""
    real_open = os.open
    folder = folder.resolve()
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def guarded_open(path, flags, *args, **kwargs):
        if flags & writing and Path(os.fsdecode(path)).resolve().parent == folder:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)


def test_an_unwritable_model_dir_stops_train_before_it_writes_anything(
        finished_run, sample_data, capsys, monkeypatch):
    before = files_of(finished_run)
    deny_writes_in(finished_run, monkeypatch)
    code, err = run_cli(capsys, "train", "--data-dir", sample_data, "--model-dir", finished_run,
                        "--restore", "last", "--set", "num_epochs=2")
    assert code == 2, err
    assert_one_error_line(err)
    assert f"{finished_run / LOCK}: cannot write it: permission denied" in err
    assert f"make {finished_run} writable" in err
    assert files_of(finished_run) == before


def test_an_unwritable_model_dir_stops_evaluate_with_the_first_file_it_writes_named(
        finished_run, sample_data, capsys, monkeypatch):
    """The predictions file comes first (the metrics file names it), so it is the one
    named; nothing is left half-written."""
    before = files_of(finished_run)
    deny_writes_in(finished_run, monkeypatch)
    code, err = run_cli(capsys, "evaluate", "--data-dir", sample_data, "--model-dir",
                        finished_run)
    assert code == 2, err
    assert_one_error_line(err)
    assert (f"{finished_run / 'predictions_test_best.jsonl'}: cannot write it: permission "
            f"denied") in err
    assert files_of(finished_run) == before


def test_a_read_only_model_dir_by_chmod_stops_train_with_one_line(
        finished_run, sample_data, capsys):
    before = files_of(finished_run)
    finished_run.chmod(0o555)
    try:
        probe = finished_run / ".probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("running as root, which ignores folder permissions, so chmod cannot "
                        "make the model dir unwritable; the simulated tests above cover it")
        code, err = run_cli(capsys, "train", "--data-dir", sample_data, "--model-dir",
                            finished_run, "--restore", "last", "--set", "num_epochs=2")
    finally:
        finished_run.chmod(0o755)
    assert code == 2, err
    assert_one_error_line(err)
    assert "cannot write it: permission denied" in err and str(finished_run) in err
    assert files_of(finished_run) == before


def test_a_full_disk_while_building_a_dataset_keeps_the_existing_output(
        tmp_path, capsys, monkeypatch):
    raw, out = tmp_path / "raw", tmp_path / "data"
    assert run_cli(capsys, "sample-data", "--task", "ner", "--output-dir", raw)[0] == 0
    assert run_cli(capsys, "build-dataset", "--task", "ner", "--data-dir", raw,
                   "--output-dir", out)[0] == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    from torchstarter.tasks.ner import build

    real_write_split = build.write_split
    calls = []

    def write_until_full(folder: Path, sentences) -> None:
        calls.append(folder)
        if len(calls) == 2:  # val: train is on disk, then the disk fills
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_split(folder, sentences)

    monkeypatch.setattr(build, "write_split", write_until_full)
    code, err = run_cli(capsys, "build-dataset", "--task", "ner", "--data-dir", raw,
                        "--output-dir", out, "--overwrite", "--seed", "1")
    assert code == 2, err
    assert_one_error_line(err)
    assert f"{out}: cannot write it: no space left on device" in err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "raw"]  # no temp folder


# The rows of docs/errors.md these tests prove: command, a fragment of the message shown
# there, and the tests. test_bad_input checks the table against this.
ROWS = {
    "model-dir-unwritable": ("train", "cannot write it: permission denied", [
        test_an_unwritable_model_dir_stops_train_before_it_writes_anything,
        test_an_unwritable_model_dir_stops_evaluate_with_the_first_file_it_writes_named,
        test_a_read_only_model_dir_by_chmod_stops_train_with_one_line]),
    "disk-full": ("train", "no space left on device", [
        test_a_full_disk_at_a_checkpoint_save_keeps_the_earlier_checkpoints_and_resumes,
        test_a_refused_write_is_a_one_line_user_error_and_the_old_file_stays,
        test_a_full_disk_while_building_a_dataset_keeps_the_existing_output]),
}
