"""The trainer: learning, bitwise resumption, checkpoints, failures, configuration, CLI."""

import json

import pytest
import torch
from helpers import mst_like

from mopoe_lib.config import Config, ConfigError, bounded_overrides, make_config
from mopoe_lib.data import DataError, from_tensors
from mopoe_lib.train import (
    CheckpointMismatchError,
    NonFiniteLossError,
    Trainer,
    config_from_args,
    main,
    parse_args,
    run,
)


def _cfg(**over):
    base = {"model.latent_dim": 8, "train.batch_size": 16, "train.epochs": 2,
            "train.checkpoint_every": 1, "eval.enabled": False}  # fmt: skip
    return make_config("mnist_svhn_text", over.pop("method", "mopoe"), "smoke", {**base, **over})


@pytest.fixture(scope="module")
def data():
    return mst_like(48, seed=0), mst_like(16, seed=1)


def _run(cfg, out, data, **kw):
    return run(cfg, out, train_data=data[0], test_data=data[1], device="cpu", progress=False,
               log=lambda *_: None, **kw)  # fmt: skip


def _state(out):
    return torch.load(out / "checkpoint.pt", weights_only=False)


def test_a_short_run_lowers_the_loss(tmp_path, data):
    cfg = _cfg(**{"train.epochs": 4})
    metrics = _run(cfg, tmp_path, data)
    losses = [
        json.loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()
    ]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0]
    assert metrics["train"]["epochs"] == 4 and metrics["train"]["global_step"] == 12
    assert metrics["device"] == "cpu" and metrics["data"]["train"]["source"] == "tensors"


@pytest.mark.parametrize("method", ["mopoe", "mmvae_dreg"])
def test_resume_gives_bitwise_the_uninterrupted_run(tmp_path, data, method):
    full, part = tmp_path / "full", tmp_path / "part"
    _run(_cfg(method=method, **{"model.importance_samples": 2}), full, data)
    _run(_cfg(method=method, **{"train.epochs": 1, "model.importance_samples": 2}), part, data)
    assert _state(part)["epoch"] == 1
    _run(_cfg(method=method, **{"model.importance_samples": 2}), part, data, resume=True)
    a, b = _state(full), _state(part)
    assert a["epoch"] == b["epoch"] == 2
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert torch.equal(a["torch_rng"], b["torch_rng"])
    assert torch.equal(a["generator"], b["generator"])
    for sa, sb in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert not list(part.glob(".*tmp*")), "temporary checkpoint files were left behind"
    logs = (part / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in logs] == [1, 2]


def test_a_resumed_run_reports_the_training_time_of_every_session(tmp_path, data):
    first = _run(_cfg(**{"train.epochs": 1}), tmp_path, data)
    earlier = _state(tmp_path)["train_seconds"]
    assert earlier > 0
    # the last checkpoint is written inside fit, just before its end: it holds the training
    # time up to then (an equality within 0.05 s failed on a loaded machine, 0.13 vs 0.35 s)
    assert earlier <= first["wall_time_s"]["train_all_sessions"]
    second = _run(_cfg(), tmp_path, data, resume=True)
    wt = second["wall_time_s"]
    assert wt["train_all_sessions"] == pytest.approx(earlier + wt["train"], abs=0.5)
    assert wt["train_all_sessions"] > wt["train"]
    assert _state(tmp_path)["train_seconds"] == pytest.approx(wt["train_all_sessions"], abs=0.5)


def test_max_steps_stops_training_at_the_bound_and_cuts_the_last_epoch_short(tmp_path, data):
    # 48 tuples in batches of 16: 3 steps per epoch; a bound of 5 gives epochs of 3 and 2
    metrics = _run(_cfg(**{"train.epochs": 10, "train.max_steps": 5}), tmp_path, data)
    assert metrics["train"]["global_step"] == 5 and metrics["train"]["epochs"] == 2
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["global_step"] for e in logs] == [3, 5]
    assert _state(tmp_path)["global_step"] == 5  # the bound's end is checkpointed
    # resuming a run that reached its bound trains nothing more
    again = _run(_cfg(**{"train.epochs": 10, "train.max_steps": 5}), tmp_path, data, resume=True)
    assert again["train"]["global_step"] == 5


def test_a_bounded_run_spans_two_checkpointed_epochs_and_resumes_exactly(tmp_path, data):
    bound = bounded_overrides(4)
    assert bounded_overrides(None) == {}
    with pytest.raises(ConfigError, match="max_steps must be an integer >= 2"):
        bounded_overrides(1)
    full, part = tmp_path / "full", tmp_path / "part"
    _run(_cfg(**bound), full, data)
    assert _state(full)["global_step"] == 4 and _state(full)["epoch"] == 2
    _run(_cfg(**{**bound, "train.epochs": 1}), part, data)  # stopped after the first epoch
    assert _state(part)["global_step"] == 2
    _run(_cfg(**bound), part, data, resume=True)
    for k, v in _state(full)["model"].items():
        assert torch.equal(v, _state(part)["model"][k]), k


