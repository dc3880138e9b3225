"""Cost model: hand formulas, XLA's CPU count, traced (vmapped) curves and the log-log slope.

Expected values are arithmetic on named sizes, never computed by jconv.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jconv import cost
from jconv.ops import registry
from tests.strategies import geometries, split

XLA_EXAMPLES = settings(max_examples=12)  # each example compiles; keep the suite fast


def flops_pair(c):
    return c.flops, c.flops_in_bounds


# --------------------------------------------------------------------------- hand formulas

K1_K2 = [(6, 16), (96, 256)]  # the question's numbers: k1 maps in, k2 5x5 filters
N, H = 2, 28
A5 = H * 5 - 2 * (2 + 1)  # 5x5 SAME along one axis: rows 0, 1 and the last two lose 2+1 taps


@pytest.mark.parametrize("k1, k2", K1_K2)
def test_three_types(k1, k2):
    x = (N, H, H, k1)
    type1 = cost.per_map_conv(x, (5, 5, k2))
    assert type1.macs == N * H * H * k1 * k2 * 25
    assert type1.macs_in_bounds == N * A5 * A5 * k1 * k2
    assert type1.output_shape == (N, H, H, k1 * k2)
    assert type1.params == k2 * 25 + k2

    type21 = cost.shared_filter_conv(x, (5, 5, k2))
    assert type21.macs == N * H * H * k2 * 25 * k1  # the repeated 3-D kernel
    assert type21.macs_in_bounds == N * A5 * A5 * k2 * k1
    assert type21.output_shape == (N, H, H, k2)
    assert type21.params == k2 * 25 + k2
    shortcut = cost.shared_filter_conv(x, (5, 5, k2), shortcut=True)
    assert shortcut.macs == N * H * H * k2 * 25  # sum the maps, then one 1-channel conv
    assert shortcut.flops == 2 * N * H * H * k2 * 25 + N * H * H * (k1 - 1)
    assert shortcut.flops_in_bounds == 2 * N * A5 * A5 * k2 + N * H * H * (k1 - 1)

    type22 = cost.conv(x, (5, 5, k1, k2))
    assert type22.macs == N * H * H * k2 * 25 * k1
    assert flops_pair(type22) == (2 * N * H * H * k2 * 25 * k1, 2 * N * A5 * A5 * k2 * k1)
    assert type22.params == k1 * k2 * 25 + k2


def test_issue_numbers():
    c = cost.conv((8, 56, 56, 64), (3, 3, 64, 64))
    assert flops_pair(c) == (1_849_688_064, 1_805_910_016)
    assert isinstance(c.flops, int) and isinstance(c.flops_in_bounds, int)


def test_grouped():
    # 14x14, stride 2 SAME 3x3: 7 outputs, pads (0, 1); the last output's last tap is out.
    c = cost.conv((2, 14, 14, 96), (3, 3, 24, 256), stride=2, groups=4)
    a = 7 * 3 - 1
    assert c.macs == 2 * 7 * 7 * 9 * 24 * 256
    assert c.macs_in_bounds == 2 * a * a * 24 * 256
    assert c.params == 9 * 24 * 256 + 256


def test_depthwise_pointwise_separable():
    a = 28 * 3 - 2
    d = cost.depthwise_conv((2, 28, 28, 32), (3, 3, 1, 64))  # channel multiplier 2
    assert (d.macs, d.macs_in_bounds) == (2 * 28 * 28 * 9 * 64, 2 * a * a * 64)
    assert d.params == 9 * 64 + 64
    p = cost.pointwise_conv((2, 28, 28, 64), (64, 128))
    assert p.macs == p.macs_in_bounds == 2 * 28 * 28 * 64 * 128
    assert cost.pointwise_conv((2, 28, 28, 64), (16, 128), stride=2, groups=4).macs == (
        2 * 14 * 14 * 16 * 128)
    s = cost.separable_conv((2, 28, 28, 32), (3, 3, 1, 64), (64, 128))
    assert s.macs == d.macs + p.macs
    assert s.macs_in_bounds == d.macs_in_bounds + p.macs_in_bounds
    assert s.params == 9 * 64 + 64 * 128 + 128  # one bias per final map
    assert s.output_shape == (2, 28, 28, 128)


def test_spatially_separable():
    # 7x7 SAME: stage 1 (5x1, 3->4) then stage 2 (1x5, 4->8); per axis A = 7*5 - 6 = 29.
    c = cost.spatially_separable_conv((1, 7, 7, 3), [(5, 1, 3, 4), (1, 5, 4, 8)])
    assert c.macs == 7 * 7 * 5 * 3 * 4 + 7 * 7 * 5 * 4 * 8
    assert c.macs_in_bounds == 29 * 7 * 3 * 4 + 7 * 29 * 4 * 8
    assert c.params == 5 * 3 * 4 + 5 * 4 * 8 + 8


def test_conv_transpose():
    # PyTorch ConvTranspose2d(8, 2, 3, stride=2, padding=1, output_padding=1) on 4x4.
    c = cost.conv_transpose((1, 4, 4, 8), (3, 3, 8, 2), stride=2, padding=1, output_padding=1)
    assert c.output_shape == (1, 8, 8, 2)
    assert c.macs == 4 * 4 * 9 * 8 * 2  # every input pixel x every tap
    a = 4 * 3 - 1  # pixel 0's tap 0 lands on position -1, cropped
    assert c.macs_in_bounds == a * a * 8 * 2


def test_local_conv():
    c = cost.local_conv((2, 28, 28, 16), (24, 24, 5, 5, 16, 32))
    assert c.macs == c.macs_in_bounds == 2 * 24 * 24 * 25 * 16 * 32
    assert c.params == 24 * 24 * 25 * 16 * 32 + 24 * 24 * 32


@pytest.mark.parametrize("k", [1, 7])
def test_depth_sliding(k):
    c = cost.depth_sliding_conv((1, 42, 314, 1337), (3, 4, 5, k))
    assert c.output_shape == (1, 1335, 39, 310, k)
    assert c.macs == c.macs_in_bounds == 1335 * 39 * 310 * 3 * 4 * 5 * k
    assert c.params == 3 * 4 * 5 * k + k


def test_pooling_and_lrn():
    c = cost.max_pool((2, 55, 55, 96), 3, stride=2)  # AlexNet pool1
    assert (c.macs, c.flops, c.params) == (0, 2 * 27 * 27 * 96 * 9, 0)
    a = 8 * 3 - 2
    c = cost.avg_pool((2, 8, 8, 4), 3, stride=1, padding="SAME")
    assert flops_pair(c) == (2 * 8 * 8 * 4 * 9, 2 * a * a * 4)
    assert cost.global_avg_pool((2, 7, 7, 1024)).flops == 2 * 7 * 7 * 1024
    c = cost.channel_max_pool((2, 8, 8, 6), 2)
    assert (c.flops, c.output_shape) == (2 * 8 * 8 * 3 * 2, (2, 8, 8, 3))
    c = cost.local_response_norm((2, 8, 8, 8), size=5)
    window_taps = 8 * 5 - 2 * (1 + 2)  # maps 0, 1, 6, 7 lose 2 or 1 window taps
    assert flops_pair(c) == (2 * 8 * 8 * 8 * (5 + 5), 2 * 8 * 8 * (window_taps + 5 * 8))


@pytest.mark.parametrize("dtype, itemsize", [("float32", 4), ("bfloat16", 2), (jnp.float16, 2)])
def test_bytes(dtype, itemsize):
    c = cost.conv((2, 8, 8, 3), (3, 3, 3, 4), padding="VALID", dtype=dtype)
    assert c.weight_bytes == (3 * 3 * 3 * 4 + 4) * itemsize
    assert c.activation_bytes == (2 * 8 * 8 * 3 + 2 * 6 * 6 * 4) * itemsize
    assert cost.conv((2, 8, 8, 3), (3, 3, 3, 4), bias=False).params == 3 * 3 * 3 * 4


def test_padding_mode_counts_every_tap():
    c = cost.conv((1, 9, 9, 2), (3, 3, 2, 4), padding_mode="reflect")
    assert c.macs == c.macs_in_bounds == 9 * 9 * 9 * 2 * 4


@given(st.integers(1, 12), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 4), st.integers(0, 4))
def test_in_bounds_taps_is_the_double_sum(size, k, s, d, lo, hi):
    out = (size + lo + hi - (k - 1) * d - 1) // s + 1
    if out < 1:
        return
    brute = sum(0 <= o * s + t * d - lo < size for o in range(out) for t in range(k))
    assert cost.in_bounds_taps(size, k, s, d, lo, out) == brute
    traced = jax.jit(cost.in_bounds_taps, static_argnums=(1, 2, 3, 4))(size, k, s, d, lo, out)
    assert int(traced) == brute


# --------------------------------------------------------------------------- XLA's count

def to_multiply(op, *shapes_, cg, kg, **kwargs):
    """XLA rewrites a conv with one tap, no stride or dilation, no zero padding and one map in
    and out per group into an elementwise multiply: 1 FLOP per output, not 2."""
    plan = registry.get(op).plan(*shapes_, **kwargs)
    win = plan.window
    return (cg == kg == 1 and set(win.kernel) == {1} and set(win.stride) == {1}
            and set(win.dilation) == {1}
            and (plan.padding_mode != "zeros" or set(win.pads) <= {(0, 0)}))


def assert_xla_in_bounds(op, *shapes_, halved=False, **kwargs):
    result = cost.compare(op, *shapes_, impl="lax", **kwargs)
    expected = result["ours_in_bounds"] // 2 if halved else result["ours_in_bounds"]
    if expected == 0:  # every tap on padding: XLA folds the output to zeros, reports nothing
        assert result["xla"] in (None, 0.0), (op, shapes_, kwargs, result)
    else:
        assert result["xla"] == expected, (op, shapes_, kwargs, result)


def test_xla_counts_a_trivial_conv_as_a_multiply():
    for op, shapes_ in [("conv", ((2, 5, 5, 1), (1, 1, 1, 1))),
                        ("depthwise_conv", ((2, 5, 5, 3), (1, 1, 1, 3))),
                        ("pointwise_conv", ((2, 5, 5, 1), (1, 1))),
                        ("per_map_conv", ((2, 5, 5, 3), (1, 1, 1)))]:
        c = getattr(cost, op)(*shapes_)
        assert cost.xla_cost(op, *shapes_) == c.macs == c.flops // 2
    # a stride, a dilation, a zero pad or a second map keep it a convolution
    assert_xla_in_bounds("conv", (2, 5, 5, 1), (1, 1, 1, 1), stride=2)
    assert_xla_in_bounds("conv", (2, 5, 5, 1), (1, 1, 1, 1), dilation=2)
    assert_xla_in_bounds("conv", (2, 5, 5, 1), (1, 1, 1, 1), padding=1)
    assert_xla_in_bounds("conv", (2, 5, 5, 1), (1, 1, 1, 3))


@XLA_EXAMPLES
@given(geometries(), st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 2]))
def test_xla_conv(geometry, cg, kg, groups):
    sizes, kernel, kwargs = split(geometry)
    shapes_ = (2, *sizes, cg * groups), (*kernel, cg, kg * groups)
    kwargs["groups"] = groups
    assert_xla_in_bounds("conv", *shapes_, halved=to_multiply("conv", *shapes_, cg=cg, kg=kg,
                                                               **kwargs), **kwargs)


@XLA_EXAMPLES
@given(geometries(), st.integers(1, 3), st.integers(1, 2), st.integers(1, 3))
def test_xla_depthwise_and_separable(geometry, c, m, k):
    sizes, kernel, kwargs = split(geometry)
    x, wd, wp = (2, *sizes, c), (*kernel, 1, c * m), (c * m, k)
    halved = to_multiply("depthwise_conv", x, wd, cg=1, kg=m, **kwargs)
    assert_xla_in_bounds("depthwise_conv", x, wd, halved=halved, **kwargs)
    depthwise = cost.depthwise_conv(x, wd, **kwargs)
    pointwise = cost.pointwise_conv(depthwise.output_shape, wp)
    expected = (depthwise.flops_in_bounds // (2 if halved else 1)
                + pointwise.flops_in_bounds // (2 if c * m == k == 1 else 1))
    assert cost.xla_cost("separable_conv", x, wd, wp, **kwargs) == expected
    assert cost.separable_conv(x, wd, wp, **kwargs).flops_in_bounds == (
        depthwise.flops_in_bounds + pointwise.flops_in_bounds)


@XLA_EXAMPLES
@given(st.lists(st.integers(1, 7), min_size=1, max_size=3), st.integers(1, 3),
       st.integers(1, 4), st.integers(1, 2))
def test_xla_pointwise(sizes, stride, k, groups):
    assert_xla_in_bounds("pointwise_conv", (2, *sizes, 2 * groups), (2, k * groups),
                         stride=stride, groups=groups)


@XLA_EXAMPLES
@given(geometries(), st.integers(2, 3), st.integers(2, 3))
def test_xla_spatially_separable(geometry, c, k):
    """Two or more maps in and out of every stage: no stage is a trivial multiply."""
    sizes, kernel, kwargs = split(geometry)
    nd = len(sizes)
    ws = [tuple(kernel[b] if b == a else 1 for b in range(nd)) + ((c, k) if a == 0 else (k, k))
          for a in range(nd)]
    assert_xla_in_bounds("spatially_separable_conv", (2, *sizes, c), ws, **kwargs)


@XLA_EXAMPLES
@given(geometries(nd=2), st.integers(1, 3), st.integers(1, 3))
def test_xla_map_types(geometry, c, k):
    sizes, kernel, kwargs = split(geometry)
    x, w = (2, *sizes, c), (*kernel, k)
    assert_xla_in_bounds("per_map_conv", x, w, **kwargs,
                         halved=to_multiply("per_map_conv", x, w, cg=1, kg=k, **kwargs))
    assert_xla_in_bounds("shared_filter_conv", x, w, **kwargs,
                         halved=to_multiply("shared_filter_conv", x, w, cg=c, kg=k, **kwargs))


@XLA_EXAMPLES
@given(geometries(nd=2, extra_axes=1), st.integers(1, 2))
def test_xla_depth_sliding(geometry, k):
    sizes, kernel, kwargs = split(geometry)
    depth, *spatial = sizes
    x, w = (1, *spatial, depth), (*kernel, k)
    assert_xla_in_bounds("depth_sliding_conv", x, w, **kwargs,
                         halved=to_multiply("depth_sliding_conv", x, w, cg=1, kg=k, **kwargs))


TRANSPOSE_CASES = [  # (x_shape, w_shape, kwargs)
    ((2, 8, 8, 4), (3, 3, 4, 6), dict(padding=1)),
    ((2, 16, 16, 4), (3, 3, 4, 6), dict(stride=2, padding=1, output_padding=1)),
    ((2, 16, 16, 4), (3, 3, 2, 6), dict(stride=2, padding="SAME", groups=2)),
    ((1, 5, 7, 3), (2, 3, 3, 2), dict(stride=(3, 2), padding="VALID", dilation=(1, 2))),
    ((1, 6, 2), (4, 2, 5), dict(stride=2, padding=((2, 1),), output_padding=1)),
    ((1, 4, 5, 3, 2), (2, 3, 2, 2, 4), dict(stride=(1, 2, 2), padding=(0, 1, 1))),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", TRANSPOSE_CASES)
def test_xla_conv_transpose(x_shape, w_shape, kwargs):
    """The lax path convolves a zero-dilated input; XLA skips the inserted zeros."""
    assert_xla_in_bounds("conv_transpose", x_shape, w_shape, **kwargs)


def test_xla_conv_transpose_shift_scatters_before_cropping():
    x, w, kw = TRANSPOSE_CASES[1]
    full = (16 - 1) * 2 + 3  # uncropped size F per axis
    taps, k = 9, 6
    result = cost.compare("conv_transpose", x, w, impl="shift", **kw)
    assert result["xla"] == result["ours_dense"] + (taps - 1) * 2 * full * full * k


LOCAL_CASES = [
    ((2, 10, 10, 4), (8, 8, 3, 3, 4, 8), {}),
    ((2, 10, 10, 4), (8, 9, 3, 2, 4, 8), {}),
    ((2, 10, 10, 4), (10, 10, 3, 3, 4, 8), dict(padding="SAME")),
    ((1, 12, 12, 2), (5, 5, 3, 3, 2, 4), dict(stride=2, dilation=2, padding=1)),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", LOCAL_CASES)
def test_xla_local_conv(x_shape, w_shape, kwargs):
    """lax extracts patches with a one-hot grouped conv first; the patches path is dense."""
    c = cost.local_conv(x_shape, w_shape, **kwargs)
    n, ch, k, taps = x_shape[0], x_shape[-1], w_shape[-1], w_shape[2] * w_shape[3]
    in_bounds_positions = c.macs_in_bounds // (n * ch * k)  # A_h * A_w
    patches = 2 * n * in_bounds_positions * ch * taps
    lax_count = cost.xla_cost("local_conv", x_shape, w_shape, impl="lax", **kwargs)
    assert lax_count == c.flops + patches + 2 * taps**2
    assert cost.xla_cost("local_conv", x_shape, w_shape, impl="patches", **kwargs) == c.flops


@pytest.mark.parametrize("impl", ["shift", "patches"])
@pytest.mark.parametrize("groups, cg", [(1, 4), (2, 2), (4, 1)])
def test_xla_conv_kernels_count_dense(impl, groups, cg):
    x, w = (2, 10, 10, 4), (3, 3, cg, 8)
    c = cost.conv(x, w, groups=groups)
    outputs = 2 * 10 * 10 * 8
    expected = {"patches": c.flops,  # one contraction over the padded patches
                "shift": c.flops + (9 - 1) * outputs if cg > 1 else c.flops - outputs}[impl]
    assert cost.xla_cost("conv", x, w, impl=impl, groups=groups) == expected


def test_xla_shift_map_types():
    x, w = (2, 10, 10, 4), (3, 3, 5)
    outputs = 2 * 10 * 10 * 5
    per_map = cost.per_map_conv(x, w, stride=2)
    assert cost.xla_cost("per_map_conv", x, w, impl="shift", stride=2) == (
        per_map.flops - 2 * 5 * 5 * 4 * 5)
    shortcut = cost.shared_filter_conv(x, w, shortcut=True)
    assert cost.xla_cost("shared_filter_conv", x, w, impl="sum_maps") == shortcut.flops - outputs
    depth = cost.depth_sliding_conv((2, 10, 10, 12), (3, 3, 3, 4), padding="SAME",
                                    stride=(2, 1, 1))
    assert cost.xla_cost("depth_sliding_conv", (2, 10, 10, 12), (3, 3, 3, 4), impl="shift",
                         padding="SAME", stride=(2, 1, 1)) == (
        depth.flops - 2 * 6 * 10 * 10 * 4)


POOL_CASES = [  # (op, args, kwargs, outputs)
    ("max_pool", ((2, 8, 8, 4), 2), {}, 2 * 4 * 4 * 4),
    ("max_pool", ((2, 8, 8, 4), 3), dict(stride=1, padding="SAME"), 2 * 8 * 8 * 4),
    ("channel_max_pool", ((2, 8, 8, 6), 3), dict(stride=1), 2 * 8 * 8 * 4),
    ("avg_pool", ((2, 8, 8, 4), 3), dict(stride=2, padding="SAME"), 0),
    ("avg_pool", ((2, 8, 8, 4), 3), dict(stride=1, padding="SAME", count_include_pad=False), 0),
    ("global_avg_pool", ((2, 8, 8, 4),), {}, 0),
]


@pytest.mark.parametrize("op, args, kwargs, outputs", POOL_CASES)
def test_xla_pooling(op, args, kwargs, outputs):
    """XLA: reducer applied taps - 1 times per output, padding included; avg adds a divide."""
    result = cost.compare(op, *args, **kwargs)
    assert result["xla"] == result["ours_dense"] - outputs
    assert result["ours_in_bounds"] <= result["ours_dense"]


@pytest.mark.parametrize("size", [3, 5])
def test_xla_local_response_norm(size):
    result = cost.compare("local_response_norm", (2, 8, 8, 8), size=size)
    elements = 2 * 8 * 8 * 8
    # XLA adds n-1 times, not n; the power is exp(-beta log s): one scale, and exp and log
    # go to its transcendental count
    assert result["xla"] == result["ours_dense"] - elements


def test_xla_cost_returns_a_float():
    flops = cost.xla_cost("conv", (1, 6, 6, 2), (3, 3, 2, 3))
    assert isinstance(flops, float) or (flops is None and jax.default_backend() != "cpu")


# --------------------------------------------------------------------------- traced counts

KS = np.arange(1, 1001)


def test_vmapped_curve_of_1000_widths_compiles_once():
    traces = []

    def fields(k):
        traces.append(k)
        c = cost.conv((8, 56, 56, k), (3, 3, k, k))
        t1 = cost.per_map_conv((8, 56, 56, k), (5, 5, k))
        return (c.params, c.flops, c.flops_in_bounds, c.activation_bytes, c.output_shape[-1],
                t1.flops_in_bounds)

    curve = jax.jit(jax.vmap(fields))(jnp.asarray(KS))
    assert len(traces) == 1
    expected = []
    for k in KS.tolist():
        c = cost.conv((8, 56, 56, k), (3, 3, k, k))
        t1 = cost.per_map_conv((8, 56, 56, k), (5, 5, k))
        expected.append((c.params, c.flops, c.flops_in_bounds, c.activation_bytes, k,
                         t1.flops_in_bounds))
    expected = np.array(expected, dtype=np.int64)  # 4.5e11 FLOPs at k=1000: past int32
    assert expected[:, 1].max() > 2**38
    for column, values in enumerate(curve):
        np.testing.assert_array_equal(np.asarray(values), expected[:, column])


@pytest.mark.parametrize("op, shapes_of_k", [
    ("depthwise_conv", lambda k: ((2, 9, 9, k), (3, 3, 1, 2 * k))),
    ("pointwise_conv", lambda k: ((2, 9, 9, k), (k, 3 * k))),
    ("separable_conv", lambda k: ((2, 9, 9, k), (3, 3, 1, k), (k, 2 * k))),
    ("spatially_separable_conv", lambda k: ((2, 9, 9, k), [(3, 1, k, k), (1, 3, k, 4)])),
    ("shared_filter_conv", lambda k: ((2, 9, 9, k), (5, 5, k))),
    ("conv_transpose", lambda k: ((2, 9, 9, k), (3, 3, k, k))),
    ("local_conv", lambda k: ((2, 9, 9, k), (7, 7, 3, 3, k, k))),
    ("depth_sliding_conv", lambda k: ((2, 9, 9, 5), (3, 3, 3, k))),
    ("max_pool", lambda k: ((2, 9, 9, k), 3)),
    ("avg_pool", lambda k: ((2, 9, 9, k), 3)),
    ("global_avg_pool", lambda k: ((2, 9, 9, k),)),
    ("channel_max_pool", lambda k: ((2, 9, 9, 4 * k), 2)),
    ("local_response_norm", lambda k: ((2, 9, 9, k),)),
])
def test_every_op_traces(op, shapes_of_k):
    ks = [1, 2, 3, 7, 16]
    fn = getattr(cost, op)
    traced = jax.vmap(lambda k: fn(*shapes_of_k(k)))(jnp.asarray(ks))
    for i, k in enumerate(ks):
        exact = fn(*shapes_of_k(k))
        for name, value, want in zip(cost.Cost._fields, traced, exact):
            if name == "output_shape":
                assert tuple(int(np.asarray(v)[i]) for v in value) == want
            else:
                assert isinstance(value, cost.Count), (op, name)
                assert value.tolist()[i] == want, (op, name)


def test_traced_counts_are_exact():
    """Past 2**53 under jit and past 2**24 under vmap, equal to the concrete Python int."""
    big = (4096, 1024, 1024, 1024), (7, 7, 1024, 1024)
    want = cost.conv(*big).flops
    assert isinstance(want, int) and want > 2**53
    flops = jax.jit(lambda n, k: cost.conv((n, *big[0][1:-1], k), (7, 7, k, k)).flops)(
        4096, 1024)
    assert isinstance(flops, cost.Count)
    assert int(flops) == flops.tolist() == want
    assert float(flops) == float(want)

    ks = [64, 128, 1000]
    macs = jax.vmap(lambda k: cost.conv((8, 224, 224, 64), (3, 3, 64, k)).macs)(jnp.array(ks))
    wants = [cost.conv((8, 224, 224, 64), (3, 3, 64, k)).macs for k in ks]
    assert min(wants) > 2**24 and max(wants) > 2**31
    values = np.asarray(macs)
    assert values.dtype == np.int64 and values.tolist() == wants == macs.tolist()
    assert np.asarray(macs, dtype=np.float64).tolist() == [float(w) for w in wants]
    assert repr(macs) == f"Count({wants})"


def test_a_traced_batch_makes_every_count_exact():
    """One traced entry turns every count into a Count, even those that do not depend on it."""
    c = jax.vmap(lambda n: cost.conv((n, 64, 64, 512), (3, 3, 512, 2048)))(jnp.array([1, 2]))
    concrete = cost.conv((1, 64, 64, 512), (3, 3, 512, 2048))
    assert all(isinstance(v, cost.Count) for v in c[:-1])
    assert c.weight_bytes.tolist() == [concrete.weight_bytes] * 2  # past 2**31
    assert c.flops.tolist() == [concrete.flops, 2 * concrete.flops]


def count_expression(a, b, c, d, hi, lo):
    """``x*x*a - (d - x)*c`` with ``x = a*b - (hi*2**31 + lo)*c + d``: past 2**180."""
    constant = cost.Count.of(hi) * 2**31 + lo
    x = cost.Count.of(a) * b - constant * c + d
    return x * x * a - (d - x) * c


COUNT_EXPRESSION = jax.jit(count_expression)  # one trace: the limb counts are fixed


@given(st.lists(st.integers(-2**31, 2**31 - 1), min_size=6, max_size=6))
def test_count_arithmetic_is_exact(values):
    a, b, c, d, hi, lo = values
    x = a * b - (hi * 2**31 + lo) * c + d
    assert int(COUNT_EXPRESSION(*map(jnp.int32, values))) == x * x * a - (d - x) * c


def test_count_of_constants_and_arrays():
    values = (-2**31, 2**31 - 1, 7, -3, 2**31 - 1, -2**31)
    a, b, c, d, hi, lo = values
    x = a * b - (hi * 2**31 + lo) * c + d
    assert int(count_expression(*values)) == x * x * a - (d - x) * c  # all Python ints
    batch = cost.Count.of(jnp.arange(3)) * 2**40 - np.int64(1)  # NumPy defers to Count
    assert np.asarray(batch).tolist() == [-1, 2**40 - 1, 2**41 - 1]
    with pytest.raises(TypeError, match="scalar"):
        int(batch)
    with pytest.raises(TypeError):
        cost.Count.of(1.5)


# --------------------------------------------------------------------------- validation

def test_static_geometry_is_required():
    with pytest.raises(TypeError, match="spatial sizes"):
        jax.vmap(lambda h: cost.conv((1, h, 8, 3), (3, 3, 3, 4)))(jnp.arange(5, 8))
    with pytest.raises(TypeError, match="depth"):
        jax.vmap(lambda c: cost.depth_sliding_conv((1, 8, 8, c), (3, 3, 3, 4)))(jnp.arange(5, 8))


def test_validation():
    with pytest.raises(ValueError, match="groups"):
        cost.conv((1, 8, 8, 6), (3, 3, 2, 4), groups=3)
    with pytest.raises(ValueError, match="groups"):  # concrete K checked with traced C
        jax.vmap(lambda c: cost.conv((1, 8, 8, c), (3, 3, c, 5), groups=2))(jnp.arange(2, 5))
    with pytest.raises(ValueError, match="window"):  # the window is checked when traced too
        jax.vmap(lambda c: cost.conv((1, 4, 4, c), (7, 7, c, 2), padding="VALID"))(
            jnp.arange(1, 3))
    with pytest.raises(TypeError, match="dtype"):
        cost.conv((1, 8, 8, 3), (3, 3, 3, 4), dtype="not-a-dtype")
    with pytest.raises(ValueError, match="xla_cost"):
        cost.xla_cost("not_an_op", (1, 2, 2, 1))


# --------------------------------------------------------------------------- the slope

KS_GEOMETRIC = np.unique(np.geomspace(4, 256, 25).round().astype(int))


def two_layer_type22(k1, k2):
    """The question's chain on a 32x32 grey image: 3x3 (1 -> k1) then 5x5 (k1 -> k2)."""
    return (cost.conv((1, 32, 32, 1), (3, 3, 1, k1)).flops
            + cost.conv((1, 32, 32, k1), (5, 5, k1, k2)).flops)


def test_loglog_slope_uniform_widening_is_quadratic():
    flops = jax.vmap(lambda k: two_layer_type22(k, k))(jnp.asarray(KS_GEOMETRIC))
    assert abs(cost.loglog_slope(KS_GEOMETRIC, flops) - 2) <= 0.05


def test_loglog_slope_one_layer_widening_is_linear():
    flops = jax.vmap(lambda k: two_layer_type22(16, k))(jnp.asarray(KS_GEOMETRIC))
    assert abs(cost.loglog_slope(KS_GEOMETRIC, flops) - 1) <= 0.05


def test_loglog_slope_upper_half():
    ks = np.array([1, 2, 4, 8, 16])
    values = np.where(ks >= 4, ks**3, 1000.0)  # only the upper half is a power law
    assert cost.loglog_slope(ks, values) == pytest.approx(3)
    assert cost.loglog_slope(ks, values, upper_half=False) != pytest.approx(3)
    with pytest.raises(ValueError):
        cost.loglog_slope([1, 2], [1, -1])

