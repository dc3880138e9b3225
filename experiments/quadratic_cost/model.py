"""Why widening two chained conv layers costs quadratically, measured for every layer type.

Layer 1 maps the grey image to k1 maps (3×3, Type 2.2); layer 2 maps them to k2 maps
with 5×5 filters, read as each type of the question. Every layer is written as a
single-filter function ``jax.vmap``-ed over the filter axis (:func:`filterwise`), and the
analytic cost curve of each variant is one ``jax.vmap`` of the cost model over the
filter counts. For each (sweep, variant, width) the run records output maps, params,
analytic FLOPs (dense and in-bounds), XLA's FLOPs and the median wall time of the
forward and the forward+backward pass; then it fits the log-log slope of each curve
over the upper half of the widths.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jconv
from jconv import cost
from jconv.backends import onednn
from jconv.measure import median_seconds, xla_flops
from jconv.runner import ConfigError, Store, progress

SWEEPS = {"uniform": "(a) k1 = k2 = k", "k2_only": "(b) k1 fixed, k2 = k"}
LABELS = {
    "type1": "Type 1 (per map)",
    "type2_1": "Type 2.1 (shared 2-D filter)",
    "type2_2": "Type 2.2 (3-D filter)",
    "separable": "depthwise-separable",
    "bottleneck": "1×1-reduced Type 2.2",
}


def filterwise(one_filter: Callable) -> Callable:
    """``one_filter(x, w_k)`` applied for every filter ``k`` on the last axis of ``w``.

    The outputs are stacked on a new last axis: a layer written for one filter becomes
    the whole layer (``vmap`` over a kernel alone folds into the output features).
    """
    return jax.vmap(one_filter, in_axes=(None, -1), out_axes=-1)


def _conv_one(x, w_k):  # w_k (kh, kw, C) -> (N, H, W)
    return jconv.conv(x, w_k[..., None])[..., 0]


def _pointwise_one(x, w_k):  # w_k (C,) -> (N, H, W)
    return jconv.pointwise_conv(x, w_k[:, None])[..., 0]


def _per_map_one(x, w_k):  # w_k (kh, kw) -> (N, H, W, C): the filter on every map
    return jconv.per_map_conv(x, w_k[..., None])


def _shared_one(x, w_k):  # w_k (kh, kw) -> (N, H, W)
    return jconv.shared_filter_conv(x, w_k[..., None])[..., 0]


def reduced_width(k1, ratio):
    """The bottleneck's 1×1 reduction width, ``max(1, round(k1 * ratio))`` (traceable)."""
    if isinstance(k1, jax.Array):
        return jnp.maximum(1, jnp.round(k1 * ratio)).astype(k1.dtype)
    return max(1, round(k1 * ratio))


def weight_shapes(variant: str, k1: int, k2: int, config) -> dict[str, tuple]:
    """Layer 2's weights for ``variant`` (layer 1's ``w1`` is the same for all)."""
    k = config.kernel2
    r = reduced_width(k1, config.reduce_ratio)
    return {
        "type1": {"w2": (k, k, k2)},
        "type2_1": {"w2": (k, k, k2)},
        "type2_2": {"w2": (k, k, k1, k2)},
        "separable": {"wd": (k, k, 1, k1), "w2": (k1, k2)},
        "bottleneck": {"wr": (k1, r), "w2": (k, k, r, k2)},
    }[variant]


