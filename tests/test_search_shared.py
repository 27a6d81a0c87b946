"""A search shared by several worker processes through a real PostgreSQL server and through
the default journal file: a worker killed with SIGKILL mid-trial (with its `train` child,
as when its machine is lost) costs nothing but a retry. Also Optuna's heartbeat finding a
silent trial, and a database that cannot be used refused in one line within seconds."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
from conftest import TINY
from optuna.trial import TrialState
from postgres_server import missing_reason, postgres_server

from torchstarter.errors import UserError
from torchstarter.search.folders import claim_holder
from torchstarter.search.space import Objective, parse_search
from torchstarter.search.study import (
    Heartbeat,
    ask_with_values,
    fail_stale_trials,
    open_storage,
    open_study,
    retry_of,
)

GRID = ["--grid", "learning_rate=1e-4,3e-4,1e-3,3e-3"]
FOLDERS = [f"learning_rate_{v}" for v in ("0.0001", "0.0003", "0.001", "0.003")]
EPOCHS = 4
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def postgres():
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with postgres_server() as server:
        yield server


def start_worker(parent, data, log, *extra):
    command = [sys.executable, "-m", "torchstarter", "search", "--parent-dir", str(parent),
               "--data-dir", str(data), *GRID, *extra]
    return subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env=ENV, start_new_session=True)


def history(folder):
    try:
        return json.loads((folder / "history.json").read_text())
    except (OSError, ValueError):
        return []


def running_trial(parent):
    """A folder whose `train` child has saved an epoch but not finished, and its pid."""
    for name in FOLDERS:
        folder = parent / name
        holder = claim_holder(folder)
        record = folder / "run.json"
        if (holder and 1 <= len(history(folder)) < EPOCHS and record.is_file()
                and json.loads(record.read_text()).get("status") == "running"):
            return folder, int(holder.split()[1])
    return None


def parent_pid(pid):
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("storage", ["postgresql", "journal"])
def test_a_worker_killed_mid_trial_costs_a_retry_and_every_point_runs_once(
        storage, request, tmp_path, sample_data):
    extra = []
    if storage == "postgresql":
        server = request.getfixturevalue("postgres")
        # The folder claim finds the killed worker at once; the heartbeat (proved below)
        # gets a grace period a loaded 2-core machine cannot overrun.
        extra = ["--storage", server.new_database("killed_worker"), "--heartbeat", "5"]
    parent = tmp_path / "shared" / "lr"  # the parent folder every worker sees
    parent.mkdir(parents=True)
    (parent / "params.json").write_text(json.dumps({**TINY, "num_epochs": EPOCHS}))
    logs = [tmp_path / f"worker{i}.log" for i in range(4)]
    workers = [start_worker(parent, sample_data, logs[i], *extra) for i in range(3)]
    try:
        deadline = time.monotonic() + 300
        while (found := running_trial(parent)) is None:
            assert time.monotonic() < deadline, "no trial reached its first epoch"
            time.sleep(0.02)
        victim_folder, child = found
        victim = next(w for w in workers if w.pid == parent_pid(child))
        os.kill(victim.pid, signal.SIGKILL)  # the worker and its child die at once, as
        os.kill(child, signal.SIGKILL)  # when their machine is lost: nothing is saved
        victim.wait()
        killed_at = len(history(victim_folder))
        workers.append(start_worker(parent, sample_data, logs[3], *extra))
        for worker in workers:
            if worker is not victim:
                assert worker.wait(timeout=600) == 0, logs[workers.index(worker)].read_text()
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)

    # Every grid point ran to completion exactly once: each epoch once in its history,
    # one fresh start each (the killed one was continued, not started over).
    for name in FOLDERS:
        folder = parent / name
        assert [row["epoch"] for row in history(folder)] == list(range(1, EPOCHS + 1)), name
        assert (folder / "train.log").read_text().count("==== new run") == 1, name
        assert json.loads((folder / "run.json").read_text())["status"] == "finished", name
    log = (victim_folder / "search_trial.log").read_text()
    assert log.count("==== search trial") == 2 and "--restore last" in log
    assert f"epoch {killed_at + 1}" in (victim_folder / "train.log").read_text()

    # The study: one COMPLETE trial per folder; the lost one FAIL, its retry names it.
    url = extra[1] if extra else None
    store, _ = open_storage(parent, url, heartbeat=None)
    study = optuna.load_study(study_name=parent.name, storage=store).get_trials()
    complete = [t for t in study if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["folder"] for t in complete) == sorted(FOLDERS)
    lost = [t for t in study if t.state != TrialState.COMPLETE]
    assert len(lost) == 1 and lost[0].state == TrialState.FAIL
    assert lost[0].user_attrs["folder"] == victim_folder.name
    retried = next(t for t in complete if t.user_attrs["folder"] == victim_folder.name)
    assert retry_of(retried) == lost[0].number
    said = "".join(path.read_text() for path in logs)
    assert f"(retry of trial {lost[0].number}, whose worker was lost)" in said

    # The results table is complete, and the workers that ended agree on the count.
    rows = (parent / "results.csv").read_text().strip().splitlines()[1:]
    assert len(rows) == len(FOLDERS)
    for i, worker in enumerate(workers):
        if worker is not victim:
            assert "4 trials: 4 finished, 0 failed" in logs[i].read_text()


def _study(url, heartbeat):
    spec = parse_search({"space": {"learning_rate": [1e-3, 1e-2]}}, "search.json")
    storage, where = open_storage(None, url, heartbeat=heartbeat)
    study, _ = open_study(storage, "beat", spec, Objective("accuracy", "max", {}), where,
                          own_storage=False)
    return storage, study


def test_a_trial_silent_past_the_grace_period_is_failed_and_queued_for_its_folder(postgres):
    storage, study = _study(postgres.new_database("heartbeat"), heartbeat=1)
    trial = ask_with_values(study, storage, {"learning_rate": 1e-3}, {})
    trial.set_user_attr("folder", "A")
    Heartbeat(storage, trial).beat()
    time.sleep(2.5)  # grace period: 2 x 1 s
    fail_stale_trials(study)
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and retry_of(waiting[0]) == trial.number
    assert waiting[0].user_attrs["folder"] == "A"

    # Another folder's new trial leaves the queued retry alone; the folder's worker takes it.
    other = ask_with_values(study, storage, {"learning_rate": 1e-2}, {})
    assert other.number not in (trial.number, waiting[0].number)
    assert study.get_trials()[waiting[0].number].state == TrialState.WAITING
    taken = ask_with_values(study, storage, {"learning_rate": 1e-3}, {}, queued=waiting[0])
    assert taken.number == waiting[0].number
    assert study.get_trials()[taken.number].state == TrialState.RUNNING


def test_a_beating_trial_is_not_failed(postgres):
    storage, study = _study(postgres.new_database("alive"), heartbeat=2)
    trial = ask_with_values(study, storage, {"learning_rate": 1e-3}, {})
    beat = Heartbeat(storage, trial)
    for _ in range(12):  # 6 s: past the 4 s grace period, beating every 2 s
        beat.beat()
        time.sleep(0.5)
        fail_stale_trials(study)
    assert study.get_trials()[trial.number].state == TrialState.RUNNING


SILENT = 99999  # stands for silent_port's number in the URLs below


@pytest.fixture
def silent_port():
    """A port that accepts connections and never says a word, like a firewalled host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("url_of, expected", [
    (lambda pg: pg.url(password="wrong"), "password authentication failed"),
    (lambda pg: pg.url("no_such_db"), 'database "no_such_db" does not exist'),
    (lambda pg: f"postgresql://x:y@127.0.0.1:{pg.port + 1 if pg.port < 65535 else 1}/z",
     "Connection refused"),
    (lambda pg: f"postgresql://x:y@127.0.0.1:{SILENT}/z", "timeout"),  # never answers
])
def test_a_database_that_cannot_be_used_is_one_line_within_seconds(postgres, silent_port,
                                                                    url_of, expected):
    url = url_of(postgres).replace(str(SILENT), str(silent_port))
    started = time.monotonic()
    with pytest.raises(UserError) as err:
        open_storage(None, url)
    assert time.monotonic() - started < 15
    message = str(err.value)
    assert "\n" not in message and expected.lower() in message.lower(), message
    assert "y@" not in message and "wrong" not in message  # passwords are masked


