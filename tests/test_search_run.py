"""`torchstarter search` end to end on the built-in sample data: parallel workers, resumption
after Ctrl-C and after a kill, failed and pruned trials. Trials are tiny (4 channels)."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import optuna
import pytest
from conftest import TINY
from optuna.trial import TrialState

from torchstarter.errors import UserError
from torchstarter.search.folders import (
    CLAIM,
    claim,
    claim_holder,
    ensure_trial_folder,
    read_run,
    release,
    train_resume_args,
)
from torchstarter.search.runner import Children, child_env, run_trial, train_command
from torchstarter.search.scheduler import WAIT, Search, SearchJob, Work
from torchstarter.search.space import Objective, parse_search
from torchstarter.search.study import latest_by_folder, open_storage, open_study, retry_of

ENV = dict(os.environ, OMP_NUM_THREADS="1")
GRID = ["--grid", "learning_rate=1e-4,1e-3,1e-2"]
FOLDERS = ["learning_rate_0.0001", "learning_rate_0.001", "learning_rate_0.01"]


def make_parent(tmp_path, search=None, **params):
    parent = tmp_path / "P"
    parent.mkdir()
    (parent / "params.json").write_text(json.dumps({**TINY, "num_epochs": 1, **params}))
    if search is not None:
        (parent / "search.json").write_text(json.dumps(search))
    return parent


def command(parent, data, *extra):
    return [sys.executable, "-m", "torchstarter", "search", "--parent-dir", str(parent),
            "--data-dir", str(data), *extra]


def search(parent, data, *extra):
    return subprocess.run(command(parent, data, *extra), capture_output=True, text=True,
                          env=ENV, timeout=600)


def start(parent, data, *extra):
    return subprocess.Popen(command(parent, data, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=ENV)


def wait_for(condition, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def trials(parent):
    storage, _ = open_storage(parent, None)
    return optuna.load_study(study_name=parent.name, storage=storage).get_trials()


def launch_lines(folder):
    """The command line of each `train` a search started in this folder."""
    text = (folder / "search_trial.log").read_text()
    return [line for line in text.splitlines() if line.startswith("==== search trial")]


def launches(folder):
    return len(launch_lines(folder))


def fresh_runs(folder):
    return (folder / "train.log").read_text().count("==== new run")


def epochs_done(folder):
    try:
        return len(json.loads((folder / "history.json").read_text()))
    except (OSError, ValueError):
        return 0


def test_two_searches_of_two_jobs_each_run_every_grid_point_once(tmp_path, sample_data):
    parent = make_parent(tmp_path, {"space": {"learning_rate": [1e-4, 1e-3, 1e-2]}})
    procs = [start(parent, sample_data, "--jobs", "2") for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
        assert "3 trials: 3 finished, 0 failed" in out
        assert "best: learning_rate_" in out
    for name in FOLDERS:
        assert launches(parent / name) == 1 and fresh_runs(parent / name) == 1, name
        saved = json.loads((parent / name / "params.json").read_text())
        assert saved == {**TINY, "num_epochs": 1, "learning_rate": float(name.split("_")[-1])}
    study = trials(parent)
    assert len(study) == 3 and all(t.state == TrialState.COMPLETE for t in study)
    assert sorted(t.user_attrs["folder"] for t in study) == sorted(FOLDERS)
    assert all(t.intermediate_values for t in study)  # per-epoch val metric reported


def test_ctrl_c_stops_the_search_and_a_rerun_continues_only_what_did_not_finish(
        tmp_path, sample_data):
    parent = make_parent(tmp_path, num_epochs=3)
    first, second = parent / FOLDERS[0], parent / FOLDERS[1]
    proc = start(parent, sample_data, *GRID)
    wait_for(lambda: epochs_done(second) >= 1)  # first trial done, second one mid-run
    finished = ((first / "last.pt").stat().st_mtime_ns, (first / "history.json").read_text())
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, out
    assert "interrupted: learning_rate_0.001" in out and "rerun the same command" in out
    assert not (parent / FOLDERS[2]).exists()  # nothing new started after Ctrl-C

    rerun = search(parent, sample_data, *GRID)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "3 trials: 3 finished, 0 failed" in rerun.stdout
    assert "continued: learning_rate_0.001" in rerun.stdout
    assert ((first / "last.pt").stat().st_mtime_ns,
            (first / "history.json").read_text()) == finished
    assert launches(first) == 1
    assert launches(second) == 2 and "--restore last" in launch_lines(second)[1]
    assert "resumed from last" in (second / "train.log").read_text()
    assert epochs_done(second) == 3
    latest = latest_by_folder(trials(parent))
    assert {n: t.state for n, t in latest.items()} == dict.fromkeys(FOLDERS, TrialState.COMPLETE)
    assert sum(t.state == TrialState.COMPLETE for t in trials(parent)) == 3


def test_a_killed_search_is_rerun_without_training_anything_twice(tmp_path, sample_data):
    """The killed search's trial is recorded as lost, and its retry takes the result its
    orphaned child wrote, without training again."""
    parent = make_parent(tmp_path, num_epochs=2)
    second = parent / FOLDERS[1]
    proc = start(parent, sample_data, *GRID)
    wait_for(lambda: (second / "train.log").exists())  # its child is training
    proc.kill()  # SIGKILL: no cleanup; the child lives on and keeps the folder claimed
    proc.communicate()

    rerun = search(parent, sample_data, *GRID)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "3 trials: 3 finished, 0 failed" in rerun.stdout
    assert "learning_rate_0.001 had already finished" in rerun.stdout
    for name in FOLDERS:
        assert launches(parent / name) == 1 and fresh_runs(parent / name) == 1, name
    study = trials(parent)
    lost = [t for t in study if t.state != TrialState.COMPLETE]
    assert len(study) == 4 and len(lost) == 1 and lost[0].state == TrialState.FAIL
    retry = [t for t in study if retry_of(t) is not None]
    assert len(retry) == 1 and retry_of(retry[0]) == lost[0].number
    assert retry[0].state == TrialState.COMPLETE
    assert retry[0].user_attrs["folder"] == lost[0].user_attrs["folder"] == FOLDERS[1]


def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path, sample_data):
    parent = make_parent(tmp_path)
    grid = ["--grid", "learning_rate=1e30,1e-3"]  # 1e30 makes the loss NaN at once
    result = search(parent, sample_data, *grid, "--jobs", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 trials: 1 finished, 1 failed" in result.stdout
    assert "failed: learning_rate_1e30: loss is nan" in result.stdout  # "error:" said once
    assert "best: learning_rate_0.001" in result.stdout
    failed = latest_by_folder(trials(parent))["learning_rate_1e30"]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["error"].startswith("loss is nan")

    again = search(parent, sample_data, *grid)
    assert again.returncode == 1 and "1 failed" in again.stdout
    assert launches(parent / "learning_rate_1e30") == 1  # a failed trial is not repeated...
    retried = search(parent, sample_data, *grid, "--retry-failed")
    assert retried.returncode == 1
    assert launches(parent / "learning_rate_1e30") == 2  # ...unless asked
    assert launches(parent / "learning_rate_0.001") == 1


def test_random_search_samples_n_trials_from_distributions_and_stops_there(tmp_path,
                                                                          sample_data):
    space = {"learning_rate": {"type": "loguniform", "low": 1e-3, "high": 1e-2},
             "dropout_rate": [0.3, 0.5]}
    parent = make_parent(tmp_path, {"method": "random", "n_trials": 2, "seed": 3,
                                    "space": space})
    result = search(parent, sample_data, "--jobs", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 trials: 2 finished, 0 failed" in result.stdout
    folders = sorted(p for p in parent.iterdir() if p.is_dir())
    assert len(folders) == 2
    for folder in folders:
        assert re.fullmatch(r"learning_rate_0\.00\d+-dropout_rate_0\.[35]", folder.name)
        params = json.loads((folder / "params.json").read_text())
        assert 1e-3 <= params["learning_rate"] <= 1e-2
        assert folder.name == (f"learning_rate_{params['learning_rate']!r}-"
                               f"dropout_rate_{params['dropout_rate']}")
    again = search(parent, sample_data, "--jobs", "2")
    assert again.returncode == 0 and "2 trials: 2 finished" in again.stdout
    assert sorted(p for p in parent.iterdir() if p.is_dir()) == folders
    assert all(launches(f) == 1 for f in folders)


def test_a_grid_given_other_values_trains_only_the_new_points(tmp_path, sample_data):
    parent = make_parent(tmp_path)
    first = search(parent, sample_data, "--grid", "learning_rate=1e-4")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "1 trial: 1 finished, 0 failed" in first.stdout  # singular
    kept = (parent / FOLDERS[0] / "history.json").read_text()

    rerun = search(parent, sample_data, "--grid", "learning_rate=1e-4,1e-2")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "2 trials: 2 finished, 0 failed" in rerun.stdout
    assert re.search(r'best: learning_rate_0\.0\S*  accuracy \S+  \{"learning_rate": ',
                     rerun.stdout)
    assert launches(parent / FOLDERS[0]) == 1  # reused, never retrained
    assert (parent / FOLDERS[0] / "history.json").read_text() == kept
    assert launches(parent / FOLDERS[2]) == 1
    study = trials(parent)
    assert [t.state for t in study] == [TrialState.COMPLETE] * 2
    assert [t.user_attrs["values"] for t in study] == [{"learning_rate": 1e-4},
                                                      {"learning_rate": 1e-2}]


def test_a_changed_random_space_exits_2_with_one_line_and_runs_nothing(tmp_path, sample_data):
    parent = make_parent(tmp_path, {"method": "random", "n_trials": 2,
                                    "space": {"dropout_rate": [0.3, 0.5, 0.7]}})
    storage, where = open_storage(parent, None)
    before = parse_search({"method": "random", "n_trials": 1,
                           "space": {"dropout_rate": [0.3, 0.5]}}, "search.json")
    study, _ = open_study(storage, parent.name, before, Objective("accuracy", "max", {}), where)
    study.tell(study.ask(), 0.5)  # an earlier trial of the old space
    result = search(parent, sample_data)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1
    assert ("'dropout_rate' was [0.3, 0.5], now [0.3, 0.5, 0.7]); restore it, or search in a "
            "new parent folder") in result.stderr
    assert sorted(p.name for p in parent.iterdir()) == ["params.json", "search.journal",
                                                        "search.json"]
    assert len(trials(parent)) == 1


def test_median_pruner_stops_a_trial_that_trails_the_others(tmp_path, sample_data):
    parent = make_parent(tmp_path, {"space": {"learning_rate": [1e-2, 1e-9]},
                                    "pruner": {"type": "median", "n_startup_trials": 1}},
                         num_epochs=6)
    result = search(parent, sample_data)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 trials: 1 finished, 1 pruned, 0 failed" in result.stdout
    slow = parent / "learning_rate_1e-09"
    assert latest_by_folder(trials(parent))[slow.name].state == TrialState.PRUNED
    assert epochs_done(slow) < 6
    record = json.loads((slow / "run.json").read_text())
    assert record["status"] == "pruned" and "pruned by the search" in record["error"]
    row = next(line for line in (parent / "results.md").read_text().splitlines()
               if "learning_rate_1e-09" in line)
    assert "pruned" in row


# ---- the pieces, without training --------------------------------------------------------

def test_a_trial_folder_appears_with_its_params_and_is_never_reused_for_others(tmp_path):
    params = {**TINY, "learning_rate": 0.01}
    folder = ensure_trial_folder(tmp_path, "learning_rate_0.01", params)
    assert json.loads((folder / "params.json").read_text()) == params
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    assert ensure_trial_folder(tmp_path, "learning_rate_0.01", params) == folder
    with pytest.raises(UserError, match=r"differs from the base params .*keys num_epochs"):
        ensure_trial_folder(tmp_path, "learning_rate_0.01", {**params, "num_epochs": 3})


def test_a_claimed_folder_cannot_be_claimed_again_until_released(tmp_path):
    lock = claim(tmp_path)
    assert lock is not None and claim(tmp_path) is None
    release(lock)
    again = claim(tmp_path)
    assert again is not None
    release(again)


def test_a_child_is_an_argument_list_that_continues_what_the_folder_holds(tmp_path):
    folder = tmp_path / "a folder; rm -rf x"
    folder.mkdir()
    cmd = train_command(folder, tmp_path / "data")
    assert cmd[:4] == [sys.executable, "-m", "torchstarter.cli.search_trial", "train"]
    assert str(folder) in cmd and cmd[-2:] == ["--set", "num_threads=null"]
    assert child_env(3, None)["OMP_NUM_THREADS"] == "3"
    assert child_env(1, "2")["CUDA_VISIBLE_DEVICES"] == "2"
    assert read_run(folder, "accuracy").state == "new" and train_resume_args(folder) == []
    (folder / "train.log").write_text("killed before its first checkpoint\n")
    assert read_run(folder, "accuracy").state == "unfinished"
    assert train_resume_args(folder) == ["--overwrite"]
    (folder / "last.pt").write_bytes(b"")
    assert train_resume_args(folder) == ["--restore", "last"]
    (folder / "run.json").write_text(json.dumps({"status": "finished"}))
    (folder / "metrics_val_best_weights.json").write_text(json.dumps({"accuracy": 0.5}))
    assert read_run(folder, "accuracy").value == 0.5


def test_a_running_trial_gets_the_threads_of_a_freed_slot(tmp_path, sample_data):
    folder = tmp_path / "trial"
    folder.mkdir()
    (folder / "params.json").write_text(json.dumps({**TINY, "num_epochs": 3}))
    trial = optuna.create_study(direction="maximize").ask()
    children = Children()
    lock = claim(folder)
    result = {}
    runner = threading.Thread(target=lambda: result.update(r=run_trial(
        trial, folder, sample_data, "accuracy", 1, None, lock, children, prune=False,
        poll_seconds=0.1)))
    runner.start()
    wait_for(lambda: len(children) == 1)
    assert children.share_out(budget=2) == [(folder, 2)]  # may land before torch is loaded
    runner.join(timeout=300)
    release(lock)
    assert result["r"].state == "finished" and trial.number == 0
    log = (folder / "search_trial.log").read_text()
    assert "search: a slot is free; now 2 threads" in log
    assert children.share_out(budget=2) == []  # nothing is running any more


def searcher(parent, data, spec, **job):
    objective = Objective("accuracy", "max", {})
    base = json.loads((parent / "params.json").read_text())
    said = []
    search_ = Search(SearchJob(parent=parent, data_dir=data, spec=spec, objective=objective,
                               base_raw=base, study_name=parent.name, **job), say=said.append)
    return search_, said


def test_a_seeded_search_rerun_with_more_trials_draws_new_values(tmp_path):
    parent = make_parent(tmp_path)
    raw = {"method": "random", "seed": 3, "space": {
        "learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}}
    first, _ = searcher(parent, tmp_path, parse_search({**raw, "n_trials": 1}, "search.json"))
    work = first.next_work()
    first.study.tell(work.trial, 0.5)  # as if trained
    release(work.claim)

    rerun, _ = searcher(parent, tmp_path, parse_search({**raw, "n_trials": 2}, "search.json"))
    again = rerun.next_work()
    assert isinstance(again, Work), again  # not WAIT: the earlier value is not drawn again
    assert again.name != work.name
    release(again.claim)
    assert not [t for t in trials(parent) if "duplicate_of" in t.user_attrs]


def test_a_folder_held_by_another_process_is_waited_for_and_said_once(tmp_path):
    parent = make_parent(tmp_path)
    folder = ensure_trial_folder(parent, FOLDERS[1], {**TINY, "num_epochs": 1,
                                                      "learning_rate": 1e-3})
    held = claim(folder)  # this test's own claim: to the search, like another process
    assert claim_holder(folder) == f"pid {os.getpid()}"
    spec = parse_search({"space": {"learning_rate": [1e-3]}}, "search.json")
    search_, said = searcher(parent, tmp_path, spec)
    assert search_.next_work() == WAIT and search_.next_work() == WAIT
    assert said == [f"waiting for {FOLDERS[1]} (held by pid {os.getpid()})"]
    release(held)
    (folder / CLAIM).write_text("otherhost 42\n")
    assert claim_holder(folder) == "pid 42 on otherhost"


def test_a_base_that_writes_out_a_default_still_matches_its_trial_folders(tmp_path):
    params = {**TINY, "learning_rate": 0.01}
    folder = ensure_trial_folder(tmp_path, "learning_rate_0.01", params)
    assert ensure_trial_folder(tmp_path, "learning_rate_0.01", {**params, "seed": 230}) == folder
    with pytest.raises(UserError, match=r"differs from the base params .*\(keys seed\)"):
        ensure_trial_folder(tmp_path, "learning_rate_0.01", {**params, "seed": 1})


def test_set_overrides_the_base_of_every_trial_and_a_searched_key_is_refused(tmp_path,
                                                                           sample_data):
    parent = make_parent(tmp_path, num_epochs=3)
    result = search(parent, sample_data, "--grid", "learning_rate=1e-3,1e-2",
                    "--set", "num_epochs=1", "dropout_rate=0.3")
    assert result.returncode == 0, result.stdout + result.stderr
    for folder in (FOLDERS[1], FOLDERS[2]):
        params = json.loads((parent / folder / "params.json").read_text())
        assert (params["num_epochs"], params["dropout_rate"]) == (1, 0.3)
        assert len(json.loads((parent / folder / "history.json").read_text())) == 1
    assert json.loads((parent / "params.json").read_text())["num_epochs"] == 3  # untouched

    searched = search(parent, sample_data, "--grid", "learning_rate=1e-3",
                      "--set", "learning_rate=0.5")
    assert searched.returncode == 2 and searched.stderr.count("\n") == 1
    assert "--set learning_rate: the search sets this key" in searched.stderr
    bad = search(parent, sample_data, "--grid", "learning_rate=1e-3", "--set", "num_epochs=0")
    assert bad.returncode == 2 and "(with --set)" in bad.stderr, bad.stderr
    forgotten = search(parent, sample_data, "--grid", "learning_rate=1e-3,1e-2")
    assert forgotten.returncode == 2, forgotten.stdout  # other base: trials are not mixed
    assert "differs from the base params" in forgotten.stderr
    assert "pass the same --set values as before" in forgotten.stderr


def test_two_processes_drawing_at_the_same_moment_never_exceed_n_trials(tmp_path):
    """The second draw starts while the first is between counting and claiming."""
    parent = make_parent(tmp_path)
    spec = parse_search({"method": "random", "n_trials": 1, "space": {
        "learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}}, "search.json")
    first, _ = searcher(parent, tmp_path, spec)
    second, _ = searcher(parent, tmp_path, spec)
    got = {}
    ask = first.study.ask

    def ask_while_the_other_draws(*args, **kwargs):
        other = threading.Thread(target=lambda: got.setdefault("second", second.next_work()))
        other.start()
        other.join(timeout=1.0)  # without the sampling lock it finishes its own draw here
        return ask(*args, **kwargs)

    first.study.ask = ask_while_the_other_draws
    work = first.next_work()
    wait_for(lambda: "second" in got, timeout=30)
    assert isinstance(work, Work)
    assert got["second"] == WAIT, "a second trial beyond n_trials=1, or done too early"
    folders = [p.name for p in parent.iterdir() if p.is_dir()]
    assert folders == [work.name]
    release(work.claim)


def test_set_cannot_change_the_metric_a_search_file_chose(tmp_path, sample_data):
    parent = make_parent(tmp_path, {"space": {"learning_rate": [1e-3, 1e-2]}, "metric": "loss"})
    result = search(parent, sample_data, "--set", "metric_mode=max")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--set metric_mode: the search sets this key" in result.stderr
    assert sorted(p.name for p in parent.iterdir()) == ["params.json", "search.json"]
