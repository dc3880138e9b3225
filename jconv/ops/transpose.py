"""Transposed (fractionally strided) convolution, with PyTorch's arguments."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jconv import onednn
from jconv.kernels.combine import differentiated_by
from jconv.kernels import lax_nans
from jconv.kernels.einsum_conv import channels_last_dnums, scatter_transpose_conv
from jconv.kernels.lax_nans import lax_masks, with_masks
from jconv.kernels.phase_transpose import phase_transpose_conv
from jconv.ops import _args, dispatch, registry, shapes


def _lax_transpose(x, w, win, groups, precision):
    nd = x.ndim - 2
    flipped = jnp.flip(w, axis=tuple(range(nd)))  # (*k, C/G, K), taps reversed
    pads = [(e - 1 - lo, e - 1 - hi) for e, (lo, hi) in zip(win.extent, win.pads)]
    return lax.conv_general_dilated(
        x, flipped, (1,) * nd, pads, lhs_dilation=win.stride, rhs_dilation=win.dilation,
        dimension_numbers=channels_last_dnums(nd), feature_group_count=groups,
        precision=precision)


def _scatter(x, w, win, groups, precision, full=False):
    return scatter_transpose_conv(x, w, win.stride, win.pads, win.dilation, groups,
                                  precision=precision, full=full)


def _scatter_full(x, w, win, groups, precision):
    return _scatter(x, w, win, groups, precision, full=True)


def _phase_convs(x, w, win, groups, precision):
    return phase_transpose_conv(x, w, win.stride, win.pads, win.dilation, groups,
                                precision=precision)


def _onednn(x, w, win, groups, precision):
    return onednn.conv_transpose(x, w, win.stride, win.pads, win.dilation, groups,
                                 sizes=win.in_sizes, precision=precision)


# Each combination: (forward, x term of the tangent, w term of the tangent).
_KERNELS = {
    "lax": (_lax_transpose,),
    # Every tap placed on the full output, then cropped; the weight gradient takes each
    # tap's inputs that land inside the output only, as lax's does (the cotangent of a
    # cropped position is zero: 0 * inf = NaN for an infinite input), while the input
    # gradient takes the zero cotangent of the crop, as lax's takes it within its padding
    # (NaN for an infinite weight).
    "shift": (_scatter_full, _scatter_full, _scatter),
    # Reverse mode transposes the x term into XLA's strided conv (fast) and the w term
    # into one strided slice and channel contraction per tap, instead of XLA's CPU
    # weight gradient of an input-dilated conv (about 15x slower).
    "hybrid": (_lax_transpose, _lax_transpose, _scatter),
    # Plain autodiff of the phase convs would take the weight gradient from XLA's CPU
    # weight-gradient conv of each phase: faster for the 4×4/2 64→32 decoder on 14×14
    # (forward+backward 2.6 ms against 3.4 ms), but 1.4x slower for the 3×3/2 256→128
    # one on 7×7 (5.6 ms against 4.0 ms; 2-core CPU, fp32, batch 4).
    "phases": (_phase_convs, _phase_convs, _scatter),
    # oneDNN's backward-data pass; its transposes are oneDNN's forward (x term) and
    # backward-weights (w term) passes.
    "onednn": (_onednn,),
}


@functools.partial(jax.jit, static_argnames=("plan", "impl", "precision", "like_lax"))
def _conv_transpose(x, w, *, plan: shapes.Plan, impl: str, precision=None, like_lax: bool = True):
    win = plan.window  # the forward conv whose input-VJP this is
    kernels = [functools.partial(k, win=win, groups=plan.groups, precision=precision)
               for k in _KERNELS[impl]]
    run = differentiated_by(*kernels) if len(kernels) > 1 else kernels[0]
    if impl == "lax" or not like_lax:
        return run(x, w)
    # lax's NaNs from its zeros: this op is the input gradient of the forward conv ``win``,
    # whose kernel has the maps and filters swapped, and its input gradient is that conv.
    *k, cg, out = w.shape
    groups = plan.groups
    w_forward = jnp.swapaxes(w.reshape(*k, cg, groups, out // groups), -1, -3)  # (*k, K/G, G, C/G)
    masks = lax_masks(w_forward.reshape(*k, out // groups, cg * groups), win.in_sizes,
                      win.stride, win.pads, win.dilation, groups)
    return with_masks(lambda x: run(x, w), x, masks and masks[::-1])


def conv_transpose(x, w, stride=1, padding=0, output_padding=0, dilation=1, groups=1, *,
                   impl="auto", precision=None):
    r"""Transposed convolution: the gradient of :func:`jconv.conv` with respect to its input.

    Every input pixel scatters its filter response onto a ``stride``-times finer grid:

    .. math::

        \tilde y[n, i s + t d, k] \mathrel{+}= \sum_{c \in g(k)} x[n, i, c]\,
        w[t, c - g_0(c), k], \qquad y = \tilde y[lo : F - hi + \mathrm{output\_padding}]

    with full size ``F = (H - 1) s + (k - 1) d + 1``, so

    ``H' = (H - 1)*stride - lo - hi + dilation*(k - 1) + output_padding + 1``.

    **From PyTorch.** ``torch.nn.ConvTranspose2d(C, K, k, stride=s, padding=p,
    output_padding=op, groups=g, dilation=d)`` equals
    ``conv_transpose(x, w, s, p, op, d, g)`` with ``x`` moved to NHWC and its weight
    ``(C, K/g, kh, kw)`` rearranged as
    ``weight.reshape(g, C/g, K/g, kh, kw).permute(3, 4, 1, 0, 2).reshape(kh, kw, C/g, K)``.
    No kernel flip is needed: like PyTorch, this op is the input-gradient of a
    cross-correlation. (``lax.conv_transpose`` instead flips only with
    ``transpose_kernel=True``, and Flax's ``ConvTranspose`` needs
    ``padding = dilation*(k - 1) - p`` to match PyTorch's ``p``.)

    Args:
      x: ``(N, H, W, C)``.
      w: ``(kh, kw, C/groups, K)``; group ``g`` maps input maps ``g*C/G ...`` to filters
        ``g*K/G ...``.
      stride: the upsampling factor, an int or one per axis.
      padding: what is cropped from the full output: an int ``p`` (PyTorch's, from both
        sides), one int per axis, ``(low, high)`` pairs, ``"VALID"`` (no crop) or
        ``"SAME"`` (output ``H*stride``: the gradient of a SAME conv).
      output_padding: extra positions added at the end of each axis, each smaller than
        ``max(stride, dilation)`` (PyTorch's rule); it resolves the output size a
        strided forward conv leaves ambiguous.
      dilation, groups: as in :func:`jconv.conv`.
      impl: ``"auto"``, ``"lax"`` (a conv over the zero-dilated input), ``"shift"``
        (strided placement of each tap's product; no multiply by an inserted zero),
        ``"hybrid"`` (``lax`` forward; the weight gradient by the ``shift`` form) or
        ``"phases"`` (one dense stride-1 ``lax`` conv per output phase ``position mod
        stride``, interleaved, no multiply by an inserted zero, see
        :mod:`jconv.kernels.phase_transpose`; the weight gradient by the ``shift`` form)
        or ``"onednn"`` (oneDNN's backward-data pass of the forward conv, its gradients
        oneDNN's forward and backward-weights passes; CPU, float32 and bfloat16, else
        ``lax``: :func:`jconv.which_impl` says why).
      precision: as in :func:`jconv.conv`.

    Returns:
      ``(N, H', W', K)``.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.ones((1, 4, 4, 8))
    >>> jconv.conv_transpose(x, jnp.ones((3, 3, 8, 2)), stride=2, padding=1,
    ...                      output_padding=1).shape   # PyTorch: (4-1)*2 - 2 + 2 + 1 + 1
    (1, 8, 8, 2)
    >>> jconv.conv_transpose(jnp.ones((1, 3, 1)), jnp.ones((2, 1, 1)), stride=2)[0, :, 0]
    Array([1., 1., 1., 1., 1., 1.], dtype=float32)
    """
    op = "conv_transpose"
    x = _args.floating(op, "x", x)
    w = _args.floating(op, "w", w)
    x, w = _args.common_dtype(x, w)
    plan = shapes.conv_transpose(x.shape, w.shape, stride=stride, padding=padding,
                                 output_padding=output_padding, dilation=dilation, groups=groups)
    with dispatch.chosen(op, impl, plan, x.shape, x.dtype) as impl:
        return _conv_transpose(x, w, plan=plan, impl=impl, precision=precision,
                               like_lax=lax_nans.enabled())


registry.register(registry.OpSpec(
    "conv_transpose", conv_transpose, shapes.conv_transpose,
    ("lax", "shift", "hybrid", "phases", "onednn"),
    examples=((((2, 5, 5, 6), (3, 3, 6, 4)), dict(stride=2, padding=1, output_padding=1)),
              (((2, 4, 4, 4), (4, 4, 2, 6)), dict(stride=2, groups=2))),
    **registry.forms("conv_transpose")))
