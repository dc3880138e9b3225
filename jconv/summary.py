"""Per-layer tables of a model: kernel shapes, groups, output shapes, params and MACs.

Everything is computed from the built model itself (its :meth:`layer_table`) by the
cost model, never typed in: ``jconv summary alexnet`` shows conv2's 256 kernels of
5×5×48 in two groups, and the totals.

    >>> rows, total = summarize("alexnet")
    >>> [(r["name"], r["kernel"], r["groups"]) for r in rows if r["name"] == "conv2"]
    [('conv2', '5x5x48x256', 2)]
    >>> total["params"]
    60965224
"""

from __future__ import annotations

import json
from typing import Any

import ml_collections

from jconv.ops import registry

MODEL_DEFAULTS = dict(variant="standard", width=1.0, input_size=0, in_channels=3,
                      num_classes=1000, aux_classifiers=False, norm="paper")


def config(model: str) -> ml_collections.ConfigDict:
    """The settings ``jconv summary`` accepts as ``--config.KEY=VALUE`` (0 = paper's size)."""
    settings = ml_collections.ConfigDict(dict(MODEL_DEFAULTS, model=model))
    settings.lock()
    return settings


def _macs(info) -> int:
    spec = registry.REGISTRY.get(info.op)
    if spec is not None and spec.cost is not None:  # a jconv op: its cost formula, dense taps
        return spec.cost(info.in_shape, *info.args, **info.kwargs).macs
    if info.op == "linear":
        return info.in_shape[0] * info.kernel_shapes[0][0] * info.kernel_shapes[0][1]
    return 0  # batch_norm, dropout, flatten, concat, adaptive pooling: no multiply-adds


def build_abstract(settings):
    """The model of ``settings`` with abstract parameters (no memory, no compute)."""
    from flax import nnx

    from jconv import models
    from jconv.nn.layers import shapes_only

    options = {"aux_classifiers": True} if settings.aux_classifiers else {}
    with shapes_only():
        return nnx.eval_shape(lambda: models.build(
            settings.model, variant=settings.variant, width=settings.width,
            input_size=settings.input_size or None, in_channels=settings.in_channels,
            num_classes=settings.num_classes, norm=settings.norm, rngs=nnx.Rngs(0), **options))


def summarize(model: str, **overrides: Any) -> tuple[list[dict], dict]:
    """Rows (one per layer, batch 1) and totals of ``model`` built with ``overrides``."""
    settings = config(model)
    settings.update(overrides)
    rows = []
    for info in build_abstract(settings).layer_table():
        rows.append({
            "name": info.name, "op": info.op,
            "kernel": ", ".join("x".join(map(str, s)) for s in info.kernel_shapes),
            "groups": info.groups, "output_shape": list(info.out_shape),
            "params": info.params, "macs": _macs(info)})
    total = {"params": sum(r["params"] for r in rows), "macs": sum(r["macs"] for r in rows)}
    return rows, total


def format_table(rows: list[dict], total: dict, title: str) -> str:
    header = ("layer", "op", "kernel", "groups", "output", "params", "MACs")
    lines = [[r["name"], r["op"], r["kernel"] or "-", str(r["groups"]),
              "x".join(map(str, r["output_shape"][1:])), f"{r['params']:,}", f"{r['macs']:,}"]
             for r in rows]
    lines.append(["total", "", "", "", "", f"{total['params']:,}", f"{total['macs']:,}"])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    right = {3, 5, 6}

    def fmt(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * len(fmt(header))
    return "\n".join([title, fmt(header), rule, *map(fmt, lines[:-1]), rule, fmt(lines[-1])])


def main(model: str, overrides: list[str], as_json: bool) -> str:
    """What ``jconv summary MODEL [--config.KEY=VALUE ...] [--json]`` prints."""
    from jconv import models, runner

    if model not in models.MODELS:
        raise runner.ConfigError(f"jconv summary: model={model!r}; known models: "
                                 f"{models.list_models()}")
    settings = config(model)
    for override in overrides:
        runner.apply_override(settings, override, f"jconv summary {model}")
    values = {k: v for k, v in settings.items() if k != "model"}
    rows, total = summarize(model, **values)
    if as_json:
        return json.dumps({"model": model, "config": values, "layers": rows, "total": total},
                          indent=1)
    title = (f"{model} ({', '.join(f'{k}={v}' for k, v in values.items())}); "
             "batch 1, MACs = multiply-adds (FLOPs = 2 x MACs)")
    return format_table(rows, total, title)
