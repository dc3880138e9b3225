"""AlexNet's grouped Type 2.2 layers and GoogLeNet's Table 1, computed and compared."""

from __future__ import annotations

import math

import numpy as np

from jconv import cost
from jconv.models import googlenet
from jconv.summary import summarize
from experiments.report_sections import Context, humanize, num, pyplot, table

# Quoted data, not computed: Szegedy et al. 2014, "Going deeper with convolutions", Table 1,
# the printed (params, ops) of each row. Compared against jconv's figures below.
PAPER_TABLE1 = {
    "conv1": (2.7e3, 34e6), "conv2": (112e3, 360e6), "3a": (159e3, 128e6),
    "3b": (380e3, 304e6), "4a": (364e3, 73e6), "4b": (437e3, 88e6), "4c": (463e3, 100e6),
    "4d": (580e3, 119e6), "4e": (840e3, 170e6), "5a": (1072e3, 54e6), "5b": (1388e3, 71e6),
    "fc": (1000e3, 1e6)}
# Quoted: Krizhevsky et al. 2012, abstract ("60 million parameters").
PAPER_ALEXNET_PARAMS = 60e6

TORCH_LRN = "https://pytorch.org/docs/stable/generated/torch.nn.LocalResponseNorm.html"
COLUMNS = ("#1×1", "#3×3 reduce", "#3×3", "#5×5 reduce", "#5×5", "pool proj")


def _weights(row) -> int:
    """Weights of a layer without its biases: the product of each kernel shape."""
    return sum(math.prod(int(d) for d in k.split("x")) for k in row["kernel"].split(", ")
               if k)


def _group(name: str) -> str | None:
    if name.startswith("inception_"):
        return name.split("/")[0].removeprefix("inception_")
    if name.startswith("lrn"):
        return None  # not a row of the paper's table
    return {"conv2_reduce": "conv2"}.get(name, name)


def _spec(name: str) -> dict:
    return next((kw for n, _, kw in googlenet.LAYERS if n == name), {})


def _patch(name: str, rows) -> str:
    kw = _spec(name)
    if name == "pool5":  # the global average pool's window is the whole 7×7 grid
        before = rows[[r["name"] for r in rows].index(name) - 1]["output_shape"]
        return f"{before[1]}×{before[2]}/1"
    size = kw.get("kernel", kw.get("window"))
    return f"{size}×{size}/{kw.get('stride', 1)}" if size else ""


TYPES = {"conv": "convolution", "max_pool": "max pool", "global_avg_pool": "avg pool",
         "dropout": "dropout (40%)", "linear": "linear", "concat": "inception"}


def googlenet_rows(threshold: float) -> list[dict]:
    """One row per row of the paper's Table 1: jconv's figures, the printed ones, the check."""
    rows, _ = summarize("googlenet")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if (g := _group(r["name"])) is not None:
            groups.setdefault(g, []).append(r)
    out = []
    for g, members in groups.items():
        last, head = members[-1], members[0]
        convs = [m for m in members if m["op"] in ("conv", "pointwise_conv")]
        row = {"group": g, "type": TYPES.get(last["op"], last["op"]),
               "patch": _patch(convs[-1]["name"] if convs else head["name"], rows),
               "output": "×".join(map(str, last["output_shape"][1:])),
               "depth": 2 if g in googlenet.INCEPTION else len(convs) or int(
                   last["op"] == "linear"),
               "columns": dict(zip(COLUMNS, googlenet.INCEPTION.get(g, ()))),
               "params": sum(_weights(m) for m in members),
               "params_with_bias": sum(m["params"] for m in members),
               "macs": sum(m["macs"] for m in members)}
        if g == "conv2":
            row["columns"] = {"#3×3 reduce": members[0]["output_shape"][-1],
                              "#3×3": members[1]["output_shape"][-1]}
        if g in PAPER_TABLE1:
            p_params, p_ops = PAPER_TABLE1[g]
            row["paper_params"], row["paper_ops"] = p_params, p_ops
            row["rel_params"] = (p_params - row["params"]) / row["params"]
            row["rel_ops"] = (p_ops - row["macs"]) / row["macs"]
            row["flags"] = [w for w in ("params", "ops") if abs(row[f"rel_{w}"]) > threshold]
        out.append(row)
    return out


def _statement(row) -> list[str]:
    label = f"{row['type']} {row['patch']}".strip() if row["type"] != "inception" else (
        f"inception ({row['group']})")
    lines = []
    for what in row["flags"]:
        printed = row["paper_params"] if what == "params" else row["paper_ops"]
        computed = row["params"] if what == "params" else row["macs"]
        rel = row[f"rel_{what}"]
        unit = "weights" if what == "params" else "multiply-adds"
        lines.append(f"- **{label}**: printed {what} {humanize(printed)}, but the stated layer "
                     f"has {computed:,} {unit}; the printed figure is {abs(rel):.0%} "
                     f"{'below' if rel < 0 else 'above'} it (× {printed / computed:.2f}).")
    return lines


