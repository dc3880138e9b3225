"""The scaling study: its fits, frontier and verdict on known data, and its smoke run on CIFAR files."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from experiments.report_sections import Context
from experiments.report_sections.study import scaling_study
from experiments.scaling_study import analysis, runs, tables
from jconv import models, runner, summary
from tests.test_data_files import write_cifar

ROOT = Path(__file__).resolve().parents[1]


def _record(part="scaling", variant="standard", width=1.0, seed=0, acc=0.5, **extra):
    key = {"part": part, "model": "alexnet", "variant": variant, "width": width, "seed": seed, **extra}
    return {"key": key, "test_accuracy": acc, "test_loss": 1.0 - acc, "final_loss": 2.0 - acc,
            "macs": int(1000 * width ** 2), "params": 10, "train_flops": 6000 * width ** 2,
            "images_per_s": 100.0 * (1 + seed)}


@pytest.mark.parametrize("b", [0.3, 0.8])
def test_power_law_exponent_recovered_within_its_interval(b):
    rng = np.random.default_rng(1)
    compute = np.repeat(np.geomspace(1e9, 1e12, 5), 3)
    errors = 2.0 * (compute / 1e9) ** -b * np.exp(rng.normal(0, 0.02, compute.size))
    law = analysis.fit_laws(compute, errors)
    power = law["forms"]["power"]
    assert law["best"] in ("power", "power+floor")
    assert power["b_low"] < b < power["b_high"] and power["b_se"] < 0.05
    assert power["r2"] > 0.95


def test_flat_and_floored_data_choose_their_forms():
    compute = np.repeat([1.0, 4.0, 16.0, 64.0, 256.0], 2)
    wobble = np.array([0.01, -0.01] * 5)
    assert analysis.fit_laws(compute, 0.9 + wobble)["best"] == "flat"
    floored = analysis.fit_laws(compute, 0.5 * compute ** -1.0 + 0.2 + wobble / 10)
    assert floored["best"] == "power+floor"
    assert abs(floored["forms"]["power+floor"]["e_inf"] - 0.2) < 0.02


def test_fit_refuses_too_few_points():
    with pytest.raises(ValueError, match="at least 3"):
        analysis.fit_laws([1, 2], [0.5, 0.4])


def test_aggregate_spread_over_seeds_and_frontier():
    records = [_record(width=w, seed=s, acc=a) for w, s, a in
               [(0.5, 0, 0.40), (0.5, 1, 0.44), (1.0, 0, 0.60), (1.0, 1, 0.50)]]
    records += [_record(variant="shared_filter", width=1.0, seed=s, acc=0.1) for s in (0, 1)]
    rows = analysis.aggregate(records)
    row = next(r for r in rows if (r["variant"], r["width"]) == ("standard", 1.0))
    assert row["accuracy"]["mean"] == pytest.approx(0.55)
    assert row["accuracy"]["std"] == pytest.approx(np.std([0.6, 0.5], ddof=1))
    assert row["images_per_s"] == pytest.approx(150.0)
    frontier = tables.mark_frontier(rows)
    assert frontier == {"alexnet": ["standard w0.5", "standard w1"]}
    assert not next(r for r in rows if r["variant"] == "shared_filter")["frontier"]


@pytest.mark.parametrize("best, expected", [(0.50, "training"), (0.30, "both"), (0.12, "variant")])
def test_verdict_follows_the_measurements(best, expected):
    records = [_record("controls", v, 0.25, s, a, treatment=t) for s in (0, 1) for v, t, a in
               [("standard", "as_studied", 0.52), ("shared_filter", "as_studied", 0.10),
                ("shared_filter", "batch_norm", best)]]
    verdict = tables.verdict(analysis.controls(records), num_classes=10)
    assert verdict["answer"] == expected and verdict["best"] == "batch_norm"


def test_batch_norm_models_and_the_sum_aware_init():
    rows, total = summary.summarize("alexnet", width=0.25, input_size=67, norm="batch", num_classes=10)
    names = [r["name"] for r in rows]
    assert "lrn1" not in names and names[:3] == ["conv1", "conv1_bn", "pool1"]
    assert sum(r["op"] == "batch_norm" for r in rows) == 5
    assert total["macs"] == summary.summarize("alexnet", width=0.25, input_size=67, num_classes=10)[1]["macs"]
    with pytest.raises(ValueError, match="norm='group'"):
        models.build("alexnet", norm="group", rngs=nnx.Rngs(0))
    build = lambda: models.build("alexnet", variant="shared_filter", width=0.125, input_size=67,  # noqa: E731
                                 num_classes=10, rngs=nnx.Rngs(0))
    plain, scaled = build(), build()
    assert runs.scale_shared_filters(scaled) == 4
    np.testing.assert_allclose(scaled.conv3.kernel[...] * math.sqrt(scaled.conv3.in_features),
                               plain.conv3.kernel[...], rtol=1e-6)


def test_bad_variant_and_treatment_are_config_errors():
    config = runner.load("configs/scaling_study.py:smoke", ["--config.variants=('nope',)"])[0]
    with pytest.raises(runner.ConfigError, match="unknown \\['nope'\\]"):
        runs.scaling_keys(config)
    config = runner.load("configs/scaling_study.py:smoke", ["--config.controls.treatments=('x',)"])[0]
    with pytest.raises(runner.ConfigError, match="treatments: unknown"):
        runs.control_keys(config)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The smoke study on CIFAR-10-format files, from the command line."""
    tmp = tmp_path_factory.mktemp("study")
    write_cifar(tmp / "cifar")
    out = subprocess.run([sys.executable, "-m", "jconv", "run", "configs/scaling_study.py:smoke",
                          "--config.dataset=cifar10", f"--config.data_dir={tmp / 'cifar'}",
                          "--workdir", str(tmp / "w")], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp / "w"


def test_smoke_study_on_cifar_files_writes_every_output(study):
    table = (study / "table.md").read_text(encoding="utf-8")
    assert "# Scaling study: alexnet on cifar10" in table
    for heading in ("## Fitted laws", "## Throughput against the cost model", "## Type 2.1"):
        assert heading in table
    with open(study / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2 + 2 * 2 * 2  # variants × widths × seeds, then the comparison
    results = json.loads((study / "results.json").read_text())
    assert set(results["laws"]) == {"alexnet/standard", "alexnet/shared_filter"}
    assert results["verdict"]["answer"] in ("training", "variant", "both")
    for name in ("accuracy.png", "laws.png", "throughput.png", "controls.png"):
        assert (study / name).read_bytes()[:4] == b"\x89PNG"
    first = runs.run_dir(study, {"part": "scaling", "model": "alexnet", "variant": "standard",
                                 "width": 0.0625, "seed": 0})
    assert (first / "checkpoints" / "2").is_dir() and (first / "train_log.jsonl").is_file()


def test_rerun_trains_only_what_is_missing(study, tmp_path):
    lines = (study / "measurements.jsonl").read_text().splitlines(keepends=True)
    (study / "measurements.jsonl").write_text("".join(lines[:-1]) + lines[-1][:20])  # a cut line
    dropped = json.loads(lines[-1])["key"]
    before = {json.dumps(json.loads(line)["key"]): json.loads(line)["wall_s"] for line in lines[:-1]}
    config = json.loads((study / "config.json").read_text())
    runner.run("configs/scaling_study.py:smoke", [f"--config.dataset=cifar10",
                                                  f"--config.data_dir={config['data_dir']}"], study)
    after = [json.loads(line) for line in (study / "measurements.jsonl").read_text().splitlines()]
    assert len(after) == len(lines) and after[-1]["key"] == dropped
    assert {json.dumps(r["key"]): r["wall_s"] for r in after[:-1]} == before


def test_report_section_reads_the_study(study, tmp_path):
    config = runner.load("configs/report.py:smoke", [f"--config.study_dir={study}"])[0]
    ctx = Context(config=config, workdir=tmp_path, dir=tmp_path, store=runner.Store(tmp_path))
    text = scaling_study(ctx)
    assert text.startswith("## 9. Accuracy against compute") and "| alexnet | standard |" in text
    assert "Type 2.1" in text and (tmp_path / "study_accuracy.png").is_file()
    assert set(ctx.figures["scaling_study"]["exponents"]) == {"alexnet/standard", "alexnet/shared_filter"}
    empty = runner.load("configs/report.py:smoke", [f"--config.study_dir={tmp_path / 'none'}"])[0]
    ctx = Context(config=empty, workdir=tmp_path / "none", dir=tmp_path, store=runner.Store(tmp_path))
    assert "No results of the scaling study" in scaling_study(ctx) and ctx.figures["scaling_study"] is None


def test_store_is_written_by_process_zero_only(tmp_path, monkeypatch):
    import jax

    monkeypatch.setattr(jax, "process_index", lambda: 1)
    store = runner.Store(tmp_path)
    store.add({"run": 1}, {"accuracy": 0.5})
    assert store.has({"run": 1}) and not (tmp_path / "measurements.jsonl").exists()
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    store.add({"run": 2}, {"accuracy": 0.6})
    assert len(runner.Store(tmp_path)) == 1


def test_a_registered_variant_joins_the_study(tmp_path, monkeypatch):
    import importlib.util

    from jconv.ops import registry

    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))  # undone after the test
    spec = importlib.util.spec_from_file_location("study_shift_variant", ROOT / "examples" / "custom_variant.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    config = runner.load("configs/scaling_study.py:smoke", ["--config.variants=()"])[0]
    assert "shift" in runs.variants(config) and "standard" in runs.variants(config)
    workdir = runner.run("configs/scaling_study.py:smoke", [
        "--config.variants=('shift',)", "--config.widths=(0.0625,)", "--config.controls.treatments=()"],
        tmp_path / "w")
    table = (workdir / "table.md").read_text(encoding="utf-8")
    assert table.count("| alexnet | shift | 0.0625 |") == 1 and "## Type 2.1" not in table
