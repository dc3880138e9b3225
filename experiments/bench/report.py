"""The run's summary: one row per (case, pass) with each implementation's time and auto's
ratios, written as ``summary.csv`` and ``table.md`` (with notes and targets) and plotted."""

from __future__ import annotations

import csv
from pathlib import Path

import jax

from experiments.bench.cases import NAIVE, case_shapes
from experiments.bench.plots import plot
from experiments.bench.targets import targets_section
from jconv import cost
from jconv.ops import registry
from jconv.runner import Store


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)


def _best(t: dict) -> str:
    kernels = {i: v for i, v in t.items() if i not in ("auto", "torch", NAIVE)}
    return min(kernels, key=kernels.get)


def ratios(t: dict) -> dict:
    """auto against lax, the fastest jconv kernel, PyTorch and the naive form."""
    return {"lax_over_auto": t["lax"] / t["auto"],
            "auto_over_best": t["auto"] / t[_best(t)],
            "torch_over_auto": t["torch"] / t["auto"] if "torch" in t else None,
            "naive_over_auto": t[NAIVE] / t["auto"] if NAIVE in t else None}


def rows(cases, records) -> list[dict]:
    """One row per (case, pass): time per impl, best jconv kernel, auto's ratios."""
    found = {(r["key"]["case"], r["key"]["pass"], r["key"]["impl"]): r for r in records}
    peak = found.get(("matmul_peak", "fwd", "jnp.dot"), {}).get("gflops")
    out = []
    for case in cases:
        for pass_ in ("fwd", "fwd_bwd"):
            mine = {impl: r for (c, p, impl), r in found.items()
                    if c == case.name and p == pass_ and r.get("time_s")}
            if "auto" not in mine or "lax" not in mine:
                continue
            t = {impl: r["time_s"] for impl, r in mine.items()}
            fastest = {impl: r.get("min_s", r["time_s"]) for impl, r in mine.items()}
            best = _best(t)
            f = mine["auto"]["flops"]
            out.append({
                "case": case.name, "layer": case.layer, "op": case.op, "pass": pass_,
                "flops": f, "times_ms": {i: 1e3 * v for i, v in t.items()},
                "min_ms": {i: 1e3 * v for i, v in fastest.items()},
                "auto_impl": mine["auto"].get("chosen", "—"), "best": best,
                "auto_gflops": f / t["auto"] / 1e9,
                "auto_peak": f / t["auto"] / 1e9 / peak if peak else None,
                **ratios(t), **{f"{k}_min": v for k, v in ratios(fastest).items()},
                # auto and the kernel it picks are the same computation: their gap is
                # this row's noise floor.
                "noise": (abs(t["auto"] / t[mine["auto"]["chosen"]] - 1)
                          if mine["auto"].get("chosen") in t else None),
            })
    return out


def summarize(config, cases, store: Store, workdir: Path) -> dict:
    """Writes ``summary.csv``, ``table.md`` and ``bench.png`` from the stored measurements."""
    records = store.records()
    table_rows = rows(cases, records)
    impl_names = sorted({i for r in table_rows for i in r["times_ms"]},
                        key=[*registry.IMPLS, NAIVE, "auto", "torch"].index)
    _write_csv(workdir / "summary.csv", table_rows, impl_names)
    peak = next((r for r in records if r["key"]["case"] == "matmul_peak"), None)
    table = (_table(config, table_rows, impl_names, peak) + _notes(cases, config, table_rows)
             + targets_section(cases, table_rows))
    (workdir / "table.md").write_text(table)
    plot(table_rows, impl_names, peak, workdir / "bench.png")
    print(table)
    print(f"table: {workdir / 'table.md'}\nsummary: {workdir / 'summary.csv'}\n"
          f"plot: {workdir / 'bench.png'}\nenvironment: {workdir / 'environment.json'}")
    return {"records": records, "rows": table_rows}


