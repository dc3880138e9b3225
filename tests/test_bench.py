"""The benchmark runs in its smoke mode and writes every file it promises."""

import json

import jax
import numpy as np

from experiments import bench
from jconv import runner
from jconv.ops import registry


def test_bench_smoke_writes_its_files(tmp_path):
    workdir = runner.run("configs/bench.py:smoke", workdir=tmp_path / "bench",
                         overrides=["--config.cases=('grouped_late', 'max_pool_late')"])
    for name in ("config.json", "measurements.jsonl", "environment.json", "table.md",
                 "summary.csv", "bench.png"):
        assert (workdir / name).stat().st_size > 0, name
    env = json.loads((workdir / "environment.json").read_text())
    assert env["jax"] and env["threads"] >= 1
    records = [json.loads(line)
               for line in (workdir / "measurements.jsonl").read_text().splitlines()]
    impls = {(r["key"]["case"], r["key"]["pass"], r["key"]["impl"]) for r in records}
    assert ("grouped_late", "fwd_bwd", "split") in impls
    assert ("max_pool_late", "fwd", "auto") in impls
    assert all(r["time_s"] > 0 for r in records if "time_s" in r)
    table = (workdir / "table.md").read_text()
    assert "| grouped_late |" in table and "lax/auto" in table
    before = len(records)
    runner.run("configs/bench.py:smoke", workdir=workdir,
               overrides=["--config.cases=('grouped_late', 'max_pool_late')"])
    assert len((workdir / "measurements.jsonl").read_text().splitlines()) == before  # resumed


def test_every_case_is_a_valid_call():
    config = runner.load("configs/bench.py")[0]
    for case in bench.CASES:
        shape_list = bench.case_shapes(case, config)
        bench.call(case, registry.get(case.op).plan, shape_list)
        assert bench.flops(case, shape_list, "fwd") > 0
        assert bench.flops(case, shape_list, "fwd_bwd") > bench.flops(case, shape_list, "fwd")


def test_torch_matches_lax_when_installed():
    torch = bench._torch()
    if torch is None or jax.default_backend() != "cpu":
        return  # the benchmark compares with PyTorch on the CPU only
    config = runner.load("configs/bench.py:smoke")[0]
    for case in bench.CASES:
        shape_list = bench.case_shapes(case, config)
        arrays = bench._arrays(shape_list, 0)
        fn = bench.torch_fn(case, shape_list, torch)
        if fn is None:
            continue
        with torch.no_grad():
            out = fn(*[torch.from_numpy(np.array(a)) for a in arrays])
        if out is None:
            continue
        expected = bench.jax_fn(case, "lax", "fwd", len(arrays))(*arrays)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4,
                                   err_msg=case.name)


def _row(case, pass_, chosen, **times):
    ratios = bench._ratios(times)
    return {"case": case, "pass": pass_, "times_ms": times, "noise": 0.0, **ratios,
            **{f"{k}_min": v for k, v in ratios.items()}}


def test_targets_name_the_rows_that_miss():
    cases = [c for c in bench.CASES if c.name in ("depthwise_late", "grouped_late")]
    rows = [_row("depthwise_late", "fwd", "einsum", lax=30.0, einsum=1.0, patches=5.0,
                 auto=1.0, torch=1.2),
            _row("grouped_late", "fwd", "split", lax=10.0, einsum=4.0, split=3.0, auto=3.0)]
    lines = {line.split(" | ")[0].lstrip("| ").split(" (")[0]: line
             for line in bench._targets(cases, rows, "cpu").splitlines()
             if line.startswith("| ")}
    assert "| 30.00 | 1/1 | 30.00 | 1/1 | — |" in lines["depthwise forward ≥ 20× lax"]
    assert "depthwise_late fwd (1.20)" in lines["depthwise forward ≥ 1.5× PyTorch"]
    assert "grouped_late fwd (3.33)" in lines["grouped conv ≥ 4× lax"]
    assert "| 2/2 |" in lines["auto within 5% of the fastest jconv kernel"]
    on_gpu = [line.split(" | ")[0] for line in bench._targets(cases, rows, "gpu").splitlines()
              if line.startswith("| ")]
    assert on_gpu == ["| target", "| auto never slower than lax"]  # no CPU speed-up target


def test_fwd_bwd_returns_output_and_vjp_with_a_real_cotangent():
    case = next(c for c in bench.CASES if c.name == "depthwise_late")
    config = runner.load("configs/bench.py:smoke")[0]
    arrays = bench._arrays(bench.case_shapes(case, config), 0)
    args = bench.call_arrays(case, "lax", "fwd_bwd", arrays)
    y, (gx, gw) = bench.jax_fn(case, "lax", "fwd_bwd", len(arrays))(*args)
    dy = args[-1]
    assert y.shape == dy.shape and float(np.std(dy)) > 0.5
    _, vjp = jax.vjp(lambda x, w: bench.jconv.depthwise_conv(x, w, impl="lax"), *arrays)
    expected = vjp(dy)
    np.testing.assert_allclose(gx, expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw, expected[1], rtol=1e-5, atol=1e-5)
