"""CUB image-caption networks of Shi et al. (iffsid/mmvae, ``vae_cub_image.py`` and
``vae_cub_sent.py``), at a base width that the cpu profile can lower.

Image (3x64x64): four stride-2 convolutions (base 64: 64-128-256-512 channels) to 4x4, and
4x4 convolutions to the latent heads; the decoder mirrors it with transposed convolutions and
a sigmoid. Sentence (32 words): a word embedding (128), read as a 1x32x128 picture by five
convolutions with batch norm (base 32: 32-64-128-128-128) down to 4x4; the decoder mirrors
them back to 32x128 and maps each position to the vocabulary with the transpose of the
encoder's embedding (Shi et al. tie the two) plus a bias, giving logits (32, V).

Words arrive one-hot (32, V), like the library's other text, so the embedding is a linear map
without bias (one-hot times the matrix). Shi et al.'s ``nn.Embedding(..., padding_idx=0)``
holds row 0 (``<exc>``, not ``<pad>``) at zero and untrained; here every row is trained.
"""

from __future__ import annotations

import torch
import torch.nn as nn

IMAGE_SHAPE = (3, 64, 64)
MAX_LENGTH = 32
EMBEDDING = 128
STANDIN_VOCABULARY = 35  # the SyntheticCUB grammar's 32 words plus <exc>, <pad>, <eos>
PAPER_VOCABULARY = 1590  # Shi et al.'s vocabSize for the real captions


def sentence_shape(vocab_size: int) -> tuple[int, int]:
    return (MAX_LENGTH, vocab_size)


def _down(c_in, c_out, kernel=4, stride=2, padding=1, bn=False):
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=not bn)]
    return [*layers, *([nn.BatchNorm2d(c_out)] if bn else []), nn.ReLU()]


def _up(c_in, c_out, kernel=4, stride=2, padding=1, bn=False):
    layers = [nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, bias=not bn)]
    return [*layers, *([nn.BatchNorm2d(c_out)] if bn else []), nn.ReLU()]


class ImageEncoder(nn.Module):
    def __init__(self, latent_dim: int = 64, base: int = 64):
        super().__init__()
        b = base
        self.features = nn.Sequential(*_down(3, b), *_down(b, 2 * b), *_down(2 * b, 4 * b),
                                      *_down(4 * b, 8 * b))  # fmt: skip  # 64 -> 4
        self.mu = nn.Conv2d(8 * b, latent_dim, 4, 1, 0)
        self.logvar = nn.Conv2d(8 * b, latent_dim, 4, 1, 0)

    def forward(self, x):
        h = self.features(x)
        return self.mu(h).flatten(1), self.logvar(h).flatten(1)


class ImageDecoder(nn.Module):
    def __init__(self, latent_dim: int = 64, base: int = 64):
        super().__init__()
        b = base
        self.net = nn.Sequential(*_up(latent_dim, 8 * b, 4, 1, 0), *_up(8 * b, 4 * b),
                                 *_up(4 * b, 2 * b), *_up(2 * b, b),
                                 nn.ConvTranspose2d(b, 3, 4, 2, 1), nn.Sigmoid())  # fmt: skip

    def forward(self, z):
        return self.net(z.view(-1, z.shape[-1], 1, 1))


class SentenceEncoder(nn.Module):
    def __init__(self, latent_dim: int = 64, vocab_size: int = PAPER_VOCABULARY, base: int = 32):
        super().__init__()
        b = base
        self.embedding = nn.Linear(vocab_size, EMBEDDING, bias=False)  # one-hot -> embedding
        self.features = nn.Sequential(
            *_down(1, b, bn=True),  # 32 x 128 -> 16 x 64
            *_down(b, 2 * b, bn=True),  # -> 8 x 32
            *_down(2 * b, 4 * b, bn=True),  # -> 4 x 16
            *_down(4 * b, 4 * b, (1, 4), (1, 2), (0, 1), bn=True),  # -> 4 x 8
            *_down(4 * b, 4 * b, (1, 4), (1, 2), (0, 1), bn=True),  # -> 4 x 4
        )
        self.mu = nn.Conv2d(4 * b, latent_dim, 4, 1, 0, bias=False)
        self.logvar = nn.Conv2d(4 * b, latent_dim, 4, 1, 0, bias=False)

    def forward(self, x):
        h = self.features(self.embedding(x).unsqueeze(1))
        return self.mu(h).flatten(1), self.logvar(h).flatten(1)


class SentenceDecoder(nn.Module):
    """Logits (N, 32, V); the output layer is the transpose of ``embedding`` (tied)."""

    def __init__(self, latent_dim: int, embedding: nn.Linear, base: int = 32):
        super().__init__()
        b = base
        self.net = nn.Sequential(
            *_up(latent_dim, 4 * b, 4, 1, 0, bn=True),  # -> 4 x 4
            *_up(4 * b, 4 * b, (1, 4), (1, 2), (0, 1), bn=True),  # -> 4 x 8
            *_up(4 * b, 4 * b, (1, 4), (1, 2), (0, 1), bn=True),  # -> 4 x 16
            *_up(4 * b, 2 * b, bn=True),  # -> 8 x 32
            *_up(2 * b, b, bn=True),  # -> 16 x 64
            *_up(b, 1),  # -> 32 x 128 (Shi et al. end in a ReLU here)
        )
        self.embedding = embedding  # shared with the encoder: its weight is (128, V)
        self.bias = nn.Parameter(torch.zeros(embedding.weight.shape[1]))

    def forward(self, z):
        h = self.net(z.view(-1, z.shape[-1], 1, 1)).squeeze(1)  # (N, 32, 128)
        return h @ self.embedding.weight + self.bias


class Classifier(nn.Module):
    """An image's attributes (the stand-in): the image encoder's features and one linear
    head per attribute, returning the concatenated logits (sum of the value counts)."""

    def __init__(self, num_outputs: int, base: int = 16):
        super().__init__()
        b = base
        self.net = nn.Sequential(*_down(3, b, bn=True), *_down(b, 2 * b, bn=True),
                                 *_down(2 * b, 4 * b, bn=True), *_down(4 * b, 8 * b, bn=True),
                                 nn.Flatten(), nn.Dropout(0.3),
                                 nn.Linear(8 * b * 16, num_outputs))  # fmt: skip

    def forward(self, x):
        return self.net(x)


FEATURES = 2048  # ResNet-101 image features (data_prep cub --features resnet101)


class FeatureEncoder(nn.Module):
    """Shi et al.'s feature model (``vae_cub_image_ft.py``): 2048 -> 1024 -> 512 -> 256
    (linear layers with ELU), then linear heads to the latent."""

    def __init__(self, latent_dim: int = 64, n: int = FEATURES, hidden: int = 256):
        super().__init__()
        layers, width = [], n
        while width > hidden:
            layers += [nn.Linear(width, width // 2), nn.ELU()]
            width //= 2
        self.features = nn.Sequential(*layers)
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x):
        h = self.features(x)
        return self.mu(h), self.logvar(h)


class FeatureDecoder(nn.Module):
    """The mirror: latent -> 256 -> 512 -> 1024 (ELU), then linear to the 2048 features."""

    def __init__(self, latent_dim: int = 64, n: int = FEATURES, hidden: int = 256):
        super().__init__()
        layers, width, out = [], latent_dim, hidden
        while out < n:
            layers += [nn.Linear(width, out), nn.ELU()]
            width, out = out, out * 2
        self.net = nn.Sequential(*layers, nn.Linear(width, n))

    def forward(self, z):
        return self.net(z)
