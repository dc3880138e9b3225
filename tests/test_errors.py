"""Every public op rejects bad input with a ValueError/TypeError, before any lax call.

Messages have the form ``"<op>: <arg>=<value!r>; expected <what>"``; every case below
checks the op, the argument, the bad value and (a fragment of) what was expected.
"""

import re

import jax
import jax.numpy as jnp
import pytest

import jconv

F32, I32 = jnp.float32, jnp.int32


def a(*shape, dtype=F32):
    return jnp.ones(shape, dtype)


X = a(1, 6, 6, 4)  # N=1, 6x6, C=4
SMALL = a(1, 3, 3, 4)  # 3x3 maps: reflect allows at most 2 per side, circular 3
W = a(3, 3, 4, 2)  # a valid conv kernel for X
WD, WP = a(3, 3, 1, 4), a(4, 8)  # valid separable weights for X
WS = [a(5, 1, 4, 4), a(1, 5, 4, 8)]  # valid spatially separable kernels for X
K2 = a(3, 3, 2)  # (kh, kw, K) single-channel filters


def case(fn, args, kwargs, exc, arg, value, what, *, op=None, id, bug=None):
    """A table row; ``what`` is a regex for the 'expected ...' part."""
    op = op or fn.__name__
    regex = rf"^{re.escape(op)}: {re.escape(arg)}={re.escape(repr(value))}; expected .*{what}"
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(fn, args, kwargs, exc, regex, id=f"{op}-{id}", marks=marks)


V, T = ValueError, TypeError
FIT = r"fits the padded input.*extent {e} .*> input {i} "
IMPLS3 = r"\('auto', 'lax', 'shift', 'patches', 'onednn'\)"
IMPLS2 = r"\('auto', 'lax', 'shift'\)$"
IMPLS_POOL = r"\('auto', 'lax', 'shift', 'onednn'\)$"
IMPLS_LRN = r"\('auto', 'lax', 'einsum', 'onednn'\)$"
IMPLS_EINSUM = r"\('auto', 'lax', 'einsum'\)$"
IMPLS_SF = r"\('auto', 'lax', 'sum_maps'\)$"
IMPLS_CONV = r"\('auto', 'lax', 'shift', 'patches', 'split', 'hybrid', 'onednn'\)$"
IMPLS_SS = r"\('auto', 'lax', 'shift', 'patches', 'hybrid', 'onednn'\)$"
IMPLS_HYBRID = r"\('auto', 'lax', 'shift', 'hybrid', 'onednn'\)$"
IMPLS_SHIFT_FWD = r"\('auto', 'lax', 'shift', 'shift_fwd', 'onednn'\)$"
IMPLS_PER_MAP = r"\('auto', 'lax', 'shift', 'shift_fwd', 'onednn', 'onednn_patches', 'onednn_gemm'\)$"
IMPLS_LOCAL = r"\('auto', 'lax', 'patches', 'patches_grad'\)$"
IMPLS_CT = r"\('auto', 'lax', 'shift', 'hybrid', 'phases', 'onednn'\)$"
MODES = r"'zeros', 'reflect', 'edge', 'circular'"
PAD_FORMS = r'"SAME", "VALID", an int'
NON_NEG = "non-negative padding amounts"
FLOAT = r"floating-point dtype"




c, dw, pw = jconv.conv, jconv.depthwise_conv, jconv.pointwise_conv
sep, ss = jconv.separable_conv, jconv.spatially_separable_conv
pm, sf, ct = jconv.per_map_conv, jconv.shared_filter_conv, jconv.conv_transpose
lc, ds = jconv.local_conv, jconv.depth_sliding_conv
mp, ap, gap = jconv.max_pool, jconv.avg_pool, jconv.global_avg_pool
cmp, lrn = jconv.channel_max_pool, jconv.local_response_norm

