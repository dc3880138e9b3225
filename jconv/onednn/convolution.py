"""oneDNN convolutions inside XLA programs: three JAX primitives over FFI handlers.

Letters: ``N`` batch, ``*S`` (``H W``; or ``W``; or ``D H W``) spatial, ``C`` input maps,
``K`` filters, ``G`` groups; kernels ``(*k, C/G, K)`` (``H W I O``). The three passes of
a convolution are three primitives, each a custom call into ``csrc/onednn_conv.cc``:

.. math::

    y &= \\mathrm{fwd}(x, w)                   && (N, *S', K) \\\\
    \\bar x &= \\mathrm{bwd\\_data}(\\bar y, w)   && (N, *S, C)
      = (\\partial y / \\partial x)^T \\bar y \\\\
    \\bar w &= \\mathrm{bwd\\_weights}(x, \\bar y) && (*k, C/G, K)
      = (\\partial y / \\partial w)^T \\bar y

Each is bilinear, and the transpose of each in either argument is another of the three
(``ad.defbilinear``), so ``grad``, ``vjp``, ``jvp``, ``jacfwd`` and ``hessian`` run
oneDNN in every pass. :func:`conv` binds the forward pass; :func:`conv_transpose` (a
transposed conv) binds backward-data, so its own gradients are the forward pass (in
``x``) and backward-weights (in ``w``). ``vmap`` is one wider call, never a loop
(:func:`_batcher`). In a ``jit`` over several devices each pass runs on each device's
rows of the batch, and backward-weights sums the devices' partial gradients.

Each primitive comes from the factory of :mod:`.primitive` (lowering, batch split over
several devices, vmap, transposes); the shared library is loaded on first use by
:mod:`.library` (:func:`status`), and ``JCONV_DISABLE_ONEDNN=1`` turns the backend off,
checked on every call. float32 runs as float32; bfloat16 runs in
oneDNN's bfloat16 kernels where the CPU has them (avx512_core and newer), else in float32
and is rounded back. Accumulation is always float32, whatever ``precision`` says.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jconv.onednn import library, primitive
from jconv.onednn.library import DISABLE_ENV, disabled, status, turned_off
from jconv.kernels.window import extent, output_size

__all__ = ["DISABLE_ENV", "DTYPES", "cache_size", "conv", "conv_transpose", "disabled",
           "set_cache_capacity", "status", "turned_off", "unavailable"]

DTYPES = ("float32", "bfloat16")
"""The dtypes oneDNN computes; others run another kernel (:func:`unavailable`)."""


def unavailable(backend: str, dtype) -> str | None:
    """None if oneDNN can run a conv of ``dtype`` on ``backend``, else why not."""
    if backend != "cpu":
        return f"oneDNN runs on the CPU, and this call runs on {backend}"
    name = np.dtype(dtype).name
    if name not in DTYPES:
        return f"oneDNN computes float32 and bfloat16, not {name}"
    st = status()
    return None if st.available else st.reason


def cache_size() -> int:
    """Primitives in the extension's cache (bounded, least recently used evicted first)."""
    return library.cache_size("conv")


def set_cache_capacity(capacity: int) -> None:
    """Bounds the extension's primitive cache (default 256)."""
    library.set_cache_capacity("conv", capacity)


# --------------------------------------------------------------------------- vmap


def _fold_maps(a):
    """``(B, N, *S, C) -> (N, *S, B*C)``: B copies side by side as B times the groups."""
    return jnp.moveaxis(a, 0, -2).reshape((*a.shape[1:-1], a.shape[0] * a.shape[-1]))


