"""Per-example results of a split: what `evaluate` writes one row each for, and the parts
that confidence intervals and run comparisons resample (see utils/stats.py).

A task gives them through its `examples` hook. A classification task can use
engine.evaluation.classification_examples(); NER builds its own (a row per sentence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

RATIO, F1 = "ratio", "f1"  # how a metric follows from its summed parts


@dataclass
class Examples:
    """rows: one JSON-able dict per example, in the split's order, each with an "id";
    `unit` says what a row is (image, sentence): what the bootstrap resamples.
    parts: metric -> (n x k array of per-example parts, RATIO or F1).
    correct: per `correct_unit` (the rows, or e.g. tokens) whether the prediction was
    right, for McNemar's test."""

    rows: list[dict[str, Any]]
    parts: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)
    correct: np.ndarray | None = None
    unit: str = "example"
    correct_unit: str = "example"
