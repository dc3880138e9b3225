"""The einsum kernels as drop-in ``lax.conv_general_dilated``; jit, retracing and vmap.

* ``shift_conv_general_dilated`` / ``patch_conv_general_dilated`` equal
  ``lax.conv_general_dilated`` over dimension numbers, paddings, dilations and groups,
  and the NumPy reference for channels-last;
* they run inside ``flax.nnx.Conv`` (forward and gradient);
* the polyphase transposed conv equals the scatter form over strides, kernels, dilations,
  crops (negative ones too), groups and 1 to 3 spatial axes;
* every public op gives the same result jitted and not (``chex.variants``);
* a second same-shaped call to ``jconv.conv`` does not retrace;
* ``jax.vmap`` over a leading batch axis and over the filter axis equals the loop.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from flax import nnx
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax import lax
from jax.test_util import check_grads

import jconv
from jconv.kernels import patch_conv_general_dilated, shift_conv_general_dilated
from jconv.kernels.einsum_conv import scatter_transpose_conv
from jconv.kernels.phase_transpose import phase_transpose_conv
from jconv.ops.conv import run_conv
from jconv import reference
from tests.strategies import IMPLS, array
from tests.test_grads import OPS
from tests.tolerance import assert_close, tolerance

HIGHEST = lax.Precision.HIGHEST
KERNELS = {"shift": shift_conv_general_dilated, "patch": patch_conv_general_dilated}
SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


def _normal(seed, shape, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


# --------------------------------------------------------------------------- lax signature

# (id, dimension_numbers, spatial sizes, kernel sizes, C, O, kwargs of conv_general_dilated)
LAX_CASES = [
    ("nchw-same", None, (6, 5), (3, 2), 4, 6, dict(window_strides=(1, 1), padding="SAME")),
    ("nchw-strided-valid", None, (7, 6), (3, 3), 2, 3,
     dict(window_strides=(2, 3), padding="VALID", rhs_dilation=(1, 2))),
    ("nhwc-explicit-groups", ("NHWC", "HWIO", "NHWC"), (6, 6), (3, 2), 4, 6,
     dict(window_strides=(2, 1), padding=((1, 2), (0, 1)), rhs_dilation=(2, 1),
          feature_group_count=2)),
    ("nhwc-depthwise", ("NHWC", "HWIO", "NHWC"), (5, 5), (3, 3), 3, 6,
     dict(window_strides=(1, 1), padding="SAME", feature_group_count=3)),
    ("mixed-lhs-dilation", ("NCHW", "HWIO", "NHWC"), (4, 5), (3, 2), 2, 4,
     dict(window_strides=(1, 2), padding=((2, 1), (1, 0)), lhs_dilation=(2, 1))),
    ("mixed-odd", ("NHWC", "OIHW", "NCHW"), (5, 6), (2, 3), 4, 2,
     dict(window_strides=(1, 1), padding="SAME", rhs_dilation=(2, 2), feature_group_count=2)),
    ("1d-none", None, (9,), (3,), 2, 3, dict(window_strides=(2,), padding="SAME")),
    ("1d-nwc", ("NWC", "WIO", "NWC"), (8,), (2,), 3, 3,
     dict(window_strides=(1,), padding=((1, 2),), lhs_dilation=(3,), rhs_dilation=(2,),
          feature_group_count=3)),
    ("3d-ndhwc", ("NDHWC", "DHWIO", "NDHWC"), (4, 5, 3), (2, 3, 2), 2, 4,
     dict(window_strides=(1, 2, 1), padding="SAME", rhs_dilation=(1, 1, 2),
          feature_group_count=2)),
    ("3d-none", None, (3, 4, 4), (2, 2, 2), 2, 2,
     dict(window_strides=(2, 1, 1), padding="VALID")),
]


def _operands(dnums, spatial, kernel, c, o, groups, dtype=jnp.float32, seed=0):
    """lhs/rhs in the layouts ``dnums`` names (None: ``NC*S`` / ``OI*K``)."""
    letters = SPATIAL[len(spatial)]
    if dnums is None:
        lhs_spec, rhs_spec = "NC" + letters, "OI" + letters
    else:
        lhs_spec, rhs_spec = dnums[0], dnums[1]
    lhs_sizes = dict(N=2, C=c, **dict(zip(letters, spatial)))
    rhs_sizes = dict(O=o, I=c // groups, **dict(zip(letters, kernel)))
    lhs = _normal(seed, [lhs_sizes[a] for a in lhs_spec], dtype)
    rhs = _normal(seed + 1, [rhs_sizes[a] for a in rhs_spec], dtype)
    return lhs, rhs


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("dnums, spatial, ksize, c, o, kwargs",
                         [pytest.param(*case[1:], id=case[0]) for case in LAX_CASES])
def test_matches_lax_conv_general_dilated(kernel, dnums, spatial, ksize, c, o, kwargs):
    lhs, rhs = _operands(dnums, spatial, ksize, c, o, kwargs.get("feature_group_count", 1))
    expected = lax.conv_general_dilated(lhs, rhs, dimension_numbers=dnums, precision=HIGHEST,
                                        **kwargs)
    actual = KERNELS[kernel](lhs, rhs, dimension_numbers=dnums, precision=HIGHEST, **kwargs)
    assert actual.dtype == expected.dtype
    assert_close(actual, expected)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("dnums", [None, ("NHWC", "HWIO", "NHWC")])
def test_bfloat16_preferred_element_type(kernel, dnums):
    lhs, rhs = _operands(dnums, (6, 5), (3, 2), 4, 4, 2, dtype=jnp.bfloat16)
    kwargs = dict(window_strides=(2, 1), padding="SAME", rhs_dilation=(1, 2),
                  dimension_numbers=dnums, feature_group_count=2,
                  preferred_element_type=jnp.float32, precision=HIGHEST)
    expected = lax.conv_general_dilated(lhs, rhs, **kwargs)
    actual = KERNELS[kernel](lhs, rhs, **kwargs)
    assert expected.dtype == actual.dtype == jnp.float32
    # bf16 x bf16 products are exact in float32: only the summation order differs.
    assert_close(actual, expected, dtype=jnp.float32)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("nd, stride, padding, dilation, groups", [
    (2, (2, 1), "SAME", (1, 2), 2),
    (2, 1, ((2, 0), (1, 1)), 1, 1),
    (1, 3, "VALID", 2, 3),
    (3, (1, 2, 1), "SAME", (2, 1, 1), 1),
])
def test_channels_last_matches_reference(kernel, nd, stride, padding, dilation, groups):
    letters = SPATIAL[nd]
    dnums = ("N" + letters + "C", letters + "IO", "N" + letters + "C")
    spatial, ksize = (7, 6, 5)[:nd], (3, 2, 2)[:nd]
    lhs, rhs = _operands(dnums, spatial, ksize, 3 * groups, 2 * groups, groups)
    strides = (stride,) * nd if isinstance(stride, int) else stride
    dil = (dilation,) * nd if isinstance(dilation, int) else dilation
    actual = KERNELS[kernel](lhs, rhs, strides, padding, rhs_dilation=dil,
                             dimension_numbers=dnums, feature_group_count=groups,
                             precision=HIGHEST)
    expected = reference.conv(np.asarray(lhs), np.asarray(rhs), stride=stride, padding=padding,
                              dilation=dilation, groups=groups)
    assert_close(actual, expected)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_unsupported_arguments_raise(kernel):
    lhs, rhs = _operands(None, (4, 4), (2, 2), 4, 4, 1)
    with pytest.raises(NotImplementedError, match="batch_group_count"):
        KERNELS[kernel](lhs, rhs, (1, 1), "SAME", batch_group_count=2)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with pytest.raises(NotImplementedError, match="out_sharding"):
        KERNELS[kernel](lhs, rhs, (1, 1), "SAME", out_sharding=sharding)


# --------------------------------------------------------------------------- flax.nnx.Conv

NNX_CASES = [
    dict(kernel_size=(3, 3), padding="SAME"),
    dict(kernel_size=(3, 2), padding="VALID", strides=(2, 1)),
    dict(kernel_size=(2, 3), padding="SAME", feature_group_count=2, kernel_dilation=(2, 1)),
    dict(kernel_size=(3, 3), padding="VALID", feature_group_count=4, strides=2,
         kernel_dilation=2),
]


def _nnx_pair(kernel, cfg, in_features=4, out_features=8):
    """Two identical layers, lax's and ``kernel``'s; random weights set by hand (copied)."""
    layers = [nnx.Conv(in_features, out_features, precision=HIGHEST, rngs=nnx.Rngs(0),
                       kernel_init=nnx.initializers.zeros_init(),  # cheap: no RNG compile
                       **cfg, **extra)
              for extra in ({}, dict(conv_general_dilated=KERNELS[kernel]))]
    reference_layer, layer = layers
    reference_layer.kernel[...] = _normal(6, reference_layer.kernel.shape)
    reference_layer.bias[...] = _normal(7, reference_layer.bias.shape)
    layer.kernel[...] = reference_layer.kernel[...]
    layer.bias[...] = reference_layer.bias[...]
    return reference_layer, layer


def _loss(model, x, cotangent):
    return jnp.sum(model(x) * cotangent)


@nnx.jit
def _forward_and_grad(model, x, cotangent):
    """The layer's output and the gradient of <output, cotangent> w.r.t. (params, x)."""
    return model(x), nnx.grad(_loss, argnums=(0, 1))(model, x, cotangent)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("cfg", NNX_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_nnx_conv_forward_and_grad(kernel, cfg):
    reference_layer, layer = _nnx_pair(kernel, cfg)
    x = _normal(3, (2, 9, 8, 4))
    expected = reference_layer(x)  # eager, outside any jit
    cotangent = _normal(4, expected.shape)
    y, grad = _forward_and_grad(layer, x, cotangent)
    assert_close(y, expected)
    assert_close(layer(x), expected)  # eager too
    y_ref, grad_ref = _forward_and_grad(reference_layer, x, cotangent)
    assert_close(y_ref, expected)
    assert_close(grad[0]["kernel"][...], grad_ref[0]["kernel"][...])
    assert_close(grad[0]["bias"][...], grad_ref[0]["bias"][...])
    assert_close(grad[1], grad_ref[1])  # w.r.t. the input


# --------------------------------------------------------------------------- transposed conv


@st.composite
def transpose_geometries(draw):
    """Per axis ``(size, kernel, stride, dilation, (low, high))``; crops may be negative."""
    nd = draw(st.integers(1, 3))
    axes = [draw(st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3),
                           st.integers(1, 2), st.tuples(st.integers(-2, 2), st.integers(-2, 2))))
            for _ in range(nd)]
    for size, k, s, d, (lo, hi) in axes:
        assume((size - 1) * s + (k - 1) * d + 1 - lo - hi >= 1)
    return [tuple(column) for column in zip(*axes)]


