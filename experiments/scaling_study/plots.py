"""The scaling study's figures: one panel per model, labels sized to be read at 100%."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.scaling_study import analysis

FONT = 11


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": FONT, "axes.titlesize": FONT + 1, "legend.fontsize": FONT - 2,
                         "xtick.labelsize": FONT - 1, "ytick.labelsize": FONT - 1})
    return plt


def _panels(plt, models, height=4.8):
    fig, axes = plt.subplots(1, len(models), figsize=(6.4 * len(models), height),
                             constrained_layout=True, squeeze=False)
    return fig, dict(zip(models, axes[0]))


def log_axis(ax, axis="x", fraction=False):
    """A log ``axis`` labelled at 1, 2 and 5 times each power of ten (at most eight labels, no
    minor labels): in short engineering notation (``2M``, ``500k``), or as plain numbers
    (``0.5``) for a ``fraction``."""
    from matplotlib import ticker

    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    subs = (1.0, 2.0, 3.0, 5.0, 7.0) if fraction else (1.0, 2.0, 5.0)
    target.set_major_locator(ticker.LogLocator(subs=subs, numticks=8))
    target.set_major_formatter(ticker.FormatStrFormatter("%.2g") if fraction
                               else ticker.EngFormatter(sep=""))
    target.set_minor_formatter(ticker.NullFormatter())


def colors(names) -> dict[str, str]:
    """One colour per variant, the same in every figure (sorted names, matplotlib's cycle)."""
    return {name: f"C{i}" for i, name in enumerate(sorted(set(names)))}


def _models(rows):
    return list(dict.fromkeys(r["model"] for r in rows))


def _variants(rows):
    return list(dict.fromkeys(r["variant"] for r in rows))


def _save(plt, fig, path: Path) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)


def accuracy(results: dict, path: Path) -> None:
    """Test accuracy (mean, error bar: min to max over seeds) against MACs per image; the
    Pareto frontier dashed."""
    plt = _pyplot()
    rows = [r for r in results["rows"] if "accuracy" in r]
    fig, axes = _panels(plt, _models(rows))
    for model, ax in axes.items():
        mine = [r for r in rows if r["model"] == model]
        color = colors(r["variant"] for r in results["rows"])
        for variant in _variants(mine):
            v = [r for r in mine if r["variant"] == variant]
            mean = np.array([r["accuracy"]["mean"] for r in v])
            err = np.array([[m - r["accuracy"]["min"], r["accuracy"]["max"] - m] for r, m in zip(v, mean)]).T
            ax.errorbar([r["macs"] for r in v], mean, yerr=err, marker="o", capsize=3, label=variant,
                        color=color[variant])
        front = sorted((r["macs"], r["accuracy"]["mean"]) for r in mine if r.get("frontier"))
        if front:
            ax.plot(*zip(*front), "k--", lw=1, alpha=0.6, label="Pareto frontier")
        if results.get("num_classes"):
            ax.axhline(1 / results["num_classes"], color="grey", lw=0.8, ls=":", label="chance")
        log_axis(ax)
        ax.set(xlabel="MACs per image", ylabel="test accuracy", title=f"{model}: accuracy vs MACs")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best")
    _save(plt, fig, path)


