"""Pooling per map (max, average, global average), across maps (maxout) and LRN.

Per-map pooling never mixes maps: ``C`` maps in, ``C`` maps out, and each output map
depends on its own input map only (every framework's ``max_pool`` has window 1 on the
channel axis). Across-map operations slide along the channel axis instead:
:func:`channel_max_pool` (maxout) shrinks the map count, :func:`local_response_norm`
(AlexNet) keeps it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jconv.onednn import pooling as onednn_pool
from jconv.kernels import lrn
from jconv.kernels.einsum_conv import pad_and_dilate, shifted_windows
from jconv.ops import _args, dispatch, registry, shapes
from jconv.kernels.window import centered_pads


def _window_reduce(x, win, init, reducer, impl):
    """Reduces every pooling window of ``(N, *S, C)`` ``x`` with ``reducer``."""
    if impl == "lax":
        ones = (1,) * (x.ndim - 2)
        return lax.reduce_window(x, np.asarray(init, x.dtype), reducer, (1, *win.kernel, 1),
                                 (1, *win.stride, 1), ((0, 0), *win.pads, (0, 0)),
                                 window_dilation=(1, *ones, 1))
    if reducer is lax.max:
        return _shift_max(x, win, None)
    return functools.reduce(reducer, _windows(x, win, None, init))


def _windows(x, win, axes, pad_value):
    """Every tap's window of ``x`` (padded with ``pad_value``), taps in row-major order;
    ``axes=None``: the spatial axes, padded by ``win.pads``, else those axes, unpadded."""
    if axes is None:
        x = pad_and_dilate(x, win.pads, value=pad_value)
    return [xs for _, xs in shifted_windows(x, win.kernel, win.stride, win.dilation,
                                            win.out_sizes, axes=axes)]


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _shift_max(x, win, axes):
    """The max over shifted windows (NaN if a window holds one, as ``lax.max``), with
    the derivative of ``lax.reduce_window``'s max: each output's tangent is the input's at
    the tap XLA's ``select_and_scatter`` selects (taps in row-major order, padding -inf, the
    selection moving to a tap unless selected >= its value; the first maximum where no
    NaN), not ``lax.max``'s halves on ties and zeros beside a NaN."""
    return functools.reduce(lax.max, _windows(x, win, axes, -jnp.inf))


@_shift_max.defjvp
def _shift_max_jvp(win, axes, primals, tangents):
    (x,), (xd,) = primals, tangents
    windows = _windows(x, win, axes, -jnp.inf)
    selected, index = windows[0], jnp.zeros(windows[0].shape, np.int32)
    for tap, xs in enumerate(windows[1:], 1):
        move = ~(selected >= xs)
        selected, index = jnp.where(move, xs, selected), jnp.where(move, tap, index)
    yd = jnp.zeros_like(windows[0])
    for tap, xds in enumerate(_windows(xd, win, axes, 0.0)):
        yd = jnp.where(index == tap, xds, yd)
    return functools.reduce(lax.max, windows), yd


@functools.partial(jax.jit, static_argnames=("plan", "impl"))
def _max_pool(x, *, plan, impl):
    if impl == "onednn":
        win = plan.window
        return onednn_pool.max_pool(x, win.kernel, win.stride, win.pads)
    return _window_reduce(x, plan.window, -jnp.inf, lax.max, impl)


@functools.partial(jax.jit, static_argnames=("plan", "impl", "count_include_pad"))
def _avg_pool(x, *, plan, impl, count_include_pad):
    if impl == "onednn":
        win = plan.window
        return onednn_pool.avg_pool(x, win.kernel, win.stride, win.pads, count_include_pad)
    total = _window_reduce(x, plan.window, 0.0, lax.add, impl)
    if count_include_pad:
        return total / plan.window.taps
    counts = plan.window.in_bounds_counts()[None, ..., None]  # (1, *S', 1)
    return total / counts.astype(x.dtype)


def _pool_input(op, x):
    return _args.floating(op, "x", x)


