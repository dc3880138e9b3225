"""Parameter counts and output shapes against hand formulas.

Expectations are arithmetic on named sizes, never computed by jconv.
"""

import itertools

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jconv
from jconv import reference
from jconv.kernels import window
from jconv.ops import BUILTIN_OPS, registry

PLANS = {op: registry.get(op).plan for op in BUILTIN_OPS}

# --------------------------------------------------------------------------- param counts

# The question's numbers: k1 maps from a first layer, k2 filters of 5x5 in the second.
K1_K2 = [(6, 16), (96, 256)]


@pytest.mark.parametrize("k1, k2", K1_K2)
@pytest.mark.parametrize("bias", [True, False])
def test_three_types_param_counts(k1, k2, bias):
    b = k2 if bias else 0
    # Type 1: k2 single-channel 5x5 filters applied to every map; one bias per filter.
    assert jconv.param_count("per_map_conv", (5, 5, k2), bias=bias) == k2 * 25 + b
    # Type 2.1: the same k2 2-D filters, summed over the maps.
    assert jconv.param_count("shared_filter_conv", (5, 5, k2), bias=bias) == k2 * 25 + b
    # Type 2.2: every filter spans all k1 maps.
    assert jconv.param_count("conv", (5, 5, k1, k2), bias=bias) == k1 * k2 * 25 + b


def test_three_types_question_numbers():
    """k1=6, k2=16: Type 1 and 2.1 have 400 (+16) weights, Type 2.2 has 2400 (+16)."""
    assert jconv.param_count("per_map_conv", (5, 5, 16)) == 416
    assert jconv.param_count("shared_filter_conv", (5, 5, 16), bias=False) == 400
    assert jconv.param_count("conv", (5, 5, 6, 16)) == 2416


C, K, M, G, KS = 96, 256, 2, 4, 3  # maps, filters, channel multiplier, groups, kernel size
HO = WO = 28 - 5 + 1  # local_conv: 28x28 input, 5x5 VALID window -> 24x24 positions