def test_joining_a_server_study_of_another_space_is_one_line_exit_2(postgres, tmp_path,
                                                                     sample_data, capsys):
    from torchstarter.cli.main import main

    url = postgres.new_database("spaces")
    _study(url, heartbeat=None)  # study 'beat', begun with learning_rate
    parent = tmp_path / "P"
    parent.mkdir()
    (parent / "params.json").write_text(json.dumps({**TINY, "num_epochs": 1}))
    (parent / "search.json").write_text('{"space": {"dropout_rate": [0.1, 0.2]}}')
    code = main(["search", "--parent-dir", str(parent), "--data-dir", str(sample_data),
                 "--storage", url, "--study-name", "beat"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "the space differs from the one study 'beat' was started with (keys were " \
           "learning_rate, now dropout_rate)" in err
    assert sorted(p.name for p in parent.iterdir()) == ["params.json", "search.json"]


def test_a_trial_declared_lost_while_it_ran_records_its_result_on_the_retry(
        postgres, tmp_path, monkeypatch):
    """The worker was only cut off from the database (no heartbeat for the grace period)
    and still holds the folder: its result goes to the queued retry, not lost."""
    from torchstarter.search import scheduler
    from torchstarter.search.runner import TrialResult
    from torchstarter.search.scheduler import Search, SearchJob

    def silent_run(trial, folder, *args, **kwargs):  # never calls on_poll: no heartbeat
        time.sleep(2.5)
        fail_stale_trials(trial.study)  # another worker's check finds it silent
        return TrialResult("finished", 0.75, seconds=2.5, epochs=1)

    monkeypatch.setattr(scheduler, "run_trial", silent_run)
    parent = tmp_path / "P"
    parent.mkdir()
    (parent / "params.json").write_text(json.dumps({**TINY, "num_epochs": 1}))
    spec = parse_search({"space": {"learning_rate": [1e-3]}}, "search.json")
    said = []
    search = Search(SearchJob(parent=parent, data_dir=tmp_path, spec=spec,
                              objective=Objective("accuracy", "max", {}), base_raw=json.loads(
                                  (parent / "params.json").read_text()), study_name="cut",
                              storage=postgres.new_database("cut_off"), heartbeat=1),
                    say=said.append)
    summary = search.run()
    assert summary.counts["finished"] == 1 and summary.best.value == 0.75, said
    trials = search.study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert retry_of(trials[1]) == trials[0].number
    assert "trial 0 was declared lost while it ran; its result is recorded as trial 1" in said


def test_a_database_restart_in_the_middle_of_a_search_is_waited_out(postgres, tmp_path,
                                                                       sample_data):
    parent = tmp_path / "P"
    parent.mkdir()
    (parent / "params.json").write_text(json.dumps({**TINY, "num_epochs": 3}))
    log = tmp_path / "search.log"
    worker = start_worker(parent, sample_data, log, "--jobs", "2", "--storage",
                          postgres.new_database("restarted"), "--heartbeat", "10")
    try:
        # The search touches the database when a trial ends or the next one is chosen, so
        # the server goes down while a trial is in its last epoch, and stays down (at least
        # 4 s) until the search has run into it. A fixed 4 s pause after the first epoch
        # missed every such moment when a loaded machine (the suite on 2 workers) makes
        # two epochs take longer than that. The wait is short next to the 20 s grace
        # period of --heartbeat 10, so no running trial is declared lost meanwhile.
        deadline = time.monotonic() + 300
        while not any(len(history(parent / name)) >= 2 for name in FOLDERS):
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no trial reached its last epoch"
            time.sleep(0.05)
        postgres.pause()
        paused = time.monotonic()
        try:
            while "the database is not answering while" not in log.read_text():
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() - paused < 120, \
                    "the search did not run into the stopped database\n" + log.read_text()
                time.sleep(0.05)
            time.sleep(max(0.0, 4 - (time.monotonic() - paused)))
        finally:
            postgres.resume()
        assert worker.wait(timeout=600) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    said = log.read_text()
    assert "4 trials: 4 finished, 0 failed" in said, said
    assert "the database is not answering while" in said and "answers again" in said
    for name in FOLDERS:
        assert (parent / name / "train.log").read_text().count("==== new run") == 1