def max_pool(x, window, stride=None, padding="VALID", *, impl="auto"):
    r"""Max pooling per map: ``y[n, p, c] = max_t x_pad[n, p s + t, c]`` (pad = -inf).

    Windows may overlap (``stride < window``), as in AlexNet's 3×3 stride-2 pooling.

    Args:
      x: ``(N, H, W, C)``.
      window: window size, an int or one per spatial axis.
      stride: default ``window`` (non-overlapping).
      padding: as in :func:`jconv.conv`; padded positions never win.
      impl: ``"auto"``, ``"lax"`` (``reduce_window``), ``"shift"`` (max over shifted
        windows) or ``"onednn"`` (the oneDNN extension's max pooling on CPU,
        float32/bfloat16: jconv's kernels forward and backward, its ``jvp`` a JAX
        tangent at the forward's selection). Every impl gives lax's NaN and infinities,
        forward and gradient: a window holding a NaN is NaN, and the gradient goes to the
        tap ``select_and_scatter`` selects (the first maximum where there is no NaN).

    Returns:
      ``(N, H', W', C)``: the same number of maps.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> jconv.max_pool(x, 3, stride=1)[..., 0]
    Array([[[10., 11.],
            [14., 15.]]], dtype=float32)
    >>> jconv.max_pool(jnp.ones((1, 55, 55, 96)), 3, stride=2).shape   # AlexNet pool1
    (1, 27, 27, 96)
    """
    x = _pool_input("max_pool", x)
    plan = shapes.max_pool(x.shape, window, stride=stride, padding=padding)
    with dispatch.chosen("max_pool", impl, plan, x.shape, x.dtype) as impl:
        return _max_pool(x, plan=plan, impl=impl)


