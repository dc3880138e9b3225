"""The quadratic-cost experiment: slopes with intervals and verdicts on synthetic timings, the
batch per point, the timed network against the vmapped one, and a smoke run's outputs."""

import csv
import math
import shutil

import numpy as np
import pytest

from experiments import quadratic_cost
from experiments.quadratic_cost import model, tables, verdicts
from experiments.quadratic_cost.timing import batch_for
from jconv import runner
from tests.tolerance import assert_close

KS = [8, 16, 32, 64, 128, 256]


def _timings(law, noise=0.02, repeats=5, seed=0):
    """``repeats`` samples per width of ``law(k)`` seconds, with lognormal noise."""
    rng = np.random.default_rng(seed)
    return [law(k) * np.exp(noise * rng.standard_normal(repeats)) for k in KS]


def _verdict(samples, flop_slope=2.0, **kwargs):
    fit = verdicts.fit_slope(KS, samples, n_resamples=500)
    return fit, verdicts.verdict(fit, flop_slope, **kwargs)


def test_clean_quadratic_follows_flops():
    fit, verdict = _verdict(_timings(lambda k: 1e-7 * k**2), bytes_slope=2.0,
                            intensity=[40.0, 40.0, 40.0], balance=10.0)
    assert fit.ks == (64, 128, 256)  # the upper half of the widths
    assert fit.lo <= fit.slope <= fit.hi and fit.contains(2.0)
    assert fit.width < 0.15 and fit.r2 > 0.99
    assert verdict.code == "follows_flops" and "time follows FLOPs" in verdict.text
    assert fit.text().startswith(f"{fit.slope:.2f} [")


def test_memory_bound_linear_names_the_bytes():
    fit, verdict = _verdict(_timings(lambda k: 1e-6 * k), bytes_slope=1.0,
                            bytes_per_image=[4e6, 8e6, 16e6], intensity=[2.0, 3.0, 4.0],
                            balance=15.0, gflops=[1.0, 2.0, 4.0])
    assert fit.contains(1.0) and not fit.contains(2.0, verdicts.TOLERANCE)
    assert verdict.code == "memory_bound"
    assert "k^1.00" in verdict.text and "(4 → 16 MB per image)" in verdict.text
    assert "below the machine balance 15.0" in verdict.text


def test_memory_bound_across_the_balance_shows_the_bandwidth():
    _, verdict = _verdict(_timings(lambda k: 1e-6 * k), bytes_slope=1.0,
                          bytes_per_image=[4e6, 8e6, 16e6], intensity=[8.0, 16.0, 32.0],
                          balance=15.0, gbs=[4.0, 4.1, 4.0], bandwidth=9.0)
    assert verdict.code == "memory_bound"
    assert "achieved 4.0 → 4.0 GB/s of 9.0 measured" in verdict.text
    assert "crossing the machine balance 15.0" in verdict.text


def test_linear_time_above_the_balance_is_not_called_memory_bound():
    _, verdict = _verdict(_timings(lambda k: 1e-6 * k), bytes_slope=1.0,
                          intensity=[50.0, 60.0, 70.0], balance=15.0, gflops=[1.0, 2.0, 4.0])
    assert verdict.code == "efficiency" and "unexplained" in verdict.text


def test_overhead_flat():
    fit, verdict = _verdict(_timings(lambda k: 3e-3), bytes_slope=1.0,
                            intensity=[50.0, 60.0, 70.0], balance=15.0)
    assert fit.contains(0.0)
    assert verdict.code == "overhead" and "does not grow with k" in verdict.text


def test_kernel_flops_and_switch_and_noise():
    _, verdict = _verdict(_timings(lambda k: 1e-6 * k), kernel_flop_slope=1.0,
                          kernel="layer2[sum_maps]", bytes_slope=1.0)
    assert verdict.code == "kernel_flops" and "layer2[sum_maps] runs" in verdict.text
    _, verdict = _verdict(_timings(lambda k: 1e-6 * k), switches=("k=128: layer2 lax → onednn",))
    assert verdict.code == "kernel_switch" and "lax → onednn" in verdict.text
    fit, verdict = _verdict(_timings(lambda k: 1e-7 * k**2, noise=1.0))
    assert fit.width > verdicts.NOISY_INTERVAL and verdict.code == "noisy"


