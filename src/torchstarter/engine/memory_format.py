"""channels_last or not, decided on the machine that trains.

The channels-last layout made SIGNS training 1.45x faster on an AMD EPYC (Zen 4) and
5-10% slower on an Intel Xeon with AMX, both with torch's CPU build: no fixed default
is right on both. With `channels_last: null` the first run of a model on a CPU times a
few training steps of the real batch in both layouts, alternating them, keeps the faster
and caches the answer per CPU model, torch version, thread count, model and batch shape,
so later runs (and a resumed run) take the same layout without timing anything.
GPUs keep channels-last, which their tensor cores prefer.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.forward import autocast_for, prepare
from torchstarter.engine.task import DataInfo, Task
from torchstarter.errors import UserError
from torchstarter.utils.atomic import write_json

CACHE_ENV = "TORCHSTARTER_CACHE_DIR"
CACHE_FILE = "memory_format.json"
WARMUP_STEPS, ROUNDS = 2, 5


def cache_dir() -> Path:
    """$TORCHSTARTER_CACHE_DIR, else $XDG_CACHE_HOME/torchstarter, else ~/.cache/torchstarter."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "torchstarter"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def choose_channels_last(task: Task, params: Params, device: torch.device,
                         data_info: DataInfo | None, batch: tuple[Any, Any]) -> tuple[bool, str]:
    """(use channels_last, why): the params' choice, or a timed and cached one."""
    if params.channels_last is not None:
        return params.channels_last, "set in params"
    inputs, labels = batch
    if not (isinstance(inputs, torch.Tensor) and inputs.dim() == 4):
        return False, "inputs are not 4-d image batches"
    if device.type != "cpu":
        return True, f"on {device.type.upper()}"
    with torch.random.fork_rng(devices=[]):  # the run's own model is built after this
        model = task.build_model(params, data_info).to(device)
    key = _key(model, inputs, params)
    cache = _read(cache_dir() / CACHE_FILE)
    if isinstance(cache.get(key), dict) and isinstance(cache[key].get("channels_last"), bool):
        return cache[key]["channels_last"], f"timed earlier on this CPU, {cache_dir()}"
    plain, last = _time_both(task, params, device, model, inputs, labels)
    choice = last < plain
    cache[key] = {"channels_last": choice, "seconds_per_step": {"contiguous": plain,
                                                                "channels_last": last}}
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        write_json(cache_dir() / CACHE_FILE, cache)
    except (OSError, UserError):  # e.g. a read-only home or a folder in the file's place
        pass  # the cache is optional: the next run times it again
    return choice, (f"timed on this CPU: {plain * 1e3:.1f} ms a step contiguous, "
                    f"{last * 1e3:.1f} ms channels_last")


def _key(model: torch.nn.Module, inputs: torch.Tensor, params: Params) -> str:
    shapes = ",".join(f"{tuple(p.shape)}" for p in model.parameters())
    arch = hashlib.sha256(f"{type(model).__qualname__}:{shapes}".encode()).hexdigest()[:12]
    return (f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
            f"{params.precision} | {type(model).__name__} {arch} | input "
            f"{tuple(inputs.shape)} {inputs.dtype}")


def _read(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _time_both(task: Task, params: Params, device: torch.device, model: torch.nn.Module,
               inputs: torch.Tensor, labels: Any) -> tuple[float, float]:
    """Median seconds of a forward and backward step, contiguous and channels_last, on
    copies of a fresh model, with the RNG left as it was (dropout draws from it)."""
    models = {False: model, True: copy.deepcopy(model).to(memory_format=torch.channels_last)}
    autocast = autocast_for(device, params.precision)
    times: dict[bool, list[float]] = {False: [], True: []}
    with torch.random.fork_rng(devices=[]):
        for round_ in range(WARMUP_STEPS + ROUNDS):
            for layout in (False, True) if round_ % 2 == 0 else (True, False):
                start = time.perf_counter()
                with autocast():
                    outputs = models[layout](prepare(inputs, layout))
                loss = task.loss(outputs, labels).value
                loss.backward()
                models[layout].zero_grad(set_to_none=True)
                if round_ >= WARMUP_STEPS:
                    times[layout].append(time.perf_counter() - start)
    return statistics.median(times[False]), statistics.median(times[True])
