"""Hypothesis strategies for window geometries and random arrays.

Validity of a drawn geometry (the kernel fits the padded input, reflect padding narrower
than the input) is decided with the independent ``jconv.reference`` padding rules.
"""

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from jconv.ops import BUILTIN_OPS, registry
from jconv import reference

MODES = ("zeros", "reflect", "edge", "circular")

IMPLS = {op: registry.get(op).impls for op in BUILTIN_OPS}
"""Every built-in op's implementations, from the registry: what the sweeps cover."""


def array(seed, shape, dtype=np.float32):
    """Deterministic standard-normal array."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@st.composite
def paddings(draw, nd, max_pad=2):
    kind = draw(st.sampled_from(["SAME", "VALID", "int", "pairs"]))
    if kind in ("SAME", "VALID"):
        return kind
    if kind == "int":
        return draw(st.integers(0, max_pad))
    pair = st.tuples(st.integers(0, max_pad), st.integers(0, max_pad))
    return tuple(draw(pair) for _ in range(nd))


@st.composite
def geometries(draw, *, nd=None, max_kernel=3, max_stride=3, max_dilation=2, modes=MODES,
               extra_axes=0):
    """A window over ``nd`` (+ ``extra_axes``) axes with sizes, kernel, stride, dilation, padding.

    Returns a dict with ``sizes``, ``kernel`` and the op keyword arguments ``stride``,
    ``padding``, ``dilation``, ``padding_mode``.
    """
    nd = draw(st.integers(1, 3)) if nd is None else nd
    axes = nd + extra_axes
    max_size = {1: 9, 2: 7, 3: 5}.get(axes, 5)
    sizes = tuple(draw(st.integers(1, max_size)) for _ in range(axes))
    kernel = tuple(draw(st.integers(1, max_kernel)) for _ in range(axes))
    stride = tuple(draw(st.integers(1, max_stride)) for _ in range(axes))
    dilation = tuple(draw(st.integers(1, max_dilation)) for _ in range(axes))
    padding = draw(paddings(axes))
    mode = draw(st.sampled_from(modes))
    pads = reference.resolve_padding(sizes, kernel, stride, dilation, padding)
    for size, k, d, (lo, hi) in zip(sizes, kernel, dilation, pads):
        assume((k - 1) * d + 1 <= size + lo + hi)
        if mode == "reflect":
            assume(max(lo, hi) <= size - 1)
        if mode == "circular":
            assume(max(lo, hi) <= size)
    return dict(sizes=sizes, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                padding_mode=mode)


def split(geometry):
    """(sizes, kernel, op keyword arguments) of a drawn geometry."""
    kwargs = {k: v for k, v in geometry.items() if k not in ("sizes", "kernel")}
    return geometry["sizes"], geometry["kernel"], kwargs
