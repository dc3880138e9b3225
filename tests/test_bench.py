"""The benchmark runs in its smoke mode and writes every file it promises."""

import json

import numpy as np

from experiments import bench
from jconv import runner
from jconv.ops import shapes


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
        if case.op == "spatially_separable_conv":
            shapes.spatially_separable_conv(shape_list[0], shape_list[1:], **case.kwargs)
        else:
            getattr(shapes, case.op)(*shape_list, **case.kwargs)
        assert bench.flops(case, shape_list, "fwd") > 0
        assert bench.flops(case, shape_list, "fwd_bwd") > bench.flops(case, shape_list, "fwd")


def test_torch_matches_lax_when_installed():
    torch = bench._torch()
    if torch is None:
        return
    config = runner.load("configs/bench.py:smoke")[0]
    for case in bench.CASES:
        shape_list = bench.case_shapes(case, config)
        arrays = bench._arrays(shape_list, 0)
        fn = bench.torch_fn(case, shape_list, torch)
        if fn is None:
            continue
        with torch.no_grad():
            out = fn(*[torch.from_numpy(np.asarray(a)) for a in arrays])
        if out is None:
            continue
        expected = bench.jax_fn(case, "lax", "fwd", len(arrays))(*arrays)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4,
                                   err_msg=case.name)
