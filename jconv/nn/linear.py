"""A fully connected layer whose matmuls run in oneDNN on the CPU.

:class:`Linear` holds what ``flax.nnx.Linear`` holds, under the same names (``kernel``
``(C, K)`` and ``bias``), and computes ``x @ kernel + bias``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jconv import onednn
from jconv.nn.layers import param
from jconv.onednn import matmul

IMPLS = ("auto", "lax", "onednn")


def which(impl: str, dtype) -> str:
    """The kernel ``impl`` runs for ``dtype`` on this backend. ``"auto"``: ``onednn`` where
    it runs (:func:`jconv.onednn.unavailable`), its forward pass and input gradient
    faster than XLA:CPU's dot on the classifiers measured (batch 16, 9216 → 4096: 1.6× and
    1.5×; 4096 → 1000: 1.3× and 1.2×; the weight gradient stays XLA's:
    :mod:`jconv.onednn.matmul`), the BatchNorm AlexNet's training step 374 against 402 ms;
    else ``lax`` (``jnp.dot``). ``"onednn"`` where it cannot run also runs ``lax``."""
    if impl not in IMPLS:
        raise ValueError(f"Linear: impl={impl!r}; expected one of {IMPLS}")
    if impl == "lax" or onednn.unavailable(jax.default_backend(), dtype) is not None:
        return "lax"
    return "onednn"


class Linear(nnx.Module):
    """``y = x @ kernel + bias`` for ``x (N, C)``: ``(N, K)``.

    >>> import jax.numpy as jnp, jconv.nn
    >>> from flax import nnx
    >>> layer = jconv.nn.Linear(3, 2, kernel_init=nnx.initializers.ones, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((1, 3))).tolist()
    [[3.0, 3.0]]
    """

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
                 kernel_init=nnx.initializers.lecun_normal(),
                 bias_init=nnx.initializers.zeros_init(), impl: str = "auto",
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"Linear: {name}={value!r}; expected a positive int")
        if impl not in IMPLS:
            raise ValueError(f"Linear: impl={impl!r}; expected one of {IMPLS}")
        self.in_features, self.out_features, self.impl = in_features, out_features, impl
        self.kernel = param(kernel_init, (in_features, out_features), rngs, param_dtype)
        self.bias = param(bias_init, (out_features,), rngs, param_dtype) if use_bias else None

    def __call__(self, x):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Linear: x.shape={tuple(x.shape)}; expected (N, "
                             f"{self.in_features})")
        kernel = self.kernel[...].astype(x.dtype)
        if which(self.impl, x.dtype) == "onednn":
            y = matmul.linear(x, kernel)
        else:
            y = jnp.dot(x, kernel)
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)[None]
        return y
