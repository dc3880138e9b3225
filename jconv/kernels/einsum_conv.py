"""Convolution kernels written with ``jnp.einsum`` over shifted windows and patches.

Two algorithms, channels-last at their core:

* **shift** — for every kernel tap ``t`` take the strided window of the padded input
  that the tap sees, ``x[:, t*d : t*d + (H'-1)*s + 1 : s]`` of shape ``(N, H', W', C)``,
  contract it with ``w[t]`` of shape ``(C/G, K)`` and sum over taps. A depthwise tap
  (one input map per group) is a broadcast multiply, not a matmul.
* **patches** — stack the same windows into ``(N, H', W', T, C)`` (``T = kh*kw``) and
  contract taps and channels in one einsum (im2col).

The transposed conv by scatter (one strided placement per tap) is here too. The kernels
built from ``lax`` convs (``split``, ``hybrid``) are in :mod:`jconv.kernels.lax_conv`; every
kernel with ``lax.conv_general_dilated``'s signature in :mod:`jconv.kernels.general_dilated`.
"""
from __future__ import annotations

import itertools
import math
import string
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jconv.kernels.combine import differentiated_by
from jconv.kernels.window import extent, output_size, transposed_size


def channels_last_dnums(nd: int) -> lax.ConvDimensionNumbers:
    """Dimension numbers for ``(N, *spatial, C)`` inputs and ``(*spatial, I, O)`` kernels."""
    spatial = tuple(range(1, nd + 1))
    return lax.ConvDimensionNumbers(
        lhs_spec=(0, nd + 1, *spatial),
        rhs_spec=(nd + 1, nd, *range(nd)),
        out_spec=(0, nd + 1, *spatial),
    )


def pad_and_dilate(x, pads, lhs_dilation=None, value=0.0):
    """Pads the spatial axes of ``(N, *S, C)`` ``x``; negative pads crop.

    ``lhs_dilation`` inserts ``d - 1`` copies of ``value`` between input positions
    (the fractional stride of a transposed convolution).
    """
    nd = x.ndim - 2
    lhs_dilation = lhs_dilation or (1,) * nd
    config = [(0, 0, 0)] + [(lo, hi, d - 1) for (lo, hi), d in zip(pads, lhs_dilation)]
    return lax.pad(x, jnp.asarray(value, x.dtype), config + [(0, 0, 0)])


def shifted_windows(xp, kernel: Sequence[int], stride: Sequence[int],
                    dilation: Sequence[int], out_sizes: Sequence[int],
                    axes: Sequence[int] | None = None) -> Iterator[tuple[tuple[int, ...], jax.Array]]:
    """Yields ``(tap, window)`` for each kernel tap over the already padded ``xp``.

    ``window[:, i] = xp[:, i*stride + tap*dilation]`` along each of ``axes`` (default: the
    spatial axes ``1 .. ndim-2`` of a channels-last array), so each window has the output's
    spatial shape.
    """
    axes = tuple(range(1, xp.ndim - 1)) if axes is None else tuple(axes)
    for tap in itertools.product(*(range(k) for k in kernel)):
        start = [0] * xp.ndim
        limit = list(xp.shape)
        strides = [1] * xp.ndim
        for a, t, s, d, o in zip(axes, tap, stride, dilation, out_sizes):
            start[a] = t * d
            limit[a] = t * d + (o - 1) * s + 1
            strides[a] = s
        yield tap, lax.slice(xp, start, limit, strides)


