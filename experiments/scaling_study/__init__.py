"""The scaling study: test error against training compute for every conv variant, with laws
judged by how they extrapolate.

``run(config, workdir)`` trains the models of ``config.models`` (AlexNet 2012 by default; the
GoogLeNet family with ``:gpu``) with every conv variant (``config.variants``; empty: all of
:func:`jconv.nn.variants`, registered ones included) at every width and seed, under one recipe
(BatchNorm models, Nesterov SGD, label smoothing, the warmup-stable-decay schedule), at several
horizons per model: each horizon is a cooldown branched off a constant-rate run
(:mod:`.runs`). The learning rate is chosen per (variant, width, seed) and horizon, on a validation
set: every rate of ``config.learning_rates`` at the shortest horizon, then at each longer horizon
the rate chosen at the one before and the next lower rate (:func:`runs.live_rates`: the best rate
falls as the horizon grows). ``config.repeats`` trains some variants again with more seeds, each at
the rates the first seed chose; the laws fit one point per (width, horizon), the mean error of its
seeds (:func:`analysis.points`). The data never repeats within a run. Compute is XLA's FLOP
count of the compiled train step (oneDNN off, so that XLA sees the convolutions) times the steps.
A reference run of the largest standard model at a longer horizon says whether the longest
horizon trained enough; a controlled comparison asks what Type 2.1's deficit is made of.

From the records it writes (:mod:`.analysis`, :mod:`.fits`, :mod:`.plots`, :mod:`.tables`):
``table.md`` (runs, the sweep, laws with bootstrap intervals, extrapolation, IsoFLOP, paired
comparisons of variants, the Type 2.1 comparison), ``summary.csv``, ``results.json`` and the
plots ``frontier.png``, ``isoflop.png``, ``residuals.png``, ``controls.png``.

Compiled programs are cached in ``WORKDIR/jax_cache`` (JAX's persistent compilation cache,
unless one is already configured). On several processes (``jconv launch``) every process trains
every run, each with its share of every batch, and process 0 writes the records and the outputs.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax

from experiments.scaling_study import analysis, plots, runs, tables
from jconv import train
from jconv.runner import Store, progress


def _compilation_cache(workdir: Path) -> None:
    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(workdir / "jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def plan(config) -> list[tuple[tuple, dict]]:
    """Every measurement of the study in the order it runs, as ``(how, key)``.

    ``how`` says where a key's rate comes from: ``("given",)``, the rate in the key (every rate
    at the shortest horizon; costs have none); ``("live", i)``, the ``i``-th of
    :func:`runs.live_rates` after the rate chosen at the horizon before; ``("best", h)``, the rate
    chosen at horizon ``h`` (the reference run: at the longest; the comparison: at the shortest);
    ``("best", h, seed)``, the rate ``seed`` chose at ``h`` (the repeats of ``config.repeats``).
    Those keys carry ``lr=None`` until the runs they depend on are recorded.
    """
    runs.check(config)
    candidates = min(2, len(config.learning_rates))
    todo = []
    for model in config.models:
        for variant in runs.variants(config):
            hs = runs.horizons(config, variant)
            for width in config.widths:
                base = {"model": model, "variant": variant, "width": width}
                todo.append((("given",), {"part": "cost", **base}))
                for seed in config.seeds:
                    todo += [(("given",), {"part": "scaling", **base, "seed": seed, "lr": lr, "horizon": hs[0]})
                             for lr in config.learning_rates]
                    todo += [(("live", i), {"part": "scaling", **base, "seed": seed, "lr": None, "horizon": h})
                             for h in hs[1:] for i in range(candidates)]
                if variant in config.repeats.variants:
                    todo += [(("best", h, config.seeds[0]), {"part": "scaling", **base, "seed": seed, "lr": None,
                                                             "horizon": h})
                             for seed in config.repeats.seeds for h in runs.repeat_horizons(config, variant)]
    ref = config.reference
    if ref.variant:
        base = {"model": config.models[0], "variant": ref.variant, "width": max(config.widths)}
        last = runs.horizons(config, ref.variant)[-1]
        todo += [(("best", last), {"part": "reference", **base, "seed": config.seeds[0], "lr": None,
                                   "horizon": last * ref.factor})]
    hs = runs.horizons(config)
    c = config.controls
    for variant in c.variants if c.treatments else ():
        base = {"model": config.models[0], "variant": variant, "width": c.width}
        todo += [(("given",), {"part": "cost", **base, "treatment": t}) for t in c.treatments if t != "as_studied"]
        todo += [(("best", hs[0]), {"part": "controls", **base, "seed": s, "lr": None, "horizon": hs[0],
                                    "treatment": t})
                 for t in c.treatments for s in config.seeds]
    return todo


def _best_lr(store: Store, key: dict, horizon: int, seed: int | None = None) -> float | None:
    """The rate chosen for ``key``'s (model, variant, width) and ``seed`` (default: its own) at ``horizon``."""
    want = {**key, "seed": key["seed"] if seed is None else seed}
    done = [r for r in store.records() if r["key"]["part"] == "scaling" and r["key"]["horizon"] == horizon
            and all(r["key"][k] == want[k] for k in ("model", "variant", "width", "seed"))]
    return runs.choose_lr(done)


