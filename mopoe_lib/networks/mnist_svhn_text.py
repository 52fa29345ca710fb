"""MNIST-SVHN-Text networks (reference-implementations §4, ``mnistsvhntext/networks/*``).

MNIST: fully connected, sigmoid output. SVHN: four conv layers, unbounded output. Text:
1-d convolutions over the 8 x 71 one-hot string; the decoder returns logits (the official
code ends in LogSoftmax and feeds it to ``OneHotCategorical`` as ``probs``; see
:func:`mopoe_lib.likelihoods.official_text_log_prob`). Classifiers are the encoders with a
10-way last layer, as Appendix B says ("identical to the encoder except from the last layer").
"""

from __future__ import annotations

import torch
import torch.nn as nn

MNIST_SHAPE = (1, 28, 28)
SVHN_SHAPE = (3, 32, 32)
TEXT_LENGTH, ALPHABET_SIZE = 8, 71
TEXT_SHAPE = (TEXT_LENGTH, ALPHABET_SIZE)


def mnist_features(hidden: int = 400) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU())


def svhn_features() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 4, 2, 1),  # 32 -> 16
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1),  # -> 8
        nn.ReLU(),
        nn.Conv2d(64, 64, 4, 2, 1),  # -> 4
        nn.ReLU(),
        nn.Conv2d(64, 128, 4, 2, 0),  # -> 1
        nn.ReLU(),
        nn.Flatten(),
    )


class _TextFeatures(nn.Module):
    def __init__(self, dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(ALPHABET_SIZE, dim, 1),
            nn.ReLU(),
            nn.Conv1d(dim, dim, 4, 2, 1),  # 8 -> 4
            nn.ReLU(),
            nn.Conv1d(dim, dim, 4, 2, 0),  # 4 -> 1
            nn.ReLU(),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.transpose(-1, -2))  # (N, L, C) -> (N, C, L)


def text_features(dim: int = 128) -> nn.Module:
    return _TextFeatures(dim)


FEATURES = {
    "mnist": (mnist_features, 400),
    "svhn": (svhn_features, 128),
    "text": (text_features, 128),
}


class Encoder(nn.Module):
    """Modality features followed by two linear heads (mu, logvar)."""

    def __init__(self, modality: str, latent_dim: int = 20):
        super().__init__()
        make, width = FEATURES[modality]
        self.features = make()
        self.mu = nn.Linear(width, latent_dim)
        self.logvar = nn.Linear(width, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.mu(h), self.logvar(h)


class MnistDecoder(nn.Module):
    def __init__(self, latent_dim: int = 20, hidden: int = 400):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 784), nn.Sigmoid()
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *MNIST_SHAPE)


class SvhnDecoder(nn.Module):
    def __init__(self, latent_dim: int = 20):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, 1, 0),  # 1 -> 4
            nn.ReLU(),
            nn.ConvTranspose2d(64, 64, 4, 2, 1),  # -> 8
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1),  # -> 16
            nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 4, 2, 1),  # -> 32
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, 128, 1, 1))


class TextDecoder(nn.Module):
    """Returns logits of shape (N, 8, 71)."""

    def __init__(self, latent_dim: int = 20, dim: int = 128):
        super().__init__()
        self.fc = nn.Linear(latent_dim, dim)
        self.deconv = nn.Sequential(
            nn.ConvTranspose1d(dim, dim, 4, 1, 0),  # 1 -> 4
            nn.ReLU(),
            nn.ConvTranspose1d(dim, dim, 4, 2, 1),  # -> 8
            nn.ReLU(),
            nn.Conv1d(dim, ALPHABET_SIZE, 1),
        )
        self.dim = dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, self.dim, 1)
        return self.deconv(h).transpose(-1, -2)


DECODERS = {"mnist": MnistDecoder, "svhn": SvhnDecoder, "text": TextDecoder}


class Classifier(nn.Module):
    """The encoder's feature layers with a 10-way linear layer instead of the heads."""

    def __init__(self, modality: str, num_classes: int = 10):
        super().__init__()
        make, width = FEATURES[modality]
        self.net = nn.Sequential(make(), nn.Dropout(0.5), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
