"""The scaling study: how test accuracy grows with compute for every conv variant.

``run(config, workdir)`` trains the AlexNet-style and the Inception-style model
(``config.models``) with every conv variant (``config.variants``; empty: all of
:func:`jconv.nn.variants`, registered ones included) at every width and seed, on one data set
(the procedural set by default), all with the same steps, batch and schedule; then a controlled
comparison of the Type 2.1 (shared-filter) variant under other training (:data:`runs.TREATMENTS`).
Every run is one store record and one resumable training directory (:mod:`.runs`).

From the records it writes (:mod:`.analysis`, :mod:`.plots`, :mod:`.tables`):

* ``table.md``: per run, accuracy and loss over seeds, MACs, training FLOPs, images/s, GFLOP/s
  and the Pareto frontier; per variant, the fitted law and its exponent's uncertainty; the
  throughput of each variant against the cost model; the Type 2.1 comparison and its verdict;
* ``summary.csv`` (one row per run and seed) and ``results.json`` (every figure above);
* ``accuracy.png``, ``laws.png``, ``throughput.png``, ``controls.png``.

Compiled programs are cached in ``WORKDIR/jax_cache`` (JAX's persistent compilation cache,
unless one is already configured), so the second seed of a run and a resumed study do not
compile again. On several processes (``jconv launch``) every process trains every run, each
with its share of every batch, and process 0 writes the records and the outputs.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax

from experiments.scaling_study import analysis, plots, runs, tables
from jconv.runner import Store, progress


def _compilation_cache(workdir: Path) -> None:
    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", str(workdir / "jax_cache"))


def run(config, workdir: Path) -> dict:
    workdir = Path(workdir)
    _compilation_cache(workdir)
    store = Store(workdir)
    keys = runs.scaling_keys(config) + runs.control_keys(config)
    selections: dict[str, object] = {}
    with progress(len(keys), sum(store.has(k) for k in keys), "scaling study") as bar:
        for key in keys:
            if store.has(key):
                continue
            if key["model"] not in selections:
                bar.set_postfix_str(f"data for {key['model']}")
                selections[key["model"]] = runs.open_data(config, key["model"])
            bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in key.items() if k != "part"))
            start = time.perf_counter()
            result = runs.measure(config, key, selections[key["model"]], workdir)
            store.add(key, {**result, "wall_s": time.perf_counter() - start})
            bar.update()
    return summarize(config, store.records(), workdir)


def summarize(config, records: list[dict], workdir: Path) -> dict:
    """Writes the table, CSV, JSON and plots of ``records``; returns the results."""
    results = {"rows": analysis.aggregate(records),
               "laws": {f"{m}/{v}": law for (m, v), law in analysis.laws(records).items()},
               "controls": analysis.controls(records),
               "num_classes": next((r["num_classes"] for r in records if "num_classes" in r), None)}
    results["frontier"] = tables.mark_frontier(results["rows"])
    results["verdict"] = tables.verdict(results["controls"], results["num_classes"])
    if jax.process_index() != 0:
        return results
    tables.write_csv(records, workdir / "summary.csv")
    tables.write_json(config, results, workdir / "results.json")
    plots.accuracy(results, workdir / "accuracy.png")
    plots.laws(records, results, workdir / "laws.png")
    plots.throughput(results, workdir / "throughput.png")
    if results["controls"]:
        plots.controls(records, results, workdir / "controls.png")
    text = tables.markdown(config, results, records)
    (workdir / "table.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"table: {workdir / 'table.md'}\ncsv: {workdir / 'summary.csv'}\nplots: "
          + ", ".join(str(workdir / n) for n in ("accuracy.png", "laws.png", "throughput.png")))
    return results
