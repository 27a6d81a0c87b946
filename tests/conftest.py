"""Shared fixtures: the built-in sample data built once, and tiny experiment folders."""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
from pathlib import Path

import pytest

from torchstarter.engine.memory_format import CACHE_ENV
from torchstarter.tasks import load_task

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Small network and few epochs: the tests check behaviour, not accuracy.
TINY = {"task": "signs", "learning_rate": 1e-3, "batch_size": 32, "num_epochs": 2,
        "num_channels": 4, "dropout_rate": 0.5}


def build_args(raw: Path, out: Path, **options) -> argparse.Namespace:
    return load_task("signs").build_options(raw, out, **options)


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background (a script, nohup, CI) inherits SIGINT ignored, and
    so would every process it starts. The tests prove what Ctrl-C does, so the suite
    restores Python's default; tests/test_graceful_stop.py proves the ignored case apart."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # Timed layout choices (engine/memory_format.py) go to a cache of the suite's own, not
    # the user's: every process the tests start inherits it.
    os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="torchstarter-test-cache-")


@pytest.fixture(scope="session")
def sample_raw(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("sample") / "raw"
    load_task("signs").write_sample_data(raw)
    return raw


@pytest.fixture(scope="session")
def sample_data(sample_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built") / "data"
    load_task("signs").build_dataset(build_args(sample_raw, out))
    return out


@pytest.fixture
def make_experiment(tmp_path):
    def make(name: str = "exp", **params) -> Path:
        model_dir = tmp_path / name
        model_dir.mkdir()
        (model_dir / "params.json").write_text(json.dumps({**TINY, **params}))
        return model_dir
    return make


@pytest.fixture(scope="session")
def shipped(tmp_path_factory):
    """task name -> a small trained model of it (tests/shipping.py), trained on first use."""
    from shipping import train_tiny

    models = {}

    def get(task: str):
        if task not in models:
            models[task] = train_tiny(task, tmp_path_factory.mktemp(f"shipped_{task}"))
        return models[task]
    return get
