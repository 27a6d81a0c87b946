"""The charts of `synthesize`: a searched parameter against the metric, and every
experiment's validation curve on one chart. The plumbing is utils/plotting.py's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchstarter.utils.plotting import (
    BEST_COLOR,
    MARKERS_UP_TO,
    TRAIN_COLOR,
    VAL_COLOR,
    best_index,
    default_mode,
    epoch_limits,
    epochs_of,
    figure,
    number,
    short,
    write_png,
)

__all__ = ["Curve", "best_index", "default_mode", "epochs_of", "number", "overlaid_curves",
           "search_plot"]

_HIGHLIGHTED_CURVES = 10
_LEGEND_NAME_CHARS = 40


@dataclass(frozen=True)
class Curve:
    """One experiment's validation values of the selection metric, epoch by epoch."""

    name: str
    epochs: Sequence[int]
    values: Sequence[float]


def search_plot(values: Sequence[Any], scores: Sequence[float], names: Sequence[str],
                param: str, metric: str, mode: str, path: Path) -> None:
    """Best val metric of each experiment against one searched parameter.

    Numbers go on a linear axis, or a log axis when they span two decades or more;
    anything else (strings, booleans, null, mixed) is shown as categories. The line joins
    the best experiment at each value, the star marks the best overall.
    """
    from matplotlib.ticker import MaxNLocator

    points = [(v, s, n) for v, s, n in zip(values, scores, names, strict=True)
              if not math.isnan(number(s))]
    fig = figure(7.5, 4.8, layout="constrained")
    ax = fig.subplots()
    numeric = bool(points) and all(_is_number(v) for v, _, _ in points)
    if numeric:
        xs = [float(v) for v, _, _ in points]
        log = min(xs) > 0 and max(xs) / min(xs) >= 100  # 1e-4..1e-2 already needs it
        if log:
            ax.set_xscale("log")
        elif all(isinstance(v, int) for v, _, _ in points):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        keys: list[Any] = xs
    else:
        log = False
        categories = sorted({_label(v) for v, _, _ in points}, key=_category_order)
        position = {c: i for i, c in enumerate(categories)}
        keys = [position[_label(v)] for v, _, _ in points]
        xs = _spread(keys)
        ax.set_xticks(range(len(categories)), categories,
                      rotation=30 if sum(len(c) for c in categories) > 50 else 0,
                      ha="right" if sum(len(c) for c in categories) > 50 else "center")
        ax.set_xlim(-0.6, len(categories) - 0.4)
    ys = [float(s) for _, s, _ in points]
    if points:
        ax.scatter(xs, ys, s=36, alpha=0.7, color=TRAIN_COLOR, label="experiment", zorder=2)
        best_at: dict[Any, float] = {}
        for key, y in zip(keys, ys, strict=True):
            if key not in best_at or _better(y, best_at[key], mode):
                best_at[key] = y
        line = sorted(best_at.items())
        label = f"best at each {param}"
        if numeric:
            ax.plot([k for k, _ in line], [y for _, y in line], "-", color=VAL_COLOR,
                    linewidth=1.4, label=label, zorder=1)
        else:  # categories have no order to draw a line along: a bar marks each one's best
            ax.hlines([y for _, y in line], [k - 0.25 for k, _ in line],
                      [k + 0.25 for k, _ in line], color=VAL_COLOR, linewidth=2,
                      label=label, zorder=1)
        top = best_index(ys, mode)
        ax.plot([xs[top]], [ys[top]], "*", color=BEST_COLOR, markersize=16, zorder=3,
                label=f"best: {_clip(points[top][2])} ({short(ys[top])})")
        fig.legend(loc="outside lower center", ncol=3, frameon=False, fontsize=9)
    else:
        ax.text(0.5, 0.5, "no experiment has a val value yet", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
    ax.set_xlabel(param + (" (log scale)" if log else ""))
    ax.set_ylabel(f"best val {metric}")
    ax.grid(True, alpha=0.3)
    better = "higher" if mode == "max" else "lower"
    ax.set_title(f"val {metric} against {param}: {len(points)} experiments, {better} is better",
                 fontsize=11)
    write_png(fig, path)


def overlaid_curves(curves: Sequence[Curve], metric: str, mode: str, path: Path) -> None:
    """Every experiment's val curve on one chart; the best few get colours and a legend."""
    from matplotlib.ticker import MaxNLocator

    fig = figure(10.5, 5.2, layout="constrained")
    ax = fig.subplots()
    ranked = sorted(curves, key=lambda c: _rank_key(c, mode))
    colors = [f"C{i}" for i in range(10)]
    shown = ranked[:_HIGHLIGHTED_CURVES]
    rest = ranked[_HIGHLIGHTED_CURVES:]
    for i, curve in enumerate(rest):
        ax.plot(curve.epochs, [number(v) for v in curve.values], "-", color="0.75",
                linewidth=1, zorder=1,
                label=f"{len(rest)} other experiments" if i == 0 else None)
    all_epochs = [e for c in curves for e in c.epochs]
    few = bool(all_epochs) and max(all_epochs) <= MARKERS_UP_TO
    for curve, color in zip(shown, colors, strict=False):
        values = [number(v) for v in curve.values]
        top = best_index(values, mode)
        tag = f" (best {short(values[top])})" if top is not None else ""
        ax.plot(curve.epochs, values, "-", color=color, linewidth=1.8, zorder=2,
                marker="o" if few else None, markersize=3.5, label=_clip(curve.name) + tag)
    if curves:
        fig.legend(loc="outside right upper", fontsize=8.5,
                   title="best first" if len(curves) > 1 else None, title_fontsize=8.5)
    else:
        ax.text(0.5, 0.5, "no experiment has finished an epoch", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"val {metric}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    epoch_limits(ax, all_epochs)
    ax.grid(True, alpha=0.3)
    better = "higher" if mode == "max" else "lower"
    ax.set_title(f"val {metric} by epoch, {len(curves)} experiments ({better} is better)",
                 fontsize=11)
    write_png(fig, path)


def _rank_key(curve: Curve, mode: str) -> tuple[int, float, str]:
    values = [number(v) for v in curve.values]
    top = best_index(values, mode)
    if top is None:
        return (1, 0.0, curve.name)
    return (0, -values[top] if mode == "max" else values[top], curve.name)


def _better(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "max" else a < b


def _spread(positions: Sequence[int]) -> list[float]:
    """Shift points that share a category sideways so none hides another."""
    seen: dict[int, int] = {}
    totals = {p: positions.count(p) for p in set(positions)}
    out = []
    for p in positions:
        k = seen.get(p, 0)
        seen[p] = k + 1
        n = totals[p]
        out.append(p + (0.0 if n == 1 else -0.15 + 0.3 * k / (n - 1)))
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value)


def _label(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _category_order(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _clip(name: str) -> str:
    return name if len(name) <= _LEGEND_NAME_CHARS else "..." + name[-_LEGEND_NAME_CHARS + 3:]
