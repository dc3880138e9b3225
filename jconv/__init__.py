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

from jconv import backends, cost, reference, torch_ports  # jconv.backends(): what runs here
from jconv.ops import *  # noqa: F403
from jconv.ops import BUILTIN_OPS, __all__, registry

for _name in BUILTIN_OPS:  # each built-in op's cost formula, NumPy truth and PyTorch form
    registry.update(_name, cost=getattr(cost, _name), reference=getattr(reference, _name),
                    torch=torch_ports.PORTS.get(_name))

__version__ = "0.1.0"
