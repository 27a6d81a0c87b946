"""Which hyper-parameters mattered: Optuna's fANOVA importances over the experiments of a
search, for `synthesize`.

Grid trials register no Optuna params (see search/study.py), so the importances are not
read from the study: an in-memory study is filled with one finished trial per experiment
that has the metric, its searched params as Optuna distributions (numbers as a float
range, on a log scale when they span more than a decade; anything else as categories),
and fANOVA (Optuna's default evaluator, a random forest; seeded) is run on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MIN_RUNS = 4  # fewer finished runs than this say nothing about importances
SEED = 0


def _distribution(values: Sequence[Any]) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        low, high = float(min(values)), float(max(values))
        if low == high:
            return None
        log = low > 0 and high / low > 10
        return FloatDistribution(low, high, log=log)
    choices = sorted({str(v) for v in values})
    return CategoricalDistribution(choices) if len(choices) > 1 else None


def importances(params: Sequence[dict[str, Any]], scores: Sequence[float],
                searched: Sequence[str], mode: str) -> dict[str, float] | None:
    """Each searched param's share of the metric's variance (they sum to 1), or None when
    there are too few runs or params to say."""
    import optuna

    runs = [(p, s) for p, s in zip(params, scores, strict=True)
            if isinstance(s, int | float) and math.isfinite(s)]
    if len(runs) < MIN_RUNS or len({s for _, s in runs}) < 2:
        return None  # too few runs, or all scored the same: nothing to apportion
    distributions = {}
    for key in searched:
        dist = _distribution([p.get(key) for p, _ in runs])
        if dist is not None:
            distributions[key] = dist
    if len(distributions) < 2:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for p, score in runs:
        values = {k: (float(p[k]) if isinstance(d, optuna.distributions.FloatDistribution)
                      else str(p.get(k))) for k, d in distributions.items()}
        study.add_trial(optuna.trial.create_trial(params=values, distributions=distributions,
                                                  value=float(score)))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=SEED)
    found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {k: float(v) for k, v in found.items()}


def importance_plot(found: dict[str, float], metric: str, path: Path) -> None:
    from torchstarter.utils.plotting import figure, write_png

    names = list(found)[::-1]
    fig = figure(7, 1.2 + 0.4 * len(names), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [found[n] for n in names], color="#1f77b4")
    for i, name in enumerate(names):
        ax.text(found[name], i, f" {found[name]:.2f}", va="center", fontsize=9)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(f"share of the variance of best val {metric} (fANOVA)")
    ax.set_title("hyper-parameter importance", fontsize=11)
    write_png(fig, path)
