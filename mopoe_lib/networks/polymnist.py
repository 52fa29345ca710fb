"""PolyMNIST networks (reference-implementations §3, ``mmnist/networks/*`` of the official code).

All five modalities share one architecture: a three-layer conv encoder (28 -> 14 -> 7 -> 4),
a mirrored transposed-conv decoder with an unbounded output (the Laplace location), and the
small dropout classifier used to measure coherence.
"""

from __future__ import annotations

import torch
import torch.nn as nn

IMAGE_SHAPE = (3, 28, 28)


class Encoder(nn.Module):
    """Conv(3->32->64->128, k3 s2 p1) -> Linear(2048->hidden) -> (mu, logvar) heads."""

    def __init__(self, latent_dim: int = 512, hidden: int = 512):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(64, 128, 3, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2048, hidden),
            nn.ReLU(),
        )
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """Linear(latent->2048) -> (128, 4, 4) -> ConvT to 3x28x28, no output activation."""

    def __init__(self, latent_dim: int = 512):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(latent_dim, 2048), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 3, 2, 1),  # 4 -> 7
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 3, 2, 1, output_padding=1),  # 7 -> 14
            nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 3, 2, 1, output_padding=1),  # 14 -> 28
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, 128, 4, 4))


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
