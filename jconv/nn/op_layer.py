"""A layer for any registered op that can stand in for a Type 2.2 conv.

:class:`OpLayer` reads the op's :class:`~jconv.ops.registry.LayerForm` from the
registry: the op's weight arguments and their shapes for ``C`` maps, ``K`` filters and
a kernel size, the layer's output width and the op's keyword arguments. Each weight is
initialised He-normal with ``fan_in`` the product of its shape but the last axis (the
inputs one output sums over), the bias (one per output map) with zeros. A variant
registered with ``OpSpec(..., layer=LayerForm(...), variant=NAME)`` gets this layer in
every model (:func:`jconv.nn.make_conv`).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx

from jconv.nn.layers import _add_bias, _check_channels, _kernel_size, _Layer, he_normal
from jconv.ops import registry


class OpLayer(_Layer):
    """Parameters from the op's ``LayerForm``, then the op, then the bias.

    Args:
      op: a registered op name whose spec has a ``layer``.
      in_features: ``C``.
      out_features: ``K``, the filters of the Type 2.2 conv it replaces.
      kernel_size: an int or one per spatial axis.
      stride, padding: as in :func:`jconv.conv`.
      use_bias, impl, precision, param_dtype, rngs: as in :class:`jconv.nn.Conv`.
    """

    def __init__(self, op: str, in_features: int, out_features: int, kernel_size=3, *,
                 stride=1, padding="SAME", use_bias: bool = True, impl: str = "auto",
                 precision=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        spec = registry.get(op, "OpLayer")
        if spec.layer is None:
            raise ValueError(f"OpLayer: op={op!r}; expected an op registered with a "
                             "LayerForm (OpSpec.layer)")
        self.op, self.in_features, self.impl, self.precision = op, in_features, impl, precision
        self.use_bias = use_bias
        kernel = _kernel_size(kernel_size)
        self.op_kwargs = spec.layer.op_kwargs(kernel, stride, padding)
        shapes = spec.layer.weights(in_features, out_features, kernel)
        self.weight_names = tuple(shapes)
        for name, shape in shapes.items():
            init = he_normal(max(1, math.prod(shape[:-1])))
            setattr(self, name, self._param(init, tuple(shape), rngs, param_dtype))
        width = spec.layer.out_features(in_features, out_features)
        self.bias = (nnx.Param(jnp.zeros((width,), param_dtype)) if use_bias else None)

    def weight_shapes(self):
        shapes = {name: tuple(getattr(self, name).shape) for name in self.weight_names}
        if self.use_bias:
            shapes["bias"] = tuple(self.bias.shape)
        return shapes

    def op_args(self):
        return tuple(tuple(getattr(self, n).shape) for n in self.weight_names), self.op_kwargs

    def __call__(self, x):
        _check_channels(self, x)
        weights = [getattr(self, name)[...] for name in self.weight_names]
        y = registry.get(self.op).fn(x, *weights, **self.op_kwargs, impl=self.impl,
                                     precision=self.precision)
        return _add_bias(y, self.bias)
