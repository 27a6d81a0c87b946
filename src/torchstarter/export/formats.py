"""The artifact formats: how each is written from an ExportSpec and how it is run back.

onnx          one .onnx file (weights inside), run by onnxruntime or any ONNX runtime
torch-export  one .pt2 file of torch.export, run by `torch.export.load(f).module()`
              with torch alone
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from torchstarter.engine.export_spec import ExportSpec
from torchstarter.errors import UserError

Runner = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, ...]]
ONNX_PACKAGES = "pip install onnx onnxscript onnxruntime (or pip install 'torchstarter[export]')"
ONNX_OPSET = 18


@dataclass(frozen=True)
class Format:
    suffix: str
    write: Callable[[ExportSpec, Path], None]
    load: Callable[[Path], Runner]


def _dynamic_shapes(spec: ExportSpec) -> dict[str, dict[int, torch.export.Dim]]:
    dims: dict[str, torch.export.Dim] = {}
    return {name: {axis: dims.setdefault(label, torch.export.Dim(label))
                   for axis, label in axes.items()} for name, axes in spec.inputs.items()}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress and deprecation notes: ours is one line of result."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        level = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(level)


def _traced(spec: ExportSpec) -> torch.export.ExportedProgram:
    module = spec.module.requires_grad_(False)  # scans cannot be traced for gradients
    try:
        with _quiet(), torch.no_grad():
            return torch.export.export(module, tuple(spec.example.values()),
                                       dynamic_shapes=_dynamic_shapes(spec))
    except Exception as exc:  # noqa: BLE001 - said in one line; the trace is the task's to fix
        raise UserError(f"torch.export could not trace this model ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0][:300]}); the task's export_spec "
                        f"must return a module of plain tensors") from None


def _write_torch_export(spec: ExportSpec, path: Path) -> None:
    program = _traced(spec)
    with _quiet(), open(path, "wb") as fh:
        torch.export.save(program, fh)


def _load_torch_export(path: Path) -> Runner:
    module = torch.export.load(str(path)).module()

    def run(inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return tuple(module(*inputs.values()))
    return run


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError(f"--format onnx needs the {exc.name} package; {ONNX_PACKAGES}"
                        ) from None


def _write_onnx(spec: ExportSpec, path: Path) -> None:
    _need_onnx()
    program = _traced(spec)
    try:
        with _quiet():
            onnx_program = torch.onnx.export(program, input_names=list(spec.inputs),
                                             output_names=list(spec.outputs),
                                             opset_version=ONNX_OPSET, dynamo=True)
            onnx_program.save(str(path), external_data=False)  # one self-contained file
        _name_dimensions(path, spec)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"the ONNX exporter could not convert this model "
                        f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}); "
                        f"try --format torch-export") from None


def _name_dimensions(path: Path, spec: ExportSpec) -> None:
    """The varying dimensions named as the JSON names them ("batch", "length"), not by the
    tracer's symbols ("s2", "s34"), in the inputs, the outputs and every shape between."""
    import onnx

    model = onnx.load(str(path))
    names: dict[str, str] = {}
    for value in model.graph.input:
        for axis, label in spec.inputs.get(value.name, {}).items():
            dim = value.type.tensor_type.shape.dim[axis]
            if dim.dim_param:
                names[dim.dim_param] = label
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]
    onnx.save(model, str(path))


def _load_onnx(path: Path) -> Runner:
    _need_onnx()
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])

    def run(inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        feed = {name: np.ascontiguousarray(t.numpy()) for name, t in inputs.items()}
        return tuple(torch.from_numpy(np.asarray(o)) for o in session.run(None, feed))
    return run


FORMATS = {"onnx": Format(".onnx", _write_onnx, _load_onnx),
           "torch-export": Format(".pt2", _write_torch_export, _load_torch_export)}
