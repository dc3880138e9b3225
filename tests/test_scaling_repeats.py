"""The scaling study's repeat seeds and more horizons: repeats planned at the rates the first seed
chose and averaged into one point per (width, horizon) before the laws are fitted; more horizons
planned for their variants only, each on from the rate chosen at the one before; both checked
before any writing."""

import math

import numpy as np
import pytest

import configs.scaling_study as study_config
import experiments.scaling_study as study
from experiments.scaling_study import analysis, runs
from jconv import runner
from jconv.runner import ConfigError


def _config(**repeats):
    config = study_config.get_config()
    config.unlock()
    config.variants = ("standard", "grouped")
    for k, v in repeats.items():
        config.repeats[k] = v
    return config


def test_repeats_run_at_the_rates_the_first_seed_chose(tmp_path):
    config = _config(variants=("standard",), seeds=(1, 2), horizons=(320, 1280))
    todo, store, hs = study.plan(config), runner.Store(tmp_path), runs.horizons(config, "standard")
    repeats = [(how, key) for how, key in todo if key["part"] == "scaling" and key["seed"] != 0]
    assert {(k["variant"], k["seed"], k["horizon"]) for _, k in repeats} == {
        ("standard", s, h) for s in (1, 2) for h in (320, 1280)}
    assert len(repeats) == len(config.widths) * 2 * 2
    # Each comes after the first seed's runs of its width, on which its rate depends.
    for i, (how, key) in enumerate(todo):
        if key["part"] == "scaling" and key["seed"] != 0:
            assert how == ("best", key["horizon"], 0)
            before = [k for _, k in todo[:i] if k["part"] == "scaling" and k["seed"] == 0
                      and k["width"] == key["width"] and k["variant"] == key["variant"]]
            assert {k["horizon"] for k in before} == set(hs)
    mine = {"part": "scaling", "model": "alexnet", "variant": "standard", "width": 0.0625}
    how, key = next((how, k) for how, k in repeats if k["width"] == 0.0625 and k["horizon"] == 1280)
    assert study._rate(store, how, key, config) is None  # nothing chosen yet: nothing to run
    for lr, val in ((0.05, 0.2), (0.025, 0.3)):
        store.add({**mine, "seed": 0, "lr": lr, "horizon": 1280}, {"test_accuracy": 0.8, "val_error": val})
    store.add({**mine, "seed": 1, "lr": 0.025, "horizon": 1280}, {"test_accuracy": 0.9, "val_error": 0.0})
    assert study._rate(store, how, key, config) == 0.05  # seed 0's choice, not seed 1's own record


@pytest.mark.parametrize("repeats, flag", [
    ({"variants": ("separable",), "seeds": (1,)}, "repeats.variants"),
    ({"variants": ("standard",), "seeds": (0, 1)}, "repeats.seeds"),
    ({"variants": ("standard",), "seeds": (1, 1)}, "repeats.seeds"),
    ({"variants": ("standard",), "seeds": (1,), "horizons": (300,)}, "repeats.horizons"),
])
def test_bad_repeats_are_named(repeats, flag):
    with pytest.raises(ConfigError, match=flag.replace(".", r"\.")):
        study.check(_config(**repeats))


def test_more_horizons_are_planned_for_their_variants_only(tmp_path):
    config = _config(variants=(), seeds=())
    config.more_horizons.variants, config.more_horizons.horizons = ("standard",), (10240, 448)
    todo, store = study.plan(config), runner.Store(tmp_path)
    planned = {v: sorted({k["horizon"] for _, k in todo if k["part"] == "scaling" and k["variant"] == v})
               for v in ("standard", "grouped")}
    assert planned == {"standard": [320, 448, 640, 1280, 2560, 10240], "grouped": [320, 640, 1280, 2560]}
    assert runs.horizons(config) == (320, 640, 1280, 2560)
    reference, = [k for _, k in todo if k["part"] == "reference"]
    assert reference["horizon"] == 10240 * config.reference.factor == runs.longest(config)
    # Each horizon goes on from the rate chosen at the one before it, a common one or not.
    mine = {"part": "scaling", "model": "alexnet", "variant": "standard", "width": 0.0625, "seed": 0}

    def rates(horizon):
        return [study._rate(store, how, k, config) for how, k in todo
                if all(k.get(f) == v for f, v in mine.items()) and k["horizon"] == horizon]

    for lr, val in ((0.025, 0.3), (0.05, 0.2), (0.1, 0.4)):
        store.add({**mine, "lr": lr, "horizon": 320}, {"test_accuracy": 0.8, "val_error": val})
    assert rates(448) == [0.05, 0.025] and rates(640) == [None, None]
    store.add({**mine, "lr": 0.025, "horizon": 448}, {"test_accuracy": 0.8, "val_error": 0.1})
    assert rates(640) == [0.025, None]  # no lower rate to try
    config.more_horizons.variants = ()
    assert runs.longest(config) == 2560 * config.reference.factor


