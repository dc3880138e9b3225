"""Type 1 and Type 2.1: the two readings of a conv layer that no framework implements.

After a first layer has produced ``C`` maps, a second layer of ``K`` filters of size
``kh×kw`` could

* **Type 1** (:func:`per_map_conv`): apply each 2-D filter to each map separately,
  giving ``C*K`` maps from ``K*kh*kw`` weights;
* **Type 2.1** (:func:`shared_filter_conv`): apply one 2-D filter to the same region of
  every map and sum, giving ``K`` maps from ``K*kh*kw`` weights;
* **Type 2.2** (:func:`jconv.conv`): use a full ``kh×kw×C`` kernel per filter, giving
  ``K`` maps from ``K*kh*kw*C`` weights. This is what every framework computes.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax

from jconv.onednn import matmul as onednn_matmul
from jconv.kernels import lax_nans
from jconv.kernels.combine import differentiated_by
from jconv.kernels.einsum_conv import channels_last_dnums, pad_and_dilate, shifted_windows
from jconv.kernels.lax_nans import lax_masks, nan_where, with_masks
from jconv.ops import _args, dispatch, padding, registry, shapes
from jconv.ops.conv import run_conv


def _inputs(op, x, w):
    x = _args.floating(op, "x", x)
    w = _args.floating(op, "w", w)
    return _args.common_dtype(x, w)


def _per_map_lax(x, w, plan, precision):
    n, c = x.shape[0], x.shape[-1]
    maps = jnp.moveaxis(x, -1, 1)  # (N, C, *S)
    maps = maps.reshape(n * c, *x.shape[1:-1], 1)  # (N*C, *S, 1)
    y = run_conv(maps, w[..., None, :], window=plan.window, groups=1,
                 mode=plan.padding_mode, impl="lax", precision=precision)  # (N*C, *S', K)
    y = y.reshape(n, c, *y.shape[1:])  # (N, C, *S', K)
    y = jnp.moveaxis(y, 1, -2)  # (N, *S', C, K)
    return y.reshape(*y.shape[:-2], c * w.shape[-1])  # (N, *S', C*K)


def _per_map_shift(x, w, plan, precision):
    c, k = x.shape[-1], w.shape[-1]
    win = plan.window
    xp, pads = padding.apply_mode(x, win.pads, plan.padding_mode)
    xp = pad_and_dilate(xp, pads)
    y = sum(xs[..., :, None] * w[tap].reshape((1,) * x.ndim + (k,))  # (N, *S', C, K)
            for tap, xs in shifted_windows(xp, win.kernel, win.stride, win.dilation,
                                           win.out_sizes))
    return y.reshape(*y.shape[:-2], c * k)  # (N, *S', C*K)


def _per_map_patches(x, w, plan, precision):
    """The window's taps stacked per map, then one contraction with the filters: its
    transpose in ``x`` reads ``dy`` once (one matmul over the filters), then adds the taps
    back in place."""
    c, k = x.shape[-1], w.shape[-1]
    windows = _windows(x, plan)
    taps = jnp.stack([xs for _, xs in windows], -1)  # (N, *S', C, T)
    w_taps = jnp.stack([w[tap] for tap, _ in windows])  # (T, K)
    y = jnp.einsum("...ct,tk->...ck", taps, w_taps, precision=precision)  # (N, *S', C, K)
    return y.reshape(*y.shape[:-2], c * k)  # (N, *S', C*K)


def _windows(x, plan):
    """``(tap, x's window at that tap)`` for every tap of the padded input."""
    win = plan.window
    xp, pads = padding.apply_mode(x, win.pads, plan.padding_mode)
    xp = pad_and_dilate(xp, pads)
    return list(shifted_windows(xp, win.kernel, win.stride, win.dilation, win.out_sizes))


def _per_map_gemm(x, w, plan, precision):
    """The windows stacked tap-major, ``P (T, N*S'*C)``, and ``y = Pᵀ w`` by oneDNN
    (:func:`jconv.onednn.matmul.linear_t`): its derivative in ``w`` is one GEMM,
    ``P @ dy`` with ``dy`` read in place as ``(N*S'*C, K)``, whose ``T × K`` accumulator
    stays in cache where the grouped conv's ``T × C*K`` one does not."""
    del precision  # oneDNN's float32 GEMM
    c, k = x.shape[-1], w.shape[-1]
    windows = _windows(x, plan)
    taps = jnp.stack([xs for _, xs in windows]).reshape(len(windows), -1)  # (T, N*S'*C)
    w_taps = jnp.stack([w[tap] for tap, _ in windows])  # (T, K)
    y = onednn_matmul.linear_t(taps, w_taps)  # (N*S'*C, K)
    return y.reshape(*x.shape[:1], *plan.window.out_sizes, c * k)  # (N, *S', C*K)


def _per_map_onednn(x, w, plan, precision):
    c, k = x.shape[-1], w.shape[-1]
    tiled = jnp.broadcast_to(w[..., None, None, :], (*w.shape[:-1], 1, c, k))  # (*k, 1, C, K)
    tiled = tiled.reshape(*w.shape[:-1], 1, c * k)  # (*k, 1, C*K): filter k at c*K + k
    return run_conv(x, tiled, window=plan.window, groups=c, mode=plan.padding_mode,
                    impl="onednn", precision=precision, like_lax=False)  # (N, *S', C*K)


def _like_lax_per_map(form, x, w, plan, like_lax: bool):
    """``form(x)`` with the NaNs that lax's one-map convs get from their zeros
    (:func:`jconv.kernels.lax_nans.lax_masks`): each map's masks, tiled over the maps.
    """
    if not like_lax:
        return form(x, w, plan)
    win = plan.window
    if plan.padding_mode != "zeros":  # no padding zeros: the masks of the padded maps
        x, pads = padding.apply_mode(x, win.pads, plan.padding_mode)
        plan = dataclasses.replace(plan, padding_mode="zeros", window=dataclasses.replace(
            win, in_sizes=x.shape[1:-1], pads=pads))
    masks = lax_masks(w[..., None, :], x.shape[1:-1], win.stride, plan.window.pads, win.dilation)
    if masks is not None:
        masks = (jnp.tile(masks[0], x.shape[-1]), masks[1])  # filter k at c*K + k; any map
    return with_masks(lambda x: form(x, w, plan), x, masks)


@functools.partial(jax.jit, static_argnames=("plan", "impl", "precision", "like_lax"))
def _per_map(x, w, *, plan: shapes.Plan, impl: str, precision=None, like_lax: bool = True):
    if impl == "lax":
        return _per_map_lax(x, w, plan, precision)
    if impl in ("onednn", "onednn_patches", "onednn_gemm"):
        def onednn_form(x, w, plan):
            one, patches, gemm = (functools.partial(f, plan=plan, precision=precision)
                                  for f in (_per_map_onednn, _per_map_patches, _per_map_gemm))
            if impl == "onednn":
                return one(x, w)
            # the input gradient by patches; the weight gradient by oneDNN's or by one GEMM
            return differentiated_by(one, patches, one if impl == "onednn_patches" else gemm)(x, w)
        return _like_lax_per_map(onednn_form, x, w, plan, like_lax)

    def shift_form(x, w, plan):
        forms = (functools.partial(f, plan=plan, precision=precision)
                 for f in (_per_map_shift, _per_map_lax))
        shift, lax_form = forms
        return differentiated_by(shift, lax_form, lax_form)(x, w) if impl == "shift_fwd" else shift(x, w)
    return _like_lax_per_map(shift_form, x, w, plan, like_lax)


def per_map_conv(x, w, stride=1, padding="SAME", dilation=1, *, padding_mode="zeros",
                 impl="auto", precision=None):
    r"""Type 1: every 2-D filter applied to every input map separately.

    .. math:: y[n, p, c K + k] = \sum_t x_{pad}[n, p s + t d, c]\, w[t, k]

    ``C`` maps and ``K`` filters give ``C*K`` output maps, ordered map-major: output
    ``c*K + k`` is input map ``c`` convolved with filter ``k``. The filters have
    ``K*kh*kw`` weights in all. Equals :func:`jconv.depthwise_conv` with channel
    multiplier ``K`` and the kernel tiled over the maps (tied weights); ``lax`` runs it
    by folding the maps into the batch, ``(N*C, H, W, 1)``.

    Args:
      x: ``(N, H, W, C)``.
      w: ``(kh, kw, K)``: ``K`` single-channel filters (no input-channel axis).
      stride, padding, dilation, padding_mode, precision: as in :func:`jconv.conv`.
      impl: ``"auto"``, ``"lax"`` (maps folded into the batch, one single-channel
        ``lax`` conv), ``"shift"`` (a broadcast multiply per tap), ``"shift_fwd"``
        (``shift`` forward, ``lax`` gradients), ``"onednn"`` (oneDNN's depthwise conv
        with multiplier ``K`` and the filters tiled over the maps, so the weight
        gradient sums over the maps; CPU, float32 and bfloat16, else ``lax``:
        :func:`jconv.which_impl` says why), ``"onednn_patches"`` (the same, with the
        input gradient of the patches form: one matmul of the cotangent over the
        filters, then the taps added back in place; ``auto`` on CPU below ``C*K =
        16384``) or ``"onednn_gemm"`` (``onednn_patches`` with the weight gradient as
        one oneDNN GEMM of the windows, stacked tap-major, with the cotangent read in
        place as ``(N*H'*W'*C, K)``; ``auto`` on CPU from ``C*K = 16384``).

    Returns:
      ``(N, H', W', C*K)``.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.stack([jnp.ones((4, 4)), 2 * jnp.ones((4, 4))], -1)[None]  # maps of 1s, 2s
    >>> y = jconv.per_map_conv(x, jnp.stack([jnp.ones((3, 3)), -jnp.ones((3, 3))], -1))
    >>> y.shape, y[0, 1, 1].tolist()   # [map0*f0, map0*f1, map1*f0, map1*f1]
    ((1, 4, 4, 4), [9.0, -9.0, 18.0, -18.0])
    """
    op = "per_map_conv"
    x, w = _inputs(op, x, w)
    plan = shapes.per_map_conv(x.shape, w.shape, stride=stride, padding=padding,
                               dilation=dilation, padding_mode=padding_mode)
    with dispatch.chosen(op, impl, plan, x.shape, x.dtype) as impl:
        return _per_map(x, w, plan=plan, impl=impl, precision=precision, like_lax=lax_nans.enabled())


def shared_filter_conv(x, w, stride=1, padding="SAME", dilation=1, *, padding_mode="zeros",
                       impl="auto", precision=None):
    r"""Type 2.1: one 2-D filter applied to the same region of all maps, summed.

    .. math:: y[n, p, k] = \sum_c \sum_t x_{pad}[n, p s + t d, c]\, w[t, k]
                         = \sum_t \Big(\sum_c x_{pad}[n, p s + t d, c]\Big) w[t, k]

    ``K`` filters give ``K`` maps from ``K*kh*kw`` weights. It is a Type 2.2 conv whose
    3-D kernel repeats the 2-D filter along the depth, so by linearity it equals a
    single-channel conv of the sum of the maps: ``impl="lax"`` runs the repeated 3-D
    kernel, ``impl="sum_maps"`` sums the maps first (``C`` times fewer multiplies).

    Args:
      x: ``(N, H, W, C)``.
      w: ``(kh, kw, K)``.
      stride, padding, dilation, padding_mode, impl, precision: as in :func:`jconv.conv`.

    Returns:
      ``(N, H', W', K)``.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.ones((1, 5, 5, 3))
    >>> y = jconv.shared_filter_conv(x, jnp.ones((3, 3, 2)), padding="VALID")
    >>> y.shape, float(y[0, 0, 0, 0])    # 3 maps x 9 taps
    ((1, 3, 3, 2), 27.0)
    """
    op = "shared_filter_conv"
    x, w = _inputs(op, x, w)
    plan = shapes.shared_filter_conv(x.shape, w.shape, stride=stride, padding=padding,
                                     dilation=dilation, padding_mode=padding_mode)
    with dispatch.chosen(op, impl, plan, x.shape) as impl:
        return _shared_filter(x, w, plan=plan, impl=impl, precision=precision,
                              like_lax=lax_nans.enabled())


@functools.partial(jax.jit, static_argnames=("plan", "impl", "precision", "like_lax"))
def _shared_filter(x, w, *, plan: shapes.Plan, impl: str, precision=None, like_lax: bool = True):
    c = x.shape[-1]
    if impl == "lax":
        w3 = jnp.broadcast_to(w[..., None, :], (*w.shape[:-1], c, w.shape[-1]))  # (kh, kw, C, K)
        return run_conv(x, w3, window=plan.window, groups=1, mode=plan.padding_mode,
                        impl="lax", precision=precision)
    total = jnp.sum(x, axis=-1, keepdims=True)  # (N, H, W, 1)
    # The one-map conv of the sum is a per-map conv of one map: shifted windows forward,
    # lax gradients (a one-channel shift conv's weight gradient is a slow reduction on CPU).
    y = _per_map(total, w, plan=plan, impl="shift_fwd", precision=precision, like_lax=like_lax)
    if not like_lax:
        return y
    off = jnp.zeros(y.shape, bool)
    return nan_where(y, lax.cond(jnp.any(~jnp.isfinite(w)),
                                 functools.partial(_unsummable, plan=plan), lambda x, w: off, x, w))


def _unsummable(x, w, plan):
    """Where lax's sum over the maps of ``x · w`` is NaN and ``(Σ x) · w`` is not.

    With an infinite weight at tap ``t``, lax forms ``x[c] · inf`` for every map ``c`` at
    that tap's pixel, and their sum is NaN where one is 0 or NaN, or where the signs differ;
    summing the maps first gives a signed infinity there; ``(N, *S', K)`` booleans.
    """
    mixed = (jnp.any((x == 0) | jnp.isnan(x), axis=-1, keepdims=True)
             | (jnp.any(x > 0, axis=-1, keepdims=True) & jnp.any(x < 0, axis=-1, keepdims=True)))
    win = plan.window
    mixed, pads = padding.apply_mode(mixed.astype(jnp.float32), win.pads, plan.padding_mode)
    bad = (~jnp.isfinite(w)).astype(jnp.float32)[..., None, :]  # (*k, 1, K)
    return lax.conv_general_dilated(mixed, bad, win.stride, pads, rhs_dilation=win.dilation,
                                    dimension_numbers=channels_last_dnums(x.ndim - 2)) > 0


_X = (2, 9, 9, 3)
for _spec in (
    registry.OpSpec("per_map_conv", per_map_conv, shapes.per_map_conv,
                    ("lax", "shift", "shift_fwd", "onednn", "onednn_patches", "onednn_gemm"),
                    examples=(((_X, (3, 3, 4)), {}), ((_X, (3, 2, 2)), dict(stride=2))),
                    **registry.forms("per_map_conv")),
    registry.OpSpec("shared_filter_conv", shared_filter_conv, shapes.shared_filter_conv,
                    ("lax", "sum_maps"),
                    examples=(((_X, (3, 3, 4)), {}),
                              ((_X, (3, 3, 2)), dict(padding="VALID", dilation=2))),
                    **registry.forms("shared_filter_conv")),
):
    registry.register(_spec)
