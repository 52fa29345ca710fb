"""The switches that make the `cpu` profile learn (issue: Part II teaches at the default
profile): PolyMNIST width multiplier, Gaussian image likelihood, KL warm-up, the learning
curve, the larger coherence classifier with shifts, and the dimmed offline backgrounds."""

import json
import math

import numpy as np
import pytest
import torch
from helpers import mst_like, polymnist_like

from mopoe_lib import networks
from mopoe_lib.config import ConfigError, make_config
from mopoe_lib.evaluation import classifiers as clf_mod
from mopoe_lib.likelihoods import Gaussian, Laplace
from mopoe_lib.train import Trainer, run


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("w, c1, c2, c3, hidden", [(1.0, 32, 64, 128, 512), (0.25, 8, 16, 32, 128)])
def test_polymnist_width_multiplier_scales_every_layer(w, c1, c2, c3, hidden):
    d = 64
    enc = networks.polymnist.Encoder(d, w)
    dec = networks.polymnist.Decoder(d, w)
    # parameter counts written out layer by layer (conv k3: c_in*c_out*9 + c_out)
    enc_expected = (3 * c1 * 9 + c1) + (c1 * c2 * 9 + c2) + (c2 * c3 * 9 + c3)
    enc_expected += c3 * 16 * hidden + hidden + 2 * (hidden * d + d)
    dec_expected = (d * c3 * 16 + c3 * 16) + (c3 * c2 * 9 + c2) + (c2 * c1 * 9 + c1)
    dec_expected += c1 * 3 * 9 + 3
    assert _count(enc) == enc_expected and _count(dec) == dec_expected
    mu, logvar = enc(torch.rand(2, 3, 28, 28))
    assert mu.shape == logvar.shape == (2, d)
    assert dec(torch.randn(2, d)).shape == (2, 3, 28, 28)


def test_width_multiplier_and_likelihood_are_checked():
    with pytest.raises(ConfigError, match="width_multiplier"):
        make_config("mnist_svhn_text", "mopoe", "cpu", {"model.width_multiplier": 0.5})
    with pytest.raises(ConfigError, match="image_likelihood"):
        make_config("polymnist", "mopoe", "cpu", {"model.image_likelihood": "l1"})
    with pytest.raises(ConfigError, match="gaussian_scale"):
        make_config("polymnist", "mopoe", "cpu", {"model.gaussian_scale": 0.0})
    with pytest.raises(ValueError, match="positive"):
        networks.polymnist.channels(0.0)


