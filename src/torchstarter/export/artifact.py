"""`torchstarter export`: write the artifact, run it on a validation split beside the eager
model, and keep it only if the two agree.

Nothing is written under the final names until the check has passed: the artifact and
its JSON are built as temp files beside them and renamed into place at the end, so a
failed export (or a kill) leaves an earlier export as it was.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from torchstarter import __version__
from torchstarter.engine.batching import batch_groups, iterate_groups
from torchstarter.engine.export_spec import ExportSpec
from torchstarter.errors import UserError
from torchstarter.experiment import files
from torchstarter.experiment.evaluation import (
    Trained,
    check_split_name,
    file_sha256,
    load_trained,
)
from torchstarter.experiment.training import load_splits
from torchstarter.export.formats import FORMATS, ONNX_OPSET
from torchstarter.export.parity import compare
from torchstarter.utils.atomic import disk_errors_as_user_errors, new_temp_file, write_json
from torchstarter.utils.folders import take_turns

# Largest |artifact - eager| accepted on the scores (logits, emissions) by default, per
# precision. float32 runtimes differ in summation order only: measured gaps are 1e-7 to
# 1e-5 on scores of magnitude 1-30, so 1e-3 flags a real disagreement, not rounding.
DEFAULT_TOLERANCE = {"float32": 1e-3}


class CheckFailed(UserError):
    """The exported model disagrees with the eager one: not bad input, a failed check."""

    exit_code = 1


def default_output(model_dir: Path, restore: str, fmt: str) -> Path:
    own = files.own_checkpoint(model_dir, restore)
    stem = own or "from_" + "".join(c if c.isalnum() or c in "-_" else "_"
                                    for c in Path(restore).stem)[:40]
    return Path(model_dir) / "export" / f"{stem}{FORMATS[fmt].suffix}"


def metadata_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def export_model(model_dir: Path, data_dir: Path, restore: str = "best", fmt: str = "onnx",
                 output: Path | None = None, tolerance: float | None = None,
                 split: str = "val", overwrite: bool = False) -> tuple[Path, dict[str, Any]]:
    """Write the artifact and its JSON; return the artifact's path and the JSON."""
    tolerance = DEFAULT_TOLERANCE["float32"] if tolerance is None else tolerance
    check_split_name(split)
    if not 0 <= tolerance < math.inf:
        raise UserError(f"--tolerance {tolerance}: must be a number >= 0")
    out = _output(output, fmt) if output is not None else \
        default_output(model_dir, restore, fmt)
    _refuse_existing(out, overwrite)
    trained = load_trained(model_dir, restore, {"device": "cpu"})
    task, params = trained.task, trained.params
    spec = task.export_spec(trained.model, params, trained.data_info)
    data = load_splits(task, params, data_dir, (split,), trained.data_info)[split]
    with disk_errors_as_user_errors(out):
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UserError(f"{out.parent}: a part of this path is a file, not a folder; "
                            f"give --output a path in a folder") from None
        # Two exports to one file take turns; the second then finds the first's file.
        with take_turns(out.parent / f".{out.name[:60]}.lock"):
            _refuse_existing(out, overwrite)
            _remove_stale_temps(out)
            return _write_checked(out, spec, fmt, data, trained, model_dir, restore,
                                  tolerance, split)


def _output(given: Path, fmt: str) -> Path:
    """--output as given, if it names a file of the format (best.onnx, not 'dir/' or '.')."""
    suffix = FORMATS[fmt].suffix
    if given.name in ("", ".", ".."):
        raise UserError(f"--output {str(given)!r}: give a file name, such as model{suffix}")
    if given.suffix.lower() != suffix:
        raise UserError(f"--output {given}: --format {fmt} files end in {suffix}; name it "
                        f"so (e.g. {given.with_suffix(suffix).name})")
    return given


