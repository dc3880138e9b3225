"""The :class:`Cost` record and how a layer's counts are assembled from its plan."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jconv.cost.counting import Count, is_static, product, total
from jconv.kernels import window
from jconv.ops import shapes
from jconv.ops._args import fail


class Cost(NamedTuple):
    """What one call of an op costs. A pytree: ``jax.vmap`` returns one curve per field.

    Attributes:
      params: learned parameters (weights, and biases when ``bias=True``).
      macs, flops: dense multiply-adds and FLOPs (``flops = 2 * macs`` for convolutions).
      macs_in_bounds, flops_in_bounds: the same, counting only taps on the unpadded input.
      weight_bytes: ``params * itemsize``.
      activation_bytes: ``(input + output elements) * itemsize``.
      output_shape: the op's output shape (entries traced where the inputs are).

    Each count is an exact Python int when every input is concrete; when a shape entry is
    traced, every count is an exact :class:`~jconv.cost.counting.Count`.
    """

    params: Any
    macs: Any
    flops: Any
    macs_in_bounds: Any
    flops_in_bounds: Any
    weight_bytes: Any
    activation_bytes: Any
    output_shape: tuple


def dim(op: str, name: str, value: Any):
    """A shape entry as a Python int, or the traced integer scalar itself."""
    if isinstance(value, bool):
        fail(op, name, value, "an int", TypeError)
    if isinstance(value, (int, np.integer)):
        return int(value)
    dtype = getattr(value, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer) or np.ndim(value) != 0:
        fail(op, name, value, "an int or a scalar integer array (traced under vmap)", TypeError)
    try:
        return operator.index(value)  # a concrete array
    except TypeError:  # jax.errors.TracerIntegerConversionError
        return value


def dims(op: str, name: str, shape: Any) -> tuple:
    """A shape's entries through :func:`dim`."""
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        fail(op, name, shape, "a shape tuple", TypeError)
    return tuple(dim(op, f"{name}[{i}]", v) for i, v in enumerate(shape))


def in_bounds_taps(size, kernel: int, stride: int = 1, dilation: int = 1, pad_lo: int = 0,
                   out_size=None):
    r"""Kernel taps that land on the unpadded input along one axis, summed over outputs.

    .. math:: A = \sum_{o < O} \sum_{t < k} [0 \le o s + t d - \mathrm{lo} < H]

    Args:
      size: input size ``H`` along the axis (may be traced).
      kernel, stride, dilation, pad_lo: the window along the axis (static ints).
      out_size: output size ``O`` (may be traced); default ``(H + lo - (k-1)d - 1)//s + 1``,
        i.e. no padding at the high end.

    Returns:
      ``A``, a Python int when ``size`` and ``out_size`` are, else an exact
      :class:`~jconv.cost.counting.Count`. The dense count is ``O * k``.

    >>> in_bounds_taps(56, 3, pad_lo=1, out_size=56)   # SAME 3x3: 56*3 - 2
    166
    """
    return total(*window.in_bounds_per_tap(size, kernel, stride, dilation, pad_lo, out_size))


def taps(win: window.Window, mode: str = "zeros") -> tuple[int, int]:
    """(dense, in-bounds) taps of a static window; with a non-zero padding mode, both dense."""
    in_bounds = win.in_bounds_taps if mode == "zeros" else win.dense_taps
    return win.dense_taps, in_bounds


def _itemsize(op: str, dtype) -> int:
    try:
        return jnp.dtype(dtype).itemsize
    except TypeError:
        fail(op, "dtype", dtype, "a dtype or dtype name such as 'float32'", TypeError)


def _exact(shape: tuple) -> tuple:
    """Traced entries as Counts, so that products of them cannot overflow ``int32``."""
    return tuple(v if isinstance(v, int) else Count.of(v) for v in shape)


def assemble(op, *, macs, macs_in_bounds, x_shape, out_shape, w_shapes=(), bias=True,
             dtype="float32", flops=None, flops_in_bounds=None) -> Cost:
    """The :class:`Cost` of a layer from its MACs (FLOPs default to twice them) and shapes.

    If any shape entry is traced, every count becomes a Count, so that a ``vmap`` over a
    shape returns exact curves for all of them.
    """
    itemsize = _itemsize(op, dtype)
    params = shapes.param_count(op, *map(_exact, w_shapes), bias=bias) if w_shapes else 0
    flops = product(2, macs) if flops is None else flops
    flops_in_bounds = product(2, macs_in_bounds) if flops_in_bounds is None else flops_in_bounds
    activations = total(product(*x_shape), product(*out_shape))
    counts = [params, macs, flops, macs_in_bounds, flops_in_bounds, product(params, itemsize),
              product(activations, itemsize)]
    if not is_static(*x_shape, *out_shape, *(v for w in w_shapes for v in w)):
        counts = [Count.of(c) for c in counts]
    return Cost(*counts, tuple(out_shape))


def window_cost(op, plan: shapes.Plan, *, per_tap, x_shape, w_shapes, bias, dtype) -> Cost:
    """A layer whose every tap at every output position costs ``per_tap`` MACs per image.

    The batch size is ``x_shape[0]``; the output shape is the plan's.
    """
    dense, in_bounds = taps(plan.window, plan.padding_mode)
    n = x_shape[0]
    return assemble(op, macs=product(n, *per_tap, dense),
                    macs_in_bounds=product(n, *per_tap, in_bounds), x_shape=x_shape,
                    out_shape=plan.out_shape, w_shapes=w_shapes, bias=bias, dtype=dtype)
