"""Output shapes and parameter counts of every op, as pure functions of shapes.

Each op's public function resolves its arguments here before anything is traced, so a
shape mistake raises a ``ValueError`` naming the argument. The same resolution is
available without arrays::

    >>> from jconv.ops.shapes import output_shape, param_count
    >>> output_shape("conv", (8, 28, 28, 16), (5, 5, 16, 32), stride=2)
    (8, 14, 14, 32)
    >>> output_shape("per_map_conv", (8, 28, 28, 16), (5, 5, 32))  # Type 1: C*K maps
    (8, 28, 28, 512)
    >>> param_count("conv", (5, 5, 16, 32))  # k1*k2*25 weights + k2 biases
    12832
    >>> param_count("shared_filter_conv", (5, 5, 32), bias=False)  # k2*25
    800

Letters: ``N`` batch, ``H W`` (or ``D H W``) spatial, ``C`` input maps, ``K`` filters;
kernels ``H W I O``.

Batch, channel and filter counts may be traced integer scalars (under ``jit`` or
``vmap``, as :mod:`jconv.cost` passes them); spatial and kernel sizes must be static
ints, since they decide the window. A check that needs a traced value (``groups``
divides ``C``) is skipped, and the output shape holds the traced entries.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jconv.ops import _args, registry
from jconv.ops._args import fail
from jconv.kernels.window import Window, centered_pads, extent, same_pads, transposed_size


@dataclasses.dataclass(frozen=True)
class Plan:
    """An op's resolved geometry: its output shape and the sliding window it uses.

    ``out_shape`` holds traced entries where the input shapes do (batch, maps, filters).
    """

    out_shape: tuple[int, ...]
    window: Window | None = None
    groups: int = 1
    padding_mode: str = "zeros"


def _known(*values) -> bool:
    """Whether every value is a Python int (none is traced)."""
    return all(isinstance(v, int) for v in values)


def _size(value: Any):
    """A shape entry as an int; a traced integer scalar (under jit or vmap) as it is."""
    try:
        return int(value)
    except TypeError:  # jax.errors.ConcretizationTypeError for a traced value
        dtype = getattr(value, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer) or np.ndim(value) != 0:
            raise
        return value


def _shape(op: str, name: str, shape: Any, ranks: Sequence[int], doc: str) -> tuple[int, ...]:
    try:
        shape = tuple(_size(s) for s in shape)
    except TypeError:
        fail(op, name, shape, f"a shape tuple {doc}", TypeError)
    if len(shape) not in ranks:
        fail(op, name, shape, f"rank {' or '.join(map(str, ranks))}: {doc}")
    if any(s < 1 for s in shape if isinstance(s, int)):
        fail(op, name, shape, f"positive sizes: {doc}")
    return shape


_X_DOC = "(N, *spatial, C) with 1 to 3 spatial axes"


def _x(op: str, x_shape: Any) -> tuple[int, ...]:
    x_shape = _shape(op, "x.shape", x_shape, (3, 4, 5), _X_DOC)
    _args.require_static(op, "x.shape", x_shape[1:-1], "the spatial sizes")
    return x_shape


def _kernel(op, x_shape, w_shape, *, tail: int, doc: str, name: str = "w.shape"):
    """Checks that ``w`` has one kernel axis per spatial axis of ``x`` plus ``tail`` axes."""
    nd = len(x_shape) - 2
    return _shape(op, name, w_shape, (nd + tail,), doc.format(nd=nd))


def _grouped(op, x_shape, w_shape, kernel, *, groups, w_name="w", padding_mode="zeros",
             **window_kwargs) -> Plan:
    """Checks shared by grouped convs: ``w_shape`` ends in ``(C/groups, K)``.

    ``groups`` is a positive int, or a depthwise conv's ``C`` (which may be traced).
    """
    c, (i, k) = x_shape[-1], w_shape[-2:]
    if _known(c, groups) and c % groups:
        fail(op, "groups", groups, f"a divisor of the input channels C={c} (x.shape={x_shape})")
    if _known(c, i, groups) and i * groups != c:
        fail(op, f"{w_name}.shape", w_shape,
             f"kernel depth {w_name}.shape[-2] = C/groups = {c}/{groups} = {c // groups}, "
             f"got {i}")
    if _known(k, groups) and k % groups:
        fail(op, "groups", groups, f"a divisor of the filter count K={w_name}.shape[-1]={k}")
    mode = _args.padding_mode(op, padding_mode)
    win = _args.window(op, x_shape[1:-1], kernel, mode=mode, kernel_arg=w_name,
                       **window_kwargs)
    return Plan((x_shape[0], *win.out_sizes, k), win, groups, mode)


def conv(x_shape, w_shape, *, stride=1, padding="SAME", dilation=1, groups=1,
         padding_mode="zeros") -> Plan:
    op = "conv"
    x_shape = _x(op, x_shape)
    w_shape = _kernel(op, x_shape, w_shape, tail=2,
                      doc="(*kernel, C/groups, K) with {nd} kernel axes for x's spatial axes")
    return _grouped(op, x_shape, w_shape, w_shape[:-2],
                    groups=_args.positive_int(op, "groups", groups), stride=stride,
                    padding=padding, dilation=dilation, padding_mode=padding_mode)


def _depthwise(op, x_shape, w_shape, w_name, **window_kwargs) -> Plan:
    x_shape = _x(op, x_shape)
    c = x_shape[-1]
    w_shape = _kernel(op, x_shape, w_shape, tail=2, name=f"{w_name}.shape",
                      doc="(*kernel, 1, C*M) with {nd} kernel axes, M the channel multiplier")
    if _known(*w_shape[-2:], c) and (w_shape[-2] != 1 or w_shape[-1] % c):
        fail(op, f"{w_name}.shape", w_shape, f"(*kernel, 1, C*M) with C={c} input maps")
    return _grouped(op, x_shape, w_shape, w_shape[:-2], groups=c, w_name=w_name,
                    **window_kwargs)


def depthwise_conv(x_shape, w_shape, *, stride=1, padding="SAME", dilation=1,
                   padding_mode="zeros") -> Plan:
    return _depthwise("depthwise_conv", x_shape, w_shape, "w", stride=stride, padding=padding,
                      dilation=dilation, padding_mode=padding_mode)


def pointwise_conv(x_shape, w_shape, *, stride=1, groups=1) -> Plan:
    op = "pointwise_conv"
    x_shape = _x(op, x_shape)
    w_shape = _shape(op, "w.shape", w_shape, (2,), "(C/groups, K)")
    return _grouped(op, x_shape, w_shape, (1,) * (len(x_shape) - 2),
                    groups=_args.positive_int(op, "groups", groups), stride=stride,
                    padding="VALID", dilation=1)


def separable_conv(x_shape, w_depthwise_shape, w_pointwise_shape, *, stride=1, padding="SAME",
                   dilation=1, padding_mode="zeros") -> Plan:
    op = "separable_conv"
    depthwise = _depthwise(op, x_shape, w_depthwise_shape, "w_depthwise", stride=stride,
                           padding=padding, dilation=dilation, padding_mode=padding_mode)
    w_pointwise_shape = _shape(op, "w_pointwise.shape", w_pointwise_shape, (2,), "(C*M, K)")
    if (_known(w_pointwise_shape[0], depthwise.out_shape[-1])
            and w_pointwise_shape[0] != depthwise.out_shape[-1]):
        fail(op, "w_pointwise.shape", w_pointwise_shape,
             f"(C*M, K) with C*M = {depthwise.out_shape[-1]} depthwise outputs")
    return dataclasses.replace(depthwise, out_shape=(*depthwise.out_shape[:-1],
                                                     w_pointwise_shape[1]))


def spatially_separable_conv(x_shape, w_shapes, *, stride=1, padding="SAME", dilation=1,
                             padding_mode="zeros") -> Plan:
    """One 1-D kernel per spatial axis: ``w_shapes[a]`` is 1 on every spatial axis but ``a``."""
    op = "spatially_separable_conv"
    x_shape = _x(op, x_shape)
    nd = len(x_shape) - 2
    if not isinstance(w_shapes, Sequence) or len(w_shapes) != nd:
        fail(op, "ws", w_shapes, f"a sequence of {nd} kernels, one per spatial axis")
    channels = x_shape[-1]
    kernel = []
    for a, w_shape in enumerate(w_shapes):
        doc = (f"axis {a}'s kernel (*kernel, I, O) with {nd} kernel axes, "
               f"size 1 on every spatial axis but {a}")
        w_shape = _kernel(op, x_shape, w_shape, tail=2, doc=doc, name=f"ws[{a}].shape")
        if any(s != 1 for b, s in enumerate(w_shape[:-2]) if b != a):
            fail(op, f"ws[{a}].shape", w_shape, doc)
        if _known(w_shape[-2], channels) and w_shape[-2] != channels:
            fail(op, f"ws[{a}].shape", w_shape,
                 f"input depth w.shape[-2] = {channels} (the maps it receives)")
        kernel.append(w_shape[a])
        channels = w_shape[-1]
    mode = _args.padding_mode(op, padding_mode)
    win = _args.window(op, x_shape[1:-1], kernel, stride=stride, padding=padding,
                       dilation=dilation, mode=mode, kernel_arg="ws")
    return Plan((x_shape[0], *win.out_sizes, channels), win, 1, mode)


def _single_channel_filters(op, x_shape, w_shape, stride, padding, dilation, padding_mode):
    x_shape = _x(op, x_shape)
    w_shape = _kernel(op, x_shape, w_shape, tail=1,
                      doc="(*kernel, K): {nd} kernel axes and K filters, no channel axis")
    mode = _args.padding_mode(op, padding_mode)
    win = _args.window(op, x_shape[1:-1], w_shape[:-1], stride=stride, padding=padding,
                       dilation=dilation, mode=mode)
    return x_shape, w_shape, win, mode


def per_map_conv(x_shape, w_shape, *, stride=1, padding="SAME", dilation=1,
                 padding_mode="zeros") -> Plan:
    x_shape, w_shape, win, mode = _single_channel_filters(
        "per_map_conv", x_shape, w_shape, stride, padding, dilation, padding_mode)
    return Plan((x_shape[0], *win.out_sizes, x_shape[-1] * w_shape[-1]), win, 1, mode)


def shared_filter_conv(x_shape, w_shape, *, stride=1, padding="SAME", dilation=1,
                       padding_mode="zeros") -> Plan:
    x_shape, w_shape, win, mode = _single_channel_filters(
        "shared_filter_conv", x_shape, w_shape, stride, padding, dilation, padding_mode)
    return Plan((x_shape[0], *win.out_sizes, w_shape[-1]), win, 1, mode)


def conv_transpose(x_shape, w_shape, *, stride=1, padding=0, output_padding=0, dilation=1,
                   groups=1) -> Plan:
    """The plan's window is that of the forward conv whose input-VJP this op is.

    ``window.in_sizes`` are this op's output sizes, ``window.out_sizes`` its input sizes
    and ``window.pads`` the forward conv's padding, whose high side may be negative.
    """
    op = "conv_transpose"
    x_shape = _x(op, x_shape)
    nd = len(x_shape) - 2
    w_shape = _kernel(op, x_shape, w_shape, tail=2,
                      doc="(*kernel, C/groups, K) with {nd} kernel axes")
    groups = _args.positive_int(op, "groups", groups)
    c, (i, k) = x_shape[-1], w_shape[-2:]
    if _known(c, i) and (c % groups or i * groups != c):
        fail(op, "w.shape", w_shape, f"(*kernel, C/groups, K) with C={c}, groups={groups}")
    if _known(k) and k % groups:
        fail(op, "groups", groups, f"a divisor of the filter count K=w.shape[-1]={k}")
    stride = _args.int_tuple(op, "stride", stride, nd)
    dilation = _args.int_tuple(op, "dilation", dilation, nd)
    output_padding = _args.int_tuple(op, "output_padding", output_padding, nd, minimum=0)
    kernel = w_shape[:-2]
    _args.require_static(op, "w.shape", kernel, "the kernel sizes")
    extents = tuple(map(extent, kernel, dilation))
    for a, (op_, s, d) in enumerate(zip(output_padding, stride, dilation)):
        if op_ >= max(s, d):
            fail(op, "output_padding", output_padding,
                 f"values smaller than max(stride, dilation) = {max(s, d)} on axis {a}")
    pads = _args.explicit_pads(op, padding, nd)
    if pads == "VALID":
        pads = ((0, 0),) * nd
    elif pads == "SAME":  # the VJP of a SAME conv whose input has in*stride positions
        pads = tuple(same_pads(size * s, e, s)
                     for size, e, s in zip(x_shape[1:-1], extents, stride))
        output_padding = tuple(op_ + max(s - e, 0)
                               for op_, s, e in zip(output_padding, stride, extents))
    # The forward conv's padding; output_padding extends the output at the high end.
    forward_pads = tuple((lo, hi - op_) for (lo, hi), op_ in zip(pads, output_padding))
    out = tuple(map(transposed_size, x_shape[1:-1], extents, stride, forward_pads))
    if any(o < 1 for o in out):
        fail(op, "padding", padding, f"a crop that leaves a positive output size, got {out}")
    win = Window(out, tuple(kernel), stride, dilation, forward_pads, tuple(x_shape[1:-1]))
    return Plan((x_shape[0], *out, k), win, groups)


def local_conv(x_shape, w_shape, *, stride=1, padding="VALID", dilation=1,
               padding_mode="zeros") -> Plan:
    op = "local_conv"
    x_shape = _x(op, x_shape)
    nd = len(x_shape) - 2
    doc = (f"(*out_spatial, *kernel, C, K): {nd} output axes, {nd} kernel axes, "
           f"C={x_shape[-1]}, K")
    w_shape = _shape(op, "w.shape", w_shape, (2 * nd + 2,), doc)
    _args.require_static(op, "w.shape", w_shape[:nd], "the output positions")
    if _known(w_shape[-2], x_shape[-1]) and w_shape[-2] != x_shape[-1]:
        fail(op, "w.shape", w_shape, doc)
    mode = _args.padding_mode(op, padding_mode)
    win = _args.window(op, x_shape[1:-1], w_shape[nd:2 * nd], stride=stride, padding=padding,
                       dilation=dilation, mode=mode)
    if w_shape[:nd] != win.out_sizes:
        fail(op, "w.shape", w_shape,
             f"leading axes equal to the output positions {win.out_sizes}: {doc}")
    return Plan((x_shape[0], *win.out_sizes, w_shape[-1]), win, 1, mode)


def depth_sliding_conv(x_shape, w_shape, *, stride=1, padding="VALID", dilation=1,
                       padding_mode="zeros") -> Plan:
    """The window covers ``(C, *spatial)``: the stack of maps is the first window axis."""
    op = "depth_sliding_conv"
    x_shape = _x(op, x_shape)
    w_shape = _kernel(op, x_shape, w_shape, tail=2,
                      doc="(kd, *kernel, K): depth, {nd} spatial kernel axes, K filters")
    _args.require_static(op, "x.shape", x_shape[-1:], "C, the depth axis of the window")
    mode = _args.padding_mode(op, padding_mode)
    nd = len(x_shape) - 2
    win = _args.window(op, (x_shape[-1], *x_shape[1:-1]), w_shape[:-1], stride=stride,
                       padding=padding, dilation=dilation, mode=mode,
                       axis_names=["the map (depth) axis"] + [f"spatial axis {a}"
                                                              for a in range(nd)])
    return Plan((x_shape[0], *win.out_sizes, w_shape[-1]), win, 1, mode)


def _pool(op, x_shape, window, stride, padding):
    x_shape = _x(op, x_shape)
    nd = len(x_shape) - 2
    window = _args.int_tuple(op, "window", window, nd)
    win = _args.window(op, x_shape[1:-1], window, stride=window if stride is None else stride,
                       padding=padding, dilation=1, kernel_arg="window")
    if any(max(pad) >= k for pad, k in zip(win.pads, window)):
        fail(op, "padding", padding,
             f"less than the window {window} on each side, so no window sees only padding")
    return Plan((x_shape[0], *win.out_sizes, x_shape[-1]), win)


def max_pool(x_shape, window, *, stride=None, padding="VALID") -> Plan:
    return _pool("max_pool", x_shape, window, stride, padding)


def avg_pool(x_shape, window, *, stride=None, padding="VALID", count_include_pad=True) -> Plan:
    if not isinstance(count_include_pad, bool):
        fail("avg_pool", "count_include_pad", count_include_pad, "a bool", TypeError)
    return _pool("avg_pool", x_shape, window, stride, padding)


def global_avg_pool(x_shape) -> Plan:
    x_shape = _x("global_avg_pool", x_shape)
    return Plan((x_shape[0], x_shape[-1]))


def channel_max_pool(x_shape, group_size, *, stride=None) -> Plan:
    """The window slides along the channel axis only (``C`` may be traced: VALID)."""
    op = "channel_max_pool"
    x_shape = _x(op, x_shape)
    group_size = _args.positive_int(op, "group_size", group_size)
    stride = group_size if stride is None else _args.positive_int(op, "stride", stride)
    win = _args.window(op, x_shape[-1:], (group_size,), stride=stride, padding="VALID",
                       dilation=1, axis_names=["the channel axis"], kernel_arg="group_size")
    return Plan((*x_shape[:-1], win.out_sizes[0]), win)


def local_response_norm(x_shape, size=5, k=2.0, alpha=1e-4, beta=0.75) -> Plan:
    op = "local_response_norm"
    x_shape = _x(op, x_shape)
    _args.positive_int(op, "size", size)
    for name, value in (("k", k), ("alpha", alpha), ("beta", beta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(op, name, value, "a Python number", TypeError)
        if not math.isfinite(value):
            fail(op, name, value, "a finite number")
    if k < 0 or alpha < 0:
        fail(op, "k" if k < 0 else "alpha", k if k < 0 else alpha, "a non-negative number")
    c = x_shape[-1]  # the window of size maps, centred, slides along the maps
    return Plan(x_shape, Window((c,), (size,), (1,), (1,), (centered_pads(size),), (c,)))


def output_shape(op: str, *shapes, **kwargs) -> tuple[int, ...]:
    """Output shape of ``jconv.<op>`` for inputs of the given shapes and keyword arguments.

    Args:
      op: the op's name, e.g. ``"conv"``.
      *shapes: the shapes of the op's array arguments, in order.
      **kwargs: the op's keyword arguments (``stride``, ``padding``, ...), minus ``impl``.
    """
    return registry.get(op, "output_shape").plan(*shapes, **kwargs).out_shape


def _product_sum(*shapes) -> int:
    return sum(math.prod(s) for s in shapes)


def param_count(op: str, *w_shapes, bias: bool = True) -> int:
    """Learned parameters of ``jconv.<op>`` with weights of the given shapes.

    Biases (``bias=True``) are one per output map of the layer, except:
    ``per_map_conv`` has one per filter ``K`` (shared by that filter's ``C`` maps),
    ``local_conv`` one per output position and filter (unshared, like its weights), and
    separable ops one per final output map only. Pooling and LRN have none.

    >>> param_count("per_map_conv", (5, 5, 8))  # Type 1: k2*25 weights + k2 biases
    208
    >>> param_count("depthwise_conv", (3, 3, 1, 64))
    640
    """
    registry.get(op, "param_count")
    if (op == "spatially_separable_conv" and len(w_shapes) == 1
            and not isinstance(w_shapes[0][0], int)):
        w_shapes = tuple(w_shapes[0])  # its one weight argument is the list of kernels
    weights = _product_sum(*w_shapes)
    if op in ("max_pool", "avg_pool", "global_avg_pool", "channel_max_pool",
              "local_response_norm"):
        return 0
    if not w_shapes:
        fail("param_count", "w_shapes", w_shapes, f"the weight shapes of {op}")
    last = w_shapes[-1]
    if op == "local_conv":
        nd = (len(last) - 2) // 2
        return weights + bias * math.prod(last[:nd]) * last[-1]
    return weights + bias * last[-1]
