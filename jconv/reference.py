"""Slow, obviously correct NumPy references for every operation in jconv.

This module is the independent ground truth of the test suite: it must never
import jax or jconv.  Everything is written as plain Python loops over output
positions and kernel taps; only the batch and channel axes are vectorised (with
numpy matmul / broadcasting inside the loop).  All math is float64 and every
function returns a float64 array.

Conventions
-----------
* activations are channels-last ``(N, *spatial, C)`` with 1, 2 or 3 spatial dims;
* kernels are ``(*spatial, C_in // groups, C_out)``;
* kernel tap ``t`` sits at offset ``t * dilation``;
* every convolution is a cross-correlation (no kernel flip), like every framework;
* ``stride`` / ``dilation`` / ``window`` are an int (same on every dim) or a
  sequence with one entry per spatial dim;
* ``padding`` is ``"VALID"``, ``"SAME"`` (lax/TensorFlow rule), an int ``p``,
  a sequence of ints ``p_i`` or a sequence of ``(lo, hi)`` pairs (see
  :func:`resolve_padding`);
* ``padding_mode`` is ``"zeros"``, ``"reflect"``, ``"edge"`` or ``"circular"``.
"""

import numpy as np

_NP_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "edge": "edge", "circular": "wrap"}


# --------------------------------------------------------------------------- helpers


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _tuple(v, n, name="value"):
    """An int -> (v,) * n; a sequence -> tuple of ints of length n."""
    if isinstance(v, (int, np.integer)):
        return (int(v),) * n
    v = tuple(int(e) for e in v)
    if len(v) != n:
        raise ValueError(f"{name} has {len(v)} entries, expected {n}")
    return v


def resolve_padding(in_sizes, kernel_sizes, strides, dilations, padding):
    """Explicit ``[(lo, hi), ...]`` per spatial dim.

    VALID -> (0, 0); SAME -> out = ceil(in / s),
    total = max((out - 1) s + (k - 1) d + 1 - in, 0), lo = total // 2, hi = total - lo;
    int p -> (p, p); ints p_i -> (p_i, p_i); pairs -> as given.
    """
    n = len(in_sizes)
    strides, dilations = _tuple(strides, n, "stride"), _tuple(dilations, n, "dilation")
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return [(0, 0)] * n
        if mode != "SAME":
            raise ValueError(f"unknown padding {padding!r}")
        pads = []
        for i, k, s, d in zip(in_sizes, kernel_sizes, strides, dilations):
            out = -(-i // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - i, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    if isinstance(padding, (int, np.integer)):
        return [(int(padding), int(padding))] * n
    padding = list(padding)
    if len(padding) != n:
        raise ValueError(f"padding has {len(padding)} entries, expected {n}")
    return [(int(p), int(p)) if isinstance(p, (int, np.integer)) else (int(p[0]), int(p[1])) for p in padding]


def pad_input(x, pads, mode="zeros"):
    """Pad the spatial dims of ``x`` (N, *S, C) by ``pads`` [(lo, hi), ...].

    zeros -> constant 0, reflect -> numpy 'reflect', edge -> 'edge', circular -> 'wrap'.
    """
    if mode not in _NP_PAD_MODES:
        raise ValueError(f"unknown padding_mode {mode!r}")
    width = [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)]
    return np.pad(_f64(x), width, mode=_NP_PAD_MODES[mode])


def output_size(in_size, k, s, d, lo, hi):
    """(in + lo + hi - (k - 1) d - 1) // s + 1."""
    return (in_size + lo + hi - (k - 1) * d - 1) // s + 1


