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
  materialised. With ``g = dy·[y > 0]`` (ReLU; ``y > 0`` recomputed from ``x``) and
  ``x̂ = (x - μ)/σ``:
  ``dβ = Σ g``, ``dγ = (Σ g·x - μ Σ g)/σ``, and
  ``dx = (γ/σ)(g - dβ/n - x̂ dγ/n)``, written ``a·g + x·c₁ + c₂`` with per-map ``a, c₁, c₂``
  (the cotangents of ``mean`` and ``var``, when used, fold into ``c₁`` and ``c₂``).
  Autodiff of the textbook form keeps ``x - μ`` and ``x̂`` as arrays and splits the
  backward pass into several; XLA:CPU runs each such pass at memory speed, so their
  number is the cost. Forward-mode derivatives (``jvp``) are not defined for it. Its two
  reductions, ``(Σx, Σx²)`` and ``(Σg, Σg·x)``, are arguments of :func:`make_fused`:
  :func:`jconv.onednn.batch_norm.native` runs each as one pass in the native library.

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


def moments(x, sums_of=None):
    """``(mean, var)`` per map of ``x``, from ``Σx`` and ``Σx²`` (``sums_of(x)``; None:
    :func:`sums`), in float32 (or float64 for float64 ``x``)."""
    n = _count(x)
    s1, s2 = (sums_of or sums)(x)
    mean = s1 / n
    return mean, jnp.maximum(s2 / n - mean * mean, 0.0)


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


def sums(x):
    """``(Σx, Σx²)`` per map of ``x``, in float32 (or float64 for float64 ``x``)."""
    x32 = x.astype(_acc(x))
    return jnp.sum(x32, _axes(x)), jnp.sum(x32 * x32, _axes(x))


def _relu_grad(dy, x, a, b, relu: bool):
    """``g = dy·[x·a + b > 0]`` (``relu``) or ``dy``, in ``a``'s dtype: the ReLU's mask from
    ``x``, as the forward computed it, so neither ``y`` nor ``g`` is kept."""
    g = dy.astype(a.dtype)
    if relu:
        g = jnp.where(x.astype(a.dtype) * _map(a, x) + _map(b, x) > 0, g, 0.0)
    return g


def grad_sums(dy, x, a, b, relu: bool):
    """``(Σg, Σg·x)`` per map, ``g`` as :func:`_relu_grad`."""
    g = _relu_grad(dy, x, a, b, relu)
    return jnp.sum(g, _axes(x)), jnp.sum(g * x.astype(a.dtype), _axes(x))


def make_fused(sums, grad_sums):
    """The fused form (module docstring) whose two reductions are ``sums(x) -> (Σx, Σx²)``
    and ``grad_sums(dy, x, a, b, relu) -> (Σg, Σg·x)``, each per map in float32 (or
    float64): :func:`fused` takes this module's, :func:`jconv.onednn.batch_norm.native`
    one-pass loops of the native library. Everything else is the same jnp."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
    def form(x, scale, bias, epsilon: float, relu: bool):
        return fwd(x, scale, bias, epsilon, relu)[0]

    def fwd(x, scale, bias, epsilon, relu):
        mean, var = moments(x, sums)
        y = normalize(x, mean, var, scale, bias, epsilon, relu)
        return (y, mean, var), (x, mean, var, scale, bias)

    def bwd(epsilon, relu, res, cts):
        x, mean, var, scale, bias = res
        dy, dmean, dvar = cts
        n = _count(x)
        a, b, rstd = _affine(mean, var, scale, bias, epsilon)
        dbias, sum_gx = grad_sums(dy, x, a, b, relu)
        dscale = (sum_gx - mean * dbias) * rstd
        # dx = a·g + x·c1 + c2; the mean's and the variance's own cotangents add
        # dmean/n + dvar·2(x - μ)/n.
        c1 = -a * rstd * dscale / n + 2.0 * dvar / n
        c2 = -a * dbias / n + a * rstd * mean * dscale / n + dmean / n - 2.0 * dvar * mean / n
        g = _relu_grad(dy, x, a, b, relu)
        dx = (g * _map(a, x) + x.astype(a.dtype) * _map(c1, x) + _map(c2, x)).astype(x.dtype)
        return dx, dscale.astype(scale.dtype), dbias.astype(bias.dtype)

    form.defvjp(fwd, bwd)
    return form


fused = make_fused(sums, grad_sums)
fused.__doc__ = """``(y, mean, var)``, equal to :func:`textbook`, with the hand-written reverse
mode."""

FORMS = {"lax": textbook, "fused": fused}
"""The training-mode forms by implementation name."""
