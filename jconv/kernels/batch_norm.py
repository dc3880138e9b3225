r"""Batch normalisation in training mode, optionally followed by a ReLU: the one place its
formula and derivatives are written.

.. math:: \mu_c = \tfrac1n \sum x_c, \quad \sigma_c^2 = \tfrac1n \sum x_c^2 - \mu_c^2,
          \quad y = \mathrm{relu}\big(\gamma_c (x - \mu_c) / \sqrt{\sigma_c^2 + \epsilon}
          + \beta_c\big)

over the ``n = N·H·W`` positions of each map ``c`` of ``x (N, *S, C)`` (the variance from
the two sums, as ``flax.nnx.BatchNorm`` computes it, clamped at 0). Both forms return
``(y, mean, var)``:

* :func:`textbook`: the formula in jnp, its derivatives by JAX's autodiff.
* :func:`fused`: the same values, its reverse mode written by hand (``custom_vjp``) so that
  each direction is one reduction over ``x`` and one elementwise pass, with nothing else
  materialised. With ``g = dy·[y > 0]`` (ReLU) and ``x̂ = (x - μ)/σ``:
  ``dβ = Σ g``, ``dγ = (Σ g·x - μ Σ g)/σ``, and
  ``dx = (γ/σ)(g - dβ/n - x̂ dγ/n)``, written ``a·g + x·c₁ + c₂`` with per-map ``a, c₁, c₂``
  (the cotangents of ``mean`` and ``var``, when used, fold into ``c₁`` and ``c₂``).
  Autodiff of the textbook form keeps ``x - μ`` and ``x̂`` as arrays and splits the
  backward pass into several; XLA:CPU runs each such pass at memory speed, so their
  number is the cost. Forward-mode derivatives (``jvp``) are not defined for it.

>>> import jax.numpy as jnp
>>> x = jnp.array([[1.0], [3.0]])
>>> y, mean, var = fused(x, jnp.ones(1), jnp.zeros(1), 0.0, False)
>>> y.ravel().tolist(), mean.tolist(), var.tolist()
([-1.0, 1.0], [2.0], [1.0])
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _axes(x):
    return tuple(range(x.ndim - 1))


def _count(x) -> int:
    return x.size // x.shape[-1]


def _map(v, x):
    """A per-map vector ``(C,)`` shaped to broadcast against ``x (N, *S, C)``."""
    return v.reshape((1,) * (x.ndim - 1) + (-1,))


def _acc(x):
    """The dtype sums are taken in: float32, or float64 for float64 ``x``."""
    return jnp.promote_types(x.dtype, jnp.float32)


def moments(x):
    """``(mean, var)`` per map of ``x``, from ``Σx`` and ``Σx²`` (one pass), in float32 (or
    float64 for float64 ``x``)."""
    x32 = x.astype(_acc(x))
    n = _count(x)
    mean = jnp.sum(x32, _axes(x)) / n
    var = jnp.maximum(jnp.sum(x32 * x32, _axes(x)) / n - mean * mean, 0.0)
    return mean, var


def _affine(mean, var, scale, bias, epsilon):
    """Per-map ``(a, b, rstd)`` with ``y = x·a + b``: ``a = γ/σ``, ``b = β - μ·a``."""
    rstd = lax.rsqrt(var + epsilon)
    a = scale.astype(mean.dtype) * rstd
    return a, bias.astype(mean.dtype) - mean * a, rstd


def normalize(x, mean, var, scale, bias, epsilon: float, relu: bool):
    """``relu(γ (x - μ)/σ + β)`` with given statistics (evaluation mode), in ``x``'s dtype."""
    a, b, _ = _affine(mean, var, scale, bias, epsilon)
    y = x.astype(a.dtype) * _map(a, x) + _map(b, x)
    return (jnp.maximum(y, 0.0) if relu else y).astype(x.dtype)


def textbook(x, scale, bias, epsilon: float, relu: bool):
    """``(y, mean, var)``: the formula in jnp, differentiated by autodiff."""
    mean, var = moments(x)
    x32 = x.astype(mean.dtype)
    y = ((x32 - _map(mean, x)) * _map(lax.rsqrt(var + epsilon) * scale.astype(mean.dtype), x)
         + _map(bias.astype(mean.dtype), x))
    return (jnp.maximum(y, 0.0) if relu else y).astype(x.dtype), mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def fused(x, scale, bias, epsilon: float, relu: bool):
    """``(y, mean, var)``, equal to :func:`textbook`, with the hand-written reverse mode."""
    return _fused_fwd(x, scale, bias, epsilon, relu)[0]


def _fused_fwd(x, scale, bias, epsilon, relu):
    mean, var = moments(x)
    y = normalize(x, mean, var, scale, bias, epsilon, relu)
    return (y, mean, var), (x, y, mean, var, scale, bias)


def _fused_bwd(epsilon, relu, res, cts):
    x, y, mean, var, scale, bias = res
    dy, dmean, dvar = cts
    n = _count(x)
    a, _, rstd = _affine(mean, var, scale, bias, epsilon)
    g = dy.astype(mean.dtype)
    if relu:
        g = jnp.where(y > 0, g, 0.0)
    x32 = x.astype(mean.dtype)
    sum_g = jnp.sum(g, _axes(x))
    sum_gx = jnp.sum(g * x32, _axes(x))
    dbias = sum_g
    dscale = (sum_gx - mean * sum_g) * rstd
    # dx = a·g + x·c1 + c2; the mean's and the variance's own cotangents add
    # dmean/n + dvar·2(x - μ)/n.
    c1 = -a * rstd * dscale / n + 2.0 * dvar / n
    c2 = -a * dbias / n + a * rstd * mean * dscale / n + dmean / n - 2.0 * dvar * mean / n
    dx = (g * _map(a, x) + x32 * _map(c1, x) + _map(c2, x)).astype(x.dtype)
    return dx, dscale.astype(scale.dtype), dbias.astype(bias.dtype)


fused.defvjp(_fused_fwd, _fused_bwd)

FORMS = {"lax": textbook, "fused": fused}
"""The training-mode forms by implementation name."""
