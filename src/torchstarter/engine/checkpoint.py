"""Atomic checkpoint files, loaded safely (weights_only) onto any device."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from torchstarter.errors import UserError
from torchstarter.utils.atomic import atomic_write

FORMAT = "torchstarter-checkpoint-1"


def save_checkpoint(state: dict[str, Any], path: Path, also: tuple[Path, ...] = ()) -> None:
    """Write the checkpoint to a temp file, fsync it, then rename it over `path`.

    Paths in `also` (e.g. best beside last) get the same file before `path` does.
    """
    atomic_write(Path(path), lambda fh: torch.save({"format": FORMAT, **state}, fh), also)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without running pickled code; every failure is one clear UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; train first, or pick another "
                        f"--restore (last, best or a file path)")
    damage = archive_damage(path)
    if damage is not None:
        raise UserError(f"{path}: not a readable checkpoint ({damage}); it may be truncated, "
                        f"damaged or from another program: restore from another file "
                        f"(--restore best or last)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        code = _UNSAFE_GLOBAL.search(str(exc))
        what = f"code ({code.group(1)})" if code else "more than plain weights"
        raise UserError(f"{path}: refused to load: the file holds {what}; only load "
                        f"checkpoints you trust with torch.load yourself") from None
    except Exception as exc:  # torch.load reports a malformed file in many ways, all the same to us
        raise UserError(f"{path}: not a readable checkpoint ({_first_line(exc)}); restore "
                        f"from another file") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not a torchstarter checkpoint; pass a file written by "
                        f"torchstarter train")
    damaged = _missing_parts(state)
    if damaged:
        raise UserError(f"{path}: a damaged torchstarter checkpoint ({damaged}); restore "
                        f"from another file (--restore best or last)")
    return state


def _missing_parts(state: dict[str, Any]) -> str | None:
    """What a checkpoint lacks that every reader needs, or None when it is whole."""
    if not isinstance(state.get("params"), dict) or \
            not isinstance(state["params"].get("task"), str):
        return "no params with a task"
    model = state.get("model")
    if not isinstance(model, dict) or \
            not all(isinstance(v, torch.Tensor) for v in model.values()):
        return "no model weights"
    if not isinstance(state.get("epoch"), int) or isinstance(state["epoch"], bool):
        return "no epoch number"
    return None


_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # how torch names the callable it refused


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return text.splitlines()[0].split(". ")[0][:160]


def archive_damage(path: Path) -> str | None:
    """Why `path` is not a complete, intact zip archive (torch's format), or None.

    torch.load does not verify the checksums the archive carries, so a flipped bit in
    the weights would load silently; a truncated file fails with an internal message.
    """
    if path.stat().st_size == 0:
        return "the file is empty"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile:
        return "not a complete zip archive"
    except Exception as exc:  # a damaged header can fail in zlib, struct or zipfile itself
        return f"damaged archive: {_first_line(exc)}"
    if bad is not None:
        return f"entry {bad!r} fails its checksum"  # repr: a damaged name may hold a newline
    return None


def check_compatible(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse to half-load: list missing, unexpected and mis-shaped keys in one message."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            parts.append(f"{label}: {', '.join(items[:5])}{more}")
    raise UserError(f"{path}: checkpoint does not fit this model ({'; '.join(parts)}); "
                    f"restore it with the params (task, architecture) it was trained with")