def _rate(store: Store, how: tuple, key: dict, config) -> float | None:
    if how[0] == "given":
        return key.get("lr")
    if how[0] == "best":
        return _best_lr(store, key, *how[1:])
    hs = runs.horizons(config, key["variant"])
    before = hs[hs.index(key["horizon"]) - 1]
    live = runs.live_rates(config.learning_rates, _best_lr(store, key, before))
    return live[how[1]] if how[1] < len(live) else None


STEPS = train.StepCache()
"""The compiled steps of this process's studies: every trunk and branch of a (model, variant,
width) runs one compiled step (compiling it for each was a quarter of the default's time), and a
study run again in the same process (resumed, or another work directory) runs them too. The
steps hold a host callback, so JAX's cache on disk does not keep them."""


def run(config, workdir: Path) -> dict:
    workdir = Path(workdir)
    _compilation_cache(workdir)
    store = Store(workdir)
    todo = plan(config)
    study_data: dict[str, runs.StudyData] = {}
    with progress(len(todo), 0, "scaling study") as bar:
        for how, key in todo:
            if key["part"] != "cost":
                key = {**key, "lr": _rate(store, how, key, config)}
            # No rate to run at: no lower candidate, or every run it depends on diverged.
            if store.has(key) or key.get("lr", 0) is None:
                bar.update()
                continue
            if key["model"] not in study_data:
                bar.set_postfix_str(f"data for {key['model']}")
                study_data[key["model"]] = runs.open_data(config, key["model"])
                rendered = {"part": "data", "model": key["model"]}
                if not store.has(rendered):
                    store.add(rendered, {"render_s": study_data[key["model"]].render_s})
            mine = study_data[key["model"]]
            bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in key.items() if k != "part"))
            start = time.perf_counter()
            if key["part"] == "cost":
                result = runs.cost(config, key, mine)
            else:
                result = runs.branch(config, key, mine, workdir, STEPS)
                result["num_classes"] = mine.num_classes
            store.add(key, {**result, "wall_s": time.perf_counter() - start})
            if key["part"] != "cost":
                runs.drop_checkpoints(workdir, key)
            bar.update()
    return summarize(config, store.records(), workdir)