def laws(records: list[dict], results: dict, path: Path) -> None:
    """Error of every run against its training FLOPs (log-log) and each variant's fitted law."""
    plt = _pyplot()
    runs = [r for r in records if r["key"]["part"] == "scaling" and r.get("test_accuracy") is not None]
    fig, axes = _panels(plt, list(dict.fromkeys(r["key"]["model"] for r in runs)))
    for model, ax in axes.items():
        mine = [r for r in runs if r["key"]["model"] == model]
        palette = colors(r["key"]["variant"] for r in runs)
        for variant in dict.fromkeys(r["key"]["variant"] for r in mine):
            v = [r for r in mine if r["key"]["variant"] == variant]
            color = palette[variant]
            c = np.array([r["train_flops"] for r in v], float)
            ax.scatter(c, [analysis.error(r) for r in v], color=color, s=18)
            law = results["laws"].get(f"{model}/{variant}")
            label = variant
            if law:
                form = law["forms"][law["best"]]
                grid = np.geomspace(c.min(), c.max(), 50) / law["c0"]
                e = {"flat": lambda x: np.full_like(x, form["e_inf"]),
                     "power": lambda x: form["a"] * x ** -form["b"],
                     "power+floor": lambda x: form["a"] * x ** -form["b"] + form["e_inf"]}[law["best"]](grid)
                label += (f": b={form['b']:.2f}±{form['b_se']:.2f}" if "b" in form else ": flat")
                ax.plot(grid * law["c0"], e, color=color, lw=1.5)
            ax.plot([], [], color=color, marker="o", label=label)
        log_axis(ax)
        log_axis(ax, "y", fraction=True)
        ax.set(xlabel="training FLOPs", ylabel="test error (1 − accuracy)",
               title=f"{model}: error vs training compute")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best")
    _save(plt, fig, path)


def throughput(results: dict, path: Path) -> None:
    """Images/s against MACs per image (log-log), with lines of equal achieved GFLOP/s."""
    plt = _pyplot()
    rows = [r for r in results["rows"] if r.get("images_per_s")]
    fig, axes = _panels(plt, _models(rows))
    for model, ax in axes.items():
        mine = [r for r in rows if r["model"] == model]
        macs = np.array([r["macs"] for r in mine], float)
        palette = colors(r["variant"] for r in rows)
        for variant in _variants(mine):
            v = [r for r in mine if r["variant"] == variant]
            ax.plot([r["macs"] for r in v], [r["images_per_s"] for r in v], "o-", label=variant,
                    color=palette[variant])
        low, high = min(r["images_per_s"] for r in mine) / 2, max(r["images_per_s"] for r in mine) * 2
        grid = np.geomspace(macs.min() / 1.5, macs.max() * 1.5, 200)
        for gflops in (0.1, 1, 10, 100, 1000):
            ips = gflops * 1e9 / (6 * grid)
            seen = (ips > low) & (ips < high)
            if seen.any():  # a line of equal achieved GFLOP/s, labelled where it enters the plot
                ax.plot(grid[seen], ips[seen], color="grey", lw=0.7, ls=":")
                first = np.argmax(seen)
                ax.annotate(f"{gflops:g} GFLOP/s", (grid[first], ips[first]), fontsize=FONT - 3,
                            color="grey", ha="left", va="top")
        log_axis(ax)
        log_axis(ax, "y")
        ax.set_ylim(low, high)
        ax.set(xlabel="MACs per image (cost model)", ylabel="training images/s",
               title=f"{model}: throughput vs arithmetic")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best")
    _save(plt, fig, path)


def controls(records: list[dict], results: dict, path: Path) -> None:
    """Test accuracy of each (variant, treatment) of the Type 2.1 comparison, one dot per seed."""
    plt = _pyplot()
    rows = results["controls"]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(rows)), 4.8), constrained_layout=True)
    names = [f"{r['variant']}\n{r['treatment']}" for r in rows]
    for i, r in enumerate(rows):
        seeds = [x["test_accuracy"] for x in records if x["key"]["part"] == "controls"
                 and (x["key"]["variant"], x["key"]["treatment"]) == (r["variant"], r["treatment"])
                 and x.get("test_accuracy") is not None]
        color = "C0" if r["variant"] == "standard" else "C3"
        if seeds:
            ax.bar(i, np.mean(seeds), color=color, alpha=0.5)
            ax.scatter([i] * len(seeds), seeds, color=color, zorder=3, s=16)
    if results.get("num_classes"):
        ax.axhline(1 / results["num_classes"], color="grey", lw=0.8, ls=":", label="chance")
        ax.legend(loc="best")
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right")
    ax.set(ylabel="test accuracy", title="Type 2.1 (shared filter) under other training")
    ax.grid(True, axis="y", alpha=0.3)
    _save(plt, fig, path)
