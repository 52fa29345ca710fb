"""Subsets of modalities, the index set of the MoPoE mixture.

A subset X_k of the M modalities is a boolean row of length M. A collection of
K subsets is a boolean tensor of shape (K, M). The paper writes the mixture over
the powerset P(X) with 2^M members; the empty set carries no information about X
(its product of experts is the prior itself, or is undefined without a prior
expert), so the models use the 2^M - 1 non-empty subsets, like the official code.

Order: by size, then lexicographically by modality index (singletons, pairs, ...,
the full set last), the order of ``itertools.combinations`` and of the official code.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch


def powerset(num_modalities: int, *, include_empty: bool = False) -> torch.Tensor:
    """All subsets of ``num_modalities`` modalities as a boolean (K, M) tensor."""
    if num_modalities < 1:
        raise ValueError(f"num_modalities must be >= 1, got {num_modalities}")
    rows = []
    for size in range(0 if include_empty else 1, num_modalities + 1):
        for combo in itertools.combinations(range(num_modalities), size):
            row = [False] * num_modalities
            for m in combo:
                row[m] = True
            rows.append(row)
    return torch.tensor(rows, dtype=torch.bool)


def unimodal(num_modalities: int) -> torch.Tensor:
    """The M singleton subsets (the MMVAE mixture)."""
    return torch.eye(num_modalities, dtype=torch.bool)


def full(num_modalities: int) -> torch.Tensor:
    """The full set alone (the MVAE posterior), shape (1, M)."""
    return torch.ones(1, num_modalities, dtype=torch.bool)


def from_names(names: Sequence[Sequence[str]], modalities: Sequence[str]) -> torch.Tensor:
    """Build a (K, M) subset tensor from lists of modality names.

    >>> from_names([["m0"], ["m0", "m2"]], ["m0", "m1", "m2"]).int().tolist()
    [[1, 0, 0], [1, 0, 1]]
    """
    index = {name: i for i, name in enumerate(modalities)}
    rows = []
    for subset in names:
        unknown = [n for n in subset if n not in index]
        if unknown:
            raise ValueError(
                f"subset {list(subset)} names unknown modalities {unknown}; "
                f"the modalities are {list(modalities)}"
            )
        if not subset:
            raise ValueError("an empty subset has no experts; name at least one modality")
        row = [False] * len(modalities)
        for n in subset:
            row[index[n]] = True
        rows.append(row)
    return torch.tensor(rows, dtype=torch.bool)


def names(subsets: torch.Tensor, modalities: Sequence[str], sep: str = ",") -> list[str]:
    """Human-readable names of subsets, e.g. ``"M,S"``; the empty set is ``"{}"``."""
    out = []
    for row in subsets.tolist():
        members = [modalities[m] for m, on in enumerate(row) if on]
        out.append(sep.join(members) if members else "{}")
    return out


def check_subsets(subsets: torch.Tensor, num_modalities: int) -> torch.Tensor:
    """Validate a (K, M) subset tensor and return it as bool; errors say how to fix it."""
    if not isinstance(subsets, torch.Tensor):
        raise TypeError(
            f"subsets must be a boolean torch.Tensor of shape (K, {num_modalities}), "
            f"got {type(subsets).__name__}; build one with mopoe_lib.subsets.powerset"
        )
    if subsets.dim() != 2 or subsets.shape[1] != num_modalities:
        raise ValueError(
            f"subsets must have shape (K, M) with M={num_modalities} modalities, "
            f"got {tuple(subsets.shape)}"
        )
    if subsets.dtype != torch.bool:
        if subsets.is_floating_point() or not torch.all((subsets == 0) | (subsets == 1)):
            raise TypeError(f"subsets must be boolean (or 0/1 integers), got {subsets.dtype}")
        subsets = subsets.bool()
    if subsets.shape[0] == 0:
        raise ValueError("subsets is empty: give at least one subset of modalities")
    return subsets


def sizes(subsets: torch.Tensor) -> torch.Tensor:
    """Number of modalities in each subset, shape (K,)."""
    return subsets.sum(dim=1)
