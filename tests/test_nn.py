"""jconv.nn: each layer equals its op, counts what param_count counts; the variant rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jconv
from jconv import nn
from tests.tolerance import assert_close

X = jax.random.normal(jax.random.key(1), (2, 9, 9, 4))


def _conv_layers():
    r = nnx.Rngs(0)
    return [
        (nn.Conv(4, 6, 3, stride=2, groups=2, rngs=r),
         lambda l, x: jconv.conv(x, l.kernel[...], stride=2, groups=2) + l.bias[...][None, None, None]),
        (nn.SharedFilterConv(4, 6, 3, padding="VALID", rngs=r),
         lambda l, x: jconv.shared_filter_conv(x, l.kernel[...], padding="VALID") + l.bias[...][None, None, None]),
        (nn.DepthwiseConv(4, 3, channel_multiplier=2, use_bias=False, rngs=r),
         lambda l, x: jconv.depthwise_conv(x, l.kernel[...])),
        (nn.PointwiseConv(4, 6, stride=2, rngs=r),
         lambda l, x: jconv.pointwise_conv(x, l.kernel[...], stride=2) + l.bias[...][None, None, None]),
        (nn.SeparableConv(4, 6, 3, rngs=r),
         lambda l, x: jconv.separable_conv(x, l.depthwise[...], l.pointwise[...]) + l.bias[...][None, None, None]),
    ]


@pytest.mark.parametrize("index", range(5))
def test_layer_equals_op_and_counts_params(index):
    layer, op = _conv_layers()[index]
    layer.bias is None or layer.bias.set_value(jnp.arange(6.0))  # a visible bias
    y = layer(X)
    assert_close(y, op(layer, X))
    assert y.shape == layer.output_shape(X.shape)
    shapes = [s for k, s in layer.weight_shapes().items() if k != "bias"]
    assert jconv.param_count(layer.op, *shapes, bias=layer.use_bias) == nn.count_params(layer)


def test_per_map_bias_is_per_filter():
    layer = nn.PerMapConv(4, 3, 3, rngs=nnx.Rngs(0))
    layer.bias.set_value(jnp.array([1.0, 2.0, 3.0]))
    y = layer(X)
    expected = jconv.per_map_conv(X, layer.kernel[...]) + jnp.tile(layer.bias[...], 4)[None, None, None]
    assert y.shape == (2, 9, 9, 12) and layer.out_features == 12
    assert_close(y, expected)
    assert jconv.param_count("per_map_conv", layer.kernel.shape) == nn.count_params(layer) == 30


def test_pool_and_lrn_layers_equal_ops():
    assert_close(nn.MaxPool(3, 2)(X), jconv.max_pool(X, 3, 2))
    assert_close(nn.AvgPool(3, 1, "SAME")(X), jconv.avg_pool(X, 3, 1, "SAME"))
    assert_close(nn.GlobalAvgPool()(X), jconv.global_avg_pool(X))
    assert_close(nn.LocalResponseNorm()(X), jconv.local_response_norm(X, 5, 2.0, 1e-4, 0.75))


def test_he_init_variance_and_zero_bias():
    layer = nn.Conv(64, 256, 3, rngs=nnx.Rngs(0))
    std = float(jnp.std(layer.kernel[...]))
    assert abs(std - np.sqrt(2 / (9 * 64))) < 0.05 * np.sqrt(2 / (9 * 64))
    assert not jnp.any(layer.bias[...])


@pytest.mark.parametrize("size", [13, 6, 4, 3])
def test_adaptive_avg_pool_matches_pytorch_bins(size):
    x = jax.random.normal(jax.random.key(0), (1, size, size + 1, 2))
    y = nn.AdaptiveAvgPool(6)(x)
    xn = np.asarray(x, np.float64)
    expected = np.zeros((1, 6, 6, 2))
    for i in range(6):
        h0, h1 = i * size // 6, -(-(i + 1) * size // 6)
        for j in range(6):
            w0, w1 = j * (size + 1) // 6, -(-(j + 1) * (size + 1) // 6)
            expected[0, i, j] = xn[0, h0:h1, w0:w1].mean((0, 1))
    assert_close(y, expected)


@pytest.mark.parametrize("c, k", [(96, 256), (192, 384), (384, 384), (384, 256), (3, 64)])
def test_per_map_variant_width_is_c_times_k_over_c(c, k):
    layer, out = nn.make_conv("per_map", nn.ConvSpec(k, 3), c, rngs=nnx.Rngs(0))
    assert isinstance(layer, nn.PerMapConv)
    assert out == c * max(1, k // c) == layer.output_shape((1, 8, 8, c))[-1]


def test_variant_rule():
    spec = nn.ConvSpec(256, 5, padding=2, groups=2)
    kinds = {v: type(nn.make_conv(v, spec, 96, rngs=nnx.Rngs(0))[0]).__name__
             for v in nn.VARIANTS}
    assert kinds == {"standard": "Conv", "grouped": "Conv", "per_map": "PerMapConv",
                     "shared_filter": "SharedFilterConv", "separable": "SeparableConv"}
    assert nn.make_conv("grouped", nn.ConvSpec(7, 3), 96, rngs=nnx.Rngs(0))[0].groups == 1
    for v in nn.VARIANTS:  # stem stays standard; 1x1 stays pointwise Type 2.2
        assert type(nn.make_conv(v, nn.ConvSpec(96, 11, stride=4), 3, stem=True,
                                 rngs=nnx.Rngs(0))[0]) is nn.Conv
        assert type(nn.make_conv(v, nn.ConvSpec(64, 1), 32, rngs=nnx.Rngs(0))[0]) is \
            nn.PointwiseConv


def test_unknown_variant_lists_known():
    with pytest.raises(ValueError, match="unknown conv variant 'dense'.*standard.*separable"):
        nn.make_conv("dense", nn.ConvSpec(8), 4, rngs=nnx.Rngs(0))


def test_wrong_channels_names_layer():
    with pytest.raises(ValueError, match=r"Conv: .*C = in_features = 3"):
        nn.Conv(3, 8, 3, rngs=nnx.Rngs(0))(X)


def test_jit_through_split_merge():
    layer = nn.SeparableConv(4, 6, 3, stride=2, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(layer)
    y = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, X)
    assert_close(y, layer(X))