def test_bf16_autocast_and_compile_train_on_the_cpu(tmp_path, data):
    """The GPU switches run their code on the CPU: bfloat16 autocast in every step, and
    torch.compile'd networks whose checkpoint keeps the plain state-dict keys."""
    plain = _run(_cfg(**{"train.epochs": 1}), tmp_path / "fp32", data)
    bf16 = _run(_cfg(**{"train.epochs": 1, "train.bf16": True}), tmp_path / "bf16", data)
    lp, lb = plain["train"]["final"]["loss"], bf16["train"]["final"]["loss"]
    assert lb == pytest.approx(lp, rel=0.05) and lb != lp  # autocast ran, and changed little
    pytest.importorskip("torch._inductor")
    compiled = _run(_cfg(**{"train.epochs": 1, "train.compile": True}), tmp_path / "c", data)
    assert compiled["train"]["final"]["loss"] == pytest.approx(lp, rel=1e-3)
    assert set(_state(tmp_path / "c")["model"]) == set(_state(tmp_path / "fp32")["model"])


def test_resume_after_a_crash_drops_log_lines_past_the_checkpoint(tmp_path, data):
    _run(_cfg(**{"train.epochs": 1}), tmp_path, data)
    with open(tmp_path / "log.jsonl", "a") as f:  # epoch 2 was logged, then the run died
        f.write(json.dumps({"epoch": 2, "loss": 0.0}) + "\n")
    _run(_cfg(), tmp_path, data, resume=True)
    epochs = [
        json.loads(line)["epoch"] for line in (tmp_path / "log.jsonl").read_text().splitlines()
    ]
    assert epochs == [1, 2]


def test_checkpoint_from_another_config_or_data_is_refused(tmp_path, data):
    _run(_cfg(**{"train.epochs": 1}), tmp_path, data)
    with pytest.raises(CheckpointMismatchError, match=r"model\.beta: checkpoint 5\.0 vs now 1\.0"):
        _run(_cfg(**{"model.beta": 1.0}), tmp_path, data, resume=True)
    other = (mst_like(48, seed=5), data[1])
    with pytest.raises(CheckpointMismatchError, match="other data"):
        _run(_cfg(), tmp_path, other, resume=True)
    with pytest.raises(FileExistsError, match="--resume"):
        _run(_cfg(), tmp_path, data)


@pytest.mark.parametrize("method", ["mopoe", "mvae", "mmvae", "mmvae_dreg"])
def test_a_non_finite_loss_names_the_step_and_the_term(tmp_path, data, method):
    trainer = Trainer(_cfg(method=method, **{"model.importance_samples": 2}), data[0], tmp_path,
                      device="cpu", progress=False, log=lambda *_: None)  # fmt: skip
    with torch.no_grad():  # the SVHN decoder overflows: only its likelihood is non-finite
        trainer.model.decoders["svhn"].fc[0].bias.fill_(float("inf"))
    pattern = rf"\({method}\) at epoch 1, step 1 \(global\): non-finite term\(s\) \{{'rec\[svhn\]'"
    with pytest.raises(NonFiniteLossError, match=pattern) as err:
        trainer.fit()
    assert "rec[mnist]" not in str(err.value) and "'kl'" not in str(err.value)
    assert not (tmp_path / "checkpoint.pt").exists()  # nothing was saved from the bad step


@pytest.mark.parametrize(("method", "fill", "what"), [
    ("mopoe", 1e10, "gradients"), ("mopoe", 1e30, "loss"), ("mvae", 1e30, "loss"),
    ("mmvae", 1e30, "loss")])  # fmt: skip
def test_overflow_stops_at_its_step_with_the_parameters_untouched(tmp_path, data, method, fill,
                                                                   what):  # fmt: skip
    """Images far outside [0, 1]: at 1e10 MoPoE's loss is finite (~1e35) but its float32
    gradients overflow in the backward pass; at 1e30 the forward pass overflows. Either
    way the run stops at step 1, before Adam applies anything."""
    x = {m: t.clone() for m, t in data[0].data.items()}
    x["svhn"].fill_(fill)
    trainer = Trainer(_cfg(method=method), from_tensors(x, data[0].labels), tmp_path,
                      device="cpu", progress=False, log=lambda *_: None)  # fmt: skip
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    pattern = rf"non-finite {what}.*\({method}\) at epoch 1, step 1 \(global\)"
    with pytest.raises(NonFiniteLossError, match=pattern) as err:
        trainer.fit()
    assert "step was not applied" in str(err.value)
    if what == "gradients":
        assert "divide 8-bit values by 255" in str(err.value)
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert trainer.global_step == 0


