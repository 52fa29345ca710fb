"""The official presets against transcriptions of the official code, in float64.

Each ``official_*`` function below re-states, in this file's own words, what a reference
implementation computes (read from thomassutter/MoPoE, iffsid/mmvae; see
book/appendix/official_code.md): the same loops over subsets and modalities, the same
torch.distributions, the same reductions. A tiny model (linear encoders and decoders) built
from ``make_config(..., preset="official")`` and the transcription see the same inputs, the
same networks and the same noise; the losses and the gradients of every parameter must agree
to float64 precision. The noise is shared by replacing the library's noise draws.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.distributions as dist
import torch.nn as nn

from mopoe_lib import objectives as O
from mopoe_lib import subsets as S
from mopoe_lib.config import PRESETS, ConfigError, make_config
from mopoe_lib.likelihoods import Categorical, Laplace, OfficialCategorical
from mopoe_lib.model import MultimodalVAE, soft_bound

torch.set_default_dtype(torch.float32)
F64 = torch.float64
TEXT = (4, 6)  # length, alphabet of the toy text modality
DATA = 7  # size of the toy "image" modalities
# float64 round-off of the compared computations (measured maxima are in the appendix)
TOL = 1e-10


class Enc(nn.Module):
    def __init__(self, n_in: int, d: int):
        super().__init__()
        self.lin, self.d = nn.Linear(n_in, 2 * d), d

    def forward(self, x):
        h = self.lin(x.flatten(1))
        return h[:, : self.d], h[:, self.d :]


class Dec(nn.Module):
    def __init__(self, d: int, shape):
        super().__init__()
        self.shape = tuple(shape)
        self.lin = nn.Linear(d, math.prod(self.shape))

    def forward(self, z):
        return self.lin(z).view(-1, *self.shape)


def _names(num_mod, text):
    return [f"m{i}" for i in range(num_mod - 1)] + (["text"] if text else [f"m{num_mod - 1}"])


def tiny_model(cfg, num_mod: int, d: int = 3, text: bool = False, seed: int = 0):
    """A MultimodalVAE with cfg's switches and linear networks, float64."""
    torch.manual_seed(seed)
    mc, names = cfg.model, _names(num_mod, text)
    shapes = {m: TEXT if m == "text" else (DATA,) for m in names}
    lik = {}
    for m in names:
        if m != "text":
            lik[m] = Laplace(1, scale=0.75)
        else:
            lik[m] = OfficialCategorical(2) if mc.text_likelihood == "official" else Categorical(2)
    lam = [1.0 + 0.5 * i for i in range(num_mod)]  # distinct lambda_m, so misplacing one shows
    model = MultimodalVAE(
        names, {m: Enc(math.prod(shapes[m]), d) for m in names},
        {m: Dec(d, shapes[m]) for m in names}, lik, shapes, latent_dim=d, method=cfg.method,
        rec_weights=lam, beta=mc.beta, prior_expert=mc.prior_expert, sampling=mc.sampling,
        kl=mc.kl, mvae_variant=mc.mvae_variant, importance_samples=mc.importance_samples,
        logvar_bound=mc.logvar_bound, dreg_grad=mc.dreg_grad, mmvae_bound=mc.mmvae_bound,
        mmvae_elbo=mc.mmvae_elbo, experts=mc.experts, posterior_scale=mc.posterior_scale,
        learn_prior_scale=mc.learn_prior_scale, split_rows=mc.batch_split_rows,
        variance_eps=mc.variance_eps, mvae_rec_weights=mc.mvae_rec_weights,
    ).double()  # fmt: skip
    if mc.learn_prior_scale:  # away from the initial 0, so its gradient path matters
        with torch.no_grad():
            model.prior_logits.copy_(0.3 * torch.randn(d, dtype=F64))
    return model


