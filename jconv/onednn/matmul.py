"""A linear layer's three passes as oneDNN matmuls (``csrc/onednn_matmul.cc``).

``y = x @ w`` (``x (N, C)``, ``w (C, K)``), ``dx = dy @ wᵀ`` and ``dw = xᵀ @ dy``: one FFI
handler, each operand handed over in place with a transpose described by its strides. The
three are bilinear and each one's transpose in either operand is another of them, as the
conv passes are (:mod:`.convolution`), so ``grad``, ``jvp`` and their compositions run;
over several devices each splits along ``N`` (``dw`` summing over it). The forward pass's
own weight gradient is XLA's dot (:func:`_weight_grad`).

A layer of few rows (a classifier at batch 16) streams its whole weight matrix, which
oneDNN's GEMM does faster than XLA:CPU's dot. Measured on 2 cores, medians of 11
interleaved calls, batch 16: 9216 → 4096 forward 16 against 27 ms, ``dx`` 11 against
17 ms; 4096 → 1000 1.4 and 1.3 against 1.8 and 1.5 ms.

>>> import jax.numpy as jnp
>>> from jconv.onednn import matmul
>>> matmul.linear(jnp.ones((2, 3)), jnp.ones((3, 4))).tolist()
[[3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0]]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jconv.onednn import library, primitive

# (transpose_a, transpose_b) of each pass: y = x w, dx = dy wᵀ, dw = xᵀ dy.
_TRANSPOSES = {"mm_fwd": (0, 0), "mm_bwd_data": (0, 1), "mm_bwd_weights": (1, 0)}


def _abstract(name):
    ta, tb = _TRANSPOSES[name]

    def abstract(a, b):
        m, n = a.shape[1 if ta else 0], b.shape[0 if tb else 1]
        return jax.core.ShapedArray((m, n), a.dtype)
    return abstract


def _jnp(name):
    """The pass in jnp: what vmap computes where the batch cannot fold into ``N``."""
    ta, tb = _TRANSPOSES[name]
    return lambda a, b: jnp.matmul(jnp.swapaxes(a, -1, -2) if ta else a,
                                   jnp.swapaxes(b, -1, -2) if tb else b)


def _batcher(name):
    """vmap: the rows' operand alone batched folds into its ``N``; else jnp's matmul."""
    def make(prim):
        def rule(args, dims):
            (a, b), (da, db) = args, dims
            if name != "mm_bwd_weights" and db is None:
                a = jnp.moveaxis(a, da, 0)
                out = prim.bind(a.reshape((-1, a.shape[-1])), b)
                return out.reshape((*a.shape[:2], out.shape[-1])), 0
            a = a if da is None else jnp.moveaxis(a, da, 0)
            b = b if db is None else jnp.moveaxis(b, db, 0)
            size = a.shape[0] if da is not None else b.shape[0]
            a = a if da is not None else jnp.broadcast_to(a, (size, *a.shape))
            b = b if db is not None else jnp.broadcast_to(b, (size, *b.shape))
            return _jnp(name)(a, b), 0
        return rule
    return make


def _attrs(name):
    ta, tb = _TRANSPOSES[name]
    return lambda: dict(transpose_a=np.int64(ta), transpose_b=np.int64(tb))


def _weight_grad(x, dy):
    """``xᵀ @ dy`` by XLA's dot: in a whole training step XLA runs this one faster than
    oneDNN does (AlexNet's fc6 at batch 16: 8 against 26 ms; the step 374 against 383 ms,
    medians of 9 interleaved steps); :data:`bwd_weights_p` serves higher derivatives."""
    return jax.lax.dot_general(x, dy, (((0,), (0,)), ((), ())))


# y = fwd(x, w): x-bar = bwd_data(y-bar, w), w-bar = bwd_weights(x, y-bar).
fwd_p = primitive.define(
    "mm_fwd", _abstract("mm_fwd"), attrs=_attrs("mm_fwd"), split=primitive.Split((True, False)),
    vmap=_batcher("mm_fwd"), derivatives=primitive.bilinear(
        lambda ct, x, w: bwd_data_p.bind(ct, w), lambda ct, x, w: _weight_grad(x, ct)))
# dx = bwd_data(dy, w): in dy, fwd(., w); in w, bwd_weights(., dy).
bwd_data_p = primitive.define(
    "mm_bwd_data", _abstract("mm_bwd_data"), attrs=_attrs("mm_bwd_data"),
    split=primitive.Split((True, False)), vmap=_batcher("mm_bwd_data"),
    derivatives=primitive.bilinear(lambda ct, dy, w: fwd_p.bind(ct, w),
                                   lambda ct, dy, w: bwd_weights_p.bind(ct, dy)))
# dw = bwd_weights(x, dy): in x, bwd_data(dy, .); in dy, fwd(x, .). Sums over N.
bwd_weights_p = primitive.define(
    "mm_bwd_weights", _abstract("mm_bwd_weights"), attrs=_attrs("mm_bwd_weights"),
    split=primitive.Split((True, True), reduces=True), vmap=_batcher("mm_bwd_weights"),
    derivatives=primitive.bilinear(lambda ct, x, dy: bwd_data_p.bind(dy, ct),
                                   lambda ct, x, dy: fwd_p.bind(x, ct)))


def _bind(prim, name, x, w, rows: int):
    if x.ndim != 2 or w.ndim != 2 or x.shape[rows] != w.shape[0]:
        want = "(N, C) and (C, K)" if rows == 1 else "(N, C) and (N, K)"
        raise ValueError(f"onednn {name}: x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)};"
                         f" expected {want}")
    if x.dtype != w.dtype or np.dtype(x.dtype).name not in ("float32", "bfloat16"):
        raise TypeError(f"onednn {name}: x.dtype={x.dtype}, w.dtype={w.dtype}; expected both "
                        f"float32 or both bfloat16")
    library.library()  # raises where oneDNN is unavailable, saying why
    if x.dtype == jnp.bfloat16 and not library.native_bfloat16("conv"):
        return prim.bind(x.astype(jnp.float32), w.astype(jnp.float32)).astype(x.dtype)
    return prim.bind(x, w)


def linear(x, w):
    """``x @ w`` for ``x (N, C)`` and ``w (C, K)``, both float32 or both bfloat16, by
    oneDNN (bfloat16 computed in float32 where this CPU has no bfloat16 kernels)."""
    return _bind(fwd_p, "linear", x, w, rows=1)


def linear_t(x, w):
    """``xᵀ @ w`` for ``x (N, C)`` and ``w (N, K)``: a linear layer whose ``C × N`` input is
    stored transposed. Its derivative in ``w`` is ``x @ ẇ``, one GEMM of ``x`` with the
    tangent (:func:`linear`); dtypes as :func:`linear`.

    >>> import jax.numpy as jnp
    >>> from jconv.onednn import matmul
    >>> matmul.linear_t(jnp.ones((3, 2)), jnp.ones((3, 4))).tolist()
    [[3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0]]
    """
    return _bind(bwd_weights_p, "linear_t", x, w, rows=0)

