"""Reliability (issue 9): numerical safety, bad inputs with clear errors, incomplete data.

Fault injection (SIGKILL and resume) is in test_faults.py, torchrun in test_distributed.py.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import Identity, label_copy_data, label_copy_model, mst_like

from mopoe_lib import data as data_mod
from mopoe_lib import subsets as S
from mopoe_lib import train as train_mod
from mopoe_lib.config import ConfigError, make_config
from mopoe_lib.data import DataError, drop_modalities, from_tensors, missing_mask
from mopoe_lib.evaluation import log_likelihood
from mopoe_lib.evaluation.metrics import conditional_coherence, posterior_means
from mopoe_lib.model import build_model
from mopoe_lib.train import CheckpointMismatchError, Trainer, run

METHODS = ["mopoe", "mvae", "mmvae"]


def _cfg(method="mopoe", **over):
    base = {"model.latent_dim": 8, "train.batch_size": 8, "train.epochs": 1,
            "train.checkpoint_every": 1, "eval.enabled": False}  # fmt: skip
    return make_config("mnist_svhn_text", method, "smoke", {**base, **over})


def _model(method="mopoe", **over):
    torch.manual_seed(0)
    return build_model(_cfg(method, **over))


def _trainer(tmp_path, data, method="mopoe", **over):
    return Trainer(_cfg(method, **over), data, tmp_path, device="cpu", progress=False,
                   log=lambda *_: None)  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return mst_like(32, seed=0)


def _finite_step(model, x, mask=None, autocast=None):
    """One Adam step; asserts a finite loss, finite gradients and finite parameters."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ctx = autocast if autocast is not None else torch.autocast("cpu", enabled=False)
    with ctx:
        obj = model.objective(x, mask)
        loss = obj.loss()
    assert torch.isfinite(loss), loss
    assert torch.isfinite(obj.value).all() and torch.isfinite(obj.kl).all()
    opt.zero_grad()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    return loss


# -- numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_training_steps_stay_finite_for_beta_from_half_to_twenty(method, data):
    x = data.batch(torch.arange(8))
    for beta in (0.5, 1.0, 2.5, 5.0, 10.0, 20.0):
        model = _model(method, **{"model.beta": beta})
        for _ in range(3):
            _finite_step(model, x)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fill", [0.0, 1.0, 255.0], ids=["zeros", "ones", "unscaled-255"])
def test_extreme_images_give_finite_objectives_and_gradients(method, fill, data):
    """All-black, all-white, and 8-bit values passed without scaling to [0, 1] (255x the
    data range: losses of ~1e6). Far beyond (MoPoE at 1e10) float32 gradients of the networks
    themselves overflow; the trainer then stops at that step, before the optimizer applies
    them (tests/test_train.py)."""
    x = data.batch(torch.arange(4))
    x["mnist"] = torch.full_like(x["mnist"], fill)
    x["svhn"] = torch.full_like(x["svhn"], fill)
    _finite_step(_model(method), x)