def test_partly_memory_bound():
    _, verdict = _verdict(_timings(lambda k: 1e-6 * k**1.5), bytes_slope=1.0,
                          intensity=[2.0, 3.0, 4.0], balance=15.0)
    assert verdict.code == "partly_memory_bound"
    # intensity crossing the balance: memory-bound at the narrow end, compute-bound at the wide
    _, verdict = _verdict(_timings(lambda k: 1e-6 * k**1.3), bytes_slope=1.0,
                          intensity=[9.0, 15.0, 27.0], balance=14.5)
    assert verdict.code == "partly_memory_bound" and "crosses the machine balance" in verdict.text
    # above the balance throughout: not memory-bound, the efficiency verdict
    _, verdict = _verdict(_timings(lambda k: 1e-6 * k**1.3), bytes_slope=1.0,
                          intensity=[48.0, 90.0, 135.0], balance=14.5)
    assert verdict.code == "efficiency"


def test_no_interval_without_repeats_and_no_fit_without_widths():
    fit = verdicts.fit_slope(KS, [[1e-7 * k**2] for k in KS])
    assert fit.lo is None and fit.slope == pytest.approx(2.0)
    assert "no interval" in fit.text()
    assert verdicts.fit_slope([64], [[1.0, 1.1]]) is None
    assert verdicts.verdict(None, 2.0).code == "no_fit"


@pytest.mark.parametrize("flops", [1e5, 3.3e6, 2e8, 5e9, 2e10])
def test_batch_per_point_does_the_same_work(flops):
    work = 4e9
    batch, note = batch_for(flops, 1e3, work, max_bytes=2**40)
    assert note is None and batch >= 1
    assert batch * flops >= work and (batch == 1 or (batch - 1) * flops < work)


def test_batch_per_point_is_capped_by_memory_or_reported():
    batch, note = batch_for(1e6, 1e6, work=4e9, max_bytes=1e8)
    assert batch == 100 and "capped at 100" in note
    batch, note = batch_for(1e9, 3e9, work=4e9, max_bytes=2**31)
    assert batch == 0 and "more than max_call_bytes" in note
    with pytest.raises(ValueError):
        batch_for(0, 1.0, 1.0, 1.0)


def test_switches_and_targets_read_the_rows():
    points = [{"k2": k, "impls": {"layer1": "lax", "layer2": "lax" if k < 64 else "onednn"}}
              for k in KS]
    assert tables._switches(points) == [(64, "layer2 lax → onednn")]
    good = verdicts.fit_slope(KS, _timings(lambda k: 1e-7 * k**2))
    flat = verdicts.fit_slope(KS, _timings(lambda k: 1e-3 / k**0.2))
    rows = [{"sweep": "uniform", "variant": "type2_2", "pass": "fwd", "fit": good,
             "verdict": verdicts.verdict(good, 2.0)},
            {"sweep": "k2_only", "variant": "type2_2", "pass": "fwd", "fit": flat,
             "verdict": verdicts.verdict(flat, 1.0)}]
    lines = verdicts.target_lines(rows)
    assert lines[0].startswith("- met uniform type2_2 fwd")
    assert lines[1].startswith("- MISSED k2_only type2_2 fwd") and "outside [0.85, 1.15]" in lines[1]
    assert any(line.startswith("- MISSED no negative slope") for line in lines)


@pytest.fixture(scope="module")
def smoke_config():
    config, _, _ = runner.load("configs/quadratic_cost.py:smoke")
    return config


