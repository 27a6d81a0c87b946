"""Charts of training runs with matplotlib's object API, written as PNG files atomically.

pyplot is never used: it keeps global figure state and is unsafe in the background
thread that `train` may draw from. Each chart builds its own Figure, renders it to bytes
and writes the file atomically, so a reader (or a crash) never leaves half a PNG.
matplotlib is imported on first use only, so importing this module costs nothing.
The learning curve of a run (experiment/) and the search charts (report/) share these.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torchstarter.utils.atomic import atomic_write

DPI = 100
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#d62728"
BEST_COLOR = "#2ca02c"
MARKERS_UP_TO = 30  # epochs; beyond that markers only clutter the line


def number(value: Any) -> float:
    """A finite float, or NaN for missing, non-numeric and infinite values (drawn as gaps)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def default_mode(metric: str) -> str:
    return "min" if metric == "loss" else "max"


def best_index(values: Sequence[float], mode: str) -> int | None:
    """Index of the best finite value (the first one on ties), None when there is none."""
    finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    if not finite:
        return None
    pick = max if mode == "max" else min
    return pick(finite, key=lambda pair: (pair[0] if mode == "max" else -pair[0], -pair[1]))[1]


def epochs_of(history: Sequence[Mapping[str, Any]]) -> list[int]:
    """The epoch column; a row without a usable one takes its position."""
    out = []
    for i, row in enumerate(history):
        epoch = row.get("epoch")
        out.append(epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else i + 1)
    return out


def figure(width: float, height: float, layout: str | None = None) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout=layout)


def write_png(fig: Any, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    # Light compression: a tenth of the encode time for files about 6% larger.
    FigureCanvasAgg(fig).print_png(buffer, pil_kwargs={"compress_level": 1})
    data = buffer.getvalue()
    atomic_write(Path(path), lambda fh: fh.write(data))


def legend_entries(axes: Sequence[Any]) -> tuple[list[Any], list[str]]:
    handles: list[Any] = []
    labels: list[str] = []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    return handles, labels


def epoch_limits(ax: Any, epochs: Sequence[int]) -> None:
    if not epochs:
        ax.set_xlim(0.5, 1.5)
        ax.set_xticks([1])
        return
    low, high = min(epochs), max(epochs)
    pad = max(0.5, 0.03 * (high - low))
    ax.set_xlim(low - pad, high + pad)
    if high - low < 2:  # the integer locator falls back to fractions on so short a range
        ax.set_xticks(range(low, high + 1))


def spans_decades(values: Sequence[float]) -> bool:
    finite = [v for v in values if not math.isnan(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 100


def short(value: float) -> str:
    return f"{value:.4g}"