@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_on_cpu_objective_and_training_step(method, data):
    x = data.batch(torch.arange(8))
    model = _model(method)
    for _ in range(2):
        _finite_step(model, x, autocast=torch.autocast("cpu", dtype=torch.bfloat16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        obj = model.objective(x)
    assert obj.value.dtype == torch.float32  # experts and objectives in full precision


@pytest.mark.parametrize("method", METHODS)
def test_fp16_autocast_on_cpu_where_supported(method, data):
    x = data.batch(torch.arange(8))
    # The paper's Laplace likelihood: with the smoke profile's Gaussian (sigma 0.1) a
    # decoder's bias gradient sums 100 x (x - mean) over every pixel of the batch, which
    # overflows float16 in the convolution's backward without loss scaling (the library's
    # mixed precision is bfloat16, tested above with the profile's likelihood).
    model = _model(method, **{"model.image_likelihood": "laplace"})
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            model.objective(x)
    except (RuntimeError, NotImplementedError) as err:
        pytest.skip(f"float16 autocast is not supported on this CPU build: {err}")
    _finite_step(model, x, autocast=torch.autocast("cpu", dtype=torch.float16))


# -- bad inputs ------------------------------------------------------------------------


def test_bad_batches_to_the_model_name_the_modality_and_the_fix(data):
    model = _model()
    x = data.batch(torch.arange(4))
    with pytest.raises(ValueError, match=r"unknown modalities \['audio'\].*'mnist', 'svhn'"):
        model.objective({**x, "audio": x["mnist"]})
    with pytest.raises(ValueError, match=r"'svhn' has shape \(4, 1, 28, 28\), expected "
                                         r"\(B, 3, 32, 32\)"):  # fmt: skip
        model.objective({**x, "svhn": x["mnist"]})
    with pytest.raises(TypeError, match=r"'mnist' is torch.uint8.*floating-point"):
        model.objective({**x, "mnist": (x["mnist"] * 255).to(torch.uint8)})
    with pytest.raises(TypeError, match=r"'mnist' is torch.float64 but its encoder computes "
                                        r"in torch.float32.*\.to\(torch.float32\)"):  # fmt: skip
        model.objective({**x, "mnist": x["mnist"].double()})
    with pytest.raises(ValueError, match=r"'text' is on device meta but the model is on cpu"):
        model.objective({**x, "text": x["text"].to("meta")})
    with pytest.raises(ValueError, match="different batch sizes"):
        model.objective({**x, "text": x["text"][:3]})
    with pytest.raises(ValueError, match="holds no modality"):
        model.objective({})


def test_bad_subsets_by_name_or_empty_are_refused(data):
    model = _model()
    x = data.batch(torch.arange(3))
    with pytest.raises(ValueError, match=r"unknown modalities \['audio'\]"):
        model.posterior(x, [["mnist", "audio"]])
    with pytest.raises(ValueError, match=r"an empty subset has no experts"):
        model.posterior(x, [["mnist"], []])
    empty_row = torch.tensor([[True, False, False], [False, False, False]])
    with pytest.raises(ValueError, match=r"subsets \[1\] are empty.*at least one modality"):
        model.conditional_generate(x, empty_row)
    by_name = model.posterior(x, [["mnist"], ["svhn", "text"]]).mean()
    by_bool = model.posterior(x, torch.tensor([[1, 0, 0], [0, 1, 1]]).bool()).mean()
    torch.testing.assert_close(by_name, by_bool)
    assert torch.isfinite(_model("mvae").posterior(x, empty_row).mean()).all()  # prior expert


def test_training_data_that_does_not_fit_is_refused_before_training(tmp_path, data):
    def refused(tensors, match, labels=None, mask=None):
        bad = from_tensors(tensors, data.labels if labels is None else labels, mask)
        with pytest.raises(DataError, match=match):
            _trainer(tmp_path, bad)

    x = dict(data.data)
    refused({**x, "svhn": x["svhn"][:, :1]}, r"'svhn': a sample has shape \(1, 32, 32\).*"
                                             r"expects \(3, 32, 32\)")  # fmt: skip
    refused({**x, "mnist": x["mnist"].double()}, r"'mnist' is torch.float64.*convert")
    refused({**x, "text": x["text"].to("meta")}, r"text is a 'meta' tensor.*real data")
    refused({"mnist": x["mnist"], "svhn": x["svhn"], "audio": x["text"]},
            r"missing \['text'\], unknown \['audio'\]")  # fmt: skip
    refused({**x, "text": x["text"][:20]}, r"'text' has 20 samples but there are 32 labels")
    empty = {m: v[:0] for m, v in x.items()}
    refused(empty, "no samples", labels=data.labels[:0])
    no_modality = torch.ones(32, 3, dtype=torch.bool)
    no_modality[5] = False
    refused(x, r"1 samples have no modality at all", mask=no_modality)
    refused(x, r"mask must be a bool tensor of shape \(N, M\) = \(32, 3\)",
            mask=torch.ones(32, 2, dtype=torch.bool))  # fmt: skip
    with pytest.raises(DataError, match=r"unknown modalities \['audio'\]"):
        data.batch(torch.arange(2), ("mnist", "audio"))


def test_config_errors_for_the_reliability_settings(tmp_path, data, monkeypatch):
    with pytest.raises(ConfigError, match=r"data.missing_ratio must be a number in \[0, 1\)"):
        _cfg(**{"data.missing_ratio": 1.0})
    with pytest.raises(ConfigError, match="checkpoint_every_steps must be >= 0"):
        _cfg(**{"train.checkpoint_every_steps": -1})
    with pytest.raises(ConfigError, match="batch_split.*stochastic"):
        _cfg(**{"data.missing_ratio": 0.2, "model.sampling": "batch_split"})
    with pytest.raises(ConfigError, match="unknown config key 'data.missing'"):
        _cfg(**{"data.missing": 0.2})
    monkeypatch.setattr(train_mod, "world", lambda: (0, 3))  # as if launched with 3 processes
    with pytest.raises(ConfigError, match="batch_size 8 is not divisible by the 3 processes"):
        _trainer(tmp_path, data)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from data_prep.__main__ import main

    root = tmp_path_factory.mktemp("prepared")
    assert main(["celeba", "--root", str(root), "--small", "--quiet"]) == 0
    return root


def _load(root, split="valid", **kw):
    return data_mod.load("celeba", root, split, log=lambda *_: None, **kw)


def test_missing_or_corrupt_data_files_give_data_errors_with_the_fix(prepared, tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(prepared, root)
    d = root / "celeba"
    _load(root, verify=True)  # intact

    text = d / "valid_text.npy"
    original = text.read_bytes()
    text.write_bytes(original[: len(original) // 2])  # truncated
    with pytest.raises(DataError, match=rf"valid_text.npy has {len(original) // 2} bytes, the "
                                        rf"manifest says {len(original)}.*--force"):  # fmt: skip
        _load(root)
    text.write_bytes(b"\x00" * len(original))  # same size, header destroyed
    with pytest.raises(DataError, match=r"valid_text.npy cannot be read as a .npy array.*--force"):
        _load(root)
    flipped = bytearray(original)
    flipped[-1] ^= 1  # same size, one value changed: only the checksum sees it
    text.write_bytes(bytes(flipped))
    _load(root)
    with pytest.raises(DataError, match=r"valid_text.npy does not match its sha256"):
        _load(root, verify=True)
    text.write_bytes(original)

    manifest = d / "manifest.json"
    saved = manifest.read_text()
    manifest.write_text(saved[:100])
    with pytest.raises(DataError, match=r"manifest.json is not valid JSON.*--force"):
        _load(root)
    manifest.unlink()
    with pytest.raises(DataError, match=r"celeba is not prepared.*python -m data_prep celeba"):
        _load(root)
    manifest.write_text(saved)
    (d / "valid_img.npy").unlink()
    with pytest.raises(DataError, match=r"valid_img.npy is missing.*--force"):
        _load(root)


def test_an_unreadable_checkpoint_is_refused_with_the_fix(tmp_path, data):
    run(_cfg(), tmp_path, train_data=data, device="cpu", progress=False, log=lambda *_: None)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])  # e.g. copied while being written elsewhere
    with pytest.raises(CheckpointMismatchError, match=r"cannot be read as a checkpoint.*Move it"):
        run(_cfg(**{"train.epochs": 2}), tmp_path, train_data=data, device="cpu", progress=False,
            log=lambda *_: None, resume=True)  # fmt: skip
    torch.save({"weights": 1}, path)
    with pytest.raises(CheckpointMismatchError, match="not a trainer checkpoint"):
        run(_cfg(**{"train.epochs": 2}), tmp_path, train_data=data, device="cpu", progress=False,
            log=lambda *_: None, resume=True)  # fmt: skip


# -- incomplete data -------------------------------------------------------------------


def test_missing_mask_share_seed_and_at_least_one_modality():
    before = torch.get_rng_state()
    mask = missing_mask(20_000, 5, 0.4, seed=3)
    assert torch.equal(torch.get_rng_state(), before)  # its own generator
    assert torch.equal(mask, missing_mask(20_000, 5, 0.4, seed=3))
    assert not torch.equal(mask, missing_mask(20_000, 5, 0.4, seed=4))
    assert mask.any(1).all()
    # P(missing) = r minus the share put back: r^M samples get one of M modalities back
    expected = 0.4 - 0.4**5 / 5
    assert abs((~mask).float().mean().item() - expected) < 0.01
    assert missing_mask(10, 3, 0.0).all()
    with pytest.raises(ValueError, match=r"missing_ratio must be in \[0, 1\)"):
        missing_mask(10, 3, 1.0)
    d = from_tensors({"a": torch.zeros(6, 2), "b": torch.ones(6, 2)}, torch.zeros(6))
    dropped = drop_modalities(d, 0.5, seed=1)
    assert dropped.data["a"] is d.data["a"] and dropped.mask.shape == (6, 2)
    assert dropped.data_id() != d.data_id()


@pytest.mark.parametrize("method", METHODS + ["mmvae_dreg", "eq5"])
def test_a_missing_modality_encoder_is_untouched_by_a_full_training_step(tmp_path, data, method):
    """Trainer.train_step (objective, backward, Adam) with svhn missing from every sample:
    its encoder's gradients are exactly zero and its parameters do not move; NaN in the
    missing values never reaches anything."""
    trainer = _trainer(tmp_path, data, method, **{"model.importance_samples": 2})
    idx = torch.arange(8)
    x = data.batch(idx)
    x["svhn"] = torch.full_like(x["svhn"], float("nan"))
    mask = torch.ones(8, 3, dtype=torch.bool)
    mask[:, 1] = False
    mask[0, 0] = False  # a sample with text only
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    loss, _ = trainer.train_step(x, mask)
    assert torch.isfinite(loss)
    after = trainer.model.state_dict()
    for name, p in trainer.model.encoders["svhn"].named_parameters():
        assert p.grad is None or torch.equal(p.grad, torch.zeros_like(p.grad)), name
        assert torch.equal(after[f"encoders.svhn.{name}"], before[f"encoders.svhn.{name}"])
    for m in ("mnist", "text"):
        assert any(not torch.equal(after[k], before[k]) for k in after
                   if k.startswith(f"encoders.{m}.")), m  # fmt: skip


@pytest.mark.parametrize("method", ["mopoe", "mvae"])
def test_training_with_missing_ratio_passes_each_batch_its_mask(
    tmp_path, data, method, monkeypatch
):
    seen = []
    forward = type(_model()).forward

    def spy(self, x, mask=None):
        seen.append(mask.clone())
        return forward(self, x, mask)

    monkeypatch.setattr(type(_model()), "forward", spy)
    cfg = _cfg(method, **{"data.missing_ratio": 0.5, "train.epochs": 1})
    metrics = run(cfg, tmp_path, train_data=data, device="cpu", progress=False,
                  log=lambda *_: None)  # fmt: skip
    expected = missing_mask(32, 3, 0.5, seed=cfg.seed)
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(cfg.seed))
    assert torch.equal(torch.cat(seen), expected[perm])  # the data's mask, in the data order
    assert not expected.all()
    present = metrics["data"]["modalities_present"]
    share = expected.float().mean(0).tolist()
    assert present == pytest.approx(dict(zip(("mnist", "svhn", "text"), share, strict=True)))
    assert metrics["data"]["missing_ratio"] == 0.5
    line = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert all(v == v for v in line["rec"].values())  # finite averages


def test_evaluation_respects_masks():
    """A label-copy model: with the garbage modality marked missing, coherence is perfect and
    latent codes and likelihoods do not depend on the garbage; without the mask they do."""
    torch.manual_seed(0)
    model, test = label_copy_model(3, "mopoe"), label_copy_data(200, 3)
    garbage = dict(test.data)
    garbage["m2"] = 5.0 * torch.nn.functional.one_hot((test.labels + 3) % 10, 10).float()
    mask = torch.ones(200, 3, dtype=torch.bool)
    mask[:, 2] = False
    masked = from_tensors(garbage, test.labels, mask)
    unmasked = from_tensors(garbage, test.labels)
    identity = {m: Identity() for m in model.modalities}
    subsets = S.from_names([["m0"], ["m0", "m2"], ["m0", "m1", "m2"]], model.modalities)
    coh = conditional_coherence(model, masked, subsets, identity)
    assert (coh == 1.0).all()
    # read as present, the garbage ties with m0 in the {m0, m2} product (about half right)
    assert (conditional_coherence(model, unmasked, subsets, identity)[1] < 0.6).all()
    idx = torch.arange(20)
    torch.testing.assert_close(posterior_means(model, masked, idx, subsets),
                               posterior_means(model, test, idx, subsets[:1]).expand(3, -1, -1))  # fmt: skip
    x, xg = test.batch(idx), masked.batch(idx)
    for joint in (False, True):
        torch.manual_seed(1)
        a = log_likelihood(model, x, subsets, num_samples=4, joint=joint, mask=mask[:20])
        torch.manual_seed(1)
        b = log_likelihood(model, xg, subsets, num_samples=4, joint=joint, mask=mask[:20])
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)
