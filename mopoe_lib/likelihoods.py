"""Decoder likelihoods p(x_m | z) and per-modality reconstruction weights.

Each ``log_prob`` returns the log-likelihood of one sample summed over all of its
data dimensions, so an input of shape (..., *data_shape) gives (...). A likelihood
object also knows the mean of the distribution, which is what generation shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def _sum_data_dims(t: torch.Tensor, ndim_data: int) -> torch.Tensor:
    return t.sum(dim=tuple(range(t.dim() - ndim_data, t.dim()))) if ndim_data else t


def _full_precision(params: torch.Tensor) -> torch.Tensor:
    """Decoder outputs of an autocast region (float16 / bfloat16) as float32: a sum of
    thousands of per-pixel terms (up to 50 each for a Gaussian with sigma 0.1) overflows
    float16, whose largest value is 65,504."""
    return params.to(torch.promote_types(params.dtype, torch.float32))


class Likelihood(nn.Module):
    """Base class; ``ndim_data`` is the number of trailing data dimensions of x."""

    def __init__(self, ndim_data: int):
        super().__init__()
        self.ndim_data = ndim_data

    def _set_scale(self, scale: float, learn: bool) -> None:
        """``log_scale``: a learned parameter, or a fixed buffer that is exact in float64."""
        if scale <= 0:
            raise ValueError(f"{type(self).__name__} scale must be positive, got {scale}")
        log_scale = torch.tensor(math.log(scale), dtype=torch.float64)  # 0.75 is no float32
        if learn:
            self.log_scale = nn.Parameter(log_scale.float())
        else:
            self.register_buffer("log_scale", log_scale)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Laplace(Likelihood):
    """Laplace(loc, scale); the decoder output is the location.

    The official MoPoE code fixes ``scale = 0.75``; ``learn_scale=True`` learns one
    log-scale per modality instead.
    """

    def __init__(self, ndim_data: int, scale: float = 0.75, learn_scale: bool = False):
        super().__init__(ndim_data)
        self._set_scale(scale, learn_scale)

    def log_prob(self, x, params):
        params = _full_precision(params)
        log_b = self.log_scale.to(params.dtype)
        lp = -math.log(2.0) - log_b - (x - params).abs() * torch.exp(-log_b)
        return _sum_data_dims(lp, self.ndim_data)

    def mean(self, params):
        return params


class Gaussian(Likelihood):
    """N(mean, sigma^2) with a fixed or learned scalar sigma; the decoder output is the mean."""

    def __init__(self, ndim_data: int, scale: float = 1.0, learn_scale: bool = False):
        super().__init__(ndim_data)
        self._set_scale(scale, learn_scale)

    def log_prob(self, x, params):
        params = _full_precision(params)
        log_s = self.log_scale.to(params.dtype)
        lp = (
            -0.5 * math.log(2 * math.pi) - log_s - 0.5 * (x - params).pow(2) * torch.exp(-2 * log_s)
        )
        return _sum_data_dims(lp, self.ndim_data)

    def mean(self, params):
        return params


class Bernoulli(Likelihood):
    """Bernoulli with logits; x in [0, 1] (binary or, as a common relaxation, grey levels)."""

    def log_prob(self, x, params):
        return _sum_data_dims(
            -F.binary_cross_entropy_with_logits(params, x, reduction="none"), self.ndim_data
        )

    def mean(self, params):
        return torch.sigmoid(params)


class Categorical(Likelihood):
    """One categorical per position over the last axis, with logits.

    x is one-hot of shape (..., L, C); the decoder output holds logits of the same
    shape. ``ndim_data`` counts both axes (2 for text). The official code instead
    passes log-probabilities as ``probs`` (see :func:`official_text_log_prob`).
    """

    def log_prob(self, x, params):
        lp = (x * F.log_softmax(params, dim=-1)).sum(-1)
        return _sum_data_dims(lp, self.ndim_data - 1)

    def mean(self, params):
        return F.one_hot(params.argmax(-1), params.shape[-1]).to(params.dtype)


class OfficialCategorical(Likelihood):
    """The official MoPoE code's text likelihood, selectable with ``text_likelihood="official"``.

    The decoder output (logits here, LogSoftmax there) becomes l = log_softmax(params),
    which the official code passes to ``OneHotCategorical`` as ``probs``: torch normalizes
    it, so the probability of class c is l_c / sum_c' l_c' = (-log softmax_c) / sum_c'
    (-log softmax_c'). Training therefore pushes softmax_c of the true class *down*; the
    mode of this distribution (what :meth:`mean` returns, one-hot) is where it is largest.
    """

    def log_prob(self, x, params):
        return official_text_log_prob(x, F.log_softmax(params, dim=-1), self.ndim_data)

    def mean(self, params):
        lp = F.log_softmax(params, dim=-1)
        return F.one_hot(lp.argmin(-1), params.shape[-1]).to(params.dtype)


def official_text_log_prob(
    x: torch.Tensor, log_softmax_out: torch.Tensor, ndim_data: int = 2
) -> torch.Tensor:
    """The official code's text likelihood (see :class:`OfficialCategorical`).

    ``OneHotCategorical(log_softmax(h))`` takes its argument as ``probs``; torch then
    normalizes the negative numbers, so the probability of class c is
    (-log softmax_c) / sum_c' (-log softmax_c'), not softmax_c.
    """
    probs = log_softmax_out / log_softmax_out.sum(-1, keepdim=True)
    return _sum_data_dims((x * torch.log(probs)).sum(-1), ndim_data - 1)


def rec_weights_by_size(sizes: Mapping[str, int] | Sequence[int]) -> torch.Tensor:
    """Reconstruction weights lambda_m = max_m' size_m' / size_m (Appendix B).

    The largest modality gets 1.0 and the others are scaled up by the ratio of data
    dimensions: MNIST-SVHN-Text gives SVHN 1.0, MNIST 3072/784 = 3.92, and text
    3072/8 = 384 when its size is counted as 8 characters, as the official code does.
    """
    values = list(sizes.values()) if isinstance(sizes, Mapping) else list(sizes)
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"sizes must be positive numbers of data dimensions, got {values}")
    top = max(values)
    return torch.tensor([top / v for v in values], dtype=torch.float32)
