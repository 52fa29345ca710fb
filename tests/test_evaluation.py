"""Metrics on constructed cases with known answers, and the importance-sampled likelihood
against the closed-form evidence of the linear-Gaussian model."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import Identity, label_copy_data, label_copy_model

from mopoe_lib import subsets as S
from mopoe_lib.evaluation import classifiers as C
from mopoe_lib.evaluation import log_likelihood
from mopoe_lib.evaluation.metrics import (
    average_precision,
    by_num_inputs,
    conditional_coherence,
    joint_agreement,
    joint_coherence,
    latent_classification,
    linear_classification,
)
from mopoe_lib.likelihoods import Gaussian
from mopoe_lib.linear_gaussian import LinearGaussianModel
from mopoe_lib.model import MultimodalVAE


class RandomClassifier(nn.Module):
    def forward(self, x):
        return torch.randn(x.shape[0], 10)


class ConstantClassifier(nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 10).index_fill_(1, torch.tensor([3]), 1.0)


@pytest.mark.parametrize("method", ["mopoe", "mvae", "mmvae"])
def test_perfect_and_random_classifiers_give_coherence_one_and_a_tenth(method):
    torch.manual_seed(0)
    model, test = label_copy_model(3, method), label_copy_data(3000, 3)
    subsets = S.powerset(3)
    perfect = conditional_coherence(model, test, subsets, {m: Identity() for m in model.modalities})
    assert perfect.shape == (7, 3) and np.all(perfect == 1.0)
    rand = conditional_coherence(
        model, test, subsets, {m: RandomClassifier() for m in model.modalities}
    )
    assert np.all(np.abs(rand - 0.1) < 0.03)
    const = {m: ConstantClassifier() for m in model.modalities}
    assert joint_coherence(model, const, 500) == 1.0
    two = label_copy_model(2, method)
    rand2 = {m: RandomClassifier() for m in two.modalities}
    assert abs(joint_coherence(two, rand2, 4000) - 0.1) < 0.02


def test_joint_agreement_counts_each_coherent_sample_under_its_shared_label():
    """Against a loop over the same prior samples: a sample counts once, under the label all
    modalities share; incoherent samples count nowhere."""
    torch.manual_seed(0)
    model = label_copy_model(3, "mopoe")
    # modality 2 reads label 3 whatever it sees; the others read their own images' labels
    clfs = {m: Identity() for m in model.modalities}
    clfs[model.modalities[2]] = ConstantClassifier()
    torch.manual_seed(1)
    coherence, counts = joint_agreement(model, clfs, 300, batch_size=64)
    torch.manual_seed(1)
    expected, agreed = [0] * 10, 0
    for i in range(0, 300, 64):
        gen = model.sample(min(64, 300 - i))
        for j in range(len(gen[model.modalities[0]])):
            labels = {int(clfs[m](gen[m][j : j + 1]).argmax()) for m in model.modalities}
            if len(labels) == 1:
                expected[labels.pop()] += 1
                agreed += 1
    assert counts == expected and coherence == agreed / 300
    assert 0 < agreed < 300 and sum(counts) == agreed and counts[3] == agreed


class CountingClassifier(nn.Module):
    """Identity logits that count the images they were shown."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        return x


def test_coherence_without_inputs_classifies_only_cross_modal_generations():
    torch.manual_seed(0)
    model, test = label_copy_model(3, "mopoe"), label_copy_data(50, 3)
    subsets = S.powerset(3)
    counting = {m: CountingClassifier() for m in model.modalities}
    coh = conditional_coherence(model, test, subsets, counting, include_inputs=False)
    # each modality is a target of the 3 subsets that leave it out (m1, m2, m1m2 for m0)
    assert [c.seen for c in counting.values()] == [3 * 50] * 3
    inside = subsets.numpy()
    assert np.isnan(coh[inside]).all() and (coh[~inside] == 1.0).all()


def test_coherence_by_number_of_inputs_excludes_the_inputs():
    subsets = S.powerset(3)  # m0, m1, m2, m0m1, m0m2, m1m2, all
    values = np.array([[9, 1, 2], [3, 9, 4], [5, 6, 9], [9, 9, 7], [9, 8, 9], [0, 9, 9], [9, 9, 9]])
    agg = by_num_inputs(values, subsets, exclude_inputs=True)
    assert agg == {"1": pytest.approx((1.5 + 3.5 + 5.5) / 3), "2": pytest.approx(5.0)}
    assert by_num_inputs([1, 2, 3, 4, 5, 6, 7], subsets) == {"1": 2.0, "2": 5.0, "3": 7.0}


def test_latent_classification_of_a_label_copying_encoder_is_perfect():
    model = label_copy_model(2)
    train, test = label_copy_data(600, 2, seed=0), label_copy_data(200, 2, seed=1)
    acc = latent_classification(model, train, test, S.powerset(2), n_train=500)
    assert acc == [1.0, 1.0, 1.0]


