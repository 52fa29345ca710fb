"""Bimodal CelebA networks with residual blocks (reference-implementations §5, ``celeba/networks``).

Image (3x64x64) and text (256 characters, one-hot over 71) encoders reach 5*width features
(640 at the official width 128); linear heads give the content and style posteriors, stacked
as one vector [content, style]. Decoders mirror the encoders. A residual block computes
``a * shortcut(x) + b * body(x)`` with the official a = 2, b = 0.3, pre-activation BatchNorm
and Dropout 0.5. Kernel sizes follow the official layout; the paddings are chosen so that
every shape comes out exactly (64 and 256), where the official code passes ``output_size``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

IMAGE_SHAPE = (3, 64, 64)
TEXT_LENGTH, ALPHABET_SIZE = 256, 71
TEXT_SHAPE = (TEXT_LENGTH, ALPHABET_SIZE)
RES_A, RES_B = 2.0, 0.3


class ResBlock(nn.Module):
    """BN-ReLU-conv1x1-Dropout-BN-ReLU-conv(k, s, p)-Dropout, plus a projected shortcut."""

    def __init__(self, cin, cout, k, s, p, *, dims: int = 2, transpose: bool = False):
        super().__init__()
        conv = {(2, False): nn.Conv2d, (2, True): nn.ConvTranspose2d,
                (1, False): nn.Conv1d, (1, True): nn.ConvTranspose1d}[(dims, transpose)]  # fmt: skip
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        drop = nn.Dropout2d if dims == 2 else nn.Dropout1d
        self.body = nn.Sequential(
            bn(cin),
            nn.ReLU(),
            (nn.Conv2d if dims == 2 else nn.Conv1d)(cin, cin, 1, bias=False),
            drop(0.5),
            bn(cin),
            nn.ReLU(),
            conv(cin, cout, k, s, p, bias=False),
            drop(0.5),
        )
        self.shortcut = nn.Sequential(conv(cin, cout, k, s, p, bias=False), bn(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return RES_A * self.shortcut(x) + RES_B * self.body(x)


def image_features(width: int = 128) -> nn.Module:
    w = width
    return nn.Sequential(
        nn.Conv2d(3, w, 3, 2, 2, bias=False),  # 64 -> 33
        ResBlock(w, 2 * w, 4, 2, 1),  # -> 16
        ResBlock(2 * w, 3 * w, 4, 2, 1),  # -> 8
        ResBlock(3 * w, 4 * w, 4, 2, 1),  # -> 4
        ResBlock(4 * w, 5 * w, 4, 2, 0),  # -> 1
        nn.Flatten(),
    )


class _TextFeatures(nn.Module):
    def __init__(self, width: int = 128):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv1d(ALPHABET_SIZE, w, 4, 2, 1, bias=False),  # 256 -> 128
            ResBlock(w, 2 * w, 4, 2, 1, dims=1),  # -> 64
            ResBlock(2 * w, 3 * w, 4, 2, 1, dims=1),  # -> 32
            ResBlock(3 * w, 4 * w, 4, 2, 1, dims=1),  # -> 16
            ResBlock(4 * w, 5 * w, 4, 2, 1, dims=1),  # -> 8
            ResBlock(5 * w, 5 * w, 4, 2, 1, dims=1),  # -> 4
            ResBlock(5 * w, 5 * w, 4, 2, 0, dims=1),  # -> 1
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.transpose(-1, -2))


FEATURES = {"img": image_features, "text": _TextFeatures}


class Encoder(nn.Module):
    """Features -> (mu, logvar), each of size content_dim + style_dim ([content, style])."""

    def __init__(self, modality: str, latent_dim: int = 32, style_dim: int = 32, width: int = 128):
        super().__init__()
        self.features = FEATURES[modality](width)
        self.mu = nn.Linear(5 * width, latent_dim + style_dim)
        self.logvar = nn.Linear(5 * width, latent_dim + style_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.mu(h), self.logvar(h)


class ImageDecoder(nn.Module):
    """z = [content, style] -> 3x64x64 Laplace location (unbounded)."""

    def __init__(self, latent_dim: int = 32, style_dim: int = 32, width: int = 128):
        super().__init__()
        w = self.width = width
        self.fc = nn.Linear(latent_dim + style_dim, 5 * w)
        self.net = nn.Sequential(
            ResBlock(5 * w, 4 * w, 4, 1, 0, transpose=True),  # 1 -> 4
            ResBlock(4 * w, 3 * w, 4, 2, 1, transpose=True),  # -> 8
            ResBlock(3 * w, 2 * w, 4, 2, 1, transpose=True),  # -> 16
            ResBlock(2 * w, w, 4, 2, 1, transpose=True),  # -> 32
            nn.ConvTranspose2d(w, 3, 4, 2, 1),  # -> 64
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, 5 * self.width, 1, 1))


class TextDecoder(nn.Module):
    """z = [content, style] -> logits of shape (N, 256, 71)."""

    def __init__(self, latent_dim: int = 32, style_dim: int = 32, width: int = 128):
        super().__init__()
        w = self.width = width
        self.fc = nn.Linear(latent_dim + style_dim, 5 * w)
        t = {"dims": 1, "transpose": True}
        self.net = nn.Sequential(
            ResBlock(5 * w, 5 * w, 4, 1, 0, **t),  # 1 -> 4
            ResBlock(5 * w, 5 * w, 4, 2, 1, **t),  # -> 8
            ResBlock(5 * w, 4 * w, 4, 2, 1, **t),  # -> 16
            ResBlock(4 * w, 3 * w, 4, 2, 1, **t),  # -> 32
            ResBlock(3 * w, 2 * w, 4, 2, 1, **t),  # -> 64
            ResBlock(2 * w, w, 4, 2, 1, **t),  # -> 128
            nn.ConvTranspose1d(w, ALPHABET_SIZE, 4, 2, 1),  # -> 256
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, 5 * self.width, 1)).transpose(-1, -2)


DECODERS = {"img": ImageDecoder, "text": TextDecoder}


class Classifier(nn.Module):
    """Encoder features -> one logit per attribute (multi-label)."""

    def __init__(self, modality: str, num_outputs: int = 40, width: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            FEATURES[modality](width), nn.Dropout(0.5), nn.Linear(5 * width, num_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
