"""The benchmark runs in its smoke mode and writes every file it promises, with PyTorch
installed or not."""

import json

import jax
import numpy as np
import pytest

from experiments import bench
from experiments.bench import breakdown, torch_ports
from jconv import models, runner
from jconv.models import alexnet
from jconv.ops import registry

NO_MODELS = "--config.models=()"


@pytest.mark.slow  # the benchmark end to end
def test_bench_smoke_writes_its_files(tmp_path):
    workdir = runner.run("configs/bench.py:smoke", workdir=tmp_path / "bench",
                         overrides=["--config.cases=('grouped_late', 'max_pool_late')",
                                    NO_MODELS])
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
               overrides=["--config.cases=('grouped_late', 'max_pool_late')", NO_MODELS])
    assert len((workdir / "measurements.jsonl").read_text().splitlines()) == before  # resumed


def test_every_case_is_a_valid_call():
    config = runner.load("configs/bench.py")[0]
    for case in bench.CASES + bench.VERSUS_TORCH:
        shape_list = bench.case_shapes(case, config)
        bench.call(case, registry.get(case.op).plan, shape_list)
        assert bench.flops(case, shape_list, "fwd") > 0
        assert bench.flops(case, shape_list, "fwd_bwd") > bench.flops(case, shape_list, "fwd")


def test_torch_matches_lax_when_installed():
    torch = bench._torch()
    if torch is None or jax.default_backend() != "cpu":
        return  # the benchmark compares with PyTorch on the CPU only
    config = runner.load("configs/bench.py:smoke")[0]
    for case in bench.CASES + bench.VERSUS_TORCH:
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


def _tiny_model(**kw):
    """AlexNet's conv1, pool1 and classifier: the model path at a fraction of the compile time."""
    rows = tuple(r for r in alexnet.LAYERS_2012 if r[0] in ("conv1", "pool1", "flatten", "fc8"))
    return models._table("tiny", rows, 35, **kw)


def test_nine_bfloat16_and_models_without_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(torch_ports, "import_torch", lambda: None)  # as where it is not installed
    monkeypatch.setitem(models.MODELS, "tiny", _tiny_model)
    workdir = runner.run("configs/bench.py:smoke", workdir=tmp_path / "bench",
                         overrides=["--config.cases=('vs_3x3_28',)", "--config.models=('tiny',)",
                                    "--config.torch=True", "--config.passes=('fwd',)"])
    keys = {(r["key"]["case"], r["key"]["pass"], r["key"]["impl"]): r
            for r in map(json.loads, (workdir / "measurements.jsonl").read_text().splitlines())}
    assert ("vs_3x3_28", "fwd", "auto:bfloat16") in keys
    assert keys["vs_3x3_28", "fwd", "auto:bfloat16"]["dtype"] == "bfloat16"
    assert not any(impl == "torch" for _, _, impl in keys)
    step = keys["model_tiny", "train_step", "auto"]
    assert step["images_per_s"] > 0 and step["finite"] and step["traces"] == 1
    assert step["compile_s"] > 0 and len(step["times_s"]) == 1
    # The profiled step: its ops sorted by scope; the conv and the linear layer are there.
    ms = step["breakdown_ms"]
    assert "breakdown_ms" not in keys["model_tiny", "train_step", "lax"]
    assert ms["conv forward"] > 0 and ms["conv backward"] > 0 and ms["linear"] > 0
    assert ms["total"] == pytest.approx(sum(ms[c] for c in breakdown.CATEGORIES))
    table = (workdir / "table.md").read_text()
    assert "### Where the training step's time goes" in table
    assert "PyTorch: skipped (PyTorch is not installed" in table
    assert "| vs_3x3_28 | 3×3 28² 128→128 | fwd |" in table and "| skipped |" in table
    assert "Native bfloat16 kernels: " in table
    assert "| tiny train step, batch 2, 67² (reduced), width 0.25 |" in table
    assert "| model training step: auto ≥ 2× lax | 1 |" in table
    assert "dense 3×3: auto float32 ÷ bfloat16 ≥ 1.5 | 1 |" in table
    assert "PyTorch ÷ auto" not in table  # no torch column, no torch target
    assert (workdir / "models.csv").read_text().startswith("case,layer,batch,lax_images_per_s")
    env = json.loads((workdir / "environment.json").read_text())
    assert env["torch"] is None and "dtypes" in env["onednn"]


def test_nine_against_torch_when_installed(tmp_path):
    if bench.torch_skipped(runner.load("configs/bench.py")[0]):
        return  # PyTorch absent, or not on the CPU: the test above covers that path
    workdir = runner.run("configs/bench.py:smoke", workdir=tmp_path / "bench",
                         overrides=["--config.cases=('vs_dw_14',)", NO_MODELS,
                                    "--config.torch=True"])
    records = [json.loads(line)
               for line in (workdir / "measurements.jsonl").read_text().splitlines()]
    torch_runs = [r for r in records if r["key"]["impl"] == "torch"]
    assert {r["key"]["pass"] for r in torch_runs} == {"fwd", "fwd_bwd"}
    assert all(r["time_s"] > 0 and r["max_abs_err_vs_lax"] < 1e-4 for r in torch_runs)
    table = (workdir / "table.md").read_text()
    assert "PyTorch: skipped" not in table
    assert "| the nine: PyTorch ÷ auto ≥ 1.0 forward | 1 |" in table
    assert "| the nine: PyTorch ÷ auto ≥ 1.3 forward+backward | 1 |" in table