def _setup(x, kernel_sizes, stride, padding, dilation, padding_mode="zeros", pad_value=None):
    """Common prologue: returns (padded x, strides, dilations, output spatial sizes)."""
    x = _f64(x)
    in_sizes = x.shape[1:-1]
    n = len(in_sizes)
    if n < 1:  # 1-3 for activations; depth_sliding_conv's volume adds one more
        raise ValueError(f"expected at least one spatial dim, got x.shape={x.shape}")
    kernel_sizes = _tuple(kernel_sizes, n, "kernel size")
    strides, dilations = _tuple(stride, n, "stride"), _tuple(dilation, n, "dilation")
    pads = resolve_padding(in_sizes, kernel_sizes, strides, dilations, padding)
    if pad_value is None:
        xpad = pad_input(x, pads, padding_mode)
    else:
        xpad = np.pad(x, [(0, 0)] + pads + [(0, 0)], constant_values=pad_value)
    outs = tuple(
        output_size(i, k, s, d, lo, hi)
        for i, k, s, d, (lo, hi) in zip(in_sizes, kernel_sizes, strides, dilations, pads)
    )
    if min(outs) < 1:
        raise ValueError(f"empty output {outs}")
    return xpad, strides, dilations, outs


def _tap(xpad, p, t, s, d):
    """xpad[:, p*s + t*d, :] -> (N, C) for output position p and kernel tap t."""
    idx = tuple(pi * si + ti * di for pi, ti, si, di in zip(p, t, s, d))
    return xpad[(slice(None),) + idx]


def _map_conv(x, f, stride, padding, dilation, padding_mode):
    """Single-map conv of every map of x with one filter f (*K): (N, *S, C) -> (N, *S', C)."""
    f = _f64(f)
    xpad, s, d, outs = _setup(x, f.shape, stride, padding, dilation, padding_mode)
    out = np.zeros((xpad.shape[0],) + outs + (xpad.shape[-1],))
    for p in np.ndindex(*outs):
        for t in np.ndindex(*f.shape):
            out[(slice(None),) + p] += _tap(xpad, p, t, s, d) * f[t]
    return out


# --------------------------------------------------------------------------- convolutions


def conv(x, w, stride=1, padding="SAME", dilation=1, groups=1, padding_mode="zeros"):
    """Grouped conv (Type 2.2): out[n,p,o] = sum_t sum_c xpad[n, p*s + t*d, g*C/G + c] * w[t, c, o],
    with g = o // (O/G)."""
    w = _f64(w)
    C, O, G = _f64(x).shape[-1], w.shape[-1], groups
    if C % G or O % G or w.shape[-2] != C // G:
        raise ValueError(f"bad groups={G} for C={C}, w.shape={w.shape}")
    cg, og = C // G, O // G
    xpad, s, d, outs = _setup(x, w.shape[:-2], stride, padding, dilation, padding_mode)
    out = np.zeros((xpad.shape[0],) + outs + (O,))
    for p in np.ndindex(*outs):
        for t in np.ndindex(*w.shape[:-2]):
            patch = _tap(xpad, p, t, s, d)  # (N, C)
            for g in range(G):
                out[(slice(None),) + p + (slice(g * og, (g + 1) * og),)] += (
                    patch[:, g * cg:(g + 1) * cg] @ w[t][:, g * og:(g + 1) * og]
                )
    return out


def per_map_conv(x, w, stride=1, padding="SAME", dilation=1, padding_mode="zeros"):
    """Type 1: w (*K, Kf); out[..., c*Kf + k] = single-map conv of map c with filter k (c-major)."""
    w = _f64(w)
    C, Kf = _f64(x).shape[-1], w.shape[-1]
    per_filter = [_map_conv(x, w[..., k], stride, padding, dilation, padding_mode) for k in range(Kf)]
    return np.stack([per_filter[k][..., c] for c in range(C) for k in range(Kf)], axis=-1)


def shared_filter_conv(x, w, stride=1, padding="SAME", dilation=1, padding_mode="zeros"):
    """Type 2.1: w (*K, Kf); out[..., k] = sum_c single-map conv of map c with filter k
    (literally a loop over maps, not a conv of the channel sum)."""
    w = _f64(w)
    x = _f64(x)
    outs = []
    for k in range(w.shape[-1]):
        acc = 0.0
        for c in range(x.shape[-1]):
            acc = acc + _map_conv(x[..., c:c + 1], w[..., k], stride, padding, dilation, padding_mode)[..., 0]
        outs.append(acc)
    return np.stack(outs, axis=-1)


