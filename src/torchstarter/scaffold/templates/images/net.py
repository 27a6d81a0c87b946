"""The network, its loss and its metrics. Edit this file to change the model.

The engine calls model(inputs) on each batch, then the task's loss (loss_fn here) and
every metric with (outputs, labels). Inputs are what data.py's load_split returns:
uint8 images [batch, 3, S, S], S being the --image-size of build-dataset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torchstarter.engine.task import Loss


class Net(nn.Module):
    """Normalise, then 3 x (conv3x3 -> batchnorm -> maxpool2 -> relu), then FC -> BN ->
    relu -> dropout -> FC.

    The model scales pixels itself with the train split's mean and std (kept as buffers,
    so they are saved with the weights): training, evaluation and prediction cannot
    disagree about preprocessing. It returns one score (logit) per class.
    """

    def __init__(self, mean: list[float], std: list[float], num_classes: int,
                 image_size: int, num_channels: int = 32, dropout_rate: float = 0.5):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        c = num_channels
        widths = [3, c, 2 * c, 4 * c]  # channels double in each block
        self.blocks = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(widths[i], widths[i + 1], 3, padding=1),
                          nn.BatchNorm2d(widths[i + 1]), nn.MaxPool2d(2), nn.ReLU())
            for i in range(3)
        ])
        side = image_size // 8  # three halvings
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(side * side * 4 * c, 4 * c),
            nn.BatchNorm1d(4 * c),
            nn.ReLU(),
            nn.Dropout(dropout_rate),
            nn.Linear(4 * c, num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() / 255.0 - self.mean) / self.std
        return self.head(self.blocks(x))


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> Loss:
    """Mean cross-entropy over the batch's examples (and how many it averages)."""
    return Loss(F.cross_entropy(logits, labels), labels.shape[0])


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(correct predictions, examples) for one batch; the engine adds these up exactly."""
    return (logits.argmax(dim=1) == labels).sum(), labels.numel()
