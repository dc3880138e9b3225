r"""Training-mode BatchNorm whose two reductions are one pass each, in the native library.

:func:`native` is :func:`jconv.kernels.batch_norm.fused` (the same formula, reverse mode and
jnp elementwise passes) with its reductions over ``x (N, *S, C)`` as two FFI calls into
``csrc/batch_norm.cc``:

==================  ==============================================  =======================
primitive           computes, per map ``c``                          XLA:CPU's fused form
==================  ==============================================  =======================
``bn_sums``         ``(Σ x, Σ x²)``                                 two passes over ``x``
``bn_grad_sums``    ``(Σ g, Σ g·x)``, ``g = dy·[x·a + b > 0]``       a pass writing ``g``, and
                    (``relu``) or ``dy``                            one reading it per sum
==================  ==============================================  =======================

each reading its arrays once, in float32 over blocks of rows added up in double. A
training step's BatchNorm then reads ``x`` three times and writes ``y`` forward, and reads
``dy`` and ``x`` twice and writes ``dx`` backward. Both are JAX primitives from
:mod:`.primitive`: in a ``jit`` over several devices each device sums its rows of the batch
and the sums add across devices; ``vmap`` sums each mapped slice apart; their JVPs are jnp,
so second derivatives work. float32 only: other dtypes take :func:`fused`'s jnp sums.

>>> import jax.numpy as jnp
>>> from jconv.onednn import batch_norm
>>> x = jnp.array([[1.0], [3.0]])
>>> y, mean, var = batch_norm.native(x, jnp.ones(1), jnp.zeros(1), 0.0, False)
>>> y.ravel().tolist(), mean.tolist(), var.tolist()
([-1.0, 1.0], [2.0], [1.0])
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.interpreters import ad

from jconv.kernels import batch_norm as K
from jconv.onednn import library, primitive


def _maps(x):
    return jax.core.ShapedArray((x.shape[-1],), jnp.float32)


def _sums_abstract(x):
    return _maps(x), _maps(x)


def _grad_sums_abstract(dy, x, a, b, *, relu):
    return _maps(x), _maps(x)


def _axes(x):
    return tuple(range(x.ndim - 1))


def _dense(t, like):
    return jnp.zeros(like.shape, like.dtype) if type(t) is ad.Zero else t


def _sums_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    out = sums_p.bind(x)
    if type(t) is ad.Zero:
        return out, [primitive.zero_tangent(o) for o in out]
    return out, [jnp.sum(t, _axes(x)), 2.0 * jnp.sum(x * t, _axes(x))]


def _grad_sums_jvp(primals, tangents, *, relu):
    dy, x, a, b = primals
    tdy, tx = (_dense(t, p) for t, p in zip(tangents[:2], primals[:2]))
    out = grad_sums_p.bind(dy, x, a, b, relu=relu)
    # The mask's own derivative is 0.
    keep = (x * K._map(a, x) + K._map(b, x) > 0) if relu else jnp.ones((), bool)
    g, tg = jnp.where(keep, dy, 0.0), jnp.where(keep, tdy, 0.0)
    return out, [jnp.sum(tg, _axes(x)), jnp.sum(tg * x + g * tx, _axes(x))]


def _per_slice(prim):
    """vmap: the mapped axis joins the maps (``(N, *S, B·C)``), so each slice sums apart."""
    def rule(args, dims, **params):
        size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
        wide = []
        for a, d in zip(args, dims):
            a = jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
            wide.append(jnp.moveaxis(a, 0, -2).reshape(*a.shape[1:-1], size * a.shape[-1]))
        return [o.reshape(size, -1) for o in prim.bind(*wide, **params)], [0, 0]
    return rule


sums_p = primitive.define("bn_sums", _sums_abstract, attrs=lambda: {},
                          split=primitive.Split((True,), reduces=True), vmap=_per_slice,
                          derivatives=primitive.jvp(_sums_jvp), multiple_results=True)
grad_sums_p = primitive.define(
    "bn_grad_sums", _grad_sums_abstract, attrs=lambda relu: {"relu": np.int64(relu)},
    split=primitive.Split((True, True), reduces=True), vmap=_per_slice,
    derivatives=primitive.jvp(_grad_sums_jvp), multiple_results=True)


def sums(x):
    """``(Σx, Σx²)`` per map of ``x (N, *S, C)``: one pass for float32, else jnp's."""
    if x.dtype != jnp.float32:
        return K.sums(x)
    library.library()  # raises where the library is unavailable, saying why
    return tuple(sums_p.bind(x))


def grad_sums(dy, x, a, b, relu: bool):
    """``(Σg, Σg·x)`` per map, ``g = dy·[x·a + b > 0]`` (``relu``) or ``dy``: one pass for
    float32, else jnp's."""
    if not (x.dtype == dy.dtype == a.dtype == jnp.float32):
        return K.grad_sums(dy, x, a, b, relu)
    library.library()
    return tuple(grad_sums_p.bind(dy, x, a, b.astype(a.dtype), relu=bool(relu)))


native = K.make_fused(sums, grad_sums)
native.__doc__ = """``(y, mean, var)`` as :func:`jconv.kernels.batch_norm.fused`, its sums one
pass each (module docstring)."""
