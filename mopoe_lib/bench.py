"""Benchmarks (not tests): measured side by side in one run, written to JSON.

    python -m mopoe_lib.bench fusion [--json FILE] [--device cpu] [--threads 2]

``fusion`` times the batched all-subset product of experts
(:func:`mopoe_lib.fusion.subset_posteriors`) against the per-subset loop that the
official code and the peer libraries use (:func:`subset_posteriors_loop`), forward
alone and forward + backward, at the PolyMNIST size M=5, B=256, D=512 (31 subsets).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from . import subsets as S
from .fusion import subset_posteriors, subset_posteriors_loop


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device: torch.device, repeats: int = 30, warmup: int = 3) -> dict:
    """Median and spread of wall times of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "iqr_ms": statistics.quantiles(times, n=4)[2] - statistics.quantiles(times, n=4)[0],
        "repeats": repeats,
    }


def bench_fusion(
    num_modalities: int = 5,
    batch: int = 256,
    dim: int = 512,
    prior_expert: str = "full",
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


def environment(device: str) -> dict:
    env = {
        "torch": torch.__version__,
        "device": device,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mopoe_lib.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", choices=["fusion"], nargs="?", default="fusion")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"environment": environment(args.device)}
    if args.what == "fusion":
        r = bench_fusion(device=args.device, repeats=args.repeats)
        results["fusion"] = r
        c = r["config"]
        print(
            f"subset fusion, M={c['M']} B={c['B']} D={c['D']} ({c['subsets']} subsets), "
            f"{args.device}, {results['environment']['threads']} threads"
        )
        for mode in ("forward", "forward_backward"):
            b, lp = r[f"batched_{mode}"]["median_ms"], r[f"loop_{mode}"]["median_ms"]
            print(f"  {mode:17s} batched {b:8.2f} ms   loop {lp:8.2f} ms   speed-up x{lp / b:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