ARRAY_CASES = [
    # --- conv (Type 2.2, grouped) -------------------------------------------------
    case(c, (X, a(3, 3, 1, 6)), dict(groups=3), V, "groups", 3,
         "divisor of the input channels C=4", id="groups-not-dividing-C"),
    case(c, (X, a(3, 3, 2, 5)), dict(groups=2), V, "groups", 2,
         r"divisor of the filter count K=w.shape\[-1\]=5", id="groups-not-dividing-K"),
    case(c, (X, W), dict(groups=0), V, "groups", 0, "an int >= 1", id="groups-zero"),
    case(c, (X, W), dict(groups=2.0), T, "groups", 2.0, "an int", id="groups-float"),
    case(c, (X, a(3, 3, 3, 2)), {}, V, "w.shape", (3, 3, 3, 2),
         r"w.shape\[-2\] = C/groups = 4/1 = 4, got 3", id="kernel-depth"),
    case(c, (X, a(7, 3, 4, 2)), dict(padding="VALID"), V, "w window", (7, 3),
         FIT.format(e=7, i=6), id="kernel-too-large"),
    case(c, (X, W), dict(dilation=3, padding="VALID"), V, "w window", (3, 3),
         r"extent 7 \(size 3, dilation 3\) > input 6", id="dilated-kernel-too-large"),
    case(c, (X, W), dict(stride=0), V, "stride", 0, "ints >= 1", id="stride-zero"),
    case(c, (X, W), dict(stride=(1, -2)), V, "stride", (1, -2), "ints >= 1",
         id="stride-negative"),
    case(c, (X, W), dict(stride=(1, 1, 1)), V, "stride", (1, 1, 1), "2 ints",
         id="stride-wrong-length"),
    case(c, (X, W), dict(dilation=0), V, "dilation", 0, "ints >= 1", id="dilation-zero"),
    case(c, (X, W), dict(dilation=(-1, 1)), V, "dilation", (-1, 1), "ints >= 1",
         id="dilation-negative"),
    case(c, (a(6, 4), W), {}, V, "x.shape", (6, 4), r"rank 3 or 4 or 5", id="x-rank-2"),
    case(c, (a(1, 2, 2, 2, 2, 4), W), {}, V, "x.shape", (1, 2, 2, 2, 2, 4),
         r"rank 3 or 4 or 5", id="x-rank-6"),
    case(c, (X, a(3, 3, 4)), {}, V, "w.shape", (3, 3, 4), "rank 4", id="w-rank"),
    case(c, (a(1, 6, 6, 4, dtype=I32), W), {}, T, "x.dtype", "int32", FLOAT, id="x-int"),
    case(c, (X, a(3, 3, 4, 2, dtype=I32)), {}, T, "w.dtype", "int32", FLOAT, id="w-int"),
    case(c, (X, W), dict(padding="FULL"), V, "padding", "FULL", PAD_FORMS,
         id="padding-unknown"),
    case(c, (X, W), dict(padding=-1), V, "padding", -1, NON_NEG, id="padding-negative"),
    case(c, (X, W), dict(padding=((0, 1), (2, -1))), V, "padding", ((0, 1), (2, -1)),
         NON_NEG, id="padding-negative-pair"),
    case(c, (X, W), dict(padding=((1, 2, 3), (0, 0))), V, "padding", ((1, 2, 3), (0, 0)),
         PAD_FORMS, id="padding-triple"),
    case(c, (X, W), dict(padding=(1,)), V, "padding", (1,), "for 2 spatial axes",
         id="padding-wrong-length"),
    case(c, (X, W), dict(padding=1.5), V, "padding", 1.5, PAD_FORMS, id="padding-float"),
    case(c, (X, W), dict(padding=None), V, "padding", None, PAD_FORMS, id="padding-none"),
    case(c, (X, W), dict(padding_mode="mirror"), V, "padding_mode", "mirror", MODES,
         id="padding-mode-unknown"),
    case(c, (SMALL, W), dict(padding=3, padding_mode="reflect"), V, "padding", (3, 3),
         r"at most 2 per side .*input size 3.*padding_mode='reflect'", id="reflect-too-wide"),
    case(c, (SMALL, W), dict(padding=((0, 0), (4, 0)), padding_mode="circular"), V,
         "padding", (4, 0), r"at most 3 per side along spatial axis 1.*'circular'",
         id="circular-too-wide"),
    case(c, (X, W), dict(impl="fast"), V, "impl", "fast", IMPLS_CONV, id="impl-unknown"),
    # --- depthwise_conv -------------------------------------------------------------
    case(dw, (X, a(3, 3, 4, 4)), {}, V, "w.shape", (3, 3, 4, 4),
         r"\(\*kernel, 1, C\*M\) with C=4", id="kernel-depth"),
    case(dw, (X, a(3, 3, 1, 6)), {}, V, "w.shape", (3, 3, 1, 6),
         r"\(\*kernel, 1, C\*M\) with C=4", id="K-not-multiple-of-C"),
    case(dw, (X, a(3, 1, 4)), {}, V, "w.shape", (3, 1, 4), "rank 4", id="w-rank"),
    case(dw, (a(6, 4), WD), {}, V, "x.shape", (6, 4), "rank 3 or 4 or 5", id="x-rank"),
    case(dw, (a(1, 6, 6, 4, dtype=I32), WD), {}, T, "x.dtype", "int32", FLOAT, id="x-int"),
    case(dw, (X, WD), dict(impl="fast"), V, "impl", "fast", IMPLS3, id="impl-unknown"),
    case(dw, (X, WD), dict(stride=0), V, "stride", 0, "ints >= 1", id="stride-zero"),
    case(dw, (X, WD), dict(dilation=0), V, "dilation", 0, "ints >= 1", id="dilation-zero"),
    case(dw, (X, WD), dict(padding="FULL"), V, "padding", "FULL", PAD_FORMS,
         id="padding-unknown"),
    case(dw, (X, WD), dict(padding_mode="mirror"), V, "padding_mode", "mirror", MODES,
         id="padding-mode-unknown"),
    case(dw, (X, a(7, 7, 1, 4)), dict(padding="VALID"), V, "w window", (7, 7),
         FIT.format(e=7, i=6), id="kernel-too-large"),
    # --- pointwise_conv -------------------------------------------------------------
    case(pw, (X, a(1, 1, 4, 8)), {}, V, "w.shape", (1, 1, 4, 8), r"rank 2: \(C/groups, K\)",
         id="w-rank-4"),
    case(pw, (X, a(8)), {}, V, "w.shape", (8,), "rank 2", id="w-rank-1"),
    case(pw, (X, a(4, 8, dtype=I32)), {}, T, "w.dtype", "int32", FLOAT, id="w-int"),
    case(pw, (X, WP), dict(impl="patches"), V, "impl", "patches", IMPLS_HYBRID,
         id="impl-patches"),
    case(pw, (X, a(1, 6)), dict(groups=3), V, "groups", 3, "divisor of the input channels",
         id="groups-not-dividing-C"),
    case(pw, (X, a(2, 5)), dict(groups=2), V, "groups", 2, "divisor of the filter count",
         id="groups-not-dividing-K"),
    case(pw, (X, a(3, 8)), {}, V, "w.shape", (3, 8), "C/groups", id="kernel-depth"),
    case(pw, (X, WP), dict(stride=0), V, "stride", 0, "ints >= 1", id="stride-zero"),
    # --- separable_conv -------------------------------------------------------------
    case(sep, (X, WD, a(5, 8)), {}, V, "w_pointwise.shape", (5, 8),
         r"C\*M = 4 depthwise outputs", id="pointwise-depth"),
    case(sep, (X, WD, a(1, 1, 4, 8)), {}, V, "w_pointwise.shape", (1, 1, 4, 8), "rank 2",
         id="pointwise-rank"),
    case(sep, (X, a(3, 3, 1, 4, dtype=I32), WP), {}, T, "w_depthwise.dtype", "int32", FLOAT,
         id="depthwise-int"),
    case(sep, (X, WD, WP), dict(impl="fast"), V, "impl", "fast", IMPLS3,
         id="impl-unknown"),
    case(sep, (X, a(3, 3, 2, 4), WP), {}, V, "w_depthwise.shape", (3, 3, 2, 4),
         r"1, C\*M", id="depthwise-depth"),
    case(sep, (a(6, 4), WD, WP), {}, V, "x.shape", (6, 4), "rank 3 or 4 or 5",
         id="x-rank"),
    case(sep, (X, WD, WP), dict(stride=0), V, "stride", 0, "ints >= 1", id="stride-zero"),
    case(sep, (X, WD, WP), dict(padding_mode="mirror"), V, "padding_mode", "mirror",
         MODES, id="padding-mode-unknown"),
    # --- spatially_separable_conv ---------------------------------------------------
    case(ss, (X, [a(5, 1, 4, 4), a(3, 5, 4, 8)]), {}, V, "ws[1].shape", (3, 5, 4, 8),
         "size 1 on every spatial axis but 1", id="kernel-not-1-off-axis"),
    case(ss, (X, [a(5, 2, 4, 4), a(1, 5, 4, 8)]), {}, V, "ws[0].shape", (5, 2, 4, 4),
         "size 1 on every spatial axis but 0", id="kernel-not-1-off-axis-0"),
    case(ss, (X, [a(5, 1, 4, 4), a(1, 5, 3, 8)]), {}, V, "ws[1].shape", (1, 5, 3, 8),
         r"input depth w.shape\[-2\] = 4", id="kernel-depth"),
    case(ss, (X, [a(5, 1, 4, 4)]), {}, V, "ws", [(5, 1, 4, 4)], "2 kernels",
         id="too-few-kernels"),
    case(ss, (X, a(5, 1, 4, 4)), {}, T, "ws", "ArrayImpl", "a sequence of kernels",
         id="ws-not-a-sequence"),
    case(ss, (X, [a(7, 1, 4, 4), a(1, 5, 4, 8)]), dict(padding="VALID"), V, "ws window",
         (7, 5), FIT.format(e=7, i=6), id="kernel-too-large"),
    case(ss, (X, [a(5, 1, 4, 4, dtype=I32), WS[1]]), {}, T, "ws[0].dtype", "int32", FLOAT,
         id="w-int"),
    case(ss, (X, WS), dict(stride=0), V, "stride", 0, "ints >= 1", id="stride-zero"),
    case(ss, (X, WS), dict(padding_mode="mirror"), V, "padding_mode", "mirror", MODES,
         id="padding-mode-unknown"),
    case(ss, (X, WS), dict(impl="fast"), V, "impl", "fast", IMPLS_SS, id="impl-unknown"),
    # --- per_map_conv (Type 1) and shared_filter_conv (Type 2.1) ---------------------
    case(pm, (X, W), {}, V, "w.shape", (3, 3, 4, 2), r"rank 3: \(\*kernel, K\).*no channel axis",
         id="w-with-channel-axis"),
    case(pm, (X, a(7, 3, 2)), dict(padding="VALID"), V, "w window", (7, 3),
         FIT.format(e=7, i=6), id="kernel-too-large"),
    case(pm, (X, K2), dict(stride=-1), V, "stride", -1, "ints >= 1", id="stride-negative"),
    case(pm, (X, K2), dict(dilation=0), V, "dilation", 0, "ints >= 1", id="dilation-zero"),
    case(pm, (X, K2), dict(padding="full"), V, "padding", "full", PAD_FORMS,
         id="padding-unknown"),
    case(pm, (SMALL, K2), dict(padding=3, padding_mode="reflect"), V, "padding", (3, 3),
         "at most 2 per side", id="reflect-too-wide"),
    case(pm, (X, K2), dict(impl="patches"), V, "impl", "patches", IMPLS_PER_MAP, id="impl-patches"),
    case(pm, (a(1, 6, 6, 4, dtype=I32), K2), {}, T, "x.dtype", "int32", FLOAT, id="x-int"),
    case(sf, (X, W), {}, V, "w.shape", (3, 3, 4, 2), "rank 3", id="w-with-channel-axis"),
    case(sf, (X, a(3, 9, 2)), dict(padding="VALID"), V, "w window", (3, 9),
         FIT.format(e=9, i=6), id="kernel-too-large"),
    case(sf, (X, K2), dict(stride=(0, 1)), V, "stride", (0, 1), "ints >= 1",
         id="stride-zero"),
    case(sf, (X, K2), dict(padding=(-1, 0)), V, "padding", (-1, 0), NON_NEG,
         id="padding-negative"),
    case(sf, (X, K2), dict(padding_mode="mirror"), V, "padding_mode", "mirror", MODES,
         id="padding-mode-unknown"),
    case(sf, (X, K2), dict(impl="fast"), V, "impl", "fast", IMPLS_SF, id="impl-unknown"),
    case(sf, (X, a(3, 3, 2, dtype=I32)), {}, T, "w.dtype", "int32", FLOAT, id="w-int"),
    # --- conv_transpose ---------------------------------------------------------------
    case(ct, (X, W), dict(stride=2, output_padding=2), V, "output_padding", (2, 2),
         r"smaller than max\(stride, dilation\) = 2 on axis 0", id="output-padding-ge-stride"),
    case(ct, (X, W), dict(stride=(1, 3), dilation=(2, 1), output_padding=(1, 3)), V,
         "output_padding", (1, 3), r"max\(stride, dilation\) = 3 on axis 1",
         id="output-padding-ge-max"),
    case(ct, (X, W), dict(output_padding=1), V, "output_padding", (1, 1),
         r"max\(stride, dilation\) = 1", id="output-padding-stride-1"),
    case(ct, (X, W), dict(output_padding=-1), V, "output_padding", -1, "ints >= 0",
         id="output-padding-negative"),
    case(ct, (X, a(3, 3, 1, 3)), dict(groups=3), V, "w.shape", (3, 3, 1, 3),
         r"C/groups, K\) with C=4, groups=3", id="groups-not-dividing-C"),
    case(ct, (X, a(3, 3, 2, 5)), dict(groups=2), V, "groups", 2,
         "divisor of the filter count K=w.shape.*=5", id="groups-not-dividing-K"),
    case(ct, (X, a(3, 3, 3, 2)), {}, V, "w.shape", (3, 3, 3, 2), "with C=4, groups=1",
         id="kernel-depth"),
    case(ct, (a(1, 2, 2, 4), W), dict(padding=5), V, "padding", 5,
         r"positive output size, got \(-6, -6\)", id="crop-too-large"),
    case(ct, (X, W), dict(stride=0), V, "stride", 0, "ints >= 1", id="stride-zero"),
    case(ct, (X, W), dict(dilation=-1), V, "dilation", -1, "ints >= 1",
         id="dilation-negative"),
    case(ct, (X, W), dict(padding=-2), V, "padding", -2, NON_NEG, id="padding-negative"),
    case(ct, (X, W), dict(padding="FULL"), V, "padding", "FULL", PAD_FORMS,
         id="padding-unknown"),
    case(ct, (X, a(3, 4, 2)), {}, V, "w.shape", (3, 4, 2), "rank 4", id="w-rank"),
    case(ct, (a(1, 6, 6, 4, dtype=I32), W), {}, T, "x.dtype", "int32", FLOAT, id="x-int"),
    case(ct, (X, W), dict(impl="patches"), V, "impl", "patches", IMPLS_CT, id="impl-patches"),
    # --- local_conv -------------------------------------------------------------------
    case(lc, (X, a(3, 3, 3, 3, 4, 2)), {}, V, "w.shape", (3, 3, 3, 3, 4, 2),
         r"leading axes equal to the output positions \(4, 4\)", id="leading-axes"),
    case(lc, (X, a(3, 3, 3, 3, 4, 2)), dict(stride=2), V, "w.shape", (3, 3, 3, 3, 4, 2),
         r"output positions \(2, 2\)", id="leading-axes-strided"),
    case(lc, (X, W), {}, V, "w.shape", (3, 3, 4, 2), "rank 6", id="w-rank"),
    case(lc, (X, a(4, 4, 3, 3, 3, 2)), {}, V, "w.shape", (4, 4, 3, 3, 3, 2), "C=4",
         id="kernel-depth"),
    case(lc, (X, a(1, 1, 7, 7, 4, 2)), {}, V, "w window", (7, 7), FIT.format(e=7, i=6),
         id="kernel-too-large"),
    case(lc, (X, a(4, 4, 3, 3, 4, 2)), dict(stride=0), V, "stride", 0, "ints >= 1",
         id="stride-zero"),
    case(lc, (X, a(4, 4, 3, 3, 4, 2)), dict(padding_mode="mirror"), V, "padding_mode",
         "mirror", MODES, id="padding-mode-unknown"),
    case(lc, (X, a(4, 4, 3, 3, 4, 2)), dict(impl="fast"), V, "impl", "fast", IMPLS_LOCAL,
         id="impl-patches"),
    # --- depth_sliding_conv -------------------------------------------------------------
    case(ds, (X, a(5, 3, 3, 2)), {}, V, "w window", (5, 3, 3),
         r"along the map \(depth\) axis: extent 5 .*> input 4 ", id="kernel-deeper-than-C"),
    case(ds, (X, a(2, 3, 3, 2)), dict(dilation=(4, 1, 1)), V, "w window", (2, 3, 3),
         r"map \(depth\) axis: extent 5 .*dilation 4", id="dilated-kernel-deeper-than-C"),
    case(ds, (X, W[..., 0]), {}, V, "w.shape", (3, 3, 4), "rank 4", id="w-rank"),
    case(ds, (X, a(3, 3, 3, 2)), dict(stride=(1, 1)), V, "stride", (1, 1), "3 ints",
         id="stride-2-of-3"),
    case(ds, (X, a(3, 3, 3, 2)), dict(padding=((4, 4), (0, 0), (0, 0)),
                                      padding_mode="reflect"), V,
         "padding", (4, 4), r"at most 3 per side along the map \(depth\) axis",
         id="reflect-too-wide"),
    case(ds, (X, a(3, 3, 3, 2)), dict(padding_mode="mirror"), V, "padding_mode", "mirror",
         MODES, id="padding-mode-unknown"),
    case(ds, (X, a(3, 3, 3, 2)), dict(impl="fast"), V, "impl", "fast", IMPLS_SHIFT_FWD,
         id="impl-unknown"),
    # --- pooling, maxout, LRN -----------------------------------------------------------
    case(mp, (X,), dict(window=0), V, "window", 0, "ints >= 1", id="window-zero"),
    case(mp, (X,), dict(window=7), V, "window window", (7, 7), FIT.format(e=7, i=6),
         id="window-too-large"),
    case(mp, (X,), dict(window=2, stride=0), V, "stride", 0, "ints >= 1", id="stride-zero"),
    case(mp, (X,), dict(window=2, padding=-1), V, "padding", -1, NON_NEG,
         id="padding-negative"),
    case(mp, (a(6, 4),), dict(window=2), V, "x.shape", (6, 4), "rank 3", id="x-rank"),
    case(mp, (a(1, 6, 6, 4, dtype=I32),), dict(window=2), T, "x.dtype", "int32", FLOAT,
         id="x-int"),
    case(mp, (X,), dict(window=2, impl="patches"), V, "impl", "patches", IMPLS_POOL,
         id="impl-patches"),
    case(ap, (X,), dict(window=(2, 2, 2)), V, "window", (2, 2, 2), "2 ints",
         id="window-wrong-length"),
    case(ap, (X,), dict(window=3, padding="FULL"), V, "padding", "FULL", PAD_FORMS,
         id="padding-unknown"),
    case(ap, (X,), dict(window=2, count_include_pad="yes"), T, "count_include_pad", "yes",
         "a bool", id="count-include-pad"),
    case(ap, (X,), dict(window=2, impl="fast"), V, "impl", "fast", IMPLS_POOL,
         id="impl-unknown"),
    case(gap, (a(6, 4),), {}, V, "x.shape", (6, 4), "rank 3 or 4 or 5", id="x-rank"),
    case(gap, (a(1, 6, 6, 4, dtype=I32),), {}, T, "x.dtype", "int32", FLOAT, id="x-int"),
    case(gap, (X,), dict(impl="fast"), V, "impl", "fast", IMPLS_EINSUM, id="impl-unknown"),
    case(cmp, (X,), dict(group_size=7), V, "group_size window", (7,),
         r"along the channel axis: extent 7 .*> input 4 ", id="group-size-gt-C"),
    case(cmp, (X,), dict(group_size=0), V, "group_size", 0, "an int >= 1",
         id="group-size-zero"),
    case(cmp, (X,), dict(group_size=2, stride=0), V, "stride", 0, "an int >= 1",
         id="stride-zero"),
    case(cmp, (a(1, 6, 6, 4, dtype=I32),), dict(group_size=2), T, "x.dtype", "int32", FLOAT,
         id="x-int"),
    case(cmp, (X,), dict(group_size=2, impl="fast"), V, "impl", "fast", IMPLS2,
         id="impl-unknown"),
    case(lrn, (X,), dict(alpha=-1e-4), V, "alpha", -1e-4, "a non-negative number",
         id="alpha-negative"),
    case(lrn, (X,), dict(alpha="1e-4"), T, "alpha", "1e-4", "a Python number",
         id="alpha-string"),
    case(lrn, (X,), dict(alpha=None), T, "alpha", None, "a Python number", id="alpha-none"),
    case(lrn, (X,), dict(k=-2.0), V, "k", -2.0, "a non-negative number", id="k-negative"),
    case(lrn, (X,), dict(size=0), V, "size", 0, "an int >= 1", id="size-zero"),
    case(lrn, (a(6, 4),), {}, V, "x.shape", (6, 4), "rank 3", id="x-rank"),
    case(lrn, (a(1, 6, 6, 4, dtype=I32),), {}, T, "x.dtype", "int32", FLOAT, id="x-int"),
    case(lrn, (X,), dict(impl="patches"), V, "impl", "patches", IMPLS_LRN, id="impl-patches"),
]

