"""Mixed precision: fp16 keeps its loss scaler in the checkpoint; bf16 needs none."""

import pytest
import torch

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


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_ner_lstm_runs_in_float32_under_autocast(bidirectional, dtype):
    """cuDNN's autocast casts LSTMs to fp16 whatever was asked; we keep them in fp32."""
    from torchstarter.tasks.ner import build_model
    from torchstarter.tasks.registry import resolve_params

    info = {"words": ["<pad>", "UNK", "a", "b"], "tags": ["O", "B-x", "I-x"],
            "lowercase": False, "chars": []}
    _, params = resolve_params({"task": "ner", "learning_rate": 0.1, "batch_size": 2,
                                "num_epochs": 1, "bidirectional": bidirectional}, "t")
    model = build_model(params, info)
    seen = []

    def dtypes(module, args, out):  # what the LSTM got and what it computed in
        first = out[0].data if hasattr(out[0], "batch_sizes") else out[0]
        given = args[0].data if hasattr(args[0], "batch_sizes") else args[0]
        seen.append((given.dtype, first.dtype))

    model.lstm.register_forward_hook(dtypes)
    batch = {"words": torch.tensor([[2, 3, 2], [3, 2, 0]]), "lengths": torch.tensor([3, 2])}
    with torch.autocast("cpu", dtype=dtype):
        out = model(batch)
        # Low-precision features, as a GPU's autocast may hand them on, go in as float32 too.
        model._recurrent(torch.randn(2, 3, 50).to(dtype), torch.tensor([3, 2]))
    assert seen == [(torch.float32, torch.float32)] * 2
    assert out.emissions.dtype == dtype  # the layers around it still run in low precision
