"""Benchmarks (not tests): measured side by side in one run, written to JSON.

    python -m mopoe_lib.bench [all|steps|steps_cpu|fusion|eval|race|gpu] [--json FILE] [--threads 2]

``steps``  time per training step (forward, backward, Adam) at PolyMNIST's size (M=5
           modalities, B=256, latent 512, the paper's networks) of mopoe_lib's MoPoE, MVAE
           and MMVAE (DReG at K=1 and K=10), of multivae's same three models on copies of
           the *same* networks and weights, and of each model's compute floor: the networks
           alone, run as many times as the objective needs them, with a plain loss.
           Implementations are timed round-robin (one step of each per round), so a change
           of machine load hits all of them alike.
``fusion`` the batched all-subset product of experts against the per-subset loop that the
           official code and the peer libraries use, and its share of a MoPoE step.
``eval``   the evaluation of Appendix B on a test set: latent classification, coherence
           over all 31 subsets and joint coherence, importance-sampled log-likelihoods.
``race``   time to quality: minutes of training until MoPoE's unimodal probe reaches 0.5,
           mopoe_lib's trainer against multivae's on the same data and networks
           (``bench_race``; needs the prepared offline PolyMNIST, ``--data-root``).
``gpu``    PolyMNIST epoch time at the paper's settings with the data on the device (CUDA):
           fp32 against bf16 autocast, torch.compile off and on, and the hours that the
           paper's 300 epochs would take at that speed; run it before a reproduction.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from . import subsets as S
from .config import make_config
from .fusion import subset_posteriors, subset_posteriors_loop
from .model import MultimodalVAE, build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats(times_ms: list[float]) -> dict:
    q = statistics.quantiles(times_ms, n=4) if len(times_ms) > 1 else [times_ms[0]] * 3
    return {
        "median_ms": statistics.median(times_ms),
        "min_ms": min(times_ms),
        "iqr_ms": q[2] - q[0],
        "repeats": len(times_ms),
    }


def time_call(fn, device: torch.device, repeats: int = 30, warmup: int = 3) -> dict:
    """Median and spread of wall times of ``fn()`` in milliseconds."""
    return time_round_robin({"fn": fn}, device, repeats, warmup)["fn"]


def time_round_robin(fns: dict[str, Callable], device, repeats: int, warmup: int = 1) -> dict:
    """Time several callables interleaved: each round runs every one once, in turn."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: _stats(v) for k, v in times.items()}


# ---------------------------------------------------------------------------
# Training steps


def polymnist_model(method: str, latent_dim: int, device, *, K: int = 1,
                    profile: str = "paper") -> MultimodalVAE:  # fmt: skip
    """The networks and likelihood of ``profile`` (``cpu``: quarter widths, Gaussian)."""
    over = {"model.latent_dim": latent_dim}
    if method == "mmvae_dreg":
        over["model.importance_samples"] = K
    torch.manual_seed(0)
    return build_model(make_config("polymnist", method, profile, over)).to(device)


def polymnist_batch(batch: int, device, seed: int = 0) -> tuple[dict, torch.Tensor]:
    """A fixed batch of PolyMNIST-shaped images in [0, 1] (timing does not depend on content)."""
    g = torch.Generator().manual_seed(seed)
    x = {f"m{k}": torch.rand(batch, 3, 28, 28, generator=g).to(device) for k in range(5)}
    return x, torch.randint(0, 10, (batch,), generator=g).to(device)


def _adam_step(params, loss_fn) -> Callable[[], None]:
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    return step


def ours_step(model: MultimodalVAE, x) -> Callable[[], None]:
    return _adam_step(model.parameters(), lambda: model.objective(x).loss())


def floor_step(model: MultimodalVAE, x, decodes: Callable[[int], int]) -> Callable[[], None]:
    """The networks alone: every encoder once, decoder m on ``decodes(m) * B`` codes, and an
    L1 + squared loss (no fusion, no likelihood, no KL), then Adam."""
    mods = model.modalities

    def loss():
        mus, lvs = zip(*(model.encoders[m](x[m]) for m in mods), strict=True)
        z = torch.stack(mus).mean(0)  # (B, D): one code the decoders can share
        total = sum(
            mu.square().mean() + lv.square().mean() for mu, lv in zip(mus, lvs, strict=True)
        )
        for i, m in enumerate(mods):
            n, b = decodes(i), z.shape[0]
            codes = z.expand(n, *z.shape).reshape(n * b, -1)
            # the decoder calls of the same size as the model's (MultimodalVAE._group_chunk)
            rows = model._group_chunk(n, b, z.device) * b
            for part in codes.split(rows):
                out = model.decoders[m](part).view(-1, b, *x[m].shape[1:])
                total = total + (out - x[m]).abs().mean()
        return total

    return _adam_step(model.parameters(), loss)