@pytest.mark.parametrize("variant", list(model.LABELS))
def test_timed_network_equals_the_vmapped_network(smoke_config, variant):
    k1, k2 = 4, 8
    params = model.init_params(variant, k1, k2, smoke_config)
    x = model.image_batch(smoke_config, 3)
    impls = model.kernels(variant, k1, k2, smoke_config)
    assert set(impls) == set(model.step_shapes(variant, k1, k2, smoke_config))
    assert_close(model.timed_network(variant, params, x, impls), model.network(variant, params, x))


@pytest.mark.slow
def test_smoke_run_gives_every_row_a_verdict_and_every_point(smoke_config, quadratic_smoke, tmp_path):
    """The config file's smoke run as the command line makes it (killed part-way and run again:
    ``tests/shared.py``), then a rerun of the finished work directory: it measures nothing again
    and gives the rows."""
    shutil.copytree(quadratic_smoke / "run", tmp_path, dirs_exist_ok=True)
    assert (tmp_path / "config.json").exists()
    before = (tmp_path / "measurements.jsonl").read_text()
    result = quadratic_cost.run(smoke_config, tmp_path)
    assert (tmp_path / "measurements.jsonl").read_text() == before
    rows = result["rows"]
    assert len(rows) >= 2 * len(smoke_config.variants) * 2
    for row in rows:
        assert row["verdict"].code and row["verdict"].text
        assert len(row["points"]) == len(smoke_config.widths)
        for point in row["points"]:
            assert ("time_s" in point) != bool(point.get("missing"))
    with open(tmp_path / "slopes.csv") as f:
        slopes = list(csv.DictReader(f))
    assert len(slopes) == len(rows) and all(s["reason"] for s in slopes)
    assert all(math.isfinite(float(s["lo"])) for s in slopes if s["time"])
    table = (tmp_path / "table.md").read_text()
    assert "Targets:" in table and "GFLOP/s" in table
    assert (tmp_path / "quadratic_cost.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("spikes", [0, 1, 99])
def test_a_curve_with_a_wide_interval_is_timed_again(smoke_config, monkeypatch, spikes):
    """Rounds go on while the slope's interval is wide (here: in each of the first ``spikes``
    rounds one call of the narrow point takes twice its time), each round over every point of
    the curve, and stop at ``max_repeats`` samples."""
    from experiments.quadratic_cost import timing

    rng, calls = np.random.default_rng(0), []

    def fake(named, warmup, repeats):
        calls.append(repeats)
        times = {i: list(1e-3 * (i + 1) * np.exp(0.01 * rng.standard_normal(repeats))) for i in named}
        if len(calls) <= spikes:
            times[0][0] *= 2.0
        return {i: {"times_s": t} for i, t in times.items()}

    monkeypatch.setattr(timing, "interleaved", fake)
    config = smoke_config.copy_and_resolve_references()
    config.unlock()
    config.repeats, config.max_repeats = 3, 15
    points = [{"k1": 4, "k2": k, "impls": model.kernels("type2_2", 4, k, config), "flops": 1e5, "bytes": 1e3}
              for k in (4, 8)]
    results = timing.time_points(points, "type2_2", "fwd", 1e6, config)
    assert set(calls) == {3} and all(len(r["times_s"]) == 3 * len(calls) for r in results)
    assert (len(calls) == 1) if spikes == 0 else (1 < len(calls) < 5) if spikes == 1 else (len(calls) == 5)
    ks = [r["k2"] for r in results]
    fit = verdicts.fit_slope(ks, [np.asarray(r["times_s"]) / r["batch"] for r in results])
    assert (fit.width <= verdicts.RETIME_INTERVAL) == (spikes < 99)


def test_max_repeats_below_repeats_is_named(smoke_config):
    config = smoke_config.copy_and_resolve_references()
    config.unlock()
    config.max_repeats = 1
    with pytest.raises(runner.ConfigError, match=r"max_repeats=1; expected an int ≥ --config\.repeats=3"):
        quadratic_cost.check(config)
