"""Every special case and identity of Part I against a reference written here, in the test.

A check whose two sides call the same library function cannot fail when that function is
wrong. Each reference below re-derives its quantity from the formulas alone: an explicit
product of Gaussian experts (the prior written in when the MVAE needs it), a mixture density
summed component by component, a per-draw loop over the mixture's components with the same
noise as the library, and the closed-form KLs. Only the linear-Gaussian model's decoder
(`log_lik`) and data are shared; no function under test appears on both sides.
tests/test_mutations.py plants the mistakes these tests exist for and checks they fail.
"""

import math

import pytest
import torch

from mopoe_lib import objectives as O
from mopoe_lib import subsets as S
from mopoe_lib.bounds import importance_weighted_bound
from mopoe_lib.experts import kl_std_normal, mixture_log_prob
from mopoe_lib.fusion import subset_posteriors
from mopoe_lib.linear_gaussian import LinearGaussianModel

M, B, D = 3, 12, 2


# ---------------------------------------------------------------------------
# references, written from the formulas


def ref_log_normal(z, mu, var):
    """log N(z; mu, diag(var)), summed over the last dimension."""
    return (-0.5 * (math.log(2 * math.pi) + torch.log(var) + (z - mu) ** 2 / var)).sum(-1)


def ref_log_prior(z):
    return ref_log_normal(z, torch.zeros_like(z), torch.ones_like(z))


def ref_kl_to_prior(mu, var):
    """KL(N(mu, diag(var)) || N(0, I)) = 1/2 sum_d (mu^2 + var - 1 - log var)."""
    return 0.5 * (mu**2 + var - 1.0 - torch.log(var)).sum(-1)


def ref_product(mu, var, members, with_prior):
    """Product of the experts in ``members`` (and of N(0, I) if ``with_prior``):
    precisions add, the mean is precision-weighted. mu, var: (M, B, D)."""
    precision = torch.zeros_like(mu[0]) + (1.0 if with_prior else 0.0)
    weighted = torch.zeros_like(mu[0])
    for m in members:
        precision = precision + 1.0 / var[m]
        weighted = weighted + mu[m] / var[m]
    return weighted / precision, 1.0 / precision


def ref_mixture_log_density(z, comps, weights):
    """log sum_k w_k N(z; mu_k, var_k), one component at a time."""
    total = 0.0
    for (mu_k, var_k), w in zip(comps, weights, strict=True):
        total = total + w * torch.exp(ref_log_normal(z, mu_k, var_k))
    return torch.log(total)


def members_of(row):
    return [m for m, on in enumerate(row.tolist()) if on]


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def setup():
    torch.set_default_dtype(torch.float64)
    try:
        model = LinearGaussianModel(
            latent_dim=D, data_dims=(3, 4, 3), noise_std=(0.6, 0.9, 1.2), seed=0
        )
        _, xs = model.sample(B, torch.Generator().manual_seed(1))
        mu, lv = model.likelihood_experts(xs)
        g = torch.Generator().manual_seed(2)
        mu = mu + 0.5 * torch.randn(mu.shape, generator=g)
        lv = lv + 0.5 * torch.randn(lv.shape, generator=g)
    finally:
        torch.set_default_dtype(torch.float32)
    return model, xs, mu, lv


def ll_all(model, xs, z):
    """sum_m log p(x_m | z) for z of shape (B, D): the decoder, shared by both sides."""
    return model.log_lik(xs, z.unsqueeze(0))[:, 0].sum(0)


# ---------------------------------------------------------------------------
# building blocks


