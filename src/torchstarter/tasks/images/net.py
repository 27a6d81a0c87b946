"""The images task's network: the SIGNS convolutional network behind a normalisation
with the train split's statistics, which travel in the weights (buffers), so evaluate,
predict and an exported model all scale pixels the same way."""

from __future__ import annotations

import torch
from torch import nn

from torchstarter.tasks.signs.net import Net


class Classifier(nn.Module):
    """uint8 images [N, 3, S, S] -> (x / 255 - mean) / std -> SIGNS Net -> class logits."""

    def __init__(self, mean: list[float], std: list[float], num_classes: int,
                 image_size: int, num_channels: int = 32, dropout_rate: float = 0.5):
        super().__init__()
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)))
        self.register_buffer("shift", torch.tensor(mean).view(1, 3, 1, 1) /
                             torch.tensor(std).view(1, 3, 1, 1))
        self.net = Net(num_channels, dropout_rate, num_classes, image_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float() * self.scale - self.shift)
