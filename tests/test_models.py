"""jconv.models: parameter totals from the papers' shapes, shapes per variant and width, errors.

Full-size models are only built abstractly (``nnx.eval_shape``): no memory, no compute.
"""

import functools

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jconv import models
from jconv.nn import VARIANTS, count_params
from jconv.nn.layers import shapes_only


@functools.cache
def abstract(name, **kw):
    with shapes_only():
        return nnx.eval_shape(lambda: models.build(name, rngs=nnx.Rngs(0), **kw))


def out_shape(model, x_shape):
    """Forward output shape of an abstract model, via split/merge and jax.eval_shape."""
    graphdef, state = nnx.split(model)
    return jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state,
                          jax.ShapeDtypeStruct(x_shape, jnp.float32))


def conv(kh, kw, c, k, bias=True):
    return kh * kw * c * k + bias * k


def fc(i, o):
    return i * o + o


# Krizhevsky et al. 2012: conv2, conv4, conv5 see their own tower's 48 / 192 / 192 maps.
ALEXNET = (conv(11, 11, 3, 96) + conv(5, 5, 48, 256) + conv(3, 3, 256, 384)
           + conv(3, 3, 192, 384) + conv(3, 3, 192, 256)
           + fc(6 * 6 * 256, 4096) + fc(4096, 4096) + fc(4096, 1000))
ALEXNET_SINGLE_TOWER = (conv(11, 11, 3, 64) + conv(5, 5, 64, 192) + conv(3, 3, 192, 384)
                        + conv(3, 3, 384, 256) + conv(3, 3, 256, 256)
                        + fc(6 * 6 * 256, 4096) + fc(4096, 4096) + fc(4096, 1000))


def inception(c, n1, n3r, n3, n5r, n5, pp):
    return (conv(1, 1, c, n1) + conv(1, 1, c, n3r) + conv(3, 3, n3r, n3)
            + conv(1, 1, c, n5r) + conv(5, 5, n5r, n5) + conv(1, 1, c, pp))


def googlenet_total():
    total = conv(7, 7, 3, 64) + conv(1, 1, 64, 64) + conv(3, 3, 64, 192)
    c = 192
    for row in ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64),
                (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64),
                (128, 128, 256, 24, 64, 64), (112, 144, 288, 32, 64, 64),
                (256, 160, 320, 32, 128, 128), (256, 160, 320, 32, 128, 128),
                (384, 192, 384, 48, 128, 128)):
        total += inception(c, *row)
        c = row[0] + row[2] + row[4] + row[5]
    return total + fc(c, 1000)


def aux_head(c):  # 5x5/3 avg pool -> 4x4xC, 1x1 conv 128, FC 1024, linear
    return conv(1, 1, c, 128) + fc(4 * 4 * 128, 1024) + fc(1024, 1000)


def mobilenet_total(bn=True):
    blocks = ((32, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512),
              *[(512, 512)] * 5, (512, 1024), (1024, 1024))
    bn_params = 2 * 32 if bn else 0
    total = conv(3, 3, 3, 32, bias=False) + bn_params
    for c, k in blocks:
        total += conv(3, 3, 1, c, bias=False) + conv(1, 1, c, k, bias=False)
        total += 2 * (c + k) if bn else 0  # BatchNorm scale and offset
    return total + fc(1024, 1000)


def test_hand_derived_totals_are_the_published_ones():
    assert ALEXNET == 60_965_224  # "60 million parameters"
    assert ALEXNET_SINGLE_TOWER == 61_100_840  # torchvision's alexnet
    assert googlenet_total() == 6_998_552  # ~7M: the real 5x5 branches
    assert mobilenet_total(bn=False) == 4_210_088  # Table 1's "4.2 million"
    assert mobilenet_total() == 4_231_976  # Keras' trainable count, BatchNorm included


@pytest.mark.parametrize("name, expected", [
    ("alexnet", ALEXNET), ("alexnet_single_tower", ALEXNET_SINGLE_TOWER),
    ("googlenet", googlenet_total()), ("mobilenet_v1", mobilenet_total())])
def test_full_size_parameter_totals(name, expected):
    model = abstract(name)
    assert count_params(model) == expected
    assert sum(i.params for i in model.layer_table()) == expected
    assert out_shape(model, (2, *model.input_shape)).shape == (2, 1000)


def test_googlenet_aux_classifiers():
    model = abstract("googlenet", aux_classifiers=True)
    assert count_params(model) == googlenet_total() + aux_head(512) + aux_head(528)
    assert [o.shape for o in out_shape(model, (2, 224, 224, 3))] == [(2, 1000)] * 3
    model.eval()
    assert out_shape(model, (2, 224, 224, 3)).shape == (2, 1000)
    names = [i.name for i in model.layer_table()]
    assert "aux1/conv" in names and "aux2/fc2" in names


def test_alexnet_layer_table_is_the_papers():
    table = {i.name: i for i in abstract("alexnet").layer_table()}
    assert table["conv1"].out_shape == (1, 55, 55, 96)
    assert table["pool1"].out_shape == (1, 27, 27, 96)
    assert table["conv2"].kernel_shapes == ((5, 5, 48, 256),) and table["conv2"].groups == 2
    assert table["conv3"].kernel_shapes == ((3, 3, 256, 384),) and table["conv3"].groups == 1
    assert table["conv4"].kernel_shapes == ((3, 3, 192, 384),)
    assert table["pool5"].out_shape == (1, 6, 6, 256)
    assert table["fc6"].kernel_shapes == ((9216, 4096),)


