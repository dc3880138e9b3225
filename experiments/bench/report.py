"""The run's summary: one row per (case, pass) with each implementation's time and auto's
ratios, written as ``summary.csv`` and ``table.md`` (with notes, the nine against
PyTorch, bfloat16, the models and the targets) and plotted; one row per model in
``models.csv``."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import jax

import jconv
from experiments.bench.breakdown import CATEGORIES
from experiments.bench.cases import BF16, NAIVE, case_shapes, split_impl
from experiments.bench.plots import plot
from experiments.bench.targets import targets_section
from experiments.bench.torch_ports import torch_skipped
from jconv import cost
from jconv.ops import registry
from jconv.runner import Store


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)


def _best(t: dict) -> str:
    kernels = {i: v for i, v in t.items() if i not in ("auto", "torch", NAIVE) and BF16 not in i}
    return min(kernels, key=kernels.get)


def _over(t: dict, a: str, b: str):
    return t[a] / t[b] if a in t and b in t else None


def ratios(t: dict) -> dict:
    """auto against lax, the fastest jconv kernel, PyTorch and the naive form; PyTorch
    against onednn; float32 against bfloat16 for auto and onednn."""
    return {"lax_over_auto": t["lax"] / t["auto"],
            "auto_over_best": t["auto"] / t[_best(t)],
            "torch_over_auto": _over(t, "torch", "auto"),
            "naive_over_auto": _over(t, NAIVE, "auto"),
            "torch_over_onednn": _over(t, "torch", "onednn"),
            "auto_f32_over_bf16": _over(t, "auto", "auto" + BF16),
            "onednn_f32_over_bf16": _over(t, "onednn", "onednn" + BF16)}


def _impl_order(name: str) -> tuple:
    impl, dtype = split_impl(name)
    return dtype != "float32", [*registry.IMPLS, NAIVE, "auto", "torch"].index(impl)


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
                "case": case.name, "suite": case.suite, "layer": case.layer, "op": case.op,
                "pass": pass_,
                "flops": f, "times_ms": {i: 1e3 * v for i, v in t.items()},
                "min_ms": {i: 1e3 * v for i, v in fastest.items()},
                "auto_impl": mine["auto"].get("chosen", "—"), "best": best,
                "auto_bf16_impl": mine.get("auto" + BF16, {}).get("chosen"),
                "torch_err": mine.get("torch", {}).get("max_abs_err_vs_lax"),
                "auto_gflops": f / t["auto"] / 1e9,
                "auto_peak": f / t["auto"] / 1e9 / peak if peak else None,
                **ratios(t), **{f"{k}_min": v for k, v in ratios(fastest).items()},
                # auto and the kernel it picks are the same computation: their gap is
                # this row's noise floor.
                "noise": (abs(t["auto"] / t[mine["auto"]["chosen"]] - 1)
                          if mine["auto"].get("chosen") in t else None),
            })
    return out


def model_rows(model_cases, records) -> list[dict]:
    """One row per model: images/s of ``lax`` and ``auto``, and auto's speed-up."""
    found = {(r["key"]["case"], r["key"]["impl"]): r for r in records
             if r["key"]["pass"] == "train_step" and r.get("time_s")}
    out = []
    for case in model_cases:
        mine = {impl: found[case.name, impl] for impl in ("lax", "auto", "torch")
                if (case.name, impl) in found}
        if "lax" not in mine or "auto" not in mine:
            continue
        torch = mine.get("torch")
        out.append({
            "case": case.name, "suite": case.suite, "layer": mine["auto"]["layer"],
            "pass": "train_step", "batch": mine["auto"]["batch"],
            "times_ms": {i: 1e3 * r["time_s"] for i, r in mine.items()},
            "min_ms": {i: 1e3 * r["min_s"] for i, r in mine.items()},
            "spread_ms": {i: (1e3 * min(r["times_s"]), 1e3 * max(r["times_s"]))
                          for i, r in mine.items() if r.get("times_s")},
            "images_per_s": {i: r["images_per_s"] for i, r in mine.items()},
            "compile_s": {i: r["compile_s"] for i, r in mine.items()},
            "finite": all(r["finite"] for r in mine.values()),
            "lax_over_auto": mine["lax"]["time_s"] / mine["auto"]["time_s"],
            "lax_over_auto_min": mine["lax"]["min_s"] / mine["auto"]["min_s"],
            "torch_over_auto": torch and torch["time_s"] / mine["auto"]["time_s"],
            "torch_over_auto_min": torch and torch["min_s"] / mine["auto"]["min_s"],
            "noise": None,
            "breakdown_ms": {i: r["breakdown_ms"] for i, r in mine.items() if "breakdown_ms" in r},
        })
    return out


