"""A task of the user's own, given as a .py file, trains through the unchanged engine."""

import json
import textwrap

from test_cli_end_to_end import cli

BLOBS_TASK = textwrap.dedent('''
    """Two Gaussian blobs in 5 dimensions: the smallest possible task."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    from torchstarter.config import Field
    from torchstarter.engine.batching import TensorData

    SCHEMA = {"hidden": Field(int, "Hidden units.", default=8, min=1)}
    DEFAULT_METRIC = "accuracy"

    def accuracy(logits, labels):
        return (logits.argmax(1) == labels).sum(), labels.numel()

    METRICS = {"accuracy": accuracy}

    def load_split(params, data_dir, split):
        gen = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        labels = torch.randint(0, 2, (101,), generator=gen)
        inputs = torch.randn(101, 5, generator=gen) + 3.0 * labels[:, None].float()
        return TensorData(inputs, labels)

    def build_model(params):
        return nn.Sequential(nn.Linear(5, params.hidden), nn.ReLU(), nn.Linear(params.hidden, 2))

    def loss_fn(logits, labels):
        return F.cross_entropy(logits, labels)
''')


def test_a_task_file_trains_and_evaluates_through_the_cli(tmp_path):
    (tmp_path / "blobs.py").write_text(BLOBS_TASK)
    model_dir = tmp_path / "experiment"
    model_dir.mkdir()
    (model_dir / "params.json").write_text(json.dumps({
        "task": "../blobs.py", "learning_rate": 0.05, "batch_size": 16, "num_epochs": 3,
        "hidden": 4}))
    cli("train", "--data-dir", tmp_path, "--model-dir", model_dir)
    cli("evaluate", "--data-dir", tmp_path, "--model-dir", model_dir)
    test = json.loads((model_dir / "metrics_test_best.json").read_text())
    assert test["accuracy"] > 0.9


def test_a_task_missing_a_part_names_it(tmp_path):
    (tmp_path / "broken.py").write_text(BLOBS_TASK.replace("def loss_fn", "def loss_func"))
    (tmp_path / "params.json").write_text(json.dumps({
        "task": "broken.py", "learning_rate": 0.05, "batch_size": 16, "num_epochs": 1}))
    result = cli("train", "--data-dir", tmp_path, "--model-dir", tmp_path, check=False)
    assert result.returncode == 2
    assert "lacks loss_fn" in result.stderr
