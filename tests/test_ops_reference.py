"""Every implementation of every op equals the NumPy loop reference, over hypothesis sweeps.

Each sweep draws a geometry (sizes, kernel, stride, dilation, padding, padding mode,
groups), runs every ``impl`` the op has at ``Precision.HIGHEST`` and compares it with the
float64 loop reference of ``tests/reference.py``. Comparing every impl against the same
reference also proves the impls equal each other (and ``lax``).
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from jax import lax

import jconv
from jconv import reference
from tests.strategies import IMPLS, array, geometries, split
from tests.tolerance import assert_close

HIGHEST = lax.Precision.HIGHEST
POOL_OPS = ("max_pool", "avg_pool", "global_avg_pool", "channel_max_pool",
            "local_response_norm")


def check_all_impls(op, expected, *args, **kwargs):
    """Runs ``jconv.<op>`` with each of its impls (and ``auto``) against ``expected``."""
    precision = {} if op in POOL_OPS[:-1] else {"precision": HIGHEST}
    for impl in IMPLS[op] + ("auto",):
        actual = getattr(jconv, op)(*args, impl=impl, **kwargs, **precision)
        assert_close(actual, expected, err_msg=f"{op} impl={impl} kwargs={kwargs}")


@given(geometries(), st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 2**16))
def test_conv(geometry, n, groups, cin, cout, seed):
    sizes, kernel, kwargs = split(geometry)
    x = array(seed, (n, *sizes, groups * cin))
    w = array(seed + 1, (*kernel, cin, groups * cout))
    expected = reference.conv(x, w, groups=groups, **kwargs)
    check_all_impls("conv", expected, x, w, groups=groups, **kwargs)


@given(geometries(), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_depthwise_conv(geometry, c, multiplier, seed):
    sizes, kernel, kwargs = split(geometry)
    x = array(seed, (2, *sizes, c))
    w = array(seed + 1, (*kernel, 1, c * multiplier))
    check_all_impls("depthwise_conv", reference.depthwise_conv(x, w, **kwargs), x, w, **kwargs)


@given(geometries(), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_per_map_conv(geometry, c, k, seed):
    sizes, kernel, kwargs = split(geometry)
    x = array(seed, (2, *sizes, c))
    w = array(seed + 1, (*kernel, k))
    check_all_impls("per_map_conv", reference.per_map_conv(x, w, **kwargs), x, w, **kwargs)


@given(geometries(), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_shared_filter_conv(geometry, c, k, seed):
    sizes, kernel, kwargs = split(geometry)
    x = array(seed, (2, *sizes, c))
    w = array(seed + 1, (*kernel, k))
    expected = reference.shared_filter_conv(x, w, **kwargs)
    check_all_impls("shared_filter_conv", expected, x, w, **kwargs)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 3), st.integers(0, 2**16))
def test_pointwise_conv(nd, stride, groups, cin, cout, seed):
    x = array(seed, (2, *(5,) * nd, groups * cin))
    w = array(seed + 1, (cin, groups * cout))
    expected = reference.pointwise_conv(x, w, stride=stride, groups=groups)
    check_all_impls("pointwise_conv", expected, x, w, stride=stride, groups=groups)


@given(geometries(), st.integers(1, 3), st.integers(1, 2), st.integers(1, 4),
       st.integers(0, 2**16))
def test_separable_conv(geometry, c, multiplier, k, seed):
    sizes, kernel, kwargs = split(geometry)
    x = array(seed, (1, *sizes, c))
    wd = array(seed + 1, (*kernel, 1, c * multiplier))
    wp = array(seed + 2, (c * multiplier, k))
    expected = reference.pointwise_conv(reference.depthwise_conv(x, wd, **kwargs), wp)
    check_all_impls("separable_conv", expected, x, wd, wp, **kwargs)


@given(geometries(), st.lists(st.integers(1, 3), min_size=4, max_size=4),
       st.integers(0, 2**16))
def test_spatially_separable_conv(geometry, channels, seed):
    """Equals one Type 2.2 conv whose kernel is the product of the 1-D kernels."""
    sizes, kernel, kwargs = split(geometry)
    nd = len(sizes)
    x = array(seed, (2, *sizes, channels[0]))
    ws = []
    for a in range(nd):
        shape = tuple(kernel[a] if b == a else 1 for b in range(nd))
        ws.append(array(seed + 1 + a, (*shape, channels[a], channels[a + 1])))
    full = ws[0]
    for w in ws[1:]:  # broadcast product over the spatial axes, contracted over channels
        full = np.einsum("...cm,...mk->...ck", full, w)
    expected = reference.conv(x, full, **kwargs)
    check_all_impls("spatially_separable_conv", expected, x, ws, **kwargs)


@given(geometries(modes=("zeros",), max_stride=3), st.integers(1, 2), st.integers(1, 3),
       st.integers(1, 3), st.lists(st.integers(0, 2), min_size=3, max_size=3),
       st.integers(0, 2**16))
def test_conv_transpose(geometry, groups, cin, cout, output_padding, seed):
    """``padding`` here is the crop of PyTorch's ConvTranspose (SAME: output H*stride)."""
    sizes, kernel, kwargs = split(geometry)
    output_padding = tuple(min(o, max(s, d) - 1) for o, s, d in
                           zip(output_padding, kwargs["stride"], kwargs["dilation"]))
    kw = dict(stride=kwargs["stride"], dilation=kwargs["dilation"], padding=kwargs["padding"],
              output_padding=output_padding, groups=groups)
    x = array(seed, (2, *sizes, groups * cin))
    w = array(seed + 1, (*kernel, cin, groups * cout))
    try:
        expected = reference.conv_transpose(x, w, **kw)
    except ValueError:  # the crop leaves no output: jconv must refuse it too
        with pytest.raises(ValueError, match="conv_transpose"):
            jconv.conv_transpose(x, w, **kw)
        return
    check_all_impls("conv_transpose", expected, x, w, **kw)


