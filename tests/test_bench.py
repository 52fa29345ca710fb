"""The benchmark's plumbing (not its timings): the same networks on both sides, the floor,
the JSON it writes, and the book page's tables. Timings live in `python -m mopoe_lib.bench`."""

import json

import pytest
import torch

from mopoe_lib import bench


def test_the_peer_runs_copies_of_our_networks_with_the_same_weights():
    bench_peer = pytest.importorskip("mopoe_lib.bench_peer")
    pytest.importorskip("multivae")
    x, labels = bench.polymnist_batch(4, torch.device("cpu"))
    for ours, peer in (("mopoe", "mopoe"), ("mvae", "mvae"), ("mmvae_dreg", "mmvae")):
        model = bench.polymnist_model(ours, 8, "cpu", K=2)
        net = bench_peer.build(model, peer, K=2)
        for m in model.modalities:
            ref, copy = model.encoders[m], net.encoders[m].net
            assert copy is not ref  # a copy: both sides train their own parameters
            for a, b in zip(ref.parameters(), copy.parameters(), strict=True):
                assert torch.equal(a, b)
            torch.testing.assert_close(net.decoders[m](torch.ones(2, 8)).reconstruction,
                                       model.decoders[m](torch.ones(2, 8)))  # fmt: skip
        loss = net(bench_peer.dataset(x, labels)).loss
        assert loss.dim() == 0 and torch.isfinite(loss)


def test_the_floor_runs_each_network_as_often_as_the_objective():
    model = bench.polymnist_model("mmvae_dreg", 8, "cpu", K=3)
    x, _ = bench.polymnist_batch(4, torch.device("cpu"))
    rows = {m: 0 for m in model.modalities}
    for m, dec in model.decoders.items():
        dec.register_forward_hook(
            lambda mod, inp, out, m=m: rows.__setitem__(m, rows[m] + len(out))
        )
    bench.floor_step(model, x, lambda i: 5 * 3)()  # M x K codes per decoder
    assert rows == dict.fromkeys(model.modalities, 5 * 3 * 4)
    model.decode_chunk_rows = 8  # the floor decodes in calls of the model's size too
    calls = []
    model.decoders["m0"].register_forward_hook(lambda *_: calls.append(1))
    bench.floor_step(model, x, lambda i: 5 * 3)()
    assert len(calls) == 8  # 15 groups of 4 codes, 2 groups (8 rows) per call


def test_the_command_writes_its_results_and_the_book_tables(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["steps", "--batch", "4", "--latent", "8", "--repeats", "2", "--threads", "1",
                "--no-peer", "--json", str(out)])  # fmt: skip
    doc = json.loads(out.read_text())
    assert {"MoPoE", "MVAE", "MMVAE K=1", "MMVAE K=10", "config"} <= set(doc["steps"])
    mopoe = doc["steps"]["MoPoE"]
    assert mopoe["mopoe_lib"]["repeats"] == 2 and mopoe["floor"]["median_ms"] > 0
    assert mopoe["ours_over_floor"] == pytest.approx(
        mopoe["mopoe_lib"]["median_ms"] / mopoe["floor"]["median_ms"]
    )
    assert doc["environment"]["threads"] == 1 and doc["wall_time_s"] > 0
    rows = {r[0]: r for r in bench.target_rows(doc)}
    assert rows["MoPoE: ours_over_multivae"][1] == "not measured"  # --no-peer
    assert rows["MoPoE: ours_over_floor"][3] in ("yes", "no")
    assert len(bench.step_rows(doc)) == 4
    assert "targets (ratios of one run)" in capsys.readouterr().out


def test_fusion_benchmark_compares_with_the_loop_and_profiles_a_step():
    r = bench.bench_fusion(batch=4, dim=8, repeats=2)
    assert r["speedup_forward_backward"] > 0 and r["config"]["subsets"] == 31
    x, _ = bench.polymnist_batch(4, torch.device("cpu"))
    prof = bench.fusion_in_step(bench.polymnist_model("mopoe", 8, "cpu"), x, repeats=1)
    assert 0 < prof["fusion_forward_share"] < 1
    assert prof["profile_top_self_cpu"][0]["self_cpu_ms_per_step"] > 0


