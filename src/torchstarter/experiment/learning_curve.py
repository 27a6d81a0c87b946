"""learning_curve.png: loss and selection metric per epoch (tracking.py says when)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

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
    legend_entries,
    number,
    short,
    spans_decades,
    write_png,
)


def learning_curve(history: list[dict], metric: str, path: Path, title: str | None = None,
                   mode: str | None = None) -> None:
    """Loss and selection metric (train and val) against epoch, written to `path`.

    Cheap enough to run after every epoch: fixed layout, no layout solver. `mode` ('max' or
    'min') only decides which val point is starred as best; it defaults to 'min' for loss.
    """
    from matplotlib.ticker import MaxNLocator

    rows = [row for row in history if isinstance(row, Mapping)]
    epochs = epochs_of(rows)
    names = ["loss"] if metric == "loss" else ["loss", metric]
    fig = figure(4.6 * len(names) + 0.6, 4.0)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    fig.subplots_adjust(left=0.09 if len(names) == 2 else 0.15, right=0.98, bottom=0.13,
                        top=0.80, wspace=0.25)
    val = [number(row.get(f"val_{metric}")) for row in rows]
    best = best_index(val, mode or default_mode(metric))
    for ax, name in zip(axes, names, strict=True):
        drawn: list[float] = []
        for split, color, style in (("train", TRAIN_COLOR, "--"), ("val", VAL_COLOR, "-")):
            ys = [number(row.get(f"{split}_{name}")) for row in rows]
            if all(math.isnan(y) for y in ys):
                continue
            ax.plot(epochs, ys, style, color=color, linewidth=1.6, label=split,
                    marker="o" if len(rows) <= MARKERS_UP_TO else None, markersize=4)
            drawn += ys
        if spans_decades(drawn):  # a first-epoch loss of 1e3 would flatten the rest
            ax.set_yscale("log")
        if best is not None:
            ax.axvline(epochs[best], color="0.6", linestyle=":", linewidth=1, zorder=0)
            if name == metric:
                ax.plot([epochs[best]], [val[best]], "*", color=BEST_COLOR, markersize=13,
                        label=f"best val {short(val[best])} (epoch {epochs[best]})")
        if not drawn:
            ax.text(0.5, 0.5, "no epoch finished yet" if not rows else "no values",
                    transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        epoch_limits(ax, epochs)
        ax.grid(True, alpha=0.3)
    # One legend for both panels, above them: inside an axes it would hide some curve.
    handles, labels = legend_entries(axes)
    if labels:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels),
                   bbox_to_anchor=(0.5, 0.83), frameon=False, fontsize=9.5)
    fig.suptitle(title if title is not None else Path(path).resolve().parent.name,
                 fontsize=12, y=0.97)
    write_png(fig, path)
