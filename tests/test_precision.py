"""Mixed precision: fp16 keeps its loss scaler in the checkpoint; bf16 needs none."""

import pytest

from torchstarter.engine.checkpoint import load_checkpoint
from torchstarter.experiment.training import train


def test_fp16_saves_the_loss_scaler_and_resumes_with_it(make_experiment, sample_data):
    model_dir = make_experiment(num_epochs=1, precision="fp16", channels_last=False)
    train(model_dir, sample_data, console=False)
    scaler = load_checkpoint(model_dir / "last.pt")["scaler"]
    assert scaler["scale"] > 0 and scaler["_growth_tracker"] > 0
    trainer = train(model_dir, sample_data, restore="last", console=False,
                    overrides={"num_epochs": 2})
    assert trainer.epoch == 2
    assert trainer.scaler.state_dict()["_growth_tracker"] > scaler["_growth_tracker"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_other_precisions_need_no_scaler(make_experiment, sample_data, precision):
    model_dir = make_experiment(num_epochs=1, precision=precision)
    train(model_dir, sample_data, console=False)
    assert load_checkpoint(model_dir / "last.pt")["scaler"] is None
