"""Batch normalisation as an NNX layer, with the ReLU that follows it fused in.

:class:`BatchNorm` holds what ``flax.nnx.BatchNorm`` holds, under the same names
(``scale``, ``bias`` and the running ``mean`` and ``var``), and computes the same values;
it runs its training-mode pass through :mod:`jconv.kernels.batch_norm`, its sums in the
native library where that runs (:mod:`jconv.onednn.batch_norm`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jconv import onednn
from jconv.kernels import batch_norm as K
from jconv.onednn import batch_norm as onednn_bn

FORMS = {**K.FORMS, "native": onednn_bn.native}
"""The training-mode forms by implementation name: ``lax`` (autodiff), ``fused`` (the
hand-written reverse mode) and ``native`` (``fused`` with one-pass sums in the native
library, :mod:`jconv.onednn.batch_norm`)."""

IMPLS = ("auto", *FORMS)


def which(impl: str, dtype=jnp.float32) -> str:
    """The form ``impl`` runs for ``dtype`` on this backend. ``"auto"``: on CPU ``native``
    for float32 where the native library runs (:func:`jconv.onednn.unavailable`), else
    ``fused`` (its backward pass is one reduction and one elementwise pass; autodiff of the
    textbook form makes several: MobileNet v1's training step at batch 16 on 2 cores 546
    against 580 ms); ``lax`` elsewhere (not measured there). ``native``'s sums read ``x``
    once forward and ``dy`` and ``x`` once backward, where XLA:CPU's read ``x`` twice and
    write and reread ``g``: MobileNet v1's training step at batch 16 on 2 AVX2 cores 916
    against 960 ms (medians of 40 interleaved steps). ``"native"`` where it cannot run runs
    ``fused``."""
    if impl not in IMPLS:
        raise ValueError(f"BatchNorm: impl={impl!r}; expected one of {IMPLS}")
    cpu = jax.default_backend() == "cpu"
    if impl == "native" or (impl == "auto" and cpu):
        runs = (np.dtype(dtype) == np.float32
                and onednn.unavailable(jax.default_backend(), dtype) is None)
        return "native" if runs else "fused"
    return "lax" if impl == "auto" else impl


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

    FORMS = tuple(FORMS)
    """The implementations besides ``"auto"``: ``"lax"``, ``"fused"`` and ``"native"``."""

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
        y, mean, var = FORMS[which(self.impl, x.dtype)](x, scale, bias, self.epsilon, self.relu)
        keep = self.momentum
        self.mean[...] = keep * self.mean[...] + (1 - keep) * jax.lax.stop_gradient(mean)
        self.var[...] = keep * self.var[...] + (1 - keep) * jax.lax.stop_gradient(var)
        return y
