"""PolyMNIST networks (reference-implementations §3, ``mmnist/networks/*`` of the official code).

All five modalities share one architecture: a three-layer conv encoder (28 -> 14 -> 7 -> 4),
a mirrored transposed-conv decoder with an unbounded output (the likelihood's location), and
the small dropout classifier used to measure coherence.

``width_multiplier`` scales every channel count and the hidden layer (1.0: the official
32-64-128 channels and 512 hidden units; the ``cpu`` profile uses 0.25, see
:mod:`mopoe_lib.config`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

IMAGE_SHAPE = (3, 28, 28)


def channels(width_multiplier: float = 1.0) -> tuple[int, int, int, int]:
    """(c1, c2, c3, hidden): the official (32, 64, 128, 512) scaled, at least 1 each."""
    if not width_multiplier > 0:
        raise ValueError(f"width_multiplier must be positive, got {width_multiplier}")
    return tuple(max(1, round(c * width_multiplier)) for c in (32, 64, 128, 512))


class Encoder(nn.Module):
    """Conv(3->32->64->128, k3 s2 p1) -> Linear(2048->512) -> (mu, logvar) heads."""

    def __init__(self, latent_dim: int = 512, width_multiplier: float = 1.0):
        super().__init__()
        c1, c2, c3, hidden = channels(width_multiplier)
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(c2, c3, 3, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c3 * 16, hidden),
            nn.ReLU(),
        )
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """Linear(latent->2048) -> (128, 4, 4) -> ConvT to 3x28x28, no output activation."""

    def __init__(self, latent_dim: int = 512, width_multiplier: float = 1.0):
        super().__init__()
        c1, c2, self.c3, _ = channels(width_multiplier)
        self.fc = nn.Sequential(nn.Linear(latent_dim, self.c3 * 16), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(self.c3, c2, 3, 2, 1),  # 4 -> 7
            nn.ReLU(),
            nn.ConvTranspose2d(c2, c1, 3, 2, 1, output_padding=1),  # 7 -> 14
            nn.ReLU(),
            nn.ConvTranspose2d(c1, 3, 3, 2, 1, output_padding=1),  # 14 -> 28
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, self.c3, 4, 4))


class Classifier(nn.Module):
    """The official coherence classifier (``ConvNetworkImgClfCMNIST``), 10 digit logits."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 10, 4, 2, 1),
            nn.Dropout2d(0.5),
            nn.ReLU(),
            nn.Conv2d(10, 20, 4, 2, 1),
            nn.Dropout2d(0.5),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(980, 128),
            nn.Dropout(0.5),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ClassifierCNN(nn.Module):
    """A coherence classifier for the offline PolyMNIST (not the official one): three 3x3 conv
    layers (16-32-64, max-pooling after the first two) and a dropout MLP.

    The offline PolyMNIST has 4,000 distinct training digits, on which the official network
    stays below 0.95 test accuracy on some modalities. This network costs about a third of
    the four-layer CNN it replaced (32-32-64-64, two strided) per image, in training and
    in every coherence evaluation, at the same accuracy; see ``eval.classifier`` in
    :mod:`mopoe_lib.config`."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(16, 32, 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14 -> 7
            nn.Conv2d(32, 64, 3, 1, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(64 * 49, 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