def _inception_savings(ctx: Context, rows: list[dict]) -> str:
    summary, _ = summarize("googlenet")
    result, lines = {}, []
    for name, (n1, r3, n3, r5, n5, pp) in googlenet.INCEPTION.items():
        first = next(r for r in summary if r["name"] == f"inception_{name}/branch_1x1")
        c = int(first["kernel"].split("x")[0])
        h, w = first["output_shape"][1:3]
        x = (1, h, w, c)

        def pw(k, cin=c):
            return cost.pointwise_conv((1, h, w, cin), (cin, k), bias=False)

        reduced = [pw(n1), pw(r3), cost.conv((1, h, w, r3), (3, 3, r3, n3), bias=False),
                   pw(r5), cost.conv((1, h, w, r5), (5, 5, r5, n5), bias=False), pw(pp)]
        naive = [pw(n1), cost.conv(x, (3, 3, c, n3), bias=False),
                 cost.conv(x, (5, 5, c, n5), bias=False)]
        red = {"params": sum(q.params for q in reduced), "macs": sum(q.macs for q in reduced),
               "maps_out": n1 + n3 + n5 + pp}
        nai = {"params": sum(q.params for q in naive), "macs": sum(q.macs for q in naive),
               "maps_out": n1 + n3 + n5 + c}
        result[name] = {"maps_in": c, "reduced": red, "naive": nai,
                        "saving_params": nai["params"] / red["params"],
                        "saving_macs": nai["macs"] / red["macs"]}
        lines.append([name, f"{h}×{w}×{c}", num(nai["params"]), num(nai["macs"]),
                      nai["maps_out"], num(red["params"]), num(red["macs"]), red["maps_out"],
                      f"{result[name]['saving_params']:.2f}×",
                      f"{result[name]['saving_macs']:.2f}×"])
    ctx.figures["inception_savings"] = result
    return table(["module", "input", "naive params", "naive MACs", "naive maps out",
                  "with 1×1 reductions: params", "MACs", "maps out", "params saved",
                  "MACs saved"], lines)


def _googlenet_plot(ctx: Context, rows: list[dict]) -> str:
    plt = pyplot()
    compared = [r for r in rows if "paper_params" in r]
    labels = [r["group"] for r in compared]
    xs = np.arange(len(compared))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    for ax, (ours, paper, title) in zip(axes, (("params", "paper_params", "parameters (weights)"),
                                               ("macs", "paper_ops", "ops (multiply-adds)"))):
        ax.bar(xs - 0.2, [r[ours] for r in compared], 0.4, label="jconv, computed")
        ax.bar(xs + 0.2, [r[paper] for r in compared], 0.4, label="paper's Table 1, printed")
        for x, r in zip(xs, compared):
            if (ours == "params" and "params" in r["flags"]) or (
                    ours == "macs" and "ops" in r["flags"]):
                ax.annotate("≠", (x, max(r[ours], r[paper])), ha="center", va="bottom",
                            color="red", fontsize=14)
        ax.set(yscale="log", xticks=xs, title=f"GoogLeNet {title} per Table 1 row")
        ax.set_xticklabels(labels, rotation=45)
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    return ctx.save(fig, "googlenet_table1.png")


