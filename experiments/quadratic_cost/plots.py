"""The experiment's figure: per sweep, FLOPs, time per image and GFLOP/s against k."""

from __future__ import annotations

from pathlib import Path

from experiments.quadratic_cost.model import LABELS, SWEEPS
from experiments.quadratic_cost.timing import PASSES

STYLE = {"fwd": ("-", "o"), "fwd_bwd": ("--", "s")}
TITLES = ("FLOPs per image (cost model)", "wall time per image (median, min–max)",
          "GFLOP/s achieved (XLA's count of the kernels' FLOPs)")
YLABELS = ("FLOPs (two layers)", "ms per image", "GFLOP/s")


def _flops(ax, ks, variant, curve, mine, color) -> None:
    flop_slope = next((r["flops"] for r in mine), None)
    ax.plot(ks, [int(f) for f in curve["flops"]], "-", color=color,
            label=f"{LABELS[variant]}: analytic" + (f", slope {flop_slope:.2f}" if flop_slope else ""))
    counted = next((r for r in mine if r["kernel"] == "fixed"), None)
    if counted:
        ax.plot(ks, counted["xla_counts"], "o", color=color, mfc="none", ms=4,
                label=f"XLA, {counted['kernels']}, slope {counted['xla_flops']:.2f}")


def _times(time_ax, rate_ax, ks, variant, row, color) -> None:
    """One timed curve: medians with min–max bars, GFLOP/s, auto's switches, missing widths."""
    line, marker = STYLE[row["pass"]]
    line = ":" if row["kernel"] == "auto" else line
    timed = [(ks[i], p) for i, p in enumerate(row["points"]) if "time_s" in p]
    for k in [ks[i] for i, p in enumerate(row["points"]) if "time_s" not in p]:
        time_ax.axvline(k, color=color, alpha=0.3, lw=0.8, ls=":")
    if not timed:
        return
    x = [k for k, _ in timed]
    median = [p["time_s"] * 1e3 for _, p in timed]
    spread = [[m - p["min_s"] * 1e3 for m, (_, p) in zip(median, timed)],
              [p["max_s"] * 1e3 - m for m, (_, p) in zip(median, timed)]]
    fit = row["fit"]
    time_ax.errorbar(x, median, yerr=spread, fmt=line + marker, color=color, ms=3, capsize=2,
                     lw=1, label=f"{LABELS[variant]} [{row['kernels']}] {PASSES[row['pass']]}: "
                                 + (fit.text() if fit else "no slope"))
    rate_ax.plot(x, [p["gflops"] for _, p in timed], line + marker, color=color, ms=3, lw=1,
                 label=f"{LABELS[variant]} {PASSES[row['pass']]}"
                       + (" (auto)" if row["kernel"] == "auto" else ""))
    for k, what in row["switches"]:
        if k in x:
            time_ax.plot(k, median[x.index(k)], "x", color="k", ms=9)
            time_ax.annotate(what, (k, median[x.index(k)]), fontsize=6)


def plot(config, rows: list[dict], analytic: dict, peak: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(19, 10), constrained_layout=True)
    colors = dict(zip(LABELS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    ks = list(config.widths)
    for row, sweep in enumerate(SWEEPS):
        flops_ax, time_ax, rate_ax = axes[row]
        for variant in config.variants:
            mine = [r for r in rows if (r["sweep"], r["variant"]) == (sweep, variant)]
            _flops(flops_ax, ks, variant, analytic[sweep, variant], mine, colors[variant])
            for r in mine:
                _times(time_ax, rate_ax, ks, variant, r, colors[variant])
        rate_ax.axhline(peak["matmul_gflops"], color="k", ls="--", lw=1,
                        label=f"matmul peak {peak['matmul_gflops']:.0f}")
        rate_ax.axhline(peak["conv_gflops"], color="k", ls=":", lw=1,
                        label=f"conv peak {peak['conv_gflops']:.0f} ({peak['conv_impl']})")
        for ax, title, ylabel in zip(axes[row], TITLES, YLABELS):
            ax.set(xscale="log", yscale="log", xlabel="k (filters)", ylabel=ylabel,
                   title=f"{SWEEPS[sweep]}: {title}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
    fig.suptitle("Widening two chained convolutions: cost and wall time against filters, log-log "
                 "(time slopes with 95% bootstrap intervals over the upper half of k; × marks "
                 "where auto switches kernels)")
    fig.savefig(path, dpi=100)
    plt.close(fig)
