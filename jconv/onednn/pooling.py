"""oneDNN pooling and local response normalisation inside XLA programs.

Letters: ``N`` batch, ``*S`` (``H W``; or ``W``; or ``D H W``) spatial, ``C`` maps; ``S'``
the pooled sizes. Each pass is a JAX primitive; those marked FFI are custom calls into
``csrc/onednn_pool.cc`` (the library of :mod:`.library`), the others are
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
Every primitive comes from the factory of :mod:`.primitive`: ``vmap`` folds the mapped
axis into ``N``, and in a ``jit`` over several devices each FFI call runs on each device's
rows of the batch (XLA never gathers it). bfloat16 runs in float32 and is rounded back
where the CPU has no oneDNN bfloat16 kernels (:func:`native_bfloat16`).

>>> import jax.numpy as jnp, jconv
>>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
>>> jconv.max_pool(x, 2, impl="onednn")[..., 0].tolist()   # oneDNN where it is available
[[[5.0, 7.0], [13.0, 15.0]]]
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.interpreters import ad

from jconv.onednn import library, primitive
from jconv.kernels import lrn
from jconv.kernels.einsum_conv import pad_and_dilate, shifted_windows
from jconv.kernels.window import output_size


def native_bfloat16() -> bool:
    """Whether oneDNN pools bfloat16 natively here (else it runs in float32). Raises
    ``RuntimeError`` where oneDNN is unavailable."""
    return library.native_bfloat16("pool")


def cache_size() -> int:
    """Pooling and LRN primitives in the extension's cache (apart from the convolutions')."""
    return library.cache_size("pool")


def set_cache_capacity(capacity: int) -> None:
    """Bounds the pooling and LRN primitive cache (default 256)."""
    library.set_cache_capacity("pool", capacity)


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
    return lrn.local_response_norm(x, size, k, alpha, beta)


def _lrn_tangent(x, xd, **params):
    return jax.jvp(functools.partial(_lrn, **params), (x,), (xd,))[1]


def _lrn_cotangent(x, dy, **params):
    return jax.vjp(functools.partial(_lrn, **params), x)[1](dy)[0]


def _in_x(jax_form):
    """The JVP in ``x`` of ``jax_form(x, v)`` (second derivatives of LRN)."""
    return lambda g, x, v, **p: jax.jvp(lambda x_: jax_form(x_, v, **p), (x,), (g,))[1]


# --------------------------------------------------------------------------- shapes


def _shaped(shape, dtype):
    return jax.core.ShapedArray(tuple(shape), dtype)


def _ws_dtype(kernel):
    return np.uint8 if np.prod(kernel) < 256 else np.int32  # as oneDNN picks


def _pooled(x, kernel, stride, pads):
    out = [output_size(s, k, st, p) for s, k, st, p in zip(x.shape[1:-1], kernel, stride, pads)]
    return (x.shape[0], *out, x.shape[-1])  # (N, *S', C)


def _input(y, sizes):
    return (y.shape[0], *sizes, y.shape[-1])  # (N, *S, C)


def _max_fwd_abstract(x, *, kernel, stride, pads, sizes):
    shape = _pooled(x, kernel, stride, pads)
    return _shaped(shape, x.dtype), _shaped(shape, _ws_dtype(kernel))


def _avg_fwd_abstract(x, *, kernel, stride, pads, include_pad, sizes):
    return _shaped(_pooled(x, kernel, stride, pads), x.dtype)


def _backward_abstract(dy, *rest, sizes, **params):
    return _shaped(_input(dy, sizes), dy.dtype)


def _same_abstract(x, *rest, **params):
    return _shaped(x.shape, x.dtype)


def _pool_attrs(*, kernel, stride, pads, sizes, include_pad=None):
    attrs = dict(kernel=np.array(kernel, np.int64), stride=np.array(stride, np.int64),
                 pad_lo=np.array([lo for lo, _ in pads], np.int64),
                 pad_hi=np.array([hi for _, hi in pads], np.int64))
    if include_pad is not None:
        attrs["include_pad"] = np.int64(include_pad)
    return attrs


def _lrn_attrs(*, size, k, alpha, beta):
    return dict(size=np.int64(size), alpha=np.float32(alpha * size),  # oneDNN divides by size
                beta=np.float32(beta), k=np.float32(k))


# --------------------------------------------------------------------------- primitives


# Max pooling: the tangent selects at the recorded tap; the backward is its transpose.
def _max_fwd_jvp(primals, tangents, **params):
    (x,), (xd,) = primals, tangents
    y, ws = max_fwd_p.bind(x, **params)
    yd = (primitive.zero_tangent(y) if type(xd) is ad.Zero
          else max_tan_p.bind(xd, ws, **params))
    return (y, ws), (yd, primitive.zero_tangent(ws))


max_fwd_p = primitive.define("max_fwd", _max_fwd_abstract, attrs=_pool_attrs,
                             derivatives=primitive.jvp(_max_fwd_jvp), multiple_results=True)
max_tan_p = primitive.define(
    "max_tan", lambda xd, ws, **p: _shaped(ws.shape, xd.dtype), jax_form=_max_tangent,
    derivatives=primitive.linear_in(0, lambda ct, ws, **p: max_bwd_p.bind(ct, ws, **p)))
max_bwd_p = primitive.define(
    "max_bwd", _backward_abstract, attrs=_pool_attrs, split=primitive.Split((True, True)),
    derivatives=primitive.linear_in(0, lambda ct, ws, **p: max_tan_p.bind(ct, ws, **p)))

# Average pooling is linear: forward and backward are each other's transposes.
avg_fwd_p = primitive.define(
    "avg_fwd", _avg_fwd_abstract, attrs=_pool_attrs, derivatives=primitive.linear(
        lambda ct, x, **p: [avg_bwd_p.bind(ct, **primitive.with_sizes(
            p, primitive.input_sizes(x.aval)))]))
avg_bwd_p = primitive.define(
    "avg_bwd", _backward_abstract, attrs=_pool_attrs, derivatives=primitive.linear(
        lambda ct, dy, **p: [avg_fwd_p.bind(ct, **primitive.with_sizes(p, ()))]))

# LRN: tangent and backward are linear in their second operand and each other's
# transposes there; in x (second derivatives) both take the JAX form's derivative.
lrn_fwd_p = primitive.define(
    "lrn_fwd", _same_abstract, attrs=_lrn_attrs,
    derivatives=primitive.defjvp(lambda g, x, **p: lrn_tan_p.bind(x, g, **p)))
lrn_tan_p = primitive.define(
    "lrn_tan", _same_abstract, jax_form=_lrn_tangent, derivatives=primitive.linear_in(
        1, lambda ct, x, **p: lrn_bwd_p.bind(x, ct, **p), _in_x(_lrn_tangent)))
lrn_bwd_p = primitive.define(
    "lrn_bwd", _same_abstract, attrs=_lrn_attrs, split=primitive.Split((True, True)),
    derivatives=primitive.linear_in(
        1, lambda ct, x, **p: lrn_tan_p.bind(x, ct, **p), _in_x(_lrn_cotangent)))


# --------------------------------------------------------------------------- ops


def _in_float32(fn, x):
    """``fn(x)``, computed in float32 where oneDNN has no bfloat16 kernels here."""
    if x.dtype == jnp.bfloat16 and not native_bfloat16():
        return fn(x.astype(jnp.float32)).astype(x.dtype)
    library.library()  # raises where oneDNN is unavailable, saying why
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
