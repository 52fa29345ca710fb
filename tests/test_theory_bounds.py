"""mopoe_lib.bounds against independent computations."""

import math

import torch

from mopoe_lib.bounds import importance_weighted_bound, kl_to_gaussian, log_weights
from mopoe_lib.experts import kl_normal
from mopoe_lib.linear_gaussian import LinearGaussianModel


def test_kl_to_gaussian_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, dtype=torch.float64, generator=g)
    cov = a @ a.T + 0.5 * torch.eye(3, dtype=torch.float64)
    mu_p = torch.randn(3, dtype=torch.float64, generator=g)
    mu_q = torch.randn(5, 3, dtype=torch.float64, generator=g)
    lv_q = torch.randn(5, 3, dtype=torch.float64, generator=g)
    q = torch.distributions.MultivariateNormal(mu_q, covariance_matrix=torch.diag_embed(lv_q.exp()))
    p = torch.distributions.MultivariateNormal(mu_p, covariance_matrix=cov)
    torch.testing.assert_close(
        kl_to_gaussian(mu_q, lv_q, mu_p, cov), torch.distributions.kl_divergence(q, p)
    )


def test_kl_to_gaussian_reduces_to_the_diagonal_formula():
    mu_q, lv_q = torch.tensor([[0.3, -1.0]]), torch.tensor([[0.2, -0.4]])
    mu_p, lv_p = torch.tensor([0.1, 0.5]), torch.tensor([0.7, -0.1])
    torch.testing.assert_close(
        kl_to_gaussian(mu_q, lv_q, mu_p, torch.diag(lv_p.exp())), kl_normal(mu_q, lv_q, mu_p, lv_p)
    )


def test_eq_1_on_a_full_covariance_posterior():
    model = LinearGaussianModel(latent_dim=2, data_dims=(3, 2), diagonal=False, seed=3)
    _, xs = model.sample(10, torch.Generator().manual_seed(4))
    pm, pc = model.posterior(xs)
    mu_q, lv_q = pm + 0.3, torch.full_like(pm, -0.5)
    gap = kl_to_gaussian(mu_q, lv_q, pm, pc)
    torch.testing.assert_close(
        model.elbo(xs, mu_q, lv_q) + gap, model.log_evidence(xs), rtol=0, atol=1e-10
    )


def test_importance_weighted_bound_k1_is_the_elbo_and_tightens():
    model = LinearGaussianModel(latent_dim=2, data_dims=(3, 3), diagonal=False, seed=1)
    _, xs = model.sample(6, torch.Generator().manual_seed(2))
    pm, _ = model.posterior(xs)
    mu_q, lv_q = pm + 0.4, torch.zeros_like(pm)
    g = torch.Generator().manual_seed(3)
    lw = log_weights(
        model, xs, mu_q, lv_q, torch.randn(20000, 6, 2, dtype=torch.float64, generator=g)
    )
    elbo = model.elbo(xs, mu_q, lv_q)
    se = lw.std(0) / math.sqrt(lw.shape[0])
    assert torch.all((lw.mean(0) - elbo).abs() < 4 * se)  # K = 1
    l1 = importance_weighted_bound(lw.view(-1, 1, 6), dim=1).mean(0)
    l100 = importance_weighted_bound(lw.view(200, 100, 6), dim=1).mean(0)
    assert torch.all(l100 > l1) and torch.all(l100 < model.log_evidence(xs) + 1e-2)