def toy_batch(model, b: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = {}
    for m in model.modalities:
        if m == "text":
            idx = torch.randint(TEXT[1], (b, TEXT[0]), generator=g)
            x[m] = nn.functional.one_hot(idx, TEXT[1]).to(F64)
        else:
            x[m] = torch.rand(b, DATA, generator=g, dtype=F64)
    return x


def _grads(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params)


def compare(model, loss_lib, loss_off):
    """max |difference| of the losses and of every parameter gradient."""
    g_lib, g_off = _grads(model, loss_lib), _grads(model, loss_off)
    diff = float((loss_lib - loss_off).detach().abs())
    gdiff = max(float((a - b).abs().max()) for a, b in zip(g_lib, g_off, strict=True))
    return diff, gdiff


class FixedNoise:
    """Stands in for the library's noise draws: hands out given tensors in order."""

    def __init__(self, *tensors):
        self.queue = list(tensors)

    def __call__(self, shape, batch_dim, *, like, generator=None):
        t = self.queue.pop(0)
        assert tuple(t.shape) == tuple(shape), (tuple(t.shape), tuple(shape))
        return t.to(like.dtype)


# ---------------------------------------------------------------------------
# thomassutter/MoPoE, transcribed


def off_poe(mus, logvars, eps=1e-8):
    var = torch.exp(logvars) + eps
    prec = 1.0 / var
    return (mus * prec).sum(0) / prec.sum(0), torch.log(1.0 / prec.sum(0))


def off_kl(mu, logvar, b):  # calc_kl_divergence with norm_value = B
    return -0.5 * torch.sum(1 - logvar.exp() - mu.pow(2) + logvar) / b


def off_log_prob(model, m, params, x):  # Modality.calc_log_prob (summed, not yet / B)
    if m == "text":  # OneHotCategorical(log_softmax) with the log-probs as probs
        d = dist.OneHotCategorical(probs=nn.functional.log_softmax(params, -1),
                                   validate_args=False)  # fmt: skip
        return d.log_prob(x).sum()
    return dist.Laplace(params, torch.tensor(0.75, dtype=F64)).log_prob(x).sum()


def off_split(mus, logvars):  # utils.mixture_component_selection, float32 weights
    k, b = mus.shape[:2]
    w = (1 / float(k)) * torch.ones(k)
    w = w / w.sum()
    start, rows_mu, rows_lv = 0, [], []
    for i in range(k):
        end = b if i == k - 1 else start + int(torch.floor(b * w[i]))
        rows_mu.append(mus[i, start:end])
        rows_lv.append(logvars[i, start:end])
        start = end
    return torch.cat(rows_mu), torch.cat(rows_lv)


def official_mopoe(model, x, noise, beta):
    """The joint_elbo loss of one batch: PoE per subset (prior expert in the full set only),
    batch split, all decoders on the same z, the mean of the subset KLs."""
    names = list(model.modalities)
    b = x[names[0]].shape[0]
    enc = {m: model.encoders[m](x[m]) for m in names}
    mus, lvs = [], []
    for n in range(1, len(names) + 1):
        for sub in itertools.combinations(names, n):
            mu = torch.stack([enc[m][0] for m in sub])
            lv = torch.stack([enc[m][1] for m in sub])
            if len(sub) == len(names):
                mu = torch.cat([mu, torch.zeros_like(mu[:1])])
                lv = torch.cat([lv, torch.zeros_like(lv[:1])])
            mu_s, lv_s = off_poe(mu, lv)
            mus.append(mu_s)
            lvs.append(lv_s)
    mus, lvs = torch.stack(mus), torch.stack(lvs)
    mu_j, lv_j = off_split(mus, lvs)
    z = noise * torch.exp(0.5 * lv_j) + mu_j
    rec = sum(model.rec_weights[i] * -off_log_prob(model, m, model.decoders[m](z), x[m]) / b
              for i, m in enumerate(names))  # fmt: skip
    kl = sum(off_kl(mus[k], lvs[k], b) for k in range(len(mus))) / len(mus)
    return rec + beta * kl


def official_mvae(model, x, noises, beta):
    """The poe loss with unimodal ELBOs: joint ELBO (prior expert, lambda_m) plus, for every
    modality, its own forward pass (rec weight 1.0) and the KL of its PoE with the prior."""
    names = list(model.modalities)
    b = x[names[0]].shape[0]
    enc = {m: model.encoders[m](x[m]) for m in names}
    prior = torch.zeros_like(enc[names[0]][0]).unsqueeze(0)

    def poe_with_prior(sub):
        mu = torch.cat([torch.stack([enc[m][0] for m in sub]), prior])
        lv = torch.cat([torch.stack([enc[m][1] for m in sub]), prior])
        return off_poe(mu, lv)

    mu_j, lv_j = poe_with_prior(names)
    z = noises[0] * torch.exp(0.5 * lv_j) + mu_j
    loss = sum(model.rec_weights[i] * -off_log_prob(model, m, model.decoders[m](z), x[m]) / b
               for i, m in enumerate(names)) + beta * off_kl(mu_j, lv_j, b)  # fmt: skip
    for i, m in enumerate(names):
        mu_m, lv_m = poe_with_prior([m])
        z_m = noises[1 + i] * torch.exp(0.5 * lv_m) + mu_m
        rec_m = 1.0 * -off_log_prob(model, m, model.decoders[m](z_m), x[m]) / b
        loss = loss + rec_m + beta * off_kl(mu_m, lv_m, b)
    return loss


# ---------------------------------------------------------------------------
# iffsid/mmvae (Shi et al.), transcribed: Laplace posteriors with scale D softmax + 1e-6,
# a Laplace prior with learnable scale D softmax(theta), every decoder on every code.


def shi_forward(model, x, u):
    """qz_xs, px_zs (cross matrix of log p(x_d | z_e), weighted), zss; u: (M, K, B, D) uniforms
    of Laplace.rsample."""
    names = list(model.modalities)
    qz, zss = [], []
    for i, m in enumerate(names):
        loc, h = model.encoders[m](x[m])
        scale = nn.functional.softmax(h, dim=-1) * h.size(-1) + 1e-6
        q = dist.Laplace(loc, scale)
        zss.append(loc - scale * u[i].sign() * torch.log1p(-u[i].abs()))  # Laplace.rsample
        qz.append(q)
    lpx = [[None] * len(names) for _ in names]
    for e, zs in enumerate(zss):
        k, b, d = zs.shape
        for di, m in enumerate(names):
            params = model.decoders[m](zs.reshape(k * b, d))
            params = params.view(k, b, *params.shape[1:])
            if m == "text":  # Shi et al. have no text here: the model's own choice
                if isinstance(model.likelihoods[m], OfficialCategorical):
                    px = dist.OneHotCategorical(probs=nn.functional.log_softmax(params, -1),
                                                validate_args=False)  # fmt: skip
                else:
                    px = dist.OneHotCategorical(logits=params)
                lp = px.log_prob(x[m]).sum(-1)
            else:
                lp = dist.Laplace(params, torch.tensor(0.75, dtype=F64)).log_prob(x[m]).sum(-1)
            lpx[e][di] = lp * model.rec_weights[di]  # llik_scaling
    return qz, lpx, zss


def shi_prior(model):
    theta = model.prior_logits
    return dist.Laplace(torch.zeros_like(theta), nn.functional.softmax(theta, -1) * theta.size(-1))


def shi_log_mean_exp(v, dim=0):
    return torch.logsumexp(v, dim) - math.log(v.size(dim))


def shi_dreg(model, x, u, looser: bool, hook_on: str):
    """m_dreg(_looser). hook_on="copy": the hook sits on the torch.stack/cat copy of the
    codes, as released (it never fires); "codes": on the codes the loss reads (intended)."""
    qz, lpx, zss = shi_forward(model, x, u)
    qz_ = [dist.Laplace(q.loc.detach(), q.scale.detach()) for q in qz]
    lws = []
    for r in range(len(qz)):
        lpz = shi_prior(model).log_prob(zss[r]).sum(-1)
        lqz = shi_log_mean_exp(torch.stack([q.log_prob(zss[r]).sum(-1) for q in qz_]))
        lws.append(lpz + torch.stack(lpx[r]).sum(0) - lqz)
    lw = torch.stack(lws) if looser else torch.cat(lws)
    zs_all = torch.stack(zss) if looser else torch.cat(zss)
    with torch.no_grad():
        wt = (lw - torch.logsumexp(lw, 1 if looser else 0, keepdim=True)).exp()
    targets = [zs_all] if hook_on == "copy" else zss
    for i, t in enumerate(targets):
        w_i = (
            wt
            if hook_on == "copy"
            else (wt[i] if looser else wt[i * t.shape[0] : (i + 1) * t.shape[0]])
        )
        t.register_hook(lambda g, w=w_i: w.unsqueeze(-1) * g)
    return (wt * lw).mean(0).sum() if looser else (wt * lw).sum()


def shi_iwae(model, x, u, looser: bool):
    qz, lpx, zss = shi_forward(model, x, u)
    lws = []
    for r in range(len(qz)):
        lpz = shi_prior(model).log_prob(zss[r]).sum(-1)
        lqz = shi_log_mean_exp(torch.stack([q.log_prob(zss[r]).sum(-1) for q in qz]))
        lws.append(lpz + torch.stack(lpx[r]).sum(0) - lqz)
    if looser:
        return shi_log_mean_exp(torch.stack(lws), dim=1).mean(0).sum()
    return shi_log_mean_exp(torch.cat(lws)).sum()


def shi_m_elbo(model, x, u):
    qz, lpx, zss = shi_forward(model, x, u)
    pz = shi_prior(model)
    terms, klds = [], []
    for r, q in enumerate(qz):
        klds.append(dist.kl_divergence(q, pz).sum(-1))
        for d in range(len(qz)):
            if d == r:
                lwt = torch.tensor(0.0, dtype=F64)
            else:
                zs = zss[d].detach()
                lwt = (q.log_prob(zs) - qz[d].log_prob(zs).detach()).sum(-1)
            terms.append(lwt.exp() * lpx[d][d])
    obj = (1 / len(qz)) * (torch.stack(terms).sum(0) - torch.stack(klds).sum(0))
    return obj.mean(0).sum()


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("num_mod,b,text", [(2, 9, False), (3, 62, True), (5, 62, False),
                                            (5, 93, True), (4, 40, False)])  # fmt: skip
def test_mopoe_official_preset_equals_the_official_code(monkeypatch, num_mod, b, text):
    cfg = make_config("polymnist", "mopoe", "smoke", preset="official")
    model = tiny_model(cfg, num_mod, text=text)
    x = toy_batch(model, b)
    # the official subsets: itertools.combinations by size, the empty set skipped
    order = [c for n in range(1, num_mod + 1) for c in itertools.combinations(range(num_mod), n)]
    assert [tuple(r.nonzero().flatten().tolist()) for r in S.powerset(num_mod)] == order
    noise = torch.randn(b, 3, dtype=F64)
    monkeypatch.setattr(O, "batch_noise", FixedNoise(noise))
    lib = model.objective(x).loss()
    off = official_mopoe(model, x, noise, cfg.model.beta)
    diff, gdiff = compare(model, lib, off)
    assert diff < TOL and gdiff < TOL, (diff, gdiff)


@pytest.mark.parametrize("num_mod,b,text", [(2, 8, False), (3, 31, True), (5, 20, False)])
def test_mvae_official_preset_equals_the_official_code(monkeypatch, num_mod, b, text):
    cfg = make_config("polymnist", "mvae", "smoke", preset="official")
    model = tiny_model(cfg, num_mod, text=text)
    x = toy_batch(model, b)
    noise = torch.randn(1 + num_mod, b, 3, dtype=F64)  # joint, then one per modality
    monkeypatch.setattr(O, "batch_noise", FixedNoise(noise))
    lib = model.objective(x).loss()
    off = official_mvae(model, x, noise, cfg.model.beta)
    diff, gdiff = compare(model, lib, off)
    assert diff < TOL and gdiff < TOL, (diff, gdiff)


def test_the_official_mvae_differs_from_lambda_everywhere(monkeypatch):
    """The check above can fail: with lambda_m in every term (the paper-side default) the
    same transcription disagrees."""
    cfg = make_config("polymnist", "mvae", "smoke", preset="official",
                      overrides={"model.mvae_rec_weights": "all"})  # fmt: skip
    model = tiny_model(cfg, 3)
    x = toy_batch(model, 8)
    noise = torch.randn(4, 8, 3, dtype=F64)
    monkeypatch.setattr(O, "batch_noise", FixedNoise(noise))
    assert abs(float(model.objective(x).loss() - official_mvae(model, x, noise, 2.5))) > 1e-3


def _uniforms(num_mod, k, b, d, seed=3):
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.rand(num_mod, k, b, d, generator=g, dtype=F64) - 1).clamp(min=-1 + 1e-12)


