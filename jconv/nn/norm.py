"""Batch normalisation as an NNX layer, with the ReLU that follows it fused in.

:class:`BatchNorm` holds what ``flax.nnx.BatchNorm`` holds, under the same names
(``scale``, ``bias`` and the running ``mean`` and ``var``), and computes the same values;
it runs its training-mode pass through :mod:`jconv.kernels.batch_norm`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jconv.kernels import batch_norm as K

IMPLS = ("auto", *K.FORMS)


def which(impl: str) -> str:
    """The form ``impl`` names; ``"auto"``: ``fused`` on CPU (its backward pass is one
    reduction and one elementwise pass; autodiff of the textbook form makes several:
    MobileNet v1's training step at batch 16 on 2 cores 546 against 580 ms), ``lax``
    elsewhere (not measured there)."""
    if impl not in IMPLS:
        raise ValueError(f"BatchNorm: impl={impl!r}; expected one of {IMPLS}")
    if impl != "auto":
        return impl
    return "fused" if jax.default_backend() == "cpu" else "lax"


class BatchNorm(nnx.Module):
    """Batch normalisation over every axis but the last, then a ReLU if ``relu``.

    In training (``use_running_average=False``) it normalises with the batch's mean and
    (biased) variance and moves the running averages toward them,
    ``avg = momentum·avg + (1 - momentum)·batch``; in evaluation (``model.eval()``) it uses
    the running averages. ``(N, *S, C)`` -> ``(N, *S, C)``.

    >>> import jax.numpy as jnp, jconv.nn
    >>> from flax import nnx
    >>> bn = jconv.nn.BatchNorm(2, relu=True, rngs=nnx.Rngs(0))
    >>> bn(jnp.array([[1.0, -4.0], [3.0, 4.0]])).round(3).tolist()
    [[0.0, 0.0], [1.0, 1.0]]
    >>> bn.mean[...].tolist()      # 0.99 * 0 + 0.01 * the batch's mean
    [0.02, 0.0]
    """

    FORMS = tuple(K.FORMS)
    """The implementations besides ``"auto"``: ``"lax"`` (autodiff) and ``"fused"``."""

    def __init__(self, num_features: int, *, relu: bool = False, momentum: float = 0.99,
                 epsilon: float = 1e-5, use_running_average: bool = False,
                 impl: str = "auto", param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
        if not (isinstance(num_features, int) and num_features > 0):
            raise ValueError(f"BatchNorm: num_features={num_features!r}; expected a positive int")
        which(impl)
        self.num_features, self.relu, self.impl = num_features, bool(relu), impl
        self.momentum, self.epsilon = momentum, epsilon
        self.use_running_average = use_running_average
        self.scale = nnx.Param(jnp.ones((num_features,), param_dtype))
        self.bias = nnx.Param(jnp.zeros((num_features,), param_dtype))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

    def __call__(self, x):
        if x.ndim < 2 or x.shape[-1] != self.num_features:
            raise ValueError(f"BatchNorm: x.shape={tuple(x.shape)}; expected (N, ..., "
                             f"{self.num_features})")
        scale, bias = self.scale[...], self.bias[...]
        if self.use_running_average:
            return K.normalize(x, self.mean[...], self.var[...], scale, bias, self.epsilon,
                               self.relu)
        y, mean, var = K.FORMS[which(self.impl)](x, scale, bias, self.epsilon, self.relu)
        keep = self.momentum
        self.mean[...] = keep * self.mean[...] + (1 - keep) * jax.lax.stop_gradient(mean)
        self.var[...] = keep * self.var[...] + (1 - keep) * jax.lax.stop_gradient(var)
        return y