def layer2(variant: str, p: dict, h):
    """Layer 2 on the ``(N, H, W, k1)`` maps ``h``, each filter a vmapped single-filter call."""
    if variant == "type2_2":
        return filterwise(_conv_one)(h, p["w2"])  # (N, H, W, k2)
    if variant == "type1":
        y = filterwise(_per_map_one)(h, p["w2"])  # (N, H, W, k1, k2)
        return y.reshape(*y.shape[:-2], -1)  # (N, H, W, k1*k2), map-major as per_map_conv
    if variant == "type2_1":
        return filterwise(_shared_one)(h, p["w2"])  # (N, H, W, k2)
    if variant == "separable":
        d = jconv.depthwise_conv(h, p["wd"])  # (N, H, W, k1)
        return filterwise(_pointwise_one)(d, p["w2"])  # (N, H, W, k2)
    if variant == "bottleneck":
        r = jax.nn.relu(filterwise(_pointwise_one)(h, p["wr"]))  # (N, H, W, r)
        return filterwise(_conv_one)(r, p["w2"])  # (N, H, W, k2)
    raise ValueError(f"variant={variant!r}; expected one of {tuple(LABELS)}")


def network(variant: str, p: dict, x):
    h = jax.nn.relu(filterwise(_conv_one)(x, p["w1"]))  # (N, H, W, k1)
    return layer2(variant, p, h)


def analytic(variant: str, k1, k2, config) -> dict:
    """Params and FLOPs of both layers from the cost model; ``k1``, ``k2`` may be traced."""
    n, h, w = config.batch, config.height, config.width
    kk, k = config.kernel1, config.kernel2
    layers = [cost.conv((n, h, w, 1), (kk, kk, 1, k1))]
    x2 = (n, h, w, k1)
    if variant == "type2_2":
        layers.append(cost.conv(x2, (k, k, k1, k2)))
    elif variant == "type1":
        layers.append(cost.per_map_conv(x2, (k, k, k2)))
    elif variant == "type2_1":
        layers.append(cost.shared_filter_conv(x2, (k, k, k2)))
    elif variant == "separable":
        layers.append(cost.separable_conv(x2, (k, k, 1, k1), (k1, k2)))
    else:
        r = reduced_width(k1, config.reduce_ratio)
        layers += [cost.pointwise_conv(x2, (k1, r)), cost.conv((n, h, w, r), (k, k, r, k2))]
    return {
        "params": sum(c.params for c in layers),
        "flops": sum(c.flops for c in layers),
        "flops_in_bounds": sum(c.flops_in_bounds for c in layers),
        "maps": layers[-1].output_shape[-1],
    }