def test_the_image_likelihood_switch_selects_the_density():
    x, loc = torch.rand(4, 3, 28, 28), torch.rand(4, 3, 28, 28)
    gauss = networks.build("polymnist", latent_dim=8, image_likelihood="gaussian",
                           gaussian_scale=0.1).likelihoods["m0"]  # fmt: skip
    lap = networks.build("polymnist", latent_dim=8).likelihoods["m0"]
    assert isinstance(gauss, Gaussian) and isinstance(lap, Laplace)
    # closed forms, written here: N(x; loc, 0.1^2) and Laplace(x; loc, 0.75), summed over pixels
    s = 0.1
    ref_g = (-0.5 * math.log(2 * math.pi) - math.log(s) - (x - loc) ** 2 / (2 * s * s)).sum(
        (1, 2, 3)
    )
    ref_l = (-math.log(2 * 0.75) - (x - loc).abs() / 0.75).sum((1, 2, 3))
    torch.testing.assert_close(gauss.log_prob(x, loc), ref_g, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(lap.log_prob(x, loc), ref_l, rtol=1e-5, atol=1e-3)
    text = networks.build("mnist_svhn_text", latent_dim=8, image_likelihood="gaussian")
    assert isinstance(text.likelihoods["svhn"], Gaussian)
    assert not isinstance(text.likelihoods["text"], Gaussian)  # text stays categorical


def _poly_cfg(**over):
    base = {"model.latent_dim": 8, "train.batch_size": 16, "train.epochs": 2,
            "train.checkpoint_every": 1, "eval.enabled": False}  # fmt: skip
    return make_config("polymnist", "mopoe", "smoke", {**base, **over})


def test_kl_warm_up_is_linear_in_the_global_step_and_ends_at_beta():
    cfg = _poly_cfg(**{"train.beta_warmup_steps": 4})
    tr = Trainer(cfg, polymnist_like(32), "/tmp/unused-warmup", device="cpu", progress=False,
                 log=lambda *_: None)  # fmt: skip
    beta = cfg.model.beta
    assert [tr.beta_at(s) for s in range(6)] == pytest.approx(
        [beta / 4, beta / 2, 3 * beta / 4, beta, beta, beta]
    )
    seen = []
    original = tr.model.objective

    def spy(x, mask=None):
        seen.append(tr.model.beta)
        return original(x, mask)

    tr.model.forward = spy
    tr.fit()
    assert seen == pytest.approx([beta / 4, beta / 2, 3 * beta / 4, beta])  # 2 epochs x 2 steps
    assert tr.model.beta == beta


def test_warm_up_resumes_exactly(tmp_path):
    data = (polymnist_like(48, seed=0), polymnist_like(16, seed=1))
    kw = dict(train_data=data[0], test_data=data[1], device="cpu", progress=False,
              log=lambda *_: None)  # fmt: skip
    over = {"train.beta_warmup_steps": 5, "train.epochs": 3}
    run(_poly_cfg(**over), tmp_path / "full", **kw)
    run(_poly_cfg(**{**over, "train.epochs": 1}), tmp_path / "part", **kw)
    run(_poly_cfg(**over), tmp_path / "part", resume=True, **kw)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_the_learning_curve_is_recorded_resumed_and_learns(tmp_path):
    data = (polymnist_like(64, seed=0), polymnist_like(32, seed=1))
    kw = dict(train_data=data[0], test_data=data[1], device="cpu", progress=False,
              log=lambda *_: None)  # fmt: skip
    over = {"train.curve_every_steps": 2, "eval.curve_samples": 32, "train.epochs": 4,
            "eval.enabled": True, "eval.classifier_epochs": 1, "eval.n_test": 32,
            "eval.ll_n_test": 4, "eval.joint_samples": 16, "eval.lr_train_samples": 32,
            "eval.classifier_dir": str(tmp_path / "clf")}  # fmt: skip
    run(_poly_cfg(**{**over, "train.epochs": 2}), tmp_path / "r", **kw)
    metrics = run(_poly_cfg(**over), tmp_path / "r", resume=True, **kw)
    curve = metrics["train"]["curve"]
    steps = [p["global_step"] for p in curve]
    assert steps == [0, 2, 4, 6, 8, 10, 12, 14, 16]  # 4 steps per epoch, no duplicates
    lines = (tmp_path / "r" / "curve.jsonl").read_text().splitlines()
    assert [json.loads(line)["global_step"] for line in lines] == steps
    times = [p["train_s"] for p in curve]
    assert times[0] == 0.0 and all(b >= a for a, b in zip(times, times[1:], strict=False))
    for p in curve:
        assert 0.0 <= p["probe_unimodal"] <= 1.0 and 0.0 <= p["probe_joint"] <= 1.0
        assert set(p["probe_per_modality"]) == {f"m{k}" for k in range(5)}
        assert p["probe_unimodal"] == pytest.approx(np.mean(list(p["probe_per_modality"].values())))
    assert curve[-1]["objective"] > curve[0]["objective"]  # training raised the bound
    assert metrics["wall_time_s"]["curve"] > 0


def test_classifier_shift_and_architecture_are_part_of_the_cache_key(tmp_path):
    data = polymnist_like(40).select(["m0", "m1"])
    base = clf_mod.load_or_train("polymnist", data, tmp_path, epochs=1, log=lambda *_: None)
    cnn = clf_mod.load_or_train("polymnist", data, tmp_path, epochs=1, arch="cnn", shift=2,
                                log=lambda *_: None)  # fmt: skip
    files = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert len(files) == 4  # two modalities x two settings, no collision
    assert isinstance(cnn["m0"], networks.polymnist.ClassifierCNN)
    assert isinstance(base["m0"], networks.polymnist.Classifier)
    with pytest.raises(ValueError, match="polymnist only"):
        networks.classifier("celeba", "img", 40, arch="cnn")


class _Recorder(torch.nn.Module):
    """A stand-in classifier that records every batch it is given."""

    def __init__(self, seen: list):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = seen

    def forward(self, x):
        self.seen.append(x.clone())
        return torch.zeros(len(x), 10) + self.w


def _record_classifier_inputs(monkeypatch) -> list:
    seen: list = []
    monkeypatch.setattr(networks, "classifier", lambda *a, **k: _Recorder(seen))
    return seen


def test_shift_augmentation_translates_the_batch(monkeypatch):
    seen = _record_classifier_inputs(monkeypatch)
    img = torch.zeros(1, 3, 28, 28)
    img[0, :, 10, 12] = 1.0
    data = polymnist_like(1).select(["m0"])
    data.data["m0"] = img
    clf_mod.train_classifier("polymnist", "m0", data, epochs=20, shift=2)
    spots = {tuple(torch.nonzero(x[0, 0])[0].tolist()) for x in seen}
    assert all(abs(r - 10) <= 2 and abs(c - 12) <= 2 for r, c in spots)
    assert len(spots) > 3  # several offsets were drawn


def test_shift_augmentation_leaves_text_alone(monkeypatch):
    # A text batch is (B, length, alphabet): rolling its last two axes would move letters
    # to other alphabet positions, so the shift applies to image batches only.
    seen = _record_classifier_inputs(monkeypatch)
    data = mst_like(4)
    clf_mod.train_classifier("mnist_svhn_text", "text", data, epochs=5, shift=2)
    original = data.batch(torch.arange(4), ("text",))["text"]
    assert all(sorted(map(tuple, x.flatten(1).tolist())) == sorted(map(tuple, original.flatten(1).tolist()))
               for x in seen)  # fmt: skip
    seen.clear()
    clf_mod.train_classifier("mnist_svhn_text", "svhn", data, epochs=5, shift=2)
    moved = data.batch(torch.arange(4), ("svhn",))["svhn"]
    assert any(not torch.equal(x.sum(0), moved.sum(0)) for x in seen)  # images still move