def _lib_mmvae(monkeypatch, model, x, u):
    e = -u.sign() * torch.log1p(-u.abs())  # the same standard Laplace noise
    monkeypatch.setattr(O, "laplace_noise", FixedNoise(e))
    obj = model.objective(x)
    b = u.shape[2]
    return obj.loss() * b  # the official objectives sum over the batch


@pytest.mark.parametrize("num_mod,k,b,text", [(2, 30, 6, False), (3, 4, 31, True),
                                              (2, 1, 62, False)])  # fmt: skip
def test_mmvae_official_preset_equals_shi_et_al(monkeypatch, num_mod, k, b, text):
    """The preset: Laplace experts and learnable Laplace prior, DReG looser as released."""
    cfg = make_config("mnist_svhn_text", "mmvae_dreg", "smoke", preset="official",
                      overrides={"model.importance_samples": k})  # fmt: skip
    model = tiny_model(cfg, num_mod, text=text)
    assert "prior_logits" in dict(model.named_parameters())  # --learn-prior: a parameter
    x, u = toy_batch(model, b), _uniforms(num_mod, k, b, 3)
    lib = _lib_mmvae(monkeypatch, model, x, u)
    off = -shi_dreg(model, x, u, looser=True, hook_on="copy")
    diff, gdiff = compare(model, lib, off)
    assert diff < TOL and gdiff < TOL, (diff, gdiff)


