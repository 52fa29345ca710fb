"""Gaussian experts: product, KL and densities against brute force and Monte Carlo."""

import math

import pytest
import torch

from mopoe_lib import experts as E


def test_log_normal_matches_torch_distributions():
    torch.manual_seed(0)
    mu, lv, z = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    ref = torch.distributions.Normal(mu, torch.exp(0.5 * lv)).log_prob(z).sum(-1)
    torch.testing.assert_close(E.log_normal(z, mu, lv), ref)
    torch.testing.assert_close(
        E.log_std_normal(z), torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    )


@pytest.mark.parametrize(
    ("z_shape", "mu_shape", "lv_shape"),
    [((4, 3), (4, 3), (4, 3)), ((1, 5, 3), (6, 5, 3), (6, 5, 3)), ((2, 1, 5, 3), (6, 5, 3), (5, 3)),
     ((5, 1, 3), (1, 4, 3), (1, 4, 3))],
)  # fmt: skip
def test_log_normal_gradients_pass_gradcheck_under_broadcasting(z_shape, mu_shape, lv_shape):
    """log_normal's backward pass is written out (experts._LogNormal): check it against
    finite differences, with the broadcasting that the objectives use."""
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True)
            for s in (z_shape, mu_shape, lv_shape)]  # fmt: skip
    assert torch.autograd.gradcheck(E.log_normal, args)
    z, mu, lv = (a.detach() for a in args)
    ref = -0.5 * (math.log(2 * math.pi) + lv + (z - mu) ** 2 * torch.exp(-lv)).sum(-1)
    torch.testing.assert_close(E.log_normal(z, mu, lv), ref)


@pytest.mark.parametrize("prior_expert", [False, True])
def test_product_of_experts_against_brute_force_density_product(prior_expert):
    """Multiply the densities on a fine grid, normalize, and read off mean and variance."""
    mu = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64).view(3, 1, 1)
    lv = torch.tensor([0.2, -0.5, 1.1], dtype=torch.float64).view(3, 1, 1)
    pm, plv = E.product_of_experts(mu, lv, prior_expert=prior_expert)
    z = torch.linspace(-10, 10, 400_001, dtype=torch.float64).view(-1, 1)
    log_p = sum(E.log_normal(z, mu[m, 0], lv[m, 0]) for m in range(3))
    if prior_expert:
        log_p = log_p + E.log_std_normal(z)
    p = torch.softmax(log_p, dim=0)
    mean = (p * z[:, 0]).sum()
    var = (p * (z[:, 0] - mean) ** 2).sum()
    assert pm.item() == pytest.approx(mean.item(), abs=1e-8)
    assert math.exp(plv.item()) == pytest.approx(var.item(), rel=1e-6)


def test_product_is_sharper_than_every_expert_and_precisions_add():
    torch.manual_seed(1)
    mu, lv = torch.randn(4, 8, 5, dtype=torch.float64), torch.randn(4, 8, 5, dtype=torch.float64)
    _, plv = E.product_of_experts(mu, lv)
    assert torch.all(plv < lv.min(0).values)
    torch.testing.assert_close(torch.exp(-plv), torch.exp(-lv).sum(0))


def test_kl_std_normal_against_monte_carlo_and_torch():
    torch.manual_seed(2)
    mu, lv = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * lv))
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(E.kl_std_normal(mu, lv), ref)
    z = q.sample((200_000,))
    mc = (E.log_normal(z, mu, lv) - E.log_std_normal(z)).mean(0)
    se = (E.log_normal(z, mu, lv) - E.log_std_normal(z)).std(0) / math.sqrt(z.shape[0])
    assert torch.all((mc - E.kl_std_normal(mu, lv)).abs() < 5 * se)


def test_kl_normal_reduces_to_kl_std_normal():
    torch.manual_seed(3)
    mu, lv = torch.randn(5, 6), torch.randn(5, 6)
    zeros = torch.zeros_like(mu)
    torch.testing.assert_close(E.kl_normal(mu, lv, zeros, zeros), E.kl_std_normal(mu, lv))


def test_mixture_log_prob_against_explicit_sum():
    torch.manual_seed(4)
    mu, lv, z = torch.randn(3, 7, 2), torch.randn(3, 7, 2), torch.randn(7, 2)
    dens = torch.stack([E.log_normal(z, mu[k], lv[k]).exp() for k in range(3)]).mean(0)
    torch.testing.assert_close(E.mixture_log_prob(z, mu, lv), dens.log())


def test_product_of_experts_is_finite_for_extreme_logvars():
    mu = torch.randn(5, 4, 3)
    lv = torch.tensor([-30.0, 30.0, -30.0, 0.0, 30.0]).view(5, 1, 1).expand(5, 4, 3).clone()
    pm, plv = E.product_of_experts(mu, lv, prior_expert=True)
    assert torch.isfinite(pm).all() and torch.isfinite(plv).all()
    # the two precise experts (precision e^30) dominate: variance ~ e^-30 / 2
    torch.testing.assert_close(plv, torch.full_like(plv, -30.0 - math.log(2.0)), atol=1e-4, rtol=0)
