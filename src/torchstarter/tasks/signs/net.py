"""The reference SIGNS network, its loss and its metric."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torchstarter.engine.task import Loss


class Net(nn.Module):
    """3 x (conv3x3 -> batchnorm -> maxpool2 -> relu), then FC -> BN -> relu -> dropout -> FC.

    Takes uint8 images [N, 3, 64, 64] and scales them itself, so training, evaluation
    and prediction cannot disagree about preprocessing. Returns class logits.
    """

    def __init__(self, num_channels: int = 32, dropout_rate: float = 0.8, num_classes: int = 6,
                 image_size: int = 64):
        super().__init__()
        c = num_channels
        widths = [3, c, 2 * c, 4 * c]
        self.blocks = nn.Sequential(*[
            nn.Sequential(nn.Conv2d(widths[i], widths[i + 1], 3, padding=1),
                          nn.BatchNorm2d(widths[i + 1]), nn.MaxPool2d(2), nn.ReLU())
            for i in range(3)
        ])
        side = image_size // 8
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(side * side * 4 * c, 4 * c),
            nn.BatchNorm1d(4 * c),
            nn.ReLU(),
            nn.Dropout(dropout_rate),
            nn.Linear(4 * c, num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        return self.head(self.blocks(x))


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> Loss:
    """Mean cross-entropy over the batch's examples."""
    return Loss(F.cross_entropy(logits, labels), labels.shape[0])


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(correct predictions, examples) for one batch."""
    return (logits.argmax(dim=1) == labels).sum(), labels.numel()
