"""lax's NaNs where a non-finite weight meets the zeros that ``lax`` multiplies and other kernels skip.

``lax.conv_general_dilated`` multiplies its zero padding by the weights, and its input
gradient (the transposed conv) multiplies the zeros of the cotangent's dilation (a stride)
and padding (the taps past the output's edge) by them. Where a weight is ``inf`` or NaN,
``0 * inf = NaN`` lands in every output (or input-gradient) position that reaches such a zero
through such a weight. Kernels that leave the zeros out (shifted windows, patches, oneDNN)
give a number there instead. :func:`conv_like_lax` puts lax's NaNs back, so every
implementation propagates non-finite values exactly as ``lax`` does.

Which positions get NaN depends on the weights' non-finite pattern and the window only, not
on the data, so a probe finds them: ``lax`` itself, run on one image of ones with the weights
mapped to ``0`` (finite) or ``+inf`` (not). Its interior products are ``1 * w`` (``0`` or
``+inf``, never ``inf - inf``) and its zeros give ``0 * inf = NaN``, so the probe is NaN exactly
where lax's own result is. The probe reduces the weights over the channels it may (one input
map per group forward, one output map per group for the input gradient), so it costs about
``1 / (N · C/G)`` of the conv, and it runs only when some weight is not finite (a
``lax.cond``; under ``vmap`` a select that runs it always, still at that small cost).

The data-dependent cases (an ``inf`` input times a zero weight, ``inf - inf`` in a sum) need no
probe: every kernel forms those products as lax does.

>>> import jax.numpy as jnp, numpy as np
>>> from jconv.kernels.einsum_conv import shift_conv
>>> x = jnp.ones((1, 3, 3, 1)); w = jnp.ones((3, 3, 1, 1)).at[0, 0].set(jnp.inf)
>>> y = conv_like_lax(shift_conv, x, w, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
>>> np.isnan(np.asarray(y[0, ..., 0])).astype(int)   # lax: the taps over the padding
array([[1, 1, 1],
       [1, 0, 0],
       [1, 0, 0]])
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jconv.kernels import window

__all__ = ["conv_like_lax", "enabled", "lax_masks", "left_out", "nan_where", "with_masks"]


_MASKS = contextvars.ContextVar("jconv_lax_nans", default=True)


def enabled() -> bool:
    """Whether the ops put lax's NaNs back (True unless inside :func:`left_out`); an op reads it
    when called and passes it to its jitted parts as a static argument."""
    return _MASKS.get()


@contextlib.contextmanager
def left_out():
    """Ops traced inside leave lax's NaNs out: what XLA's cost analysis then counts is the
    kernels alone (:func:`jconv.measure.counting`). The masks run only where a weight is not
    finite, but XLA counts every branch of a ``lax.cond``."""
    token = _MASKS.set(False)
    try:
        yield
    finally:
        _MASKS.reset(token)


@jax.custom_jvp
def nan_where(a, mask):
    """``a`` with NaN where ``mask`` (broadcast); its tangent and cotangent pass through unchanged.

    >>> import jax, jax.numpy as jnp
    >>> jax.grad(lambda a: nan_where(a, jnp.array([True, False])).sum())(jnp.ones(2)).tolist()
    [1.0, 1.0]
    """
    return jnp.where(mask, jnp.asarray(jnp.nan, a.dtype), a)


@nan_where.defjvp
def _nan_where_jvp(primals, tangents):
    return nan_where(*primals), tangents[0]


@jax.custom_jvp
def _nan_backward(a, mask):
    """``a`` unchanged; its cotangent gets NaN where ``mask`` (broadcast): the tangent is
    multiplied by NaN there and by 1 elsewhere, a linear map whose transpose is the same."""
    return a


@_nan_backward.defjvp
def _nan_backward_jvp(primals, tangents):
    a, mask = primals
    return a, tangents[0] * jnp.where(mask, jnp.asarray(jnp.nan, a.dtype), jnp.ones((), a.dtype))


def _valid(spatial, w_shape, stride, pads, dilation, input_gradient: bool) -> list[np.ndarray]:
    """Per spatial axis, ``(P, k)`` booleans: where position ``P`` and tap ``k`` meet a value of
    lax's, not one of its zeros. ``P`` are the output positions, or the input positions for the
    input gradient; a position and a tap meet a zero where they do along any axis.

    Along an axis, tap ``t`` of output ``o`` reads input ``o·s + t·d − lo`` (a zero of the
    padding outside ``[0, H)``); in the input gradient, tap ``t`` of input ``p`` reads the
    cotangent at ``(p − t·d + lo) / s`` (a zero of the dilation where that is not a whole
    number, of the padding outside ``[0, O)``).
    """
    valid = []
    for n, k, s, (lo, hi), d in zip(spatial, w_shape[:-2], stride, pads, dilation):
        out = window.output_size(n, window.extent(k, d), s, (lo, hi))
        taps = np.arange(k) * d
        if input_gradient:
            at = np.arange(n)[:, None] - taps + lo  # (H, k): s times the cotangent's index
            valid.append((at % s == 0) & (at >= 0) & (at < out * s))
        else:
            at = np.arange(out)[:, None] * s + taps - lo  # (O, k): the input's index
            valid.append((at >= 0) & (at < n))
    return valid


def _meets_zero(valid: list[np.ndarray], bad):
    """``(*P, C)``: whether some tap with a ``bad`` ``(*k, C)`` entry meets a zero there.

    Counts the bad taps that meet values, axis by axis (``Σ_t bad[t] Π_a valid_a``, exact in
    float32), and compares with all the bad taps: ``(*P, C)`` memory, never ``(*P, *k)``.
    """
    count = bad.astype(jnp.float32)  # (*k, C)
    for ok in valid:  # contract the leading tap axis, append its positions at the end
        count = jnp.tensordot(count, jnp.asarray(ok, jnp.float32), axes=((0,), (1,)))
    count = jnp.moveaxis(count, 0, -1)  # (*P, C)
    total = jnp.sum(bad, axis=tuple(range(len(valid))), dtype=jnp.float32)  # (C,)
    return count < total.reshape((1,) * len(valid) + total.shape)


def _masks(w, spatial, stride, pads, dilation, groups):
    """``(forward, input_gradient)``: where lax's output and input gradient are NaN from its
    zeros, shapes ``(1, *S', K)`` and ``(1, *S, C)`` (module docstring).
    """
    *k, cg, out = w.shape
    bad = ~jnp.isfinite(w)
    # Forward: filter o has a bad weight at tap t, over its group's input maps.
    forward = _meets_zero(_valid(spatial, w.shape, stride, pads, dilation, False),
                          jnp.any(bad, axis=-2))  # (*S', K)
    # Input gradient: input map i has a bad weight at tap t, over its group's filters.
    bad_i = jnp.any(bad.reshape(*k, cg, groups, out // groups), axis=-1)  # (*k, C/G, G)
    bad_i = jnp.moveaxis(bad_i, -1, -2).reshape(*k, cg * groups)  # (*k, C)
    if groups == 1 and len(k) <= 2 and any(s > 1 for s in stride):
        # XLA:CPU's strided dense 1-D and 2-D input gradient skips its zeros
        backward = jnp.zeros((*spatial, cg * groups), bool)
    else:
        backward = _meets_zero(_valid(spatial, w.shape, stride, pads, dilation, True), bad_i)
    return forward[None], backward[None]


def _no_zeros(w_shape, pads, stride) -> bool:
    """Whether lax meets no zeros at all: one tap, no padding, stride 1."""
    return (all(s == 1 for s in w_shape[:-2]) and all(p == (0, 0) for p in pads)
            and all(s == 1 for s in stride))


def lax_masks(w, spatial, stride, pads, dilation, groups=1):
    """Where lax's conv of ``(N, *spatial, C)`` by ``w`` (``(*k, C/G, K)``) has NaN from its zeros.

    Returns ``(forward, input_gradient)`` boolean masks of shapes ``(1, *S', K)`` and
    ``(1, *S, C)``, all False unless some weight is not finite (then computed under a
    ``lax.cond``); or None where lax meets no zero (one tap, no padding, stride 1).
    """
    if _no_zeros(w.shape, pads, stride):
        return None
    out = [window.output_size(n, window.extent(k, d), st, p)
           for n, k, st, p, d in zip(spatial, w.shape[:-2], stride, pads, dilation)]
    off = (jnp.zeros((1, *out, w.shape[-1]), bool),
           jnp.zeros((1, *spatial, w.shape[-2] * groups), bool))
    return lax.cond(jnp.any(~jnp.isfinite(w)),
                    lambda w: _masks(w, spatial, stride, pads, dilation, groups), lambda w: off, w)


def with_masks(fn, x, masks):
    """``fn(x)`` with NaN where ``masks = (forward, input_gradient)`` say (None: ``fn(x)``).

    The forward mask broadcasts against ``fn(x)``, the input-gradient mask against ``x``;
    cotangents pass through unchanged elsewhere.
    """
    if masks is None:
        return fn(x)
    forward, backward = masks
    return nan_where(fn(_nan_backward(x, backward)), forward)


def conv_like_lax(core, x, w, stride, pads, dilation, groups, **kwargs):
    """``core(x, w, stride, pads, dilation, groups, **kwargs)`` with lax's NaNs from its zeros.

    ``core`` is a channels-last grouped conv kernel (``(N, *S, C)`` by ``(*k, C/G, K)``, pads
    of zeros, the signature of :func:`jconv.kernels.einsum_conv.shift_conv`) that computes
    lax's result wherever lax meets no zero (module docstring). The forward output and the input
    gradient get NaN where lax's have it from a non-finite weight meeting its zeros
    (:func:`lax_masks`); the weight gradient is ``core``'s own (lax's zeros there meet the
    input's padding, and a finite cotangent gives 0).
    """
    masks = lax_masks(w, x.shape[1:-1], stride, pads, dilation, groups)
    return with_masks(lambda x: core(x, w, stride, pads, dilation, groups, **kwargs), x, masks)
