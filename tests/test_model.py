"""MultimodalVAE: decoder batching, masks, every objective, posteriors and generation."""

import math

import pytest
import torch
from helpers import random_batch

from mopoe_lib import objectives as O
from mopoe_lib import subsets as S
from mopoe_lib.config import make_config
from mopoe_lib.experts import log_normal
from mopoe_lib.fusion import subset_posteriors
from mopoe_lib.model import METHODS, GaussianPosterior, MixturePosterior, build_model


def _model(dataset="mnist_svhn_text", method="mopoe", **over):
    torch.manual_seed(0)
    cfg = make_config(dataset, method, "smoke", {"model.importance_samples": 2, **over})
    return build_model(cfg)


def test_decode_loglik_runs_each_decoder_once_and_matches_a_loop():
    model = _model()
    x = random_batch(model)
    calls = {m: 0 for m in model.modalities}
    for m, dec in model.decoders.items():
        dec.register_forward_hook(lambda *_, m=m: calls.__setitem__(m, calls[m] + 1))
    z = torch.randn(4, 5, model.latent_dim)
    need = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        ll = model.decode_loglik(x, z, need)
    assert ll.shape == (3, 4, 5)
    assert calls == {"mnist": 1, "svhn": 1, "text": 1}
    for t in range(4):
        for i, m in enumerate(model.modalities):
            if need[t, i]:
                ref = model.likelihoods[m].log_prob(x[m], model.decoders[m](z[t]))
                torch.testing.assert_close(ll[i, t], ref, rtol=1e-5, atol=1e-3)
            else:
                assert torch.all(ll[i, t] == 0)


@pytest.mark.parametrize("dataset", ["mnist_svhn_text", "celeba"])
def test_cpu_decoder_chunks_give_the_same_values_and_gradients(dataset):
    """Many codes are decoded in calls of at most decode_chunk_rows rows on the CPU; the
    result must not depend on it. CelebA's decoders hold BatchNorm: in training mode they
    are never split (the statistics would change), in eval mode they are."""
    model = _model(dataset, "mmvae_dreg")
    x = random_batch(model, b=6)
    need = torch.ones(7, len(model.modalities), dtype=torch.bool)
    need[2, 0] = False
    style = torch.randn(len(model.modalities), 6, model.style_dim) if model.style_dim else None
    results = {}
    for training in (True, False):
        model.train(training)
        for rows in (None, 12, 5):  # one call; 2 groups per call; 1 group (5 < batch)
            model.decode_chunk_rows = rows
            calls = []
            hooks = [d.register_forward_hook(lambda *_, c=calls: c.append(1))
                     for d in model.decoders.values()]  # fmt: skip
            z = torch.randn(7, 6, model.latent_dim, generator=torch.Generator().manual_seed(1))
            z.requires_grad_()
            for module in model.modules():  # dropout off: the same network every call
                if isinstance(module, torch.nn.Dropout | torch.nn.Dropout2d | torch.nn.Dropout1d):
                    module.eval()
            ll = model.decode_loglik(x, z, need, style)
            ll.sum().backward()
            for h in hooks:
                h.remove()
            results[training, rows] = (ll.detach(), z.grad, len(calls))
    for training in (True, False):
        ref, ref_grad, one_call = results[training, None]
        assert one_call == len(model.modalities)
        for rows in (12, 5):
            ll, grad, n_calls = results[training, rows]
            split = not (training and model._decoders_have_batch_stats)
            expected = {12: 4, 5: 7} if split else {12: 1, 5: 1}  # calls per decoder
            # the first decoder skips group 2, leaving 6 groups: 3 calls of 2, or 6 of 1
            first = {12: 3, 5: 6}[rows] if split else 1
            assert n_calls == first + (len(model.modalities) - 1) * expected[rows]
            torch.testing.assert_close(ll, ref, rtol=1e-5, atol=1e-3)
            torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dataset", ["mnist_svhn_text", "celeba"])
def test_every_objective_is_finite_and_trains_every_network(dataset, method):
    model = _model(dataset, method)
    obj = model.objective(random_batch(model, b=4))
    assert obj.value.shape == (4,) and torch.isfinite(obj.loss())
    obj.loss().backward()
    for name, enc in model.encoders.items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters()), name
    for name, dec in model.decoders.items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.parameters()), name


def test_official_switches_reach_the_objective():
    model = _model(**{"model.prior_expert": "full", "model.sampling": "batch_split",
                      "model.kl": "subset_average"})  # fmt: skip
    x = random_batch(model, b=14)
    torch.manual_seed(1)
    obj = model.objective(x)
    enc = model.encode(x)
    torch.manual_seed(1)
    ref = O.mopoe(enc.mu, enc.logvar, lambda z, need: model.decode_loglik(x, z, need),
                  prior_expert="full", sampling="batch_split", kl="subset_average",
                  beta=model.beta, rec_weights=model.rec_weights)  # fmt: skip
    torch.testing.assert_close(obj.value, ref.value)
    assert obj.extras["components"].tolist() == O.batch_split_components(14, 7).tolist()