def _remove_stale_temps(out: Path) -> None:
    """Temp files of an export to this name that was killed (the lock is ours now, so no
    export of this name is running)."""
    for stale in out.parent.glob(f".{glob.escape(out.name[:60])}.*.tmp*"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _refuse_existing(out: Path, overwrite: bool) -> None:
    for path in (out, metadata_path(out)):
        if path.is_dir():
            raise UserError(f"{path}: is a folder; give --output a file name")
        if path.exists() and not path.is_file():
            raise UserError(f"{path}: exists and is not a regular file (a device, a pipe, a "
                            f"socket); give --output another name")
        if path.exists() and not overwrite:
            raise UserError(f"{path}: exists; pass --overwrite to replace it (the old "
                            f"export stays until the new one has passed its check)")


def _write_checked(out: Path, spec: ExportSpec, fmt: str, data: Any, trained: Trained,
                   model_dir: Path,
                   restore: str, tolerance: float, split: str
                   ) -> tuple[Path, dict[str, Any]]:
    task, params = trained.task, trained.params
    meta_out = metadata_path(out)
    temps: list[str] = []
    try:
        with disk_errors_as_user_errors(out):
            # the temp name ends as the format's files do: torch.export.load checks it
            fd, artifact = new_temp_file(out.parent, f".{out.name[:60]}.",
                                         ".tmp" + FORMATS[fmt].suffix)
            os.close(fd)
            temps.append(artifact)
            started = time.perf_counter()
            FORMATS[fmt].write(spec, Path(artifact))
            seconds = time.perf_counter() - started
        run = FORMATS[fmt].load(Path(artifact))
        groups = batch_groups(data, torch.arange(len(data)), params.batch_size)
        batches = (inputs for inputs, _ in iterate_groups(data, groups, torch.device("cpu")))
        parity = compare(spec, run, batches)
        parity.update(split=split, tolerance=tolerance, precision="float32",
                      runtime=_runtime(fmt))
        if not parity["max_abs_diff"] <= tolerance:
            raise CheckFailed(
                f"{out}: not written: the {fmt} artifact differs from the eager model on "
                f"{split} by up to {parity['max_abs_diff']:.3g} (tolerance {tolerance:g}; "
                f"{parity['identical_predictions']:.2%} of predictions identical); if your "
                f"task changed the network, its export_spec must follow it; else report it, "
                f"or pass a larger --tolerance if that gap is acceptable to you")
        weights = files.checkpoint_path(model_dir, restore)
        meta = {
            "format": fmt, "file": out.name, "bytes": os.path.getsize(artifact),
            "sha256": file_sha256(Path(artifact)), "task": task.name,
            "weights": {"file": str(weights.resolve()), "sha256": file_sha256(weights),
                        "epoch": trained.epoch},
            "exported_with": {"torchstarter": __version__, "torch": torch.__version__,
                              **({"onnx_opset": ONNX_OPSET} if fmt == "onnx" else {})},
            "export_seconds": round(seconds, 3), "dynamic": spec.inputs,
            "how_to_run": _how_to_run(fmt, list(spec.inputs), list(spec.outputs)),
            **spec.metadata, "parity": parity}
        with disk_errors_as_user_errors(out):
            write_json(Path(artifact + ".json"), meta)
            temps.append(artifact + ".json")
            os.replace(artifact, out)
            os.replace(artifact + ".json", meta_out)
        return out, meta
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


def _runtime(fmt: str) -> str:
    if fmt == "onnx":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"
    return f"torch.export.load, torch {torch.__version__}"


def _how_to_run(fmt: str, inputs: list[str], outputs: list[str]) -> str:
    args = ", ".join(f'"{name}": ...' for name in inputs)
    if fmt == "onnx":
        return (f"onnxruntime.InferenceSession(path).run(None, {{{args}}}) -> "
                f"[{', '.join(outputs)}] (numpy arrays of the dtypes and shapes below)")
    return (f"torch.export.load(path).module()({', '.join(inputs)}) -> "
            f"({', '.join(outputs)}) (tensors of the dtypes and shapes below)")