@pytest.mark.parametrize("more, repeats, flag", [
    ({"horizons": (2560,)}, {}, "more_horizons.horizons"),
    ({"horizons": (320,)}, {}, "more_horizons.horizons"),
    ({"horizons": (5120, 5120)}, {}, "more_horizons.horizons"),
    ({"horizons": (5120.0,)}, {}, "more_horizons.horizons"),
    ({"variants": ("depthwise_nope",)}, {}, "more_horizons.variants"),
    ({}, {"variants": ("grouped",), "seeds": (1,), "horizons": (5120,)}, "repeats.horizons"),
])
def test_bad_more_horizons_are_named(more, repeats, flag):
    config = _config(**repeats)
    for k, v in more.items():
        config.more_horizons[k] = v
    with pytest.raises(ConfigError, match=flag.replace(".", r"\.")):
        study.check(config)


def test_repeats_may_train_to_their_variants_more_horizons():
    study.check(_config(variants=("standard",), seeds=(1,), horizons=(320, 448, 5120)))


def _rows(variant, seeds, err, widths=(1, 2, 4, 8), horizons=(100, 200, 400, 800), noise=0.0, rng=None):
    rows = []
    for w in widths:
        params = 1000 * w * w
        for h in horizons:
            for s in seeds:
                e = err(params * h) * (math.exp(noise * rng.normal()) if noise else 1.0)
                rows.append({"model": "m", "variant": variant, "width": w, "horizon": h, "seed": s, "lr": 0.1,
                             "params": params, "samples": 8 * h, "train_flops": 48.0 * params * h,
                             "error": e, "trunk": f"m/{variant}/{w}/{s}"})
    return rows


def test_points_average_the_seeds_and_the_laws_fit_the_points():
    law = lambda c: 0.02 + 0.5 * (c / 1e5) ** -0.4  # noqa: E731
    rng = np.random.default_rng(0)
    rows = _rows("standard", (0, 1, 2), law, noise=0.05, rng=rng) + _rows("grouped", (0,), law)
    rows[0]["error"] = None  # a diverged seed: the point is the mean of the other two
    points = analysis.points(rows)
    assert len(points) == 2 * 16
    first = next(p for p in points if (p["variant"], p["width"], p["horizon"]) == ("standard", 1, 100))
    assert first["seeds"] == 2 and first["error"] == pytest.approx((rows[1]["error"] + rows[2]["error"]) / 2)
    spread = [p["error_sd"] for p in points if p["variant"] == "standard" and p["seeds"] == 3]
    assert len(spread) == 15 and all(s > 0 for s in spread)
    assert all(p["seeds"] == 1 and p["error_sd"] is None for p in points if p["variant"] == "grouped")
    laws = analysis.laws(points, eps0=0.9, n_resamples=20, forms=("frontier",))
    assert all(len(k) == 2 for k in laws["m/standard"]["frontier"])  # points are (width, horizon)
    # The mean of three seeds scatters less about the law than one seed does.
    one = analysis.laws(analysis.points([r for r in rows if r["variant"] != "standard" or r["seed"] == 1]),
                        eps0=0.9, n_resamples=20, forms=("frontier",))
    rmse = lambda ls: ls["m/standard"]["forms"]["frontier"]["fit"]["rmse_log"]  # noqa: E731
    assert rmse(laws) < rmse(one)
    # Points of one seed pair with points of three: every (width, horizon) is a pair.
    (c,) = analysis.comparisons(points, laws, eps0=0.9, n_resamples=20, form="frontier")
    assert c["pairs"] == 16 and c["variant"] == "grouped"