def depthwise_conv(x, w, stride=1, padding="SAME", dilation=1, padding_mode="zeros"):
    """Depthwise: w (*K, 1, C*M); out[..., c*M + m] = single-map conv of map c with w[..., 0, c*M + m]."""
    w = _f64(w)
    x = _f64(x)
    C = x.shape[-1]
    if w.shape[-2] != 1 or w.shape[-1] % C:
        raise ValueError(f"depthwise kernel must be (*K, 1, C*M), got {w.shape} for C={C}")
    M = w.shape[-1] // C
    maps = [
        _map_conv(x[..., c:c + 1], w[..., 0, c * M + m], stride, padding, dilation, padding_mode)[..., 0]
        for c in range(C) for m in range(M)
    ]
    return np.stack(maps, axis=-1)


def transpose_padding(in_sizes, kernel_sizes, strides, dilations, padding, output_padding):
    """Crops [(lo, hi), ...] and output paddings for conv_transpose (see its docstring)."""
    n = len(in_sizes)
    strides, dilations = _tuple(strides, n, "stride"), _tuple(dilations, n, "dilation")
    ops = list(_tuple(output_padding, n, "output_padding"))
    if isinstance(padding, str) and padding.upper() == "SAME":
        crops = []
        for i, (k, s, d) in enumerate(zip(kernel_sizes, strides, dilations)):
            eff = (k - 1) * d + 1
            total = max(eff - s, 0)
            crops.append((total // 2, total - total // 2))
            ops[i] += max(s - eff, 0)
        return crops, ops
    return resolve_padding(in_sizes, kernel_sizes, strides, dilations, padding), ops


def conv_transpose(x, w, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """PyTorch ConvTranspose as a scatter: full[i*s + t*d, g-out] += x[i, g-in] @ w[t][:, g-out],
    then out = full[lo : F - hi + output_padding] per dim, F = (in - 1) s + (k - 1) d + 1.

    w is (*K, C//groups, O).  padding: int / ints -> crop (p, p); pairs -> (lo, hi);
    "VALID" -> 0; "SAME" -> total = max((k-1)d + 1 - s, 0), lo = total//2, hi = total - lo and
    output_padding += max(s - ((k-1)d + 1), 0) so that the output size is in * s.
    """
    x, w = _f64(x), _f64(w)
    in_sizes, K = x.shape[1:-1], w.shape[:-2]
    n = len(in_sizes)
    C, O, G = x.shape[-1], w.shape[-1], groups
    if C % G or O % G or w.shape[-2] != C // G:
        raise ValueError(f"bad groups={G} for C={C}, w.shape={w.shape}")
    cg, og = C // G, O // G
    s, d = _tuple(stride, n, "stride"), _tuple(dilation, n, "dilation")
    crops, ops = transpose_padding(in_sizes, K, s, d, padding, output_padding)
    full_sizes = [(i - 1) * si + (k - 1) * di + 1 for i, k, si, di in zip(in_sizes, K, s, d)]
    out_sizes = [f - lo - hi + op for f, (lo, hi), op in zip(full_sizes, crops, ops)]
    if min(out_sizes) < 1 or min(lo for lo, _ in crops) < 0:
        raise ValueError(f"bad transpose padding {crops} / output_padding {ops}")
    ext = tuple(max(f, lo + o) for f, (lo, _), o in zip(full_sizes, crops, out_sizes))
    full = np.zeros((x.shape[0],) + ext + (O,))
    for i in np.ndindex(*in_sizes):
        for t in np.ndindex(*K):
            j = tuple(ii * si + ti * di for ii, ti, si, di in zip(i, t, s, d))
            xi = x[(slice(None),) + i]  # (N, C)
            for g in range(G):
                full[(slice(None),) + j + (slice(g * og, (g + 1) * og),)] += (
                    xi[:, g * cg:(g + 1) * cg] @ w[t][:, g * og:(g + 1) * og]
                )
    crop = tuple(slice(lo, lo + o) for (lo, _), o in zip(crops, out_sizes))
    return full[(slice(None),) + crop]


def local_conv(x, w, stride=1, padding="VALID", dilation=1, padding_mode="zeros"):
    """Locally connected (unshared): w (*OUT, *K, C, O); out[n,p,o] = sum_t sum_c xpad[n, p*s + t*d, c] w[p, t, c, o]."""
    x, w = _f64(x), _f64(w)
    n = x.ndim - 2
    K = w.shape[n:2 * n]
    xpad, s, d, outs = _setup(x, K, stride, padding, dilation, padding_mode)
    if tuple(w.shape[:n]) != outs or w.shape[-2] != x.shape[-1]:
        raise ValueError(f"local kernel {w.shape} does not match output sizes {outs} / C={x.shape[-1]}")
    out = np.zeros((x.shape[0],) + outs + (w.shape[-1],))
    for p in np.ndindex(*outs):
        for t in np.ndindex(*K):
            out[(slice(None),) + p] += _tap(xpad, p, t, s, d) @ w[p + t]
    return out


def _visit_order(outs, order):
    """The list of output positions in the requested visiting order (a permutation of all of them)."""
    positions = list(np.ndindex(*outs))
    if order is None or (isinstance(order, str) and order == "forward"):
        return positions
    if isinstance(order, str) and order == "reverse":
        return positions[::-1]
    if isinstance(order, str) and order == "random":
        order = 0
    if isinstance(order, (int, np.integer)):
        perm = np.random.default_rng(int(order)).permutation(len(positions))
        return [positions[i] for i in perm]
    order = [tuple(int(e) for e in p) for p in order]
    if sorted(order) != sorted(positions):
        raise ValueError("order must be a permutation of all output positions")
    return order


def depth_sliding_conv(x, w, stride=1, padding="VALID", dilation=1, padding_mode="zeros", order=None):
    """The C maps form a depth axis: v = x seen as (N, C, *S) with one channel; w (kd, *K, Kf);
    out[n, q, k] = sum_t v_pad[n, q*s + t*d] * w[t, k] over q = (depth, *spatial) positions.

    stride / padding / dilation cover (depth, *spatial).  Output positions are visited in
    ``order`` (None/"forward", "reverse", "random", an int seed or an explicit permutation of the
    position tuples); every position is written exactly once, so the result cannot depend on it.
    """
    x, w = _f64(x), _f64(w)
    v = np.moveaxis(x, -1, 1)[..., None]  # (N, C, *S, 1): depth is now a spatial dim
    vpad, s, d, outs = _setup(v, w.shape[:-1], stride, padding, dilation, padding_mode)
    out = np.full((x.shape[0],) + outs + (w.shape[-1],), np.nan)  # NaN = not visited yet
    for q in _visit_order(outs, order):
        acc = np.zeros((x.shape[0], w.shape[-1]))
        for t in np.ndindex(*w.shape[:-1]):
            acc += _tap(vpad, q, t, s, d) * w[t]  # (N, 1) * (Kf,)
        out[(slice(None),) + q] = acc
    assert not np.isnan(out).any(), "some output position was never visited"
    return out


def pointwise_conv(x, w, stride=1, groups=1):
    """1x1 grouped conv: w (C//groups, O); out[n, p, o] = sum_c x[n, p*s, g*C/G + c] w[c, o]."""
    w = _f64(w)
    return conv(x, w.reshape((1,) * (_f64(x).ndim - 2) + w.shape), stride=stride, padding="VALID", groups=groups)


# --------------------------------------------------------------------------- pooling & normalisation


def max_pool(x, window, stride=None, padding="VALID"):
    """Per-map max over the window: out[n, p, c] = max_t xpad[n, p*s + t, c]; pads with -inf."""
    n = _f64(x).ndim - 2
    window = _tuple(window, n, "window")
    stride = window if stride is None else stride
    xpad, s, d, outs = _setup(x, window, stride, padding, 1, pad_value=-np.inf)
    out = np.full((xpad.shape[0],) + outs + (xpad.shape[-1],), -np.inf)
    for p in np.ndindex(*outs):
        for t in np.ndindex(*window):
            out[(slice(None),) + p] = np.maximum(out[(slice(None),) + p], _tap(xpad, p, t, s, d))
    return out


def avg_pool(x, window, stride=None, padding="VALID", count_include_pad=True):
    """Per-map mean: out = sum_t xpad[n, p*s + t, c] / (prod(window) if count_include_pad
    else number of in-bounds taps); pads with zeros."""
    x = _f64(x)
    n = x.ndim - 2
    window = _tuple(window, n, "window")
    stride = window if stride is None else stride
    xpad, s, d, outs = _setup(x, window, stride, padding, 1, pad_value=0.0)
    ones = np.ones((1,) + x.shape[1:-1] + (1,))
    mask, _, _, _ = _setup(ones, window, stride, padding, 1, pad_value=0.0)
    out = np.zeros((x.shape[0],) + outs + (x.shape[-1],))
    for p in np.ndindex(*outs):
        total, count = 0.0, 0.0
        for t in np.ndindex(*window):
            total = total + _tap(xpad, p, t, s, d)
            count += _tap(mask, p, t, s, d)[0, 0]
        out[(slice(None),) + p] = total / (np.prod(window) if count_include_pad else count)
    return out


def global_avg_pool(x):
    """(N, *S, C) -> (N, C): mean over all spatial positions."""
    x = _f64(x)
    total = np.zeros((x.shape[0], x.shape[-1]))
    for p in np.ndindex(*x.shape[1:-1]):
        total += x[(slice(None),) + p]
    return total / np.prod(x.shape[1:-1])


def channel_max_pool(x, group_size, stride=None):
    """Max over windows of adjacent maps: out[..., j] = max_{c < group_size} x[..., j*stride + c];
    (C - group_size) // stride + 1 output maps."""
    x = _f64(x)
    stride = group_size if stride is None else stride
    n_out = (x.shape[-1] - group_size) // stride + 1
    out = np.full(x.shape[:-1] + (n_out,), -np.inf)
    for j in range(n_out):
        for c in range(group_size):
            out[..., j] = np.maximum(out[..., j], x[..., j * stride + c])
    return out


def local_response_norm(x, size=5, k=2.0, alpha=1e-4, beta=0.75):
    """AlexNet LRN across maps: b_c = a_c / (k + alpha * sum_{c'} a_{c'}^2)^beta,
    c' from max(0, c - size//2) to min(C-1, c + (size-1)//2).

    alpha is NOT divided by size.  PyTorch's nn.LocalResponseNorm divides alpha by size, so
    nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k) gives the same result.
    """
    x = _f64(x)
    C = x.shape[-1]
    out = np.empty_like(x)
    for c in range(C):
        sq = 0.0
        for c2 in range(max(0, c - size // 2), min(C - 1, c + (size - 1) // 2) + 1):
            sq = sq + x[..., c2] ** 2
        out[..., c] = x[..., c] / (k + alpha * sq) ** beta
    return out


__all__ = [
    "resolve_padding", "pad_input", "output_size", "transpose_padding",
    "conv", "per_map_conv", "shared_filter_conv", "depthwise_conv", "conv_transpose",
    "local_conv", "depth_sliding_conv", "pointwise_conv",
    "max_pool", "avg_pool", "global_avg_pool", "channel_max_pool", "local_response_norm",
]


def separable_conv(x, w_depthwise, w_pointwise, stride=1, padding="SAME", dilation=1,
                   padding_mode="zeros"):
    """Depthwise, then pointwise."""
    y = depthwise_conv(x, w_depthwise, stride, padding, dilation, padding_mode)
    return pointwise_conv(y, w_pointwise)


def spatially_separable_conv(x, ws, stride=1, padding="SAME", dilation=1, padding_mode="zeros"):
    """One Type 2.2 conv whose kernel is the product of the 1-D kernels."""
    full = np.asarray(ws[0], np.float64)
    for w in ws[1:]:  # broadcast product over the spatial axes, contracted over channels
        full = np.einsum("...cm,...mk->...ck", full, np.asarray(w, np.float64))
    return conv(x, full, stride, padding, dilation, 1, padding_mode)
