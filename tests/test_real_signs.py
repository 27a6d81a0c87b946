"""Integration on the real SIGNS images, when ../shared/data/SIGNS is present."""

import json

import pytest
from conftest import SHARED_DATA, build_args

from torchstarter.experiment.evaluation import evaluate
from torchstarter.experiment.training import train
from torchstarter.tasks.signs.build import build_dataset

RAW = SHARED_DATA / "SIGNS"
pytestmark = pytest.mark.skipif(not (RAW / "train_signs").is_dir(),
                                reason=f"real SIGNS data not found at {RAW}")


def test_real_signs_builds_trains_and_evaluates(tmp_path, make_experiment):
    data = tmp_path / "data"
    report = build_dataset(build_args(RAW, data))
    assert {s: report["splits"][s]["images"] for s in ("train", "val", "test")} == \
        {"train": 864, "val": 216, "test": 120}
    assert report["splits"]["train"]["resized"] == 0
    assert report["duplicates"]["leaks"]["test"], "the real data has known test leaks"
    model_dir = make_experiment(num_epochs=2, num_channels=8)
    train(model_dir, data, console=False)
    metrics, path = evaluate(model_dir, data)
    assert metrics["examples"] == 120
    assert json.loads(path.read_text())["accuracy"] > 1 / 6  # better than chance