PARAM_CASES = [
    ("grouped conv", "conv", [(KS, KS, C // G, K)], (C // G) * K * KS * KS, K),
    ("depthwise", "depthwise_conv", [(KS, KS, 1, C * M)], C * M * KS * KS, C * M),
    ("pointwise", "pointwise_conv", [(C, K)], C * K, K),
    ("separable", "separable_conv", [(KS, KS, 1, C * M), (C * M, K)],
     KS * KS * C * M + C * M * K, K),
    ("conv_transpose", "conv_transpose", [(KS, KS, C // G, K)], KS * KS * (C // G) * K, K),
    ("local_conv", "local_conv", [(HO, WO, 5, 5, C, K)], HO * WO * 5 * 5 * C * K, HO * WO * K),
    ("depth_sliding", "depth_sliding_conv", [(3, 4, 5, K)], 3 * 4 * 5 * K, K),
    ("max_pool", "max_pool", [], 0, 0),
    ("avg_pool", "avg_pool", [], 0, 0),
    ("global_avg_pool", "global_avg_pool", [], 0, 0),
    ("channel_max_pool", "channel_max_pool", [], 0, 0),
    ("local_response_norm", "local_response_norm", [], 0, 0),
]


@pytest.mark.parametrize("op, w_shapes, weights, biases",
                         [pytest.param(*row[1:], id=row[0]) for row in PARAM_CASES])
@pytest.mark.parametrize("bias", [True, False])
def test_param_count(op, w_shapes, weights, biases, bias):
    assert jconv.param_count(op, *w_shapes, bias=bias) == weights + (biases if bias else 0)


@pytest.mark.parametrize("as_list", [False, True], ids=["one-per-arg", "one-list"])
@pytest.mark.parametrize("bias", [True, False])
def test_param_count_spatially_separable(as_list, bias):
    c, m, k, kh, kw = 3, 4, 8, 5, 7  # (kh, 1, C, M) then (1, kw, M, K)
    shapes = [(kh, 1, c, m), (1, kw, m, k)]
    expected = kh * c * m + kw * m * k + (k if bias else 0)  # bias: one per final map
    args = [shapes] if as_list else shapes
    assert jconv.param_count("spatially_separable_conv", *args, bias=bias) == expected


# --------------------------------------------------------------------------- output sizes


def out_size(size, k, s, d, padding):
    """Independent output size along one axis; None when the window does not fit."""
    if padding == "SAME":
        return -(-size // s)
    lo, hi = (0, 0) if padding == "VALID" else padding
    out = (size + lo + hi - (k - 1) * d - 1) // s + 1
    return out if size + lo + hi >= (k - 1) * d + 1 else None


@st.composite
def windows(draw, axes, *, max_size=9, max_kernel=4, dilate=True):
    """Sizes, kernel, stride, dilation and padding (in every accepted form) over ``axes``."""
    sizes = draw(st.tuples(*[st.integers(1, max_size)] * axes))
    kernel = draw(st.tuples(*[st.integers(1, max_kernel)] * axes))
    stride = draw(st.tuples(*[st.integers(1, 3)] * axes))
    dilation = draw(st.tuples(*[st.integers(1, 3 if dilate else 1)] * axes))
    kind = draw(st.sampled_from(["SAME", "VALID", "int", "ints", "pairs"]))
    pad = st.integers(0, 3)
    if kind in ("SAME", "VALID"):
        padding, per_axis = kind, [kind] * axes
    elif kind == "int":
        padding = draw(pad)
        per_axis = [(padding, padding)] * axes
    elif kind == "ints":
        padding = draw(st.tuples(*[pad] * axes))
        per_axis = [(p, p) for p in padding]
    else:
        padding = per_axis = draw(st.tuples(*[st.tuples(pad, pad)] * axes))
    expected = [out_size(*a) for a in zip(sizes, kernel, stride, dilation, per_axis)]
    # A scalar stride/dilation must behave as the same value on every axis.
    if draw(st.booleans()):
        stride = (stride[0],) * axes
        stride_arg = stride[0]
        expected = [out_size(*a) for a in zip(sizes, kernel, stride, dilation, per_axis)]
    else:
        stride_arg = stride
    fits = None not in expected
    return dict(sizes=sizes, kernel=kernel, kw=dict(stride=stride_arg, dilation=dilation,
                                                   padding=padding),
                expected=tuple(expected) if fits else None)


IMPL = st.sampled_from(["lax", "shift"])


def result_shape(fn, x_shape, *args, **kw):
    """Shape of ``fn``'s result, traced through the op's real implementation.

    ``jax.eval_shape`` runs the same Python and jitted code as a call (tracing only, no
    compilation), so the sweeps stay fast; ``test_executed_shapes`` runs ops for real.
    """
    arrays = [jax.ShapeDtypeStruct(x_shape, jnp.float32)]
    return jax.eval_shape(lambda x: fn(x, *args, **kw), *arrays).shape


def check(op, x_shape, w_shape, kw, expected_shape, impl):
    """output_shape equals the hand formula and the op's actual result's shape."""
    if expected_shape is None:  # the window does not fit the padded input
        with pytest.raises(ValueError, match="fits the padded input"):
            jconv.output_shape(op, x_shape, w_shape, **kw)
        return
    assert jconv.output_shape(op, x_shape, w_shape, **kw) == expected_shape
    w = jnp.ones(w_shape)
    assert result_shape(getattr(jconv, op), x_shape, w, **kw, impl=impl) == expected_shape


@given(g=windows(2), n=st.integers(1, 2), groups=st.sampled_from([1, 2]),
       k_per_group=st.integers(1, 2), impl=st.sampled_from(["lax", "shift", "patches"]))
def test_conv_output_shape(g, n, groups, k_per_group, impl):
    c, k = 2 * groups, k_per_group * groups
    expected = g["expected"] and (n, *g["expected"], k)
    check("conv", (n, *g["sizes"], c), (*g["kernel"], c // groups, k),
          dict(g["kw"], groups=groups), expected, impl)


@given(g=windows(2), c=st.integers(1, 3), k=st.integers(1, 3), impl=IMPL)
def test_per_map_conv_output_shape(g, c, k, impl):
    expected = g["expected"] and (1, *g["expected"], c * k)  # Type 1: C*K maps
    check("per_map_conv", (1, *g["sizes"], c), (*g["kernel"], k), g["kw"], expected, impl)


@given(g=windows(3, max_size=6, max_kernel=3), k=st.integers(1, 2), impl=IMPL)
def test_depth_sliding_conv_output_shape(g, k, impl):
    depth, h, w = g["sizes"]  # the window's first axis runs over the C maps
    expected = g["expected"] and (1, *g["expected"], k)
    check("depth_sliding_conv", (1, h, w, depth), (*g["kernel"], k), g["kw"], expected, impl)


@given(g=windows(2, dilate=False), c=st.integers(1, 3), default_stride=st.booleans(),
       impl=IMPL)
def test_max_pool_output_shape(g, c, default_stride, impl):
    kw = dict(g["kw"])
    del kw["dilation"]
    if default_stride:  # stride defaults to the window: non-overlapping
        kw["stride"] = None
        per_axis = {"SAME": ["SAME"] * 2, "VALID": ["VALID"] * 2}.get(
            kw["padding"], None)
        if per_axis is None:
            p = kw["padding"]
            per_axis = [(p, p)] * 2 if isinstance(p, int) else [
                q if isinstance(q, tuple) else (q, q) for q in p]
        sizes = [out_size(s, k, k, 1, pad) for s, k, pad in zip(g["sizes"], g["kernel"],
                                                                   per_axis)]
        expected = None if None in sizes else tuple(sizes)
    else:
        expected = g["expected"]
    expected = expected and (1, *expected, c)
    x_shape, window = (1, *g["sizes"], c), g["kernel"]
    stride = window if kw["stride"] is None else kw["stride"]
    pads = reference.resolve_padding(g["sizes"], window, stride, 1, kw["padding"])
    if expected is not None and any(max(p) >= k for p, k in zip(pads, window)):
        with pytest.raises(ValueError, match="no window sees only padding"):
            jconv.output_shape("max_pool", x_shape, window, **kw)
        return
    if expected is None:
        with pytest.raises(ValueError, match="fits the padded input"):
            jconv.output_shape("max_pool", x_shape, window, **kw)
        return
    assert jconv.output_shape("max_pool", x_shape, window, **kw) == expected
    assert result_shape(jconv.max_pool, x_shape, window, **kw, impl=impl) == expected


def torch_transpose_size(h, k, s, d, lo, hi, op):
    """PyTorch's ConvTranspose size (H-1)s - 2p + d(k-1) + op + 1, with p split in lo+hi."""
    return (h - 1) * s - lo - hi + d * (k - 1) + op + 1


@given(sizes=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       padding=st.one_of(st.just("SAME"), st.just("VALID"), st.integers(0, 3),
                         st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                                   st.tuples(st.integers(0, 3), st.integers(0, 3)))),
       op_frac=st.floats(0, 0.999), groups=st.sampled_from([1, 2]), impl=IMPL)
def test_conv_transpose_output_shape(sizes, kernel, stride, dilation, padding, op_frac,
                                     groups, impl):
    # output_padding < max(stride, dilation) (PyTorch's rule); SAME is drawn without it.
    out_pad = tuple(0 if padding == "SAME" else int(op_frac * max(s, d))
                    for s, d in zip(stride, dilation))
    if padding == "SAME":
        expected = tuple(h * s for h, s in zip(sizes, stride))  # the VJP of a SAME conv
    else:
        pairs = {"VALID": [(0, 0)] * 2}.get(padding) if isinstance(padding, str) else (
            [(padding, padding)] * 2 if isinstance(padding, int) else padding)
        expected = tuple(torch_transpose_size(h, k, s, d, lo, hi, o) for h, k, s, d, (lo, hi), o
                         in zip(sizes, kernel, stride, dilation, pairs, out_pad))
    c, k = 2 * groups, 3 * groups
    x_shape, w_shape = (1, *sizes, c), (*kernel, c // groups, k)
    kw = dict(stride=stride, padding=padding, output_padding=out_pad, dilation=dilation,
              groups=groups)
    if min(expected) < 1:  # cropped away entirely
        with pytest.raises(ValueError, match="positive output size"):
            jconv.output_shape("conv_transpose", x_shape, w_shape, **kw)
        return
    expected = (1, *expected, k)
    assert jconv.output_shape("conv_transpose", x_shape, w_shape, **kw) == expected
    assert result_shape(jconv.conv_transpose, x_shape, jnp.ones(w_shape), **kw,
                        impl=impl) == expected


@pytest.mark.parametrize("h, k, s, p, op, d, expected", [
    (4, 3, 2, 1, 1, 1, 8),     # the docstring's (4-1)*2 - 2 + 2 + 1 + 1
    (7, 4, 2, 1, 0, 1, 14),    # DCGAN upsampling: 4x4, stride 2, padding 1 doubles
    (5, 3, 1, 0, 0, 2, 9),
    (3, 2, 3, 0, 2, 1, 10),
])
def test_conv_transpose_pytorch_examples(h, k, s, p, op, d, expected):
    assert (h - 1) * s - 2 * p + d * (k - 1) + op + 1 == expected  # PyTorch's formula
    shape = jconv.output_shape("conv_transpose", (1, h, h, 2), (k, k, 2, 3), stride=s,
                               padding=p, output_padding=op, dilation=d)
    assert shape == (1, expected, expected, 3)


@pytest.mark.parametrize("op, x_shape, w_shape, kw, expected", [
    ("conv", (2, 7, 9, 4), (3, 2, 2, 6), dict(stride=(2, 3), padding=((1, 0), (2, 2)),
                                            dilation=(1, 2), groups=2),
     (2, (7 + 1 - 3) // 2 + 1, (9 + 4 - (2 - 1) * 2 - 1) // 3 + 1, 6)),
    ("per_map_conv", (1, 8, 5, 3), (3, 3, 2), dict(stride=2, padding="SAME"),
     (1, -(-8 // 2), -(-5 // 2), 3 * 2)),
    ("depth_sliding_conv", (1, 6, 5, 7), (3, 2, 2, 2), dict(stride=(2, 1, 2), padding=1),
     (1, (7 + 2 - 3) // 2 + 1, 6 + 2 - 2 + 1, (5 + 2 - 2) // 2 + 1, 2)),
    ("conv_transpose", (1, 3, 4, 2), (3, 3, 2, 5), dict(stride=2, padding=1,
                                                       output_padding=1),
     (1, (3 - 1) * 2 - 2 + 2 + 1 + 1, (4 - 1) * 2 - 2 + 2 + 1 + 1, 5)),
])
@pytest.mark.parametrize("impl", ["lax", "shift"])
def test_executed_shapes(op, x_shape, w_shape, kw, expected, impl):
    """A few sweeps' cases run for real (compiled and executed), on every impl."""
    assert jconv.output_shape(op, x_shape, w_shape, **kw) == expected
    y = getattr(jconv, op)(jnp.ones(x_shape), jnp.ones(w_shape), **kw, impl=impl)
    assert y.shape == expected


@pytest.mark.parametrize("impl", ["lax", "shift"])
def test_executed_max_pool_shape(impl):
    kw = dict(stride=(1, 2), padding=((0, 1), (1, 1)))
    assert jconv.output_shape("max_pool", (1, 5, 6, 3), (2, 3), **kw) == (1, 5, 3, 3)
    assert jconv.max_pool(jnp.ones((1, 5, 6, 3)), (2, 3), **kw, impl=impl).shape == (1, 5, 3, 3)


# --------------------------------------------------------------------------- 1337 maps

X1337, W345 = (1, 42, 314, 1337), (3, 4, 5, 1)  # 1337 maps of 42x314; one 3x4x5 filter


@pytest.mark.parametrize("kw, expected", [
    # VALID: D' = 1337-3+1, H' = 42-4+1, W' = 314-5+1.
    (dict(), (1, 1337 - 3 + 1, 42 - 4 + 1, 314 - 5 + 1, 1)),
    (dict(padding="VALID"), (1, 1335, 39, 310, 1)),
    # SAME at stride 1 keeps every size.
    (dict(padding="SAME"), (1, 1337, 42, 314, 1)),
    # stride 2 on every window axis (VALID by default): (n - k)//2 + 1.
    (dict(stride=(2, 2, 2)), (1, (1337 - 3) // 2 + 1, (42 - 4) // 2 + 1, (314 - 5) // 2 + 1, 1)),
    (dict(stride=(2, 2, 2)), (1, 668, 20, 155, 1)),
    # stride 2 with SAME: ceil(n / 2).
    (dict(stride=(2, 2, 2), padding="SAME"), (1, 669, 21, 157, 1)),
])
def test_1337_maps(kw, expected):
    assert jconv.output_shape("depth_sliding_conv", X1337, W345, **kw) == expected
    x = jax.ShapeDtypeStruct(X1337, jnp.float32)
    w = jax.ShapeDtypeStruct(W345, jnp.float32)
    assert jax.eval_shape(lambda x, w: jconv.depth_sliding_conv(x, w, **kw), x, w).shape \
        == expected


# --------------------------------------------------------------------------- window arithmetic


@given(g=windows(2, max_size=7, max_kernel=4))
def test_in_bounds_counts_per_position(g):
    """Taps on real input per output position: a brute-force double loop, and its sum."""
    if g["expected"] is None:
        return
    win = PLANS["conv"]((1, *g["sizes"], 1), (*g["kernel"], 1, 1), **g["kw"]).window
    counts = win.in_bounds_counts()
    assert counts.shape == win.out_sizes
    for pos in itertools.product(*map(range, win.out_sizes)):
        brute = sum(all(0 <= o * s + t * d - lo < size for o, t, s, d, (lo, _), size
                        in zip(pos, tap, win.stride, win.dilation, win.pads, win.in_sizes))
                    for tap in itertools.product(*map(range, win.kernel)))
        assert counts[pos] == brute
    assert counts.sum() == win.in_bounds_taps <= win.dense_taps == counts.size * win.taps


def test_window_functions():
    assert window.extent(3, 2) == 5
    assert window.output_size(7, 5, 2, (1, 1)) == (7 + 2 - 5) // 2 + 1
    assert window.same_pads(7, 3, 2) == (1, 1)  # ceil(7/2) = 4 outputs need 9 positions
    assert window.centered_pads(4) == (2, 1)
    # PyTorch's ConvTranspose size (H-1)s - 2p + d(k-1) + output_padding + 1; the crops
    # are (p, p - output_padding).
    assert window.transposed_size(7, window.extent(4, 1), 2, (1, 1)) == 14  # DCGAN
    assert window.transposed_size(4, 3, 2, (1, 1 - 1)) == (4 - 1) * 2 - 2 + 2 + 1 + 1
    assert window.in_bounds_per_tap(5, 3, pad_lo=1, out_size=5) == [4, 5, 4]
    stage = PLANS["conv"]((1, 9, 9, 1), (3, 5, 1, 1), stride=2).window.stage(1, (9, 9))
    assert (stage.kernel, stage.stride, stage.out_sizes) == ((1, 5), (1, 2), (9, 5))


# --------------------------------------------------------------------------- traced entries


def traced_plan(op, shapes_of_k, **kw):
    """``PLANS[op]`` under vmap over ``k``: the output shape for k = 2, 3."""
    out = jax.vmap(lambda k: PLANS[op](*shapes_of_k(k), **kw).out_shape)(jnp.array([2, 3]))
    return [tuple(int(v[i]) for v in out) for i in range(2)]


@pytest.mark.parametrize("op, shapes_of_k, kw", [
    ("conv", lambda k: ((k, 8, 8, 2 * k), (3, 3, k, 4)), dict(groups=2)),
    ("depthwise_conv", lambda k: ((1, 8, 8, k), (3, 3, 1, 2 * k)), {}),
    ("separable_conv", lambda k: ((1, 8, 8, k), (3, 3, 1, k), (k, 5)), {}),
    ("spatially_separable_conv", lambda k: ((1, 8, 8, k), [(3, 1, k, k), (1, 3, k, 4)]), {}),
    ("per_map_conv", lambda k: ((1, 8, 8, k), (3, 3, k)), dict(stride=2)),
    ("conv_transpose", lambda k: ((1, 4, 4, k), (3, 3, k, k)), dict(stride=2)),
    ("local_conv", lambda k: ((1, 8, 8, k), (6, 6, 3, 3, k, 4)), {}),
    ("channel_max_pool", lambda k: ((1, 8, 8, 4 * k), 2), {}),
    ("local_response_norm", lambda k: ((1, 8, 8, k),), {}),
])
def test_plans_take_traced_counts(op, shapes_of_k, kw):
    """Batch, channel and filter counts may be traced: the plan is the concrete one's."""
    assert traced_plan(op, shapes_of_k, **kw) == [PLANS[op](*shapes_of_k(k), **kw).out_shape
                                                  for k in (2, 3)]


def test_traced_plans_check_what_they_can():
    with pytest.raises(ValueError, match="groups"):  # concrete K checked with traced C
        traced_plan("conv", lambda c: ((1, 8, 8, c), (3, 3, c, 5)), groups=2)
    with pytest.raises(ValueError, match="fits the padded input"):
        traced_plan("conv", lambda c: ((1, 4, 4, c), (7, 7, c, 2)), padding="VALID")
    with pytest.raises(TypeError, match="spatial sizes"):
        traced_plan("conv", lambda h: ((1, h, 8, 3), (3, 3, 3, 4)))
    with pytest.raises(TypeError, match="kernel sizes"):
        traced_plan("conv", lambda k: ((1, 8, 8, 3), (k, 3, 3, 4)))
    with pytest.raises(TypeError, match="depth"):
        traced_plan("depth_sliding_conv", lambda c: ((1, 8, 8, c), (3, 3, 3, 4)))
