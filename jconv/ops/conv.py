"""Type 2.2 convolution and its factorisations: grouped, depthwise, pointwise, separable.

Letters: ``N`` batch, ``H W`` (or ``W``, or ``D H W``) spatial, ``C`` input maps, ``K``
filters; kernels ``H W I O``. All ops are channels-last and take 1, 2 or 3 spatial axes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
from jax import lax

from jconv import onednn
from jconv.kernels import lax_nans
from jconv.kernels.einsum_conv import channels_last_dnums, patch_conv, shift_conv
from jconv.kernels.lax_conv import hybrid_conv, split_conv
from jconv.kernels.lax_nans import conv_like_lax
from jconv.ops import _args, dispatch, padding, registry, shapes
from jconv.ops._args import Window


@functools.partial(jax.jit, static_argnames=("window", "groups", "mode", "impl", "precision", "like_lax"))
def run_conv(x, w, *, window: Window, groups: int, mode: str, impl: str, precision=None,
             like_lax: bool = True):
    """Channels-last grouped conv of a resolved ``window``; the engine of every conv op.

    Every ``impl`` puts NaN where lax's conv has it from a non-finite weight meeting lax's
    zeros (:func:`jconv.kernels.lax_nans.conv_like_lax`); ``like_lax=False`` leaves that to
    a caller whose lax form is another conv, or out (:func:`jconv.kernels.lax_nans.left_out`).
    """
    x, pads = padding.apply_mode(x, window.pads, mode)
    if impl == "lax":
        return lax.conv_general_dilated(
            x, w, window.stride, pads, rhs_dilation=window.dilation,
            dimension_numbers=channels_last_dnums(x.ndim - 2), feature_group_count=groups,
            precision=precision)
    core = {"shift": shift_conv, "patches": patch_conv, "split": split_conv,
            "hybrid": hybrid_conv, "onednn": onednn.conv}[impl]
    if not like_lax:
        return core(x, w, window.stride, pads, window.dilation, groups, precision=precision)
    return conv_like_lax(core, x, w, window.stride, pads, window.dilation, groups, precision=precision)


def _run(op, x, w, plan: shapes.Plan, impl, precision):
    """Resolves ``impl`` for ``plan`` and runs the conv under the ``op[impl]`` scope."""
    with dispatch.chosen(op, impl, plan, x.shape, x.dtype) as impl:
        return run_conv(x, w, window=plan.window, groups=plan.groups, mode=plan.padding_mode,
                        impl=impl, precision=precision, like_lax=lax_nans.enabled())


def conv(x, w, stride=1, padding="SAME", dilation=1, groups=1, *, padding_mode="zeros",
         impl="auto", precision=None):
    r"""Type 2.2 convolution: every filter is a full kernel spanning all input maps.

    .. math::

        y[n, p, k] = \sum_{t} \sum_{c \in g(k)} x_{pad}[n, p \cdot s + t \cdot d, c]\,
                     w[t, c - g_0(k), k]

    summed over kernel taps ``t`` and the input maps ``c`` of filter ``k``'s group
    (all ``C`` maps when ``groups == 1``). Each filter has ``kh*kw*C/groups`` weights:
    ``k1*k2*25`` for ``k2`` 5×5 filters on ``k1`` maps. Cross-correlation, as in every
    framework (no kernel flip). ``groups > 1`` splits maps and filters into independent
    towers (AlexNet's two GPUs); ``groups == C`` is a depthwise conv.

    Args:
      x: ``(N, H, W, C)`` input (1 to 3 spatial axes).
      w: ``(kh, kw, C/groups, K)`` kernel.
      stride, dilation: an int or one int per spatial axis.
      padding: ``"SAME"`` (output ``ceil(H/stride)``, odd pad at the end), ``"VALID"``,
        an int, one int per axis, or one ``(low, high)`` pair per axis.
      groups: number of groups; must divide ``C`` and ``K``.
      padding_mode: ``"zeros"``, ``"reflect"``, ``"edge"`` (alias ``"replicate"``) or
        ``"circular"``.
      impl: ``"auto"``, ``"lax"``, ``"shift"`` (shifted windows), ``"patches"``
        (im2col), ``"split"`` (one dense ``lax`` conv per group), ``"hybrid"`` (``lax``
        forward, weight gradient by shifted windows) or ``"onednn"`` (oneDNN on CPU,
        float32 and bfloat16, else ``lax``); see :func:`jconv.which_impl`.
      precision: passed to ``lax``/``einsum``, e.g. ``lax.Precision.HIGHEST``.

    The names mean the same in every op (:data:`jconv.ops.registry.IMPLS`).

    Returns:
      ``(N, H', W', K)`` with ``H' = (H + pad_lo + pad_hi - (kh-1)*d - 1) // stride + 1``.

    See Also:
      :func:`per_map_conv` (Type 1), :func:`shared_filter_conv` (Type 2.1),
      :func:`depthwise_conv`.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.ones((1, 6, 6, 4))       # 4 maps
    >>> w = jnp.ones((5, 5, 4, 8))       # 8 filters of 5x5x4
    >>> y = jconv.conv(x, w)
    >>> y.shape, float(y[0, 3, 3, 0])    # centre tap sees 5*5*4 ones
    ((1, 6, 6, 8), 100.0)
    >>> jconv.conv(x, jnp.ones((3, 3, 2, 8)), groups=2, padding="VALID").shape
    (1, 4, 4, 8)
    """
    x = _args.floating("conv", "x", x)
    w = _args.floating("conv", "w", w)
    x, w = _args.common_dtype(x, w)
    plan = shapes.conv(x.shape, w.shape, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, padding_mode=padding_mode)
    return _run("conv", x, w, plan, impl, precision)


def depthwise_conv(x, w, stride=1, padding="SAME", dilation=1, *, padding_mode="zeros",
                   impl="auto", precision=None):
    r"""Depthwise convolution: each input map gets its own ``M`` filters.

    .. math:: y[n, p, c M + m] = \sum_t x_{pad}[n, p s + t d, c]\, w[t, 0, c M + m]

    ``conv`` with ``groups = C``. Output maps are ordered map-major: map ``c``'s ``M``
    outputs are contiguous (as in Keras ``DepthwiseConv2D``). Unlike Type 1
    (:func:`per_map_conv`) the weights are not tied across maps.

    Args:
      x: ``(N, H, W, C)``.
      w: ``(kh, kw, 1, C*M)``; the channel multiplier is ``M = w.shape[-1] // C``.
      stride, padding, dilation, padding_mode, impl, precision: as in :func:`conv`.

    Returns:
      ``(N, H', W', C*M)``.

    >>> import jax.numpy as jnp, jconv
    >>> jconv.depthwise_conv(jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 1, 6))).shape
    (2, 8, 8, 6)
    """
    op = "depthwise_conv"
    x = _args.floating(op, "x", x)
    w = _args.floating(op, "w", w)
    x, w = _args.common_dtype(x, w)
    plan = shapes.depthwise_conv(x.shape, w.shape, stride=stride, padding=padding,
                                 dilation=dilation, padding_mode=padding_mode)
    return _run(op, x, w, plan, impl, precision)


def pointwise_conv(x, w, stride=1, groups=1, *, impl="auto", precision=None):
    r"""1×1 convolution: a learned linear mix of the maps at every pixel.

    .. math:: y[n, p, k] = \sum_{c \in g(k)} x[n, p s, c]\, w[c - g_0(k), k]

    With a nonlinearity after it, a per-pixel MLP (Network in Network); before a
    large kernel, a cheap depth reduction (GoogLeNet's "#3×3 reduce").

    Args:
      x: ``(N, H, W, C)``.
      w: ``(C/groups, K)``.
      stride: subsampling of the output grid.
      groups: splits maps and filters into groups, as in :func:`conv`.
      impl: ``"auto"``, ``"lax"``, ``"shift"``, ``"hybrid"`` or ``"onednn"``, as in
        :func:`conv`.
      precision: as in :func:`conv`.

    Returns:
      ``(N, ceil(H/stride), ceil(W/stride), K)``.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.arange(8.0).reshape(1, 2, 2, 2)
    >>> jconv.pointwise_conv(x, jnp.array([[1.0], [-1.0]]))[..., 0]  # map0 - map1
    Array([[[-1., -1.],
            [-1., -1.]]], dtype=float32)
    """
    op = "pointwise_conv"
    x = _args.floating(op, "x", x)
    w = _args.floating(op, "w", w, rank=2, shape_doc="(C/groups, K)")
    x, w = _args.common_dtype(x, w)
    plan = shapes.pointwise_conv(x.shape, w.shape, stride=stride, groups=groups)
    w = w.reshape((1,) * (x.ndim - 2) + w.shape)  # (1, 1, C/groups, K)
    return _run(op, x, w, plan, impl, precision)


def separable_conv(x, w_depthwise, w_pointwise, stride=1, padding="SAME", dilation=1, *,
                   padding_mode="zeros", impl="auto", precision=None):
    r"""Depthwise-separable convolution (MobileNet): depthwise, then pointwise.

    .. math:: y = \mathrm{pointwise}(\mathrm{depthwise}(x, w_d), w_p)

    Costs ``kh*kw*C*M + C*M*K`` weights and MACs per pixel instead of ``kh*kw*C*K``:
    a ratio ``1/K + 1/(kh*kw)`` for ``M = 1``.

    Args:
      x: ``(N, H, W, C)``.
      w_depthwise: ``(kh, kw, 1, C*M)``.
      w_pointwise: ``(C*M, K)``.
      stride, padding, dilation, padding_mode: of the depthwise step, as in :func:`conv`.
      impl: applied to both steps (``"patches"`` means patches for the depthwise step).
      precision: as in :func:`conv`.

    Returns:
      ``(N, H', W', K)``.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.ones((1, 8, 8, 4))
    >>> jconv.separable_conv(x, jnp.ones((3, 3, 1, 4)), jnp.ones((4, 16)), stride=2).shape
    (1, 4, 4, 16)
    """
    op = "separable_conv"
    x = _args.floating(op, "x", x)
    wd = _args.floating(op, "w_depthwise", w_depthwise)
    wp = _args.floating(op, "w_pointwise", w_pointwise, rank=2, shape_doc="(C*M, K)")
    x, wd, wp = _args.common_dtype(x, wd, wp)
    plan = shapes.separable_conv(x.shape, wd.shape, wp.shape, stride=stride, padding=padding,
                                 dilation=dilation, padding_mode=padding_mode)
    nd = x.ndim - 2
    with dispatch.chosen(op, impl, plan, x.shape, x.dtype) as impl:
        like_lax = lax_nans.enabled()
        y = run_conv(x, wd, window=plan.window, groups=plan.groups, mode=plan.padding_mode,
                     impl=impl, precision=precision, like_lax=like_lax)
        pointwise = shapes.pointwise_conv(y.shape, wp.shape)
        pointwise_impl = {"patches": "shift"}.get(impl, impl)  # one tap: patches == shift
        return run_conv(y, wp.reshape((1,) * nd + wp.shape),  # (1, 1, C*M, K)
                        window=pointwise.window, groups=1, mode="zeros", impl=pointwise_impl,
                        precision=precision, like_lax=like_lax)


def spatially_separable_conv(x, ws: Sequence, stride=1, padding="SAME", dilation=1, *,
                             padding_mode="zeros", impl="auto", precision=None):
    r"""Spatially separable convolution: a ``k×1`` conv, then a ``1×k`` conv.

    .. math:: y = \mathrm{conv}_{1 \times k_w}(\mathrm{conv}_{k_h \times 1}(x, w_0), w_1)

    Equals one ``kh×kw`` Type 2.2 conv whose kernel is
    ``W[i, j, c, k] = sum_m w_0[i, 0, c, m] * w_1[0, j, m, k]`` (rank ``M`` across the
    two spatial axes), with ``(kh + kw)`` taps per pixel instead of ``kh*kw``.
    Stride, padding and dilation of axis ``a`` are applied by the conv along ``a``, so
    the output grid is that of the full ``kh×kw`` conv. Generalises to 1 and 3 axes
    (one 1-D kernel per spatial axis).

    Args:
      x: ``(N, H, W, C)``.
      ws: one kernel per spatial axis, in axis order: ``ws[0]`` is ``(kh, 1, C, M)``,
        ``ws[1]`` is ``(1, kw, M, K)``.
      stride, padding, dilation, padding_mode, precision: as in :func:`conv`,
        for the full ``kh×kw`` window.
      impl: ``"auto"``, ``"lax"``, ``"shift"``, ``"patches"``, ``"hybrid"`` or
        ``"onednn"``, as in :func:`conv`, for both stages.

    Returns:
      ``(N, H', W', K)``.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.ones((1, 7, 7, 3))
    >>> ws = [jnp.ones((5, 1, 3, 4)), jnp.ones((1, 5, 4, 8))]
    >>> jconv.spatially_separable_conv(x, ws, padding="VALID").shape
    (1, 3, 3, 8)
    """
    op = "spatially_separable_conv"
    x = _args.floating(op, "x", x)
    if not isinstance(ws, Sequence) or isinstance(ws, str):
        _args.fail(op, "ws", type(ws).__name__, "a sequence of kernels, one per spatial axis",
                   TypeError)
    ws = [_args.floating(op, f"ws[{a}]", w) for a, w in enumerate(ws)]
    x, *ws = _args.common_dtype(x, *ws)
    plan = shapes.spatially_separable_conv(x.shape, [w.shape for w in ws], stride=stride,
                                           padding=padding, dilation=dilation,
                                           padding_mode=padding_mode)
    win = plan.window
    with dispatch.chosen(op, impl, plan, x.shape, x.dtype) as impl:
        for a, w in enumerate(ws):
            stage = win.stage(a, x.shape[1:-1])
            x = run_conv(x, w, window=stage, groups=1, mode=plan.padding_mode, impl=impl,
                         precision=precision, like_lax=lax_nans.enabled())
    return x


_X = (2, 9, 9, 8)
for _spec in (
    registry.OpSpec("conv", conv, shapes.conv,
                    ("lax", "shift", "patches", "split", "hybrid", "onednn"),
                    examples=(((_X, (3, 3, 8, 4)), {}),
                              ((_X, (3, 3, 4, 6)), dict(groups=2, stride=2)),
                              ((_X, (3, 3, 1, 8)), dict(groups=8, padding="VALID")),
                              (((2, 6, 6, 32), (3, 3, 32, 4)), dict(dilation=2)),
                              (((1, 10, 6), (3, 6, 4)), dict(padding_mode="reflect"))),
                    **registry.forms("conv")),
    registry.OpSpec("depthwise_conv", depthwise_conv, shapes.depthwise_conv,
                    ("lax", "shift", "patches", "onednn"),
                    examples=(((_X, (3, 3, 1, 16)), dict(stride=2)),),
                    **registry.forms("depthwise_conv")),
    registry.OpSpec("pointwise_conv", pointwise_conv, shapes.pointwise_conv,
                    ("lax", "shift", "hybrid", "onednn"),
                    examples=(((_X, (8, 4)), {}), ((_X, (4, 6)), dict(groups=2, stride=2))),
                    **registry.forms("pointwise_conv")),
    registry.OpSpec("separable_conv", separable_conv, shapes.separable_conv,
                    ("lax", "shift", "patches", "onednn"),
                    weights=("w_depthwise", "w_pointwise"),
                    examples=(((_X, (3, 3, 1, 8), (8, 5)), dict(stride=2)),),
                    **registry.forms("separable_conv")),
    registry.OpSpec("spatially_separable_conv", spatially_separable_conv,
                    shapes.spatially_separable_conv,
                    ("lax", "shift", "patches", "hybrid", "onednn"),
                    weights=("ws",),
                    examples=(((_X, [(3, 1, 8, 4), (1, 3, 4, 5)]), dict(stride=(2, 1))),),
                    **registry.forms("spatially_separable_conv")),
):
    registry.register(_spec)
