"""PyTorch's form of each op, for side-by-side comparisons (the benchmark's ``torch`` column).

:data:`PORTS` maps an op's name to ``port(torch, shape_list, kwargs)``, which returns a
function of NHWC-shaped tensors computing ``jconv.<op>`` on arrays of those shapes with
those keyword arguments (``torch`` is the module, imported by the caller: jconv does not
depend on PyTorch). PyTorch convolves NCHW tensors, here in channels-last memory (its
fast CPU layout); a function returns None for a call PyTorch has no equal of (a pool's
asymmetric padding). Spatially separable kernels come as separate shapes
(``(x, w0, w1)``), as PyTorch takes them.
"""

from __future__ import annotations

from jconv.ops import registry


def _plan(op, shape_list, kw):
    return registry.get(op).plan(*shape_list, **kw)


def _conv_pads(plan):
    """PyTorch's symmetric ``padding`` and an ``F.pad`` list for any asymmetric rest."""
    pads = plan.window.pads
    sym = tuple(min(lo, hi) for lo, hi in pads)
    extra = []
    for (lo, hi), s in zip(reversed(pads), reversed(sym)):
        extra += [lo - s, hi - s]
    return sym, extra


def _nchw(torch, t):
    return t.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def _nhwc(t):
    return t.permute(0, 2, 3, 1)


def _oihw(w):
    return w.permute(3, 2, 0, 1).contiguous()


def _padded(F, x, plan):
    sym, extra = _conv_pads(plan)
    return (F.pad(x, extra) if any(extra) else x), sym


def _conv2d(F, plan):
    """NCHW ``x`` and an HWIO kernel ``w`` → the plan's conv (padding, stride, groups)."""
    def fn(x, w):
        x, sym = _padded(F, x, plan)
        return F.conv2d(x, _oihw(w), stride=plan.window.stride, padding=sym,
                        groups=plan.groups)
    return fn


def _conv1x1(F, stride=1):
    """NCHW ``x`` and a ``(C, K)`` matrix ``w`` → the 1×1 conv."""
    return lambda x, w: F.conv2d(x, w.T[:, :, None, None], stride=stride)


def _in_nhwc(torch, fn):
    """``fn`` of an NCHW first argument as a function of NHWC tensors."""
    return lambda x, *weights: _nhwc(fn(_nchw(torch, x), *weights))


def _windowed(torch, shape_list, kw, op):
    """``conv`` and ``depthwise_conv``: one (grouped) conv2d."""
    return _in_nhwc(torch, _conv2d(torch.nn.functional, _plan(op, shape_list, kw)))


def _pointwise(torch, shape_list, kw):
    return _in_nhwc(torch, _conv1x1(torch.nn.functional, kw.get("stride", 1)))


def separable_port(torch, shape_list, kw, activation=lambda t: t):
    """Depthwise then pointwise conv; ``activation`` after each (the MobileNet block)."""
    F = torch.nn.functional
    depthwise = _conv2d(F, _plan("depthwise_conv", shape_list[:2], kw))
    pointwise = _conv1x1(F)
    return _in_nhwc(torch, lambda x, wd, wp: activation(pointwise(activation(depthwise(x, wd)),
                                                                  wp)))


def _spatially_separable(torch, shape_list, kw):
    F = torch.nn.functional
    plan = _plan("spatially_separable_conv", (shape_list[0], shape_list[1:]), kw)
    (hlo, hhi), (wlo, whi) = plan.window.pads

    def fn(x, w0, w1):
        h = F.conv2d(F.pad(x, [0, 0, hlo, hhi]), _oihw(w0))
        return F.conv2d(F.pad(h, [wlo, whi, 0, 0]), _oihw(w1))
    return _in_nhwc(torch, fn)


def _per_map(torch, shape_list, kw):
    F = torch.nn.functional
    plan = _plan("per_map_conv", shape_list, kw)

    def fn(x, w):
        n, h, wd, c = x.shape
        maps = x.permute(0, 3, 1, 2).reshape(n * c, 1, h, wd)
        maps, sym = _padded(F, maps, plan)
        y = F.conv2d(maps, w.permute(2, 0, 1)[:, None], stride=plan.window.stride,
                     padding=sym)  # (N*C, K, H', W')
        return y.reshape(n, c, *y.shape[1:]).permute(0, 3, 4, 1, 2).flatten(3)
    return fn


def _shared_filter(torch, shape_list, kw):
    F = torch.nn.functional
    plan = _plan("shared_filter_conv", shape_list, kw)

    def fn(x, w):
        total, sym = _padded(F, x.sum(-1)[:, None], plan)
        return _nhwc(F.conv2d(total, w.permute(2, 0, 1)[:, None], stride=plan.window.stride,
                              padding=sym))
    return fn


def _conv_transpose(torch, shape_list, kw):
    F = torch.nn.functional
    return _in_nhwc(torch, lambda x, w: F.conv_transpose2d(
        x, w.permute(2, 3, 0, 1).contiguous(), stride=kw["stride"], padding=kw["padding"],
        output_padding=kw.get("output_padding", 0)))


def _local(torch, shape_list, kw):
    def fn(x, w):
        ho, wo, kh, kwid, c, k = w.shape
        cols = torch.nn.functional.unfold(x.permute(0, 3, 1, 2), (kh, kwid))  # (N, C*T, L)
        wl = w.permute(0, 1, 4, 2, 3, 5).reshape(ho * wo, c * kh * kwid, k)  # (L, C*T, K)
        y = torch.bmm(cols.permute(2, 0, 1), wl)  # (L, N, K)
        return y.permute(1, 0, 2).reshape(x.shape[0], ho, wo, k)
    return fn


def _depth_sliding(torch, shape_list, kw):
    def fn(x, w):
        y = torch.nn.functional.conv3d(x.permute(0, 3, 1, 2)[:, None],
                                       w.permute(3, 0, 1, 2)[:, None])
        return y.permute(0, 2, 3, 4, 1)
    return fn


def _pool(torch, shape_list, kw, op):
    F = torch.nn.functional
    plan = _plan(op, shape_list, kw)
    pool = {"max_pool": F.max_pool2d, "avg_pool": F.avg_pool2d}[op]

    def fn(x):
        sym, extra = _conv_pads(plan)
        if any(extra):
            return None
        return _nhwc(pool(_nchw(torch, x), plan.window.kernel, plan.window.stride, sym))
    return fn


def _lrn(torch, shape_list, kw):
    F = torch.nn.functional
    return _in_nhwc(torch, lambda x: F.local_response_norm(x, 5, alpha=5e-4, beta=0.75, k=2.0))


PORTS = {
    "conv": lambda torch, s, kw: _windowed(torch, s, kw, "conv"),
    "depthwise_conv": lambda torch, s, kw: _windowed(torch, s, kw, "depthwise_conv"),
    "pointwise_conv": _pointwise,
    "separable_conv": separable_port,
    "spatially_separable_conv": _spatially_separable,
    "per_map_conv": _per_map,
    "shared_filter_conv": _shared_filter,
    "conv_transpose": _conv_transpose,
    "local_conv": _local,
    "depth_sliding_conv": _depth_sliding,
    "max_pool": lambda torch, s, kw: _pool(torch, s, kw, "max_pool"),
    "avg_pool": lambda torch, s, kw: _pool(torch, s, kw, "avg_pool"),
    "local_response_norm": _lrn,
}
"""``op`` → ``port(torch, shape_list, kwargs)``: PyTorch's form of ``jconv.<op>``; attached
to each op's :class:`~jconv.ops.registry.OpSpec` as ``torch``."""
