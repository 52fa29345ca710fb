"""Tiny synthetic data and models shared by the trainer, model and evaluation tests."""

from __future__ import annotations

import torch
import torch.nn as nn

from mopoe_lib.data import from_tensors
from mopoe_lib.likelihoods import Gaussian
from mopoe_lib.model import MultimodalVAE


def polymnist_like(n: int, seed: int = 0, modalities: int = 5):
    """Images whose mean brightness pattern depends on the label, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    patterns = torch.rand(10, 3, 28, 28, generator=g)
    data = {
        f"m{k}": (0.7 * patterns[labels] + 0.3 * torch.rand(n, 3, 28, 28, generator=g))
        for k in range(modalities)
    }
    return from_tensors(data, labels, description=f"synthetic polymnist-like, seed {seed}")


class OneHotEncoder(nn.Module):
    """An 'encoder' whose posterior sits sharply at the input (D = input size)."""

    def forward(self, x):
        return x, torch.full_like(x, -12.0)


class Identity(nn.Module):
    def forward(self, z):
        return z


def label_copy_model(num_mod: int = 3, method: str = "mopoe") -> MultimodalVAE:
    """Encoders copy x, decoders copy z: generated samples repeat the inputs' label code."""
    mods = [f"m{k}" for k in range(num_mod)]
    return MultimodalVAE(
        mods,
        {m: OneHotEncoder() for m in mods},
        {m: Identity() for m in mods},
        {m: Gaussian(1, scale=1.0) for m in mods},
        {m: (10,) for m in mods},
        latent_dim=10,
        method=method,
    )


def label_copy_data(n: int, num_mod: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    x = 5.0 * torch.nn.functional.one_hot(labels, 10).float()
    return from_tensors({f"m{k}": x.clone() for k in range(num_mod)}, labels)


def mst_like(n: int, seed: int = 0):
    """MNIST-SVHN-Text-shaped data: label-dependent images and a one-hot 'text' of the label."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    mnist = torch.rand(10, 1, 28, 28, generator=g)[labels] * 0.8
    svhn = 0.6 * torch.rand(10, 3, 32, 32, generator=g)[labels]
    svhn = svhn + 0.4 * torch.rand(n, 3, 32, 32, generator=g)
    chars = (labels.view(-1, 1) + torch.arange(8).view(1, -1)) % 71
    text = torch.nn.functional.one_hot(chars, 71).float()
    return from_tensors({"mnist": mnist, "svhn": svhn, "text": text}, labels)


def random_batch(model: MultimodalVAE, b: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of random inputs in the model's format (one-hot text, images in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    x = {}
    for m, shape in model.data_shapes.items():
        if m == "text":
            idx = torch.randint(71, (b, shape[0]), generator=g)
            x[m] = torch.nn.functional.one_hot(idx, 71).float()
        else:
            x[m] = torch.rand(b, *shape, generator=g)
    return x