def curves(config) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Every analytic curve, one ``vmap`` of :func:`analytic` over the widths each.

    The vmapped counts are exact (:class:`jconv.cost.Count`); ``np.asarray`` makes them
    ``int64`` arrays.
    """
    ks = jnp.asarray(config.widths)
    result = {}
    for variant in config.variants:
        uniform = jax.vmap(lambda k, v=variant: analytic(v, k, k, config))(ks)
        k2_only = jax.vmap(lambda k, v=variant: analytic(v, config.fixed_k1, k, config))(ks)
        result["uniform", variant] = {m: np.asarray(c) for m, c in uniform.items()}
        result["k2_only", variant] = {m: np.asarray(c) for m, c in k2_only.items()}
    return result


def image_batch(config) -> jax.Array:
    """The n×m grey image and its mirror image: ``(B, n, m, 1)`` in [0, 1]."""
    import skimage.data
    import skimage.transform

    image = getattr(skimage.data, config.image)().astype(np.float32) / 255.0
    image = skimage.transform.resize(image, (config.height, config.width), anti_aliasing=True)
    images = [image, image[:, ::-1]] * (config.batch // 2 + 1)
    return jnp.asarray(np.stack(images[:config.batch])[..., None], jnp.float32)


def init_params(variant: str, k1: int, k2: int, config) -> dict:
    shapes = {"w1": (config.kernel1, config.kernel1, 1, k1), **weight_shapes(variant, k1, k2,
                                                                               config)}
    keys = jax.random.split(jax.random.key(config.seed), len(shapes))
    params = {}
    for key, (name, shape) in zip(keys, sorted(shapes.items())):
        fan_in = int(np.prod(shape[:-1]))
        params[name] = jax.random.normal(key, shape, jnp.float32) * np.sqrt(2.0 / fan_in)
    return params


def measure(variant: str, k1: int, k2: int, x, config) -> dict:
    params = init_params(variant, k1, k2, config)
    forward = jax.jit(lambda p, x: network(variant, p, x)).lower(params, x).compile()
    out_elements = int(np.prod(forward.out_info.shape))
    with onednn.disabled():  # XLA counts nothing inside oneDNN's calls: count XLA's kernels
        counted = jax.jit(lambda p, x: network(variant, p, x)).lower(params, x).compile()
    values = {"xla_flops": xla_flops(counted), "output_elements": out_elements,
              "time_fwd_s": None, "time_fwd_bwd_s": None}
    if out_elements > config.max_output_elements:
        values["skipped"] = f"output {out_elements:,} elements > {config.max_output_elements:,}"
        return values
    values["time_fwd_s"] = median_seconds(forward, params, x, repeats=config.repeats)
    # A loss that needs the forward values (the gradient of a plain sum of a layer that
    # is linear in its weights would not, and XLA would skip the forward pass).
    loss = jax.jit(jax.grad(lambda p, x: 0.5 * jnp.sum(jnp.square(network(variant, p, x)))))
    values["time_fwd_bwd_s"] = median_seconds(loss, params, x, repeats=config.repeats)
    return values


def _positive_ints(value) -> bool:
    values = value if isinstance(value, (tuple, list)) else (value,)
    return bool(values) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                for v in values)


def check(config, prefix: str = "--config.") -> None:
    """Raises ConfigError for a setting the run cannot use, naming it (``prefix`` + key), before
    anything is written."""
    unknown = [v for v in config.variants if v not in LABELS]
    if not config.variants or unknown:
        raise ConfigError(f"{prefix}variants={tuple(config.variants)}: expected one or more of "
                          f"{tuple(LABELS)}")
    for key in ("widths", "fixed_k1", "height", "width", "batch", "kernel1", "kernel2", "repeats"):
        if not _positive_ints(config[key]):
            expected = "one or more ints ≥ 1" if key == "widths" else "an int ≥ 1"
            raise ConfigError(f"{prefix}{key}={config[key]!r}; expected {expected}")
    if not (isinstance(config.reduce_ratio, (int, float)) and config.reduce_ratio > 0):
        raise ConfigError(f"{prefix}reduce_ratio={config.reduce_ratio!r}; expected a number > 0")
    if not (isinstance(config.max_output_elements, int) and config.max_output_elements >= 0):
        raise ConfigError(f"{prefix}max_output_elements={config.max_output_elements!r}; expected "
                          "an int ≥ 0")
    import skimage.data

    if not callable(getattr(skimage.data, str(config.image), None)) or config.image.startswith("_"):
        raise ConfigError(f"{prefix}image={config.image!r}; expected the name of a grey image of "
                          "skimage.data, such as 'camera' or 'coins'")


def plan(config) -> list[dict]:
    keys = []
    for sweep in SWEEPS:
        for variant in config.variants:
            for k in config.widths:
                k1 = k if sweep == "uniform" else config.fixed_k1
                keys.append({"sweep": sweep, "variant": variant, "k1": k1, "k2": k})
    return keys


def run(config, workdir: Path) -> dict:
    check(config)
    store = Store(workdir)
    analytic_curves = curves(config)
    x = image_batch(config)
    todo = plan(config)
    with progress(len(todo), sum(store.has(k) for k in todo), "quadratic_cost") as bar:
        for key in todo:
            if store.has(key):
                continue
            i = list(config.widths).index(key["k2"])
            curve = analytic_curves[key["sweep"], key["variant"]]
            values = {m: int(curve[m][i]) for m in ("params", "flops", "flops_in_bounds", "maps")}
            bar.set_postfix_str(f"{key['variant']} k1={key['k1']} k2={key['k2']}")
            store.add(key, {**values, **measure(key["variant"], key["k1"], key["k2"], x, config)})
            bar.update()
    return summarize(config, store, workdir)


METRICS = {"flops": "analytic FLOPs", "xla_flops": "XLA FLOPs", "time_fwd_s": "time fwd",
           "time_fwd_bwd_s": "time fwd+bwd"}


def slopes(config, records: list[dict]) -> list[dict]:
    """Log-log slope of every metric vs k over the upper half of the widths."""
    rows = []
    for sweep in SWEEPS:
        for variant in config.variants:
            mine = sorted((r for r in records if r["key"]["sweep"] == sweep
                           and r["key"]["variant"] == variant), key=lambda r: r["key"]["k2"])
            row = {"sweep": sweep, "variant": variant}
            for metric in METRICS:
                points = [(r["key"]["k2"], r[metric]) for r in mine if r.get(metric)]
                row[metric] = (cost.loglog_slope([k for k, _ in points], [v for _, v in points])
                               if len(points) >= 2 else None)
            rows.append(row)
    return rows


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)


def summarize(config, store: Store, workdir: Path) -> dict:
    records = sorted(store.records(), key=lambda r: (list(SWEEPS).index(r["key"]["sweep"]),
                                                     list(LABELS).index(r["key"]["variant"]),
                                                     r["key"]["k2"]))
    fields = ["sweep", "variant", "k1", "k2", "maps", "params", "flops", "flops_in_bounds",
              "xla_flops", "time_fwd_s", "time_fwd_bwd_s"]
    with open(workdir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        for r in records:
            writer.writerow({**{k: r.get(k) for k in fields}, **r["key"]})
    fitted = slopes(config, records)
    with open(workdir / "slopes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["sweep", "variant", *METRICS])
        writer.writeheader()
        writer.writerows(fitted)
    table = _table(config, records, fitted)
    (workdir / "table.md").write_text(table)
    _plot(config, records, fitted, workdir / "quadratic_cost.png")
    print(table)
    print(f"table: {workdir / 'table.md'}\nsummary: {workdir / 'summary.csv'}\n"
          f"slopes: {workdir / 'slopes.csv'}\nplot: {workdir / 'quadratic_cost.png'}")
    return {"records": records, "slopes": fitted}


def _table(config, records, fitted) -> str:
    lines = [f"# Widening two chained conv layers ({config.batch}×{config.height}×"
             f"{config.width} grey images; layer 1 {config.kernel1}×{config.kernel1}, "
             f"layer 2 {config.kernel2}×{config.kernel2}, SAME)", "",
             "| sweep | layer 2 | k1 | k2 | maps | params | analytic FLOPs | XLA FLOPs | "
             "fwd ms | fwd+bwd ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        key = r["key"]
        ms = [None if r.get(t) is None else 1e3 * r[t] for t in ("time_fwd_s", "time_fwd_bwd_s")]
        lines.append(f"| {key['sweep']} | {LABELS[key['variant']]} | {key['k1']} | {key['k2']} | "
                     f"{r['maps']:,} | {r['params']:,.0f} | {r['flops']:,.0f} | "
                     f"{_fmt(r.get('xla_flops'), ',.0f')} | {_fmt(ms[0], '.3f')} | "
                     f"{_fmt(ms[1], '.3f')} |")
    lines += ["", "Log-log slope vs k over the upper half of the widths "
              f"({', '.join(map(str, config.widths[len(config.widths) // 2:]))}):", "",
              "| sweep | layer 2 | analytic FLOPs | XLA FLOPs | time fwd | time fwd+bwd |",
              "|---|---|---|---|---|---|"]
    for s in fitted:
        lines.append(f"| {SWEEPS[s['sweep']]} | {LABELS[s['variant']]} | "
                     + " | ".join(_fmt(s[m], '.2f') for m in METRICS) + " |")
    lines += ["", "Why:", ""] + [f"- **{LABELS[v]}**: {WHY[v].format(**_slope_text(fitted, v))}"
                                 for v in config.variants]
    return "\n".join(lines) + "\n"


# Layer 2's multiply-adds per output pixel, and what each sweep does to them.
WHY = {
    "type2_2": "k1·k2·25 MACs per pixel: both factors grow under uniform widening "
               "(slope {uniform}), only k2 when layer 2 widens alone ({k2_only}). This is "
               "GoogLeNet's quadratic law.",
    "type1": "k1·k2·25 MACs per pixel as well (every filter on every map), with k1·k2 output "
             "maps: slope {uniform} and {k2_only}, and the output (and the next layer's input) "
             "grows quadratically too.",
    "type2_1": "as defined (one 2-D filter repeated along the 3-D kernel) k1·k2·25 MACs "
               "(slope {uniform}, {k2_only}); by linearity it equals one single-channel conv "
               "of the summed maps, k2·25 MACs: the XLA count of the shortcut that "
               "impl='auto' runs grows linearly ({uniform_xla}).",
    "separable": "k1·25 (depthwise) + k1·k2 (1×1) MACs per pixel: still quadratic "
                 "asymptotically, but the 25-fold smaller quadratic term leaves the fitted "
                 "range below 2 (slope {uniform}); with k1 fixed the depthwise part is "
                 "constant ({k2_only}).",
    "bottleneck": "k1·r (1×1 reduction to r = k1·ratio maps) + r·k2·25 MACs: r grows with "
                  "k1, so uniform widening stays quadratic (slope {uniform}) at about "
                  "ratio times the cost; with k1 fixed, linear ({k2_only}).",
}


def _slope_text(fitted, variant) -> dict:
    s = {r["sweep"]: r for r in fitted if r["variant"] == variant}
    return {"uniform": _fmt(s["uniform"]["flops"], ".2f"),
            "k2_only": _fmt(s["k2_only"]["flops"], ".2f"),
            "uniform_xla": _fmt(s["uniform"]["xla_flops"], ".2f")}


def _plot(config, records, fitted, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9), constrained_layout=True)
    colors = dict(zip(LABELS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    slope = {(s["sweep"], s["variant"]): s for s in fitted}
    for row, sweep in enumerate(SWEEPS):
        for variant in config.variants:
            mine = [r for r in records if r["key"]["sweep"] == sweep
                    and r["key"]["variant"] == variant]
            ks = [r["key"]["k2"] for r in mine]
            s = slope[sweep, variant]
            c = colors[variant]
            axes[row, 0].plot(ks, [r["flops"] for r in mine], "-", color=c,
                              label=f"{LABELS[variant]}: analytic, slope {_fmt(s['flops'], '.2f')}")
            xla = [(k, r["xla_flops"]) for k, r in zip(ks, mine) if r.get("xla_flops")]
            if xla:
                axes[row, 0].plot(*zip(*xla), "o", color=c, mfc="none",
                                  label=f"XLA, slope {_fmt(s['xla_flops'], '.2f')}")
            for metric, style in (("time_fwd_s", "-o"), ("time_fwd_bwd_s", "--s")):
                timed = [(k, r[metric]) for k, r in zip(ks, mine) if r.get(metric)]
                if timed:
                    axes[row, 1].plot(*zip(*timed), style, color=c, ms=4,
                                      label=f"{LABELS[variant]} {METRICS[metric]}, "
                                            f"slope {_fmt(s[metric], '.2f')}")
        for col, ylabel in enumerate(("FLOPs (two layers)", "measured seconds per call")):
            ax = axes[row, col]
            ax.set(xscale="log", yscale="log", xlabel="k (filters)", ylabel=ylabel,
                   title=f"{SWEEPS[sweep]}: {'cost model and XLA' if col == 0 else 'wall time'}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("Widening two chained convolutions: log-log cost vs filters "
                 "(slopes fitted over the upper half of k)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