@given(geometries(max_stride=2), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**16))
def test_local_conv(geometry, c, k, seed):
    sizes, kernel, kwargs = split(geometry)
    x = array(seed, (2, *sizes, c))
    out = jconv.output_shape("conv", x.shape, (*kernel, c, k), **kwargs)[1:-1]
    w = array(seed + 1, (*out, *kernel, c, k))
    check_all_impls("local_conv", reference.local_conv(x, w, **kwargs), x, w, **kwargs)


@given(geometries(nd=2, extra_axes=1), st.integers(1, 3), st.integers(0, 2**16))
def test_depth_sliding_conv(geometry, k, seed):
    """Window axis 0 is the stack of maps (depth ``C``, kernel ``kd``); then H and W."""
    (c, *sizes), kernel, kwargs = split(geometry)
    x = array(seed, (1, *sizes, c))
    w = array(seed + 1, (*kernel, k))
    expected = reference.depth_sliding_conv(x, w, **kwargs)
    check_all_impls("depth_sliding_conv", expected, x, w, **kwargs)


@given(geometries(modes=("zeros",), max_kernel=3, max_dilation=1), st.integers(1, 3),
       st.booleans(), st.integers(0, 2**16))
def test_pools(geometry, c, count_include_pad, seed):
    sizes, window, kwargs = split(geometry)
    pads = reference.resolve_padding(sizes, window, kwargs["stride"], 1, kwargs["padding"])
    assume(all(max(pad) < k for pad, k in zip(pads, window)))  # no all-padding window
    x = array(seed, (2, *sizes, c))
    kw = dict(stride=kwargs["stride"], padding=kwargs["padding"])
    check_all_impls("max_pool", reference.max_pool(x, window, **kw), x, window, **kw)
    expected = reference.avg_pool(x, window, count_include_pad=count_include_pad, **kw)
    check_all_impls("avg_pool", expected, x, window, count_include_pad=count_include_pad, **kw)
    check_all_impls("global_avg_pool", reference.global_avg_pool(x), x)


@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 4), st.integers(1, 3),
       st.integers(0, 2**16))
def test_channel_max_pool(nd, c, group_size, stride, seed):
    assume(group_size <= c)
    x = array(seed, (2, *(3,) * nd, c))
    expected = reference.channel_max_pool(x, group_size, stride=stride)
    check_all_impls("channel_max_pool", expected, x, group_size, stride=stride)


@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 6),
       st.sampled_from([(2.0, 1e-4, 0.75), (1.0, 0.5, 1.0), (0.5, 2.0, 0.5)]),
       st.integers(0, 2**16))
def test_local_response_norm(nd, c, size, constants, seed):
    k, alpha, beta = constants
    x = array(seed, (2, *(3,) * nd, c))
    expected = reference.local_response_norm(x, size=size, k=k, alpha=alpha, beta=beta)
    check_all_impls("local_response_norm", expected, x, size=size, k=k, alpha=alpha, beta=beta)


def test_every_op_is_swept():
    swept = {name[len("test_"):] for name in globals() if name.startswith("test_")}
    swept |= {"max_pool", "avg_pool", "global_avg_pool"}  # in test_pools
    assert set(IMPLS) <= swept, set(IMPLS) - swept


@pytest.mark.parametrize("impl", ["shift", "auto"])
def test_1337_maps_of_42x314(impl):
    """The question's stack: a 3×4×5 filter slides over 1337 maps of 42×314.

    (``lax`` equals ``shift`` on every swept geometry above; at this size XLA's CPU 3-D
    conv takes ~20x longer, which is why ``auto`` does not pick it on CPU.)
    """
    x = array(0, (1, 42, 314, 1337))
    w = array(1, (3, 4, 5, 1))
    y = jconv.depth_sliding_conv(x, w, impl=impl, precision=HIGHEST)
    assert y.shape == (1, 1335, 39, 310, 1)
    # Spot-check positions against the explicit window sum.
    rng = np.random.default_rng(2)
    for d, h, v in zip(rng.integers(0, 1335, 5), rng.integers(0, 39, 5), rng.integers(0, 310, 5)):
        block = x[0, h:h + 4, v:v + 5, d:d + 3]  # (4, 5, 3)
        expected = np.einsum("hwd,dhw->", block.astype(np.float64), w[..., 0].astype(np.float64))
        assert_close(y[0, d, h, v, 0], expected)
