"""The CPU thread count follows the load from other processes unless params pin it."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest
import torch

from torchstarter.engine import threads
from torchstarter.engine.threads import ThreadGovernor, busy_seconds, configure_threads


@pytest.fixture(autouse=True)
def keep_torch_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def governor_on(cpus: int, monkeypatch) -> ThreadGovernor:
    monkeypatch.setattr(threads, "_cpus", lambda: set(range(cpus)))
    torch.set_num_threads(cpus)
    return ThreadGovernor(None)


@pytest.mark.parametrize("others, expected", [(0.0, 2), (0.25, 2), (0.75, 1), (1.0, 1),
                                              (1.9, 1), (3.0, 1)])
def test_one_thread_per_core_that_other_processes_leave_free(others, expected, monkeypatch):
    governor = governor_on(2, monkeypatch)
    governor.adjust(others)
    assert torch.get_num_threads() == expected


def test_threads_come_back_when_the_other_process_ends_but_never_above_the_start(
        monkeypatch):
    governor = governor_on(4, monkeypatch)
    torch.set_num_threads(3)  # e.g. OMP_NUM_THREADS=3 at start: the ceiling
    governor = ThreadGovernor(None)
    governor.adjust(2.0)
    assert torch.get_num_threads() == 2
    governor.adjust(0.0)
    assert torch.get_num_threads() == 3


def test_a_count_set_from_outside_becomes_the_new_ceiling(monkeypatch):
    governor = governor_on(4, monkeypatch)
    governor.adjust(3.0)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)  # as a search does when it hands a trial a free slot
    governor.adjust(0.0)
    assert torch.get_num_threads() == 2


def test_a_pinned_count_is_never_changed(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    configure_threads(1)
    governor = ThreadGovernor(1)
    assert governor.sample is None
    governor.next_check = 0
    governor.tick()
    assert torch.get_num_threads() == 1


def test_omp_num_threads_pins_the_count_too(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ThreadGovernor(None).sample is None


def test_more_threads_than_cores_are_capped_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    with caplog.at_level(logging.WARNING, logger="torchstarter"):
        configure_threads(16)
    assert torch.get_num_threads() == 2
    assert "num_threads 16: this process may use 2 cores; using 2" in caplog.text


def test_busy_seconds_counts_the_given_cpus_less_idle_and_iowait(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  9 9 9 9 9 9 9 9 0 0\n"
                    "cpu0 100 1 20 5000 7 3 2 4 0 0\n"
                    "cpu1 50 0 10 6000 1 0 0 0 0 0\n"
                    "cpu2 999 0 0 0 0 0 0 0 0 0\n")
    tick = threads.os.sysconf("SC_CLK_TCK")
    assert busy_seconds({0, 1}, stat) == pytest.approx((130 + 60) / tick)
    assert busy_seconds({0}, tmp_path / "missing") is None


@pytest.mark.skipif(threads.usable_cores() < 2 or busy_seconds({0}) is None,
                    reason="needs two usable cores and /proc/stat")
def test_a_process_spinning_beside_the_run_takes_one_thread_away():
    torch.set_num_threads(2)
    governor = ThreadGovernor(None)
    governor.cpus = set(list(governor.cpus)[:2])
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        governor.sample = governor._sample()  # start measuring once it spins
        time.sleep(1.5)
        governor.next_check = 0
        governor.tick()
        assert torch.get_num_threads() == 1
    finally:
        spinner.kill()
        spinner.wait()
