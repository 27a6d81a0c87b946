"""`torchstarter export`: a checkpoint as an ONNX or torch.export file, checked against the
eager model on a validation split (see export/artifact.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from torchstarter.cli.flags import flag, restore_flag


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write the model as an ONNX or torch.export file, checked",
        description="Export a checkpoint as a file that runs without torchstarter (ONNX, "
                    "or torch.export's .pt2), beside a JSON of what a caller needs (inputs, "
                    "preprocessing, labels, vocabulary). The file is run on the validation "
                    "split and compared with the eager model before it is kept.")
    flag(p, "model_dir", required=True, type=Path, help="experiment folder that was trained")
    flag(p, "data_dir", required=True, type=Path,
         help="folder built by build-dataset: its --split is the parity check's data")
    flag(p, "format", default="onnx", choices=["onnx", "torch-export"],
         help="onnx (default; run by onnxruntime) or torch-export (a .pt2 file for "
              "torch.export.load)")
    restore_flag(p, "best", "checkpoint to export: best (default), last, or a file path")
    flag(p, "output", type=Path, default=None,
         help="artifact file (default: <model-dir>/export/<restore>.onnx or .pt2); the JSON "
              "goes beside it as <file>.json")
    flag(p, "tolerance", type=float, default=None,
         help="largest accepted |artifact - eager| on the scores (default 1e-3 for float32)")
    flag(p, "split", default="val", help="split of the parity check (default: val)")
    flag(p, "overwrite", action="store_true",
         help="replace an earlier export (only once the new one has passed its check)")


def run(args: argparse.Namespace) -> int:
    from torchstarter.export.artifact import export_model, metadata_path

    out, meta = export_model(args.model_dir, args.data_dir, args.restore, args.format,
                             args.output, args.tolerance, args.split, args.overwrite)
    check = meta["parity"]
    print(f"parity on {check['split']} ({check['examples']} examples, {check['runtime']}): "
          f"max |artifact - eager| {check['max_abs_diff']:.3g} (tolerance "
          f"{check['tolerance']:g}), identical predictions {check['identical_predictions']:.2%}"
          f" of {check['predictions_compared']}")
    print(f"wrote {out} ({meta['bytes'] / 1e6:.2f} MB, exported in {meta['export_seconds']:.1f}"
          f" s) and {metadata_path(out)}")
    return 0
