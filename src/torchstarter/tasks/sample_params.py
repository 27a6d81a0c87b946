"""Params that suit each built-in task's sample data: one copy for `demo` and `new`.

They equal experiments/signs/base_model, experiments/images/sample_demo and
experiments/ner/sample_demo (a test checks),
and live in the package so that an install runs them without a clone beside it.
"""

from __future__ import annotations

from typing import Any

SAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "signs": {"task": "signs", "learning_rate": 1e-3, "optimizer": "adam", "batch_size": 32,
              "num_epochs": 10, "dropout_rate": 0.8, "num_channels": 32,
              "augmentation": True, "seed": 230},
    # The NER sample has 82 sentences: a bigger step and more epochs than the reference's
    # (lr 1e-3, batch 5, 10 epochs, for the 48k-sentence Kaggle corpus).
    # The images sample is grayscale digits: mirrored digits are other shapes, so no flips.
    "images": {"task": "images", "learning_rate": 1e-3, "optimizer": "adam",
               "batch_size": 32, "num_epochs": 10, "num_channels": 32, "dropout_rate": 0.5,
               "augmentation": False, "seed": 230},
    "ner": {"task": "ner", "learning_rate": 1e-2, "optimizer": "adam", "batch_size": 8,
            "num_epochs": 30, "embedding_dim": 50, "lstm_hidden_dim": 50,
            "bidirectional": True, "seed": 230},
}
