"""Time to quality: minutes of training until MoPoE's unimodal probe reaches a target.

    python -m mopoe_lib.bench race [--json FILE]

Both sides train the ``cpu`` profile's PolyMNIST MoPoE (chapter 8: quarter-width networks,
Gaussian likelihood, latent 64, beta 2.5, Adam at lr 2e-3, batch 128) on the same prepared
training tuples, from the same initial weights: mopoe_lib with its ``Trainer``, multivae with
its ``BaseTrainer`` on copies of the very same networks (``bench_peer``). Each library trains
as its users would run it; the one setting multivae's MoPoE lacks is the KL warm-up of the
``cpu`` profile, so its runs use the full beta from the first step.

After every epoch the clock stops and both models are scored by the same probe: the curve's
linear latent classification (``evaluation.curve.curve_point``, logistic regression on the
unimodal posterior means of ``n`` training tuples, scored on ``n`` test tuples, averaged
over the modalities), on a mopoe_lib model that carries the side's current weights. A side
stops at the first epoch whose probe reaches the target, or after ``max_epochs``. Only
training time counts; the probe's own time is reported beside it.
"""

from __future__ import annotations

import tempfile
import time

import torch

from .config import make_config
from .data import TensorData
from .evaluation.curve import curve_point
from .model import MultimodalVAE, build_model


def _probe(model: MultimodalVAE, train: TensorData, test: TensorData, n: int, seed: int) -> float:
    return float(curve_point(model, train, test, n, seed=seed)["probe_unimodal"])


def _carry_weights(twin: MultimodalVAE, net) -> MultimodalVAE:
    """Copy multivae's networks (wrappers around copies of ours) into a mopoe_lib model."""
    for m in twin.modalities:
        twin.encoders[m].load_state_dict(net.encoders[m].net.state_dict())
        twin.decoders[m].load_state_dict(net.decoders[m].net.state_dict())
    return twin


def _race_side(name, train_epoch, probe, target, max_epochs, steps_per_epoch, log) -> dict:
    points, train_s, probe_s = [], 0.0, 0.0
    reached = None
    for epoch in range(1, max_epochs + 1):
        t0 = time.perf_counter()
        train_epoch(epoch)
        train_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        score = probe()
        probe_s += time.perf_counter() - t0
        points.append({"epoch": epoch, "updates": epoch * steps_per_epoch,
                       "train_s": train_s, "probe_unimodal": score})  # fmt: skip
        log(f"[bench] race {name:9s} epoch {epoch:2d}: probe {score:.3f} after {train_s:6.1f} s")
        if score >= target:
            reached = points[-1]
            break
    return {"points": points, "reached": reached, "probe_s": probe_s,
            "minutes_to_target": None if reached is None else reached["train_s"] / 60}  # fmt: skip


def bench_race(data_root="data", target=0.5, max_epochs=10, n_probe=1000, seed=0,
               device="cpu", peer=True, log=print, profile="cpu") -> dict:  # fmt: skip
    """Minutes of training until the unimodal probe reaches ``target``, per library
    (``profile`` other than ``cpu`` only to test the plumbing cheaply)."""
    from . import bench_peer
    from .data import load
    from .train import Trainer

    cfg = make_config("polymnist", "mopoe", profile, seed=seed)
    prepare = dict(cfg.data.prepare)
    train = load("polymnist", data_root, "train", prepare=prepare, log=lambda s: None)
    test = load("polymnist", data_root, "test", prepare=prepare, log=lambda s: None)
    if cfg.data.n_train:
        train = train.subset(cfg.data.n_train)
    dev = torch.device(device)
    train_dev, test_dev = train.to(dev), test.to(dev)
    out = {}

    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, train_dev, tmp, device=dev, progress=False, log=lambda s: None)
        init = {k: v.clone() for k, v in tr.model.state_dict().items()}
        steps = tr.steps_per_epoch()
        out["mopoe_lib"] = _race_side(
            "mopoe_lib", lambda e: tr.train_epoch(),
            lambda: _probe(tr.model, train_dev, test_dev, n_probe, seed),
            target, max_epochs, steps, log)  # fmt: skip

    version = bench_peer.available() if peer else None
    if peer and version is None:
        log("[bench] multivae is not installed (pip install -e '.[bench]'); racing ours only")
    if version:
        from multivae.trainers import BaseTrainer, BaseTrainerConfig

        model = build_model(cfg).to(dev)
        model.load_state_dict(init)  # the very weights mopoe_lib started from
        net = bench_peer.build(model, "mopoe")
        everything = torch.arange(len(train))
        x = {m: v.to(dev) for m, v in train.batch(everything).items()}
        with tempfile.TemporaryDirectory() as tmp:
            tc = BaseTrainerConfig(output_dir=tmp, per_device_train_batch_size=cfg.train.batch_size,
                                   num_epochs=max_epochs, learning_rate=cfg.train.lr, seed=seed,
                                   no_cuda=dev.type != "cuda")  # fmt: skip
            trainer = BaseTrainer(net, bench_peer.dataset(x, train.labels), training_config=tc)
            twin = build_model(cfg).to(dev)
            out["multivae"] = _race_side(
                "multivae", trainer.train_step,
                lambda: _probe(_carry_weights(twin, trainer.model), train_dev, test_dev, n_probe,
                               seed),
                target, max_epochs, len(trainer.train_loader), log)  # fmt: skip
    ours = out["mopoe_lib"]["minutes_to_target"]
    theirs = out.get("multivae", {}).get("minutes_to_target")
    if ours is not None and theirs is not None:
        out["ours_over_multivae"] = ours / theirs
    out["config"] = {"target": target, "max_epochs": max_epochs, "n_probe": n_probe,
                     "seed": seed, "tuples": len(train),
                     "batch": cfg.train.batch_size, "latent_dim": cfg.model.latent_dim,
                     "lr": cfg.train.lr, "beta": cfg.model.beta,
                     "beta_warmup_steps": {"mopoe_lib": cfg.train.beta_warmup_steps,
                                           "multivae": 0},
                     "networks": f"PolyMNIST ({profile} profile)", "multivae": version,
                     "data": "offline PolyMNIST (data_prep), training split"}  # fmt: skip
    return out


def race_rows(results: dict) -> list[list[str]]:
    """One row per library: minutes to the target, epochs, probe at the end."""
    race = results.get("race", {})
    rows = []
    for impl in ("mopoe_lib", "multivae"):
        r = race.get(impl)
        if r is None:
            continue
        last = r["points"][-1]
        reached = r["reached"]
        rows.append([impl,
                     f"{r['minutes_to_target']:.2f}" if reached else "not reached",
                     str(reached["updates"] if reached else last["updates"]),
                     f"{last['probe_unimodal']:.3f}", f"{last['train_s']:.0f}"])  # fmt: skip
    return rows
