"""All-subset fusion: vectorized against a per-subset loop, masks, prior-expert options."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mopoe_lib import subsets as S
from mopoe_lib.fusion import subset_posteriors, subset_posteriors_loop, subset_validity


def test_powerset_order_and_size():
    ps = S.powerset(3)
    assert ps.shape == (7, 3)
    assert S.names(ps, ["M", "S", "T"]) == ["M", "S", "T", "M,S", "M,T", "S,T", "M,S,T"]
    assert S.powerset(5).shape == (31, 5)
    assert S.powerset(2, include_empty=True)[0].sum() == 0


@settings(max_examples=60, deadline=None)
@given(
    num_mod=st.integers(1, 5),
    batch=st.integers(1, 4),
    dim=st.integers(1, 5),
    prior=st.sampled_from(["none", "all", "full"]),
    seed=st.integers(0, 2**31 - 1),
    keep=st.lists(st.booleans(), min_size=31, max_size=31),
)
def test_vectorized_fusion_equals_per_subset_loop(num_mod, batch, dim, prior, seed, keep):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(num_mod, batch, dim, generator=g, dtype=torch.float64)
    lv = 3 * torch.randn(num_mod, batch, dim, generator=g, dtype=torch.float64)
    ps = S.powerset(num_mod)
    chosen = ps[[i for i in range(ps.shape[0]) if keep[i % len(keep)]] or [0]]
    a_mu, a_lv = subset_posteriors(mu, lv, chosen, prior)
    b_mu, b_lv = subset_posteriors_loop(mu, lv, chosen, prior)
    torch.testing.assert_close(a_mu, b_mu)
    torch.testing.assert_close(a_lv, b_lv)


@settings(max_examples=40, deadline=None)
@given(
    num_mod=st.integers(1, 5),
    prior=st.sampled_from(["none", "all", "full"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_fusion_gradients_equal_the_per_subset_loop(num_mod, prior, seed):
    """The fused core has a hand-written backward pass; autograd through the loop of
    plain products of experts is the reference."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(num_mod, 3, 4, generator=g, dtype=torch.float64)
    lv = 3 * torch.randn(num_mod, 3, 4, generator=g, dtype=torch.float64)
    ps = S.powerset(num_mod)
    w_mu, w_lv = (torch.randn(ps.shape[0], 3, 4, generator=g, dtype=torch.float64)
                  for _ in range(2))  # fmt: skip
    grads = []
    for fn in (subset_posteriors, subset_posteriors_loop):
        m, v = mu.clone().requires_grad_(), lv.clone().requires_grad_()
        out_mu, out_lv = fn(m, v, ps, prior)
        ((out_mu * w_mu).sum() + (out_lv * w_lv).sum()).backward()
        grads.append((m.grad, v.grad))
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("prior", ["none", "all", "full"])
@pytest.mark.parametrize("which", ["both", "mu", "logvar"])
def test_fusion_passes_gradcheck_with_a_mask(prior, which):
    g = torch.Generator().manual_seed(3)
    mu = torch.randn(3, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    lv = torch.randn(3, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 1, 0]], dtype=torch.bool)
    ps = S.powerset(3)

    def f(m, v):
        out = subset_posteriors(m, v, ps, prior, mask)
        return {"both": out, "mu": out[0], "logvar": out[1]}[which]

    assert torch.autograd.gradcheck(f, (mu, lv))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), prior=st.sampled_from(["none", "all", "full"]))
def test_extreme_logvars_give_finite_fusion_and_gradients(seed, prior):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(5, 3, 4, generator=g).requires_grad_()
    lv = (60 * torch.rand(5, 3, 4, generator=g) - 30).requires_grad_()
    m_k, lv_k = subset_posteriors(mu, lv, S.powerset(5), prior)
    assert torch.isfinite(m_k).all() and torch.isfinite(lv_k).all()
    (m_k.sum() + lv_k.sum()).backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(lv.grad).all()


@pytest.mark.parametrize("prior", ["none", "full"])
def test_spreads_beyond_float32_range_stay_finite_and_vague_experts_fade(prior):
    """An MVAE expert drifting to logvar +237 next to a precise one (logvar -60): the
    vague expert's precision is negligible, so every subset containing the precise expert
    is the precise expert, and nothing overflows."""
    mu = torch.randn(3, 2, 4)
    lv = torch.tensor([-60.0, 237.0, 0.0]).view(3, 1, 1).expand(3, 2, 4).clone()
    ps = S.powerset(3)
    m_k, lv_k = subset_posteriors(mu, lv, ps, prior)
    assert torch.isfinite(m_k).all() and torch.isfinite(lv_k).all()
    with_precise = ps[:, 0]
    torch.testing.assert_close(lv_k[with_precise], torch.full_like(lv_k[with_precise], -60.0))
    torch.testing.assert_close(m_k[with_precise], mu[0].expand_as(m_k[with_precise]))