def avg_pool(x, window, stride=None, padding="VALID", *, count_include_pad=True,
             impl="auto"):
    r"""Average pooling per map: ``y[n, p, c] = (1/|t|) sum_t x_pad[n, p s + t, c]``.

    Args:
      x: ``(N, H, W, C)``.
      window, stride, padding: as in :func:`max_pool`; zeros are padded.
      count_include_pad: divide by the full window size (PyTorch's and Flax's default)
        or, if False, by the number of taps on the unpadded input.
      impl: ``"auto"``, ``"lax"``, ``"shift"`` (a sum over shifted windows) or
        ``"onednn"`` (oneDNN's pooling, forward and backward, on CPU).

    Returns:
      ``(N, H', W', C)``.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.ones((1, 3, 3, 1))
    >>> jconv.avg_pool(x, 2, stride=1, padding=((0, 1), (0, 1)))[0, :, :, 0].tolist()
    [[1.0, 1.0, 0.5], [1.0, 1.0, 0.5], [0.5, 0.5, 0.25]]
    >>> jconv.avg_pool(x, 2, stride=1, padding=((0, 1), (0, 1)),
    ...                count_include_pad=False)[0, :, :, 0].tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    x = _pool_input("avg_pool", x)
    plan = shapes.avg_pool(x.shape, window, stride=stride, padding=padding,
                           count_include_pad=count_include_pad)
    with dispatch.chosen("avg_pool", impl, plan, x.shape, x.dtype) as impl:
        return _avg_pool(x, plan=plan, impl=impl, count_include_pad=count_include_pad)


@functools.partial(jax.jit, static_argnames=("impl",))
def _global_avg_pool(x, *, impl):
    count = np.prod(x.shape[1:-1])
    if impl == "lax":
        total = lax.reduce(x, np.asarray(0, x.dtype), lax.add, tuple(range(1, x.ndim - 1)))
    else:
        total = jnp.einsum("n...c->nc", x)
    return total / count


def global_avg_pool(x, *, impl="auto"):
    r"""Mean of each map over all positions: ``y[n, c] = mean_p x[n, p, c]``.

    GoogLeNet's final 7×7 average pool on a 7×7 grid; NIN's replacement for FC layers.

    Args:
      x: ``(N, H, W, C)``.
      impl: ``"auto"``, ``"lax"`` (``lax.reduce``) or ``"einsum"`` (``jnp.einsum``).

    Returns:
      ``(N, C)``.

    >>> import jax.numpy as jnp, jconv
    >>> jconv.global_avg_pool(jnp.arange(8.0).reshape(1, 2, 2, 2)).tolist()
    [[3.0, 4.0]]
    """
    x = _pool_input("global_avg_pool", x)
    plan = shapes.global_avg_pool(x.shape)
    with dispatch.chosen("global_avg_pool", impl, plan, x.shape) as impl:
        return _global_avg_pool(x, impl=impl)


@functools.partial(jax.jit, static_argnames=("plan", "impl"))
def _channel_max_pool(x, *, plan, impl):
    win = plan.window
    if impl == "lax":
        ones = (1,) * (x.ndim - 1)
        return lax.reduce_window(x, np.asarray(-np.inf, x.dtype), lax.max,
                                 (*ones, *win.kernel), (*ones, *win.stride), "VALID")
    return _shift_max(x, win, (x.ndim - 1,))


def channel_max_pool(x, group_size, stride=None, *, impl="auto"):
    r"""Max across maps (maxout): ``y[n, p, j] = max_{i < g} x[n, p, j s + i]``.

    Pools over groups of ``g = group_size`` adjacent maps at every pixel, so the map
    count drops to ``(C - g) // stride + 1`` (``C / g`` for the default stride ``g``),
    while the spatial size is unchanged. No framework has it as an op; ``lax`` runs it
    as a ``reduce_window`` along the channel axis.

    Args:
      x: ``(N, H, W, C)``.
      group_size: maps per window.
      stride: step between windows along the maps, default ``group_size``.
      impl: ``"auto"``, ``"lax"`` or ``"shift"`` (a max over shifted windows of maps,
        with lax's NaN and gradient, as :func:`max_pool`).

    Returns:
      ``(N, H, W, C')``.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.array([1.0, 5.0, 2.0, 0.0, 3.0, 4.0]).reshape(1, 1, 1, 6)
    >>> jconv.channel_max_pool(x, 2).ravel().tolist()
    [5.0, 2.0, 4.0]
    """
    x = _pool_input("channel_max_pool", x)
    plan = shapes.channel_max_pool(x.shape, group_size, stride=stride)
    with dispatch.chosen("channel_max_pool", impl, plan, x.shape) as impl:
        return _channel_max_pool(x, plan=plan, impl=impl)


def _band_sum(v, *, lo, hi, precision):
    """``t[..., d] = sum of v[..., c] over d - lo <= c <= d + hi``: one einsum with a banded
    ``(C, C)`` matrix. Where ``v`` holds NaN or an infinity, a matmul alone would spread it
    over every map (0 * inf is NaN): then each band's NaN and infinities are put back as
    the band's sum has them, from a second einsum counting them."""
    c = np.arange(v.shape[-1])
    band = (c[:, None] >= c[None, :] - lo) & (c[:, None] <= c[None, :] + hi)  # (C, C)

    def finite(v):
        return jnp.einsum("...c,cd->...d", v, band.astype(v.dtype), precision=precision)

    def nonfinite(v):
        total = finite(jnp.where(jnp.isfinite(v), v, jnp.zeros((), v.dtype)))
        flags = jnp.stack([jnp.isnan(v), v == jnp.inf, v == -jnp.inf]).astype(np.float32)
        nans, pos, neg = jnp.einsum("k...c,cd->k...d", flags, band.astype(np.float32),
                                    precision=lax.Precision.HIGHEST) > 0  # (3, ..., C)
        special = jnp.where(nans | (pos & neg), jnp.nan, jnp.where(pos, jnp.inf, -jnp.inf))
        return jnp.where(nans | pos | neg, special.astype(v.dtype), total)
    return lax.cond(jnp.isfinite(v).all(), finite, nonfinite, v)


def _band_sum_batched(args, dims, **params):
    (v,), (d,) = args, dims
    if d == v.ndim - 1:  # the maps must stay last
        v, d = jnp.moveaxis(v, d, 0), 0
    return band_sum_p.bind(v, **params), d


# The band sum is linear: its transpose is the band sum with lo and hi swapped, exact too.
band_sum_p = Primitive("jconv_band_sum")
band_sum_p.def_impl(_band_sum)
band_sum_p.def_abstract_eval(lambda v, **params: jax.core.ShapedArray(v.shape, v.dtype))
mlir.register_lowering(band_sum_p, mlir.lower_fun(_band_sum, multiple_results=False))
ad.deflinear2(band_sum_p, lambda ct, v, *, lo, hi, precision: [
    band_sum_p.bind(ct, lo=hi, hi=lo, precision=precision)])
batching.primitive_batchers[band_sum_p] = _band_sum_batched


@functools.partial(jax.jit, static_argnames=("size", "k", "alpha", "beta", "impl",
                                             "precision"))
def _local_response_norm(x, *, size, k, alpha, beta, impl, precision=None):
    if impl == "onednn":
        return onednn_pool.local_response_norm(x, size, k, alpha, beta)
    if impl == "lax":
        return lrn.local_response_norm(x, size, k, alpha, beta)
    lo, hi = centered_pads(size)
    total = band_sum_p.bind(x * x, lo=lo, hi=hi, precision=precision)
    return lrn.normalize(x, total, k, alpha, beta)


def local_response_norm(x, size=5, k=2.0, alpha=1e-4, beta=0.75, *, impl="auto",
                        precision=None):
    r"""Local response normalisation across adjacent maps (AlexNet, section 3.3).

    .. math:: b_c = a_c \Big/ \Big(k + \alpha \sum_{c'=\max(0, c - \lfloor n/2 \rfloor)}
              ^{\min(C-1,\, c + \lfloor (n-1)/2 \rfloor)} a_{c'}^2\Big)^{\beta}

    with the paper's ``k=2, n=5, alpha=1e-4, beta=0.75`` as defaults. A per-pixel
    operation across maps: the map count is unchanged.

    **alpha conventions.** This is the paper's form: ``alpha`` multiplies the *sum*.
    PyTorch's ``nn.LocalResponseNorm(size, alpha, beta, k)`` multiplies the *mean*
    (``alpha/n``), so PyTorch's ``alpha`` is ``n`` times this one (``5e-4`` for the
    paper). TensorFlow's ``tf.nn.local_response_normalization`` and Caffe's
    ``WITHIN_CHANNEL``-free ``LRN`` differ too: TensorFlow takes ``depth_radius = n//2``
    and the sum form (its ``alpha`` equals this one); Caffe divides by ``n`` like PyTorch.

    Args:
      x: ``(N, H, W, C)``.
      size: ``n``, maps in each window (centred; for even ``n`` one more before).
      k, alpha, beta: constants of the formula.
      impl: ``"auto"``, ``"lax"`` (``reduce_window`` along maps), ``"einsum"`` (a banded
        ``(C, C)`` matrix, each band's NaN and infinities kept as lax's sum keeps them) or ``"onednn"`` (oneDNN's ``lrn_across_channels`` forward and
        backward on CPU, its ``jvp`` the lax form's; odd ``size`` only, even runs lax).
      precision: for the einsum's matmul.

    Returns:
      ``(N, H, W, C)``.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.full((1, 1, 1, 3), 10.0)
    >>> y = jconv.local_response_norm(x, size=3, k=1.0, alpha=0.01, beta=1.0)
    >>> [round(v, 5) for v in y.ravel().tolist()]    # 10 / (1 + 0.01 * (2 or 3) * 100)
    [3.33333, 2.5, 3.33333]
    """
    op = "local_response_norm"
    x = _args.floating(op, "x", x)
    plan = shapes.local_response_norm(x.shape, size, k, alpha, beta)
    with dispatch.chosen(op, impl, plan, x.shape, x.dtype) as impl:
        return _local_response_norm(x, size=size, k=float(k), alpha=float(alpha),
                                    beta=float(beta), impl=impl, precision=precision)


def _lrn_limits(impl, plan):
    """Why ``impl`` cannot run LRN with this plan (its window is ``size`` maps), if so."""
    return onednn_pool.lrn_unsupported(plan.window.kernel[0]) if impl == "onednn" else None


_MAX_JVP = ("Forward-mode derivatives (jvp) select the input tangent in JAX at the tap "
            "the forward recorded; reverse mode scatters to it in the extension")
_LRN_JVP = ("Forward-mode derivatives (jvp) and second derivatives take the lax form's "
            "derivative in JAX; reverse mode is oneDNN's backward")
_X = (2, 9, 9, 4)
for _spec in (
    registry.OpSpec("max_pool", max_pool, shapes.max_pool, ("lax", "shift", "onednn"),
                    weights=(), notes=dict(onednn=_MAX_JVP),
                    examples=(((_X, 3), dict(stride=2)), ((_X, 2), dict(padding="SAME"))),
                    **registry.forms("max_pool")),
    registry.OpSpec("avg_pool", avg_pool, shapes.avg_pool, ("lax", "shift", "onednn"),
                    weights=(),
                    examples=(((_X, 3), dict(stride=2)),
                              ((_X, 2), dict(padding="SAME", count_include_pad=False))),
                    **registry.forms("avg_pool")),
    registry.OpSpec("global_avg_pool", global_avg_pool, shapes.global_avg_pool,
                    ("lax", "einsum"), weights=(), examples=(((_X,), {}),),
                    **registry.forms("global_avg_pool", torch=False)),
    registry.OpSpec("channel_max_pool", channel_max_pool, shapes.channel_max_pool,
                    ("lax", "shift"), weights=(), examples=(((_X, 2), {}),),
                    **registry.forms("channel_max_pool", torch=False)),
    registry.OpSpec("local_response_norm", local_response_norm, shapes.local_response_norm,
                    ("lax", "einsum", "onednn"), weights=(), examples=(((_X,), dict(size=3)),),
                    notes=dict(onednn=_LRN_JVP), limits=_lrn_limits,
                    **registry.forms("local_response_norm")),
):
    registry.register(_spec)