def test_targets_of_the_nine_and_the_models():
    cases = [c for c in bench.VERSUS_TORCH if c.name in ("vs_3x3_56", "vs_dw_14")]
    model = bench.ModelCase("model_alexnet", "alexnet")
    rows = [_row("vs_3x3_56", "fwd", "lax", lax=2.0, onednn=1.0, auto=2.0, torch=1.0,
                 **{"auto:bfloat16": 1.0, "onednn:bfloat16": 1.0}),
            _row("vs_dw_14", "fwd_bwd", "shift", lax=9.0, onednn=1.0, auto=1.0, torch=1.2),
            {"case": "model_alexnet", "pass": "train_step", "lax_over_auto": 2.5,
             "lax_over_auto_min": 2.5, "noise": None}]
    for r in rows[:2]:
        r["suite"] = "versus_torch"
    lines = {line.split(" | ")[0].lstrip("| "): line
             for line in bench._targets([*cases, model], rows, "cpu").splitlines()
             if line.startswith("| ")}
    assert "vs_3x3_56 fwd (0.50)" in lines["the nine: PyTorch ÷ auto ≥ 1.0 forward"]
    assert "vs_dw_14 fwd_bwd (1.20)" in lines["the nine: PyTorch ÷ auto ≥ 1.3 forward+backward"]
    assert "vs_3x3_56 fwd (2.00)" not in lines["dense 3×3: auto float32 ÷ bfloat16 ≥ 1.5"]
    assert "| 1/1 |" in lines["model training step: auto ≥ 2× lax"]
    assert "depthwise forward ≥ 1.5× PyTorch" not in lines  # the layer table's target only
    assert bench.ratios(rows[0]["times_ms"])["torch_over_onednn"] == 1.0


@pytest.mark.parametrize("op_name, hlo_name, expected", [
    ("jit(train_step)/jvp(Conv)/conv[onednn]/jit(run_conv)/ffi_call", "ffi_call.2", "conv forward"),
    ("jit(train_step)/transpose(jvp(PointwiseConv))/pointwise_conv[shift]/jit(run_conv)",
     "copy_bitcast_fusion.3", "copies and transposes"),
    ("jit(train_step)/jvp(Conv)/conv[onednn]/jit(run_conv)/jit(_where)/select_n",
     "broadcast_select_fusion", "NaN masks"),
    ("jit(train_step)/transpose(jvp(Concat))/Stack/MaxPool/reduce_window", "fusion.1", "pooling"),
    ("jit(train_step)/transpose(jvp(BatchNorm))/mul", "multiply_fusion", "normalisation"),
    ("jit(train_step)/jvp()/jit(relu)/max", "broadcast_maximum_fusion", "elementwise"),
    ("jit(train_step)/optimizer/add", "multiply_add_fusion", "optimizer update"),
    ("jit(train_step)/jvp(loss)/log_softmax", "fusion.4", "loss"),
    ("jit(train_step)/is_finite", "wrapped_is-finite", "other"),
])
def test_breakdown_categories(op_name, hlo_name, expected):
    assert breakdown.category(op_name, hlo_name) == expected


def test_models_in_pytorch_match_and_train_when_installed(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from experiments.bench import torch_models
    from flax import nnx

    for name, kw in (("alexnet", dict(width=0.25)), ("googlenet", dict(width=0.25)),
                     ("mobilenet_v1", dict(width=0.25, input_size=64)),
                     ("alexnet", dict(width=0.25, norm="batch"))):
        model = models.build(name, num_classes=10, rngs=nnx.Rngs(0), **kw)
        port = torch_models.torch_model(model, torch)  # raises if the parameter counts differ
        h, w, c = model.input_shape
        out = port(torch.zeros(2, c, h, w).contiguous(memory_format=torch.channels_last))
        main = out[0] if isinstance(out, tuple) else out
        assert tuple(main.shape) == (2, 10), name
    with pytest.raises(TypeError, match="no PyTorch form"):
        torch_models.torch_model(models.build("alexnet", variant="per_map", width=0.0625,
                                              num_classes=10, rngs=nnx.Rngs(0)), torch)
    monkeypatch.setitem(models.MODELS, "tiny", _tiny_model)
    workdir = runner.run("configs/bench.py:smoke", workdir=tmp_path / "bench",
                         overrides=["--config.cases=('vs_3x3_28',)", "--config.models=('tiny',)",
                                    "--config.torch=True", "--config.passes=('fwd',)"])
    step = {(r["key"]["case"], r["key"]["impl"]): r for r in
            map(json.loads, (workdir / "measurements.jsonl").read_text().splitlines())}
    assert step["model_tiny", "torch"]["time_s"] > 0 and step["model_tiny", "torch"]["finite"]
    assert step["model_tiny", "torch"]["params"] == step["model_tiny", "auto"]["params"]
    # PyTorch's step sorted into the categories of jconv's: its convs, both ways, and its linear layer
    ms = step["model_tiny", "torch"]["breakdown_ms"]
    assert ms["conv forward"] > 0 and ms["conv backward"] > 0 and ms["linear"] > 0
    assert ms["optimizer update"] > 0 and ms["total"] == pytest.approx(sum(ms[c] for c in breakdown.CATEGORIES))
    assert "| torch |" in (workdir / "table.md").read_text().split("### Where the training step's time goes")[1]
    assert "model training step: PyTorch ÷ auto ≥ 1.2" in (workdir / "table.md").read_text()
