import io
import os
import pickle

import pytest
import torch

from torchstarter.engine import checkpoint as ckpt
from torchstarter.engine.build import build_trainer
from torchstarter.engine.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from torchstarter.errors import UserError
from torchstarter.tasks.registry import resolve_params

PARAMS = {"task": "signs", "learning_rate": 1e-3, "batch_size": 4, "num_epochs": 1,
          "num_channels": 4, "scheduler": "step", "early_stopping_patience": 3}


def make_trainer(**changes):
    task, params = resolve_params({**PARAMS, **changes}, "test")
    return build_trainer(task, params, torch.device("cpu"))


def trained_state():
    trainer = make_trainer()
    x = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    loss = trainer.model(x).sum()
    loss.backward()
    trainer.optimizer.step()
    trainer.scheduler.step()
    trainer.epoch = 3
    trainer.early_stopping.update(0.5, 3)
    return trainer, trainer.state_dict()


def test_round_trip_restores_every_stateful_piece(tmp_path):
    trainer, state = trained_state()
    save_checkpoint(state, tmp_path / "last.pt")
    loaded = load_checkpoint(tmp_path / "last.pt")
    other = make_trainer()
    other.load_state_dict(loaded)
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, other.model.state_dict()[key])
    assert other.optimizer.state_dict()["state"].keys() == \
        trainer.optimizer.state_dict()["state"].keys()
    assert other.scheduler.state_dict() == trainer.scheduler.state_dict()
    assert other.epoch == 3
    assert other.early_stopping.best == 0.5 and other.early_stopping.best_epoch == 3
    assert torch.equal(torch.get_rng_state(), state["rng"]["torch"])
    assert set(loaded["rng"]) >= {"python", "numpy", "torch"}


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    _, state = trained_state()
    path = tmp_path / "last.pt"
    save_checkpoint(state, path)
    before = path.read_bytes()

    def torn_save(obj, fh):
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", torn_save)
    with pytest.raises(OSError):
        save_checkpoint(state, path)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path):
    _, state = trained_state()
    path = tmp_path / "last.pt"
    save_checkpoint(state, path)
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)
    with pytest.raises(UserError, match="last.pt: not a readable checkpoint"):
        load_checkpoint(path)


def test_a_missing_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found; train first"):
        load_checkpoint(tmp_path / "best.pt")


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    buffer = io.BytesIO()
    torch.save({"format": ckpt.FORMAT, "model": Payload()}, buffer, pickle_module=pickle)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UserError, match="refused to load"):
        load_checkpoint(path)


def test_a_checkpoint_of_another_architecture_lists_the_mismatch():
    _, state = trained_state()
    wider = make_trainer(num_channels=8)
    with pytest.raises(UserError, match=r"shape: blocks\.0\.0\.weight \(4, 3, 3, 3\) vs model "
                                        r"\(8, 3, 3, 3\)"):
        check_compatible(wider.model, state["model"], "last.pt")


def test_written_files_get_ordinary_permissions(tmp_path):
    _, state = trained_state()
    save_checkpoint(state, tmp_path / "last.pt")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "last.pt").stat().st_mode & 0o777 == 0o666 & ~umask