SHAPE_CASES = [
    case(jconv.output_shape, ("conv3d", (1, 6, 6, 4), (3, 3, 4, 2)), {}, V, "op", "conv3d",
         r"one of \[.*'conv', .*'depth_sliding_conv'", id="unknown-op"),
    case(jconv.output_shape, ("conv", (1, 6, 6, 4), (3, 3, 5, 2)), {}, V, "w.shape",
         (3, 3, 5, 2), "C/groups", op="conv", id="conv-kernel-depth"),
    case(jconv.output_shape, ("conv", (1, 6, 6, 4), (3, 3, 4, 2)), dict(stride=0), V,
         "stride", 0, "ints >= 1", op="conv", id="conv-stride-zero"),
    case(jconv.output_shape, ("max_pool", (1, 6, 0, 4), 2), {}, V, "x.shape", (1, 6, 0, 4),
         "positive sizes", op="max_pool", id="max-pool-empty-axis"),
    case(jconv.param_count, ("conv2d", (3, 3, 4, 2)), {}, V, "op", "conv2d",
         r"one of \[.*'conv', ", id="unknown-op"),
    case(jconv.param_count, ("conv",), {}, V, "w_shapes", (), "weight shapes of conv",
         id="no-shapes"),
    case(jconv.which_impl, ("conv2d",), {}, V, "op", "conv2d", r"one of \[.*'conv', ",
         id="unknown-op"),
    case(jconv.which_impl, ("conv",), dict(backend="banana"), V, "backend", "banana",
         "cpu.*gpu.*tpu", id="unknown-backend"),
]