def peer_step(net, batch) -> Callable[[], None]:
    return _adam_step(net.parameters(), lambda: net(batch).loss)


def bench_steps(batch=256, latent_dim=512, device="cpu", repeats=5, ks=(1, 10),
                peer=True, log=print, profile="paper") -> dict:  # fmt: skip
    """Per-step time of each model: ours, multivae (if installed) and the floor, with the
    networks of ``profile`` (``"cpu"``: the shapes the book trains, see ``cpu_shapes``)."""
    from . import bench_peer

    dev = torch.device(device)
    x, labels = polymnist_batch(batch, dev)
    peer_version = bench_peer.available() if peer else None
    if peer and peer_version is None:
        log("[bench] multivae is not installed (pip install -e '.[bench]'); timing ours only")
    m = 5
    # (row, our method, multivae model, K, decoder passes per decoder (x B) of our objective)
    rows = [("MoPoE", "mopoe", "mopoe", 1, lambda i: 1),
            ("MVAE", "mvae", "mvae", 1, lambda i: 2)]  # fmt: skip
    for k in ks:
        rows.append((f"MMVAE K={k}", "mmvae_dreg", "mmvae", k, lambda i, k=k: m * k))
    out = {}
    for name, method, peer_name, k, decodes in rows:
        model = polymnist_model(method, latent_dim, dev, K=k, profile=profile)
        fns = {"mopoe_lib": ours_step(model, x)}
        if peer_version:
            batch_peer = bench_peer.dataset(x, labels)
            fns["multivae"] = peer_step(bench_peer.build(model, peer_name, K=k), batch_peer)
        fns["floor"] = floor_step(polymnist_model(method, latent_dim, dev, K=k, profile=profile),
                                  x, decodes)  # fmt: skip
        reps = repeats if k == 1 else max(2, repeats // 2)
        t0 = time.perf_counter()
        res = time_round_robin(fns, dev, reps, warmup=1)
        r = dict(res)
        ours = r["mopoe_lib"]["median_ms"]
        r["ours_over_floor"] = ours / r["floor"]["median_ms"]
        if "multivae" in r:
            r["ours_over_multivae"] = ours / r["multivae"]["median_ms"]
        r["objective"] = method + (f" (K={k})" if method == "mmvae_dreg" else "")
        r["tuples_per_s"] = {impl: 1000 * batch / res[impl]["median_ms"] for impl in res}
        r["floor_decoder_passes"] = m * decodes(0)
        out[name] = r
        log(f"[bench] {name:11s} " + "  ".join(
            f"{impl} {v['median_ms']:7.0f} ms" for impl, v in res.items())
            + f"  ours/floor {r['ours_over_floor']:.2f}"
            + (f"  ours/multivae {r['ours_over_multivae']:.2f}" if "multivae" in r else "")
            + f"  ({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    nets = {"paper": "PolyMNIST (paper)"}.get(profile, f"PolyMNIST ({profile} profile)")
    out["config"] = {"M": m, "B": batch, "latent_dim": latent_dim, "networks": nets,
                     "profile": profile, "multivae": peer_version,
                     "data": "fixed uniform batch"}  # fmt: skip
    return out


def cpu_shapes() -> dict:
    """Batch and latent size of the ``cpu`` profile's PolyMNIST runs (chapter 8)."""
    cfg = make_config("polymnist", "mopoe", "cpu")
    return {"batch": cfg.train.batch_size, "latent_dim": cfg.model.latent_dim}


# ---------------------------------------------------------------------------
# Subset fusion


def bench_fusion(
    num_modalities: int = 5,
    batch: int = 256,
    dim: int = 512,
    prior_expert: str = "none",
    device: str = "cpu",
    repeats: int = 30,
) -> dict:
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(num_modalities, batch, dim, generator=g).to(dev)
    lv = torch.randn(num_modalities, batch, dim, generator=g).to(dev)
    subsets = S.powerset(num_modalities)
    out = {}
    for name, fn in (("batched", subset_posteriors), ("loop", subset_posteriors_loop)):
        with torch.no_grad():
            out[f"{name}_forward"] = time_call(
                lambda fn=fn: fn(mu, lv, subsets, prior_expert), dev, repeats
            )
        mu_g, lv_g = mu.clone().requires_grad_(), lv.clone().requires_grad_()

        def fwd_bwd(fn=fn, mu_g=mu_g, lv_g=lv_g):
            m, v = fn(mu_g, lv_g, subsets, prior_expert)
            (m.sum() + v.sum()).backward()

        out[f"{name}_forward_backward"] = time_call(fwd_bwd, dev, repeats)
    out["speedup_forward"] = out["loop_forward"]["median_ms"] / out["batched_forward"]["median_ms"]
    out["speedup_forward_backward"] = (
        out["loop_forward_backward"]["median_ms"] / out["batched_forward_backward"]["median_ms"]
    )
    out["config"] = {
        "M": num_modalities,
        "B": batch,
        "D": dim,
        "subsets": int(subsets.shape[0]),
        "prior_expert": prior_expert,
    }
    return out


def fusion_in_step(model: MultimodalVAE, x, repeats: int = 5) -> dict:
    """The share of one MoPoE training step spent in the subset fusion (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    import mopoe_lib.objectives as O

    step = ours_step(model, x)
    step()  # warm-up
    original = O.subset_posteriors

    def traced(*a, **kw):
        with record_function("subset_posteriors"):
            return original(*a, **kw)

    O.subset_posteriors = traced
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            with record_function("train_step"):
                for _ in range(repeats):
                    step()
    finally:
        O.subset_posteriors = original
    ev = {e.key: e for e in prof.key_averages()}
    total = ev["train_step"].cpu_time_total
    # Forward only: autograd's backward of the fusion runs outside the record_function
    # scope, so it is measured separately in bench_fusion (forward + backward).
    fwd = ev["subset_posteriors"].cpu_time_total
    top = sorted((e for e in prof.key_averages() if e.key not in ("train_step",)),
                 key=lambda e: e.self_cpu_time_total, reverse=True)[:12]  # fmt: skip
    return {
        "step_ms": total / 1e3 / repeats,
        "fusion_forward_ms": fwd / 1e3 / repeats,
        "fusion_forward_share": fwd / total,
        "profile_top_self_cpu": [
            {
                "op": e.key,
                "self_cpu_ms_per_step": e.self_cpu_time_total / 1e3 / repeats,
                "share": e.self_cpu_time_total / total,
            }
            for e in top  # fmt: skip
        ],
    }


# ---------------------------------------------------------------------------
# Evaluation


def bench_eval(n_test=1000, ll_n_test=100, joint_samples=1000, latent_dim=512, device="cpu",
               log=print) -> dict:  # fmt: skip
    """Wall time of the Appendix B evaluation of an (untrained) PolyMNIST MoPoE model."""
    from .config import EvalConfig
    from .data import TensorData
    from .evaluation import classifiers as clf_mod
    from .evaluation import evaluate
    from .networks import classifier

    dev = torch.device(device)
    model = polymnist_model("mopoe", latent_dim, dev)
    g = torch.Generator().manual_seed(1)
    n = max(n_test, 1000)

    def data(k):
        x = {f"m{i}": torch.rand(k, 3, 28, 28, generator=g) for i in range(5)}
        return TensorData(x, torch.randint(0, 10, (k,), generator=g)).to(dev)

    train, test = data(1000), data(n)
    torch.manual_seed(0)
    clfs = {m: clf_mod.freeze(classifier("polymnist", m).to(dev)) for m in model.modalities}
    ec = EvalConfig(n_test=n_test, ll_n_test=ll_n_test, joint_samples=joint_samples)
    t0 = time.perf_counter()
    res = evaluate(model, train, test, clfs, ec, log=lambda s: None)
    out = {
        "latent_classification_s": res["latent_classification"]["seconds"],
        "coherence_s": res["coherence"]["seconds"],
        "log_likelihood_s": res["log_likelihood"]["seconds"],
        "total_s": time.perf_counter() - t0,
        "config": {
            "n_test": n_test,
            "ll_n_test": ll_n_test,
            "ll_samples": ec.ll_samples,
            "joint_samples": joint_samples,
            "subsets": 31,
            "lr_train_samples": ec.lr_train_samples,
            "latent_dim": latent_dim,
        },  # fmt: skip
    }
    log(f"[bench] evaluation: latent classification {out['latent_classification_s']:.1f} s, "
        f"coherence {out['coherence_s']:.1f} s, log-likelihood {out['log_likelihood_s']:.1f} s "
        f"({n_test} test tuples, {ll_n_test} for the likelihood)")  # fmt: skip
    return out


# ---------------------------------------------------------------------------
# GPU: epoch time at the paper's settings


VARIANTS = ((False, False), (False, True), (True, False), (True, True))  # (bf16, compile)


def bench_gpu(device="cuda", n=60_000, batch=256, log=print, variants=VARIANTS) -> dict:
    """PolyMNIST epoch (``n`` tuples, data on the device) of MoPoE at the paper's settings,
    fp32 against bf16 autocast, torch.compile off and on, and what the paper's 300 epochs
    would take at that speed. Meant for a GPU; ``device="cpu"`` runs the same code (tests)."""
    from .data import TensorData
    from .train import Trainer

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("the gpu benchmark needs CUDA (torch.cuda.is_available() is False); "
                           "run it on the machine with the GPU, or pass --device cpu")  # fmt: skip
    g = torch.Generator().manual_seed(0)
    x = {f"m{i}": torch.rand(n, 3, 28, 28, generator=g) for i in range(5)}
    data = TensorData(x, torch.randint(0, 10, (n,), generator=g))
    epochs = make_config("polymnist", "mopoe", "paper").train.epochs
    out = {}
    import tempfile

    for bf16, compiled in variants:
        name = f"{'bf16' if bf16 else 'fp32'}{' compile' if compiled else ''}"
        cfg = make_config("polymnist", "mopoe", "paper",
                          {"train.bf16": bf16, "train.compile": compiled,
                           "train.batch_size": batch, "train.epochs": 2,
                           "train.checkpoint_every": 100})  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            tr = Trainer(cfg, data, tmp, device=device, progress=False, log=lambda s: None)
            first = tr.train_epoch()  # includes compilation / cudnn autotuning
            second = tr.train_epoch()
        full = second["seconds"] * epochs * 60_000 / n  # the paper's epochs of 60,000 tuples
        out[name] = {"first_epoch_s": first["seconds"], "epoch_s": second["seconds"],
                     "samples_per_second": second["samples_per_second"],
                     "paper_run_h": full / 3600}  # fmt: skip
        log(f"[bench] gpu {name:13s} epoch {second['seconds']:.1f} s (first "
            f"{first['seconds']:.1f} s); the paper's {epochs} epochs of 60,000 tuples: about "
            f"{full / 3600:.1f} h per PolyMNIST model")  # fmt: skip
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    out["config"] = {"n": n, "B": batch, "device": gpu, "epochs": epochs}
    return out


# ---------------------------------------------------------------------------


# Targets of the benchmark issue, as ratios measured in one run (lower is better).
TARGETS = [
    ("steps", "MoPoE", "ours_over_floor", 1.15),
    ("steps", "MoPoE", "ours_over_multivae", 0.67),
    ("steps", "MVAE", "ours_over_multivae", 0.80),
    ("steps", "MMVAE K=1", "ours_over_floor", 1.15),
    ("steps", "MMVAE K=1", "ours_over_multivae", 1.0),
    ("steps", "MMVAE K=10", "ours_over_floor", 1.15),
    ("steps", "MMVAE K=10", "ours_over_multivae", 1.0),
    ("fusion", None, "share_of_mopoe_step", 0.02),
]


def target_rows(results: dict) -> list[list[str]]:
    """One row per target: what, measured ratio, target, met (or why not measured)."""
    rows = []
    for section, row, key, limit in TARGETS:
        where = results.get(section, {})
        value = (where.get(row) or {}).get(key) if row else where.get(key)
        name = f"{row}: {key}" if row else f"subset fusion: {key}"
        if value is None:
            rows.append([name, "not measured", f"<= {limit:g}", "-"])
        else:
            met = value < limit if limit == 1.0 else value <= limit
            rows.append([name, f"{value:.3f}", ("< " if limit == 1.0 else "<= ") + f"{limit:g}",
                         "yes" if met else "no"])  # fmt: skip
    return rows


def step_rows(results: dict, section: str = "steps") -> list[list[str]]:
    steps = results.get(section, {})
    rows = []
    for name, r in steps.items():
        if name == "config":
            continue

        def ms(impl, r=r):
            return f"{r[impl]['median_ms']:.0f} ± {r[impl]['iqr_ms'] / 2:.0f}" if impl in r else "-"

        rows.append([name, r["objective"], ms("mopoe_lib"), ms("multivae"), ms("floor"),
                     f"{r['ours_over_floor']:.2f}",
                     f"{r['ours_over_multivae']:.2f}" if "ours_over_multivae" in r else "-"])  # fmt: skip
    return rows


def environment(device: str) -> dict:
    env = {
        "torch": torch.__version__,
        "device": device,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        env["load_average_at_start"] = list(__import__("os").getloadavg())
    except OSError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mopoe_lib.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", choices=["all", "steps", "steps_cpu", "fusion", "eval", "race", "gpu"],
                   nargs="?", default="all")  # fmt: skip
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per implementation")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--latent", type=int, default=512)
    p.add_argument("--no-peer", action="store_true", help="do not time multivae")
    p.add_argument("--data-root", default="data", help="prepared data for the race")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results: dict = {"environment": environment(args.device)}
    what = args.what
    if what in ("all", "steps"):
        results["steps"] = bench_steps(args.batch, args.latent, args.device, args.repeats,
                                       peer=not args.no_peer)  # fmt: skip
    if what in ("all", "steps_cpu"):  # the shapes and networks chapter 8 trains under cpu
        shapes = cpu_shapes()
        results["steps_cpu"] = bench_steps(shapes["batch"], shapes["latent_dim"], args.device,
                                           args.repeats, ks=(1,), peer=not args.no_peer,
                                           profile="cpu")  # fmt: skip
    if what in ("all", "fusion"):
        r = bench_fusion(batch=args.batch, dim=args.latent, device=args.device)
        x, _ = polymnist_batch(args.batch, torch.device(args.device))
        model = polymnist_model("mopoe", args.latent, args.device)
        r["in_step"] = fusion_in_step(model, x)
        step_ms = r["in_step"]["step_ms"]  # profiled (the profiler adds some overhead)
        if "steps" in results:  # the unprofiled step of the same run
            step_ms = results["steps"]["MoPoE"]["mopoe_lib"]["median_ms"]
        r["share_of_mopoe_step"] = r["batched_forward_backward"]["median_ms"] / step_ms
        r["step_ms_for_share"] = step_ms
        results["fusion"] = r
        c = r["config"]
        print(f"[bench] subset fusion, M={c['M']} B={c['B']} D={c['D']} ({c['subsets']} "
              f"subsets), {args.device}, {torch.get_num_threads()} threads")  # fmt: skip
        for mode in ("forward", "forward_backward"):
            b, lp = r[f"batched_{mode}"]["median_ms"], r[f"loop_{mode}"]["median_ms"]
            print(f"  {mode:17s} batched {b:8.2f} ms   loop {lp:8.2f} ms   speed-up x{lp / b:.2f}")
        print(f"  fusion (forward + backward) = {100 * r['share_of_mopoe_step']:.1f} % of a "
              f"MoPoE step ({step_ms:.0f} ms)")  # fmt: skip
        print("  profile of a MoPoE step, top self-CPU ops:")
        for e in r["in_step"]["profile_top_self_cpu"][:8]:
            print(
                f"    {e['op']:40s} {e['self_cpu_ms_per_step']:8.1f} ms  {100 * e['share']:5.1f} %"
            )
    if what in ("all", "eval"):
        results["eval"] = bench_eval(latent_dim=args.latent, device=args.device)
    if what in ("all", "race"):
        from .bench_race import bench_race

        results["race"] = bench_race(args.data_root, device=args.device, peer=not args.no_peer)
    if what == "gpu" or (what == "all" and args.device.startswith("cuda")):
        # CUDA always from the command line (60,000 tuples at paper size would take an hour
        # on a CPU); tests call bench_gpu on the CPU with a few tuples
        results["gpu"] = bench_gpu(args.device if args.device.startswith("cuda") else "cuda")
    results["wall_time_s"] = time.perf_counter() - start
    print("[bench] targets (ratios of one run):")
    for name, value, limit, met in target_rows(results):
        print(f"  {name:38s} {value:>12s}  target {limit:8s}  met: {met}")
    print(f"[bench] done in {results['wall_time_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