def _unfold_maps(y, size):
    """``(N, *S, B*C) -> (B, N, *S, C)``: the inverse of :func:`_fold_maps`."""
    return jnp.moveaxis(y.reshape((*y.shape[:-1], size, y.shape[-1] // size)), -2, 0)


def _fold_filters(a, groups):
    """``(B, ..., K) -> (..., G*B*K/G)``: B sets of filters as more filters per group."""
    b, k = a.shape[0], a.shape[-1]
    a = a.reshape((*a.shape[:-1], groups, k // groups))  # (B, ..., G, K/G)
    return jnp.moveaxis(a, 0, -2).reshape((*a.shape[1:-2], b * k))


def _unfold_filters(y, size, groups):
    """``(..., G*B*K/G) -> (B, ..., K)``: the inverse of :func:`_fold_filters`."""
    k = y.shape[-1] // size
    y = jnp.moveaxis(y.reshape((*y.shape[:-1], groups, size, k // groups)), -2, 0)
    return y.reshape((*y.shape[:-2], k))


def _fold_weights(w):
    """``(B, *k, C/G, K) -> (*k, C/G, B*K)``: B kernels as B times the groups."""
    return jnp.moveaxis(w, 0, -2).reshape((*w.shape[1:-1], w.shape[0] * w.shape[-1]))


def _batcher(name: str):
    """vmap as one wider oneDNN call, never a loop.

    A batched activation alone (``x`` of forward, ``dy`` of backward-data) merges into
    ``N``; batched filters alone (``w`` of forward, ``dy`` of backward-weights) become
    more filters per group, as vmap over a kernel does for ``lax``; otherwise both are
    batched (the other broadcast) and the B copies run as B times the groups.
    """
    def make(prim):
        def rule(args, dims, *, groups, **params):
            size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
            (a, b), (ba, bb) = ([x if d is None else jnp.moveaxis(x, d, 0)
                                 for x, d in zip(args, dims)], [d is not None for d in dims])
            if ba and not bb and name in ("fwd", "bwd_data"):
                out = prim.bind(a.reshape((size * a.shape[1], *a.shape[2:])), b, groups=groups,
                                **params)  # (B*N, *S, C)
                return out.reshape((size, a.shape[1], *out.shape[1:])), 0
            if bb and not ba and name in ("fwd", "bwd_weights"):
                out = prim.bind(a, _fold_filters(b, groups), groups=groups, **params)
                return _unfold_filters(out, size, groups), 0
            a = a if ba else jnp.broadcast_to(a, (size, *a.shape))
            b = b if bb else jnp.broadcast_to(b, (size, *b.shape))
            wide = dict(params, groups=size * groups)
            if name == "bwd_weights":  # (x, dy) -> dw
                return _unfold_maps(prim.bind(_fold_maps(a), _fold_maps(b), **wide), size), 0
            out = prim.bind(_fold_maps(a), _fold_weights(b), **wide)  # (x or dy, w)
            return _unfold_maps(out, size), 0
        return rule
    return make


# --------------------------------------------------------------------------- primitives


def _out_shape(x_shape, w_shape, stride, dilation, pads):
    out = tuple(output_size(s, extent(k, d), st, p) for s, k, d, st, p in
                zip(x_shape[1:-1], w_shape[:-2], dilation, stride, pads))
    return (x_shape[0], *out, w_shape[-1])  # (N, *S', K)


def _fwd_abstract(x, w, *, stride, dilation, pads, groups, sizes):
    return jax.core.ShapedArray(_out_shape(x.shape, w.shape, stride, dilation, pads), x.dtype)


def _bwd_data_abstract(dy, w, *, stride, dilation, pads, groups, sizes):
    return jax.core.ShapedArray((dy.shape[0], *sizes, w.shape[-2] * groups), dy.dtype)


def _bwd_weights_abstract(x, dy, *, stride, dilation, pads, groups, sizes):
    return jax.core.ShapedArray((*sizes, x.shape[-1] // groups, dy.shape[-1]), x.dtype)


def _attrs(*, stride, dilation, pads, groups, sizes):
    return dict(stride=np.array(stride, np.int64), dilation=np.array(dilation, np.int64),
                pad_lo=np.array([p[0] for p in pads], np.int64),
                pad_hi=np.array([p[1] for p in pads], np.int64), groups=np.int64(groups))


def _with(params, sizes):
    return primitive.with_sizes(params, sizes)


def _kernel_sizes(w):
    return w.aval.shape[:-2]


# Each pass is bilinear, and its transpose in either operand is another pass.
# y = fwd(x, w): x-bar = bwd_data(y-bar, w), w-bar = bwd_weights(x, y-bar).
fwd_p = primitive.define(
    "fwd", _fwd_abstract, attrs=_attrs, split=primitive.Split((True, False)),
    vmap=_batcher("fwd"), derivatives=primitive.bilinear(
        lambda ct, x, w, **p: bwd_data_p.bind(ct, w, **_with(p, primitive.input_sizes(x.aval))),
        lambda ct, x, w, **p: bwd_weights_p.bind(x, ct, **_with(p, _kernel_sizes(w)))))
# dx = bwd_data(dy, w): linear in dy with transpose fwd(., w); in w, bwd_weights(., dy).
bwd_data_p = primitive.define(
    "bwd_data", _bwd_data_abstract, attrs=_attrs, split=primitive.Split((True, False)),
    vmap=_batcher("bwd_data"), derivatives=primitive.bilinear(
        lambda ct, dy, w, **p: fwd_p.bind(ct, w, **_with(p, ())),
        lambda ct, dy, w, **p: bwd_weights_p.bind(ct, dy, **_with(p, _kernel_sizes(w)))))
# dw = bwd_weights(x, dy): in x, bwd_data(dy, .); in dy, fwd(x, .). Sums over N.
bwd_weights_p = primitive.define(
    "bwd_weights", _bwd_weights_abstract, attrs=_attrs,
    split=primitive.Split((True, True), reduces=True), vmap=_batcher("bwd_weights"),
    derivatives=primitive.bilinear(
        lambda ct, x, dy, **p: bwd_data_p.bind(dy, ct, **_with(p, primitive.input_sizes(x.aval))),
        lambda ct, x, dy, **p: fwd_p.bind(x, ct, **_with(p, ()))))


def _check(name, x, w, preferred_element_type=None):
    """``x, w`` as oneDNN computes them, after checking what it takes."""
    if preferred_element_type is not None:
        raise NotImplementedError(f"onednn {name}: preferred_element_type is not supported")
    if np.dtype(x.dtype).name not in DTYPES or x.dtype != w.dtype:
        raise TypeError(f"onednn {name}: x.dtype={x.dtype}, w.dtype={w.dtype}; expected both "
                        f"float32 or both bfloat16")
    library.library()  # raises where oneDNN is unavailable, saying why
    if x.dtype == jnp.bfloat16 and not library.native_bfloat16("conv"):
        return x.astype(jnp.float32), w.astype(jnp.float32)  # no bfloat16 kernels here
    return x, w


def conv(x, w, stride, pads, dilation, groups=1, lhs_dilation=None, precision=None,
         preferred_element_type=None):
    r"""Channels-last grouped conv by oneDNN: ``x (N, *S, C)``, ``w (*k, C/G, K)``.

    .. math:: y[n, p, k] = \sum_t \sum_{c \in g(k)} x_{pad}[n, p s + t d, c]\, w[t, c - g_0(k), k]

    The kernel signature of :mod:`jconv.kernels.einsum_conv` (``stride``, ``dilation``:
    one int per spatial axis; ``pads``: one ``(low, high)`` pair per axis). Every
    derivative is one of the three oneDNN primitives. ``precision`` is accepted and
    ignored: oneDNN accumulates in float32.

    Returns:
      ``(N, *S', K)`` with ``S' = (S + low + high - (k - 1) * d - 1) // s + 1``.

    Raises:
      RuntimeError: the extension is unavailable (:func:`status` says why).
      TypeError: a dtype other than float32 or bfloat16.
      NotImplementedError: ``lhs_dilation`` or ``preferred_element_type``.
    """
    if lhs_dilation is not None and any(d != 1 for d in lhs_dilation):
        raise NotImplementedError("onednn conv: lhs_dilation (a transposed conv) is not "
                                  "supported; use impl='lax'")
    dtype = x.dtype
    x, w = _check("conv", x, w, preferred_element_type)
    params = dict(stride=tuple(int(s) for s in stride),
                  dilation=tuple(int(d) for d in dilation),
                  pads=tuple((int(lo), int(hi)) for lo, hi in pads), groups=int(groups),
                  sizes=())
    return fwd_p.bind(x, w, **params).astype(dtype)


def conv_transpose(x, w, stride, pads, dilation, groups=1, sizes=None, precision=None,
                   preferred_element_type=None):
    r"""Transposed conv by oneDNN: the input-gradient of the conv of window ``pads``.

    ``x (N, *S, C)``, ``w (*k, C/G, K)`` (jconv's and PyTorch's grouping: group ``g``
    maps inputs ``g*C/G ...`` to filters ``g*K/G ...``). The result is the VJP of the
    forward conv ``(N, *sizes, K) -> (N, *S, C)`` with window ``stride``, ``pads``,
    ``dilation``, ``groups`` and kernel ``w'[t, j, g C/G + i] = w[t, i, g K/G + j]``:

    .. math:: y[n, p s + t d - lo, k] \mathrel{+}= \sum_{c \in g(k)} x[n, p, c]\, w[t, c - g_0, k]

    for ``0 <= p s + t d - lo < sizes``. That is one oneDNN backward-data call, so the
    gradient in ``x`` is one forward call and the gradient in ``w`` one backward-weights
    call (``x`` in the role of the output gradient).

    Args:
      x: ``(N, *S, C)``.
      w: ``(*k, C/G, K)``.
      stride, dilation: one int per spatial axis (of the forward conv).
      pads: one ``(low, high)`` pair per axis, of the forward conv: ``low >= 0``;
        ``high`` may be negative (output positions no window reaches, which are zero).
      groups: ``G``, dividing ``C`` and ``K``.
      sizes: the output's spatial sizes, with ``(sizes + low + high - (k - 1) d - 1) //
        s + 1 == S``; default ``(S - 1) s + (k - 1) d + 1 - low - high``.
      precision: accepted and ignored (oneDNN accumulates in float32).

    Returns:
      ``(N, *sizes, K)``.

    Raises:
      RuntimeError: the extension is unavailable (:func:`status` says why).
      TypeError: a dtype other than float32 or bfloat16.
      ValueError: ``sizes`` whose forward conv does not give ``S``.
    """
    dtype = x.dtype
    kernel, (ci, k) = w.shape[:-2], w.shape[-2:]
    full = [(s - 1) * st + (kk - 1) * d + 1 - lo - hi for s, kk, st, d, (lo, hi)
            in zip(x.shape[1:-1], kernel, stride, dilation, pads)]
    sizes = full if sizes is None else [int(s) for s in sizes]
    if not all(f <= s < f + st for f, s, st in zip(full, sizes, stride)):
        raise ValueError(f"onednn conv_transpose: sizes={tuple(sizes)}; expected from "
                         f"{tuple(full)} up to stride - 1 more per axis (stride {tuple(stride)})")
    x, w = _check("conv_transpose", x, w, preferred_element_type)
    g = int(groups)
    w = w.reshape(*kernel, ci, g, k // g)  # (*k, C/G, G, K/G)
    w = jnp.swapaxes(w, -3, -1).reshape(*kernel, k // g, g * ci)  # (*k, K/G, C)
    # oneDNN takes a high pad above -stride; a lower one crops rows no window reads,
    # whose gradient is zero: those are cut from oneDNN's output and padded back.
    extra = [max(0, -hi - st + 1) for (_, hi), st in zip(pads, stride)]
    y = bwd_data_p.bind(x, w, stride=tuple(int(s) for s in stride),
                        dilation=tuple(int(d) for d in dilation),
                        pads=tuple((int(lo), int(hi + e)) for (lo, hi), e in zip(pads, extra)),
                        groups=g, sizes=tuple(int(s - e) for s, e in zip(sizes, extra)))
    if any(extra):
        y = jnp.pad(y, ((0, 0), *((0, e) for e in extra), (0, 0)))  # (N, *sizes, K)
    return y.astype(dtype)
