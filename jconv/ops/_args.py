"""Argument checking and normalisation shared by every public op.

Every public op checks its arguments here, on shapes and dtypes only, before any
``lax`` call is traced, so a mistake we can detect surfaces as a ``ValueError`` or
``TypeError`` that names the op, the argument, the value and what was expected.

Letters used throughout jconv: ``N`` batch, ``H W`` (or ``D H W``) spatial, ``C``
input maps, ``K`` filters (output maps); kernels ``H W I O``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

# Window and same_pads are re-exported: the window arithmetic lives in window.py.
from jconv.kernels.window import Window, extent, output_size, same_pads  # noqa: F401

PADDING_MODES = ("zeros", "reflect", "edge", "circular")
# PyTorch's name for numpy's "edge".
_MODE_ALIASES = {"replicate": "edge"}


def fail(op: str, arg: str, value: Any, expected: str, error=ValueError):
    """Raises ``error`` with the message ``op: arg=value; expected ...``."""
    raise error(f"{op}: {arg}={value!r}; expected {expected}")


def floating(op: str, name: str, value: Any, *, rank: int | tuple[int, ...] | None = None,
             shape_doc: str = ""):
    """Returns ``value`` as a JAX array after checking its dtype (floating) and rank."""
    if isinstance(value, (str, bytes)) or value is None:
        fail(op, name, value, f"a floating-point array {shape_doc}".rstrip(), TypeError)
    array = value if hasattr(value, "dtype") and hasattr(value, "shape") else jnp.asarray(value)
    floating_dtype(op, name, array.dtype)
    ranks = (rank,) if isinstance(rank, int) else rank
    if ranks is not None and array.ndim not in ranks:
        doc = f": {shape_doc}" if shape_doc else ""  # as the shape plans say it
        fail(op, f"{name}.shape", tuple(array.shape), f"rank {' or '.join(map(str, ranks))}{doc}")
    return jnp.asarray(array)


def floating_dtype(op: str, name: str, dtype: Any):
    """Raises :func:`floating`'s ``TypeError`` unless ``dtype`` is a floating-point dtype
    (:func:`jconv.which_impl` checks its ``dtype`` argument so, as the op checks ``x``)."""
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        fail(op, f"{name}.dtype", str(dtype),
             "a floating-point dtype (float16, bfloat16, float32 or float64); "
             f"cast with {name}.astype(jnp.float32)", TypeError)
    return dtype


def common_dtype(*arrays):
    """Promotes floating arrays to one dtype, as ``lax`` needs."""
    dtype = jnp.result_type(*arrays)
    return tuple(a.astype(dtype) for a in arrays)


def positive_int(op: str, name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        fail(op, name, value, f"an int >= {minimum}", TypeError)
    if value < minimum:
        fail(op, name, value, f"an int >= {minimum}")
    return int(value)


def int_tuple(op: str, name: str, value: Any, n: int, *, minimum: int = 1) -> tuple[int, ...]:
    """An int or a length-``n`` sequence of ints, each ``>= minimum``, as a tuple."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (value,) * n
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != n:
            fail(op, name, value, f"an int or {n} ints (one per spatial axis)")
    else:
        fail(op, name, value, f"an int or a sequence of {n} ints", TypeError)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            fail(op, name, value, f"ints, one per spatial axis ({n})", TypeError)
        if v < minimum:
            fail(op, name, value, f"ints >= {minimum}")
    return tuple(int(v) for v in values)


def padding_mode(op: str, mode: Any) -> str:
    mode = _MODE_ALIASES.get(mode, mode)
    if mode not in PADDING_MODES:
        fail(op, "padding_mode", mode, f"one of {PADDING_MODES} ('replicate' means 'edge')")
    return mode


def explicit_pads(op: str, padding: Any, n: int) -> tuple[tuple[int, int], ...] | str:
    """Normalises ``padding`` to "SAME", "VALID" or ``n`` non-negative (low, high) pairs."""
    expected = ('"SAME", "VALID", an int, a sequence of ints (one per spatial axis) or of '
                f"(low, high) pairs, for {n} spatial axes")
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            fail(op, "padding", padding, expected)
        return padding.upper()
    try:
        if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
            pairs = ((operator.index(padding),) * 2,) * n
        elif isinstance(padding, Sequence) and len(padding) == n:
            pairs = tuple((operator.index(p),) * 2 if not isinstance(p, Sequence)
                          else tuple(operator.index(q) for q in p) for p in padding)
        else:
            raise TypeError
    except TypeError:
        fail(op, "padding", padding, expected)
    if any(len(p) != 2 for p in pairs):
        fail(op, "padding", padding, expected)
    if any(q < 0 for p in pairs for q in p):
        fail(op, "padding", padding, "non-negative padding amounts")
    return pairs


def require_static(op: str, name: str, values, what: str):
    """Raises ``TypeError`` unless every value is a Python int (none traced under jit/vmap)."""
    if not all(isinstance(v, int) for v in values):
        fail(op, name, "a traced value", f"static ints for {what}: they decide the window",
             TypeError)


def window(op: str, in_sizes: Sequence[Any], kernel: Sequence[int], *, stride: Any,
           padding: Any, dilation: Any, mode: str = "zeros",
           axis_names: Sequence[str] | None = None, kernel_arg: str = "w") -> Window:
    """Resolves stride, padding and dilation against the input and kernel sizes.

    Raises ``ValueError`` if a dilated kernel does not fit in the padded input, or if a
    reflect/circular padding is wider than the input allows. An input size may be a traced
    integer where the padding is explicit (not ``"SAME"``): its output size is then traced
    and the fit is not checked along that axis.
    """
    n = len(in_sizes)
    stride = int_tuple(op, "stride", stride, n)
    dilation = int_tuple(op, "dilation", dilation, n)
    pads = explicit_pads(op, padding, n)
    require_static(op, f"{kernel_arg} window", kernel, "the kernel sizes")
    extents = tuple(map(extent, kernel, dilation))
    names = axis_names or [f"spatial axis {a}" for a in range(n)]
    if pads == "VALID":
        pads = ((0, 0),) * n
    elif pads == "SAME":
        traced = [name for name, size in zip(names, in_sizes) if not isinstance(size, int)]
        if traced:
            fail(op, "padding", "SAME", f"explicit padding along {traced[0]}, whose size is "
                 "traced (SAME padding depends on it)", TypeError)
        pads = tuple(map(same_pads, in_sizes, extents, stride))
    limit = {"reflect": lambda size: size - 1, "circular": lambda size: size}.get(mode)
    static_axes = [axis for axis in zip(names, in_sizes, pads, kernel, dilation, extents)
                   if isinstance(axis[1], int)]  # a traced size is not checked
    for name, size, (lo, hi), *_ in static_axes:
        if limit is not None and max(lo, hi) > limit(size):
            fail(op, "padding", (lo, hi),
                 f"at most {limit(size)} per side along {name} (input size {size}) "
                 f"for padding_mode={mode!r}")
    for name, size, (lo, hi), k, d, e in static_axes:
        if e > size + lo + hi:
            fail(op, f"{kernel_arg} window", tuple(kernel),
                 f"a kernel that fits the padded input along {name}: extent {e} "
                 f"(size {k}, dilation {d}) > input {size} + padding ({lo}, {hi})")
    out = tuple(map(output_size, in_sizes, extents, stride, pads))
    return Window(tuple(in_sizes), tuple(kernel), stride, dilation, pads, out)