def test_googlenet_layer_table_is_the_papers():
    table = {i.name: i for i in abstract("googlenet").layer_table()}
    grid = {"conv1": 112, "pool1": 56, "conv2": 56, "pool2": 28, "inception_3b": 28,
            "pool3": 14, "inception_4e": 14, "pool4": 7, "inception_5b": 7}
    assert {k: table[k].out_shape[1] for k in grid} == grid
    assert table["inception_3a"].out_shape == (1, 28, 28, 256)
    assert table["inception_5b"].out_shape == (1, 7, 7, 1024)
    assert table["inception_3a/branch_5x5"].kernel_shapes == ((5, 5, 16, 32),)
    assert table["inception_3a/branch_3x3_reduce"].op == "pointwise_conv"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name, size", [("alexnet", 67), ("alexnet_single_tower", 64),
                                        ("mobilenet_v1", 64)])
@pytest.mark.parametrize("width", [0.25, 0.5])
def test_output_shapes_per_variant_and_width(name, size, variant, width):
    model = abstract(name, variant=variant, width=width, input_size=size, num_classes=10)
    assert out_shape(model, (3, size, size, 3)).shape == (3, 10)
    assert model.layer_table()[-1].out_shape == (1, 10)


@pytest.mark.parametrize("variant", ["per_map", "separable"])
def test_googlenet_variants(variant):
    model = abstract("googlenet", variant=variant, width=0.25, input_size=64, num_classes=10)
    assert out_shape(model, (1, 64, 64, 3)).shape == (1, 10)


def test_per_map_widths_follow_through_the_table():
    table = {i.name: i for i in abstract("alexnet", variant="per_map").layer_table()}
    assert table["conv1"].op == "conv" and table["conv1"].out_shape[-1] == 96  # stem
    # conv2: 96 maps, 256 filters -> 2 per map; conv3: 192 -> 384 = 2*192; conv4, conv5: 1
    assert [table[f"conv{i}"].out_shape[-1] for i in (2, 3, 4, 5)] == [192, 384, 384, 384]
    assert table["conv2"].kernel_shapes == ((5, 5, 2),)
    assert table["fc6"].in_shape == (1, 6 * 6 * 384)


def test_width_scaling_and_groups():
    table = {i.name: i for i in abstract("alexnet", width=0.05).layer_table()}
    # round(96 * 0.05) = 5 is rounded up to 6 so that conv2's two groups divide its maps
    assert table["conv1"].out_shape[-1] == 6 and table["conv2"].kernel_shapes[0][2] == 3
    mobilenet = {i.name: i for i in abstract("mobilenet_v1", width=0.25).layer_table()}
    assert mobilenet["conv_pw_13"].out_shape[-1] == 256 and mobilenet["fc"].out_shape == (1, 1000)


@pytest.mark.slow  # every model, compiled
def test_small_models_run_and_jit_through_split_merge():
    for name, size, kw in [("alexnet", 67, {}), ("googlenet", 64, {}),
                           ("mobilenet_v1", 64, {"variant": "per_map"})]:
        model = models.build(name, width=0.25, input_size=size, num_classes=10,
                             rngs=nnx.Rngs(0), **kw)
        model.eval()
        graphdef, state = nnx.split(model)
        x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
        y = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)
        assert y.shape == (2, 10) and bool(jnp.all(jnp.isfinite(y)))


def test_dropout_train_eval():
    model = models.build("alexnet", width=0.25, input_size=67, num_classes=10,
                         rngs=nnx.Rngs(0))
    x = jnp.ones((2, 67, 67, 3))
    model.eval()
    assert jnp.array_equal(model(x), model(x))
    model.train()
    assert model.dropout6.deterministic is False


def test_wrong_input_names_model_and_expected_shape():
    model = abstract("mobilenet_v1", width=0.25, input_size=64)
    for bad in [(1, 32, 32, 3), (1, 64, 64, 1)]:
        with pytest.raises(ValueError, match=r"mobilenet_v1: .*\(N, H, W, C\) = \(N, 64, 64, 3\)"):
            out_shape(model, bad)


def test_unknown_names_list_known_ones():
    with pytest.raises(ValueError, match="unknown model 'vgg'.*alexnet.*googlenet.*mobilenet_v1"):
        models.build("vgg", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown conv variant 'dense'.*per_map"):
        models.build("alexnet", variant="dense", rngs=nnx.Rngs(0))


def test_width_rounding_to_zero_is_refused():
    with pytest.raises(ValueError, match=r"googlenet: width 0.01 rounds layer "
                                         r"inception_3a/branch_5x5_reduce from 16 filters to 0"):
        abstract("googlenet", width=0.01)


def test_input_too_small_names_the_layer():
    with pytest.raises(ValueError, match="alexnet: layer pool5 does not fit"):
        abstract("alexnet", input_size=66)
    with pytest.raises(ValueError, match="googlenet: layer aux1/pool does not fit"):
        abstract("googlenet", input_size=64, aux_classifiers=True)
