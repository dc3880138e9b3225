"""Locally connected convolution: the same window as a conv, unshared weights."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jconv.kernels.combine import differentiated_by
from jconv.kernels.einsum_conv import (channels_last_dnums, einsum_letters, pad_and_dilate,
                                       shifted_windows)
from jconv.ops import _args, dispatch, padding, registry, shapes


def _lax_local(x, w, win, pads, precision):
    nd = x.ndim - 2
    c, k = w.shape[-2:]
    # lax fuses the input window into I in (C, *kernel) order.
    wl = jnp.moveaxis(w, -2, nd)  # (*S', C, *k, K)
    wl = wl.reshape(*win.out_sizes, c * win.taps, k)  # (*S', C*T, K)
    return lax.conv_general_dilated_local(
        x, wl, win.stride, pads, win.kernel, rhs_dilation=win.dilation,
        dimension_numbers=channels_last_dnums(nd), precision=precision)


def _patch_local(x, w, win, pads, precision):
    nd = x.ndim - 2
    c, k = w.shape[-2:]
    xp = pad_and_dilate(x, pads)
    patches = jnp.stack([xs for _, xs in shifted_windows(xp, win.kernel, win.stride,
                                                         win.dilation, win.out_sizes)],
                        axis=-2)  # (N, *S', T, C)
    wt = w.reshape(*win.out_sizes, win.taps, c, k)  # (*S', T, C, K)
    s = einsum_letters(nd)
    return jnp.einsum(f"n{s}tc,{s}tck->n{s}k", patches, wt, precision=precision)


@functools.partial(jax.jit, static_argnames=("plan", "impl", "precision"))
def _local_conv(x, w, *, plan: shapes.Plan, impl: str, precision=None):
    win = plan.window
    x, pads = padding.apply_mode(x, win.pads, plan.padding_mode)
    lax_local, patch_local = (functools.partial(core, win=win, pads=pads, precision=precision)
                              for core in (_lax_local, _patch_local))
    if impl == "patches_grad":
        return differentiated_by(lax_local, patch_local, patch_local)(x, w)
    return {"lax": lax_local, "patches": patch_local}[impl](x, w)


def local_conv(x, w, stride=1, padding="VALID", dilation=1, *, padding_mode="zeros",
               impl="auto", precision=None):
    r"""Locally connected layer: a conv window whose weights differ at every output position.

    .. math:: y[n, p, k] = \sum_t \sum_c x_{pad}[n, p s + t d, c]\, w[p, t, c, k]

    Has ``H'*W'`` times the parameters of :func:`jconv.conv` with the same window; with
    the same kernel at every position it *is* ``conv``. (Keras 2's ``LocallyConnected2D``;
    ``lax.conv_general_dilated_local``.)

    Args:
      x: ``(N, H, W, C)``.
      w: ``(H', W', kh, kw, C, K)``: one ``(kh, kw, C, K)`` kernel per output position.
      stride, padding, dilation, padding_mode, precision: as in :func:`jconv.conv`
        (default padding ``"VALID"``).
      impl: ``"auto"``, ``"lax"``, ``"patches"`` (patches contracted per position) or
        ``"patches_grad"`` (``lax`` forward, gradients of the ``patches`` form).

    Returns:
      ``(N, H', W', K)``.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.ones((1, 4, 4, 2))
    >>> w = jnp.ones((2, 2, 3, 3, 2, 5)).at[0, 0].set(0.0)  # position (0, 0) switched off
    >>> y = jconv.local_conv(x, w)
    >>> y.shape, y[0, :, :, 0].tolist()
    ((1, 2, 2, 5), [[0.0, 18.0], [18.0, 18.0]])
    """
    op = "local_conv"
    x = _args.floating(op, "x", x)
    w = _args.floating(op, "w", w)
    x, w = _args.common_dtype(x, w)
    plan = shapes.local_conv(x.shape, w.shape, stride=stride, padding=padding,
                             dilation=dilation, padding_mode=padding_mode)
    with dispatch.chosen(op, impl, plan, x.shape) as impl:
        return _local_conv(x, w, plan=plan, impl=impl, precision=precision)


registry.register(registry.OpSpec(
    "local_conv", local_conv, shapes.local_conv, ("lax", "patches", "patches_grad"),
    examples=((((2, 6, 6, 3), (4, 4, 3, 3, 3, 4)), {}),
              (((1, 7, 7, 2), (3, 3, 3, 3, 2, 3)), dict(stride=2, padding="VALID"))),
    **registry.forms("local_conv")))

