"""jconv: how exactly do convolution layers work? Every variant as a pure JAX function.

>>> import jax.numpy as jnp, jconv
>>> x = jnp.ones((1, 8, 8, 4))                      # k1 = 4 maps from a first layer
>>> jconv.per_map_conv(x, jnp.ones((5, 5, 6))).shape       # Type 1: k1*k2 maps
(1, 8, 8, 24)
>>> jconv.shared_filter_conv(x, jnp.ones((5, 5, 6))).shape  # Type 2.1: k2 maps
(1, 8, 8, 6)
>>> jconv.conv(x, jnp.ones((5, 5, 4, 6))).shape             # Type 2.2: k2 maps
(1, 8, 8, 6)
"""

import importlib

from jconv import cost
from jconv.platform import backends  # jconv.backends(): what runs here
from jconv.ops import (BUILTIN_OPS, OpSpec, avg_pool, channel_max_pool, conv, conv_transpose,
                       depth_sliding_conv, depthwise_conv, get, global_avg_pool, local_conv,
                       local_response_norm, max_pool, output_shape, param_count, per_map_conv,
                       pointwise_conv, register, registry, separable_conv, shared_filter_conv,
                       spatially_separable_conv, which_impl)
from jconv.ops import __all__

__version__ = "0.1.0"

_ON_DEMAND = ("reference", "torch_ports")  # the NumPy oracle, the PyTorch forms: imported when asked for


def __getattr__(name):
    if name in _ON_DEMAND:
        return importlib.import_module(f"jconv.{name}")
    raise AttributeError(f"module 'jconv' has no attribute {name!r}")
