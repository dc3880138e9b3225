"""oneDNN pooling and local response normalisation inside XLA programs.

Letters: ``N`` batch, ``*S`` (``H W``; or ``W``; or ``D H W``) spatial, ``C`` maps; ``S'``
the pooled sizes. Each pass is a JAX primitive; those marked FFI are custom calls into
``csrc/onednn_pool.cc`` (the library of :mod:`jconv.backends.onednn`), the others are
written in JAX:

=================  ======================================  =====  ========================
primitive          computes                                 kind   transpose (linear part)
=================  ======================================  =====  ========================
``max_fwd``        ``y, ws = max_pool(x)``, ``ws`` the       FFI    (nonlinear; JVP:
                   selected tap of each window                     ``max_tan``)
``max_tan``        ``ẏ = ẋ[argmax ws]``                     JAX    ``max_bwd``
``max_bwd``        ``x̄ = scatter ȳ to argmax ws``           FFI    ``max_tan``
``avg_fwd``        ``y = avg_pool(x)``                      FFI    ``avg_bwd``
``avg_bwd``        ``x̄ = avg_poolᵀ ȳ``                      FFI    ``avg_fwd``
``lrn_fwd``        ``y = lrn(x)``                           FFI    (nonlinear; JVP:
                                                                   ``lrn_tan``)
``lrn_tan``        ``ẏ = ∂lrn(x) ẋ``                        JAX    ``lrn_bwd``
``lrn_bwd``        ``x̄ = ∂lrn(x)ᵀ ȳ``                       FFI    ``lrn_tan``
=================  ======================================  =====  ========================

So ``grad`` and ``vjp`` run the extension's forward and backward; ``jvp`` runs its forward
and, for max pooling and LRN, a JAX tangent (max pooling's reads the recorded selection,
so forward and reverse mode agree even on ties); second derivatives of LRN take its JAX
form. Max pooling's forward, and its float32 backward, are jconv's own kernels
(``csrc/max_pool_scatter.cc``), not oneDNN's: oneDNN 3.2's forward skips NaN and gives
-3.4e38 for a window of only NaN or -inf. jconv's gives what ``lax.reduce_window``'s max
gives (NaN for a window holding one, -inf for a window of -inf) and records the tap
``select_and_scatter`` (lax's gradient) selects: taps in row-major order, the padding
reading -inf, the selection moving to a tap unless the selected value is ``>=`` it (so the
first maximum; after the last NaN of a window, or that NaN if it is the last tap). It
runs within 10% of oneDNN's forward (AlexNet's pool1, 3x3/2 on (64, 55, 55, 96) float32:
8.6 against 8.2 ms forward, 45.9 against 45.1 ms forward+backward, 2 cores).
``vmap`` folds the mapped axis into ``N``. bfloat16 runs in float32 and is rounded back
where the CPU has no oneDNN bfloat16 kernels (:func:`native_bfloat16`).

>>> import jax.numpy as jnp, jconv
>>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
>>> jconv.max_pool(x, 2, impl="onednn")[..., 0].tolist()   # oneDNN where it is available
[[[5.0, 7.0], [13.0, 15.0]]]
"""

from __future__ import annotations

import functools
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir, xla

from jconv.backends import onednn
from jconv.kernels.einsum_conv import pad_and_dilate, shifted_windows