# Public lax entry points that jconv's kernels call (jconv does `from jax import lax`):
# any of them being reached means validation came too late.
_LAX_ENTRY_POINTS = ("conv_general_dilated", "conv_general_dilated_local", "reduce_window",
                     "reduce", "pad", "slice")


@pytest.fixture
def no_lax(monkeypatch):
    def reached(*args, **kwargs):
        raise AssertionError("a lax op was reached before the arguments were validated")

    for name in _LAX_ENTRY_POINTS:
        monkeypatch.setattr(jax.lax, name, reached)
    monkeypatch.setattr(jnp, "einsum", reached)
    monkeypatch.setattr(jnp, "pad", reached)


@pytest.mark.parametrize("fn, args, kwargs, exc, regex", ARRAY_CASES + SHAPE_CASES)
def test_rejects_bad_input(no_lax, fn, args, kwargs, exc, regex):
    with pytest.raises(exc, match=regex):
        fn(*args, **kwargs)


def _by_id(*ids):
    table = {p.id: p for p in ARRAY_CASES}
    return [table[i] for i in ids]


TRACED = _by_id("conv-groups-not-dividing-C", "conv-kernel-too-large", "conv-x-int",
                "conv-reflect-too-wide", "per_map_conv-stride-negative",
                "spatially_separable_conv-kernel-not-1-off-axis",
                "conv_transpose-output-padding-ge-stride", "local_conv-leading-axes",
                "depth_sliding_conv-kernel-deeper-than-C", "max_pool-window-too-large",
                "channel_max_pool-group-size-gt-C", "local_response_norm-alpha-negative")


