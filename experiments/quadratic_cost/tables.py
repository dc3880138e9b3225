"""The experiment's records read into slope rows with verdicts, its tables and CSV files.

``slopes.md`` (the header and the slope table, the words of the main job's table) and
``slopes.json`` (every slope with its interval and verdict) are what the evidence report's
section reads, so both use the same measurements and the same words.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

from experiments.quadratic_cost import verdicts
from experiments.quadratic_cost.model import LABELS, SWEEPS, kernel_name
from experiments.quadratic_cost.timing import PASS_FLOPS, PASSES
from jconv.cost import loglog_slope


def _find(records, key):
    return next((r for r in records if r["key"] == key), None)


def _switches(points: list[dict]) -> list[tuple[int, str]]:
    """``(k2, "layer2 lax → onednn")`` where a curve's kernels change from one width to the next."""
    changes = []
    for before, after in zip(points, points[1:]):
        steps = [s for s in after["impls"] if before["impls"].get(s) != after["impls"][s]]
        if steps:
            changes.append((after["k2"], ", ".join(f"{s} {before['impls'].get(s)} → "
                                                   f"{after['impls'][s]}" for s in steps)))
    return changes


def _point(p: dict, factor: int, flops: float) -> dict:
    """One timed point: per-image median, min and max, GFLOP/s of the kernel's FLOPs."""
    out = {k: p.get(k) for k in ("k1", "k2", "batch", "note", "missing", "compile_s")}
    if "times_s" in p:
        per_image = np.asarray(p["times_s"]) / p["batch"]
        median = float(np.median(per_image))
        out.update(time_s=median, min_s=float(per_image.min()), max_s=float(per_image.max()),
                   samples=per_image.tolist(), gflops=factor * flops / median / 1e9,
                   noisy=verdicts.noisy(per_image))
    return out


def slope_rows(config, records: list[dict], analytic: dict) -> list[dict]:
    """One row per timed curve and pass: its points, slopes, fit and verdict."""
    peak = _find(records, {"measure": "peak"})
    ks_all = list(config.widths)
    rows = []
    for sweep in SWEEPS:
        for variant in config.variants:
            curve = analytic[sweep, variant]
            for kernel in ("fixed", "auto"):
                count = _find(records, {"sweep": sweep, "variant": variant, "kernel": kernel,
                                        "measure": "count"})
                if count is None:
                    continue
                xla = [c if c else int(f) for c, f in zip(count["xla_flops"], curve["flops"])]
                for pass_ in PASSES:
                    record = _find(records, {"sweep": sweep, "variant": variant,
                                             "kernel": kernel, "measure": pass_})
                    if record is None:
                        continue
                    rows.append(_row(sweep, variant, kernel, pass_, record, curve, xla,
                                     ks_all, peak, config))
    return rows


def _row(sweep, variant, kernel, pass_, record, curve, xla, ks_all, peak, config) -> dict:
    factor = PASS_FLOPS[pass_]
    balance, peak_gbs = peak["conv_gflops"] / peak["bandwidth_gbs"], peak["bandwidth_gbs"]
    points = [_point(p, factor, xla[i]) for i, p in enumerate(record["points"])]
    timed = [i for i, p in enumerate(points) if "time_s" in p]
    fit = verdicts.fit_slope([ks_all[i] for i in timed], [points[i]["samples"] for i in timed],
                             n_resamples=config.n_resamples, seed=config.seed)
    fitted = ([ks_all.index(k) for k in fit.ks] if fit
              else list(np.flatnonzero(verdicts.fit_range(ks_all))))
    ks = [ks_all[i] for i in fitted]

    def slope(values):
        return loglog_slope(ks, [values[i] for i in fitted], upper_half=False) if len(ks) >= 2 else None

    flop_slope, xla_slope = slope([int(f) for f in curve["flops"]]), slope(xla)
    bytes_slope = slope([int(b) for b in curve["bytes"]])
    switches = _switches(record["points"]) if kernel == "auto" else []
    inside = [f"k={k}: {what}" for k, what in switches if ks and ks[0] < k <= ks[-1]]
    impls = record["points"][-1]["impls"]
    name = "auto" if kernel == "auto" else kernel_name(impls)
    verdict = verdicts.verdict(
        fit, flop_slope, kernel_flop_slope=xla_slope, kernel=f"layer2[{impls['layer2']}]",
        bytes_slope=bytes_slope, bytes_per_image=[factor * int(curve["bytes"][i]) for i in fitted],
        intensity=[xla[i] / int(curve["bytes"][i]) for i in fitted], balance=balance,
        gflops=[points[i]["gflops"] for i in fitted] if fit else None,
        gbs=[factor * int(curve["bytes"][i]) / points[i]["time_s"] / 1e9 for i in fitted]
        if fit else None, bandwidth=peak_gbs, switches=tuple(inside))
    return {"sweep": sweep, "variant": variant, "kernel": kernel, "kernels": name, "pass": pass_,
            "points": points, "fit": fit, "flops": flop_slope, "xla_flops": xla_slope,
            "bytes": bytes_slope, "xla_counts": xla, "verdict": verdict, "switches": switches,
            "work_flops": record["work_flops"]}


