"""Every convolution variant and pooling op as a pure, jit-compiled JAX function.

Letters: ``N`` batch, ``H W`` (or ``W``, or ``D H W``) spatial, ``C`` input maps, ``K``
filters; activations ``(N, H, W, C)``, kernels ``(kh, kw, C/groups, K)`` (``H W I O``).

Each op module registers its :class:`~jconv.ops.registry.OpSpec` (function, plan,
implementations, cost, reference and PyTorch form, in one ``register``); the names exported
here are the registry's built-in ops, plus the functions that read it.
"""

from jconv.ops.conv import conv, depthwise_conv, pointwise_conv, separable_conv, spatially_separable_conv
from jconv.ops.depth_sliding import depth_sliding_conv
from jconv.ops.dispatch import which_impl
from jconv.ops.local import local_conv
from jconv.ops.map_types import per_map_conv, shared_filter_conv
from jconv.ops.pooling import (avg_pool, channel_max_pool, global_avg_pool, local_response_norm,
                               max_pool)
from jconv.ops.registry import REGISTRY, OpSpec, get, register
from jconv.ops.shapes import output_shape, param_count
from jconv.ops.transpose import conv_transpose

BUILTIN_OPS: tuple[str, ...] = tuple(sorted(REGISTRY))
"""The ops jconv itself defines (the registry may hold more, registered by users)."""

__all__ = ["avg_pool", "channel_max_pool", "conv", "conv_transpose", "depth_sliding_conv",
           "depthwise_conv", "global_avg_pool", "local_conv", "local_response_norm", "max_pool",
           "per_map_conv", "pointwise_conv", "separable_conv", "shared_filter_conv",
           "spatially_separable_conv", "OpSpec", "get", "output_shape", "param_count", "register",
           "which_impl"]