def test_nan_in_the_data_is_refused_before_training(tmp_path, data):
    x = {m: t.clone() for m, t in data[0].data.items()}
    x["svhn"][7, 0, 3, 3] = float("nan")
    x["svhn"][9, 1, 0, 0] = float("inf")
    with pytest.raises(DataError, match=r"modality 'svhn' holds 2 NaN or infinite values "
                                        r"\(first at sample 7\).*mask"):  # fmt: skip
        _run(_cfg(), tmp_path, (from_tensors(x, data[0].labels), data[1]))
    assert not (tmp_path / "checkpoint.pt").exists()
    # the same values are fine where the mask says the modality is missing
    mask = torch.ones(len(data[0]), 3, dtype=torch.bool)
    mask[[7, 9], 1] = False
    _run(_cfg(**{"train.epochs": 1}), tmp_path, (from_tensors(x, data[0].labels, mask), data[1]))


def test_evaluation_writes_every_metric(tmp_path, data):
    cfg = _cfg(**{"train.epochs": 2, "train.eval_every": 1, "eval.enabled": True, "eval.n_test": 16,
                  "eval.ll_n_test": 4, "eval.ll_samples": 3, "eval.joint_samples": 20,
                  "eval.classifier_epochs": 1, "eval.lr_train_samples": 40,
                  "eval.classifier_dir": str(tmp_path / "clf")})  # fmt: skip
    metrics = _run(cfg, tmp_path / "run", data)
    ev = metrics["eval"]
    assert len(ev["subsets"]) == 7
    assert set(ev["latent_classification"]["by_num_inputs"]) == {"1", "2", "3"}
    assert set(ev["coherence"]["by_num_inputs"]) == {"1", "2"}
    assert 0 <= ev["coherence"]["joint"] <= 1
    assert ev["log_likelihood"]["importance_samples"] == 3
    assert len(list((tmp_path / "clf").glob("*.pt"))) == 3
    assert [p.name for p in (tmp_path / "run" / "eval").iterdir()] == ["epoch_0001.json"]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # cross-modal targets only: a subset's own modalities are not generated for coherence
    assert saved["eval"]["coherence"]["conditional"]["mnist"].keys() == {"svhn", "text"}
    assert saved["eval"]["coherence"]["conditional"]["mnist,svhn,text"] == {}
    for key in ("wall_time_s", "device", "profile", "seed", "data"):
        assert key in saved


def test_models_of_every_seed_read_coherence_through_the_same_classifiers(tmp_path, data):
    over = {"eval.enabled": True, "eval.n_test": 16, "eval.ll_n_test": 4, "eval.ll_samples": 2,
            "eval.joint_samples": 20, "eval.classifier_epochs": 1, "eval.lr_train_samples": 40,
            "eval.classifier_dir": str(tmp_path / "clf"), "train.epochs": 1}  # fmt: skip
    for seed in (0, 1):
        _run(_cfg(**over, seed=seed), tmp_path / f"run{seed}", data)
    assert len(list((tmp_path / "clf").glob("*.pt"))) == 3  # one per modality, not per seed


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match=r"unknown config key 'model.latnt_dim'.*latent_dim"):
        make_config("polymnist", "mopoe", "cpu", {"model.latnt_dim": 3})
    with pytest.raises(ConfigError, match="unknown config key 'optimizer'"):
        Config.from_dict({"optimizer": {"lr": 1}})
    with pytest.raises(ConfigError, match="method must be one of"):
        make_config("polymnist", "poe", "cpu")
    with pytest.raises(ConfigError, match="model.sampling must be one of"):
        make_config("polymnist", "mopoe", "cpu", {"model.sampling": "random"})
    with pytest.raises(ConfigError, match="integer"):
        make_config("polymnist", "mopoe", "cpu", {"train.epochs": 1.5})
    with pytest.raises(ConfigError, match="celeba only"):
        make_config("polymnist", "mopoe", "cpu", {"model.style_dim": 2})
    cfg = make_config("celeba", "mopoe", "paper")
    assert (cfg.model.latent_dim, cfg.model.style_dim, cfg.train.lr) == (32, 32, 5e-4)
    assert make_config("mnist_svhn_text", "mvae", "paper").model.beta == 5.0
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_command_line_arguments():
    args = parse_args(["--dataset", "mnist_svhn_text", "--model", "mopoe", "--profile", "paper",
                       "--out", "x", "--epochs", "3", "--seed", "7",
                       "--set", "model.prior_expert=full", "--set", "model.beta=2.5"])  # fmt: skip
    cfg = config_from_args(args)
    assert (cfg.train.epochs, cfg.seed, cfg.model.prior_expert, cfg.model.beta) == (
        3,
        7,
        "full",
        2.5,
    )
    assert main(["--dataset", "polymnist", "--model", "mopoe", "--out", "x",
                 "--set", "train.nope=1"]) == 2  # fmt: skip