@pytest.mark.parametrize("dreg_grad,hook_on", [("intended", "codes"), ("released", "copy")])
@pytest.mark.parametrize("bound", ["looser", "tight"])
@pytest.mark.parametrize("num_mod,k,b", [(2, 5, 7), (3, 3, 31)])
def test_dreg_both_gradients_and_both_bounds(monkeypatch, dreg_grad, hook_on, bound, num_mod,
                                             k, b):  # fmt: skip
    cfg = make_config("mnist_svhn_text", "mmvae_dreg", "smoke", preset="official",
                      overrides={"model.importance_samples": k, "model.dreg_grad": dreg_grad,
                                 "model.mmvae_bound": bound})  # fmt: skip
    model = tiny_model(cfg, num_mod)
    x, u = toy_batch(model, b), _uniforms(num_mod, k, b, 3)
    lib = _lib_mmvae(monkeypatch, model, x, u)
    off = -shi_dreg(model, x, u, looser=bound == "looser", hook_on=hook_on)
    diff, gdiff = compare(model, lib, off)
    assert diff < TOL and gdiff < TOL, (diff, gdiff)


def test_released_and_intended_dreg_differ_on_the_encoders_only(monkeypatch):
    runs = {}
    for grad in ("intended", "released"):
        cfg = make_config(
            "mnist_svhn_text",
            "mmvae_dreg",
            "smoke",
            preset="official",
            overrides={"model.importance_samples": 5, "model.dreg_grad": grad},
        )
        model = tiny_model(cfg, 2)
        x, u = toy_batch(model, 8), _uniforms(2, 5, 8, 3)
        runs[grad] = dict(
            zip(
                [n for n, p in model.named_parameters() if p.requires_grad],
                _grads(model, _lib_mmvae(monkeypatch, model, x, u)),
                strict=True,
            )
        )
    for name, g in runs["intended"].items():
        same = torch.allclose(g, runs["released"][name], rtol=0, atol=1e-12)
        assert same == (not name.startswith("encoders")), name


