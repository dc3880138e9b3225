"""The speed targets: which rows each covers and the bound its ratio must meet, checked
on every row of the run."""

from __future__ import annotations

import jax

from experiments.bench.cases import TRAIN_STEP

def _layers(c) -> bool:
    return c.suite == "layers"


def _nine(c) -> bool:
    return c.suite == "versus_torch"


TARGETS = (
    # (what, rows it covers, the ratio's key, the bound)
    ("auto never slower than lax", lambda c, p: True, "lax_over_auto", 1.0),
    ("auto within 5% of the fastest jconv kernel", lambda c, p: True, "auto_over_best", 1.05),
    ("depthwise forward ≥ 20× lax",
     lambda c, p: _layers(c) and c.op == "depthwise_conv" and p == "fwd", "lax_over_auto", 20.0),
    ("depthwise forward ≥ 1.5× PyTorch",
     lambda c, p: _layers(c) and c.op == "depthwise_conv" and p == "fwd", "torch_over_auto", 1.5),
    ("depthwise forward+backward ≥ 3× lax",
     lambda c, p: _layers(c) and c.op == "depthwise_conv" and p == "fwd_bwd", "lax_over_auto",
     3.0),
    ("grouped conv ≥ 4× lax",
     lambda c, p: _layers(c) and c.op == "conv" and c.kwargs.get("groups", 1) > 1,
     "lax_over_auto", 4.0),
    ("conv_transpose ≥ lax", lambda c, p: c.op == "conv_transpose", "lax_over_auto", 1.0),
    ("per-map conv ≥ the naive tiled depthwise", lambda c, p: c.op == "per_map_conv",
     "naive_over_auto", 1.0),
    ("shared-filter shortcut ≥ the 3-D kernel (lax)", lambda c, p: c.op == "shared_filter_conv",
     "lax_over_auto", 1.0),
    ("MobileNet block training step ≥ 3× lax-only",
     lambda c, p: c.name == TRAIN_STEP and p == "fwd_bwd", "lax_over_auto", 3.0),
    ("the nine: PyTorch ÷ auto ≥ 1.0 forward", lambda c, p: _nine(c) and p == "fwd",
     "torch_over_auto", 1.0),
    ("the nine: PyTorch ÷ auto ≥ 1.3 forward+backward", lambda c, p: _nine(c) and p == "fwd_bwd",
     "torch_over_auto", 1.3),
    ("dense 3×3: auto float32 ÷ bfloat16 ≥ 1.5", lambda c, p: _nine(c) and c.bfloat16,
     "auto_f32_over_bf16", 1.5),
    ("max pooling: PyTorch ÷ auto ≥ 1.0", lambda c, p: _layers(c) and c.op == "max_pool",
     "torch_over_auto", 1.0),
    ("model training step: auto ≥ 2× lax", lambda c, p: c.suite == "models",
     "lax_over_auto", 2.0),
    ("model training step: PyTorch ÷ auto ≥ 1.2", lambda c, p: c.suite == "models",
     "torch_over_auto", 1.2),
)
"""The issue's speed targets, checked on every row they cover; ratios ≥ the bound pass
(``auto_over_best`` passes at ≤ its bound)."""


def targets_section(cases, table_rows, backend: str | None = None) -> str:
    """One line per target: rows covered, worst ratio and rows met, from the medians and
    from the fastest samples, and which rows miss by the medians.

    Identical computations (``auto`` and the kernel it picks) differ by up to 20-50% in
    their medians on a shared 2-core machine; the fastest sample of each is the
    steadier estimate of what the code can do (``timeit``'s advice), so both are shown.
    """
    by_name = {c.name: c for c in cases}
    backend = backend or jax.default_backend()
    lines = ["", f"Targets (ratios of this run; median | fastest sample; {backend}: "
             + ("every target" if backend == "cpu" else
                "the CPU speed-up targets do not apply, only that auto is never slower "
                "than lax") + "):", "",
             "| target | rows | worst | met | worst (fastest) | met (fastest) "
             "| missed by (median) |", "|---|---|---|---|---|---|---|"]
    for what, covers, key, bound in TARGETS:
        if backend != "cpu" and what != TARGETS[0][0]:
            continue
        mine = [r for r in table_rows if covers(by_name[r["case"]], r["pass"])
                and r.get(key) is not None]
        if not mine:
            continue
        lower = key == "auto_over_best"
        cells, missed = [], {}
        for stat in (key, f"{key}_min"):
            values = [(f"{r['case']} {r['pass']}", r[stat]) for r in mine]
            missed[stat] = [(n, v) for n, v in values if (v > bound if lower else v < bound)]
            worst = (max if lower else min)(v for _, v in values)
            cells += [f"{worst:.2f}", f"{len(values) - len(missed[stat])}/{len(values)}"]
        missed = missed[key]
        if lower:
            within = sum(r[key] <= max(bound, 1 + (r["noise"] or 0)) for r in mine)
            what += (f" (within this bound or the row's noise floor, the gap between auto "
                     f"and the same kernel timed under its own name: {within}/{len(mine)})")
        lines.append(f"| {what} | {len(mine)} | " + " | ".join(cells) + " | "
                     + (", ".join(f"{n} ({v:.2f})" for n, v in missed) or "—") + " |")
    return "\n".join(lines) + "\n"