def test_style_objective_is_mopoe_with_style():
    model = _model("celeba", "mopoe")
    x = random_batch(model, b=4)
    model.eval()  # dropout off, so both evaluations see the same networks
    torch.manual_seed(3)
    obj = model.objective(x)
    enc = model.encode(x)

    def dec(c, s, need):
        return model.decode_loglik(x, c, need, s)

    torch.manual_seed(3)
    ref = O.mopoe_with_style(enc.mu, enc.logvar, enc.style_mu, enc.style_logvar, dec,
                             beta=model.beta, beta_content=model.beta_content,
                             beta_style=model.beta_style, style_weights=model.style_weights,
                             rec_weights=model.rec_weights)  # fmt: skip
    torch.testing.assert_close(obj.value, ref.value)
    torch.testing.assert_close(obj.kl, ref.kl)


def test_missing_modalities_are_zero_filled_and_masked():
    model = _model()
    x = random_batch(model, b=4)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=torch.bool)
    x_nan = {m: v.clone() for m, v in x.items()}
    for i, m in enumerate(model.modalities):
        x_nan[m][~mask[:, i]] = float("nan")
    torch.manual_seed(0)
    a = model.objective(x_nan, mask)
    torch.manual_seed(0)
    b = model.objective(x, mask)
    assert torch.isfinite(a.value).all()
    torch.testing.assert_close(a.value, b.value)
    assert (a.rec[~mask.t()] == 0).all()
    # a modality left out of the batch is missing for every sample
    obj = model.objective({"mnist": x["mnist"], "text": x["text"]})
    assert torch.isfinite(obj.value).all() and (obj.rec[1] == 0).all()


def test_posteriors_of_all_subsets():
    model = _model()
    x = random_batch(model, b=3)
    enc = model.encode(x)
    subsets = S.powerset(3)
    post = model.posterior(x)
    assert isinstance(post, GaussianPosterior)
    ref = subset_posteriors(enc.mu, enc.logvar, subsets, "none")
    torch.testing.assert_close(post.mu, ref[0])
    mvae = _model(method="mvae")
    full = mvae.posterior(x, S.full(3))
    torch.testing.assert_close(
        full.mu,
        subset_posteriors(*(lambda e: (e.mu, e.logvar))(mvae.encode(x)), S.full(3), "all")[0],
    )


def test_mixture_posterior_density_mean_and_samples():
    g = torch.Generator().manual_seed(0)
    mu, lv = torch.randn(3, 2, 4, generator=g), torch.randn(3, 2, 4, generator=g) * 0.3
    subsets = torch.tensor([[1, 0, 0], [1, 0, 1], [1, 1, 1]], dtype=torch.bool)
    post = MixturePosterior(mu, lv, subsets)
    z = torch.randn(5, 3, 2, 4, generator=g)
    lp = post.log_prob(z)
    for k, row in enumerate(subsets.tolist()):
        members = [m for m, on in enumerate(row) if on]
        comp = torch.stack([log_normal(z[:, k], mu[m], lv[m]) for m in members])
        torch.testing.assert_close(lp[:, k], torch.logsumexp(comp, 0) - math.log(len(members)))
        torch.testing.assert_close(post.mean()[k], mu[members].mean(0))
    torch.manual_seed(0)
    s = post.sample(4000)
    assert s.shape == (4000, 3, 2, 4)
    torch.testing.assert_close(s[:, 1].mean(0), mu[[0, 2]].mean(0), atol=0.12, rtol=0)


def test_generation_shapes():
    model = _model()
    x = random_batch(model, b=3)
    gen = model.conditional_generate(x, S.powerset(3), n=2)
    assert gen["svhn"].shape == (2, 7, 3, 3, 32, 32)
    assert gen["text"].shape == (2, 7, 3, 8, 71)
    assert model.sample(5)["mnist"].shape == (5, 1, 28, 28)
    assert model.reconstruct(x)["svhn"].shape == (3, 3, 32, 32)
    mm = _model(method="mmvae")
    assert isinstance(mm.posterior(x), MixturePosterior)
    cel = _model("celeba")
    assert cel.sample(2)["img"].shape == (2, 3, 64, 64)


@pytest.mark.parametrize("method", ["mvae", "mopoe", "mmvae"])
def test_huge_encoder_log_variances_stay_finite(method):
    """MVAE training drives expert log-variances up (the prior expert caps the posterior);
    the soft bound keeps fusion and KLs finite in float32."""
    model = _model(method=method)
    for enc in model.encoders.values():
        torch.nn.init.constant_(enc.logvar.bias, 300.0)
    obj = model.objective(random_batch(model, b=4))
    assert torch.isfinite(obj.loss())
    obj.loss().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