@pytest.mark.parametrize("bound", ["looser", "tight"])
def test_mmvae_iwae_bounds_equal_shi_et_al(monkeypatch, bound):
    cfg = make_config(
        "mnist_svhn_text",
        "mmvae_iwae",
        "smoke",
        preset="official",
        overrides={"model.importance_samples": 4, "model.mmvae_bound": bound},
    )
    model = tiny_model(cfg, 3, text=True)
    x, u = toy_batch(model, 31), _uniforms(3, 4, 31, 3)
    lib = _lib_mmvae(monkeypatch, model, x, u)
    off = -shi_iwae(model, x, u, looser=bound == "looser")
    diff, gdiff = compare(model, lib, off)
    assert diff < TOL and gdiff < TOL, (diff, gdiff)


@pytest.mark.parametrize("num_mod,b", [(2, 9), (3, 31)])
def test_mmvae_m_elbo_equals_shi_et_al(monkeypatch, num_mod, b):
    cfg = make_config("mnist_svhn_text", "mmvae", "smoke", preset="official")
    assert cfg.model.mmvae_elbo == "unimodal_kl"
    model = tiny_model(cfg, num_mod)
    x, u = toy_batch(model, b), _uniforms(num_mod, 1, b, 3)
    lib = _lib_mmvae(monkeypatch, model, x, u)
    off = -shi_m_elbo(model, x, u)
    diff, gdiff = compare(model, lib, off)
    assert diff < TOL and gdiff < TOL, (diff, gdiff)


# ---------------------------------------------------------------------------
# the switches one by one