def summarize(config, records: list[dict], workdir: Path) -> dict:
    """Writes the tables, CSV, JSON and plots of ``records``; returns the results."""
    rows = analysis.runs(records)
    points = analysis.points(rows)  # a point: the mean over its seeds
    num_classes = next((r["num_classes"] for r in records if "num_classes" in r), None)
    eps0 = 1 - 1 / num_classes if num_classes else 0.9
    fraction, n = config.holdout_fraction, config.bootstrap
    workers, starts = config.fit_workers, config.fit_starts
    laws = analysis.laws(points, eps0=eps0, fraction=fraction, n_resamples=n, workers=workers, starts=starts)
    control_rows = analysis.runs(records, "controls")
    reruns = analysis.reruns(points, model=config.models[0], eps0=eps0, n_resamples=n, starts=starts)
    results = {"runs": rows, "points": points, "sweep": analysis.sweep(records), "laws": laws,
               "isoflop": analysis.isoflops(points),
               "comparisons": analysis.comparisons(points, laws, eps0=eps0, n_resamples=n, workers=workers),
               "targets": analysis.targets(rows, analysis.runs(records, "reference"), laws,
                                           model=config.models[0], reruns_=reruns),
               "reruns": reruns,
               "controls": analysis.controls(control_rows), "num_classes": num_classes,
               "holdout_fraction": fraction,
               "render_s": {r["key"]["model"]: r["render_s"] for r in records if r["key"]["part"] == "data"}}
    results["verdict"] = tables.verdict(results["controls"], num_classes)
    if jax.process_index() != 0:
        return results
    tables.write_csv(rows + control_rows + analysis.runs(records, "reference"), workdir / "summary.csv")
    tables.write_json(config, results, workdir / "results.json")
    plots.frontier(points, results, workdir / "frontier.png")
    plots.isoflop(points, results, workdir / "isoflop.png")
    plots.residuals(points, results, workdir / "residuals.png")
    names = ["frontier.png", "isoflop.png", "residuals.png"]
    if results["controls"]:
        plots.controls(control_rows, results, workdir / "controls.png")
        names.append("controls.png")
    text = tables.markdown(config, results)
    (workdir / "table.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"table: {workdir / 'table.md'}\ncsv: {workdir / 'summary.csv'}\nplots: "
          + ", ".join(str(workdir / name) for name in names))
    return results


def check(config) -> None:
    """Raises ConfigError for a setting the study cannot use, naming it, before anything is written:
    horizons, learning rates, variants, controls and reference (:func:`runs.check`), the training
    recipe of every rate at the shortest and longest horizon, and every model at the narrowest width."""
    from experiments.common import check_models
    from jconv import data
    from jconv.runner import ConfigError, setting_error

    fraction = config.cooldown_fraction
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ConfigError(f"--config.cooldown_fraction={fraction!r}; expected a number in [0, 1]")
    hs = runs.horizons(config)
    runs.check(config)
    if not config.seeds:
        raise ConfigError("--config.seeds=(); expected one or more seeds")
    workers = config.fit_workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--config.fit_workers={workers!r}; expected an int ≥ 1")
    starts = config.fit_starts
    if isinstance(starts, bool) or not isinstance(starts, int) or starts < 1:
        raise ConfigError(f"--config.fit_starts={starts!r}; expected an int ≥ 1")
    words = {k: k for k in ("batch_size", "optimizer", "momentum", "nesterov", "weight_decay", "label_smoothing",
                            "ema_decay", "warmup_steps", "cooldown_fraction", "log_every", "checkpoint_every",
                            "data_workers", "dtype")} | {"learning_rate": "learning_rates", "steps": "horizons"}
    for lr in config.learning_rates:
        for steps, cooldown in ((hs[0] - runs.cooldown_steps(config, hs[0]), False), (hs[-1], True)):
            try:
                runs.recipe(config, seed=0, learning_rate=lr, steps=steps, cooldown=cooldown)
            except (TypeError, ValueError) as error:
                raise setting_error(error, config, words) from None
    if config.in_channels not in (0, 1, 3):
        raise ConfigError(f"--config.in_channels={config.in_channels!r}; expected 0 (the data's own), 1 or 3")
    for model in config.models:
        runs.input_size(config, model)
    check_models(config, config.models, runs.variants(config), config.widths, lambda m: runs.input_size(config, m),
                 config.in_channels or 3, {"model": "models", "variant": "variants", "width": "widths",
                                           "input_size": "input_sizes.{model}"}, norm=config.norm)
    if config.dataset not in data.sources.SOURCES:
        raise ConfigError(f"--config.dataset={config.dataset!r}; expected one of {list(data.sources.SOURCES)}")
    if config.dataset in data.sources.NEEDS_DATA_DIR and not (config.data_dir and Path(config.data_dir).is_dir()):
        runs.open_data(config, config.models[0])  # fails at once, naming the setting or the folder
    if config.dataset == "procedural":
        for key, low in (("num_classes", 1), ("validation_size", 1), ("test_size", 1), ("render_workers", 0)):
            if isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < low:
                raise ConfigError(f"--config.{key}={config[key]!r}; expected an int ≥ {low}")
