"""The benchmark's plot: GFLOP/s of every implementation, one bar per (case, impl)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot(table_rows, impl_names, peak, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(16, max(4, 0.22 * len(table_rows))),
                             constrained_layout=True, sharey=True)
    for ax, pass_ in zip(axes, ("fwd", "fwd_bwd")):
        mine = [r for r in table_rows if r["pass"] == pass_]
        ys = np.arange(len(mine))
        height = 0.8 / max(1, len(impl_names))
        for j, impl in enumerate(impl_names):
            rates = [r["flops"] / r["times_ms"][impl] / 1e6 if impl in r["times_ms"] else 0
                     for r in mine]
            ax.barh(ys + j * height, rates, height, label=impl)
        if peak:
            ax.axvline(peak["gflops"], color="k", ls="--", lw=1, label="matmul peak")
        ax.set_yticks(ys + 0.4 - height / 2, [r["case"] for r in mine], fontsize=7)
        ax.set(xscale="log", xlabel="GFLOP/s (dense FLOPs of jconv.cost)", title=pass_)
        ax.invert_yaxis()
        ax.grid(True, axis="x", which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("jconv: every op, every implementation (higher is faster)")
    fig.savefig(path, dpi=100)
    plt.close(fig)