def summarize(config, cases, store: Store, workdir: Path, model_cases=()) -> dict:
    """Writes ``summary.csv``, ``models.csv``, ``table.md`` and ``bench.png`` from the
    stored measurements."""
    records = store.records()
    table_rows = rows(cases, records)
    models = model_rows(model_cases, records)
    impl_names = sorted({i for r in table_rows for i in r["times_ms"]}, key=_impl_order)
    if table_rows:
        _write_csv(workdir / "summary.csv", table_rows, impl_names)
    _write_models_csv(workdir / "models.csv", models)
    peak = next((r for r in records if r["key"]["case"] == "matmul_peak"), None)
    layers = [r for r in table_rows if r["suite"] == "layers"]
    versus = [r for r in table_rows if r["suite"] == "versus_torch"]
    table = (_table(config, layers, [i for i in impl_names
                                     if any(i in r["times_ms"] for r in layers)], peak)
             + _notes(cases, config, table_rows) + _versus_torch(config, versus)
             + _bfloat16(versus) + _models(config, models)
             + targets_section([*cases, *model_cases], [*table_rows, *models]))
    (workdir / "table.md").write_text(table)
    plot(table_rows, impl_names, peak, workdir / "bench.png")
    print(table)
    print(f"table: {workdir / 'table.md'}\nsummary: {workdir / 'summary.csv'}\n"
          f"models: {workdir / 'models.csv'}\nplot: {workdir / 'bench.png'}\n"
          f"environment: {workdir / 'environment.json'}")
    return {"records": records, "rows": table_rows, "models": models}


