"""The abstract means of chapter 4 and the explorer's pure callback, without a browser."""

import numpy as np
import pytest
import torch

from mopoe_lib import means
from mopoe_lib.experts import product_of_experts

X = np.linspace(-20.0, 20.0, 40001)
DX = X[1] - X[0]


def test_arithmetic_f_mean_is_the_mixture():
    mus, sigmas = [-1.0, 0.5, 2.0], [0.8, 1.2, 0.5]
    dens = np.stack([means.normal_pdf(X, m, s) for m, s in zip(mus, sigmas, strict=True)])
    am = means.f_mean(dens, lambda p: 3.0 * p - 2.0, lambda y: (y + 2.0) / 3.0)
    np.testing.assert_allclose(am, means.mixture_pdf(X, mus, sigmas), rtol=0, atol=1e-12)
    assert am.sum() * DX == pytest.approx(1.0, abs=1e-9)


def test_normalized_geometric_mean_is_the_tempered_product():
    mus, sigmas = [-1.0, 0.5, 2.0], [0.8, 1.2, 0.5]
    dens = np.stack([means.normal_pdf(X, m, s) for m, s in zip(mus, sigmas, strict=True)])
    with np.errstate(divide="ignore"):  # the far tails underflow to 0: log 0 = -inf, exp -> 0
        gm = means.f_mean(dens, np.log, np.exp)
    mass = gm.sum() * DX
    assert mass < 1.0
    mu_g, s_g = means.geometric_mean_gaussian(mus, sigmas)
    np.testing.assert_allclose(gm / mass, means.normal_pdf(X, mu_g, s_g), atol=1e-10)
    mu_p, s_p = means.gaussian_product(mus, sigmas)
    assert mu_g == pytest.approx(mu_p) and s_g**2 == pytest.approx(3 * s_p**2)


def test_gaussian_product_matches_the_library_and_the_grid():
    mus, sigmas = [0.3, -2.0], [0.4, 1.7]
    mu_p, s_p = means.gaussian_product(mus, sigmas)
    prod = means.normal_pdf(X, mus[0], sigmas[0]) * means.normal_pdf(X, mus[1], sigmas[1])
    np.testing.assert_allclose(prod / (prod.sum() * DX), means.normal_pdf(X, mu_p, s_p), atol=1e-10)
    t_mu, t_lv = product_of_experts(
        torch.tensor(mus, dtype=torch.float64).view(2, 1),
        torch.log(torch.tensor(sigmas, dtype=torch.float64).view(2, 1) ** 2),
    )
    assert t_mu.item() == pytest.approx(mu_p, rel=1e-12)
    assert np.exp(0.5 * t_lv.item()) == pytest.approx(s_p, rel=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_product_sharper_mixture_not(seed):
    rng = np.random.default_rng(seed)
    p = int(rng.integers(2, 5))
    mus, sigmas = rng.uniform(-3, 3, p), rng.uniform(0.1, 3, p)
    assert means.gaussian_product(mus, sigmas)[1] < sigmas.min()
    assert means.mixture_moments(mus, sigmas)[1] >= sigmas.min() ** 2


def test_explore_returns_consistent_numbers():
    r = means.explore(mu1=-1.0, sigma1=0.5, mu2=1.0, sigma2=1.0, num_experts=2)
    assert r["experts"].shape == (2, r["x"].size)
    assert r["subsets"].shape == (3, 2)  # {1}, {2}, {1,2}
    s = r["stats"]
    assert s["poe_var"] == pytest.approx(1 / (1 / 0.25 + 1.0))
    assert s["poe_var"] < s["min_expert_var"] <= s["moe_var"]
    dx = r["x"][1] - r["x"][0]
    for key in ("poe", "moe", "mopoe"):
        assert r[key].sum() * dx == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("choice", "target"), [("unimodal", "moe"), ("full set", "poe")])
def test_subset_choice_reduces_to_the_special_cases(choice, target):
    r = means.explore(num_experts=3, subsets=choice)
    np.testing.assert_allclose(r["mopoe"], r[target], rtol=0, atol=1e-12)


def test_explore_rejects_bad_input():
    with pytest.raises(ValueError, match="subset choice"):
        means.explore(subsets="pairs")
    with pytest.raises(ValueError, match="num_experts"):
        means.explore(num_experts=4)


def test_the_callback_through_ipywidgets_interactive():
    widgets = pytest.importorskip("ipywidgets")
    ui = widgets.interactive(
        means.explore,
        mu1=(-4.0, 4.0, 0.1),
        sigma1=(0.2, 3.0, 0.1),
        mu2=(-4.0, 4.0, 0.1),
        sigma2=(0.2, 3.0, 0.1),
        mu3=(-4.0, 4.0, 0.1),
        sigma3=(0.2, 3.0, 0.1),
        num_experts=[1, 2, 3],
        subsets=list(means.SUBSET_CHOICES),
        grid=widgets.fixed(None),
    )
    first = ui.result["stats"]["poe_mean"]
    ui.kwargs_widgets[0].value = 3.0  # move mu1: traitlets re-run the callback
    assert ui.kwargs["mu1"] == 3.0
    assert ui.result["stats"]["poe_mean"] != first
    expected = means.gaussian_product(
        [3.0, ui.kwargs["mu2"]], [ui.kwargs["sigma1"], ui.kwargs["sigma2"]]
    )
    if ui.kwargs["num_experts"] == 2:
        assert ui.result["stats"]["poe_mean"] == pytest.approx(expected[0])
    ui.kwargs_widgets[7].value = "full set"
    np.testing.assert_allclose(ui.result["mopoe"], ui.result["poe"], atol=1e-12)


def test_draw_labels_axes():
    import matplotlib

    matplotlib.use("Agg")
    ax = means.draw(means.explore())
    assert ax.get_xlabel() and ax.get_ylabel()
    assert len(ax.get_legend().get_texts()) == 2 + 3