def test_batch_split_rows_official_for_b_divisible_by_31():
    for b in (31, 62, 124, 248, 310):
        comp = O.batch_split_components(b, 31, rows="float32_floor")
        counts = torch.bincount(comp, minlength=31)
        assert (counts[:30] == b // 31 - 1).all() and counts[30] == b - 30 * (b // 31 - 1)
        assert (torch.bincount(O.batch_split_components(b, 31), minlength=31)[:30]
                == b // 31).all()  # fmt: skip
    # the official B = 256 is the same either way: 8 rows per subset, 16 for the full set
    a = O.batch_split_components(256, 31, rows="float32_floor")
    assert torch.equal(a, O.batch_split_components(256, 31))


def test_soft_bound_is_exact_inside_and_finite_outside():
    lv = torch.linspace(-40, 40, 8001)
    assert torch.equal(soft_bound(lv, 80.0), lv)  # bit-exact where training lives
    big = torch.tensor([-1e4, -200.0, -41.0, 41.0, 200.0, 1e4], requires_grad=True)
    out = soft_bound(big, 80.0)
    assert (out.abs() <= 80).all() and torch.isfinite(torch.exp(out.abs())).all()
    out.sum().backward()
    assert torch.isfinite(big.grad).all()
    # the former bound 80 tanh(lv / 80) moved lv = -20 to -19.6 (variance x1.5)
    old = 80 * math.tanh(-20 / 80)
    assert abs(old + 19.59) < 0.01 and float(soft_bound(torch.tensor(-20.0), 80.0)) == -20.0


def test_official_text_likelihood_is_selectable():
    cfg = make_config("mnist_svhn_text", "mopoe", "smoke", preset="official")
    from mopoe_lib.model import build_model

    model = build_model(cfg)
    assert isinstance(model.likelihoods["text"], OfficialCategorical)
    assert isinstance(build_model(make_config("mnist_svhn_text", "mopoe", "smoke"))
                      .likelihoods["text"], Categorical)  # fmt: skip


def test_presets_cover_every_model_and_refuse_the_rest():
    for method in ("mopoe", "mvae", "mmvae", "mmvae_iwae", "mmvae_dreg"):
        cfg = make_config("mnist_svhn_text", method, "smoke", preset="official")
        for key, value in PRESETS["official"][method].items():
            assert getattr(cfg.model, key) == value
    with pytest.raises(ConfigError, match="no settings for method 'eq5'"):
        make_config("polymnist", "eq5", "smoke", preset="official")
    with pytest.raises(ConfigError, match="preset must be one of"):
        make_config("polymnist", "mopoe", "smoke", preset="offical")
    with pytest.raises(ConfigError, match="laplace"):
        make_config("polymnist", "mopoe", "smoke", {"model.experts": "laplace"})
    # overrides still win over the preset
    assert make_config("polymnist", "mopoe", "smoke", {"model.variance_eps": 0.0},
                       preset="official").model.variance_eps == 0.0  # fmt: skip


def test_defaults_are_the_papers():
    m = make_config("polymnist", "mopoe", "smoke").model
    assert (
        m.dreg_grad,
        m.mmvae_bound,
        m.mmvae_elbo,
        m.experts,
        m.batch_split_rows,
        m.variance_eps,
        m.mvae_rec_weights,
        m.text_likelihood,
    ) == ("intended", "looser", "mixture", "gaussian", "floor_div", 0.0, "all", "categorical")


def test_shi_et_al_preset_trains_and_evaluates_with_the_real_networks():
    """Laplace experts reach every part that reads the posterior or the prior."""
    from mopoe_lib.evaluation.likelihood import log_likelihood
    from mopoe_lib.figures.mmvae import marginal_loglik
    from mopoe_lib.model import MixturePosterior, build_model

    torch.manual_seed(0)
    cfg = make_config("mnist_svhn_text", "mmvae_dreg", "smoke", preset="official",
                      overrides={"model.modalities": ["mnist", "svhn"],
                                 "model.importance_samples": 3})  # fmt: skip
    model = build_model(cfg)
    x = {"mnist": torch.rand(4, 1, 28, 28), "svhn": torch.rand(4, 3, 32, 32)}
    model.objective(x).loss().backward()
    assert model.prior_logits.grad is not None and model.prior_logits.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    post = model.posterior(x, S.full(2))
    assert isinstance(post, MixturePosterior) and post.experts == "laplace"
    z = post.sample(5)
    assert z.shape == (5, 1, 4, 20) and torch.isfinite(post.log_prob(z)).all()
    assert torch.isfinite(model.prior_log_prob(z)).all()
    assert model.sample(3)["svhn"].shape == (3, 3, 32, 32)
    with torch.no_grad():
        assert torch.isfinite(marginal_loglik(model, x, "mnist", S.full(2), 5)).all()
        assert torch.isfinite(log_likelihood(model, x, num_samples=3)).all()
