"""evaluate's per-example file and the confidence intervals of its metrics.

predictions_<split>_<restore>.jsonl: a header line, then one line per example (its id,
true and predicted label, probabilities, loss, and its parts of each metric). The header
holds a hash of the split (ids and true labels, in order), so that two runs are compared
only on the same examples, the hash of the weights, so that predictions of weights since
replaced are never taken for the current ones, and a hash of the rows as written, so that
a file edited by hand or cut short is refused. JSON is written ASCII-only: an id that is
an undecodable file name or holds a line separator stays on its line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from torchstarter.engine.examples import F1, RATIO, Examples
from torchstarter.utils import stats
from torchstarter.utils.atomic import atomic_open

FORMAT = "torchstarter predictions 1"
STATISTICS = {RATIO: stats.ratio, F1: stats.f1}
PART_SIZES = {RATIO: 2, F1: 3}


def split_hash(examples: Examples) -> str:
    """What the split is: its examples' ids and true labels, in order."""
    listed = json.dumps([[row["id"], row["true"]] for row in examples.rows],
                        separators=(",", ":"))  # ASCII: any id, even undecodable
    return hashlib.sha256(listed.encode()).hexdigest()


def intervals(examples: Examples, seed: int, resamples: int = stats.RESAMPLES
              ) -> dict[str, dict[str, Any]]:
    """A 95% percentile-bootstrap interval of each metric, resampling examples."""
    out: dict[str, dict[str, Any]] = {}
    if not examples.rows:
        return out
    for i, (metric, (parts, kind)) in enumerate(sorted(examples.parts.items())):
        interval = stats.bootstrap_interval(parts, STATISTICS[kind], resamples,
                                            seed=seed + i)
        out[metric] = {**interval.describe(), "over": examples.unit + "s"}
    return out


def write_predictions(path: Path, examples: Examples, header: dict[str, Any]) -> None:
    parts = {metric: (np.asarray(p).tolist(), kind)
             for metric, (p, kind) in examples.parts.items()}
    lines = []
    for i, row in enumerate(examples.rows):
        row = {**row, "parts": {m: rows[i] for m, (rows, _) in parts.items()}}
        if examples.correct is not None and examples.correct_unit == examples.unit:
            row["correct"] = bool(examples.correct[i])
        lines.append(json.dumps(row) + "\n")
    body = "".join(lines)
    top = {"format": FORMAT, **header, "examples": len(examples.rows),
           "split_sha256": split_hash(examples), "unit": examples.unit,
           "correct_unit": examples.correct_unit,
           "parts": {m: kind for m, (_, kind) in parts.items()},
           "rows_sha256": hashlib.sha256(body.encode()).hexdigest()}
    with atomic_open(path, "w") as fh:
        fh.write(json.dumps(top) + "\n" + body)


def read_predictions(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A predictions file checked whole: its header, as many rows as it says, each with
    the header's metric parts, and ids and labels that still give the split's hash (so a
    file edited by hand or cut short is refused, naming it)."""
    from torchstarter.config.jsonfile import loads
    from torchstarter.errors import UserError

    redo = "run torchstarter evaluate again to rewrite it"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run torchstarter evaluate on that experiment "
                        f"first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it ({exc}); {redo}") from None
    first, _, body = text.partition("\n")
    try:
        header = loads(first, str(path))
    except ValueError as exc:
        raise UserError(f"{path}: not a predictions file ({str(exc).splitlines()[0]}); "
                        f"{redo}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise UserError(f"{path}: not a predictions file of this torchstarter (its first line "
                        f"is not a '{FORMAT}' header); {redo}")
    lines = [line for line in body.split("\n") if line]
    if header.get("examples") != len(lines) or not lines:
        raise UserError(f"{path}: {len(lines)} rows, but its header says "
                        f"{header.get('examples')}: cut short or edited; {redo}")
    if hashlib.sha256(body.encode()).hexdigest() != header.get("rows_sha256"):
        raise UserError(f"{path}: its rows no longer match the hash in its header (edited "
                        f"by hand?); {redo}")
    kinds = header.get("parts")
    if not isinstance(kinds, dict) or not all(k in STATISTICS for k in kinds.values()):
        raise UserError(f"{path}: its header names no metric parts torchstarter knows; {redo}")
    try:
        rows = [loads(line, f"{path}:{i}") for i, line in enumerate(lines, start=2)]
    except ValueError as exc:
        raise UserError(f"{path}: a row is not JSON ({str(exc).splitlines()[0]}); "
                        f"{redo}") from None
    for i, row in enumerate(rows, start=2):
        parts = row.get("parts") if isinstance(row, dict) else None
        if not isinstance(parts, dict) or set(parts) != set(kinds) or not all(
                isinstance(parts[m], list) and len(parts[m]) == PART_SIZES[kind]
                and all(isinstance(x, int | float) for x in parts[m])
                for m, kind in kinds.items()) or "id" not in row or "true" not in row:
            raise UserError(f"{path}:{i}: not a row of this file (it needs id, true and the "
                            f"parts of {', '.join(sorted(kinds))}); {redo}")
    return header, rows