def contract(xs, w_tap, groups: int, precision=None, preferred_element_type=None):
    """Grouped channel contraction ``(..., C) x (C/G, K) -> (..., K)``.

    With one input map per group (depthwise) it is a broadcast multiply.
    """
    cg, k = w_tap.shape
    if preferred_element_type is not None:
        xs, w_tap = xs.astype(preferred_element_type), w_tap.astype(preferred_element_type)
    if cg == 1:
        # (..., G, 1) * (G, K/G) -> (..., G, K/G)
        y = xs[..., :, None] * w_tap.reshape((1,) * (xs.ndim - 1) + (groups, k // groups))
        return y.reshape(*xs.shape[:-1], k)  # (..., K)
    if groups == 1:
        return jnp.einsum("...c,ck->...k", xs, w_tap, precision=precision,
                          preferred_element_type=preferred_element_type)
    xg = xs.reshape(*xs.shape[:-1], groups, cg)  # (..., G, C/G)
    wg = w_tap.reshape(cg, groups, k // groups)  # (C/G, G, K/G)
    y = jnp.einsum("...gc,cgk->...gk", xg, wg, precision=precision,
                   preferred_element_type=preferred_element_type)
    return y.reshape(*xs.shape[:-1], k)  # (..., K)


def _out_sizes(xp_shape, kernel, dilation, stride):
    """Output sizes of the window over the already padded ``xp`` of shape ``(N, *S, C)``."""
    return tuple(map(output_size, xp_shape[1:-1], map(extent, kernel, dilation), stride))


def shift_conv(x, w, stride, pads, dilation, groups=1, lhs_dilation=None, precision=None,
               preferred_element_type=None):
    """Channels-last grouped conv by shifted windows: ``x (N, *S, C)``, ``w (*k, C/G, K)``.

    A depthwise conv (one input map per group) goes to :func:`depthwise_shift_conv`.
    """
    if w.shape[-2] == 1 and groups == x.shape[-1] and groups > 1:
        return depthwise_shift_conv(x, w, stride, pads, dilation, lhs_dilation,
                                    preferred_element_type)
    kernel = w.shape[:-2]
    xp = pad_and_dilate(x, pads, lhs_dilation)
    out_sizes = _out_sizes(xp.shape, kernel, dilation, stride)
    out = None
    for tap, xs in shifted_windows(xp, kernel, stride, dilation, out_sizes):
        y = contract(xs, w[tap], groups, precision, preferred_element_type)
        out = y if out is None else out + y
    return out


def _depthwise_taps(xp, w, stride, dilation, out_sizes):
    """``sum_t window_t(xp) * w[t, 0]`` for ``xp (N, *S, K)``, ``w (*k, 1, K)``."""
    out = None
    for tap, xs in shifted_windows(xp, w.shape[:-2], stride, dilation, out_sizes):
        y = xs * w[tap].reshape((1,) * (xs.ndim - 1) + w.shape[-1:])  # (N, *S', K)
        out = y if out is None else out + y
    return out


DEPTHWISE_CHUNK_BYTES = 1 << 19
"""Output bytes per step of the row-chunked depthwise weight gradient."""
DEPTHWISE_UNCHUNKED_BYTES = 1 << 22
"""Outputs up to this size take the depthwise weight gradient in one piece."""


def _depthwise_rows(xp, w, stride, dilation, out_sizes):
    """:func:`_depthwise_taps` computed a block of output rows (axis 1) at a time.

    The same values; written as a ``lax.scan`` over row blocks of the output so that its
    transpose, the weight gradient ``dw[t] = sum window_t(xp) * dy``, is a loop of
    reductions over blocks that stay in cache (``jax.checkpoint`` recomputes each
    block's windows instead of storing them all). One reduction over a large array is a
    slow path of XLA's CPU backend: 3x slower for a 56×56×128 batch of 4.
    """
    ho = out_sizes[0]
    row_bytes = xp.dtype.itemsize * xp.shape[0] * xp.shape[-1] * math.prod(out_sizes[1:])
    rows = max(1, DEPTHWISE_CHUNK_BYTES // row_bytes)
    if ho * row_bytes <= DEPTHWISE_UNCHUNKED_BYTES or rows >= ho:
        return _depthwise_taps(xp, w, stride, dilation, out_sizes)
    blocks = -(-ho // rows)
    in_rows = transposed_size(rows, extent(w.shape[0], dilation[0]), stride[0])  # rows read
    short = (blocks - 1) * rows * stride[0] + in_rows - xp.shape[1]
    xp = lax.pad(xp, jnp.zeros((), xp.dtype),
                 [(0, 0, 0), (0, max(0, short), 0)] + [(0, 0, 0)] * (xp.ndim - 2))

    def block(_, i):
        xs = lax.dynamic_slice_in_dim(xp, i * rows * stride[0], in_rows, axis=1)
        return None, _depthwise_taps(xs, w, stride, dilation, (rows, *out_sizes[1:]))

    _, ys = lax.scan(jax.checkpoint(block), None, jnp.arange(blocks))  # (B, N, rows, *S'', K)
    ys = jnp.moveaxis(ys, 0, 1)  # (N, B, rows, *S'', K)
    ys = ys.reshape(ys.shape[0], blocks * rows, *ys.shape[3:])  # (N, B*rows, *S'', K)
    return ys[:, :ho]


def depthwise_shift_conv(x, w, stride, pads, dilation, lhs_dilation=None,
                         preferred_element_type=None):
    """Depthwise conv by shift-and-multiply: ``x (N, *S, C)``, ``w (*k, 1, C*M)``.

    ``y = sum_t window_t(x) * w[t, 0]``: one broadcast multiply per tap, which XLA
    fuses into a single loop over the output. With a channel multiplier ``M > 1`` each
    map is first repeated ``M`` times (map ``c`` feeds filters ``c*M ... c*M + M-1``).
    The forward pass and input gradient use that loop; the weight gradient comes from
    the row-blocked form :func:`_depthwise_rows` (see
    :func:`jconv.kernels.combine.differentiated_by`).
    """
    if preferred_element_type is not None:
        x, w = x.astype(preferred_element_type), w.astype(preferred_element_type)
    multiplier = w.shape[-1] // x.shape[-1]
    if multiplier > 1:
        x = jnp.repeat(x, multiplier, axis=-1)  # (N, *S, C*M)

    def taps(form):
        def conv(x, w):
            xp = pad_and_dilate(x, pads, lhs_dilation)
            return form(xp, w, stride, dilation,
                        _out_sizes(xp.shape, w.shape[:-2], dilation, stride))
        return conv

    plain = taps(_depthwise_taps)
    return differentiated_by(plain, plain, taps(_depthwise_rows))(x, w)


def patch_conv(x, w, stride, pads, dilation, groups=1, lhs_dilation=None, precision=None,
               preferred_element_type=None):
    """Channels-last grouped conv by patches (im2col) and one einsum."""
    kernel = w.shape[:-2]
    cg, k = w.shape[-2:]
    xp = pad_and_dilate(x, pads, lhs_dilation)
    out_sizes = _out_sizes(xp.shape, kernel, dilation, stride)
    windows = [xs for _, xs in shifted_windows(xp, kernel, stride, dilation, out_sizes)]
    patches = jnp.stack(windows, axis=-2)  # (N, *S', T, C)
    patches = patches.reshape(*patches.shape[:-1], groups, cg)  # (N, *S', T, G, C/G)
    wg = w.reshape(len(windows), cg, groups, k // groups)  # (T, C/G, G, K/G)
    y = jnp.einsum("...tgc,tcgk->...gk", patches, wg, precision=precision,
                   preferred_element_type=preferred_element_type)
    return y.reshape(*y.shape[:-2], k)  # (N, *S', K)


def scatter_transpose_conv(x, w, stride, crops, dilation, groups=1, precision=None, *,
                           full=False):
    """Channels-last transposed conv as a sum of strided placements, one per tap.

    ``x (N, *S, C)``, ``w (*k, C/G, K)``: tap ``t`` adds ``x[i] @ w[t]`` at output
    position ``i*stride + t*dilation``; then ``crops (low, high)`` are removed (negative
    values append zeros). No multiply by an inserted zero is done.

    Each tap contracts only the inputs it places inside the output, so the weight
    gradient, like ``lax``'s, never multiplies an input by the (zero) cotangent of a
    cropped position (``0 * inf = NaN`` for an infinite input). With ``full=True`` each
    tap places every input on the full output, which is then cropped: the same values,
    but the input gradient then multiplies the weights by the zero cotangent of every
    cropped position, as ``lax``'s does within its padding (``0 * inf = NaN`` for an
    infinite weight).
    """
    kernel = w.shape[:-2]
    in_sizes = x.shape[1:-1]
    if full:
        crops, uncropped = [(0, 0)] * len(in_sizes), crops
    outs = [transposed_size(i, extent(k, d), s, crop)
            for i, s, k, d, crop in zip(in_sizes, stride, kernel, dilation, crops)]
    out = None
    for tap in itertools.product(*(range(k) for k in kernel)):
        # Along each axis input i lands on output p0 + i*s, p0 = t*d - low; the inputs
        # [first, last) land in [0, O).
        ranges = []
        for t, d, s, i, o, (lo, _) in zip(tap, dilation, stride, in_sizes, outs, crops):
            p0 = t * d - lo
            ranges.append((p0, max(0, -(p0 // s)), min(i, -((p0 - o) // s))))
        if any(last <= first for _, first, last in ranges):
            continue  # the tap places every input on a cropped position
        xs = x[(slice(None), *(slice(first, last) for _, first, last in ranges))]
        y = contract(xs, w[tap], groups, precision)  # (N, *S_t, K)
        placement = [(p0 + first * s, o - (p0 + (last - 1) * s + 1), s - 1)
                     for (p0, first, last), s, o in zip(ranges, stride, outs)]
        y = lax.pad(y, jnp.zeros((), y.dtype), [(0, 0, 0), *placement, (0, 0, 0)])  # (N, *O, K)
        out = y if out is None else out + y
    if out is None:
        out = jnp.zeros((x.shape[0], *outs, w.shape[-1]), x.dtype)
    return pad_and_dilate(out, [(-lo, -hi) for lo, hi in uncropped]) if full else out


def einsum_letters(n: int) -> str:
    """``n`` distinct uppercase letters (never clashing with lowercase axis names) for einsum."""
    return string.ascii_uppercase[:n]