def _write_models_csv(path: Path, models) -> None:
    fields = ["case", "layer", "batch", "lax_images_per_s", "auto_images_per_s", "lax_ms",
              "auto_ms", "lax_min_ms", "auto_min_ms", "lax_compile_s", "auto_compile_s",
              "lax_over_auto", "lax_over_auto_min", "torch_images_per_s", "torch_ms",
              "torch_over_auto", "torch_over_auto_min", "finite"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        for r in models:
            writer.writerow({**{k: r[k] for k in ("case", "layer", "batch", "lax_over_auto",
                                                  "lax_over_auto_min", "torch_over_auto",
                                                  "torch_over_auto_min", "finite")},
                             "torch_images_per_s": r["images_per_s"].get("torch"),
                             "torch_ms": r["times_ms"].get("torch"),
                             **{f"{i}_images_per_s": r["images_per_s"][i] for i in ("lax", "auto")},
                             **{f"{i}_ms": r["times_ms"][i] for i in ("lax", "auto")},
                             **{f"{i}_min_ms": r["min_ms"][i] for i in ("lax", "auto")},
                             **{f"{i}_compile_s": r["compile_s"][i] for i in ("lax", "auto")}})


def _write_csv(path: Path, table_rows, impl_names) -> None:
    ratio_keys = [k for k in table_rows[0] if "_over_" in k] + ["noise"]
    fields = ["case", "suite", "layer", "op", "pass", "flops", *[f"{i}_ms" for i in impl_names],
              *[f"{i}_min_ms" for i in impl_names], "auto_impl", "auto_bf16_impl", "best",
              "auto_gflops", "auto_peak", "torch_err", *ratio_keys]
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
             "(≤ 1.05 is the target). torch/auto: > 1 means jconv auto is faster. "
             + omp_note(), "",
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


def _versus_torch(config, versus) -> str:
    """Issue 13's nine against PyTorch: times of lax, onednn, auto and PyTorch, and
    PyTorch's time over auto's (> 1: jconv is faster)."""
    if not versus:
        return ""
    torch_times = any("torch" in r["times_ms"] for r in versus)
    skipped = torch_skipped(config)
    lines = ["", "## PyTorch side by side: issue 13's nine convolutions", "",
             "fp32, batch 8, SAME padding; PyTorch on channels-last tensors "
             "(`torch.nn.functional.conv2d`, one call per pass, as jconv's). Times in ms "
             "(medians). torch/auto > 1: jconv `auto` is faster than PyTorch. "
             "torch/onednn: the same for `impl=\"onednn\"`. " + omp_note(), ""]
    if not torch_times:
        why = skipped or "no PyTorch measurements in this work directory"
        lines += [f"PyTorch: skipped ({why}).", ""]
    lines += ["| case | layer | pass | lax | onednn | auto | torch | auto picks | torch/auto "
              "| torch/onednn | lax/auto | max \\|torch − lax\\| |", "|" + "---|" * 12]
    for r in versus:
        t = r["times_ms"]
        torch_cell = _fmt(t.get("torch"), ".2f") if torch_times else "skipped"
        lines.append(f"| {r['case']} | {r['layer']} | {r['pass']} | {_fmt(t.get('lax'), '.2f')} | "
                     f"{_fmt(t.get('onednn'), '.2f')} | {t['auto']:.2f} | {torch_cell} | "
                     f"{r['auto_impl']} | {_fmt(r['torch_over_auto'], '.2f')} | "
                     f"{_fmt(r['torch_over_onednn'], '.2f')} | {r['lax_over_auto']:.2f} | "
                     f"{_fmt(r['torch_err'], '.1e')} |")
    return "\n".join(lines) + "\n"


def omp_note() -> str:
    """The OpenMP wait policy the run had, and what it does to the onednn and torch columns."""
    policy = os.environ.get("OMP_WAIT_POLICY")
    if "loaded before oneDNN" in jconv.backends()["onednn"].reason:
        policy = "whatever OpenMP started with"  # something loaded it before jconv could say
    if policy and policy.upper() == "PASSIVE":
        return ("OMP_WAIT_POLICY=PASSIVE: oneDNN's and PyTorch's OpenMP threads sleep "
                "between calls.")
    return (f"OMP_WAIT_POLICY={policy or 'unset'}: oneDNN's and PyTorch's OpenMP threads "
            "spin after each call, and XLA's threads after theirs; timed one after the "
            "other on few cores they contend, which can slow the onednn and torch "
            "columns many-fold. `OMP_WAIT_POLICY=PASSIVE jconv run configs/bench.py` "
            "times them without it.")


def native_bfloat16() -> bool:
    """Whether oneDNN has bfloat16 kernels on this CPU (else it computes bfloat16 in float32)."""
    return "bfloat16" in jconv.backends()["onednn"].dtypes


def _bfloat16(versus) -> str:
    """float32 time over bfloat16 time of auto and onednn, for the cases timed in both."""
    mine = [r for r in versus if "auto" + BF16 in r["times_ms"]]
    if not mine:
        return ""
    onednn = jconv.backends()["onednn"]
    native = native_bfloat16()
    lines = ["", "## bfloat16 against float32 (the dense 3×3 convolutions)", "",
             "The same arrays cast to bfloat16 outside the timed call, timed side by side "
             "with float32. f32/bf16 > 1: bfloat16 is faster. oneDNN's dtypes here: "
             + (", ".join(onednn.dtypes) if onednn.available else f"unavailable ({onednn.reason})")
             + (". Native bfloat16 kernels: " + ("yes." if native else
                "no; these bfloat16 times are of oneDNN computing in float32 (and of XLA's "
                "own bfloat16 where auto picks another kernel), not of bfloat16 arithmetic.")),
             "", "| case | pass | auto f32 | auto bf16 | auto f32/bf16 | auto picks (bf16) "
             "| onednn f32 | onednn bf16 | onednn f32/bf16 |", "|" + "---|" * 9]
    for r in mine:
        t = r["times_ms"]
        lines.append(f"| {r['case']} | {r['pass']} | {t['auto']:.2f} | {t['auto' + BF16]:.2f} | "
                     f"{r['auto_f32_over_bf16']:.2f} | {r['auto_bf16_impl'] or '—'} | "
                     f"{_fmt(t.get('onednn'), '.2f')} | {_fmt(t.get('onednn' + BF16), '.2f')} | "
                     f"{_fmt(r['onednn_f32_over_bf16'], '.2f')} |")
    return "\n".join(lines) + "\n"


def _models(config, models) -> str:
    """Images/s of each model's training step with every op at ``lax`` and at ``auto``, and
    in PyTorch where it ran."""
    if not models:
        return ""
    torch = any(r["torch_over_auto"] is not None for r in models)
    lines = ["", "## Training step of whole models: `impl=\"auto\"` against `impl=\"lax\"`"
             + (" and PyTorch" if torch else ""), "",
             "`jconv.train`'s jitted step (forward, softmax cross-entropy, backward, SGD with "
             "momentum; optimizer state donated), fp32, training mode, one fixed random batch; median "
             f"of {config.model_repeats} after {config.warmup} warm-up, compile time (the "
             "first call) excluded and shown apart."
             + (" PyTorch: the same network (experiments/bench/torch_models.py, the parameter "
                "counts checked equal), eager, channels-last, SGD with momentum, in the same "
                "process, timed interleaved with the two." if torch else ""), "",
             "| model | lax images/s | auto images/s | "
             + ("PyTorch images/s | " if torch else "") + "auto/lax speed-up | "
             + ("PyTorch ÷ auto | " if torch else "") + "lax ms | auto ms | "
             + ("PyTorch ms | " if torch else "")
             + "spread of auto (min–max ms) | compile s (lax, auto) | finite |",
             "|" + "---|" * (12 if torch else 9)]
    for r in models:
        ips, t, c = r["images_per_s"], r["times_ms"], r["compile_s"]
        spread = r["spread_ms"].get("auto")
        cells = [r["layer"], f"{ips['lax']:.1f}", f"{ips['auto']:.1f}"]
        cells += [_fmt(ips.get("torch"), ".1f")] if torch else []
        cells += [f"{r['lax_over_auto']:.2f}"]
        cells += [_fmt(r["torch_over_auto"], ".2f")] if torch else []
        cells += [f"{t['lax']:.0f}", f"{t['auto']:.0f}"]
        cells += [_fmt(t.get("torch"), ".0f")] if torch else []
        cells += [f"{spread[0]:.0f}–{spread[1]:.0f}" if spread else "—",
                  f"{c['lax']:.0f}, {c['auto']:.0f}", "yes" if r["finite"] else "NO"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + _breakdown(models)


def _breakdown(models) -> str:
    """Milliseconds per category of each profiled step, and each category's share."""
    profiled = [(r, impl, ms) for r in models for impl, ms in r.get("breakdown_ms", {}).items()]
    if not profiled:
        return ""
    lines = ["", "### Where the training step's time goes", "",
             "One profiled run of the step (three steps): for jconv each XLA op's time "
             "(`jax.profiler`), sorted by the named scope it carries; for PyTorch (`torch`) each "
             "op's own CPU time (`torch.profiler`), sorted by its name and the ops it runs "
             "inside (experiments/bench/breakdown.py). Milliseconds per step, and the share of "
             "the ops' total.", "",
             "| model | impl | " + " | ".join(CATEGORIES) + " | total |",
             "|" + "---|" * (len(CATEGORIES) + 3)]
    for r, impl, ms in profiled:
        cells = [f"{ms[c]:.0f} ({100 * ms[c] / ms['total']:.0f}%)" if ms[c] >= 0.5 else "·"
                 for c in CATEGORIES]
        lines.append(f"| {r['layer']} | {impl} | " + " | ".join(cells) + f" | {ms['total']:.0f} |")
    return "\n".join(lines) + "\n"
