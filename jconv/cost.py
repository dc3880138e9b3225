r"""Parameters, multiply-adds, FLOPs and bytes of every op, as pure traceable functions of shapes.

Each public op ``jconv.<op>`` has a cost function of the same name here that takes the
shapes of its array arguments instead of the arrays, the op's own keyword arguments
(minus ``impl`` and ``precision``), and ``dtype="float32"`` and ``bias=True`` (as
:func:`jconv.param_count`). It returns a :class:`Cost`.

Letters: ``N`` batch, ``H W`` (or ``D H W``) spatial, ``C`` input maps, ``K`` filters,
``H' W'`` output positions; kernels ``H W I O``.

**Conventions.**

* ``flops = 2 * macs``: a multiply-add is two floating-point operations, as XLA's
  ``cost_analysis()`` and ``torch.utils.flop_counter`` count. fvcore, thop, ptflops and
  torchinfo report multiply-adds and (fvcore) call them FLOPs: compare their figure with
  ``macs``. Bias adds and activation functions are not counted.
* *Dense* (``macs``, ``flops``): every kernel tap at every output position, the textbook
  formula ``N * H' * W' * K * kh * kw * C/groups``.
  *In-bounds* (``macs_in_bounds``, ``flops_in_bounds``): only the taps that land on the
  unpadded input, which is what XLA's CPU ``cost_analysis()`` counts for a convolution.
  The axes are independent, so with one axis' in-bounds tap count
  ``A = sum_{o < H'} sum_{t < kh} [0 <= o*s + t*d - pad_lo < H]`` (:func:`in_bounds_taps`)
  the in-bounds count is ``N * A_h * A_w * C/groups * K``. With a ``padding_mode`` other
  than ``"zeros"`` the padded values are real data (the op pads with ``jnp.pad`` first),
  so in-bounds equals dense.
* ``weight_bytes = params * itemsize(dtype)`` (biases included when ``bias=True``);
  ``activation_bytes = (input elements + output elements) * itemsize(dtype)``, the op's own
  input and output only: the intermediate maps of a separable op are not counted.
* Pooling and LRN have ``macs = 0`` and count one operation per window tap per output
  element: a max pool's ``kh*kw`` comparisons (the first against the reduction's initial
  value), an average pool's ``kh*kw - 1`` adds and one divide, a global average's
  ``H*W - 1`` adds and one divide, a maxout's ``g`` comparisons. LRN counts ``n + 5`` per
  element: one square, ``n`` window adds (one per tap), scale (multiply by ``alpha``, add
  ``k``), power, divide; in-bounds counts only the window taps on real maps.
* :func:`shared_filter_conv` (Type 2.1) counts the 3-D repeated kernel that
  ``impl="lax"`` runs; ``shortcut=True`` counts the sum-the-maps algorithm instead, whose
  ``flops`` are ``2 * macs`` plus ``N*H*W*(C - 1)`` adds.

**Traced channel counts and vmap.** Batch, channel and filter counts may be traced
integers, so one call of ``jax.vmap`` gives a whole cost curve::

    jax.vmap(lambda k: cost.conv((8, 56, 56, k), (3, 3, k, k)).flops)(jnp.arange(1, 1001))

Spatial sizes, kernel sizes, strides, dilations and padding must be static Python ints
(they decide the window, checked by :func:`jconv.ops._args.window`), and so must ``C``
where it is a window axis (:func:`depth_sliding_conv`). Channel relations (``groups``
divides ``C`` and ``K``, kernel depth ``C/groups``) are validated only where the values
are concrete. Traced counts are promoted to floating point *before* they are multiplied
(``float32``, or ``float64`` when ``jax_enable_x64`` is on), since an ``int32`` product
overflows past ``2**31`` (a 56×56×256→256 3×3 layer at batch 8 already has 1.8e10
FLOPs); ``float32`` keeps about 7 significant digits. All-concrete inputs give exact
Python ints. What vmap cannot do: the filter count fixes the shapes of the arrays a real
layer computes on, so *timing* a layer needs one compile per width; only this analytic
curve comes from a single compile.

**Where XLA's count differs from ours.** Measured with :func:`compare` on CPU (jax 0.10.2)
and pinned by ``tests/test_cost.py``; ``T = kh*kw`` taps, "outputs" the output elements:

* Equal to ``flops_in_bounds`` exactly, for every stride, dilation, group count and
  padding tried: ``conv``, ``depthwise_conv``, ``pointwise_conv``, ``separable_conv``,
  ``spatially_separable_conv``, and with ``impl="lax"`` ``per_map_conv`` (maps folded
  into the batch), ``shared_filter_conv`` (the repeated 3-D kernel),
  ``depth_sliding_conv`` (a 3-D conv of the volume) and ``conv_transpose`` (a conv over
  the zero-dilated input: XLA skips the inserted zeros as well as the border, so it counts
  exactly the scatter taps that land on real input pixels inside the cropped output;
  0.959 of dense for 2× upsampling of 16×16 with a 3×3 kernel, ``padding=1``,
  ``output_padding=1``). With a ``padding_mode`` other than zeros: dense, as we count.
  One exception: a conv with a single tap, stride and dilation 1, no zero padding and one
  map in and one out per group (e.g. a 1×1 depthwise conv with multiplier 1) is rewritten
  by XLA into an elementwise multiply and counted as ``macs``, half of ours. And a conv
  whose every tap lands on padding (``flops_in_bounds == 0``) is folded to zeros: XLA
  reports no count, and :func:`xla_cost` returns ``None``.
* ``local_conv`` with ``impl="lax"`` (``lax.conv_general_dilated_local``): XLA =
  dense + ``2*N*A_h*A_w*C*T`` + ``2*T**2``: the input patches are first extracted by a
  grouped convolution with a one-hot kernel (``C*T`` output maps, one tap each, in bounds),
  and the one-hot kernel is built (``T**2`` elements); the per-position contraction then
  multiplies every padded tap. For a VALID window the ratio is about ``1 + T/K``: 2.13
  for 2×10×10×4, 3×3, K=8. With ``impl="einsum"``: dense exactly.
* The einsum and patch kernels (``impl="einsum"``/``"patches"``) multiply the padded
  zeros, so XLA counts dense taps there: ``patches`` = dense; shifted windows =
  dense + ``(T-1)`` adds per output (the per-tap sums) when each group has several maps,
  dense - outputs when each has one map (a broadcast multiply per tap and ``T-1`` adds:
  depthwise, ``per_map_conv``, ``depth_sliding_conv``). ``shared_filter_conv``'s einsum
  path (what ``auto`` picks) = ``shortcut=True`` dense FLOPs - outputs: 0.244 of the
  lax-path dense count for C=4 (about ``1/C``). ``conv_transpose``'s einsum path scatters
  every tap before cropping: ``2*macs + (T-1)*N*F_h*F_w*K`` with ``F = (H-1)*s + (k-1)*d + 1``
  the uncropped size (1.47 × dense in the case above).
* Pooling: XLA applies the reducer ``taps - 1`` times per output and ignores padding.
  ``avg_pool`` and ``global_avg_pool``: XLA = dense exactly (the divide is the last op);
  ``max_pool`` and ``channel_max_pool``: XLA = dense - outputs (0.75 for 2×2 windows,
  0.5 for maxout pairs); ``local_response_norm``: XLA = dense - 2 per element (``n - 1``
  window adds; the power is reported under ``"transcendentals"``): 0.8 for ``n = 5``.
* GPU (H200, jax 0.11.2): ``lax`` convolutions are cuDNN library calls that XLA does not
  cost, so :func:`xla_cost` returns ``None`` for them. Programs mixing a library call with
  other ops report only the other ops: ``local_conv`` (lax) gave dense + 161 there, the
  patch-extracting convolution missing. Einsum/patch paths and pooling are counted as on
  CPU. Treat a GPU count as a lower bound.

>>> import jax, jax.numpy as jnp
>>> from jconv import cost
>>> c = cost.conv((8, 56, 56, 64), (3, 3, 64, 64))   # SAME: 1-pixel zero border
>>> c.flops, 2 * 8 * 56 * 56 * 3 * 3 * 64 * 64         # dense: every tap
(1849688064, 1849688064)
>>> a = 56 * 3 - 2                  # per axis: the first and last rows lose one tap each
>>> c.flops_in_bounds, 2 * 8 * a * a * 64 * 64        # what XLA's CPU count reports
(1805910016, 1805910016)
>>> c.params, c.output_shape
(36928, (8, 56, 56, 64))
>>> curve = jax.vmap(lambda k: cost.conv((8, 56, 56, k), (3, 3, k, k)).flops)
>>> curve(jnp.array([8, 16, 32])).tolist()           # quadratic in the width
[28901376.0, 115605504.0, 462422016.0]
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jconv.ops import _args, shapes
from jconv.ops._args import Window, fail

__all__ = [
    "Cost", "avg_pool", "channel_max_pool", "compare", "conv", "conv_transpose",
    "depth_sliding_conv", "depthwise_conv", "global_avg_pool", "in_bounds_taps",
    "local_conv", "local_response_norm", "loglog_slope", "max_pool", "per_map_conv",
    "pointwise_conv", "separable_conv", "shared_filter_conv", "spatially_separable_conv",
    "xla_cost",
]


class Cost(NamedTuple):
    """What one call of an op costs. A pytree: ``jax.vmap`` returns one curve per field.

    Attributes:
      params: learned parameters (weights, and biases when ``bias=True``).
      macs, flops: dense multiply-adds and FLOPs (``flops = 2 * macs`` for convolutions).
      macs_in_bounds, flops_in_bounds: the same, counting only taps on the unpadded input.
      weight_bytes: ``params * itemsize``.
      activation_bytes: ``(input + output elements) * itemsize``.
      output_shape: the op's output shape (entries traced where the inputs are).

    Each count is an exact Python int when every input is concrete, else a float array.
    """

    params: Any
    macs: Any
    flops: Any
    macs_in_bounds: Any
    flops_in_bounds: Any
    weight_bytes: Any
    activation_bytes: Any
    output_shape: tuple


# --------------------------------------------------------------------------- counting helpers

def _float_dtype():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _count(*factors):
    """Product of counts: an exact Python int if every factor is one, else a float array.

    Static factors are multiplied exactly first, then converted once; traced factors are
    promoted to floating point before any multiply, so nothing overflows ``int32``.
    """
    static = [f for f in factors if isinstance(f, int)]
    traced = [f for f in factors if not isinstance(f, int)]
    product = math.prod(static)
    if not traced:
        return product
    dtype = _float_dtype()
    out = jnp.asarray(float(product), dtype)
    for f in traced:
        out = out * jnp.asarray(f).astype(dtype)
    return out


def _add(*counts):
    if all(isinstance(c, int) for c in counts):
        return sum(counts)
    dtype = _float_dtype()
    return sum(jnp.asarray(c).astype(dtype) if not isinstance(c, int) else float(c)
               for c in counts)


def _dim(op: str, name: str, value: Any):
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


def _dims(op: str, name: str, shape: Any) -> tuple:
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        fail(op, name, shape, "a shape tuple", TypeError)
    return tuple(_dim(op, f"{name}[{i}]", v) for i, v in enumerate(shape))


def _is_static(*values) -> bool:
    return all(isinstance(v, int) for v in values)


def _require_static(op: str, name: str, values, what: str):
    if not _is_static(*values):
        fail(op, name, "a traced value", f"static ints for {what}: they decide the window",
             TypeError)


def _plan(op: str, args: tuple, kwargs: dict, skeleton: tuple) -> shapes.Plan:
    """``shapes.PLANS[op]`` on the real shapes when all are concrete, else on ``skeleton``.

    The skeleton keeps the static (spatial, kernel) entries and puts consistent stand-ins
    for the traced counts, so the window is resolved and validated the same way.
    """
    static = all(_is_static(*(a if not a or not isinstance(a[0], tuple) else
                              (v for shape in a for v in shape))) for a in args)
    return shapes.PLANS[op](*(args if static else skeleton), **kwargs)


def _check_divides(op: str, groups: int, **counts):
    for name, value in counts.items():
        if isinstance(value, int) and value % groups:
            fail(op, "groups", groups, f"a divisor of {name}={value}")


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
      ``A``, a Python int when ``size`` and ``out_size`` are, else an integer array.
      The dense count is ``O * k``.

    >>> in_bounds_taps(56, 3, pad_lo=1, out_size=56)   # SAME 3x3: 56*3 - 2
    166
    """
    if out_size is None:
        out_size = (size + pad_lo - (kernel - 1) * dilation - 1) // stride + 1
    static = _is_static(size, out_size)
    maximum, minimum = (max, min) if static else (jnp.maximum, jnp.minimum)
    total = 0
    for t in range(kernel):
        offset = t * dilation - pad_lo  # tap t of output o reads input o*s + offset
        first = max(0, -(offset // stride))  # smallest o with o*s + offset >= 0
        last = minimum(out_size - 1, (size - 1 - offset) // stride)
        total = total + maximum(0, last - first + 1)
    return total


def _taps(window: Window, mode: str = "zeros") -> tuple[int, int]:
    """(dense, in-bounds) taps of a static window: ``prod(O) * prod(k)`` and ``prod(A)``."""
    dense = math.prod(window.out_sizes) * window.taps
    if mode != "zeros":
        return dense, dense
    in_bounds = math.prod(
        in_bounds_taps(size, k, s, d, lo, out)
        for size, k, s, d, (lo, _), out in zip(window.in_sizes, window.kernel, window.stride,
                                               window.dilation, window.pads, window.out_sizes))
    return dense, in_bounds


def _params(op: str, w_shapes, bias: bool):
    if all(_is_static(*w) for w in w_shapes):
        return shapes.param_count(op, *w_shapes, bias=bias)
    dtype = _float_dtype()  # floats throughout: param_count's products cannot overflow
    promoted = [tuple(float(v) if isinstance(v, int) else jnp.asarray(v).astype(dtype)
                      for v in w) for w in w_shapes]
    return shapes.param_count(op, *promoted, bias=bias)


def _itemsize(op: str, dtype) -> int:
    try:
        return jnp.dtype(dtype).itemsize
    except TypeError:
        fail(op, "dtype", dtype, "a dtype or dtype name such as 'float32'", TypeError)


def _cost(op, *, macs, macs_in_bounds, x_shape, out_shape, w_shapes=(), bias=True,
          dtype="float32", flops=None, flops_in_bounds=None) -> Cost:
    itemsize = _itemsize(op, dtype)
    params = _params(op, w_shapes, bias) if w_shapes else 0
    flops = _count(2, macs) if flops is None else flops
    flops_in_bounds = _count(2, macs_in_bounds) if flops_in_bounds is None else flops_in_bounds
    activations = _add(_count(*x_shape), _count(*out_shape))
    return Cost(params, macs, flops, macs_in_bounds, flops_in_bounds, _count(params, itemsize),
                _count(activations, itemsize), tuple(out_shape))


def _window_cost(op, plan: shapes.Plan, *, n, per_tap, x_shape, out_shape, w_shapes, bias,
                 dtype) -> Cost:
    """A conv whose every tap-position costs ``per_tap`` MACs per batch element."""
    dense, in_bounds = _taps(plan.window, plan.padding_mode)
    return _cost(op, macs=_count(n, *per_tap, dense), macs_in_bounds=_count(n, *per_tap, in_bounds),
                 x_shape=x_shape, out_shape=out_shape, w_shapes=w_shapes, bias=bias, dtype=dtype)


def _spatial(op, x, w=None, *, kernel_axes=None):
    _require_static(op, "x_shape", x[1:-1], "the spatial sizes")
    if w is not None:
        _require_static(op, "w_shape", w[kernel_axes], "the kernel sizes")


# --------------------------------------------------------------------------- convolutions

def conv(x_shape, w_shape, *, stride=1, padding="SAME", dilation=1, groups=1,
         padding_mode="zeros", dtype="float32", bias=True) -> Cost:
    """Type 2.2 (:func:`jconv.conv`): ``N*H'*W'*K*kh*kw*C/groups`` MACs.

    Args:
      x_shape: ``(N, H, W, C)``; ``N`` and ``C`` may be traced.
      w_shape: ``(kh, kw, C/groups, K)``; the last two may be traced.
      stride, padding, dilation, groups, padding_mode: as in :func:`jconv.conv`.
      dtype: element type for the byte counts.
      bias: count one bias per filter in ``params``.

    >>> conv((1, 14, 14, 6), (5, 5, 6, 16), padding="VALID").macs  # LeNet C3 as Type 2.2
    240000
    """
    op = "conv"
    x, w = _dims(op, "x_shape", x_shape), _dims(op, "w_shape", w_shape)
    _spatial(op, x, w, kernel_axes=slice(0, -2))
    g = _args.positive_int(op, "groups", groups)
    _check_divides(op, g, C=x[-1], K=w[-1])
    plan = _plan(op, (x, w), dict(stride=stride, padding=padding, dilation=dilation, groups=g,
                                  padding_mode=padding_mode),
                 ((1, *x[1:-1], g), (*w[:-2], 1, g)))
    out = (x[0], *plan.out_shape[1:-1], w[-1])
    return _window_cost(op, plan, n=x[0], per_tap=(w[-2], w[-1]), x_shape=x, out_shape=out,
                        w_shapes=(w,), bias=bias, dtype=dtype)


def depthwise_conv(x_shape, w_shape, *, stride=1, padding="SAME", dilation=1,
                   padding_mode="zeros", dtype="float32", bias=True) -> Cost:
    """Depthwise (:func:`jconv.depthwise_conv`): ``N*H'*W'*C*M*kh*kw`` MACs.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shape: ``(kh, kw, 1, C*M)``.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`conv`.
    """
    op = "depthwise_conv"
    x, w = _dims(op, "x_shape", x_shape), _dims(op, "w_shape", w_shape)
    _spatial(op, x, w, kernel_axes=slice(0, -2))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    plan = _plan(op, (x, w), kwargs, ((1, *x[1:-1], 1), (*w[:-2], 1, 1)))
    out = (x[0], *plan.out_shape[1:-1], w[-1])
    return _window_cost(op, plan, n=x[0], per_tap=(w[-1],), x_shape=x, out_shape=out,
                        w_shapes=(w,), bias=bias, dtype=dtype)


def pointwise_conv(x_shape, w_shape, *, stride=1, groups=1, dtype="float32",
                   bias=True) -> Cost:
    """1×1 (:func:`jconv.pointwise_conv`): ``N*H'*W'*K*C/groups`` MACs, all in bounds.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shape: ``(C/groups, K)``.
      stride, groups, dtype, bias: as in :func:`conv`.
    """
    op = "pointwise_conv"
    x, w = _dims(op, "x_shape", x_shape), _dims(op, "w_shape", w_shape)
    _spatial(op, x)
    g = _args.positive_int(op, "groups", groups)
    _check_divides(op, g, C=x[-1], K=w[-1])
    plan = _plan(op, (x, w), dict(stride=stride, groups=g), ((1, *x[1:-1], g), (1, g)))
    out = (x[0], *plan.out_shape[1:-1], w[-1])
    return _window_cost(op, plan, n=x[0], per_tap=tuple(w), x_shape=x, out_shape=out,
                        w_shapes=(w,), bias=bias, dtype=dtype)


def separable_conv(x_shape, w_depthwise_shape, w_pointwise_shape, *, stride=1,
                   padding="SAME", dilation=1, padding_mode="zeros", dtype="float32",
                   bias=True) -> Cost:
    """Depthwise-separable (:func:`jconv.separable_conv`): :func:`depthwise_conv` then
    :func:`pointwise_conv` on its output; one bias per final output map.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_depthwise_shape: ``(kh, kw, 1, C*M)``.
      w_pointwise_shape: ``(C*M, K)``.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`conv`.

    >>> d = depthwise_conv((1, 8, 8, 32), (3, 3, 1, 32)).macs
    >>> p = pointwise_conv((1, 8, 8, 32), (32, 64)).macs
    >>> separable_conv((1, 8, 8, 32), (3, 3, 1, 32), (32, 64)).macs == d + p
    True
    """
    op = "separable_conv"
    x = _dims(op, "x_shape", x_shape)
    wd = _dims(op, "w_depthwise_shape", w_depthwise_shape)
    wp = _dims(op, "w_pointwise_shape", w_pointwise_shape)
    _spatial(op, x, wd, kernel_axes=slice(0, -2))
    if _is_static(*x, *wd, *wp):
        shapes.separable_conv(x, wd, wp, stride=stride, padding=padding, dilation=dilation,
                              padding_mode=padding_mode)
    depthwise = depthwise_conv(
        x, wd, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode,
        dtype=dtype, bias=False)
    pointwise = pointwise_conv(depthwise.output_shape, wp, dtype=dtype, bias=False)
    return _cost(op, macs=_add(depthwise.macs, pointwise.macs),
                 macs_in_bounds=_add(depthwise.macs_in_bounds, pointwise.macs_in_bounds),
                 x_shape=x, out_shape=pointwise.output_shape, w_shapes=(wd, wp), bias=bias,
                 dtype=dtype)


def spatially_separable_conv(x_shape, w_shapes, *, stride=1, padding="SAME", dilation=1,
                             padding_mode="zeros", dtype="float32", bias=True) -> Cost:
    """One 1-D kernel per axis (:func:`jconv.spatially_separable_conv`): the sum of its stages.

    Stage ``a`` convolves along axis ``a`` only, with that axis' stride, dilation and
    padding: ``N * (sizes after the stage) * k_a * I_a * O_a`` MACs.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shapes: ``[(kh, 1, C, M), (1, kw, M, K)]``, one per spatial axis.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`conv`.

    >>> spatially_separable_conv((1, 7, 7, 3), [(5, 1, 3, 4), (1, 5, 4, 8)],
    ...                          padding="VALID").macs == 3*7*5*3*4 + 3*3*5*4*8
    True
    """
    op = "spatially_separable_conv"
    x = _dims(op, "x_shape", x_shape)
    if not isinstance(w_shapes, Sequence) or isinstance(w_shapes, str):
        fail(op, "w_shapes", w_shapes, "a sequence of kernel shapes, one per spatial axis",
             TypeError)
    ws = [_dims(op, f"w_shapes[{a}]", w) for a, w in enumerate(w_shapes)]
    _spatial(op, x)
    for a, w in enumerate(ws):
        _require_static(op, f"w_shapes[{a}]", w[:-2], "the kernel sizes")
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    skeleton = ((1, *x[1:-1], 1), [(*w[:-2], 1, 1) for w in ws])
    plan = _plan(op, (x, ws), kwargs, skeleton)
    win = plan.window
    sizes, macs, macs_in_bounds = x[1:-1], 0, 0
    for a, w in enumerate(ws):
        def only_axis(value, other):
            return tuple(value[b] if b == a else other[b] for b in range(len(ws)))
        ones, no_pads = (1,) * len(ws), ((0, 0),) * len(ws)
        stage = Window(sizes, w[:-2], only_axis(win.stride, ones), only_axis(win.dilation, ones),
                       only_axis(win.pads, no_pads), only_axis(win.out_sizes, sizes))
        dense, in_bounds = _taps(stage, plan.padding_mode)
        macs = _add(macs, _count(x[0], w[-2], w[-1], dense))
        macs_in_bounds = _add(macs_in_bounds, _count(x[0], w[-2], w[-1], in_bounds))
        sizes = stage.out_sizes
    out = (x[0], *win.out_sizes, ws[-1][-1])
    return _cost(op, macs=macs, macs_in_bounds=macs_in_bounds, x_shape=x, out_shape=out,
                 w_shapes=ws, bias=bias, dtype=dtype)


def _single_channel(op, x_shape, w_shape, kwargs):
    x, w = _dims(op, "x_shape", x_shape), _dims(op, "w_shape", w_shape)
    _spatial(op, x, w, kernel_axes=slice(0, -1))
    plan = _plan(op, (x, w), kwargs, ((1, *x[1:-1], 1), (*w[:-1], 1)))
    return x, w, plan


def per_map_conv(x_shape, w_shape, *, stride=1, padding="SAME", dilation=1,
                 padding_mode="zeros", dtype="float32", bias=True) -> Cost:
    """Type 1 (:func:`jconv.per_map_conv`): ``N*H'*W'*C*K*kh*kw`` MACs, ``C*K`` output maps.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shape: ``(kh, kw, K)``.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`conv`.
    """
    op = "per_map_conv"
    x, w, plan = _single_channel(op, x_shape, w_shape, dict(
        stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode))
    out = (x[0], *plan.out_shape[1:-1], _count(x[-1], w[-1]))
    return _window_cost(op, plan, n=x[0], per_tap=(x[-1], w[-1]), x_shape=x, out_shape=out,
                        w_shapes=(w,), bias=bias, dtype=dtype)


def shared_filter_conv(x_shape, w_shape, *, stride=1, padding="SAME", dilation=1,
                       padding_mode="zeros", dtype="float32", bias=True,
                       shortcut=False) -> Cost:
    """Type 2.1 (:func:`jconv.shared_filter_conv`) as defined: ``N*H'*W'*K*kh*kw*C`` MACs.

    That is the 3-D kernel repeating the 2-D filter along the depth, which
    ``impl="lax"`` runs. Type 2.1 is linear in the maps, so summing the maps first and
    running one single-channel conv gives the same output for ``N*H'*W'*K*kh*kw`` MACs
    plus ``N*H*W*(C-1)`` adds (``impl="einsum"``): ``shortcut=True`` counts that, and its
    ``flops`` are ``2*macs + N*H*W*(C-1)``.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shape: ``(kh, kw, K)``.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`conv`.
      shortcut: count the sum-the-maps algorithm.

    >>> shared_filter_conv((1, 8, 8, 16), (5, 5, 4), padding="VALID").macs    # 4*4*4*25*16
    25600
    >>> c = shared_filter_conv((1, 8, 8, 16), (5, 5, 4), padding="VALID", shortcut=True)
    >>> c.macs, c.flops                          # 4*4*4*25, 2*1600 + 8*8*15
    (1600, 4160)
    """
    op = "shared_filter_conv"
    x, w, plan = _single_channel(op, x_shape, w_shape, dict(
        stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode))
    out = (x[0], *plan.out_shape[1:-1], w[-1])
    if not shortcut:
        return _window_cost(op, plan, n=x[0], per_tap=(x[-1], w[-1]), x_shape=x,
                            out_shape=out, w_shapes=(w,), bias=bias, dtype=dtype)
    dense, in_bounds = _taps(plan.window, plan.padding_mode)
    macs, macs_in_bounds = _count(x[0], w[-1], dense), _count(x[0], w[-1], in_bounds)
    adds = _count(*x[:-1], _add(x[-1], -1))
    return _cost(op, macs=macs, macs_in_bounds=macs_in_bounds, x_shape=x, out_shape=out,
                 w_shapes=(w,), bias=bias, dtype=dtype, flops=_add(_count(2, macs), adds),
                 flops_in_bounds=_add(_count(2, macs_in_bounds), adds))


def conv_transpose(x_shape, w_shape, *, stride=1, padding=0, output_padding=0, dilation=1,
                   groups=1, dtype="float32", bias=True) -> Cost:
    """Transposed conv (:func:`jconv.conv_transpose`) in scatter form.

    Dense: every input pixel times every tap, ``N*H*W*kh*kw*C/groups*K`` MACs (the same as
    the forward conv whose input-gradient it is). In-bounds: only the taps whose target
    lands inside the cropped output.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shape: ``(kh, kw, C/groups, K)``.
      stride, padding, output_padding, dilation, groups, dtype, bias: as in
        :func:`jconv.conv_transpose`.

    >>> c = conv_transpose((1, 4, 4, 8), (3, 3, 8, 2), stride=2, padding=1, output_padding=1)
    >>> c.macs, c.output_shape          # 4*4 pixels * 9 taps * 8 * 2
    (2304, (1, 8, 8, 2))
    """
    op = "conv_transpose"
    x, w = _dims(op, "x_shape", x_shape), _dims(op, "w_shape", w_shape)
    _spatial(op, x, w, kernel_axes=slice(0, -2))
    g = _args.positive_int(op, "groups", groups)
    _check_divides(op, g, C=x[-1], K=w[-1])
    plan = _plan(op, (x, w), dict(stride=stride, padding=padding, output_padding=output_padding,
                                  dilation=dilation, groups=g),
                 ((1, *x[1:-1], g), (*w[:-2], 1, g)))
    out = (x[0], *plan.out_shape[1:-1], w[-1])
    return _window_cost(op, plan, n=x[0], per_tap=(w[-2], w[-1]), x_shape=x, out_shape=out,
                        w_shapes=(w,), bias=bias, dtype=dtype)


def local_conv(x_shape, w_shape, *, stride=1, padding="VALID", dilation=1,
               padding_mode="zeros", dtype="float32", bias=True) -> Cost:
    """Locally connected (:func:`jconv.local_conv`): the MACs of :func:`conv`, ``H'*W'``
    times the parameters.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shape: ``(H', W', kh, kw, C, K)``.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`conv`.
    """
    op = "local_conv"
    x, w = _dims(op, "x_shape", x_shape), _dims(op, "w_shape", w_shape)
    _spatial(op, x, w, kernel_axes=slice(0, -2))
    plan = _plan(op, (x, w), dict(stride=stride, padding=padding, dilation=dilation,
                                  padding_mode=padding_mode),
                 ((1, *x[1:-1], 1), (*w[:-2], 1, 1)))
    out = (x[0], *plan.out_shape[1:-1], w[-1])
    return _window_cost(op, plan, n=x[0], per_tap=(w[-2], w[-1]), x_shape=x, out_shape=out,
                        w_shapes=(w,), bias=bias, dtype=dtype)


def depth_sliding_conv(x_shape, w_shape, *, stride=1, padding="VALID", dilation=1,
                       padding_mode="zeros", dtype="float32", bias=True) -> Cost:
    """A ``kd×kh×kw`` filter sliding over maps and space (:func:`jconv.depth_sliding_conv`):
    ``N*D'*H'*W'*K*kd*kh*kw`` MACs. ``C`` is a window axis, so it must be static.

    Args:
      x_shape: ``(N, H, W, C)``; ``C`` static.
      w_shape: ``(kd, kh, kw, K)``.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`jconv.depth_sliding_conv`.

    >>> depth_sliding_conv((1, 42, 314, 1337), (3, 4, 5, 1)).output_shape
    (1, 1335, 39, 310, 1)
    """
    op = "depth_sliding_conv"
    x, w = _dims(op, "x_shape", x_shape), _dims(op, "w_shape", w_shape)
    _require_static(op, "x_shape", x[1:], "the spatial sizes and C (the depth axis)")
    _require_static(op, "w_shape", w[:-1], "the kernel sizes")
    plan = _plan(op, (x, w), dict(stride=stride, padding=padding, dilation=dilation,
                                  padding_mode=padding_mode),
                 ((1, *x[1:]), (*w[:-1], 1)))
    out = (x[0], *plan.out_shape[1:-1], w[-1])
    return _window_cost(op, plan, n=x[0], per_tap=(w[-1],), x_shape=x, out_shape=out,
                        w_shapes=(w,), bias=bias, dtype=dtype)


# --------------------------------------------------------------------------- pooling, LRN

def _pool_cost(op, x, plan, dtype):
    """One op per window tap per output element."""
    dense, in_bounds = _taps(plan.window)
    out = (x[0], *plan.out_shape[1:-1], x[-1])
    return _cost(op, macs=0, macs_in_bounds=0, x_shape=x, out_shape=out, dtype=dtype,
                 flops=_count(x[0], x[-1], dense), flops_in_bounds=_count(x[0], x[-1], in_bounds))


def max_pool(x_shape, window, *, stride=None, padding="VALID", dtype="float32",
             bias=True) -> Cost:
    """Max pool (:func:`jconv.max_pool`): one comparison per window tap per output.

    ``flops = N*H'*W'*C*kh*kw``; in-bounds counts only taps on the unpadded input. XLA
    counts ``kh*kw - 1`` per output, padding included.
    """
    op = "max_pool"
    x = _dims(op, "x_shape", x_shape)
    _spatial(op, x)
    plan = _plan(op, (x,), dict(window=window, stride=stride, padding=padding),
                 ((1, *x[1:-1], 1),))
    return _pool_cost(op, x, plan, dtype)


def avg_pool(x_shape, window, *, stride=None, padding="VALID", count_include_pad=True,
             dtype="float32", bias=True) -> Cost:
    """Average pool (:func:`jconv.avg_pool`): ``kh*kw - 1`` adds and one divide per output.

    ``flops = N*H'*W'*C*kh*kw`` (one op per tap, as XLA counts it); in-bounds counts only
    taps on the unpadded input.
    """
    op = "avg_pool"
    x = _dims(op, "x_shape", x_shape)
    _spatial(op, x)
    plan = _plan(op, (x,), dict(window=window, stride=stride, padding=padding,
                                count_include_pad=count_include_pad), ((1, *x[1:-1], 1),))
    return _pool_cost(op, x, plan, dtype)


def global_avg_pool(x_shape, *, dtype="float32", bias=True) -> Cost:
    """Global average (:func:`jconv.global_avg_pool`): ``H*W - 1`` adds and one divide per
    map, ``N*H*W*C`` FLOPs."""
    op = "global_avg_pool"
    x = _dims(op, "x_shape", x_shape)
    _spatial(op, x)
    if _is_static(*x):
        shapes.global_avg_pool(x)
    flops = _count(*x)
    return _cost(op, macs=0, macs_in_bounds=0, x_shape=x, out_shape=(x[0], x[-1]),
                 flops=flops, flops_in_bounds=flops, dtype=dtype)


def channel_max_pool(x_shape, group_size, *, stride=None, dtype="float32",
                     bias=True) -> Cost:
    """Maxout (:func:`jconv.channel_max_pool`): ``g`` comparisons per output map and pixel.

    ``C`` may be traced (the window is VALID, so every tap is in bounds).
    """
    op = "channel_max_pool"
    x = _dims(op, "x_shape", x_shape)
    _spatial(op, x)
    g = _args.positive_int(op, "group_size", group_size)
    s = g if stride is None else _args.positive_int(op, "stride", stride)
    if _is_static(*x):
        out = shapes.channel_max_pool(x, g, stride=s).out_shape
    else:
        out = (*x[:-1], (x[-1] - g) // s + 1)
    flops = _count(*out, g)
    return _cost(op, macs=0, macs_in_bounds=0, x_shape=x, out_shape=out, flops=flops,
                 flops_in_bounds=flops, dtype=dtype)


_LRN_OPS = 5  # per element besides the window sum: square, scale (*alpha, +k), power, divide


def local_response_norm(x_shape, size=5, k=2.0, alpha=1e-4, beta=0.75, *, dtype="float32",
                        bias=True) -> Cost:
    """LRN across maps (:func:`jconv.local_response_norm`): ``n + 5`` ops per element.

    One square, ``n`` window adds (one per tap), scale (``*alpha``, ``+k``), power and
    divide. In-bounds counts only the window taps on real maps (``n//2`` before and
    ``(n-1)//2`` after each map); ``C`` may be traced.
    """
    op = "local_response_norm"
    x = _dims(op, "x_shape", x_shape)
    _spatial(op, x)
    n = _args.positive_int(op, "size", size)
    if _is_static(*x):
        shapes.local_response_norm(x, size, k, alpha, beta)
    else:
        shapes.local_response_norm((1, *x[1:-1], 1), size, k, alpha, beta)
    pixels = _count(*x[:-1])
    window_taps = in_bounds_taps(x[-1], n, pad_lo=n // 2, out_size=x[-1])
    flops = _count(pixels, x[-1], n + _LRN_OPS)
    flops_ib = _count(pixels, _add(window_taps, _count(_LRN_OPS, x[-1])))
    return _cost(op, macs=0, macs_in_bounds=0, x_shape=x, out_shape=x, flops=flops,
                 flops_in_bounds=flops_ib, dtype=dtype)


# --------------------------------------------------------------------------- XLA, fits

def _abstract(value, dtype):
    """Shapes become ``jax.ShapeDtypeStruct``s (lists of shapes: lists of them)."""
    if isinstance(value, tuple) and all(isinstance(v, (int, np.integer)) for v in value):
        return jax.ShapeDtypeStruct(value, dtype)
    if isinstance(value, list) and all(isinstance(v, tuple) for v in value):
        return [jax.ShapeDtypeStruct(v, dtype) for v in value]
    return value


def xla_cost(op: str, *shapes_, impl: str = "lax", dtype="float32", **kwargs) -> float | None:
    """FLOPs that XLA's ``cost_analysis()`` reports for ``jconv.<op>`` on these shapes.

    Compiles the op (nothing is run) on ``jax.ShapeDtypeStruct`` inputs for the default
    backend. Arguments that are not shapes (a pool's ``window``) are passed as they are.

    Returns:
      the ``"flops"`` entry as a float, or None where XLA reports none or a negative value
      (GPU convolutions are library calls whose cost XLA does not know).
    """
    import jconv.ops  # noqa: PLC0415 (jconv.cost is importable before jconv's top level)

    fn = getattr(jconv.ops, op, None)
    if op not in shapes.PLANS or fn is None:
        fail("xla_cost", "op", op, f"one of {sorted(shapes.PLANS)}")
    args = [_abstract(s, jnp.dtype(dtype)) for s in shapes_]
    is_array = [isinstance(a, (jax.ShapeDtypeStruct, list)) for a in args]
    arrays = [a for a, is_a in zip(args, is_array) if is_a]

    def call(*arrays_):
        it = iter(arrays_)
        full = [next(it) if is_a else a for a, is_a in zip(args, is_array)]
        return fn(*full, impl=impl, **kwargs)

    from jconv.measure import xla_flops  # noqa: PLC0415

    flops = xla_flops(jax.jit(call).lower(*arrays).compile())
    return None if flops is None else float(flops)


def compare(op: str, *shapes_, impl: str = "lax", dtype="float32", **kwargs) -> dict:
    """Our dense and in-bounds FLOPs next to XLA's, for the same call.

    ``kwargs`` are the op's keyword arguments; ``bias`` and ``shortcut`` go to the cost
    function only. ``shapes_`` as in :func:`xla_cost`.

    Returns:
      ``dict(ours_dense=..., ours_in_bounds=..., xla=...)``.
    """
    if op not in shapes.PLANS:
        fail("compare", "op", op, f"one of {sorted(shapes.PLANS)}")
    ours = globals()[op](*shapes_, dtype=dtype, **kwargs)  # the cost function of that name
    op_kwargs = {k: v for k, v in kwargs.items() if k not in ("bias", "shortcut")}
    return dict(ours_dense=ours.flops, ours_in_bounds=ours.flops_in_bounds,
                xla=xla_cost(op, *shapes_, impl=impl, dtype=dtype, **op_kwargs))


def loglog_slope(ks, values, upper_half: bool = True) -> float:
    """Slope of ``log(values)`` against ``log(ks)`` by least squares (``numpy.polyfit``).

    ``upper_half`` keeps the points with ``k >= sqrt(min(ks) * max(ks))``, the upper half
    of a geometric range, where lower-order terms matter least (all points when that
    leaves fewer than two). A cost ``a*k**2 + b*k``
    gives a slope near 2; one layer widening alone, near 1.

    >>> ks = [4, 8, 16, 32, 64]
    >>> round(loglog_slope(ks, [3 * k**2 + 9 * k for k in ks]), 3)
    1.909
    """
    ks = np.asarray(ks, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if ks.shape != values.shape or ks.ndim != 1 or ks.size < 2:
        fail("loglog_slope", "ks, values", (ks.shape, values.shape),
             "two 1-D sequences of the same length, at least 2")
    if np.any(ks <= 0) or np.any(values <= 0):
        fail("loglog_slope", "ks, values", "non-positive entries", "positive numbers (logs)")
    if upper_half:
        keep = np.log(ks) >= (np.log(ks.min()) + np.log(ks.max())) / 2
        if keep.sum() >= 2:
            ks, values = ks[keep], values[keep]
    return float(np.polyfit(np.log(ks), np.log(values), 1)[0])
