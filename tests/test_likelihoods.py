"""Likelihoods against torch.distributions, and the reconstruction weights of Appendix B."""

import math

import pytest
import torch
import torch.distributions as D

from mopoe_lib import likelihoods as L


def test_laplace_fixed_and_learned_scale():
    torch.manual_seed(0)
    x, loc = torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    lik = L.Laplace(ndim_data=3)
    torch.testing.assert_close(
        lik.log_prob(x, loc), D.Laplace(loc, 0.75).log_prob(x).sum((1, 2, 3))
    )
    learned = L.Laplace(ndim_data=3, scale=0.5, learn_scale=True)
    assert any(p.requires_grad for p in learned.parameters())
    torch.testing.assert_close(
        learned.log_prob(x, loc), D.Laplace(loc, 0.5).log_prob(x).sum((1, 2, 3))
    )


def test_gaussian_and_bernoulli():
    torch.manual_seed(1)
    x, m = torch.rand(6, 10), torch.randn(6, 10)
    torch.testing.assert_close(
        L.Gaussian(1, scale=0.3).log_prob(x, m), D.Normal(m, 0.3).log_prob(x).sum(-1)
    )
    xb = (x > 0.5).float()
    torch.testing.assert_close(
        L.Bernoulli(1).log_prob(xb, m), D.Bernoulli(logits=m).log_prob(xb).sum(-1)
    )


def test_categorical_with_logits_is_a_proper_distribution():
    torch.manual_seed(2)
    logits = torch.randn(3, 8, 71)
    x = torch.nn.functional.one_hot(torch.randint(71, (3, 8)), 71).float()
    ref = D.OneHotCategorical(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(L.Categorical(ndim_data=2).log_prob(x, logits), ref)


def test_official_text_likelihood_is_not_the_categorical():
    """OneHotCategorical(log_softmax(h)) normalizes negative log-probabilities as probs."""
    torch.manual_seed(3)
    logits = torch.randn(2, 8, 71)
    x = torch.nn.functional.one_hot(torch.randint(71, (2, 8)), 71).float()
    log_sm = torch.log_softmax(logits, -1)
    ref = D.OneHotCategorical(probs=log_sm, validate_args=False).log_prob(x).sum(-1)
    official = L.official_text_log_prob(x, log_sm)
    torch.testing.assert_close(official, ref)
    assert not torch.allclose(official, L.Categorical(2).log_prob(x, logits))
    # the most likely class under the quirk is the LEAST likely under softmax
    p_quirk = log_sm / log_sm.sum(-1, keepdim=True)
    assert torch.equal(p_quirk.argmax(-1), logits.argmin(-1))


def test_rec_weights_by_size_appendix_b():
    w = L.rec_weights_by_size({"mnist": 784, "svhn": 3072, "text": 8})
    assert w.tolist() == pytest.approx([3072 / 784, 1.0, 384.0])
    assert math.isclose(w[0].item(), 3.918, rel_tol=1e-3)
    with pytest.raises(ValueError, match="positive"):
        L.rec_weights_by_size([0, 3])


def test_half_precision_decoder_outputs_are_summed_in_float32():
    # 3,072 pixels of up to 0.5 * 100 each overflow float16's 65,504 if summed in float16
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    params = (1 - x).half()  # far from x: large per-pixel terms
    lik = L.Gaussian(3, scale=0.1)
    lp = lik.log_prob(x, params)
    assert lp.dtype == torch.float32 and torch.isfinite(lp).all()
    torch.testing.assert_close(lp, lik.log_prob(x, params.float()))