def _write_csv(path: Path, table_rows, impl_names) -> None:
    ratio_keys = [k for k in table_rows[0] if k.endswith(("_over_auto", "_over_best",
                                                          "_over_auto_min",
                                                          "_over_best_min"))] + ["noise"]
    fields = ["case", "layer", "op", "pass", "flops", *[f"{i}_ms" for i in impl_names],
              *[f"{i}_min_ms" for i in impl_names], "auto_impl", "best", "auto_gflops",
              "auto_peak", *ratio_keys]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        for r in table_rows:
            writer.writerow({**{k: v for k, v in r.items() if k not in ("times_ms", "min_ms")},
                             **{f"{i}_ms": r["times_ms"].get(i) for i in impl_names},
                             **{f"{i}_min_ms": r["min_ms"].get(i) for i in impl_names}})


def _table(config, table_rows, impl_names, peak) -> str:
    peak_text = (f"{peak['gflops']:.1f} GFLOP/s (fp32 jnp.dot {config.peak_size}²)"
                 if peak else "not measured")
    lines = [f"# jconv benchmark ({jax.default_backend()}, batch {config.batch}, fp32, "
             f"median of {config.repeats} after {config.warmup} warm-up)", "",
             f"Matmul peak: {peak_text}. Times in ms. lax/auto: speed-up of auto over lax "
             "(≥ 1: auto is faster). auto/best: auto's time over the fastest jconv kernel "
             "(≤ 1.05 is the target). torch/auto: > 1 means jconv auto is faster.", "",
             "| case | layer | pass | GFLOP | " + " | ".join(impl_names)
             + " | auto picks | auto GFLOP/s (% peak) | lax/auto | auto/best | torch/auto |",
             "|" + "---|" * (10 + len(impl_names))]
    for r in table_rows:
        times = " | ".join(_fmt(r["times_ms"].get(i), ".2f") for i in impl_names)
        peak_pct = f" ({100 * r['auto_peak']:.0f}%)" if r["auto_peak"] else ""
        lines.append(f"| {r['case']} | {r['layer']} | {r['pass']} | {r['flops'] / 1e9:.3f} | "
                     f"{times} | {r['auto_impl']} | {r['auto_gflops']:.1f}{peak_pct} | "
                     f"{r['lax_over_auto']:.2f} | {r['auto_over_best']:.2f} | "
                     f"{_fmt(r['torch_over_auto'], '.2f')} |")
    return "\n".join(lines) + "\n"


def _notes(cases, config, table_rows) -> str:
    """The algebraic shortcuts: FLOPs saved, and speed against the naive form."""
    lines = []
    by_case = {(r["case"], r["pass"]): r for r in table_rows}
    for case in cases:
        shape_list = case_shapes(case, config)
        if case.op == "shared_filter_conv":
            dense = cost.shared_filter_conv(*shape_list, **case.kwargs).flops
            short = cost.shared_filter_conv(*shape_list, **case.kwargs, shortcut=True).flops
            lines.append(f"- `{case.name}`: the shortcut (sum the maps, then one "
                         f"single-channel conv; `sum_maps`) does {short / 1e9:.4f} GFLOP forward "
                         f"instead of the 3-D kernel's {dense / 1e9:.4f} (`lax`): "
                         f"{dense / short:.0f}× fewer; GFLOP/s above count the dense form.")
        for pass_ in ("fwd", "fwd_bwd"):
            r = by_case.get((case.name, pass_))
            if r and NAIVE in r["times_ms"]:
                lines.append(f"- `{case.name}` {pass_}: naive form (tiled-kernel depthwise "
                             f"`lax` conv) {r['times_ms'][NAIVE]:.2f} ms, `lax` (maps folded "
                             f"into the batch) {r['times_ms']['lax']:.2f} ms, auto "
                             f"{r['times_ms']['auto']:.2f} ms: "
                             f"{r['times_ms'][NAIVE] / r['times_ms']['auto']:.1f}× the naive.")
    return "\nNotes:\n\n" + "\n".join(lines) + "\n" if lines else ""