_TARGETS = {"max_fwd": "JconvOnednnMaxPoolForward", "max_bwd": "JconvOnednnMaxPoolBackward",
            "avg_fwd": "JconvOnednnAvgPoolForward", "avg_bwd": "JconvOnednnAvgPoolBackward",
            "lrn_fwd": "JconvOnednnLrnForward", "lrn_bwd": "JconvOnednnLrnBackward"}
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _register(lib) -> bool:
    """Registers the FFI targets of ``lib`` once; whether it has bfloat16 kernels."""
    for name, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(f"jconv_onednn_{name}",
                                    jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    return bool(lib.jconv_onednn_pool_supports(1))


def native_bfloat16() -> bool:
    """Whether oneDNN pools bfloat16 natively here (else it runs in float32); registers
    the FFI targets on first use. Raises ``RuntimeError`` where oneDNN is unavailable."""
    lib = onednn._library()
    with _LOCK:
        return _register(lib)


def cache_size() -> int:
    """Pooling and LRN primitives in the extension's cache (apart from the convolutions')."""
    return onednn._library().jconv_onednn_pool_cache_size()


def set_cache_capacity(capacity: int) -> None:
    """Bounds the pooling and LRN primitive cache (default 256)."""
    onednn._library().jconv_onednn_pool_set_cache_capacity(int(capacity))


def lrn_unsupported(size: int) -> str | None:
    """None if oneDNN can compute LRN with ``size`` maps per window, else why not."""
    if size % 2 == 0:
        return (f"oneDNN's LRN window is symmetric ({size - 1} maps for size={size}), and "
                f"jconv's even window takes {size // 2} maps before and {size // 2 - 1} after")
    return None


# --------------------------------------------------------------------------- JAX forms


def _max_tangent(xd, ws, *, kernel, stride, pads, sizes):
    """``ẏ[n, p, c] = ẋ_pad[n, p s + t*, c]`` with ``t* = ws[n, p, c]`` (row-major tap)."""
    xp = pad_and_dilate(xd, pads)
    out = jnp.zeros(ws.shape, xd.dtype)  # (N, *S', C)
    windows = shifted_windows(xp, kernel, stride, (1,) * len(kernel), ws.shape[1:-1])
    for i, (_, window) in enumerate(windows):
        out = jnp.where(ws == i, window, out)
    return out


def _lrn(x, *, size, k, alpha, beta):
    """``x / (k + alpha * sum of x² over the size maps around each)^beta``, jconv's form
    (a power of XLA:CPU is libm's scalar ``powf`` per element; ``exp`` and ``log`` are not)."""
    lo, hi = size // 2, (size - 1) // 2
    ones = (1,) * (x.ndim - 1)
    total = lax.reduce_window(x * x, np.asarray(0, x.dtype), lax.add, (*ones, size),
                              (*ones, 1), ((0, 0),) * (x.ndim - 1) + ((lo, hi),))
    return x * jnp.exp(-beta * jnp.log(k + alpha * total))  # as jconv's lax form


def _lrn_tangent(x, xd, **params):
    return jax.jvp(functools.partial(_lrn, **params), (x,), (xd,))[1]


def _lrn_cotangent(x, dy, **params):
    return jax.vjp(functools.partial(_lrn, **params), x)[1](dy)[0]


# --------------------------------------------------------------------------- primitives


def _ffi_lowering(target, kind):
    rule = jax.ffi.ffi_lowering(f"jconv_onednn_{target}")

    def lower(ctx, *args, sizes=(), **p):
        if kind == "lrn":
            return rule(ctx, *args, size=np.int64(p["size"]),
                        alpha=np.float32(p["alpha"] * p["size"]),  # oneDNN divides by size
                        beta=np.float32(p["beta"]), k=np.float32(p["k"]))
        attrs = dict(kernel=np.array(p["kernel"], np.int64),
                     stride=np.array(p["stride"], np.int64),
                     pad_lo=np.array([lo for lo, _ in p["pads"]], np.int64),
                     pad_hi=np.array([hi for _, hi in p["pads"]], np.int64))
        if kind == "avg":
            attrs["include_pad"] = np.int64(p["include_pad"])
        return rule(ctx, *args, **attrs)
    return lower


def _fold_batcher(prim):
    """vmap: every operand is per image, so the mapped axis merges into ``N``."""
    def rule(args, dims, **params):
        size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
        args = [jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
                for a, d in zip(args, dims)]
        n = args[0].shape[1]
        out = prim.bind(*[a.reshape((size * n, *a.shape[2:])) for a in args], **params)
        unfold = lambda o: o.reshape((size, n, *o.shape[1:]))  # (B, N, ...)
        if prim.multiple_results:
            return [unfold(o) for o in out], [0] * len(out)
        return unfold(out), 0
    return rule


def _primitive(name, abstract, lowering=None, jax_form=None, multiple_results=False):
    prim = Primitive(f"jconv_onednn_{name}")
    prim.multiple_results = multiple_results
    prim.def_abstract_eval(abstract)
    if jax_form is None:
        prim.def_impl(functools.partial(xla.apply_primitive, prim))
        mlir.register_lowering(prim, lowering, platform="cpu")
    else:
        prim.def_impl(jax_form)
        mlir.register_lowering(prim, mlir.lower_fun(jax_form, multiple_results=False))
    batching.primitive_batchers[prim] = _fold_batcher(prim)
    return prim


def _shaped(shape, dtype):
    return jax.core.ShapedArray(tuple(shape), dtype)


def _ws_dtype(kernel):
    return np.uint8 if np.prod(kernel) < 256 else np.int32  # as oneDNN picks


def _pooled(x, kernel, stride, pads):
    out = [(s + lo + hi - k) // st + 1 for s, k, st, (lo, hi) in
           zip(x.shape[1:-1], kernel, stride, pads)]
    return (x.shape[0], *out, x.shape[-1])  # (N, *S', C)


def _input(y, sizes):
    return (y.shape[0], *sizes, y.shape[-1])  # (N, *S, C)


max_fwd_p = _primitive(
    "max_fwd", lambda x, *, kernel, stride, pads, sizes: (
        _shaped(_pooled(x, kernel, stride, pads), x.dtype),
        _shaped(_pooled(x, kernel, stride, pads), _ws_dtype(kernel))),
    _ffi_lowering("max_fwd", "pool"), multiple_results=True)
max_tan_p = _primitive("max_tan", lambda xd, ws, **p: _shaped(ws.shape, xd.dtype),
                       jax_form=_max_tangent)
max_bwd_p = _primitive("max_bwd", lambda dy, ws, *, sizes, **p: _shaped(_input(dy, sizes),
                                                                        dy.dtype),
                       _ffi_lowering("max_bwd", "pool"))
avg_fwd_p = _primitive(
    "avg_fwd", lambda x, *, kernel, stride, pads, include_pad, sizes: _shaped(
        _pooled(x, kernel, stride, pads), x.dtype), _ffi_lowering("avg_fwd", "avg"))
avg_bwd_p = _primitive("avg_bwd", lambda dy, *, sizes, **p: _shaped(_input(dy, sizes),
                                                                    dy.dtype),
                       _ffi_lowering("avg_bwd", "avg"))
lrn_fwd_p = _primitive("lrn_fwd", lambda x, **p: _shaped(x.shape, x.dtype),
                       _ffi_lowering("lrn_fwd", "lrn"))
lrn_tan_p = _primitive("lrn_tan", lambda x, xd, **p: _shaped(x.shape, x.dtype),
                       jax_form=_lrn_tangent)
lrn_bwd_p = _primitive("lrn_bwd", lambda x, dy, **p: _shaped(x.shape, x.dtype),
                       _ffi_lowering("lrn_bwd", "lrn"))


def _zero_like(v):
    return ad.Zero(jax.typeof(v).to_tangent_aval())


def _linear_in_first(prim, transpose):
    """``prim(a, b)`` is linear in ``a`` (``b`` is held fixed): its JVP in ``a`` is ``prim``
    itself and its transpose in ``a`` is ``transpose(ct, b, **params)`` (with ``sizes``,
    the spatial sizes of ``a``)."""
    def transpose_rule(ct, a, b, **params):
        assert not ad.is_undefined_primal(b)
        if type(ct) is ad.Zero:
            return [ad.Zero(a.aval.to_ct_aval()), None]
        return [transpose(ct, b, **_with_sizes(params, a.aval.shape[1:-1])), None]
    ad.primitive_transposes[prim] = transpose_rule
    return lambda g, a, b, **params: prim.bind(g, b, **params)


def _with_sizes(params, sizes):
    return dict(params, sizes=tuple(int(s) for s in sizes))


# Max pooling: the tangent selects at oneDNN's argmax; oneDNN's backward is its transpose.
def _max_fwd_jvp(primals, tangents, **params):
    (x,), (xd,) = primals, tangents
    y, ws = max_fwd_p.bind(x, **params)
    yd = _zero_like(y) if type(xd) is ad.Zero else max_tan_p.bind(xd, ws, **params)
    return (y, ws), (yd, _zero_like(ws))


ad.primitive_jvps[max_fwd_p] = _max_fwd_jvp
ad.defjvp(max_tan_p, _linear_in_first(
    max_tan_p, lambda ct, ws, **p: max_bwd_p.bind(ct, ws, **p)), None)
ad.defjvp(max_bwd_p, _linear_in_first(
    max_bwd_p, lambda ct, ws, **p: max_tan_p.bind(ct, ws, **p)), None)

# Average pooling is linear: forward and backward are each other's transposes.
ad.deflinear2(avg_fwd_p, lambda ct, x, **p: [avg_bwd_p.bind(
    ct, **_with_sizes(p, x.aval.shape[1:-1]))])
ad.deflinear2(avg_bwd_p, lambda ct, dy, **p: [avg_fwd_p.bind(ct, **_with_sizes(p, ()))])


# LRN: tangent and backward are linear in their second operand and each other's
# transposes there; in x (second derivatives) both take the JAX form's derivative.
def _linear_in_second(prim, transpose):
    def transpose_rule(ct, x, v, **params):
        assert not ad.is_undefined_primal(x)
        if type(ct) is ad.Zero:
            return [None, ad.Zero(v.aval.to_ct_aval())]
        return [None, transpose(x, ct, **params)]
    ad.primitive_transposes[prim] = transpose_rule
    return lambda g, x, v, **params: prim.bind(x, g, **params)


def _in_x(jax_form):
    return lambda g, x, v, **p: jax.jvp(lambda x_: jax_form(x_, v, **p), (x,), (g,))[1]


ad.defjvp(lrn_fwd_p, lambda g, x, **p: lrn_tan_p.bind(x, g, **p))
ad.defjvp(lrn_tan_p, _in_x(_lrn_tangent),
          _linear_in_second(lrn_tan_p, lambda x, ct, **p: lrn_bwd_p.bind(x, ct, **p)))
ad.defjvp(lrn_bwd_p, _in_x(_lrn_cotangent),
          _linear_in_second(lrn_bwd_p, lambda x, ct, **p: lrn_tan_p.bind(x, ct, **p)))


# --------------------------------------------------------------------------- ops


def _in_float32(fn, x):
    """``fn(x)``, computed in float32 where oneDNN has no bfloat16 kernels here."""
    if x.dtype == jnp.bfloat16 and not native_bfloat16():
        return fn(x.astype(jnp.float32)).astype(x.dtype)
    native_bfloat16()  # registers the FFI targets
    return fn(x)


def _window(kernel, stride, pads):
    return dict(kernel=tuple(int(k) for k in kernel), stride=tuple(int(s) for s in stride),
                pads=tuple((int(lo), int(hi)) for lo, hi in pads), sizes=())


def max_pool(x, kernel, stride, pads):
    r"""Max pooling per map by the extension: ``x (N, *S, C)``, one ``(low, high)`` pad per axis.

    .. math:: y[n, p, c] = \max_{t} x_{pad}[n, p s + t, c]   \quad (\text{pad} = -\infty)

    NaN where a window holds a NaN, as ``lax.reduce_window``. Every pad must be smaller
    than the window. The gradient routes ``ȳ`` to the tap lax's gradient selects (each
    window's first maximum where it holds no NaN), recorded by the forward; the tangent
    picks ``ẋ`` there.

    Returns:
      ``(N, *S', C)`` with ``S' = (S + low + high - k) // s + 1``.
    """
    return _in_float32(lambda x: max_fwd_p.bind(x, **_window(kernel, stride, pads))[0], x)


def avg_pool(x, kernel, stride, pads, count_include_pad=True):
    r"""Average pooling per map by oneDNN: ``x (N, *S, C)``, zeros padded.

    .. math:: y[n, p, c] = \frac{1}{|T_p|} \sum_{t} x_{pad}[n, p s + t, c]

    with ``|T_p|`` the window size (``count_include_pad``, oneDNN's
    ``pooling_avg_include_padding``) or the taps of window ``p`` on the unpadded input
    (``pooling_avg_exclude_padding``). Linear: every derivative runs oneDNN.

    Returns:
      ``(N, *S', C)`` with ``S' = (S + low + high - k) // s + 1``.
    """
    params = dict(_window(kernel, stride, pads), include_pad=bool(count_include_pad))
    return _in_float32(lambda x: avg_fwd_p.bind(x, **params), x)


def local_response_norm(x, size, k, alpha, beta):
    r"""LRN across maps by oneDNN (``lrn_across_channels``): ``x (N, *S, C)``, odd ``size``.

    .. math:: y_c = x_c \Big/ \Big(k + \alpha \sum_{|c' - c| \le (n-1)/2} x_{c'}^2\Big)^{\beta}

    ``alpha`` multiplies the sum (the paper's form, as in :func:`jconv.local_response_norm`);
    oneDNN's multiplies the mean, so it is given ``alpha * size``. ``grad`` runs oneDNN's
    backward; ``jvp`` a JAX tangent.

    Raises:
      NotImplementedError: an even ``size`` (:func:`lrn_unsupported`).
    """
    why = lrn_unsupported(size)
    if why:
        raise NotImplementedError(f"onednn local_response_norm: {why}")
    params = dict(size=int(size), k=float(k), alpha=float(alpha), beta=float(beta))
    return _in_float32(lambda x: lrn_fwd_p.bind(x, **params), x)