def test_average_precision_for_attributes():
    g = np.random.default_rng(0)
    y = (g.random((300, 4)) < 0.3).astype(np.uint8)
    assert average_precision(y, y.astype(float)) == 1.0
    noise = average_precision(y, g.random((300, 4)))
    assert abs(noise - 0.3) < 0.08  # random scores: AP is the positive rate
    feats = torch.tensor(y, dtype=torch.float64) * 4 + 0.01 * torch.randn(
        300, 4, dtype=torch.float64
    )
    ap = linear_classification(
        feats[:200], torch.tensor(y[:200]), feats[200:], torch.tensor(y[200:])
    )
    assert ap == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# importance-sampled log-likelihoods


class ExpertEncoder(nn.Module):
    """The exact likelihood expert of a linear-Gaussian modality."""

    def __init__(self, w, b, sigma):
        super().__init__()
        self.w, self.b, self.s2 = w, b, sigma**2
        self.prec = torch.diagonal(w.T @ w) / self.s2

    def forward(self, x):
        mu = ((x - self.b) @ self.w / self.s2) / self.prec
        return mu, (-torch.log(self.prec)).expand_as(mu)


class LinearDecoder(nn.Module):
    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, z):
        return z @ self.w.T + self.b


def _linear_vae(lg, method):
    mods = [f"x{m}" for m in range(lg.num_modalities)]
    return MultimodalVAE(
        mods,
        {m: ExpertEncoder(lg.W[i], lg.b[i], lg.sigma[i]) for i, m in enumerate(mods)},
        {m: LinearDecoder(lg.W[i], lg.b[i]) for i, m in enumerate(mods)},
        {m: Gaussian(1, scale=float(lg.sigma[i])) for i, m in enumerate(mods)},
        {m: (lg.data_dims[i],) for i, m in enumerate(mods)},
        latent_dim=lg.latent_dim,
        method=method,
        logvar_bound=None,  # exact experts: no soft bound on their log-variances
    ).double()


@pytest.fixture(scope="module")
def linear():
    lg = LinearGaussianModel(latent_dim=2, data_dims=(3, 4, 3), noise_std=(0.6, 0.9, 1.2), seed=0)
    _, xs = lg.sample(6, torch.Generator().manual_seed(1))
    return lg, {f"x{m}": x for m, x in enumerate(xs)}, lg.log_evidence(xs)


def test_exact_proposal_gives_the_evidence_for_every_sample(linear):
    lg, x, evidence = linear
    model = _linear_vae(lg, "mvae")  # product with the prior expert = the true posterior
    torch.manual_seed(0)
    est = log_likelihood(model, x, S.full(3), num_samples=15)
    assert est.shape == (1, 6)
    # exact up to the float32 rounding of the likelihood scale buffer
    torch.testing.assert_close(est[0], evidence, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["mvae", "mopoe", "mmvae"])
def test_estimates_converge_to_the_closed_form_evidence(linear, method):
    lg, x, evidence = linear
    model = _linear_vae(lg, method)
    torch.manual_seed(0)
    many = log_likelihood(model, x, S.powerset(3), num_samples=20000)  # (7, 6)
    assert many.shape == (7, 6)
    assert (many - evidence).abs().max() < 0.1
    joint = log_likelihood(model, x, num_samples=20000, joint=True)
    assert (joint[0] - evidence).abs().max() < 0.1
    # with one sample it is the ELBO: below the evidence on average
    few = torch.stack([log_likelihood(model, x, S.unimodal(3), num_samples=1) for _ in range(50)])
    assert (few.mean(0) < evidence - 0.05).all()


def test_likelihood_indexing_keeps_samples_apart(linear):
    """With the exact proposal every weight of sample b equals p(X_b): reducing over the
    wrong axis (the official (K, B) -> (B, K) reshape) would mix the samples' values."""
    lg, x, evidence = linear
    model = _linear_vae(lg, "mvae")
    batched = log_likelihood(model, x, S.full(3), num_samples=7)[0]
    for b in range(6):
        one = log_likelihood(
            model, {m: v[b : b + 1] for m, v in x.items()}, S.full(3), num_samples=7
        )
        torch.testing.assert_close(one[0, 0], batched[b], rtol=0, atol=1e-6)
    assert len(set(batched.round(decimals=3).tolist())) == 6


# ---------------------------------------------------------------------------
# classifiers


def test_classifiers_are_cached_and_frozen_in_eval_mode(tmp_path, monkeypatch):
    from helpers import polymnist_like

    train = polymnist_like(64, modalities=2)
    kw = {"epochs": 1, "device": "cpu", "log": lambda *_: None}
    first = C.load_or_train("polymnist", train, tmp_path, **kw)
    assert set(first) == {"m0", "m1"} and len(list(tmp_path.glob("*.pt"))) == 2
    for clf in first.values():
        assert not clf.training and not any(p.requires_grad for p in clf.parameters())

    def fail(*a, **k):
        raise AssertionError("a cached classifier was trained again")

    monkeypatch.setattr(C, "train_classifier", fail)
    second = C.load_or_train("polymnist", train, tmp_path, **kw)
    x = train.batch(torch.arange(8))["m0"]
    torch.testing.assert_close(first["m0"](x), second["m0"](x))
    assert not second["m0"].training
    # other training settings or other data -> another cache entry
    with pytest.raises(AssertionError, match="trained again"):
        C.load_or_train("polymnist", train, tmp_path, **{**kw, "epochs": 2})
