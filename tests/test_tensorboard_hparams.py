"""TensorBoard's HPARAMS tab: a finished run records its params with its best val
metrics, so runs can be compared setting by setting (issue 14)."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from torchstarter.experiment.training import train


def test_a_finished_run_writes_its_params_and_best_val_metrics(make_experiment, sample_data):
    model_dir = make_experiment(num_epochs=2, learning_rate=3e-3)
    train(model_dir, sample_data, console=False)
    events = EventAccumulator(str(model_dir / "tensorboard"))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["learning_rate"].number_value == pytest.approx(3e-3)
    assert start.hparams["task"].string_value == "signs"
    assert start.hparams["ema_decay"].string_value == "null"  # None as its JSON text
    best = json.loads((model_dir / "metrics_val_best_weights.json").read_text())
    recorded = events.Scalars("hparam/best_val_accuracy")
    assert recorded[-1].value == pytest.approx(best["accuracy"], rel=1e-6)

