"""How a batch goes through the model: precision, memory format, and the training module.

Each setting is resolved once from params into a plain object the loop uses the same
way every step (an autocast that may be disabled, a scaler that may be disabled), so
the step itself has no branch on precision.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from torchstarter.config import Params
from torchstarter.engine.distributed import Distributed

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_for(device: torch.device, precision: str) -> Callable[[], AbstractContextManager]:
    """A factory of the autocast context for `precision`; fp32 gives one that does nothing
    (a null context: entering a disabled torch.autocast costs 2-3 us a step for nothing)."""
    dtype = AMP_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext
    return functools.partial(torch.autocast, device.type, dtype=dtype)


def loss_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none,
    so every other precision gets a disabled scaler, whose calls pass straight through."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def prepare(inputs: Any, channels_last: bool) -> Any:
    """Images in the memory format the model's weights are in."""
    if channels_last and isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def place_model(model: torch.nn.Module, params: Params, device: torch.device
                ) -> torch.nn.Module:
    """The model on `device`, in channels_last when params ask for it."""
    model = model.to(device)
    if params.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def training_module(model: torch.nn.Module, params: Params, device: torch.device,
                    dist: Distributed) -> torch.nn.Module:
    """The module the train step calls: DDP-wrapped across processes, maybe compiled.
    It shares its weights with `model`, which is what is saved and evaluated."""
    if dist.enabled:
        if device.type == "cuda":  # one batch statistic over all processes
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # No device_ids: batches are already on this process's device, and with them
        # DDP would copy every input tensor there, host-side lengths included.
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=None)
    if params.compile != "none":
        model = torch.compile(model, mode=None if params.compile == "default"
                              else params.compile)
    return model
