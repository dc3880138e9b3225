"""Cost of every convolution: the op's plan on the real shapes, times MACs per tap."""

from __future__ import annotations

from collections.abc import Sequence

from jconv.cost.counting import product, total
from jconv.cost.model import Cost, assemble, dims, taps, window_cost
from jconv.ops import registry, shapes
from jconv.ops._args import fail

__all__ = ["conv", "conv_transpose", "depth_sliding_conv", "depthwise_conv", "local_conv",
           "per_map_conv", "pointwise_conv", "separable_conv", "shared_filter_conv",
           "spatially_separable_conv"]


def _xw(op, x_shape, w_shape):
    return dims(op, "x_shape", x_shape), dims(op, "w_shape", w_shape)


def _one_weight(op, x_shape, w_shape, per_tap, *, dtype, bias, **op_kwargs) -> Cost:
    """A conv with one weight: its plan on the real shapes, ``per_tap(x, w)`` MACs per
    tap, output position and image."""
    x, w = _xw(op, x_shape, w_shape)
    plan = registry.get(op).plan(x, w, **op_kwargs)
    return window_cost(op, plan, per_tap=per_tap(x, w), x_shape=x, w_shapes=(w,), bias=bias,
                       dtype=dtype)


def conv(x_shape, w_shape, *, stride=1, padding="SAME", dilation=1, groups=1,
         padding_mode="zeros", dtype="float32", bias=True) -> Cost:
    """Type 2.2 (:func:`jconv.conv`): ``N*H'*W'*K*kh*kw*C/groups`` MACs.

    Args:
      x_shape: ``(N, H, W, C)``; ``N`` and ``C`` may be traced.
      w_shape: ``(kh, kw, C/groups, K)``; the last two may be traced.
      stride, padding, dilation, groups, padding_mode: as in :func:`jconv.conv`.
      dtype: element type for the byte counts.
      bias: count one bias per filter in ``params``.

    >>> conv((1, 14, 14, 6), (5, 5, 6, 16), padding="VALID").macs  # LeNet C3 as Type 2.2
    240000
    """
    return _one_weight("conv", x_shape, w_shape, lambda x, w: w[-2:], dtype=dtype, bias=bias,
                       stride=stride, padding=padding, dilation=dilation, groups=groups,
                       padding_mode=padding_mode)


def depthwise_conv(x_shape, w_shape, *, stride=1, padding="SAME", dilation=1,
                   padding_mode="zeros", dtype="float32", bias=True) -> Cost:
    """Depthwise (:func:`jconv.depthwise_conv`): ``N*H'*W'*C*M*kh*kw`` MACs.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shape: ``(kh, kw, 1, C*M)``.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`conv`.
    """
    return _one_weight("depthwise_conv", x_shape, w_shape, lambda x, w: w[-1:], dtype=dtype,
                       bias=bias, stride=stride, padding=padding, dilation=dilation,
                       padding_mode=padding_mode)


def pointwise_conv(x_shape, w_shape, *, stride=1, groups=1, dtype="float32",
                   bias=True) -> Cost:
    """1×1 (:func:`jconv.pointwise_conv`): ``N*H'*W'*K*C/groups`` MACs, all in bounds.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shape: ``(C/groups, K)``.
      stride, groups, dtype, bias: as in :func:`conv`.
    """
    return _one_weight("pointwise_conv", x_shape, w_shape, lambda x, w: w, dtype=dtype,
                       bias=bias, stride=stride, groups=groups)


