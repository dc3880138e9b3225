"""Algebraic identities between the variants, for every implementation.

Each identity relates two ops that are computed by different code, so a bug in either
breaks it: Type 2.1 is a conv of the summed maps, Type 1 is a depthwise conv with tied
weights, a transposed conv is the input-VJP of a conv, and so on.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax import lax

import jconv
from jconv import reference
from tests.strategies import IMPLS, array, geometries, split
from tests.tolerance import assert_close

HIGHEST = lax.Precision.HIGHEST


def impls(op):
    return pytest.mark.parametrize("impl", IMPLS[op])


@impls("shared_filter_conv")
@given(geometries(nd=2), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_shared_filter_is_conv_of_summed_maps(impl, geometry, c, k, seed):
    sizes, kernel, kwargs = split(geometry)
    x, w = array(seed, (2, *sizes, c)), array(seed + 1, (*kernel, k))
    actual = jconv.shared_filter_conv(x, w, impl=impl, precision=HIGHEST, **kwargs)
    summed = x.sum(-1, keepdims=True)  # (N, H, W, 1)
    expected = jconv.conv(summed, w[..., None, :], impl="lax", precision=HIGHEST, **kwargs)
    assert_close(actual, expected)


@impls("per_map_conv")
@given(geometries(nd=2), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_per_map_is_depthwise_with_tiled_kernel(impl, geometry, c, k, seed):
    sizes, kernel, kwargs = split(geometry)
    x, w = array(seed, (2, *sizes, c)), array(seed + 1, (*kernel, k))
    actual = jconv.per_map_conv(x, w, impl=impl, precision=HIGHEST, **kwargs)
    tiled = np.tile(w, c)[..., None, :]  # (kh, kw, 1, C*K): map c gets filters c*K .. c*K+K-1
    expected = jconv.depthwise_conv(x, tiled, impl="lax", precision=HIGHEST, **kwargs)
    assert_close(actual, expected)


@impls("pointwise_conv")
@pytest.mark.parametrize("stride", [1, 2])
def test_pointwise_is_einsum_over_channels(impl, stride):
    x, w = array(0, (2, 7, 6, 5)), array(1, (5, 3))
    actual = jconv.pointwise_conv(x, w, stride=stride, impl=impl, precision=HIGHEST)
    expected = np.einsum("nhwc,ck->nhwk", x[:, ::stride, ::stride].astype(np.float64), w)
    assert_close(actual, expected)


@impls("separable_conv")
def test_separable_is_depthwise_then_pointwise(impl):
    x, wd, wp = array(0, (2, 9, 9, 3)), array(1, (3, 3, 1, 6)), array(2, (6, 4))
    kw = dict(stride=2, padding="SAME", dilation=1)
    actual = jconv.separable_conv(x, wd, wp, impl=impl, precision=HIGHEST, **kw)
    depthwise = jconv.depthwise_conv(x, wd, impl="lax", precision=HIGHEST, **kw)
    expected = jconv.pointwise_conv(depthwise, wp, impl="lax", precision=HIGHEST)
    assert_close(actual, expected)


def forward_kernel(w, groups):
    """The conv kernel ``(*k, K/G, C)`` whose input-VJP is ``conv_transpose`` with ``w``."""
    *k, cg, kout = w.shape
    wg = w.reshape(*k, cg, groups, kout // groups)  # (*k, C/G, G, K/G)
    wg = np.moveaxis(wg, -3, -1)  # (*k, G, K/G, C/G)
    wg = np.moveaxis(wg, -3, -2)  # (*k, K/G, G, C/G)
    return wg.reshape(*k, kout // groups, groups * cg)  # (*k, K/G, C)


@impls("conv_transpose")
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.integers(0, 1), st.integers(1, 2), st.integers(1, 2), st.integers(0, 2**16))
def test_conv_transpose_is_vjp_of_conv(impl, nd, k, stride, dilation, pad, groups, cin, seed):
    size = 4
    x = array(seed, (2, *(size,) * nd, groups * cin))
    w = array(seed + 1, (*(k,) * nd, cin, groups * 2))
    output_padding = max(stride, dilation) - 1
    y = jconv.conv_transpose(x, w, stride=stride, padding=pad, output_padding=output_padding,
                             dilation=dilation, groups=groups, impl=impl, precision=HIGHEST)
    # The forward conv maps y-shaped inputs back to x's grid; its high pad loses the extra
    # output_padding positions.
    wf = forward_kernel(w, groups)

    def forward(z):
        return lax.conv_general_dilated(
            z, wf, (stride,) * nd, [(pad, pad - output_padding)] * nd,
            rhs_dilation=(dilation,) * nd, feature_group_count=groups,
            dimension_numbers=jconv.kernels.einsum_conv.channels_last_dnums(nd),
            precision=HIGHEST)

    primal = jnp.zeros(y.shape, jnp.float32)
    out, vjp = jax.vjp(forward, primal)
    assert out.shape == x.shape
    (expected,) = vjp(jnp.asarray(x))
    assert_close(y, expected)


@impls("local_conv")
@given(geometries(max_stride=2), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**16))
def test_local_conv_with_tied_weights_is_conv(impl, geometry, c, k, seed):
    sizes, kernel, kwargs = split(geometry)
    x, w = array(seed, (1, *sizes, c)), array(seed + 1, (*kernel, c, k))
    out = jconv.output_shape("conv", x.shape, w.shape, **kwargs)[1:-1]
    tied = np.broadcast_to(w, (*out, *w.shape))  # the same kernel at every position
    actual = jconv.local_conv(x, tied, impl=impl, precision=HIGHEST, **kwargs)
    assert_close(actual, jconv.conv(x, w, impl="lax", precision=HIGHEST, **kwargs))


@impls("depth_sliding_conv")
@given(geometries(nd=2), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_depth_sliding_with_full_depth_is_type_2_2(impl, geometry, c, k, seed):
    """``kd == C`` with VALID depth: one depth position, a full 3-D kernel = ``conv``."""
    sizes, kernel, kwargs = split(geometry)
    x, w = array(seed, (1, *sizes, c)), array(seed + 1, (c, *kernel, k))
    three_d = dict(stride=(1, *kwargs["stride"]), dilation=(1, *kwargs["dilation"]),
                   padding="VALID" if kwargs["padding"] == "VALID" else
                   ((0, 0), *reference.resolve_padding(sizes, kernel, kwargs["stride"],
                                                      kwargs["dilation"], kwargs["padding"])),
                   padding_mode=kwargs["padding_mode"])
    actual = jconv.depth_sliding_conv(x, w, impl=impl, precision=HIGHEST, **three_d)
    assert actual.shape[1] == 1
    conv_kernel = np.moveaxis(w, 0, -2)  # (kh, kw, C, K)
    expected = jconv.conv(x, conv_kernel, impl="lax", precision=HIGHEST, **kwargs)
    assert_close(actual[:, 0], expected)


@impls("depth_sliding_conv")
def test_depth_sliding_does_not_depend_on_traversal_order(impl):
    """Sliding over (depth, H, W) in any axis order, or visiting positions in any order."""
    x, w = array(0, (1, 5, 6, 7)), array(1, (3, 2, 3, 2))  # 7 maps of 5x6, 3x2x3 filters
    kw = dict(stride=(2, 1, 2), padding="VALID")
    baseline = np.asarray(jconv.depth_sliding_conv(x, w, impl=impl, precision=HIGHEST, **kw))
    volume = np.moveaxis(x, -1, 1)  # (N, D, H, W)
    for order in itertools.permutations(range(3)):
        # Traverse with the axes permuted: the conv slides along them in this order.
        v = np.moveaxis(np.transpose(volume, (0, *(1 + a for a in order))), 1, -1)
        wp = np.transpose(w, (*order, 3))
        y = jconv.depth_sliding_conv(v, wp, impl=impl, precision=HIGHEST,
                                     stride=tuple(kw["stride"][a] for a in order),
                                     padding="VALID")  # (N, *permuted out, K)
        back = np.transpose(y, (0, *(1 + int(np.argsort(order)[a]) for a in range(3)), 4))
        assert_close(back, baseline, err_msg=f"axis order {order}")
    for order in ("forward", "reverse", "random"):
        assert_close(baseline, reference.depth_sliding_conv(x, w, order=order, **kw))


@pytest.mark.parametrize("op", ["conv", "per_map_conv"])
def test_type1_one_by_one_only_scales_each_map(op):
    """A 1×1 Type 1 filter multiplies each map by a constant; Type 2.2 mixes maps."""
    x = array(0, (1, 4, 4, 3))
    if op == "per_map_conv":
        y = jconv.per_map_conv(x, np.array([[[2.0, -0.5]]], np.float32), precision=HIGHEST)
        expected = np.stack([x * 2.0, x * -0.5], -1).reshape(1, 4, 4, 6)  # (N, H, W, C*K)
        assert_close(y, expected)
    else:
        w = array(1, (1, 1, 3, 2))
        y = np.asarray(jconv.conv(x, w, precision=HIGHEST))
        for j, c in itertools.product(range(2), range(3)):  # no output is a multiple of one map
            ratio = y[..., j] / x[..., c]
            assert np.ptp(ratio) > 1e-3
