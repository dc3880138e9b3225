"""The two chained layers of the experiment, their cost model and the kernels that time them.

Layer 1 maps the grey image to k1 maps (3×3, Type 2.2); layer 2 maps them to k2 maps with
5×5 filters, read as each type of the question. Two forms of the same network:

* :func:`network` writes every layer as a single-filter function ``jax.vmap``-ed over the
  filter axis (:func:`filterwise`): the question's own reading, and what XLA counts.
* :func:`timed_network` calls each jconv op once with all its filters and a fixed kernel
  per step (:func:`kernels`): what a user runs, and what is timed.

Both compute the same maps (``tests/test_quadratic_cost.py``). The analytic curves are one
``jax.vmap`` of the cost model over the filter counts (:func:`curves`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jconv
from jconv import cost

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


def reduced_width(k1, ratio):
    """The bottleneck's 1×1 reduction width, ``max(1, round(k1 * ratio))`` (traceable)."""
    if isinstance(k1, jax.Array):
        return jnp.maximum(1, jnp.round(k1 * ratio)).astype(k1.dtype)
    return max(1, round(k1 * ratio))


def weight_shapes(variant: str, k1: int, k2: int, config) -> dict[str, tuple]:
    """Every weight of the network: ``w1`` of layer 1, then layer 2's for ``variant``."""
    k = config.kernel2
    r = reduced_width(k1, config.reduce_ratio)
    return {"w1": (config.kernel1, config.kernel1, 1, k1), **{
        "type1": {"w2": (k, k, k2)},
        "type2_1": {"w2": (k, k, k2)},
        "type2_2": {"w2": (k, k, k1, k2)},
        "separable": {"wd": (k, k, 1, k1), "w2": (k1, k2)},
        "bottleneck": {"wr": (k1, r), "w2": (k, k, r, k2)},
    }[variant]}


# Each step of the network: (step, jconv op, input maps, weight). Layer 1 is "layer1".
STEPS = {
    "type1": (("layer2", "per_map_conv", "h", "w2"),),
    "type2_1": (("layer2", "shared_filter_conv", "h", "w2"),),
    "type2_2": (("layer2", "conv", "h", "w2"),),
    "separable": (("depthwise", "depthwise_conv", "h", "wd"), ("layer2", "pointwise_conv", "d", "w2")),
    "bottleneck": (("reduce", "pointwise_conv", "h", "wr"), ("layer2", "conv", "r", "w2")),
}


def step_shapes(variant: str, k1: int, k2: int, config) -> dict[str, tuple[str, tuple, tuple]]:
    """``{step: (op, x_shape, w_shape)}`` for one image, in the order the network runs them."""
    w = weight_shapes(variant, k1, k2, config)
    maps = {"x": 1, "h": k1, "d": k1, "r": reduced_width(k1, config.reduce_ratio)}
    image = (1, config.height, config.width)
    shapes = {"layer1": ("conv", (*image, 1), w["w1"])}
    for step, op, x, weight in STEPS[variant]:
        shapes[step] = (op, (*image, maps[x]), w[weight])
    return shapes


def kernels(variant: str, k1: int, k2: int, config) -> dict[str, str]:
    """The kernel ``impl="auto"`` runs for each step at these widths (:func:`jconv.which_impl`)."""
    return {step: jconv.which_impl(op, x, w).impl
            for step, (op, x, w) in step_shapes(variant, k1, k2, config).items()}


def kernel_name(impls: dict[str, str]) -> str:
    """``layer2[onednn]``-style name of a network's kernels, layer 2's first."""
    order = ["layer2", *[s for s in impls if s != "layer2"]]
    return ", ".join(f"{s}[{impls[s]}]" for s in order if s in impls)


def _one(op: str, impl: str) -> Callable:
    """A single-filter call of ``op``: ``w_k`` is one filter, without the filter axis."""
    if op == "conv":
        return lambda x, w_k: jconv.conv(x, w_k[..., None], impl=impl)[..., 0]
    if op == "pointwise_conv":
        return lambda x, w_k: jconv.pointwise_conv(x, w_k[:, None], impl=impl)[..., 0]
    if op == "per_map_conv":  # (N, H, W, C): the filter on every map
        return lambda x, w_k: jconv.per_map_conv(x, w_k[..., None], impl=impl)
    if op == "shared_filter_conv":
        return lambda x, w_k: jconv.shared_filter_conv(x, w_k[..., None], impl=impl)[..., 0]
    raise ValueError(f"op={op!r} has no single-filter form here")


