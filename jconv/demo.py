"""The demo: every layer-2 variant on the same k1 maps of a real image, measured.

Layer 1 turns scikit-image's grey ``camera`` image (bundled, no download), resized to
``size×size``, into ``k1`` maps: ``k1`` random 3×3 filters and a ReLU. Layer 2 is then
each variant with ``k2`` filters of 5×5 (or its own window), and every row of the
printed table is computed: the output shape (checked against
:func:`jconv.output_shape`), the output maps, the parameters
(:func:`jconv.param_count`, biases included), the FLOPs XLA counts for the call
compiled from its own kernels (it counts nothing inside oneDNN's), the implementation ``impl="auto"`` picks (:func:`jconv.which_impl`) and the
median wall time of one call after compilation.

Run it with ``python -m jconv demo`` (options: ``--k1 --k2 --size --seed``).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jconv
from jconv.measure import counting, median_seconds, xla_flops

KERNEL = 5  # layer 2's filters are KERNEL×KERNEL
REPEATS = 5  # timed calls per variant; the table shows their median


@dataclasses.dataclass(frozen=True)
class Variant:
    """One layer-2 variant: ``jconv.<op>(x, *weights, **kwargs)``.

    ``w_shapes`` are the shapes of the op's weight arguments in order; ``packed`` ops
    (``spatially_separable_conv``) take them as one sequence.
    """

    label: str
    op: str
    w_shapes: tuple[tuple[int, ...], ...]
    kwargs: dict[str, Any]
    packed: bool = False

    def _shapes(self):
        return (list(self.w_shapes),) if self.packed else self.w_shapes

    def call(self, x, *weights):
        args = (list(weights),) if self.packed else weights
        return jconv.get(self.op).fn(x, *args, **self.kwargs)

    def expected_shape(self, x_shape) -> tuple[int, ...]:
        return tuple(jconv.output_shape(self.op, x_shape, *self._shapes(), **self.kwargs))

    def impl(self, x_shape) -> str:
        """What ``impl="auto"`` runs on an input of ``x_shape`` (:func:`jconv.which_impl`)."""
        return jconv.which_impl(self.op, tuple(x_shape), *self._shapes(), **self.kwargs).impl

    def params(self, bias: bool = True) -> int:
        return jconv.param_count(self.op, *self.w_shapes, bias=bias)


def variants(k1: int, k2: int, size: int) -> list[Variant]:
    """The layer-2 variants for ``k1`` input maps of ``size×size`` and ``k2`` filters."""
    k = KERNEL
    out = [
        Variant("Type 1", "per_map_conv", ((k, k, k2),), {}),
        Variant("Type 2.1", "shared_filter_conv", ((k, k, k2),), {}),
        Variant("Type 2.2", "conv", ((k, k, k1, k2),), {}),
    ]
    if k1 % 2 == 0 and k2 % 2 == 0:  # groups must divide both the maps and the filters
        out.append(Variant("grouped, 2 groups", "conv", ((k, k, k1 // 2, k2),),
                           {"groups": 2}))
    multiplier = max(1, k2 // k1)
    out += [
        Variant(f"depthwise, x{multiplier}", "depthwise_conv", ((k, k, 1, k1 * multiplier),),
                {}),
        Variant("separable, dw+1x1", "separable_conv", ((k, k, 1, k1), (k1, k2)), {}),
        Variant("pointwise 1x1", "pointwise_conv", ((k1, k2),), {}),
        Variant(f"spatial sep {k}x1,1x{k}", "spatially_separable_conv",
                ((k, 1, k1, k2), (1, k, k2, k2)), {}, packed=True),
        Variant("transpose, stride 2", "conv_transpose", ((k, k, k1, k2),),
                {"stride": 2, "padding": "SAME"}),
    ]
    valid = size - k + 1
    out.append(Variant("local, VALID", "local_conv", ((valid, valid, k, k, k1, k2),), {}))
    # The 3-deep filter slides VALID along the maps when k1 >= 3; fewer maps need padding.
    depth_pads = (0, 0) if k1 >= 3 else (1, 1)
    half = (k // 2, k // 2)
    label = f"depth sliding 3x{k}x{k}" + ("" if k1 >= 3 else " (depth padded)")
    out.append(Variant(label, "depth_sliding_conv", ((3, k, k, k2),),
                       {"padding": (depth_pads, half, half)}))
    out.append(Variant("max pool 3x3/2", "max_pool", (), {"window": 3, "stride": 2}))
    if k1 >= 2:
        out.append(Variant("channel max pool 2", "channel_max_pool", (), {"group_size": 2}))
    out.append(Variant("LRN, n=5", "local_response_norm", (), {}))
    return out


def camera(size: int) -> jax.Array:
    """The grey ``camera`` image resized to ``size×size``, in [0, 1], ``(1, size, size, 1)``."""
    from skimage import data, transform

    image = data.camera()  # (512, 512) uint8, bundled with scikit-image
    small = transform.resize(image, (size, size), anti_aliasing=True)  # float64 in [0, 1]
    small = np.clip(small, 0.0, 1.0).astype(np.float32)
    return jnp.asarray(small.reshape(1, size, size, 1))


def random_kernels(seed: int, shapes: Sequence[tuple[int, ...]]) -> list[jax.Array]:
    """He-normal kernels of the given shapes (last axis: the filters), seeded.

    All of them come from one ``jax.random.normal`` draw, cut in order: one compiled
    sampler instead of one per shape (each costs about a second on CPU).
    """
    sizes = [math.prod(s) for s in shapes]
    flat = np.asarray(jax.random.normal(jax.random.key(seed), (max(1, sum(sizes)),),
                                        jnp.float32))
    kernels, start = [], 0
    for shape, n in zip(shapes, sizes):
        fan_in = max(1, math.prod(shape[:-1]))
        scale = np.float32(math.sqrt(2.0 / fan_in))
        kernels.append(jnp.asarray(flat[start:start + n].reshape(shape) * scale))
        start += n
    return kernels


def measure(variant: Variant, x, weights: Sequence, repeats: int = REPEATS) -> dict:
    """One table row: compiles ``variant`` on ``x``, counts and times it."""
    compiled = jax.jit(variant.call).lower(x, *weights).compile()
    with counting():  # XLA counts nothing inside oneDNN's calls: count XLA's kernels
        counted = jax.jit(lambda *a: variant.call(*a)).lower(x, *weights).compile()
    y = compiled(x, *weights)
    shape = tuple(y.shape)
    expected = variant.expected_shape(x.shape)
    if shape != expected:
        raise RuntimeError(f"{variant.op}: output {shape} but jconv.output_shape says {expected}")
    # A depth-sliding output (N, D', H', W', K) holds D'*K maps.
    maps = shape[-1] * (shape[1] if len(shape) == 5 else 1)
    return {
        "variant": variant.label,
        "op": variant.op,
        "shape": shape,
        "maps": maps,
        "params": variant.params(),
        "weights": variant.params(bias=False),
        "flops": xla_flops(counted),
        "impl": variant.impl(x.shape),
        "seconds": median_seconds(compiled, x, *weights, repeats=repeats),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, tuple):
        return "(" + ", ".join(map(str, value)) + ")"
    return str(value)


_COLUMNS = (  # (title, row key, right-aligned)
    ("variant", "variant", False), ("jconv op", "op", False), ("output shape", "shape", False),
    ("maps", "maps", True), ("params", "params", True), ("XLA FLOPs", "flops", True),
    ("auto impl", "impl", False), ("ms/call", "ms", True),
)


def format_table(rows: list[dict]) -> str:
    cells = [[_fmt(r[key]) if key != "ms" else f"{r['seconds'] * 1e3:.3f}"
              for _, key, _ in _COLUMNS] for r in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells))
              for i, (title, _, _) in enumerate(_COLUMNS)]

    def line(values):
        return "  ".join(f"{v:>{w}}" if right else f"{v:<{w}}"
                         for v, w, (_, _, right) in zip(values, widths, _COLUMNS)).rstrip()

    header = line([title for title, _, _ in _COLUMNS])
    return "\n".join([header, "-" * len(header), *map(line, cells)])


def summary(rows: list[dict], k1: int, k2: int) -> str:
    """One sentence on Type 1 vs 2.1 vs 2.2, from the measured rows."""
    by = {r["variant"]: r for r in rows}
    t1, t21, t22 = by["Type 1"], by["Type 2.1"], by["Type 2.2"]
    ratio = t22["weights"] / t21["weights"]
    flops = ""
    if t21["flops"] and t22["flops"]:
        flops = (f", and XLA counts {t22['flops'] / t21['flops']:.1f}x the FLOPs "
                 f"({t22['flops']:,} vs {t21['flops']:,})")
    return (f"Type 1 vs 2.1 vs 2.2: from the same {k1} maps, Type 1 gives {t1['maps']} maps "
            f"(k1*k2) and Type 2.1 gives {t21['maps']} (k2), both from {t21['weights']:,} "
            f"weights + {t21['params'] - t21['weights']} biases = {t21['params']:,} params; "
            f"Type 2.2 gives the same {t22['maps']} maps as Type 2.1 from {t22['params']:,} "
            f"params, {ratio:g}x its weights ({t22['weights']:,} vs {t21['weights']:,}, "
            f"k1 = {k1}){flops}.")


def run(k1: int = 4, k2: int = 8, size: int = 128, seed: int = 0, *,
        repeats: int = REPEATS, file=None) -> list[dict]:
    """Runs the demo, prints its table to ``file`` (default stdout) and returns the rows.

    Each row is a dict with keys ``variant op shape maps params weights flops impl
    seconds`` (``flops`` is ``None`` where XLA reports none).
    """
    if min(k1, k2) < 1 or size < KERNEL:
        raise ValueError(f"demo: need k1, k2 >= 1 and size >= {KERNEL}; "
                         f"got k1={k1}, k2={k2}, size={size}")
    file = sys.stdout if file is None else file
    layer2 = variants(k1, k2, size)
    w1, *flat = random_kernels(seed, [(3, 3, 1, k1)]
                               + [s for v in layer2 for s in v.w_shapes])
    image = camera(size)
    x = jax.jit(lambda im, w: jax.nn.relu(jconv.conv(im, w)))(image, w1)
    print(f"camera image resized to {size}x{size} -> {tuple(image.shape)}; layer 1: "
          f"{k1} random 3x3 filters + ReLU -> {tuple(x.shape)} "
          f"({jconv.param_count('conv', w1.shape):,} params); layer 2: {k2} filters of "
          f"{KERNEL}x{KERNEL} per variant. Backend: {jax.default_backend()}, "
          f"jax {jax.__version__}, time = median of {repeats} calls after compile.",
          file=file)
    rows = []
    for variant in layer2:
        weights, flat = flat[:len(variant.w_shapes)], flat[len(variant.w_shapes):]
        rows.append(measure(variant, x, weights, repeats))
    print(format_table(rows), file=file)
    print(summary(rows, k1, k2), file=file)
    return rows
