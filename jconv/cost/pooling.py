"""Cost of pooling and LRN: no MACs, one operation per window tap per output element."""

from __future__ import annotations

from jconv.cost.counting import product, total
from jconv.cost.model import Cost, assemble, dims, in_bounds_taps, taps
from jconv.ops import _args, shapes
from jconv.kernels.window import centered_pads

__all__ = ["avg_pool", "channel_max_pool", "global_avg_pool", "local_response_norm",
           "max_pool"]


def _pool_cost(op, x, plan, dtype) -> Cost:
    """One op per window tap per output element."""
    dense, in_bounds = taps(plan.window)
    return assemble(op, macs=0, macs_in_bounds=0, x_shape=x, out_shape=plan.out_shape,
                    dtype=dtype, flops=product(x[0], x[-1], dense),
                    flops_in_bounds=product(x[0], x[-1], in_bounds))


def max_pool(x_shape, window, *, stride=None, padding="VALID", dtype="float32",
             bias=True) -> Cost:
    """Max pool (:func:`jconv.max_pool`): one comparison per window tap per output.

    ``flops = N*H'*W'*C*kh*kw``; in-bounds counts only taps on the unpadded input. XLA
    counts ``kh*kw - 1`` per output, padding included.
    """
    x = dims("max_pool", "x_shape", x_shape)
    plan = shapes.max_pool(x, window, stride=stride, padding=padding)
    return _pool_cost("max_pool", x, plan, dtype)


def avg_pool(x_shape, window, *, stride=None, padding="VALID", count_include_pad=True,
             dtype="float32", bias=True) -> Cost:
    """Average pool (:func:`jconv.avg_pool`): ``kh*kw - 1`` adds and one divide per output.

    ``flops = N*H'*W'*C*kh*kw`` (one op per tap, as XLA counts it); in-bounds counts only
    taps on the unpadded input.
    """
    x = dims("avg_pool", "x_shape", x_shape)
    plan = shapes.avg_pool(x, window, stride=stride, padding=padding,
                           count_include_pad=count_include_pad)
    return _pool_cost("avg_pool", x, plan, dtype)


def global_avg_pool(x_shape, *, dtype="float32", bias=True) -> Cost:
    """Global average (:func:`jconv.global_avg_pool`): ``H*W - 1`` adds and one divide per
    map, ``N*H*W*C`` FLOPs."""
    x = dims("global_avg_pool", "x_shape", x_shape)
    plan = shapes.global_avg_pool(x)
    flops = product(*x)
    return assemble("global_avg_pool", macs=0, macs_in_bounds=0, x_shape=x,
                    out_shape=plan.out_shape, flops=flops, flops_in_bounds=flops, dtype=dtype)


def channel_max_pool(x_shape, group_size, *, stride=None, dtype="float32",
                     bias=True) -> Cost:
    """Maxout (:func:`jconv.channel_max_pool`): ``g`` comparisons per output map and pixel.

    ``C`` may be traced (the window is VALID, so every tap is in bounds).
    """
    x = dims("channel_max_pool", "x_shape", x_shape)
    plan = shapes.channel_max_pool(x, group_size, stride=stride)
    flops = product(*plan.out_shape, *plan.window.kernel)
    return assemble("channel_max_pool", macs=0, macs_in_bounds=0, x_shape=x,
                    out_shape=plan.out_shape, flops=flops, flops_in_bounds=flops, dtype=dtype)


_LRN_OPS = 5  # per element besides the window sum: square, scale (*alpha, +k), power, divide


def local_response_norm(x_shape, size=5, k=2.0, alpha=1e-4, beta=0.75, *, dtype="float32",
                        bias=True) -> Cost:
    """LRN across maps (:func:`jconv.local_response_norm`): ``n + 5`` ops per element.

    One square, ``n`` window adds (one per tap), scale (``*alpha``, ``+k``), power and
    divide. In-bounds counts only the window taps on real maps (``n//2`` before and
    ``(n-1)//2`` after each map); ``C`` may be traced.
    """
    op = "local_response_norm"
    x = dims(op, "x_shape", x_shape)
    plan = shapes.local_response_norm(x, size, k, alpha, beta)
    n = _args.positive_int(op, "size", size)
    pixels, c = product(*x[:-1]), x[-1]
    window_taps = in_bounds_taps(c, n, pad_lo=centered_pads(n)[0], out_size=c)
    return assemble(op, macs=0, macs_in_bounds=0, x_shape=x, out_shape=plan.out_shape,
                    dtype=dtype, flops=product(pixels, c, n + _LRN_OPS),
                    flops_in_bounds=product(pixels, total(window_taps, product(_LRN_OPS, c))))
