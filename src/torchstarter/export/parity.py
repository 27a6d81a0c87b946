"""The artifact against the eager model, on real inputs: how far apart are their outputs?"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torchstarter.engine.export_spec import IGNORE, ExportSpec
from torchstarter.export.formats import Runner


def compare(spec: ExportSpec, run: Runner, batches: Iterable[Any]) -> dict[str, Any]:
    """Max absolute difference of the scores and the share of identical predictions,
    over every batch (the eager side computed as evaluate and predict compute it).

    Scores are compared where the eager predictions are real (not IGNORE): a sequence
    model's scores past a sentence's end are padding in one and arbitrary in the other.
    """
    worst, same, total, examples = 0.0, 0, 0, 0
    for inputs in batches:
        scores, predicted = spec.reference(inputs)
        scores, predicted = scores.float().cpu(), predicted.cpu()
        got_scores, got = (t.cpu() for t in run(spec.feed(inputs))[:2])
        if got_scores.shape != scores.shape or got.shape != predicted.shape:
            raise ValueError(f"the artifact's outputs have shapes {tuple(got_scores.shape)} "
                             f"and {tuple(got.shape)}, the eager model's "
                             f"{tuple(scores.shape)} and {tuple(predicted.shape)}")
        real = predicted != IGNORE
        gap = (got_scores.float() - scores).abs()
        gap = gap[real] if gap.dim() > real.dim() else gap.masked_select(real)
        if gap.numel():
            worst = max(worst, float(gap.max()) if not gap.isnan().any() else float("inf"))
        same += int(((got == predicted) & real).sum())
        total += int(real.sum())
        examples += int(predicted.shape[0])
    return {"max_abs_diff": worst, "identical_predictions": same / total if total else 1.0,
            "predictions_compared": total, "examples": examples}
