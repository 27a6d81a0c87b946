"""The PNG plots: valid images in every state a run can be in, drawn without pyplot."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from torchstarter.experiment.learning_curve import learning_curve
from torchstarter.report.plots import Curve, overlaid_curves, search_plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def history(epochs: int, metric: str = "accuracy") -> list[dict]:
    return [{"epoch": e, "train_loss": 2 / e, "val_loss": 2.2 / e + 0.01 * e,
             f"train_{metric}": 1 - 0.5 / e, f"val_{metric}": 0.9 - 0.4 / e - 0.01 * e,
             "lr": 1e-3, "seconds": 0.4} for e in range(1, epochs + 1)]


def assert_png(path: Path, width: int | None = None) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5000  # axes, lines and text, not an empty canvas
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.height >= 300
        if width is not None:
            assert image.width == width
        # something besides the white background was drawn
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or [0] * 300) > 20
    assert not list(path.parent.glob(f".{path.name}.*")), "temp file left behind"


@pytest.mark.parametrize("rows", [
    pytest.param(history(1), id="one epoch"),
    pytest.param(history(20), id="twenty epochs"),
    pytest.param(history(80), id="eighty epochs"),
    pytest.param([], id="no epoch yet"),
])
def test_learning_curve_is_a_valid_png(tmp_path, rows):
    path = tmp_path / "learning_curve.png"
    learning_curve(rows, "accuracy", path, title="signs/base_model")
    assert_png(path, width=980)


def test_learning_curve_draws_through_nan_inf_and_missing_values(tmp_path):
    rows = history(10)
    rows[2]["val_loss"] = math.nan
    rows[3]["val_accuracy"] = math.inf
    del rows[4]["train_loss"]
    rows[5]["train_accuracy"] = None
    del rows[6]["val_accuracy"]
    rows.append("not a row")
    learning_curve(rows, "accuracy", tmp_path / "curve.png", mode="max")
    assert_png(tmp_path / "curve.png")


def test_learning_curve_with_loss_as_metric_has_a_single_panel(tmp_path):
    learning_curve(history(5), "loss", tmp_path / "curve.png")
    assert_png(tmp_path / "curve.png", width=520)


def test_learning_curve_replaces_the_previous_image(tmp_path):
    path = tmp_path / "curve.png"
    learning_curve(history(2), "accuracy", path)
    first = path.read_bytes()
    learning_curve(history(3), "accuracy", path)
    assert path.read_bytes() != first
    assert_png(path)


def test_learning_curve_can_be_drawn_from_threads_at_once(tmp_path):
    errors: list[BaseException] = []

    def draw(i: int) -> None:
        try:
            for epochs in range(1, 4):
                learning_curve(history(epochs), "f1", tmp_path / f"c{i}.png", title=f"run {i}")
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(3):
        assert_png(tmp_path / f"c{i}.png")


def test_plots_never_import_pyplot_and_importing_them_costs_nothing(tmp_path):
    script = (
        "import sys\n"
        "from torchstarter.report import plots\n"
        "from torchstarter.experiment import learning_curve\n"
        "assert 'matplotlib' not in sys.modules, 'imported at module import'\n"
        f"learning_curve.learning_curve([{{'epoch': 1, 'train_loss': 1.0, 'val_loss': 1.2}}], "
        f"'accuracy', __import__('pathlib').Path({str(tmp_path / 'c.png')!r}))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert_png(tmp_path / "c.png")


@pytest.mark.parametrize("values", [
    pytest.param([1e-5, 1e-4, 1e-3, 1e-2, 1e-3], id="log-spaced floats"),
    pytest.param([0.1, 0.3, 0.5, 0.5, 0.7], id="linear floats"),
    pytest.param([8, 16, 32, 8, 16], id="integers"),
    pytest.param(["adam", "sgd", "adamw", "sgd", "adam"], id="categories"),
    pytest.param([True, False, None, 3, "x"], id="mixed types"),
])
def test_search_plot_is_a_valid_png_for_any_kind_of_value(tmp_path, values):
    scores = [0.5, 0.7, math.nan, 0.9, 0.6]
    names = [f"search/run_{i}" for i in range(len(values))]
    search_plot(values, scores, names, "learning_rate", "accuracy", "max",
                tmp_path / "search.png")
    assert_png(tmp_path / "search.png")


def test_search_plot_without_any_score_still_draws(tmp_path):
    search_plot([1, 2], [math.nan, None], ["a", "b"], "batch_size", "loss", "min",
                tmp_path / "search.png")
    assert_png(tmp_path / "search.png")


def test_overlaid_curves_highlight_the_best_and_grey_the_rest(tmp_path):
    curves = [Curve(f"search/learning_rate_{i}_with_a_rather_long_folder_name",
                    list(range(1, 3 + i % 7)), [0.1 * i + 0.01 * e for e in range(1, 3 + i % 7)])
              for i in range(15)]
    curves.append(Curve("all_nan", [1, 2], [math.nan, math.nan]))
    overlaid_curves(curves, "accuracy", "max", tmp_path / "curves.png")
    assert_png(tmp_path / "curves.png")
    overlaid_curves([], "accuracy", "max", tmp_path / "none.png")
    assert_png(tmp_path / "none.png")
