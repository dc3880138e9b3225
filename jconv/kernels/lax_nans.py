"""lax's NaNs where a non-finite weight meets the zeros that ``lax`` multiplies and other kernels skip.

``lax.conv_general_dilated`` multiplies its zero padding by the weights, and its input
gradient (the transposed conv) multiplies the zeros of the cotangent's dilation (a stride)
and padding (the taps past the output's edge) by them. Where a weight is ``inf`` or NaN,
``0 * inf = NaN`` lands in every output (or input-gradient) position that reaches such a zero
through such a weight. Kernels that leave the zeros out (shifted windows, patches, oneDNN)
give a number there instead. :func:`conv_like_lax` puts lax's NaNs back, so every
implementation propagates non-finite values exactly as ``lax`` does.

Which positions get NaN depends on the window and on where the weights are not finite, not
on the data, so masks say where: a position and a tap meet one of lax's zeros where they do
along any axis (:func:`_valid`), and a position is NaN where a tap with a non-finite weight
meets a zero there, over the input maps of a filter's group (forward) or the filters of an input
map's group (input gradient). XLA:CPU decides which zeros it multiplies: the forward pass and a
stride-1 input gradient multiply the padding; a strided input gradient multiplies the inserted
zeros and the padding when the conv is grouped or 3-D, and a dense 1-D or 2-D one skips them all
(measured; ``tests/test_nonfinite.py`` checks every op against lax). The masks are computed only
when some weight is not finite: a ``lax.cond`` whose branch computes them on the host
(``jax.pure_callback``, one call for XLA to compile; under ``vmap`` a select that calls it
every time). Where every weight is finite they cost one select on the output and one multiply
on the input gradient.

The data-dependent cases (an ``inf`` input times a zero weight, ``inf - inf`` in a sum) need no
mask: every kernel forms those products as lax does.

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
import functools

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


def _meets_zero(valid: list[np.ndarray], bad: np.ndarray) -> np.ndarray:
    """``(*P, C)``: whether some tap with a ``bad`` ``(*k, C)`` entry meets a zero there.

    Counts the bad taps that meet values, axis by axis (``Σ_t bad[t] Π_a valid_a``), and
    compares with all the bad taps: ``(*P, C)`` memory, never ``(*P, *k)``.
    """
    count = bad.astype(np.int64)  # (*k, C)
    for ok in valid:  # contract the leading tap axis, append its positions at the end
        count = np.tensordot(count, ok.astype(np.int64), axes=((0,), (1,)))
    count = np.moveaxis(count, 0, -1)  # (*P, C)
    return count < bad.sum(axis=tuple(range(len(valid))))


def _masks(w: np.ndarray, spatial, stride, pads, dilation, groups) -> tuple[np.ndarray, np.ndarray]:
    """``(forward, input_gradient)``, NumPy: where lax's output and input gradient are NaN from
    its zeros, shapes ``(1, *S', K)`` and ``(1, *S, C)`` (module docstring).
    """
    *k, cg, out = w.shape
    bad = ~np.isfinite(w)
    # Forward: filter o has a bad weight at tap t, over its group's input maps.
    forward = _meets_zero(_valid(spatial, w.shape, stride, pads, dilation, False),
                          bad.any(axis=-2))  # (*S', K)
    # Input gradient: input map i has a bad weight at tap t, over its group's filters.
    bad_i = bad.reshape(*k, cg, groups, out // groups).any(axis=-1)  # (*k, C/G, G)
    bad_i = np.moveaxis(bad_i, -1, -2).reshape(*k, cg * groups)  # (*k, C)
    if groups == 1 and len(k) <= 2 and any(s > 1 for s in stride):
        # XLA:CPU's strided dense 1-D and 2-D input gradient skips its zeros
        backward = np.zeros((*spatial, cg * groups), bool)
    else:
        backward = _meets_zero(_valid(spatial, w.shape, stride, pads, dilation, True), bad_i)
    return forward[None], backward[None]


def _host_masks(w, *, spatial, stride, pads, dilation, groups):
    """:func:`_masks` of ``w``, or of each of a leading batch of weights (``vmap``)."""
    w = np.asarray(w, np.float32)
    lead = w.shape[:w.ndim - len(spatial) - 2]
    out = [_masks(wb, spatial, stride, pads, dilation, groups)
           for wb in w.reshape(-1, *w.shape[len(lead):])]
    return tuple(np.stack([o[i] for o in out]).reshape(*lead, *out[0][i].shape) for i in range(2))


def _no_zeros(w_shape, pads, stride) -> bool:
    """Whether lax meets no zeros at all: one tap, no padding, stride 1."""
    return (all(s == 1 for s in w_shape[:-2]) and all(p == (0, 0) for p in pads)
            and all(s == 1 for s in stride))


def lax_masks(w, spatial, stride, pads, dilation, groups=1):
    """Where lax's conv of ``(N, *spatial, C)`` by ``w`` (``(*k, C/G, K)``) has NaN from its zeros.

    Returns ``(forward, input_gradient)`` boolean masks of shapes ``(1, *S', K)`` and
    ``(1, *S, C)``, all False unless some weight is not finite (then computed on the host, in a
    ``lax.cond``); or None where lax meets no zero (one tap, no padding, stride 1).
    """
    if _no_zeros(w.shape, pads, stride):
        return None
    out = [window.output_size(n, window.extent(k, d), st, p)
           for n, k, st, p, d in zip(spatial, w.shape[:-2], stride, pads, dilation)]
    off = (jnp.zeros((1, *out, w.shape[-1]), bool),
           jnp.zeros((1, *spatial, w.shape[-2] * groups), bool))
    w = lax.stop_gradient(w)  # the masks have no derivative
    host = functools.partial(_host_masks, spatial=spatial, stride=stride, pads=pads,
                             dilation=dilation, groups=groups)
    shapes = tuple(jax.ShapeDtypeStruct(o.shape, bool) for o in off)
    return lax.cond(jnp.any(~jnp.isfinite(w)),
                    lambda w: jax.pure_callback(host, shapes, w, vmap_method="expand_dims"),
                    lambda w: off, w)


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