def test_cpu_shapes_use_the_profile_networks_and_likelihood(tmp_path):
    from mopoe_lib.likelihoods import Gaussian

    shapes = bench.cpu_shapes()
    assert shapes == {"batch": 128, "latent_dim": 64}  # chapter 8's cpu profile
    model = bench.polymnist_model("mopoe", 8, "cpu", profile="cpu")
    assert isinstance(model.likelihoods["m0"], Gaussian)
    widths = [p.shape[0] for p in model.encoders["m0"].parameters() if p.dim() == 4]
    assert widths == [8, 16, 32]  # a quarter of the paper's 32-64-128
    out = tmp_path / "bench.json"
    bench.main(["steps_cpu", "--repeats", "1", "--threads", "1", "--no-peer", "--json", str(out)])
    doc = json.loads(out.read_text())
    steps = doc["steps_cpu"]
    assert steps["config"]["B"] == 128 and steps["config"]["profile"] == "cpu"
    assert set(steps) == {"MoPoE", "MVAE", "MMVAE K=1", "config"}
    r = steps["MoPoE"]
    assert r["tuples_per_s"]["mopoe_lib"] == pytest.approx(128_000 / r["mopoe_lib"]["median_ms"])
    assert len(bench.step_rows(doc, "steps_cpu")) == 3


def test_the_peer_gets_the_likelihood_of_our_model():
    bench_peer = pytest.importorskip("mopoe_lib.bench_peer")
    pytest.importorskip("multivae")
    x, labels = bench.polymnist_batch(4, torch.device("cpu"))
    model = bench.polymnist_model("mopoe", 8, "cpu", profile="cpu")  # Gaussian, sigma 0.1
    net = bench_peer.build(model, "mopoe")
    m = model.modalities[0]
    assert net.model_config.decoders_dist[m] == "normal"
    assert net.model_config.decoder_dist_params[m]["scale"] == pytest.approx(0.1)


def test_the_race_probes_the_weights_each_library_trained(tmp_path):
    pytest.importorskip("multivae")
    from mopoe_lib import bench_peer
    from mopoe_lib.bench_race import _carry_weights, bench_race, race_rows

    # the probe of multivae's side reads multivae's trained weights, not a stale twin
    model = bench.polymnist_model("mopoe", 8, "cpu", profile="smoke")
    net = bench_peer.build(model, "mopoe")
    for p in net.parameters():
        p.data.add_(0.1)
    twin = _carry_weights(bench.polymnist_model("mopoe", 8, "cpu", profile="smoke"), net)
    x, _ = bench.polymnist_batch(3, torch.device("cpu"))
    for m in model.modalities:
        torch.testing.assert_close(twin.encoders[m](x[m])[0], net.encoders[m](x[m]).embedding)
        assert not torch.allclose(twin.encoders[m](x[m])[0], model.encoders[m](x[m])[0])

    logs = []
    out = bench_race(tmp_path, target=0.0, max_epochs=2, n_probe=50, profile="smoke",
                     log=logs.append)  # fmt: skip
    for impl in ("mopoe_lib", "multivae"):  # target 0: reached after the first epoch
        side = out[impl]
        assert side["reached"] == side["points"][0] and len(side["points"]) == 1
        assert side["minutes_to_target"] == side["points"][0]["train_s"] / 60 > 0
        assert 0.0 <= side["points"][0]["probe_unimodal"] <= 1.0
    assert out["ours_over_multivae"] > 0
    never = bench_race(tmp_path, target=1.01, max_epochs=2, n_probe=50, profile="smoke",
                       peer=False, log=logs.append)  # fmt: skip
    assert never["mopoe_lib"]["reached"] is None and len(never["mopoe_lib"]["points"]) == 2
    assert [r[1] for r in race_rows({"race": never})] == ["not reached"]


def test_the_gpu_benchmark_runs_its_code_on_the_cpu_and_projects_the_paper_run():
    from mopoe_lib.bench import bench_gpu

    lines = []
    out = bench_gpu("cpu", n=64, batch=32, log=lines.append,
                    variants=((False, False), (True, False)))  # fmt: skip
    for name in ("fp32", "bf16"):
        r = out[name]
        assert r["epoch_s"] > 0 and r["samples_per_second"] == pytest.approx(64 / r["epoch_s"])
        # 300 epochs of 60,000 tuples at this epoch's speed
        assert r["paper_run_h"] == pytest.approx(r["epoch_s"] * 300 * 60_000 / 64 / 3600)
    assert out["config"] == {"n": 64, "B": 32, "device": "cpu", "epochs": 300}
    assert "the paper's 300 epochs of 60,000 tuples" in lines[0]
