"""The sections of the evidence report (``experiments/report.py``), and what they share.

Each section is a function ``section(ctx) -> str`` returning its Markdown; it records every
key figure it prints in ``ctx.figures`` (written to ``report/figures.json``), saves its
PNGs into ``ctx.dir`` with :meth:`Context.save`, and keeps anything measured in time in
``ctx.store`` so a rerun reuses it.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jconv.runner import Store


@dataclasses.dataclass
class Context:
    config: Any
    workdir: Path
    dir: Path  # the report folder
    store: Store
    figures: dict = dataclasses.field(default_factory=dict)

    def key(self, *names) -> jax.Array:
        """A PRNG key derived from the seed and ``names`` (same names, same numbers)."""
        key = jax.random.key(self.config.seed)
        for name in names:
            key = jax.random.fold_in(key, sum(map(ord, str(name))))
        return key

    def save(self, fig, name: str) -> str:
        """Saves a matplotlib figure as ``name`` in the report folder; returns the name."""
        import matplotlib.pyplot as plt

        fig.savefig(self.dir / name, dpi=100)
        plt.close(fig)
        return name

    def seconds(self, key: dict, fn, *args) -> float:
        """Median wall time of the jitted ``fn(*args)`` (after a warm-up), kept in the store."""
        if not self.store.has(key):
            jax.block_until_ready(fn(*args))
            times = []
            for _ in range(self.config.repeats):
                start = time.perf_counter()
                jax.block_until_ready(fn(*args))
                times.append(time.perf_counter() - start)
            self.store.add(key, {"seconds": statistics.median(times)})
        return next(r for r in self.store.records() if r["key"] == key)["seconds"]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def num(value, spec: str = ",") -> str:
    """``value`` formatted for a table: ints with separators, floats with ``spec``."""
    if value is None:
        return "—"
    if isinstance(value, (int, np.integer)) and spec == ",":
        return f"{int(value):,}"
    return format(float(value), spec if spec != "," else ".4g")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def humanize(value: float) -> str:
    """1.2K, 34M, 1.58G: the way the papers print counts."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"
