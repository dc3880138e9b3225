"""The scaling study: its data, its trunks and branches, resuming mid-branch, the analysis on
constructed records, and its smoke run (procedural and CIFAR files) with every output."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

import configs.scaling_study as study_config
from experiments.report_sections import Context
from experiments.report_sections.study import scaling_study
from experiments.scaling_study import analysis, runs, tables
from experiments.scaling_study import check as check_study
from jconv import data, models, runner, summary, train
from tests.shared import built_once
from tests.test_data_files import write_cifar

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--config.variants=('standard',)", "--config.widths=(0.0625,)", "--config.learning_rates=(0.05,)",
         "--config.controls.treatments=()", "--config.reference.variant=", "--config.horizons=(10, 20)",
         "--config.checkpoint_every=1"]


def test_training_images_never_repeat_and_the_test_set_is_fixed_and_disjoint():
    config = study_config.get_config("smoke")
    first, again = runs.open_data(config, "alexnet"), runs.open_data(config, "alexnet")
    train_x = first.train.train_x
    # The pool holds exactly the images of the longest run (the reference included), each read once.
    assert len(train_x) == runs.longest(config) * config.batch_size == 40 * 2 * 8
    order = data.batch_indices(len(train_x), config.batch_size, seed=0, epoch=0)
    assert order.shape == (runs.longest(config), config.batch_size)
    assert np.array_equal(np.sort(order.ravel()), np.arange(len(train_x)))
    np.testing.assert_array_equal(first.train.test_x, again.train.test_x)
    assert len(first.train.test_y) == config.test_size and first.train.train_x.dtype == np.uint8
    seen = {x.tobytes() for x in train_x}
    assert len(seen) == len(train_x)
    assert not seen & {x.tobytes() for x in first.train.test_x}
    assert not seen & {x.tobytes() for x in first.validation[0]}


def test_branch_points_and_rejected_horizons():
    config = study_config.get_config()
    assert [h - runs.cooldown_steps(config, h) for h in runs.horizons(config)] == [256, 512, 1024, 2048]
    bad = runner.load("configs/scaling_study.py:smoke", ["--config.horizons=(20, 10)"])[0]
    with pytest.raises(runner.ConfigError, match="horizons"):
        runs.horizons(bad)
    config = runner.load("configs/scaling_study.py:smoke", ["--config.variants=('nope',)"])[0]
    with pytest.raises(runner.ConfigError, match="unknown \\['nope'\\]"):
        runs.variants(config)
    for override, match in (("--config.controls.width=0.5", "controls.width=0.5"),
                            ("--config.controls.treatments=('x',)", "treatments: unknown"),
                            ("--config.learning_rates=()", "learning_rates"),
                            ("--config.reference.variant=separable", "reference.variant='separable'"),
                            ("--config.label_noise=1.0", "label_noise=1.0")):
        with pytest.raises(runner.ConfigError, match=match):
            runs.check(runner.load("configs/scaling_study.py:smoke", [override])[0])
    for flag in ("fit_workers", "fit_starts"):
        for value in ("0", "1.5", "True"):
            with pytest.raises(runner.ConfigError, match=flag):
                check_study(runner.load("configs/scaling_study.py:smoke", [f"--config.{flag}={value}"])[0])


@pytest.mark.parametrize("arg, decades", [(None, 1.5), pytest.param("gpu", 3.0, marks=pytest.mark.slow)])
def test_every_variant_spans_the_compute_its_config_promises(arg, decades):
    """By the cost model: the default covers ≥ 1.5 decades of training compute per variant, and
    ``:gpu`` ≥ 3 for both families (narrowest width at the shortest horizon to the widest at
    the longest)."""
    config = study_config.get_config(arg)
    assert (arg == "gpu") == ("googlenet" in config.models)
    for model in config.models:
        for variant in runs.variants(config):
            hs = runs.horizons(config, variant)
            macs = [summary.summarize(model, variant=variant, width=w, input_size=runs.input_size(config, model),
                                      in_channels=3, num_classes=config.num_classes, norm=config.norm)[1]["macs"]
                    for w in (min(config.widths), max(config.widths))]
            span = math.log10(macs[1] * hs[-1] / (macs[0] * hs[0]))
            assert span >= decades, (arg, model, variant, span)


def test_the_sweep_chooses_by_validation_error_then_training_loss():
    def rec(lr, val, loss, acc=0.5):
        return {"key": {"lr": lr}, "val_error": val, "final_loss": loss, "test_accuracy": acc}

    assert runs.choose_lr([rec(0.1, 0.3, 1.0), rec(0.2, 0.2, 2.0), rec(0.4, 0.2, 0.5)]) == 0.2
    assert runs.choose_lr([rec(0.1, None, 1.0), rec(0.2, None, 0.7)]) == 0.2
    assert runs.choose_lr([rec(0.1, 0.3, 1.0, acc=None)]) is None


def test_rates_are_chosen_per_horizon_from_the_live_ones(tmp_path):
    import experiments.scaling_study as study

    config = study_config.get_config()
    hs, todo, store = runs.horizons(config), study.plan(config), runner.Store(tmp_path)
    mine = {"model": "alexnet", "variant": "standard", "width": 0.0625, "seed": 0}

    def rates(horizon, part="scaling"):
        return [study._rate(store, how, key, config) for how, key in todo
                if key["part"] == part and key["horizon"] == horizon and all(key[k] == v for k, v in mine.items())]

    def record(horizon, lr, val_error):
        store.add({"part": "scaling", **mine, "lr": lr, "horizon": horizon}, {"test_accuracy": 0.5, "val_error": val_error})

    config.unlock()
    config.learning_rates = (0.025, 0.05, 0.1, 0.2)
    config.more_horizons.variants, config.repeats.variants = (), ()
    hs, todo = runs.horizons(config), study.plan(config)
    assert rates(320) == [0.025, 0.05, 0.1, 0.2] and rates(640) == [None, None]
    for lr, val in ((0.025, 0.5), (0.05, 0.4), (0.1, 0.3), (0.2, 0.35)):
        record(320, lr, val)
    assert rates(640) == [0.1, 0.05]  # the rate chosen at 320 and the next lower; never 0.2 again
    record(640, 0.1, 0.3), record(640, 0.05, 0.25)
    assert rates(1280) == [0.05, 0.025]
    record(1280, 0.05, 0.2), record(1280, 0.025, 0.1)
    assert rates(2560) == [0.025, None]  # no lower rate to try
    record(2560, 0.025, 0.1)
    mine["width"] = max(config.widths)
    record(2560, 0.05, 0.1), record(2560, 0.025, 0.2)
    assert rates(5120, "reference") == [0.05]  # the reference goes on at the longest horizon's rate
    assert runs.live_rates((0.1, 0.2), None) == ()


def test_the_sum_aware_init_and_batch_norm_models():
    rows, _ = summary.summarize("alexnet", width=0.25, input_size=67, norm="batch", num_classes=10)
    assert sum(r["op"] == "batch_norm" for r in rows) == 5
    build = lambda: models.build("alexnet", variant="shared_filter", width=0.125, input_size=67,  # noqa: E731
                                 num_classes=10, rngs=nnx.Rngs(0))
    plain, scaled = build(), build()
    assert runs.scale_shared_filters(scaled) == 4
    np.testing.assert_allclose(scaled.conv3.kernel[...] * math.sqrt(scaled.conv3.in_features),
                               plain.conv3.kernel[...], rtol=1e-6)


def _records(law, widths=(1, 2, 4, 8), horizons=(100, 200, 400, 800), variant="standard", noise=0.0, seed=0,
             lr=0.1, val_shift=0.0):
    """Study records whose error follows ``law(N, D)``: params ∝ width², compute ∝ params · horizon."""
    rng = np.random.default_rng(seed)
    out = []
    for w in widths:
        params = 1000 * w * w
        out.append({"key": {"part": "cost", "model": "m", "variant": variant, "width": w},
                    "params": params, "macs": params, "step_flops": 6 * params * 8,
                    "cost_model_step_flops": 6 * params * 8})
        for h in horizons:
            e = law(params, 8 * h) * math.exp(noise * rng.normal())
            out.append({"key": {"part": "scaling", "model": "m", "variant": variant, "width": w, "seed": 0,
                                "lr": lr, "horizon": h},
                        "test_accuracy": 1 - e, "val_error": e + val_shift, "final_loss": 1.0, "samples": 8 * h,
                        "trunk_s": 1.0, "branch_s": 0.5})
    return out


def _joint(params, samples, alpha=0.4, beta=0.5):
    return 0.05 + 2.0 / params ** alpha + 3.0 / samples ** beta


def test_analysis_of_a_known_joint_law():
    # A second rate, worse on validation at every horizon but h=800 of width 8 (where its own test
    # error is far off the law): each horizon's run is the one its validation error chose.
    worse = [r for r in _records(lambda n, d: 0.8, lr=0.2, val_shift=1.0) if r["key"]["part"] == "scaling"]
    worse[-1]["val_error"] = 0.0
    records = _records(_joint, noise=0.01) + worse
    rows = analysis.runs(records)
    assert len(rows) == 16 and rows[1]["wall_s"] == 2.5  # its own rate's trunk to h=200 and the branch
    assert [r["lr"] for r in rows].count(0.2) == 1 and rows[-1]["lr"] == 0.2 and rows[-1]["wall_s"] == 4.5
    assert len(analysis.sweep(records)) == 32 and sum(r["chosen"] for r in analysis.sweep(records)) == 16
    records = records[:-1]  # the law's own run at (8, 800), chosen again
    rows = analysis.runs(records)
    laws = analysis.laws(rows, eps0=0.9, n_resamples=30)
    law = laws["m/standard"]
    joint = law["forms"]["joint"]
    assert joint["fit"]["params"]["alpha"] == pytest.approx(0.4, rel=0.1)
    assert joint["fit"]["params"]["beta"] == pytest.approx(0.5, rel=0.1)
    assert joint["extrapolation"]["median_abs_log"] < 0.02 and law["best"] == "joint"
    t = analysis.targets(rows, [], laws, model="m")
    assert t["met"]["extrapolation"] and t["met"]["in_sample"] and not t["met"]["trained_enough"]


def test_paired_comparison_tells_a_steeper_variant_and_not_a_twin():
    # Compute ∝ N·D, from 1 to 512 times the smallest: errors 0.52 → 0.04 (steep) or 0.13 (flat).
    steep = lambda n, d: 0.02 + 0.5 * (n * d / 8e5) ** -0.5  # noqa: E731
    flat = lambda n, d: 0.02 + 0.5 * (n * d / 8e5) ** -0.25  # noqa: E731
    records = _records(flat, noise=0.01) + _records(steep, variant="steep", noise=0.01, seed=1)
    records += _records(flat, variant="twin", noise=0.01, seed=2)
    rows = analysis.runs(records)
    laws = analysis.laws(rows, eps0=0.9, n_resamples=10, forms=("frontier",))
    by = {c["variant"]: c for c in analysis.comparisons(rows, laws, eps0=0.9, n_resamples=100)}
    assert by["steep"]["verdict"] == "steep scales better" and by["steep"]["p_better"] >= 0.95
    assert by["twin"]["verdict"] == "not distinguishable"
    # In two processes (the pool the comparisons share): the same numbers.
    laws2 = analysis.laws(rows, eps0=0.9, n_resamples=10, forms=("frontier",), workers=2)
    for name, law in laws.items():
        np.testing.assert_equal(laws2[name]["forms"]["frontier"]["samples"], law["forms"]["frontier"]["samples"])
        assert laws2[name]["forms"]["frontier"]["intervals"] == law["forms"]["frontier"]["intervals"]


def test_verdict_follows_the_measurements():
    def row(variant, treatment, acc):
        return {"variant": variant, "treatment": treatment, "accuracy": {"mean": acc}}

    for best, expected in ((0.50, "training"), (0.30, "both"), (0.12, "variant")):
        rows = [row("standard", "as_studied", 0.52), row("shared_filter", "as_studied", 0.10),
                row("shared_filter", "init_sum", best)]
        assert tables.verdict(rows, num_classes=10)["answer"] == expected


@pytest.mark.slow  # end-to-end study
def test_killed_study_resumes_mid_branch(tmp_path, monkeypatch):
    """A study stopped inside a branch resumes from the branch's own checkpoint and records what
    an uninterrupted study records."""
    whole = runner.run("configs/scaling_study.py:smoke", SMALL, tmp_path / "whole")
    real, state = train.train, {"stopped": False, "starts": []}

    def stop_in_the_second_branch(*args, start_from=None, **kwargs):
        if start_from is not None and args[2].steps == 20 and not state["stopped"]:
            def on_step(done):
                if done == 18:
                    state["stopped"] = True
                    raise KeyboardInterrupt
            kwargs["on_step"] = on_step
        result = real(*args, start_from=start_from, **kwargs)
        if start_from is not None and args[2].steps == 20:
            state["starts"].append(result["start_step"])
        return result

    monkeypatch.setattr(train, "train", stop_in_the_second_branch)
    with pytest.raises(KeyboardInterrupt):
        runner.run("configs/scaling_study.py:smoke", SMALL, tmp_path / "killed")
    branch = tmp_path / "killed" / "train" / "alexnet" / "standard_w0.0625_s0_lr0.05" / "h20"
    assert (branch / "checkpoints" / "17").is_dir()
    runner.run("configs/scaling_study.py:smoke", SMALL, tmp_path / "killed")
    assert state["starts"] == [17]  # the branch went on from its own step 17, not from the trunk's 16

    def results(folder):
        return {json.dumps(r["key"], sort_keys=True): (r.get("test_accuracy"), r.get("test_loss"), r.get("step_flops"))
                for r in runner.Store(folder).records()}

    assert results(tmp_path / "killed") == results(whole)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The smoke study on CIFAR-10-format files, from the command line, once per test run: every
    part of it (both variants at both widths, three horizons, both rates, the reference, the
    Type 2.1 controls), on shorter horizons and smaller batches than ``:smoke``'s. Each of its
    trunks and branches compiles its own step (a host callback keeps the steps out of the
    persistent compilation cache), and compiling is most of the study's time (at the suite's
    optimisation level, ``tests/conftest.py``)."""
    def build(tmp):
        write_cifar(tmp / "cifar")
        out = subprocess.run([sys.executable, "-m", "jconv", "run", "configs/scaling_study.py:smoke",
                              "--config.dataset=cifar10", f"--config.data_dir={tmp / 'cifar'}",
                              "--config.horizons=(5, 10, 20)", "--config.batch_size=4",
                              "--workdir", str(tmp / "w")], cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return tmp / "w"

    return built_once(tmp_path_factory, "scaling_study", build)


@pytest.mark.slow  # end-to-end study
def test_smoke_study_on_cifar_files_writes_every_output(study):
    table = (study / "table.md").read_text(encoding="utf-8")
    assert "# Scaling study: alexnet on cifar10" in table
    for heading in ("## Learning rates", "## Laws", "## IsoFLOP", "## Which variant scales better",
                    "## Targets", "## Type 2.1"):
        assert heading in table
    with open(study / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    # variants × widths × horizons, the comparison's 2 variants × 2 treatments, the reference
    assert len(rows) == 2 * 2 * 3 + 2 * 2 + 1
    results = json.loads((study / "results.json").read_text())
    assert set(results["laws"]) == {"alexnet/standard", "alexnet/shared_filter"}
    assert results["verdict"]["answer"] in ("training", "variant", "both")
    assert {r["lr"] for r in results["sweep"]} == {0.05, 0.2}
    for name in ("frontier.png", "isoflop.png", "residuals.png", "controls.png"):
        assert (study / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # end-to-end study
def test_report_section_reads_the_study(study, tmp_path):
    config = runner.load("configs/report.py:smoke", [f"--config.study_dir={study}"])[0]
    ctx = Context(config=config, workdir=tmp_path, dir=tmp_path, store=runner.Store(tmp_path))
    text = scaling_study(ctx)
    assert text.startswith("## 9. Error against compute") and "| alexnet | standard |" in text
    assert "Type 2.1" in text and (tmp_path / "study_frontier.png").is_file()
    assert set(ctx.figures["scaling_study"]["forms"]) == {"alexnet/standard", "alexnet/shared_filter"}
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


@pytest.mark.slow  # a study end to end
def test_a_registered_variant_joins_the_study(tmp_path, monkeypatch):
    import importlib.util

    from jconv.ops import registry

    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))  # undone after the test
    spec = importlib.util.spec_from_file_location("study_shift_variant", ROOT / "examples" / "custom_variant.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    config = runner.load("configs/scaling_study.py:smoke", ["--config.variants=()"])[0]
    assert "shift" in runs.variants(config) and "standard" in runs.variants(config)
    workdir = runner.run("configs/scaling_study.py:smoke", [
        "--config.variants=('shift',)", "--config.widths=(0.0625,)", "--config.controls.treatments=()",
        "--config.reference.variant=", "--config.learning_rates=(0.05,)", "--config.horizons=(10, 20)"],
        tmp_path / "w")
    table = (workdir / "table.md").read_text(encoding="utf-8")
    # 2 horizons in the runs table, and one row each in the table of rates
    assert table.count("| alexnet | shift | 0.0625 |") == 4 and "## Type 2.1" not in table