def test_kl_std_normal_closed_form():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 4, dtype=torch.float64, generator=g)
    lv = 2 * torch.randn(5, 4, dtype=torch.float64, generator=g)
    torch.testing.assert_close(
        kl_std_normal(mu, lv), ref_kl_to_prior(mu, lv.exp()), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("prior", ["none", "all", "full"])
def test_fusion_matches_explicit_product(setup, prior):
    _, _, mu, lv = setup
    subsets = S.powerset(M)
    mu_k, lv_k = subset_posteriors(mu, lv, subsets, prior)
    for k, row in enumerate(subsets):
        with_prior = prior == "all" or (prior == "full" and bool(row.all()))
        m_ref, v_ref = ref_product(mu, lv.exp(), members_of(row), with_prior)
        torch.testing.assert_close(mu_k[k], m_ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(lv_k[k].exp(), v_ref, rtol=1e-12, atol=0)


def test_mixture_log_prob_matches_hand_written(setup):
    _, _, mu, lv = setup
    z = torch.randn(7, B, D, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    comps = [(mu[m], lv[m].exp()) for m in range(M)]
    torch.testing.assert_close(
        mixture_log_prob(z, mu.unsqueeze(1), lv.unsqueeze(1)), ref_mixture_log_density(z, comps, [1 / M] * M),
        rtol=0, atol=1e-12,
    )  # fmt: skip
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    torch.testing.assert_close(
        mixture_log_prob(z, mu.unsqueeze(1), lv.unsqueeze(1), torch.log(w).view(M, 1, 1).expand(M, 7, B)),
        ref_mixture_log_density(z, comps, w.tolist()),
        rtol=0, atol=1e-12,
    )  # fmt: skip


def test_importance_weighted_bound_reference():
    log_w = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    ref = torch.log(torch.exp(log_w).mean(0))
    torch.testing.assert_close(importance_weighted_bound(log_w, dim=0), ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------
# the objectives, per draw, with the library's noise


def test_mvae_joint_matches_explicit_product_with_prior(setup):
    """L_PoE of Eq. (7): q is p(z) times every expert, the prior written in here."""
    model, xs, mu, lv = setup
    eps = torch.randn(1, B, D, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    obj = O.mvae(mu, lv, model.decode_loglik(xs), variant="joint", eps=eps)
    m_q, v_q = ref_product(mu, lv.exp(), range(M), with_prior=True)
    z = m_q + v_q.sqrt() * eps[0]
    ref = ll_all(model, xs, z) - ref_kl_to_prior(m_q, v_q)
    torch.testing.assert_close(obj.value, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("prior", ["none", "full"])
def test_mopoe_matches_per_draw_reference(setup, prior):
    """L_MoPoE of Eq. (6), one code per sample from its drawn component: the mixture has
    weight 1/(2^M - 1) on every non-empty subset."""
    model, xs, mu, lv = setup
    subsets = S.powerset(M)
    K = subsets.shape[0]
    g = torch.Generator().manual_seed(6)
    comp = torch.randint(K, (B,), generator=g)
    eps = torch.randn(B, D, dtype=torch.float64, generator=g)
    obj = O.mopoe(mu, lv, model.decode_loglik(xs), prior_expert=prior, components=comp, eps=eps)
    comps = [
        ref_product(mu, lv.exp(), members_of(row), prior == "full" and bool(row.all()))
        for row in subsets
    ]
    m_s = torch.stack([comps[int(c)][0][b] for b, c in enumerate(comp)])
    v_s = torch.stack([comps[int(c)][1][b] for b, c in enumerate(comp)])
    z = m_s + v_s.sqrt() * eps
    log_q = ref_mixture_log_density(z, comps, [1 / (2**M - 1)] * K)
    ref = ll_all(model, xs, z) + ref_log_prior(z) - log_q
    torch.testing.assert_close(obj.value, ref, rtol=0, atol=1e-10)
    # stratified: one code from every component, averaged
    eps_k = torch.randn(K, B, D, dtype=torch.float64, generator=g)
    obj = O.mopoe(mu, lv, model.decode_loglik(xs), prior_expert=prior, sampling="stratified",
                  eps=eps_k)  # fmt: skip
    ref = 0.0
    for k, (m_k, v_k) in enumerate(comps):
        z = m_k + v_k.sqrt() * eps_k[k]
        log_q = ref_mixture_log_density(z, comps, [1 / K] * K)
        ref = ref + (ll_all(model, xs, z) + ref_log_prior(z) - log_q) / K
    torch.testing.assert_close(obj.value, ref, rtol=0, atol=1e-10)


def test_subset_elbo_average_matches_reference(setup):
    """Eq. (21): (1/K) sum_k [E_{q_k} log p(X|z) - KL(q_k || p)], the KL in closed form."""
    model, xs, mu, lv = setup
    subsets = S.powerset(M)
    K = subsets.shape[0]
    eps = torch.randn(K, B, D, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    obj = O.subset_elbo_average(mu, lv, model.decode_loglik(xs), eps=eps)
    ref = 0.0
    for k, row in enumerate(subsets):
        m_k, v_k = ref_product(mu, lv.exp(), members_of(row), False)
        z = m_k + v_k.sqrt() * eps[k]
        ref = ref + (ll_all(model, xs, z) - ref_kl_to_prior(m_k, v_k)) / K
    torch.testing.assert_close(obj.value, ref, rtol=0, atol=1e-10)


def _mmvae_log_w(model, xs, mu, lv, eps):
    """log w_{m,k} = log p(X, z_{m,k}) - log (1/M) sum_j q(z_{m,k} | x_j), (M, K, B)."""
    comps = [(mu[j], lv[j].exp()) for j in range(M)]
    out = torch.empty(eps.shape[:3], dtype=torch.float64)
    for m in range(M):
        for k in range(eps.shape[1]):
            z = mu[m] + lv[m].exp().sqrt() * eps[m, k]
            out[m, k] = (
                ll_all(model, xs, z) + ref_log_prior(z)
                - ref_mixture_log_density(z, comps, [1 / M] * M)
            )  # fmt: skip
    return out


@pytest.mark.parametrize(("K", "estimator"), [(1, "elbo"), (4, "elbo"), (4, "iwae"), (4, "dreg")])
def test_mmvae_matches_per_draw_reference(setup, K, estimator):
    """Eq. (9) stratified, and Shi et al.'s bound (1/M) sum_m log (1/K) sum_k w_{m,k}."""
    model, xs, mu, lv = setup
    eps = torch.randn(M, K, B, D, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    obj = O.mmvae(mu, lv, model.decode_loglik(xs), K=K, estimator=estimator, eps=eps)
    log_w = _mmvae_log_w(model, xs, mu, lv, eps)
    if estimator == "elbo":
        ref = log_w.mean((0, 1))
    else:
        ref = torch.log(torch.exp(log_w).mean(1)).mean(0)
    torch.testing.assert_close(obj.value, ref, rtol=0, atol=1e-10)


def test_dreg_gradient_matches_hand_written(setup):
    """DReG as in Shi et al.'s code: q's parameters detached inside log q, and the pathwise
    gradient of every log w_{m,k} weighted by the squared normalized weight w~_{m,k}^2."""
    model, xs, mu0, lv0 = setup
    K = 4
    eps = torch.randn(M, K, B, D, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    mu, lv = mu0.clone().requires_grad_(), lv0.clone().requires_grad_()
    O.mmvae(mu, lv, model.decode_loglik(xs), K=K, estimator="dreg", eps=eps).loss().backward()

    mu_r, lv_r = mu0.clone().requires_grad_(), lv0.clone().requires_grad_()
    comps = [(mu0[j], lv0[j].exp()) for j in range(M)]  # detached: no score term
    surrogate = 0.0
    log_w = _mmvae_log_w(model, xs, mu0, lv0, eps)
    w_tilde = torch.softmax(log_w, dim=1)  # over k within each stratum
    for m in range(M):
        for k in range(K):
            z = mu_r[m] + (0.5 * lv_r[m]).exp() * eps[m, k]
            lw = (
                ll_all(model, xs, z)
                + ref_log_prior(z)
                - ref_mixture_log_density(z, comps, [1 / M] * M)
            )
            surrogate = surrogate + w_tilde[m, k] ** 2 * lw / M
    (-surrogate.mean()).backward()
    torch.testing.assert_close(mu.grad, mu_r.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(lv.grad, lv_r.grad, rtol=1e-9, atol=1e-12)