@pytest.mark.parametrize("fn, args, kwargs, exc, regex", TRACED)
@pytest.mark.parametrize("transform", ["jit", "eval_shape"])
def test_traced_calls_raise_the_same_error(fn, args, kwargs, exc, regex, transform):
    """Validation reads only shapes and dtypes, so tracing raises it too, not an XLA error."""
    def call(*arrays):
        return fn(*arrays, **kwargs)

    traced = jax.jit(call) if transform == "jit" else lambda *xs: jax.eval_shape(call, *xs)
    with pytest.raises(exc, match=regex):
        traced(*args)


def test_valid_calls_are_not_rejected():
    """The baseline arrays of the table are valid: each row fails for its one bad input."""
    assert jconv.conv(X, W).shape == (1, 6, 6, 2)
    assert jconv.depthwise_conv(X, WD).shape == (1, 6, 6, 4)
    assert jconv.pointwise_conv(X, WP).shape == (1, 6, 6, 8)
    assert jconv.separable_conv(X, WD, WP).shape == (1, 6, 6, 8)
    assert jconv.spatially_separable_conv(X, WS).shape == (1, 6, 6, 8)
    assert jconv.per_map_conv(X, K2).shape == (1, 6, 6, 8)
    assert jconv.shared_filter_conv(X, K2).shape == (1, 6, 6, 2)
    assert jconv.local_conv(X, a(4, 4, 3, 3, 4, 2)).shape == (1, 4, 4, 2)
    assert jconv.depth_sliding_conv(X, a(3, 3, 3, 2)).shape == (1, 2, 4, 4, 2)
    assert jconv.conv(SMALL, W, padding=2, padding_mode="reflect").shape == (1, 5, 5, 2)
    assert jconv.channel_max_pool(X, 4).shape == (1, 6, 6, 1)
