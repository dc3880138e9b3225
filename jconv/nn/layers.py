"""Thin ``flax.nnx`` layers over the jconv ops: each creates parameters and calls one op.

Letters: ``N`` batch, ``H W`` spatial, ``C`` input maps (``in_features``), ``K``
filters; activations ``(N, H, W, C)``, kernels ``H W I O``. Kernels are initialised
He-normal (truncated normal, variance ``2 / fan_in``, ``fan_in`` the number of inputs
one output sums over), biases with zeros.

Every layer names the op it runs (``layer.op``), the op's arguments (``layer.op_args()``),
its parameter shapes (``layer.weight_shapes()``) and its output shape for an input shape
(``layer.output_shape(x_shape)``), all without arrays: models propagate shapes through
their tables with these at build time, and the cost model reads them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jconv
from jconv.ops import registry

Initializer = Callable[..., jax.Array]

# Standard deviation of a normal truncated at +-2 std: rescales to the wanted variance.
_TRUNCATED_STD = 0.87962566103423978


def he_normal(fan_in: int) -> Initializer:
    """Truncated normal with variance ``2 / fan_in`` (He et al. 2015; ``jax.nn.initializers.he_normal``)."""
    std = math.sqrt(2.0 / fan_in) / _TRUNCATED_STD

    def init(key, shape, dtype=jnp.float32):
        size = math.prod(shape)
        flat = _truncated_normal(key, 1 << max(size - 1, 0).bit_length(), dtype)
        if isinstance(flat, jax.core.Tracer) or flat.dtype != np.float32:
            return std * flat[:size].reshape(shape)
        # The same float32 products in NumPy: eagerly, each slice, reshape and product would
        # compile for its shape (a GoogLeNet: 150 compilations, 6 of its 10 s to build).
        return jax.device_put(np.asarray(flat)[:size].reshape(shape) * np.float32(std))
    return init


_SHAPES_ONLY = contextvars.ContextVar("jconv_shapes_only", default=False)


@contextlib.contextmanager
def shapes_only():
    """Layers made inside draw no random keys: each parameter is zeros of its shape and dtype.

    For models built under ``nnx.eval_shape`` (:func:`jconv.summary.build_abstract`), where
    only the shapes are kept. There every key a layer draws is traced, and flax checks the
    traced count of keys each time with a scan of everything traced so far (a GoogLeNet built
    abstractly: 1.5 s, most of it in that check).
    """
    token = _SHAPES_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPES_ONLY.reset(token)


def param(init, shape, rngs: nnx.Rngs, dtype) -> nnx.Param:
    """``nnx.Param(init(rngs.params(), shape, dtype))``; zeros inside :func:`shapes_only`."""
    if _SHAPES_ONLY.get():
        return nnx.Param(jnp.zeros(shape, dtype))
    return nnx.Param(init(rngs.params(), shape, dtype))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _truncated_normal(key, size, dtype):
    """Samples a power-of-two ``size``: one compiled sampler per bucket, not per shape.

    Compiling a sampler takes 0.3 to 5 s on CPU (threefry); a model has dozens of kernel
    shapes but few power-of-two sizes.
    """
    return jax.random.truncated_normal(key, -2.0, 2.0, (size,), dtype)


def _kernel_size(kernel_size) -> tuple[int, ...]:
    if isinstance(kernel_size, int):
        return (kernel_size, kernel_size)
    return tuple(int(k) for k in kernel_size)


def _add_bias(y, bias):
    return y if bias is None else y + bias[...].reshape((1,) * (y.ndim - 1) + bias.shape)


def _check_channels(layer, x):
    if x.shape[-1] != layer.in_features:
        raise ValueError(f"{type(layer).__name__}: x.shape={tuple(x.shape)}; expected "
                         f"(N, H, W, C) with C = in_features = {layer.in_features}")


class _Layer(nnx.Module):
    """Shared protocol: ``op``, ``op_args``, ``weight_shapes``, ``output_shape``."""

    op: str = ""

    def op_args(self) -> tuple[tuple, dict[str, Any]]:
        """The op's positional arguments after ``x`` (as shapes) and keyword arguments."""
        return (), {}

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, biases included."""
        return {}

    def output_shape(self, x_shape: Sequence[int]) -> tuple[int, ...]:
        """Output shape for an input of ``x_shape``; raises ``ValueError`` if it does not fit."""
        args, kwargs = self.op_args()
        return registry.get(self.op).plan(tuple(x_shape), *args, **kwargs).out_shape

    def _param(self, init, shape, rngs, dtype):
        return param(init, shape, rngs, dtype)


class _ConvLayer(_Layer):
    """Parameters ``kernel`` (and ``bias``), a jconv conv op, then the bias."""

    def _init(self, in_features, kernel_shape, bias_size, fan_in, *, stride, padding, dilation,
              padding_mode, use_bias, impl, precision, kernel_init, bias_init, param_dtype,
              rngs):
        self.in_features = in_features
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.padding_mode, self.use_bias = padding_mode, use_bias
        self.impl, self.precision = impl, precision
        kernel_init = kernel_init or he_normal(fan_in)
        self.kernel = self._param(kernel_init, kernel_shape, rngs, param_dtype)
        self.bias = (self._param(bias_init, (bias_size,), rngs, param_dtype) if use_bias
                     else None)

    def _window_kwargs(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    padding_mode=self.padding_mode)

    def weight_shapes(self):
        shapes = {"kernel": tuple(self.kernel.shape)}
        if self.use_bias:
            shapes["bias"] = tuple(self.bias.shape)
        return shapes

    def op_args(self):
        return (tuple(self.kernel.shape),), self._window_kwargs()

    def _run(self, x):
        _check_channels(self, x)
        _, kwargs = self.op_args()
        y = registry.get(self.op).fn(x, self.kernel[...], **kwargs, impl=self.impl,
                                     precision=self.precision)
        return _add_bias(y, self.bias)

    def __call__(self, x):
        return self._run(x)


_CONV_DEFAULTS = dict(stride=1, padding="SAME", dilation=1, padding_mode="zeros",
                      use_bias=True, impl="auto", precision=None, kernel_init=None,
                      bias_init=nnx.initializers.zeros_init(), param_dtype=jnp.float32)


class Conv(_ConvLayer):
    """Type 2.2 convolution (:func:`jconv.conv`): ``K`` kernels of ``kh×kw×C/groups``.

    Parameters: ``kernel`` ``(kh, kw, C/groups, K)``, ``bias`` ``(K,)``.
    Input ``(N, H, W, C)``, output ``(N, H', W', K)``.

    >>> import jax.numpy as jnp, jconv, jconv.nn
    >>> from flax import nnx
    >>> layer = jconv.nn.Conv(96, 256, 5, groups=2, rngs=nnx.Rngs(0))  # AlexNet conv2
    >>> layer.kernel.shape, layer(jnp.ones((1, 27, 27, 96))).shape
    ((5, 5, 48, 256), (1, 27, 27, 256))
    >>> jconv.param_count("conv", layer.kernel.shape) == jconv.nn.count_params(layer)
    True
    """

    op = "conv"

    def __init__(self, in_features: int, out_features: int, kernel_size, *, stride=1,
                 padding="SAME", dilation=1, groups: int = 1, padding_mode="zeros",
                 use_bias=True, impl="auto", precision=None, kernel_init=None,
                 bias_init=_CONV_DEFAULTS["bias_init"], param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        if in_features % groups or out_features % groups:
            raise ValueError(f"Conv: groups={groups} must divide in_features={in_features} "
                             f"and out_features={out_features}")
        ks = _kernel_size(kernel_size)
        self.out_features, self.groups = out_features, groups
        self._init(in_features, (*ks, in_features // groups, out_features), out_features,
                   math.prod(ks) * in_features // groups, stride=stride, padding=padding,
                   dilation=dilation, padding_mode=padding_mode, use_bias=use_bias, impl=impl,
                   precision=precision, kernel_init=kernel_init, bias_init=bias_init,
                   param_dtype=param_dtype, rngs=rngs)

    def op_args(self):
        return (tuple(self.kernel.shape),), dict(self._window_kwargs(), groups=self.groups)


class PerMapConv(_ConvLayer):
    """Type 1 (:func:`jconv.per_map_conv`): each of ``K`` 2-D filters applied to every map.

    Parameters: ``kernel`` ``(kh, kw, K)``, ``bias`` ``(K,)`` (filter ``k``'s bias is added
    to its ``C`` maps, as :func:`jconv.param_count` counts it).
    Input ``(N, H, W, C)``, output ``(N, H', W', C*K)``, map-major (``c*K + k``).

    >>> import jax.numpy as jnp, jconv, jconv.nn
    >>> from flax import nnx
    >>> layer = jconv.nn.PerMapConv(4, 6, 5, rngs=nnx.Rngs(0))
    >>> layer.out_features, layer(jnp.ones((1, 8, 8, 4))).shape
    (24, (1, 8, 8, 24))
    >>> jconv.param_count("per_map_conv", layer.kernel.shape) == jconv.nn.count_params(layer)
    True
    """

    op = "per_map_conv"

    def __init__(self, in_features: int, filters: int, kernel_size, *, stride=1,
                 padding="SAME", dilation=1, padding_mode="zeros", use_bias=True,
                 impl="auto", precision=None, kernel_init=None,
                 bias_init=_CONV_DEFAULTS["bias_init"], param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        ks = _kernel_size(kernel_size)
        self.filters, self.out_features = filters, in_features * filters
        self._init(in_features, (*ks, filters), filters, math.prod(ks), stride=stride,
                   padding=padding, dilation=dilation, padding_mode=padding_mode,
                   use_bias=use_bias, impl=impl, precision=precision,
                   kernel_init=kernel_init, bias_init=bias_init, param_dtype=param_dtype,
                   rngs=rngs)

    def __call__(self, x):
        _check_channels(self, x)
        y = jconv.per_map_conv(x, self.kernel[...], **self._window_kwargs(), impl=self.impl,
                               precision=self.precision)
        if self.bias is None:
            return y
        y = y.reshape(*y.shape[:-1], self.in_features, self.filters)  # (N, H', W', C, K)
        y = _add_bias(y, self.bias)
        return y.reshape(*y.shape[:-2], self.out_features)  # (N, H', W', C*K)


class SharedFilterConv(_ConvLayer):
    """Type 2.1 (:func:`jconv.shared_filter_conv`): one 2-D filter per output, summed over maps.

    Parameters: ``kernel`` ``(kh, kw, K)``, ``bias`` ``(K,)``.
    Input ``(N, H, W, C)``, output ``(N, H', W', K)``.

    >>> import jax.numpy as jnp, jconv, jconv.nn
    >>> from flax import nnx
    >>> layer = jconv.nn.SharedFilterConv(4, 6, 5, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((1, 8, 8, 4))).shape
    (1, 8, 8, 6)
    >>> jconv.param_count("shared_filter_conv", layer.kernel.shape) == jconv.nn.count_params(layer)
    True
    """

    op = "shared_filter_conv"

    def __init__(self, in_features: int, out_features: int, kernel_size, *, stride=1,
                 padding="SAME", dilation=1, padding_mode="zeros", use_bias=True,
                 impl="auto", precision=None, kernel_init=None,
                 bias_init=_CONV_DEFAULTS["bias_init"], param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        ks = _kernel_size(kernel_size)
        self.out_features = out_features
        self._init(in_features, (*ks, out_features), out_features,
                   math.prod(ks) * in_features, stride=stride, padding=padding,
                   dilation=dilation, padding_mode=padding_mode, use_bias=use_bias, impl=impl,
                   precision=precision, kernel_init=kernel_init, bias_init=bias_init,
                   param_dtype=param_dtype, rngs=rngs)


class DepthwiseConv(_ConvLayer):
    """Depthwise convolution (:func:`jconv.depthwise_conv`): ``M`` filters per input map.

    Parameters: ``kernel`` ``(kh, kw, 1, C*M)``, ``bias`` ``(C*M,)``.
    Input ``(N, H, W, C)``, output ``(N, H', W', C*M)``.

    >>> import jax.numpy as jnp, jconv, jconv.nn
    >>> from flax import nnx
    >>> layer = jconv.nn.DepthwiseConv(32, 3, stride=2, use_bias=False, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((1, 16, 16, 32))).shape
    (1, 8, 8, 32)
    >>> jconv.param_count("depthwise_conv", layer.kernel.shape, bias=False) == \\
    ...     jconv.nn.count_params(layer)
    True
    """

    op = "depthwise_conv"

    def __init__(self, in_features: int, kernel_size, *, channel_multiplier: int = 1,
                 stride=1, padding="SAME", dilation=1, padding_mode="zeros", use_bias=True,
                 impl="auto", precision=None, kernel_init=None,
                 bias_init=_CONV_DEFAULTS["bias_init"], param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        ks = _kernel_size(kernel_size)
        self.channel_multiplier = channel_multiplier
        self.out_features = in_features * channel_multiplier
        self._init(in_features, (*ks, 1, self.out_features), self.out_features, math.prod(ks),
                   stride=stride, padding=padding, dilation=dilation,
                   padding_mode=padding_mode, use_bias=use_bias, impl=impl,
                   precision=precision, kernel_init=kernel_init, bias_init=bias_init,
                   param_dtype=param_dtype, rngs=rngs)


class PointwiseConv(_ConvLayer):
    """1×1 convolution (:func:`jconv.pointwise_conv`), Type 2.2: a per-pixel linear map.

    Parameters: ``kernel`` ``(C/groups, K)``, ``bias`` ``(K,)``.
    Input ``(N, H, W, C)``, output ``(N, ceil(H/stride), ceil(W/stride), K)``.

    >>> import jax.numpy as jnp, jconv, jconv.nn
    >>> from flax import nnx
    >>> layer = jconv.nn.PointwiseConv(192, 64, rngs=nnx.Rngs(0))  # GoogLeNet 3a's 1x1
    >>> layer(jnp.ones((1, 28, 28, 192))).shape
    (1, 28, 28, 64)
    >>> jconv.param_count("pointwise_conv", layer.kernel.shape) == jconv.nn.count_params(layer)
    True
    """

    op = "pointwise_conv"

    def __init__(self, in_features: int, out_features: int, *, stride=1, groups: int = 1,
                 use_bias=True, impl="auto", precision=None, kernel_init=None,
                 bias_init=_CONV_DEFAULTS["bias_init"], param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        if in_features % groups or out_features % groups:
            raise ValueError(f"PointwiseConv: groups={groups} must divide "
                             f"in_features={in_features} and out_features={out_features}")
        self.out_features, self.groups = out_features, groups
        self._init(in_features, (in_features // groups, out_features), out_features,
                   in_features // groups, stride=stride, padding="VALID", dilation=1,
                   padding_mode="zeros", use_bias=use_bias, impl=impl, precision=precision,
                   kernel_init=kernel_init, bias_init=bias_init, param_dtype=param_dtype,
                   rngs=rngs)

    def op_args(self):
        return (tuple(self.kernel.shape),), dict(stride=self.stride, groups=self.groups)


class SeparableConv(_Layer):
    """Depthwise-separable convolution (:func:`jconv.separable_conv`): depthwise, then 1×1.

    No nonlinearity between the two steps (Keras ``SeparableConv2D``); MobileNet puts
    BatchNorm and ReLU there, and :mod:`jconv.models.mobilenet` builds it from
    :class:`DepthwiseConv` and :class:`PointwiseConv` for that reason.

    Parameters: ``depthwise`` ``(kh, kw, 1, C*M)``, ``pointwise`` ``(C*M, K)``,
    ``bias`` ``(K,)``. Input ``(N, H, W, C)``, output ``(N, H', W', K)``.

    >>> import jax.numpy as jnp, jconv, jconv.nn
    >>> from flax import nnx
    >>> layer = jconv.nn.SeparableConv(32, 64, 3, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((1, 8, 8, 32))).shape
    (1, 8, 8, 64)
    >>> jconv.param_count("separable_conv", layer.depthwise.shape, layer.pointwise.shape) == \\
    ...     jconv.nn.count_params(layer)
    True
    """

    op = "separable_conv"

    def __init__(self, in_features: int, out_features: int, kernel_size, *,
                 channel_multiplier: int = 1, stride=1, padding="SAME", dilation=1,
                 padding_mode="zeros", use_bias=True, impl="auto", precision=None,
                 kernel_init=None, bias_init=_CONV_DEFAULTS["bias_init"],
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        ks = _kernel_size(kernel_size)
        mid = in_features * channel_multiplier
        self.in_features, self.out_features = in_features, out_features
        self.channel_multiplier = channel_multiplier
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.padding_mode, self.use_bias = padding_mode, use_bias
        self.impl, self.precision = impl, precision
        self.depthwise = self._param(kernel_init or he_normal(math.prod(ks)), (*ks, 1, mid),
                                     rngs, param_dtype)
        self.pointwise = self._param(kernel_init or he_normal(mid), (mid, out_features),
                                     rngs, param_dtype)
        self.bias = (self._param(bias_init, (out_features,), rngs, param_dtype) if use_bias
                     else None)

    def op_args(self):
        return ((tuple(self.depthwise.shape), tuple(self.pointwise.shape)),
                dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                     padding_mode=self.padding_mode))

    def weight_shapes(self):
        shapes = {"depthwise": tuple(self.depthwise.shape),
                  "pointwise": tuple(self.pointwise.shape)}
        if self.use_bias:
            shapes["bias"] = tuple(self.bias.shape)
        return shapes

    def __call__(self, x):
        _check_channels(self, x)
        _, kwargs = self.op_args()
        y = jconv.separable_conv(x, self.depthwise[...], self.pointwise[...], **kwargs,
                                 impl=self.impl, precision=self.precision)
        return _add_bias(y, self.bias)


def count_params(module: nnx.Module) -> int:
    """Number of ``nnx.Param`` entries of ``module`` (BatchNorm statistics excluded)."""
    state = nnx.state(module, nnx.Param)
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(state))