def separable_conv(x_shape, w_depthwise_shape, w_pointwise_shape, *, stride=1,
                   padding="SAME", dilation=1, padding_mode="zeros", dtype="float32",
                   bias=True) -> Cost:
    """Depthwise-separable (:func:`jconv.separable_conv`): :func:`depthwise_conv` then
    :func:`pointwise_conv` on its output; one bias per final output map.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_depthwise_shape: ``(kh, kw, 1, C*M)``.
      w_pointwise_shape: ``(C*M, K)``.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`conv`.

    >>> d = depthwise_conv((1, 8, 8, 32), (3, 3, 1, 32)).macs
    >>> p = pointwise_conv((1, 8, 8, 32), (32, 64)).macs
    >>> separable_conv((1, 8, 8, 32), (3, 3, 1, 32), (32, 64)).macs == d + p
    True
    """
    op = "separable_conv"
    x = dims(op, "x_shape", x_shape)
    wd = dims(op, "w_depthwise_shape", w_depthwise_shape)
    wp = dims(op, "w_pointwise_shape", w_pointwise_shape)
    window = dict(stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    plan = shapes.separable_conv(x, wd, wp, **window)
    depthwise = depthwise_conv(x, wd, **window, dtype=dtype, bias=False)
    pointwise = pointwise_conv(depthwise.output_shape, wp, dtype=dtype, bias=False)
    return assemble(op, macs=total(depthwise.macs, pointwise.macs),
                    macs_in_bounds=total(depthwise.macs_in_bounds, pointwise.macs_in_bounds),
                    x_shape=x, out_shape=plan.out_shape, w_shapes=(wd, wp), bias=bias,
                    dtype=dtype)


def spatially_separable_conv(x_shape, w_shapes, *, stride=1, padding="SAME", dilation=1,
                             padding_mode="zeros", dtype="float32", bias=True) -> Cost:
    """One 1-D kernel per axis (:func:`jconv.spatially_separable_conv`): the sum of its stages.

    Stage ``a`` convolves along axis ``a`` only, with that axis' stride, dilation and
    padding: ``N * (sizes after the stage) * k_a * I_a * O_a`` MACs.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shapes: ``[(kh, 1, C, M), (1, kw, M, K)]``, one per spatial axis.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`conv`.

    >>> spatially_separable_conv((1, 7, 7, 3), [(5, 1, 3, 4), (1, 5, 4, 8)],
    ...                          padding="VALID").macs == 3*7*5*3*4 + 3*3*5*4*8
    True
    """
    op = "spatially_separable_conv"
    x = dims(op, "x_shape", x_shape)
    if not isinstance(w_shapes, Sequence) or isinstance(w_shapes, str):
        fail(op, "w_shapes", w_shapes, "a sequence of kernel shapes, one per spatial axis",
             TypeError)
    ws = [dims(op, f"w_shapes[{a}]", w) for a, w in enumerate(w_shapes)]
    plan = shapes.spatially_separable_conv(x, ws, stride=stride, padding=padding,
                                           dilation=dilation, padding_mode=padding_mode)
    sizes, macs, macs_in_bounds = x[1:-1], 0, 0
    for a, w in enumerate(ws):
        stage = plan.window.stage(a, sizes)
        dense, in_bounds = taps(stage, plan.padding_mode)
        macs = total(macs, product(x[0], *w[-2:], dense))
        macs_in_bounds = total(macs_in_bounds, product(x[0], *w[-2:], in_bounds))
        sizes = stage.out_sizes
    return assemble(op, macs=macs, macs_in_bounds=macs_in_bounds, x_shape=x,
                    out_shape=plan.out_shape, w_shapes=ws, bias=bias, dtype=dtype)


def per_map_conv(x_shape, w_shape, *, stride=1, padding="SAME", dilation=1,
                 padding_mode="zeros", dtype="float32", bias=True) -> Cost:
    """Type 1 (:func:`jconv.per_map_conv`): ``N*H'*W'*C*K*kh*kw`` MACs, ``C*K`` output maps.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shape: ``(kh, kw, K)``.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`conv`.
    """
    return _one_weight("per_map_conv", x_shape, w_shape, lambda x, w: (x[-1], w[-1]),
                       dtype=dtype, bias=bias, stride=stride, padding=padding,
                       dilation=dilation, padding_mode=padding_mode)


def shared_filter_conv(x_shape, w_shape, *, stride=1, padding="SAME", dilation=1,
                       padding_mode="zeros", dtype="float32", bias=True,
                       shortcut=False) -> Cost:
    """Type 2.1 (:func:`jconv.shared_filter_conv`) as defined: ``N*H'*W'*K*kh*kw*C`` MACs.

    That is the 3-D kernel repeating the 2-D filter along the depth, which
    ``impl="lax"`` runs. Type 2.1 is linear in the maps, so summing the maps first and
    running one single-channel conv gives the same output for ``N*H'*W'*K*kh*kw`` MACs
    plus ``N*H*W*(C-1)`` adds (``impl="sum_maps"``): ``shortcut=True`` counts that, and its
    ``flops`` are ``2*macs + N*H*W*(C-1)``.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shape: ``(kh, kw, K)``.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`conv`.
      shortcut: count the sum-the-maps algorithm.

    >>> shared_filter_conv((1, 8, 8, 16), (5, 5, 4), padding="VALID").macs    # 4*4*4*25*16
    25600
    >>> c = shared_filter_conv((1, 8, 8, 16), (5, 5, 4), padding="VALID", shortcut=True)
    >>> c.macs, c.flops                          # 4*4*4*25, 2*1600 + 8*8*15
    (1600, 4160)
    """
    op = "shared_filter_conv"
    window = dict(stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    if not shortcut:
        return _one_weight(op, x_shape, w_shape, lambda x, w: (x[-1], w[-1]), dtype=dtype,
                           bias=bias, **window)
    x, w = _xw(op, x_shape, w_shape)
    plan = shapes.shared_filter_conv(x, w, **window)
    dense, in_bounds = taps(plan.window, plan.padding_mode)
    macs, macs_in_bounds = product(x[0], w[-1], dense), product(x[0], w[-1], in_bounds)
    adds = product(*x[:-1], total(x[-1], -1))
    return assemble(op, macs=macs, macs_in_bounds=macs_in_bounds, x_shape=x,
                    out_shape=plan.out_shape, w_shapes=(w,), bias=bias, dtype=dtype,
                    flops=total(product(2, macs), adds),
                    flops_in_bounds=total(product(2, macs_in_bounds), adds))


def conv_transpose(x_shape, w_shape, *, stride=1, padding=0, output_padding=0, dilation=1,
                   groups=1, dtype="float32", bias=True) -> Cost:
    """Transposed conv (:func:`jconv.conv_transpose`) in scatter form.

    Dense: every input pixel times every tap, ``N*H*W*kh*kw*C/groups*K`` MACs (the same as
    the forward conv whose input-gradient it is). In-bounds: only the taps whose target
    lands inside the cropped output.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shape: ``(kh, kw, C/groups, K)``.
      stride, padding, output_padding, dilation, groups, dtype, bias: as in
        :func:`jconv.conv_transpose`.

    >>> c = conv_transpose((1, 4, 4, 8), (3, 3, 8, 2), stride=2, padding=1, output_padding=1)
    >>> c.macs, c.output_shape          # 4*4 pixels * 9 taps * 8 * 2
    (2304, (1, 8, 8, 2))
    """
    return _one_weight("conv_transpose", x_shape, w_shape, lambda x, w: w[-2:], dtype=dtype,
                       bias=bias, stride=stride, padding=padding,
                       output_padding=output_padding, dilation=dilation, groups=groups)


def local_conv(x_shape, w_shape, *, stride=1, padding="VALID", dilation=1,
               padding_mode="zeros", dtype="float32", bias=True) -> Cost:
    """Locally connected (:func:`jconv.local_conv`): the MACs of :func:`conv`, ``H'*W'``
    times the parameters.

    Args:
      x_shape: ``(N, H, W, C)``.
      w_shape: ``(H', W', kh, kw, C, K)``.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`conv`.
    """
    return _one_weight("local_conv", x_shape, w_shape, lambda x, w: w[-2:], dtype=dtype,
                       bias=bias, stride=stride, padding=padding, dilation=dilation,
                       padding_mode=padding_mode)


def depth_sliding_conv(x_shape, w_shape, *, stride=1, padding="VALID", dilation=1,
                       padding_mode="zeros", dtype="float32", bias=True) -> Cost:
    """A ``kd×kh×kw`` filter sliding over maps and space (:func:`jconv.depth_sliding_conv`):
    ``N*D'*H'*W'*K*kd*kh*kw`` MACs. ``C`` is a window axis, so it must be static.

    Args:
      x_shape: ``(N, H, W, C)``; ``C`` static.
      w_shape: ``(kd, kh, kw, K)``.
      stride, padding, dilation, padding_mode, dtype, bias: as in :func:`jconv.depth_sliding_conv`.

    >>> depth_sliding_conv((1, 42, 314, 1337), (3, 4, 5, 1)).output_shape
    (1, 1335, 39, 310, 1)
    """
    return _one_weight("depth_sliding_conv", x_shape, w_shape, lambda x, w: w[-1:],
                       dtype=dtype, bias=bias, stride=stride, padding=padding,
                       dilation=dilation, padding_mode=padding_mode)
