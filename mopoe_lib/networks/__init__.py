"""Per-dataset encoders, decoders, likelihoods and coherence classifiers.

:func:`build` returns everything a :class:`~mopoe_lib.model.MultimodalVAE` needs for one
dataset; :func:`classifier` returns the network that labels one modality for coherence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..likelihoods import (
    Categorical,
    Gaussian,
    Laplace,
    Likelihood,
    OfficialCategorical,
    rec_weights_by_size,
)
from . import celeba, cub, mnist_svhn_text, polymnist

DATASETS = ("polymnist", "mnist_svhn_text", "celeba", "cub")
MODALITIES = {
    "polymnist": tuple(f"m{k}" for k in range(5)),
    "mnist_svhn_text": ("mnist", "svhn", "text"),
    "celeba": ("img", "text"),
    "cub": ("img", "sent", "feat"),  # feat: ResNet-101 features instead of pixels
}
# The modalities of a model when model.modalities is None (every one, except for CUB: an
# image either as pixels or as features; Shi et al.'s cubIS and cubISft).
DEFAULT_MODALITIES = {**MODALITIES, "cub": ("img", "sent")}
DATA_SHAPES = {
    "polymnist": dict.fromkeys(MODALITIES["polymnist"], polymnist.IMAGE_SHAPE),
    "mnist_svhn_text": {
        "mnist": mnist_svhn_text.MNIST_SHAPE,
        "svhn": mnist_svhn_text.SVHN_SHAPE,
        "text": mnist_svhn_text.TEXT_SHAPE,
    },
    "celeba": {"img": celeba.IMAGE_SHAPE, "text": celeba.TEXT_SHAPE},
    # the sentence's vocabulary is the prepared data's (build's vocab_size)
    "cub": {
        "img": cub.IMAGE_SHAPE,
        "sent": cub.sentence_shape(cub.PAPER_VOCABULARY),
        "feat": (cub.FEATURES,),
    },
}
TEXT_MODALITIES = ("text", "sent")  # one categorical per position
# Official reconstruction weights where they differ from the paper's size rule (Appendix B:
# largest modality 1, others scaled by the ratio of sizes). CelebA's code divides by 64*64
# instead, giving img 1/3 and text 16: the same ratio (48) as the rule, with 1/3 the scale.
OFFICIAL_REC_WEIGHTS = {"celeba": (1 / 3, 16.0)}
# Shi et al.'s CUB (llik_scaling, per modality): the image scaled by 32 / (3 * 64 * 64) (the
# ratio of the size rule, at 1/384 of its scale), the sentence 1, the features 0.002 (README).
OFFICIAL_REC_WEIGHTS_BY_MODALITY = {"cub": {"img": 32 / (3 * 64 * 64), "sent": 1.0,
                                            "feat": 0.002}}  # fmt: skip
IMAGE_LIKELIHOODS = ("laplace", "gaussian")
TEXT_LIKELIHOODS = ("categorical", "official")


@dataclass
class Networks:
    modalities: tuple[str, ...]
    encoders: dict[str, nn.Module]
    decoders: dict[str, nn.Module]
    likelihoods: dict[str, Likelihood]
    rec_weights: torch.Tensor
    data_shapes: dict[str, tuple[int, ...]]


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def rec_weights(dataset: str, rule="size", modalities: Sequence[str] | None = None):
    """lambda_m per modality: ``"size"`` (paper rule), ``"official"``, ``"ones"`` or a list."""
    _check_dataset(dataset)
    mods = tuple(modalities or DEFAULT_MODALITIES[dataset])
    if not isinstance(rule, str):
        w = torch.tensor([float(v) for v in rule])
        if w.shape != (len(mods),):
            raise ValueError(f"rec_weights needs one value per modality {mods}, got {list(rule)}")
        return w
    if rule == "ones":
        return torch.ones(len(mods))
    if rule == "official" and dataset in OFFICIAL_REC_WEIGHTS:
        return torch.tensor(OFFICIAL_REC_WEIGHTS[dataset])
    if rule == "official" and dataset in OFFICIAL_REC_WEIGHTS_BY_MODALITY:
        return torch.tensor([OFFICIAL_REC_WEIGHTS_BY_MODALITY[dataset][m] for m in mods])
    if rule in ("size", "official"):
        # Text counts as its number of characters (8 or 256) or words (32), as in the
        # official code and Shi et al.'s llik_scaling.
        sizes = [
            DATA_SHAPES[dataset][m][0] if m in TEXT_MODALITIES else _numel(DATA_SHAPES[dataset][m])
            for m in mods
        ]
        return rec_weights_by_size(sizes)
    raise ValueError(f"rec_weights must be 'size', 'official', 'ones' or a list, got {rule!r}")


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def build(
    dataset: str,
    *,
    latent_dim: int,
    style_dim: int = 0,
    width: int = 128,
    laplace_scale: float = 0.75,
    rec_weight_rule="size",
    modalities: Sequence[str] | None = None,
    width_multiplier: float = 1.0,
    image_likelihood: str = "laplace",
    gaussian_scale: float = 0.1,
    text_likelihood: str = "categorical",
    vocab_size: int | None = None,
) -> Networks:
    """The networks of one dataset at the given latent size (style only for CelebA).

    ``width_multiplier`` scales the PolyMNIST networks (1.0: official). ``image_likelihood``
    is the likelihood of every image modality: ``"laplace"`` (the paper's, scale
    ``laplace_scale``) or ``"gaussian"`` (fixed standard deviation ``gaussian_scale``).
    ``text_likelihood``: ``"categorical"`` (with logits) or ``"official"``
    (:class:`~mopoe_lib.likelihoods.OfficialCategorical`, the official code's).
    ``vocab_size``: the words of CUB's sentences (the prepared data's vocabulary); ``width``
    is CUB's image base width (Shi et al. 64), half of it the sentence networks' (32).
    """
    if text_likelihood not in TEXT_LIKELIHOODS:
        raise ValueError(f"text_likelihood must be one of {TEXT_LIKELIHOODS}, got "
                         f"{text_likelihood!r}")  # fmt: skip
    _check_dataset(dataset)
    if image_likelihood not in IMAGE_LIKELIHOODS:
        raise ValueError(f"image_likelihood must be one of {IMAGE_LIKELIHOODS}, got "
                         f"{image_likelihood!r}")  # fmt: skip
    if width_multiplier != 1.0 and dataset != "polymnist":
        raise ValueError("width_multiplier is implemented for the polymnist networks only")
    mods = tuple(modalities or DEFAULT_MODALITIES[dataset])
    unknown = [m for m in mods if m not in MODALITIES[dataset]]
    if unknown:
        raise ValueError(f"{dataset} has modalities {MODALITIES[dataset]}, not {unknown}")
    if style_dim and dataset != "celeba":
        raise ValueError("modality-specific (style) latents are implemented for celeba only")
    shapes = dict(DATA_SHAPES[dataset])
    if dataset == "cub":
        if not isinstance(vocab_size, int) or vocab_size < 4:
            raise ValueError(f"cub needs vocab_size, the number of words of the prepared "
                             f"vocabulary (at least 4), got {vocab_size!r}")  # fmt: skip
        shapes["sent"] = cub.sentence_shape(vocab_size)
    enc, dec, lik = {}, {}, {}
    for m in mods:
        if dataset == "polymnist":
            enc[m] = polymnist.Encoder(latent_dim, width_multiplier)
            dec[m] = polymnist.Decoder(latent_dim, width_multiplier)
        elif dataset == "mnist_svhn_text":
            enc[m] = mnist_svhn_text.Encoder(m, latent_dim)
            dec[m] = mnist_svhn_text.DECODERS[m](latent_dim)
        elif dataset == "cub" and m == "img":
            enc[m] = cub.ImageEncoder(latent_dim, width)
            dec[m] = cub.ImageDecoder(latent_dim, width)
        elif dataset == "cub" and m == "feat":
            enc[m] = cub.FeatureEncoder(latent_dim)
            dec[m] = cub.FeatureDecoder(latent_dim)
        elif dataset == "cub":
            enc[m] = cub.SentenceEncoder(latent_dim, vocab_size, max(1, width // 2))
            dec[m] = cub.SentenceDecoder(latent_dim, enc[m].embedding, max(1, width // 2))
        else:
            enc[m] = celeba.Encoder(m, latent_dim, style_dim, width)
            dec[m] = celeba.DECODERS[m](latent_dim, style_dim, width)
        shape = shapes[m]
        if m in TEXT_MODALITIES:
            lik[m] = OfficialCategorical(2) if text_likelihood == "official" else Categorical(2)
        elif image_likelihood == "gaussian":
            lik[m] = Gaussian(len(shape), scale=gaussian_scale)
        else:
            lik[m] = Laplace(len(shape), scale=laplace_scale)
    return Networks(
        modalities=mods,
        encoders=enc,
        decoders=dec,
        likelihoods=lik,
        rec_weights=rec_weights(dataset, rec_weight_rule, mods),
        data_shapes={m: shapes[m] for m in mods},
    )


CLASSIFIERS = ("official", "cnn")


def classifier(dataset: str, modality: str, num_outputs: int = 10, width: int = 128,
               arch: str = "official") -> nn.Module:  # fmt: skip
    """The coherence classifier of one modality (multi-label logits for CelebA).

    ``arch``: ``"official"`` (the official code's networks) or ``"cnn"`` (a larger network,
    PolyMNIST only: :class:`~mopoe_lib.networks.polymnist.ClassifierCNN`).
    """
    _check_dataset(dataset)
    if arch not in CLASSIFIERS:
        raise ValueError(f"classifier arch must be one of {CLASSIFIERS}, got {arch!r}")
    if arch == "cnn" and dataset != "polymnist":
        raise ValueError("the 'cnn' coherence classifier is implemented for polymnist only")
    if dataset == "polymnist":
        return (
            polymnist.ClassifierCNN(num_outputs)
            if arch == "cnn"
            else polymnist.Classifier(num_outputs)
        )
    if dataset == "mnist_svhn_text":
        return mnist_svhn_text.Classifier(modality, num_outputs)
    if dataset == "cub":
        if modality != "img":
            raise ValueError("cub's captions are read by parsing, not by a classifier")
        return cub.Classifier(num_outputs, width)
    return celeba.Classifier(modality, num_outputs, width)
