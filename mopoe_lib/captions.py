"""Sentences of CUB: from the sentence decoder's logits to words and back to text.

The decoder of Shi et al. is not autoregressive: it returns logits for all 32 positions at
once, (..., 32, V). A sentence is read position by position, greedily (the most likely word,
as Shi et al. show their captions) or sampled, and ends at the first ``<eos>``; ``<pad>`` is
never shown. ``<exc>`` stands for a word outside the vocabulary.
"""

from __future__ import annotations

import torch

EXC, PAD, EOS = 0, 1, 2


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The most likely word at every position: (..., L, V) logits or one-hot -> (..., L)."""
    return logits.argmax(-1)


def sample(logits: torch.Tensor, generator: torch.Generator | None = None,
           temperature: float = 1.0) -> torch.Tensor:  # fmt: skip
    """A word drawn at every position from softmax(logits / temperature): (..., L)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    probs = torch.softmax(logits.float() / temperature, -1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])


def truncate(ids) -> list[int]:
    """Word indices up to (not including) the first ``<eos>``, without ``<pad>``."""
    out = []
    for i in torch.as_tensor(ids).tolist():
        if i == EOS:
            break
        if i != PAD:
            out.append(i)
    return out


def to_tokens(ids, words) -> list[str]:
    return [words[i] for i in truncate(ids)]


def to_text(ids, words) -> str:
    """One sentence as text: indices (L,) or one-hot / logits (L, V)."""
    ids = torch.as_tensor(ids)
    return " ".join(to_tokens(ids.argmax(-1) if ids.dim() == 2 else ids, words))
