"""The scaling study's figures: one panel per model, labels sized to be read at 100%."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.common import log_axis
from experiments.scaling_study import fits
from experiments.scaling_study.laws import JOINT_FORMS

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


def colors(names) -> dict[str, str]:
    """One colour per variant, the same in every figure (sorted names, matplotlib's cycle)."""
    return {name: f"C{i}" for i, name in enumerate(sorted(set(names)))}


def _models(rows):
    return list(dict.fromkeys(r["model"] for r in rows))


def _variants(rows):
    return list(dict.fromkeys(r["variant"] for r in rows))


def _legend(ax) -> None:
    """The axes' legend, if anything on it has a label."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")


def _save(plt, fig, path: Path) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _law_curve(law: dict, c: np.ndarray):
    """The chosen 1-D form's curve and 10–90% band over ``c`` (None for the joint law)."""
    form = law["best"] if law["best"] in ("power", "frontier", "m4") else None
    if form is None:
        form = next((f for f in ("frontier", "power", "m4") if "fit" in law["forms"].get(f, {})), None)
    if form is None:
        return None
    s = law["forms"][form]
    boot = {"samples": np.asarray(s["samples"]), "names": tuple(s["fit"]["params"])}
    return form, fits.band(form, boot, s["fit"], c)


def frontier(rows: list[dict], results: dict, path: Path) -> None:
    """Error against training FLOPs (log-log): every run, the frontier ringed, the chosen law and its
    10–90% bootstrap band; the compute where the extrapolation check's fit stops, dotted."""
    plt = _pyplot()
    done = [r for r in rows if r["error"] is not None and r["train_flops"]]
    fig, axes = _panels(plt, _models(done), height=5.2)
    palette = colors(r["variant"] for r in done)
    for model, ax in axes.items():
        mine = [r for r in done if r["model"] == model]
        for variant in _variants(mine):
            v = [r for r in mine if r["variant"] == variant]
            law = results["laws"].get(f"{model}/{variant}")
            c = np.array([r["train_flops"] for r in v], float)
            ax.scatter(c, [r["error"] for r in v], color=palette[variant], s=14, alpha=0.45)
            label = variant
            if law:
                front = {tuple(k) for k in law["frontier"]}
                on = [r for r in v if (r["width"], r["horizon"]) in front]
                ax.scatter([r["train_flops"] for r in on], [r["error"] for r in on], facecolors="none",
                           edgecolors=palette[variant], s=46, lw=1.2)
                curve = _law_curve(law, np.geomspace(c.min(), c.max(), 60))
                if curve is not None:
                    form, b = curve
                    grid = np.geomspace(c.min(), c.max(), 60)
                    ax.plot(grid, b["fit"], color=palette[variant], lw=1.5)
                    ax.fill_between(grid, b["low"], b["high"], color=palette[variant], alpha=0.15, lw=0)
                    label += f" ({form})"
            ax.plot([], [], color=palette[variant], marker="o", label=label)
        if results.get("holdout_fraction"):
            ax.axvline(results["holdout_fraction"] * max(r["train_flops"] for r in mine), color="grey", lw=0.8,
                       ls=":", label="held-out split")
        log_axis(ax)
        log_axis(ax, "y", fraction=True)
        ax.set(xlabel="training FLOPs (XLA)", ylabel="test error (1 − accuracy)",
               title=f"{model}: error vs training compute")
        ax.grid(True, which="major", alpha=0.3)
        _legend(ax)
    _save(plt, fig, path)


def isoflop(rows: list[dict], results: dict, path: Path, variant: str = "standard") -> None:
    """IsoFLOP curves of ``variant``: error against parameters, one curve per compute budget, the
    budget's optimum marked."""
    plt = _pyplot()
    done = [r for r in rows if r["error"] is not None and r["train_flops"] and r["variant"] == variant]
    fig, axes = _panels(plt, _models(done) or ["none"])
    for model, ax in axes.items():
        iso = results["isoflop"].get(f"{model}/{variant}")
        mine = [r for r in done if r["model"] == model]
        for i, b in enumerate(iso["bins"] if iso else []):
            inside = sorted((r["params"], r["error"]) for r in mine if b["c_low"] <= r["train_flops"] < b["c_high"])
            if not inside:
                continue
            ax.plot(*zip(*inside), "o-", color=f"C{i}", label=f"{b['compute']:.2g} FLOPs")
            if not b["at_edge"]:
                ax.plot([b["n_opt"]], [b["e_opt"]], "*", color=f"C{i}", ms=12, mec="k")
        log_axis(ax)
        log_axis(ax, "y", fraction=True)
        slope = "" if not iso or iso["slope"] is None else f"; N_opt ∝ C^{iso['slope']:.2f}"
        ax.set(xlabel="parameters", ylabel="test error", title=f"{model} {variant}: IsoFLOP{slope}")
        ax.grid(True, which="major", alpha=0.3)
        _legend(ax)
    _save(plt, fig, path)


def residuals(rows: list[dict], results: dict, path: Path) -> None:
    """log(ê/e) of each variant's chosen law against compute: in sample (dots; the frontier runs,
    or every run for the joint law) and held out by the extrapolation check (crosses)."""
    plt = _pyplot()
    laws = [law for law in results["laws"].values() if law["best"]]
    fig, axes = _panels(plt, list(dict.fromkeys(law["model"] for law in laws)) or ["none"])
    palette = colors(law["variant"] for law in laws)
    for law in laws:
        s = law["forms"][law["best"]]
        ext = s["extrapolation"]
        ax = axes[law["model"]]
        front = {tuple(k) for k in law["frontier"]}
        mine = [r for r in rows if (r["model"], r["variant"]) == (law["model"], law["variant"])
                and r["error"] is not None and r["train_flops"]
                and (law["best"] in JOINT_FORMS or (r["width"], r["horizon"]) in front)]
        if mine:
            x = ((np.array([r["params"] for r in mine], float), np.array([r["samples"] for r in mine], float))
                 if law["best"] in JOINT_FORMS else np.array([r["train_flops"] for r in mine], float))
            r_in = np.log(fits.predict(s["fit"], x) / np.array([r["error"] for r in mine]))
            ax.scatter([r["train_flops"] for r in mine], r_in, color=palette[law["variant"]], s=14,
                       label=f"{law['variant']} ({law['best']}), in sample")
        held = ext.get("compute")
        if held is not None and len(held):
            r = np.log(np.asarray(ext["predicted"]) / np.asarray(ext["observed"]))
            ax.scatter(held, r, color=palette[law["variant"]], marker="x",
                       label=f"{law['variant']} ({law['best']}), held out")
    for model, ax in axes.items():
        ax.axhline(0, color="k", lw=0.8)
        for level in (-0.05, 0.05):
            ax.axhline(level, color="grey", lw=0.8, ls=":")
        log_axis(ax)
        ax.set(xlabel="training FLOPs (XLA)", ylabel="log(predicted / observed)",
               title=f"{model}: extrapolation residuals")
        ax.grid(True, which="major", alpha=0.3)
        _legend(ax)
    _save(plt, fig, path)


def controls(records: list[dict], results: dict, path: Path) -> None:
    """Test accuracy of each (variant, treatment) of the Type 2.1 comparison, one dot per seed
    (``records``: the comparison's runs, :func:`.analysis.runs` of part ``controls``)."""
    plt = _pyplot()
    rows = results["controls"]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(rows)), 4.8), constrained_layout=True)
    names = [f"{r['variant']}\n{r['treatment']}" for r in rows]
    for i, r in enumerate(rows):
        seeds = [1 - x["error"] for x in records
                 if (x["variant"], x["treatment"]) == (r["variant"], r["treatment"]) and x["error"] is not None]
        color = "C0" if r["variant"] == "standard" else "C3"
        if seeds:
            ax.bar(i, np.mean(seeds), color=color, alpha=0.5)
            ax.scatter([i] * len(seeds), seeds, color=color, zorder=3, s=16)
    if results.get("num_classes"):
        ax.axhline(1 / results["num_classes"], color="grey", lw=0.8, ls=":", label="chance")
        _legend(ax)
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right")
    ax.set(ylabel="test accuracy", title="Type 2.1 (shared filter) under other training")
    ax.grid(True, axis="y", alpha=0.3)
    _save(plt, fig, path)
