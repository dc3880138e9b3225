"""Every convolution variant and pooling op as a pure, jit-compiled JAX function.

Letters: ``N`` batch, ``H W`` (or ``W``, or ``D H W``) spatial, ``C`` input maps, ``K``
filters; activations ``(N, H, W, C)``, kernels ``(kh, kw, C/groups, K)`` (``H W I O``).

Each op module registers its :class:`~jconv.ops.registry.OpSpec`; the names exported
here are the registry's built-in ops, plus the functions that read it.
"""

from jconv.ops import conv as _conv  # noqa: F401  (each module registers its ops)
from jconv.ops import depth_sliding as _depth_sliding  # noqa: F401
from jconv.ops import local as _local  # noqa: F401
from jconv.ops import map_types as _map_types  # noqa: F401
from jconv.ops import pooling as _pooling  # noqa: F401
from jconv.ops import transpose as _transpose  # noqa: F401
from jconv.ops.dispatch import which_impl
from jconv.ops.registry import REGISTRY, OpSpec, get, register
from jconv.ops.shapes import output_shape, param_count

BUILTIN_OPS: tuple[str, ...] = tuple(sorted(REGISTRY))
"""The ops jconv itself defines (the registry may hold more, registered by users)."""

globals().update({name: REGISTRY[name].fn for name in BUILTIN_OPS})

__all__ = sorted([*BUILTIN_OPS, "OpSpec", "get", "output_shape", "param_count", "register",
                  "which_impl"])