# Each example runs both eager transposes op by op (about 3 s): ten at most.
@settings(max_examples=min(10, settings.default.max_examples))
@given(transpose_geometries(), st.integers(1, 3), st.integers(1, 2), st.integers(1, 2),
       st.integers(0, 2**16))
def test_phase_transpose_matches_scatter(geometry, groups, cin, cout, seed):
    sizes, kernel, stride, dilation, crops = geometry
    x = jnp.asarray(array(seed, (2, *sizes, groups * cin)))
    w = jnp.asarray(array(seed + 1, (*kernel, cin, groups * cout)))
    args = (stride, crops, dilation, groups)
    expected = scatter_transpose_conv(x, w, *args, precision=HIGHEST)
    assert_close(phase_transpose_conv(x, w, *args, precision=HIGHEST), expected,
                 err_msg=f"stride={stride} crops={crops} dilation={dilation} kernel={kernel}")


# --------------------------------------------------------------------------- jit / no jit

JIT_CASES = [(f"{c.id}-{impl}", c, impl) for c in OPS for impl in IMPLS[c.op]]


@pytest.mark.slow  # every op and impl, jitted and not
class JitTest(chex.TestCase):
    """Every public op, every impl: jitted as a whole, called as is, and fully eager agree."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*JIT_CASES)
    def test_jit_and_no_jit_agree(self, case, impl):
        args = case.args(jnp.float32)
        f = case.fn(impl)
        with jax.disable_jit():  # the op's own inner jit is off too
            eager = f(*args)
        actual = self.variant(f)(*args)
        chex.assert_trees_all_equal_shapes_and_dtypes(actual, eager)
        assert_close(actual, eager, err_msg=f"{case.id} impl={impl}")


# --------------------------------------------------------------------------- retracing


def test_conv_does_not_retrace_same_shapes():
    x, w = _normal(0, (1, 6, 6, 3)), _normal(1, (3, 3, 3, 5))
    x2, w2 = _normal(2, x.shape), _normal(3, w.shape)
    jconv.conv(x, w, stride=1, padding="SAME", impl="lax")
    size = run_conv._cache_size()
    # New values, and spellings of the same geometry: no new trace of the inner jit.
    jconv.conv(x2, w2, stride=1, padding="SAME", impl="lax")
    jconv.conv(x2, w, stride=(1, 1), padding="same", dilation=(1, 1), impl="lax")
    assert run_conv._cache_size() == size
    # A new shape does trace once more (the counter works).
    jconv.conv(x[:, :5], w, impl="lax")
    assert run_conv._cache_size() == size + 1


def test_conv_assert_max_traces():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(x, w):
        return jconv.conv(x, w, stride=2, groups=3)

    x, w = _normal(0, (2, 6, 6, 3)), _normal(1, (3, 3, 1, 6))
    first = f(x, w)
    second = f(x + 1.0, w * 2.0)  # would raise AssertionError on a second trace
    chex.assert_equal_shape([first, second])


# --------------------------------------------------------------------------- vmap


@pytest.mark.parametrize("impl", ["lax", "shift"])
def test_vmap_over_leading_axis(impl):
    xs, w = _normal(0, (3, 2, 6, 5, 4)), _normal(1, (3, 2, 2, 6))

    def f(x):
        return jconv.conv(x, w, stride=(2, 1), dilation=(1, 2), groups=2, impl=impl,
                          precision=HIGHEST)

    expected = jnp.stack([f(x) for x in xs])
    assert_close(jax.vmap(f)(xs), expected)


@pytest.mark.parametrize("impl", ["lax", "shift"])
def test_vmap_over_filter_axis(impl):
    x, w = _normal(0, (2, 6, 5, 3)), _normal(1, (3, 2, 3, 4))

    def single(wk):  # wk: (kh, kw, C), one filter
        return jconv.conv(x, wk[..., None], stride=2, padding="SAME", impl=impl,
                          precision=HIGHEST)[..., 0]

    per_filter = jax.vmap(single)(jnp.moveaxis(w, -1, 0))  # (K, N, H', W')
    expected = jconv.conv(x, w, stride=2, padding="SAME", impl=impl, precision=HIGHEST)
    assert_close(jnp.moveaxis(per_filter, 0, -1), expected)
    assert math.prod(per_filter.shape) == math.prod(expected.shape)


@pytest.mark.parametrize("stride, dilation, size, multiplier", [
    (1, 1, 11, 1), (2, 1, 12, 2), (1, 2, 13, 1), ((2, 1), (1, 2), 9, 3)])
def test_depthwise_row_blocked_gradient(monkeypatch, stride, dilation, size, multiplier):
    """The row-blocked weight gradient (large outputs) equals lax's, in float64, with
    ragged last blocks, strides, dilations and channel multipliers; forward mode too."""
    from jconv.kernels import einsum_conv
    monkeypatch.setattr(einsum_conv, "DEPTHWISE_UNCHUNKED_BYTES", 0)
    monkeypatch.setattr(einsum_conv, "DEPTHWISE_CHUNK_BYTES", 2 * size * 3 * multiplier * 8)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((2, size, size, 3)))
        w = jnp.asarray(rng.standard_normal((3, 3, 1, 3 * multiplier)))
        _check_depthwise_gradient(x, w, stride, dilation, rng)


def _check_depthwise_gradient(x, w, stride, dilation, rng):

    def conv(impl):
        return lambda x, w: jconv.depthwise_conv(x, w, stride=stride, dilation=dilation,
                                                 impl=impl, precision=HIGHEST)
    y, vjp = jax.vjp(conv("shift"), x, w)
    y_lax, vjp_lax = jax.vjp(conv("lax"), x, w)
    dy = jnp.asarray(rng.standard_normal(y.shape))
    assert_close(y, y_lax)
    for got, expected in zip(vjp(dy), vjp_lax(dy)):
        assert_close(got, expected)
    check_grads(conv("shift"), (x, w), order=1, modes=("fwd", "rev"),
                **tolerance("float64", kind="grad"))