def network(variant: str, p: dict, x, impls: dict[str, str] | None = None):
    """Both layers on ``x`` ``(N, H, W, 1)``, every filter a vmapped single-filter call."""
    impls = impls or {}
    h = jax.nn.relu(filterwise(_one("conv", impls.get("layer1", "auto")))(x, p["w1"]))  # (N, H, W, k1)
    if variant == "separable":
        d = jconv.depthwise_conv(h, p["wd"], impl=impls.get("depthwise", "auto"))  # (N, H, W, k1)
        return filterwise(_one("pointwise_conv", impls.get("layer2", "auto")))(d, p["w2"])
    if variant == "bottleneck":
        one = _one("pointwise_conv", impls.get("reduce", "auto"))
        h = jax.nn.relu(filterwise(one)(h, p["wr"]))  # (N, H, W, r)
    if variant not in STEPS:
        raise ValueError(f"variant={variant!r}; expected one of {tuple(LABELS)}")
    op = STEPS[variant][-1][1]
    y = filterwise(_one(op, impls.get("layer2", "auto")))(h, p["w2"])  # (N, H, W, [k1,] k2)
    if variant == "type1":  # (N, H, W, k1, k2) -> (N, H, W, k1*k2), map-major as per_map_conv
        return y.reshape(*y.shape[:-2], -1)
    return y


def timed_network(variant: str, p: dict, x, impls: dict[str, str]):
    """:func:`network` as a user writes it: each op called once with all its filters, each
    step with its kernel ``impls[step]``."""
    maps = {"h": jax.nn.relu(jconv.conv(x, p["w1"], impl=impls["layer1"]))}  # (N, H, W, k1)
    for step, op, inp, weight in STEPS[variant]:
        y = getattr(jconv, op)(maps[inp], p[weight], impl=impls[step])
        maps[{"depthwise": "d", "reduce": "r"}.get(step, "y")] = (
            jax.nn.relu(y) if step == "reduce" else y)
    return maps["y"]


def analytic(variant: str, k1, k2, config) -> dict:
    """Params, FLOPs and bytes of both layers for one image; ``k1``, ``k2`` may be traced.

    ``bytes`` is the cost model's traffic: every layer's input, output and weights once.
    """
    h, w = config.height, config.width
    kk, k = config.kernel1, config.kernel2
    layers = [cost.conv((1, h, w, 1), (kk, kk, 1, k1))]
    x2 = (1, h, w, k1)
    if variant == "type2_2":
        layers.append(cost.conv(x2, (k, k, k1, k2)))
    elif variant == "type1":
        layers.append(cost.per_map_conv(x2, (k, k, k2)))
    elif variant == "type2_1":
        layers.append(cost.shared_filter_conv(x2, (k, k, k2)))
    elif variant == "separable":
        layers += [cost.depthwise_conv(x2, (k, k, 1, k1)), cost.pointwise_conv(x2, (k1, k2))]
    else:
        r = reduced_width(k1, config.reduce_ratio)
        layers += [cost.pointwise_conv(x2, (k1, r)), cost.conv((1, h, w, r), (k, k, r, k2))]
    return {
        "params": sum(c.params for c in layers),
        "flops": sum(c.flops for c in layers),
        "flops_in_bounds": sum(c.flops_in_bounds for c in layers),
        "bytes": sum(c.activation_bytes + c.weight_bytes for c in layers),
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


def widths_of(sweep: str, k: int, config) -> tuple[int, int]:
    """``(k1, k2)`` of width ``k`` in ``sweep``."""
    return (k, k) if sweep == "uniform" else (config.fixed_k1, k)


def image_batch(config, batch: int) -> jax.Array:
    """The n×m grey image and its mirror image, repeated: ``(batch, n, m, 1)`` in [0, 1]."""
    import skimage.data
    import skimage.transform

    image = getattr(skimage.data, config.image)().astype(np.float32) / 255.0
    image = skimage.transform.resize(image, (config.height, config.width), anti_aliasing=True)
    pair = np.stack([image, image[:, ::-1]])  # (2, n, m)
    return jnp.asarray(np.resize(pair, (batch, *image.shape))[..., None], jnp.float32)


def init_params(variant: str, k1: int, k2: int, config) -> dict:
    """He-normal weights (NumPy's generator: no compile per shape, as ``jax.random`` would)."""
    rng = np.random.default_rng(config.seed)
    params = {}
    for name, shape in sorted(weight_shapes(variant, k1, k2, config).items()):
        fan_in = int(np.prod(shape[:-1]))
        params[name] = jnp.asarray(rng.standard_normal(shape) * np.sqrt(2.0 / fan_in), jnp.float32)
    return params