def test_prior_expert_options():
    torch.manual_seed(0)
    mu, lv = torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    ps = S.powerset(3)
    _, lv_none = subset_posteriors(mu, lv, ps, "none")
    _, lv_full = subset_posteriors(mu, lv, ps, "full")
    _, lv_all = subset_posteriors(mu, lv, ps, "all")
    torch.testing.assert_close(lv_none[:-1], lv_full[:-1])  # proper subsets: no prior
    torch.testing.assert_close(lv_full[-1], lv_all[-1])  # full set: with prior
    torch.testing.assert_close(torch.exp(-lv_all), torch.exp(-lv_none) + 1.0)


def test_mask_fuses_each_sample_over_its_present_modalities():
    torch.manual_seed(1)
    mu, lv = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 1]], dtype=torch.bool)
    ps = S.powerset(3)
    m_k, lv_k = subset_posteriors(mu, lv, ps, "none", mask)
    for b in range(4):
        for k, row in enumerate(ps.tolist()):
            members = [m for m in range(3) if row[m] and mask[b, m]]
            if not members:
                continue
            ref_m, ref_lv = subset_posteriors(
                mu[members, b : b + 1], lv[members, b : b + 1], S.full(len(members))
            )
            torch.testing.assert_close(m_k[k, b], ref_m[0, 0])
            torch.testing.assert_close(lv_k[k, b], ref_lv[0, 0])
    valid = subset_validity(ps, mask)
    assert valid.shape == (7, 4)
    assert not valid[0, 2] and valid[1, 2]  # sample 2 has only modality 1


def test_missing_expert_gets_zero_gradient_and_nan_does_not_leak():
    torch.manual_seed(2)
    mu, lv = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    mu[1, 0] = float("nan")
    lv[1, 0] = float("nan")
    mu.requires_grad_()
    lv.requires_grad_()
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[0, 1] = False
    m_k, lv_k = subset_posteriors(mu, lv, S.powerset(3), "full", mask)
    assert torch.isfinite(m_k).all() and torch.isfinite(lv_k).all()
    (m_k.pow(2).sum() + lv_k.sum()).backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(lv.grad).all()
    assert mu.grad[1, 0].abs().sum() == 0 and lv.grad[1, 0].abs().sum() == 0
    assert mu.grad[1, 1].abs().sum() > 0


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(2, 3, dtype=torch.bool)[:0], "empty"),
        (torch.ones(2, 4, dtype=torch.bool), "shape"),
        (torch.rand(2, 3), "boolean"),
    ],
)
def test_bad_subsets_raise_clear_errors(bad, message):
    mu = torch.zeros(3, 2, 4)
    with pytest.raises((ValueError, TypeError), match=message):
        subset_posteriors(mu, mu, bad)


def test_bad_expert_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\(M, B, D\)"):
        subset_posteriors(torch.zeros(3, 4), torch.zeros(3, 4), S.powerset(3))
    with pytest.raises(ValueError, match="differ in shape"):
        subset_posteriors(torch.zeros(3, 2, 4), torch.zeros(3, 2, 5), S.powerset(3))
    with pytest.raises(TypeError, match="floating"):
        subset_posteriors(
            torch.zeros(3, 2, 4, dtype=torch.long),
            torch.zeros(3, 2, 4, dtype=torch.long),
            S.powerset(3),
        )
    with pytest.raises(ValueError, match="mask"):
        subset_posteriors(
            torch.zeros(3, 2, 4),
            torch.zeros(3, 2, 4),
            S.powerset(3),
            mask=torch.ones(3, 2, dtype=torch.bool),
        )


def test_empty_subset_needs_the_prior_expert():
    mu, lv = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    ps = S.powerset(2, include_empty=True)
    m_k, lv_k = subset_posteriors(mu, lv, ps, "all")
    torch.testing.assert_close(m_k[0], torch.zeros(3, 4))  # the empty product is the prior
    torch.testing.assert_close(lv_k[0], torch.zeros(3, 4))
    assert not subset_validity(ps, None, "none")[0].any()


def test_subset_names_helpers():
    mods = ["m0", "m1", "m2"]
    t = S.from_names([["m0"], ["m1", "m2"]], mods)
    assert S.names(t, mods) == ["m0", "m1,m2"]
    with pytest.raises(ValueError, match="unknown modalities"):
        S.from_names([["m9"]], mods)
    with pytest.raises(ValueError, match="empty subset"):
        S.from_names([[]], mods)
