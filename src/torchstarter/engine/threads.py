"""How many CPU threads torch should use, decided from the cores this process may use and
from what other processes are doing with them.

Torch's OpenMP pool has one thread per core, and each parallel operation waits for all
of them. When another process keeps one of two cores busy, one of our threads is off the
CPU for a whole time slice at a time and every operation waits for it: measured on a
2-core AMD EPYC, an NER batch-5 epoch took 3.2 times as long beside one spinning
process, and two trainings started together each took 4.9 times as long as one alone.
One thread fewer than the busy cores costs little (1.1x for NER alone) and removes that.

So with `num_threads: null` the count follows the load: about once a second (between
two steps, a clock read otherwise) the governor reads the CPU time the machine spent on
this process's cores, subtracts its own, and keeps one thread per core the others leave
free, never more than it started with. A count set in params (or OMP_NUM_THREADS) is
kept as given, only capped at the cores this process may use: results then repeat bit
for bit, since float sums depend on how work is split between threads.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import torch

log = logging.getLogger("torchstarter")

CHECK_EVERY_S = 1.0
# A thread is given up once others use more than 0.7 of a core: a core shared with a
# busy process stalls every parallel operation that waits for the thread on it.
SLACK = 0.3


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    cpus = _cpus()
    cores = len(cpus) if cpus else os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota)) if quota else cores)


def _cgroup_quota() -> float | None:
    """CPUs' worth of time the cgroup grants (cgroup v2 cpu.max), or None when unlimited."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if text[0] == "max" else int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError, ZeroDivisionError):
        return None


def _cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def busy_seconds(cpus: set[int], stat: Path = Path("/proc/stat")) -> float | None:
    """Seconds the given CPUs spent running anything (user, system, interrupts, stolen by
    the hypervisor), from /proc/stat; None where it cannot be read."""
    try:
        text = stat.read_bytes()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    busy = 0
    for line in text.split(b"\n"):
        if line.startswith(b"cpu") and line[3:4].isdigit():
            fields = line.split()
            if int(fields[0][3:]) in cpus:
                values = [int(v) for v in fields[1:9]]
                busy += sum(values) - values[3] - values[4]  # less idle and iowait
    return busy / tick


def configure_threads(pinned: int | None) -> None:
    """Start with the count asked for (or torch's own), never more than the usable cores."""
    cores = usable_cores()
    if pinned is not None and pinned > cores:
        log.warning("num_threads %d: this process may use %d cores; using %d (more threads "
                    "than cores wait on each other, many times slower)", pinned, cores, cores)
    if pinned is not None:
        torch.set_num_threads(min(pinned, cores))
    elif torch.get_num_threads() > cores:
        torch.set_num_threads(cores)


class ThreadGovernor:
    """Keeps torch's thread count at the cores other processes leave free."""

    def __init__(self, pinned: int | None, enabled: bool = True) -> None:
        self.ceiling = torch.get_num_threads()
        self.set_to = self.ceiling
        fixed = pinned is not None or "OMP_NUM_THREADS" in os.environ
        self.cpus = _cpus() if enabled and not fixed else None
        self.sample = self._sample() if self.cpus else None
        self.next_check = time.monotonic() + CHECK_EVERY_S

    def _sample(self) -> tuple[float, float, float] | None:
        busy = busy_seconds(self.cpus) if self.cpus else None
        return None if busy is None else (time.monotonic(), time.process_time(), busy)

    def tick(self) -> None:
        """Called after every step; does real work about once a second."""
        if self.sample is None or time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + CHECK_EVERY_S
        now = self._sample()
        if now is None:
            self.sample = None
            return
        (wall0, own0, busy0), (wall1, own1, busy1) = self.sample, now
        self.sample = now
        if wall1 - wall0 <= 0:
            return
        others = max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)
        self.adjust(others)

    def adjust(self, others: float) -> None:
        """Set the thread count for `others` cores' worth of load from other processes."""
        current = torch.get_num_threads()
        if current != self.set_to:  # changed from outside (a search handing out a slot)
            self.ceiling = current
        wanted = max(1, min(self.ceiling, math.floor(len(self.cpus or ()) - others + SLACK)))
        if wanted != current:
            log.info("threads %d -> %d: other processes keep %.1f of %d cores busy",
                     current, wanted, others, len(self.cpus or ()))
            torch.set_num_threads(wanted)
        self.set_to = wanted
