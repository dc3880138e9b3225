"""Pooling and normalisation layers over the jconv ops, and PyTorch's adaptive pooling.

Letters: ``N`` batch, ``H W`` spatial, ``C`` maps; activations ``(N, H, W, C)``. None of
these layers has parameters (count them with :func:`jconv.nn.count_params`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import jconv
from jconv.nn.layers import _kernel_size, _Layer


class MaxPool(_Layer):
    """Max pooling per map (:func:`jconv.max_pool`). ``(N, H, W, C)`` -> ``(N, H', W', C)``.

    >>> import jax.numpy as jnp, jconv, jconv.nn
    >>> jconv.nn.MaxPool(3, stride=2)(jnp.ones((1, 55, 55, 96))).shape  # AlexNet pool1
    (1, 27, 27, 96)
    >>> jconv.nn.count_params(jconv.nn.MaxPool(3)) == jconv.param_count("max_pool")
    True
    """

    op = "max_pool"

    def __init__(self, window, stride=None, padding="VALID", *, impl="auto"):
        self.window, self.stride, self.padding, self.impl = window, stride, padding, impl

    def op_args(self):
        return (self.window,), dict(stride=self.stride, padding=self.padding)

    def __call__(self, x):
        return jconv.max_pool(x, self.window, self.stride, self.padding, impl=self.impl)


class AvgPool(_Layer):
    """Average pooling per map (:func:`jconv.avg_pool`). ``(N, H, W, C)`` -> ``(N, H', W', C)``.

    >>> import jax.numpy as jnp, jconv, jconv.nn
    >>> jconv.nn.AvgPool(5, stride=3)(jnp.ones((1, 14, 14, 512))).shape  # GoogLeNet aux
    (1, 4, 4, 512)
    >>> jconv.nn.count_params(jconv.nn.AvgPool(5)) == jconv.param_count("avg_pool")
    True
    """

    op = "avg_pool"

    def __init__(self, window, stride=None, padding="VALID", *, count_include_pad=True,
                 impl="auto"):
        self.window, self.stride, self.padding, self.impl = window, stride, padding, impl
        self.count_include_pad = count_include_pad

    def op_args(self):
        return (self.window,), dict(stride=self.stride, padding=self.padding,
                                    count_include_pad=self.count_include_pad)

    def __call__(self, x):
        return jconv.avg_pool(x, self.window, self.stride, self.padding,
                              count_include_pad=self.count_include_pad, impl=self.impl)


class GlobalAvgPool(_Layer):
    """Mean of each map (:func:`jconv.global_avg_pool`). ``(N, H, W, C)`` -> ``(N, C)``.

    >>> import jax.numpy as jnp, jconv, jconv.nn
    >>> jconv.nn.GlobalAvgPool()(jnp.ones((2, 7, 7, 1024))).shape
    (2, 1024)
    >>> jconv.nn.count_params(jconv.nn.GlobalAvgPool()) == jconv.param_count("global_avg_pool")
    True
    """

    op = "global_avg_pool"

    def __init__(self, *, impl="auto"):
        self.impl = impl

    def __call__(self, x):
        return jconv.global_avg_pool(x, impl=self.impl)


class LocalResponseNorm(_Layer):
    """Local response normalisation across maps (:func:`jconv.local_response_norm`).

    AlexNet's constants by default: ``k=2, n=5, alpha=1e-4, beta=0.75`` (``alpha``
    multiplies the sum, as in the paper). ``(N, H, W, C)`` -> ``(N, H, W, C)``.

    >>> import jax.numpy as jnp, jconv, jconv.nn
    >>> jconv.nn.LocalResponseNorm()(jnp.ones((1, 55, 55, 96))).shape
    (1, 55, 55, 96)
    >>> jconv.nn.count_params(jconv.nn.LocalResponseNorm()) == \\
    ...     jconv.param_count("local_response_norm")
    True
    """

    op = "local_response_norm"

    def __init__(self, size: int = 5, k: float = 2.0, alpha: float = 1e-4,
                 beta: float = 0.75, *, impl="auto"):
        self.size, self.k, self.alpha, self.beta, self.impl = size, k, alpha, beta, impl

    def op_args(self):
        return (self.size, self.k, self.alpha, self.beta), {}

    def __call__(self, x):
        return jconv.local_response_norm(x, self.size, self.k, self.alpha, self.beta,
                                         impl=self.impl)


def _adaptive_matrix(in_size: int, out_size: int):
    """``(out, in)`` averaging matrix of PyTorch's adaptive pooling bins.

    Bin ``j`` covers ``[floor(j*in/out), ceil((j+1)*in/out))``: bins overlap when the input
    is not a multiple of the output, and repeat inputs when the input is smaller.
    """
    rows = []
    for j in range(out_size):
        lo, hi = (j * in_size) // out_size, -(-((j + 1) * in_size) // out_size)
        rows.append([1.0 / (hi - lo) if lo <= i < hi else 0.0 for i in range(in_size)])
    return jnp.asarray(rows)


class AdaptiveAvgPool(_Layer):
    """Average pooling to a fixed grid, as PyTorch's ``AdaptiveAvgPool2d`` (torchvision AlexNet).

    Works for inputs smaller or larger than the output grid: each output cell averages
    its bin ``[floor(j*H/H_out), ceil((j+1)*H/H_out))``. ``(N, H, W, C)`` -> ``(N, H_out, W_out, C)``.
    Not a jconv op: ``op`` is ``"adaptive_avg_pool"`` and the layer computes its own shape.

    >>> import jax.numpy as jnp, jconv, jconv.nn
    >>> x = jnp.arange(4.0).reshape(1, 4, 1, 1)
    >>> jconv.nn.AdaptiveAvgPool((3, 1))(x).ravel().tolist()   # bins [0,2) [1,3) [2,4)
    [0.5, 1.5, 2.5]
    """

    op = "adaptive_avg_pool"

    def __init__(self, output_size):
        self.output_size = _kernel_size(output_size)

    def op_args(self):
        return (), dict(output_size=self.output_size)

    def output_shape(self, x_shape):
        return (x_shape[0], *self.output_size, x_shape[-1])

    def __call__(self, x):
        a_h = _adaptive_matrix(x.shape[1], self.output_size[0]).astype(x.dtype)
        a_w = _adaptive_matrix(x.shape[2], self.output_size[1]).astype(x.dtype)
        return jnp.einsum("hi,wj,nijc->nhwc", a_h, a_w, x,
                          precision=jax.lax.Precision.HIGHEST)  # (N, H_out, W_out, C)
