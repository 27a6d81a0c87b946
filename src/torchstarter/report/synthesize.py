"""`synthesize`: one table of every experiment under a folder, and plots when it is a search.

The table shows only what tells experiments apart (the hyper-parameters whose values
differ), their best validation metrics, test metrics where evaluated, epochs and status,
best first by the selection metric. It is written as results.md and results.csv in the
parent folder and returned as text for the CLI (and `search`) to print.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from torchstarter.errors import UserError
from torchstarter.report import plots
from torchstarter.report.collect import (
    Experiment,
    find_experiment_folders,
    is_missing,
    read_experiment,
)
from torchstarter.report.importance import importance_plot, importances
from torchstarter.utils.atomic import atomic_write

RESULTS_MD = "results.md"
RESULTS_CSV = "results.csv"
SEEDS_CSV = "results_by_seed.csv"
# First line of every results.md synthesize writes: a file without it is the user's.
MARKER = "<!-- written by torchstarter synthesize; rewritten on every run -->"
CURVES_PNG = "learning_curves.png"
IMPORTANCE_PNG = "param_importances.png"
# Settings of where and how a run executes, not of what it learns: never table columns.
NOT_HYPERPARAMETERS = frozenset({"num_workers", "device", "num_threads", "save_summary_steps",
                                 "channels_last", "tensorboard", "plots"})
# Differing keys that are not searched parameters: no search plot for them.
NOT_SEARCHED = frozenset({"task", "metric", "metric_mode", "seed"})  # seeds: see seed_table
MAX_SEARCH_PLOTS = 12
_NAMES_IN_A_NOTE = 3


@dataclass
class Table:
    """The rows best first, with raw values; formatting happens when it is written."""

    columns: list[str]
    rows: list[dict[str, Any]]
    experiments: list[Experiment]
    varying: list[str]
    metric: str | None
    mode: str | None
    notes: list[str] = field(default_factory=list)
    importances: dict[str, float] | None = None  # searched param -> share (fANOVA)


@dataclass
class Report:
    """What synthesize found and wrote; `text` is what the CLI prints."""

    text: str
    written: list[Path]
    table: Table | None


def synthesize(parent_dir: Path) -> str:
    """Write results.md, results.csv (and search plots) under parent_dir; return the table."""
    return synthesize_report(parent_dir).text


def synthesize_report(parent_dir: Path) -> Report:
    """As synthesize(), also telling which files were written."""
    parent = Path(parent_dir)
    if not parent.exists():
        raise UserError(f"{parent}: folder not found; check --parent-dir")
    if not parent.is_dir():
        raise UserError(f"{parent}: not a folder; give the folder that holds the experiments")
    ours = _check_ours(parent)
    walk_notes: list[str] = []
    experiments = [read_experiment(folder, parent)
                   for folder in find_experiment_folders(parent, walk_notes)]
    if not experiments:
        text = _with_notes(f"No experiments found under {parent} (an experiment is a folder "
                           f"holding params.json).", walk_notes)
        _write_text(parent / RESULTS_MD, f"# Results\n\n{text}\n")
        return Report(text=text, written=[parent / RESULTS_MD], table=None)

    table = build_table(experiments)
    table.notes[:0] = walk_notes
    written = write_search_plots(table, parent)
    if ours:  # plots of parameters that no longer vary would look current: drop them
        for stale in parent.glob("search_*.png"):
            if stale not in written:
                stale.unlink(missing_ok=True)
        if parent / IMPORTANCE_PNG not in written:
            (parent / IMPORTANCE_PNG).unlink(missing_ok=True)
    text = _with_notes(_summary(table, parent) + "\n\n" + markdown_table(table), table.notes)
    if table.importances:
        text += ("\n\nHyper-parameter importance (Optuna's fANOVA, seeded: each searched "
                 "param's share of the variance of the selection metric):\n\n"
                 + tabulate([[k, f"{v:.3f}"] for k, v in table.importances.items()],
                            headers=["param", "importance"], tablefmt="pipe",
                            disable_numparse=True))
    seeds = seed_table(table)
    if seeds is None and ours:
        (parent / SEEDS_CSV).unlink(missing_ok=True)  # from when seeds were repeated here
    if seeds is not None:
        _write_text(parent / SEEDS_CSV, csv_text(seeds))
        written.append(parent / SEEDS_CSV)
        text += (f"\n\nRuns that differ only in their seed, one row per setting (mean ± "
                 f"standard deviation over n seeds, then min-max):\n\n{seed_markdown(seeds)}")
    images = "".join(f"![{p.stem}]({p.name})\n\n" for p in written if p.suffix == ".png")
    _write_text(parent / RESULTS_MD, f"# Results\n\n{text}\n"
                + (f"\n## Plots\n\n{images}" if images else ""))
    _write_text(parent / RESULTS_CSV, csv_text(table))
    return Report(text=text, written=[parent / RESULTS_MD, parent / RESULTS_CSV, *written],
                  table=table)


def seed_table(table: Table) -> Table | None:
    """Finished experiments whose params differ only in `seed`, one row per setting: n,
    and the mean, standard deviation (n - 1), min and max of each metric. None when no
    setting has more than one finished seed."""
    if "seed" not in table.varying:
        return None
    settings = [k for k in table.varying if k != "seed"]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for exp, row in zip(table.experiments, table.rows, strict=True):
        if exp.status != "finished":  # a failed or unfinished run is no sample of the seed
            continue
        key = tuple(_canonical(exp.params.get(k)) for k in settings)
        groups.setdefault(key, []).append(row)
    if all(len(rows) < 2 for rows in groups.values()):
        return None
    metrics = [c for c in table.columns if c.startswith(("val_", "test_"))
               and not c.endswith(" 95% CI")]
    stats = ("mean", "std", "min", "max")
    rows = []
    for members in groups.values():  # in the order of their best run
        row: dict[str, Any] = {k: members[0].get(k) for k in settings}
        row.update(n=len(members), runs=" ".join(m["name"] for m in members))
        for column in metrics:
            values = [m[column] for m in members if _is_number(m.get(column))]
            if values:
                mean = sum(values) / len(values)
                std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
                       if len(values) > 1 else math.nan)
                row.update({f"{column} mean": mean, f"{column} std": std,
                            f"{column} min": min(values), f"{column} max": max(values)})
        rows.append(row)
    columns = [*settings, "n", *(f"{c} {s}" for c in metrics for s in stats), "runs"]
    return Table(columns=columns, rows=rows, experiments=[], varying=settings,
                 metric=table.metric, mode=table.mode)


def seed_markdown(seeds: Table) -> str:
    metrics = [c.removesuffix(" mean") for c in seeds.columns if c.endswith(" mean")]
    cells = []
    for row in seeds.rows:
        cell = [_markdown_cell(_cell(k, row.get(k))) for k in seeds.varying]
        cell.append(str(row["n"]))
        for m in metrics:
            if f"{m} mean" not in row:
                cell.append("")
                continue
            std = row[f"{m} std"]
            spread = "" if math.isnan(std) else f" ± {_metric_text(std)}"
            cell.append(f"{_metric_text(row[f'{m} mean'])}{spread} "
                        f"({_metric_text(row[f'{m} min'])}-{_metric_text(row[f'{m} max'])})")
        cells.append(cell)
    return tabulate(cells, headers=[*seeds.varying, "n", *metrics], tablefmt="pipe",
                    disable_numparse=True)


def build_table(experiments: Sequence[Experiment]) -> Table:
    """Columns that tell the experiments apart, and rows sorted best first."""
    notes = [note for exp in experiments for note in exp.notes]
    metric, mode = _selection_metric(experiments, notes)
    varying = varying_params(experiments)
    val_columns = _metric_columns([e.val_best for e in experiments], metric)
    test_columns = _metric_columns([e.test for e in experiments], metric)
    _note_missing_metrics(experiments, val_columns, notes)
    with_ci = {m for m in test_columns if any(m in e.test_intervals for e in experiments)}
    columns = ["name", *varying, *(f"val_{m}" for m in val_columns),
               *(c for m in test_columns for c in (f"test_{m}", f"test_{m} 95% CI")
                 if c == f"test_{m}" or m in with_ci), "best_epoch", "epochs", "status"]

    def row(exp: Experiment) -> dict[str, Any]:
        values: dict[str, Any] = {"name": exp.name}
        values.update({k: exp.params.get(k) for k in varying})
        values.update({f"val_{m}": (exp.val_best or {}).get(m) for m in val_columns})
        values.update({f"test_{m}": (exp.test or {}).get(m) for m in test_columns})
        values.update({f"test_{m} 95% CI": "-".join(map(_metric_text, exp.test_intervals[m]))
                       for m in with_ci if m in exp.test_intervals})
        values.update(best_epoch=exp.best_epoch, epochs=exp.epochs, status=exp.status)
        return values

    pairs = [(row(exp), exp) for exp in experiments]
    if metric is not None:
        pairs.sort(key=lambda pair: _sort_key(pair[0].get(f"val_{metric}"), mode,
                                              pair[0]["name"]))
    else:
        pairs.sort(key=lambda pair: pair[0]["name"])
    return Table(columns=columns, rows=[r for r, _ in pairs], experiments=[e for _, e in pairs],
                 varying=varying, metric=metric, mode=mode, notes=notes)


def varying_params(experiments: Sequence[Experiment]) -> list[str]:
    """Hyper-parameters whose value is not the same in every experiment.

    A key absent from a run's resolved params counts as a difference; absent from an
    experiment that never ran, it is only unknown (its task's defaults may not be known).
    """
    known = [exp for exp in experiments if exp.params]
    keys: dict[str, None] = {}
    for exp in known:
        keys.update(dict.fromkeys(exp.params))
    absent = object()

    def values(key: str) -> set[str]:
        return {_canonical(e.params.get(key, absent)) for e in known
                if key in e.params or e.ran}

    return [key for key in keys if key not in NOT_HYPERPARAMETERS and len(values(key)) > 1]


def write_search_plots(table: Table, parent: Path) -> list[Path]:
    """search_<param>.png per searched parameter and learning_curves.png, for a search.

    A plot that fails becomes a note: the table matters more than any picture.
    """
    searched = [k for k in table.varying if k not in NOT_SEARCHED]
    if len(table.experiments) < 2 or not searched or table.metric is None:
        return []
    metric, mode = table.metric, table.mode or plots.default_mode(table.metric)
    key = f"val_{metric}"
    scored = [(exp, row) for exp, row in zip(table.experiments, table.rows, strict=True)
              if not is_missing(row.get(key))]
    written = []
    plotted = [p for p in searched if len({_canonical(e.params.get(p)) for e, _ in scored}) > 1]
    if len(plotted) > MAX_SEARCH_PLOTS:
        table.notes.append(f"{len(plotted)} parameters differ; plotted the first "
                           f"{MAX_SEARCH_PLOTS} only")
        plotted = plotted[:MAX_SEARCH_PLOTS]
    for param in plotted:
        path = parent / f"search_{_file_safe(param)}.png"
        if _draw(table, path, plots.search_plot, [e.params.get(param) for e, _ in scored],
                 [row[key] for _, row in scored], [e.name for e, _ in scored], param, metric,
                 mode):
            written.append(path)
    try:
        found = importances([e.params for e, _ in scored], [row[key] for _, row in scored],
                            searched, mode)
    except Exception as exc:  # like a plot: never worth the table
        table.notes.append(f"importances not computed ({type(exc).__name__}: {exc})")
        found = None
    if found is not None:
        table.importances = found
        if _draw(table, parent / IMPORTANCE_PNG, importance_plot, found, metric):
            written.append(parent / IMPORTANCE_PNG)
    curves = [plots.Curve(exp.name, plots.epochs_of(exp.history),
                          [row.get(key) for row in exp.history])
              for exp in table.experiments if exp.history]
    curves = [c for c in curves if any(not math.isnan(plots.number(v)) for v in c.values)]
    if curves and _draw(table, parent / CURVES_PNG, plots.overlaid_curves, curves, metric, mode):
        written.append(parent / CURVES_PNG)
    return written


def markdown_table(table: Table) -> str:
    numeric = {c for c in table.columns if c != "name" and _all_numbers(r.get(c)
                                                                     for r in table.rows)}
    cells = [[_markdown_cell(_cell(c, r.get(c))) for c in table.columns] for r in table.rows]
    return tabulate(cells, headers=table.columns, tablefmt="pipe", disable_numparse=True,
                    colalign=["right" if c in numeric else "left" for c in table.columns])


def csv_text(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([_csv_cell(row.get(c)) for c in table.columns])
    return out.getvalue()


def _selection_metric(experiments: Sequence[Experiment], notes: list[str]
                      ) -> tuple[str | None, str | None]:
    """The first experiment's metric and mode; a note when others choose differently."""
    chosen = [exp for exp in experiments if exp.metric is not None]
    if not chosen:
        notes.append("no experiment names its selection metric; rows are sorted by name")
        return None, None
    first = chosen[0]
    others = [exp for exp in chosen if (exp.metric, exp.mode) != (first.metric, first.mode)]
    if others:
        notes.append(f"experiments select on different metrics ({_names(others)} use "
                     f"{others[0].metric} ({others[0].mode})); rows are sorted by val "
                     f"{first.metric} ({first.mode}) as in {first.name}")
    return first.metric, first.mode


def _metric_columns(metric_sets: Iterable[dict[str, float] | None], metric: str | None
                    ) -> list[str]:
    names: dict[str, None] = {}
    for metrics in metric_sets:
        names.update(dict.fromkeys(metrics or {}))
    if metric in names:  # the sort column first, where the eye starts
        return [metric, *(n for n in names if n != metric)]
    return list(names)


def _note_missing_metrics(experiments: Sequence[Experiment], val_columns: Sequence[str],
                          notes: list[str]) -> None:
    measured = [exp for exp in experiments if exp.val_best]
    blank_columns: dict[tuple[str, ...], list[str]] = {}
    for name in val_columns:
        lacking = tuple(exp.name for exp in measured if name not in exp.val_best)
        if lacking:
            blank_columns.setdefault(lacking, []).append(f"val_{name}")
    for lacking, columns in blank_columns.items():
        notes.append(f"metric sets differ: {', '.join(columns)} "
                     f"{'is' if len(columns) == 1 else 'are'} blank for {_names(lacking)}")
    stopped = [exp for exp in experiments if exp.status == "stopped"]
    if stopped:
        notes.append(f"run.json says running but no live process holds the run lock "
                     f"(killed?) for {_names(stopped)}; status shown as stopped; continue "
                     f"each with `torchstarter train --restore last`")
    waiting = [exp for exp in experiments if not exp.val_best]
    if waiting:
        statuses = sorted({exp.status for exp in waiting})
        notes.append(f"{len(waiting)} of {len(experiments)} experiments "
                     f"{'has' if len(waiting) == 1 else 'have'} no validation metrics "
                     f"({', '.join(statuses)}): {_names(waiting)}")


def _sort_key(value: Any, mode: str | None, name: str) -> tuple[int, float, str]:
    if is_missing(value) or not isinstance(value, int | float):
        return (1, 0.0, name)
    return (0, -value if mode == "max" else value, name)


def _summary(table: Table, parent: Path) -> str:
    count = f"{len(table.rows)} experiment{'s' if len(table.rows) != 1 else ''} under {parent}"
    if table.metric is None:
        return count + "."
    better = "higher" if table.mode == "max" else "lower"
    return f"{count}, best first by val_{table.metric} ({better} is better)."


def _draw(table: Table, path: Path, draw: Any, *args: Any) -> bool:
    try:
        draw(*args, path)
    except Exception as exc:  # a broken plot must not cost the user the table
        table.notes.append(f"{path.name}: could not draw ({type(exc).__name__}: {exc})")
        return False
    return True


def _check_ours(parent: Path) -> bool:
    """Whether results.md here was written by synthesize; refuse to replace a user's file."""
    md, csv = parent / RESULTS_MD, parent / RESULTS_CSV
    try:
        first = md.read_text(encoding="utf-8", errors="replace").splitlines()[:1] \
            if md.exists() else []
    except OSError:
        first = []
    if md.exists() and first != [MARKER]:
        raise UserError(f"{md}: exists and was not written by synthesize; rename it, since "
                        f"synthesize writes {RESULTS_MD} and {RESULTS_CSV} in this folder")
    if csv.exists() and not md.exists():
        raise UserError(f"{csv}: exists and was not written by synthesize; rename it, since "
                        f"synthesize writes {RESULTS_MD} and {RESULTS_CSV} in this folder")
    return md.exists()


def _write_text(path: Path, text: str) -> None:
    if path.name == RESULTS_MD:
        text = f"{MARKER}\n{text}"
    data = text.encode("utf-8")
    try:
        atomic_write(path, lambda fh: fh.write(data))
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror}); check the folder's "
                        f"permissions and free space") from None


def _with_notes(text: str, notes: Sequence[str]) -> str:
    if not notes:
        return text
    return text + "\n\nNotes:\n" + "\n".join(f"- {note}" for note in notes)


def _names(experiments: Sequence[Experiment | str]) -> str:
    names = [exp if isinstance(exp, str) else exp.name for exp in experiments]
    shown = ", ".join(names[:_NAMES_IN_A_NOTE])
    more = len(names) - _NAMES_IN_A_NOTE
    return shown + (f" and {more} more" if more > 0 else "")


def _canonical(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "param"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _all_numbers(values: Iterable[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(_is_number(v) for v in present)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column.startswith(("val_", "test_")) and _is_number(value):
        return _metric_text(float(value))
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value)


def _metric_text(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4f}"
    return f"{value:.4g}"


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not _is_number(value):
        return json.dumps(value)
    return repr(value)