def googlenet_section(ctx: Context) -> str:
    """GoogLeNet's table against the paper's printed one, and what its 1×1 reductions save.
    Long by design: one section's computations and text in reading order."""
    threshold = ctx.config.mismatch_threshold
    rows = googlenet_rows(threshold)
    _, total = summarize("googlenet")
    _, alex_total = summarize("alexnet")
    header = ["type", "patch size/stride", "output size", "depth", *COLUMNS,
              "params (jconv)", "params (paper)", "ops (jconv)", "ops (paper)",
              "paper ÷ jconv: params, ops", "over threshold"]
    lines = []
    for r in rows:
        lines.append([r["type"] + (f" ({r['group']})" if r["type"] == "inception" else ""),
                      r["patch"], r["output"], r["depth"] or "",
                      *[r["columns"].get(c, "") for c in COLUMNS],
                      humanize(r["params"]) if r["params"] else "",
                      humanize(r["paper_params"]) if "paper_params" in r else "",
                      humanize(r["macs"]) if r["macs"] else "",
                      humanize(r["paper_ops"]) if "paper_ops" in r else "",
                      f"{1 + r['rel_params']:.2f}, {1 + r['rel_ops']:.2f}" if "flags" in r else "",
                      ", ".join(r.get("flags", ()))])
    statements = sum((_statement(r) for r in rows if r.get("flags")), [])
    for r in rows:
        if r.get("flags") == ["params", "ops"]:
            h, w = (int(d) for d in r["output"].split("×")[:2])
            per = r["paper_ops"] / r["paper_params"]
            statements.append(
                f"- The two printed figures of that row agree with each other: printed ops ÷ "
                f"printed params = {per:,.0f}, close to its {h}×{w} = {h * w:,} output "
                f"positions. It is the per-position weight count, {humanize(r['paper_params'])}"
                f" instead of {r['params']:,}, that does not follow from the stated kernels.")
    unflagged = [(abs(r[f"rel_{w}"]), r, w) for r in rows if "flags" in r
                 for w in ("params", "ops") if w not in r["flags"]]
    if unflagged:
        gap, near, what = max(unflagged, key=lambda t: t[0])
        statements.append(f"- Every other printed figure is within {gap:.1%} of the computed "
                          f"one; the largest of these gaps is {near['group']}'s {what} "
                          f"(× {1 + near[f'rel_{what}']:.2f}).")
    ctx.figures["googlenet"] = {
        "rows": {r["group"]: {k: r[k] for k in ("params", "params_with_bias", "macs",
                                                 "paper_params", "paper_ops", "rel_params",
                                                 "rel_ops", "flags") if k in r} for r in rows},
        "total": total, "alexnet_over_googlenet_params": alex_total["params"] / total["params"]}
    plot = _googlenet_plot(ctx, rows)
    return f"""## 3. GoogLeNet: the paper's Table 1, recomputed

Built from the paper's stated architecture (`jconv.models.build("googlenet")`, 224×224×3,
5×5 branches as printed) and counted by `jconv.summary`. "params" are weights without
biases, "ops" multiply-adds at batch 1; the "paper" columns are the figures **printed** in
Szegedy et al. (2014), Table 1, quoted as data. A row is marked where the printed figure
differs from the computed one by more than {threshold:.0%}.

{table(header, lines)}

Total (jconv, with biases): {total['params']:,} parameters and {total['macs']:,}
multiply-adds ({humanize(2 * total['macs'])} FLOPs); AlexNet's {alex_total['params']:,}
parameters are {alex_total['params'] / total['params']:.1f}× as many (the paper says
"12 times fewer parameters").

**Where the printed figure cannot follow from the stated architecture** (more than
{threshold:.0%} off):

{chr(10).join(statements) if statements else "- none"}

![GoogLeNet Table 1: computed versus printed]({plot})

**What the 1×1 reductions save.** Each inception module as published, and "naive"
(Figure 2a of the paper: the 1×1, 3×3 and 5×5 convolutions and the pool all on the module's
input, no reductions, no pool projection), weights and multiply-adds from `jconv.cost`:

{_inception_savings(ctx, rows)}

The naive module also passes all its input maps on through the pool branch, so its output
grows module after module; the 1×1 reductions cap both the cost and the depth.
"""


def alexnet_section(ctx: Context) -> str:
    rows, total = summarize("alexnet")
    lines, layers = [], {}
    for r in rows:
        if r["op"] not in ("conv", "linear"):
            continue
        dims = r["kernel"].split("x")
        kernels = (f"{dims[-1]} of {'×'.join(dims[:-1])}" if r["op"] == "conv"
                   else f"{dims[0]}→{dims[1]}")
        lines.append([r["name"], kernels, r["groups"],
                      "×".join(map(str, r["output_shape"][1:])), num(r["params"]),
                      num(r["macs"])])
        layers[r["name"]] = {k: r[k] for k in ("kernel", "groups", "params", "macs")}
    lines.append(["**total** (all layers)", "", "", "", f"**{total['params']:,}**",
                  f"**{total['macs']:,}**"])
    grouped = [n for n, v in layers.items() if v["groups"] == 2]
    ctx.figures["alexnet"] = {"layers": layers, "total": total, "grouped": grouped}
    return f"""## 2. AlexNet: Type 2.2 with two groups

The 2012 network as published (`jconv.models.build("alexnet")`, 227×227×3), counted by
`jconv.summary` at batch 1 (MACs = multiply-adds). The two GPUs are two groups: a layer
whose towers do not exchange maps sees only its own tower's half of the maps, so conv2's
256 kernels are 5×5×**48**, not 5×5×96. Every conv layer is Type 2.2 (a full-depth 3-D
kernel per output map), with groups = 2 on {', '.join(grouped)}.

{table(["layer", "kernels", "groups", "output", "params", "MACs"], lines)}

The paper says "60 million parameters" (quoted); the stated architecture gives
{total['params']:,}, {total['params'] / PAPER_ALEXNET_PARAMS:.3f}× that. Its LRN layers
divide by α·Σx² as printed (`jconv.local_response_norm`); PyTorch's LRN divides α by the
window size ([torch.nn.LocalResponseNorm]({TORCH_LRN})).
"""