def _f(value, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def header(config, peak: dict, work: float) -> str:
    return (f"Machine, measured in this run: matmul {peak['matmul_gflops']:.0f} GFLOP/s "
            f"(float32 {config.peak_size}²), conv {peak['conv_gflops']:.0f} GFLOP/s "
            f"({peak['conv_shape']}, {peak['conv_impl']}), memory {peak['bandwidth_gbs']:.1f} "
            f"GB/s (balance {peak['conv_gflops'] / peak['bandwidth_gbs']:.1f} FLOP/B). "
            f"Each call does about {work / 1e9:.2g} GFLOP of the kernels' own FLOPs (the peak × "
            f"{config.min_call_s * 1e3:g} ms; forward+backward counted as 3 forwards), the batch "
            f"chosen per point; time per {config.height}×{config.width} image, median of "
            f"{config.repeats} interleaved repeats. Slopes of log time against log k over the "
            f"upper half of the widths, with 95% bootstrap intervals ({config.n_resamples} "
            f"resamples of the repeats) and R²; a verdict per row: \"time follows FLOPs\" where "
            f"the FLOP slope lies in the interval ±{verdicts.TOLERANCE}, else the measured reason.")


def slope_table(rows: list[dict]) -> str:
    lines = ["| sweep | layer 2 | kernels | pass | FLOP slope (analytic / XLA) | bytes slope | "
             "time slope [95%] | R² | GFLOP/s | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fit = r["fit"]
        rates = [p["gflops"] for p in r["points"] if fit and p["k2"] in fit.ks and "gflops" in p]
        lines.append(f"| {SWEEPS[r['sweep']]} | {LABELS[r['variant']]} | {r['kernels']} | "
                     f"{PASSES[r['pass']]} | {_f(r['flops'])} / {_f(r['xla_flops'])} | "
                     f"{_f(r['bytes'])} | {fit.text() if fit else '—'} | "
                     f"{_f(fit.r2 if fit else None, '.3f')} | "
                     f"{_f(min(rates) if rates else None, '.0f')}–{_f(max(rates) if rates else None, '.0f')} | "
                     f"{r['verdict'].text} |")
    return "\n".join(lines)


def missing_lines(rows: list[dict]) -> list[str]:
    """Every point not timed or capped, with its reason; the noisy points of each row."""
    lines = []
    for r in rows:
        name = f"{r['sweep']} {r['variant']} [{r['kernels']}] {r['pass']}"
        for p in r["points"]:
            if p.get("missing") or p.get("note"):
                tag = "not timed" if p.get("missing") else "capped"
                lines.append(f"- {name} k1={p['k1']} k2={p['k2']}: {tag}: "
                             f"{p.get('missing') or p.get('note')}")
        noisy = [str(p["k2"]) for p in r["points"] if p.get("noisy")]
        if noisy:
            lines.append(f"- {name}: noisy at k2 = {', '.join(noisy)} (repeats spread over "
                         f"{verdicts.NOISY_POINT:.0%} of their median)")
    return lines


def points_table(config, rows: list[dict], analytic: dict) -> str:
    lines = ["| sweep | layer 2 | kernels | k1 | k2 | maps | params | FLOPs / image | MB / image | "
             "fwd batch | fwd ms / image | fwd GFLOP/s | fwd+bwd batch | fwd+bwd ms / image | "
             "fwd+bwd GFLOP/s |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by_curve = {}
    for r in rows:
        by_curve.setdefault((r["sweep"], r["variant"], r["kernels"]), {})[r["pass"]] = r
    for (sweep, variant, kernels), passes in by_curve.items():
        curve = analytic[sweep, variant]
        for i, k in enumerate(config.widths):
            cells = []
            for pass_ in PASSES:
                p = passes[pass_]["points"][i] if pass_ in passes else {}
                cells += ([str(p["batch"]), f"{1e3 * p['time_s']:.4g}", f"{p['gflops']:.1f}"]
                          if "time_s" in p else [str(p.get("batch", "—")), "— (see below)", "—"])
            pts = next(iter(passes.values()))["points"][i]
            lines.append(f"| {sweep} | {LABELS[variant]} | {kernels} | {pts['k1']} | {pts['k2']} | "
                         f"{int(curve['maps'][i]):,} | {int(curve['params'][i]):,} | "
                         f"{int(curve['flops'][i]):,} | {int(curve['bytes'][i]) / 1e6:.3g} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


SLOPE_FIELDS = ["sweep", "variant", "kernel", "kernels", "pass", "flops", "xla_flops", "bytes",
                "time", "lo", "hi", "r2", "fit_ks", "verdict", "reason"]


def _write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def summarize(config, records: list[dict], analytic: dict, workdir: Path) -> dict:
    """Writes ``table.md``, ``summary.csv``, ``slopes.csv`` and the plot; prints the slope
    table, the targets and the points not timed; returns the rows and the markdown."""
    from experiments.quadratic_cost.plots import plot

    workdir = Path(workdir)
    peak = _find(records, {"measure": "peak"})
    rows = slope_rows(config, records, analytic)
    work = rows[0]["work_flops"] if rows else 0.0
    title = (f"# Widening two chained conv layers: wall time against FLOPs ({config.height}×"
             f"{config.width} grey images; layer 1 {config.kernel1}×{config.kernel1}, layer 2 "
             f"{config.kernel2}×{config.kernel2}, SAME)")
    missing = missing_lines(rows) or ["- none: every point timed, none noisy"]
    targets = verdicts.target_lines(rows)
    text = "\n\n".join([title, header(config, peak, work), slope_table(rows),
                        "Targets:\n\n" + "\n".join(targets),
                        "Points not timed, capped or noisy:\n\n" + "\n".join(missing)])
    full = text + "\n\nEvery point:\n\n" + points_table(config, rows, analytic) + "\n"
    (workdir / "table.md").write_text(full)
    _write_csv(workdir / "summary.csv", [
        {"sweep": r["sweep"], "variant": r["variant"], "kernels": r["kernels"], "pass": r["pass"],
         **{k: p.get(k) for k in ("k1", "k2", "batch", "time_s", "min_s", "max_s", "gflops",
                                  "noisy", "missing", "note")}}
        for r in rows for p in r["points"]],
        ["sweep", "variant", "kernels", "pass", "k1", "k2", "batch", "time_s", "min_s", "max_s",
         "gflops", "noisy", "missing", "note"])
    slopes = [{**{k: r[k] for k in ("sweep", "variant", "kernel", "kernels", "pass", "flops",
                                    "xla_flops", "bytes")},
               **(dict(time=r["fit"].slope, lo=r["fit"].lo, hi=r["fit"].hi, r2=r["fit"].r2,
                       fit_ks=" ".join(map(str, r["fit"].ks))) if r["fit"] else {}),
               "verdict": r["verdict"].code, "reason": r["verdict"].text} for r in rows]
    _write_csv(workdir / "slopes.csv", slopes, SLOPE_FIELDS)
    (workdir / "slopes.md").write_text(header(config, peak, work) + "\n\n" + slope_table(rows) + "\n")
    (workdir / "slopes.json").write_text(json.dumps({
        "peak": {k: v for k, v in peak.items() if k != "key"}, "targets": targets,
        "rows": [{**{k: s[k] for k in ("sweep", "variant", "kernel", "kernels", "pass", "flops",
                                       "xla_flops", "bytes", "verdict", "reason")},
                  "sweep_label": SWEEPS[s["sweep"]], "label": LABELS[s["variant"]],
                  "fit": None if r["fit"] is None else dataclasses.asdict(r["fit"])}
                 for r, s in zip(rows, slopes)]}, indent=1) + "\n")
    plot(config, rows, analytic, peak, workdir / "quadratic_cost.png")
    print(text)
    print(f"table: {workdir / 'table.md'}\nsummary: {workdir / 'summary.csv'}\n"
          f"slopes: {workdir / 'slopes.csv'}, {workdir / 'slopes.json'}\n"
          f"plot: {workdir / 'quadratic_cost.png'}")
    return {"records": records, "rows": rows, "slopes": slopes, "peak": peak, "table": text,
            "targets": targets}
