"""Seeding, derived per-epoch generators, and RNG state for checkpoints.

Data order and augmentation draw from generators derived from (seed, epoch, stream),
so they never depend on how many epochs ran in this process. Everything else that
is random (dropout, weight init) uses the global generators, whose state goes into
each checkpoint.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

ORDER_STREAM = 0
AUGMENT_STREAM = 1
LOADER_STREAM = 2  # DataLoader worker seeds, kept off the global generator
RANK_STREAM = 1000  # + rank: the global generators of DDP processes other than the first


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(seed: int, epoch: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1, np.uint64)[0] >> 1)


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device | str = "cpu"
                    ) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(derived_seed(seed, epoch, stream))
    return gen


def get_rng_state() -> dict[str, Any]:
    """Every global RNG state, as types that torch.load(weights_only=True) accepts."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((
        "MT19937",
        np_state["keys"].numpy().astype(np.uint32),
        np_state["pos"],
        np_state["has_gauss"],
        np_state["cached_gaussian"],
    ))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
