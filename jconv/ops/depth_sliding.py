"""A 3-D filter that slides across the stack of feature maps as well as over H and W."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jconv.kernels import lax_nans
from jconv.kernels.combine import differentiated_by
from jconv.kernels.lax_nans import lax_masks, with_masks
from jconv.kernels.window import Window
from jconv.ops import _args, dispatch, padding, registry, shapes
from jconv.ops.conv import run_conv


@functools.partial(jax.jit, static_argnames=("window", "mode", "precision"))
def _depth_taps_conv(x, w, *, window: Window, mode: str, precision=None):
    """The conv with the ``kd`` depth taps as input channels: one oneDNN conv of ``H W``.

    ``v[n, q s_d + u d_d]`` for ``u < kd`` is stacked as ``kd`` channels of image
    ``(n, q)``, so the ``(kd, kh, kw)`` filter is a dense ``kh×kw`` conv of ``kd`` maps
    (oneDNN takes at most 3 window axes; this needs only the spatial ones).
    """
    xp, ((lo, hi),) = padding.apply_mode(x, window.pads[:1], mode, axes=(x.ndim - 1,))
    xp = jnp.pad(xp, [(0, 0)] * (x.ndim - 1) + [(lo, hi)])  # zeros, where the mode left them
    (kd, *_), (s, *_), (d, *_), (depth, *_) = (window.kernel, window.stride,
                                                window.dilation, window.out_sizes)
    taps = jnp.stack([xp[..., u * d:u * d + (depth - 1) * s + 1:s] for u in range(kd)],
                     -1)  # (N, *S, D', kd)
    taps = jnp.moveaxis(taps, -2, 1)  # (N, D', *S, kd)
    n = x.shape[0]
    taps = taps.reshape(n * depth, *taps.shape[2:])  # (N*D', *S, kd)
    spatial = Window(*(field[1:] for field in (window.in_sizes, window.kernel, window.stride,
                                               window.dilation, window.pads, window.out_sizes)))
    y = run_conv(taps, jnp.moveaxis(w, 0, -2), window=spatial, groups=1, mode=mode,
                 impl="onednn", precision=precision, like_lax=False)  # (N*D', *S', K)
    return y.reshape(n, depth, *y.shape[1:])  # (N, D', *S', K)


def _like_lax_taps_conv(volume, w, plan: shapes.Plan, precision):
    """:func:`_depth_taps_conv` of ``volume`` ``(N, C, H, W, 1)``, with the NaNs that lax's 3-D
    conv of it gets from its zeros (:func:`jconv.kernels.lax_nans.lax_masks`)."""
    volume, pads = padding.apply_mode(volume, plan.window.pads, plan.padding_mode)
    win = dataclasses.replace(plan.window, in_sizes=volume.shape[1:-1], pads=pads)
    masks = (lax_masks(w[..., None, :], volume.shape[1:-1], win.stride, pads, win.dilation)
             if lax_nans.enabled() else None)
    return with_masks(lambda v: _depth_taps_conv(jnp.moveaxis(v[..., 0], 1, -1), w, window=win,
                                                 mode="zeros", precision=precision), volume, masks)


def depth_sliding_conv(x, w, stride=1, padding="VALID", dilation=1, *, padding_mode="zeros",
                       impl="auto", precision=None):
    r"""Slides a ``(kd, kh, kw)`` filter over the ``C`` maps as a depth axis, and over H, W.

    The ``C`` maps are read as one single-channel volume ``(N, D=C, H, W)``; each of the
    ``K`` filters is a ``kd×kh×kw`` block that moves along the map axis too:

    .. math:: y[n, q, p, k] = \sum_{u, t} v_{pad}[n, q s_d + u d_d, p s + t d]\, w[u, t, k]

    where ``v[n, c, p] = x[n, p, c]``. Unlike Type 2.2 (:func:`jconv.conv`), where a
    filter spans all ``C`` maps at once, here ``kd`` may be smaller than ``C``: the
    output keeps a depth axis ``D' = (C + pad - (kd - 1) d_d - 1) // s_d + 1``. With
    ``kd == C`` and no depth padding it is Type 2.2 with ``D' = 1``. Every output is a
    sum over its own window, so the order in which the filter visits positions does not
    change the result. A 3×4×5 filter over 1337 maps of 42×314 gives 1335×39×310
    positions (VALID).

    Args:
      x: ``(N, H, W, C)``: ``C`` maps (1 or 3 spatial axes also work).
      w: ``(kd, kh, kw, K)``.
      stride, dilation: an int, or one per window axis ``(depth, H, W)``.
      padding: as in :func:`jconv.conv`, for the axes ``(depth, H, W)``; default
        ``"VALID"``.
      padding_mode: as in :func:`jconv.conv`.
      impl: ``"auto"``, ``"lax"`` (a 3-D ``lax`` conv of the volume), ``"shift"``
        (shift-and-multiply), ``"shift_fwd"`` (``shift`` forward, ``lax`` gradients) or
        ``"onednn"`` (the ``kd`` depth taps stacked as channels, then one dense oneDNN
        conv over H, W with ``N*D'`` images; CPU, float32 and bfloat16, else ``lax``:
        :func:`jconv.which_impl` says why).
      precision: as in :func:`jconv.conv`.

    Returns:
      ``(N, D', H', W', K)``.

    >>> import jax, jax.numpy as jnp, jconv
    >>> x = jax.ShapeDtypeStruct((1, 42, 314, 1337), jnp.float32)   # 1337 maps of 42x314
    >>> w = jax.ShapeDtypeStruct((3, 4, 5, 1), jnp.float32)
    >>> jax.eval_shape(jconv.depth_sliding_conv, x, w).shape
    (1, 1335, 39, 310, 1)
    >>> jconv.depth_sliding_conv(jnp.ones((1, 6, 6, 10)), jnp.ones((3, 3, 3, 2)),
    ...                          stride=(2, 1, 1), padding="SAME").shape
    (1, 5, 6, 6, 2)
    """
    op = "depth_sliding_conv"
    x = _args.floating(op, "x", x)
    w = _args.floating(op, "w", w)
    x, w = _args.common_dtype(x, w)
    plan = shapes.depth_sliding_conv(x.shape, w.shape, stride=stride, padding=padding,
                                     dilation=dilation, padding_mode=padding_mode)
    with dispatch.chosen(op, impl, plan, x.shape, x.dtype) as impl:
        volume = jnp.moveaxis(x, -1, 1)[..., None]  # (N, C, H, W, 1)
        if impl == "onednn":
            return _like_lax_taps_conv(volume, w, plan, precision)
        forms = {name: functools.partial(run_conv, window=plan.window, groups=1,
                                         mode=plan.padding_mode, impl=name, precision=precision,
                                         like_lax=lax_nans.enabled())
                 for name in ("lax", "shift")}
        conv = (differentiated_by(forms["shift"], forms["lax"], forms["lax"])
                if impl == "shift_fwd" else forms[impl])
        return conv(volume, w[..., None, :])  # w as (kd, kh, kw, 1, K)


registry.register(registry.OpSpec(
    "depth_sliding_conv", depth_sliding_conv, shapes.depth_sliding_conv,
    ("lax", "shift", "shift_fwd", "onednn"),
    examples=((((2, 6, 7, 5), (3, 3, 3, 2)), {}),
              (((1, 6, 6, 6), (2, 3, 3, 2)), dict(stride=(2, 1, 1), padding="SAME"))),
    **registry.forms("depth_sliding_conv")))
