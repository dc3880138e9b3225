"""Numerical evidence: which type frameworks compute, 1×1 convolutions, pooling, 3-D filters."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

import jconv
from jconv import cost
from experiments.report_sections import Context, max_abs, num, table

FLAX_CONV = ("https://flax.readthedocs.io/en/latest/api_reference/flax.nnx/nn/"
             "linear.html#flax.nnx.Conv")
LAX_CONV = ("https://docs.jax.dev/en/latest/_autosummary/"
            "jax.lax.conv_general_dilated.html")
KERAS_CONV = "https://keras.io/api/layers/convolution_layers/convolution2d/"


def _patches(x: np.ndarray, k: int) -> np.ndarray:
    """``(N*H*W, k*k, C)``: the SAME-padded k×k neighbourhood of every pixel."""
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, k - 1 - p), (p, k - 1 - p), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))  # (N,H,W,C,k,k)
    return np.moveaxis(win, 3, -1).reshape(-1, k * k, x.shape[-1])  # (N*H*W, k*k, C)


def _best_fit(features: np.ndarray, target: np.ndarray) -> float:
    """Relative residual ``|target - features @ a| / |target|`` of the least-squares ``a``."""
    features = np.concatenate([features, np.ones((len(features), 1))], axis=1)  # bias
    coef, *_ = np.linalg.lstsq(features, target, rcond=None)
    return float(np.linalg.norm(target - features @ coef) / np.linalg.norm(target))


def which_type(ctx: Context) -> str:
    """Section 1: Type 1, 2.1 and 2.2 computed side by side, their shapes, weights and the
    framework layers they match. Long by design: one section's computations and text in
    reading order."""
    from flax import nnx

    c = ctx.config
    k1, k2, k, s = c.k1, c.k2, c.kernel2, c.evidence_size
    x_shape = (1, s, s, k1)
    costs = {"Type 1 (per map)": ("per_map_conv", cost.per_map_conv(x_shape, (k, k, k2))),
             "Type 2.1 (shared 2-D filter)": ("shared_filter_conv",
                                              cost.shared_filter_conv(x_shape, (k, k, k2))),
             "Type 2.2 (3-D filter)": ("conv", cost.conv(x_shape, (k, k, k1, k2)))}
    rows = []
    for label, (op, cst) in costs.items():
        rows.append([label, f"`jconv.{op}`", cst.output_shape[-1], num(cst.params),
                     num(cst.flops)])
        ctx.figures[f"types/{op}"] = {"maps": cst.output_shape[-1], "params": cst.params,
                                      "flops": cst.flops}

    shortcut = cost.shared_filter_conv(x_shape, (k, k, k2), shortcut=True)
    ctx.figures["types/shared_filter_conv"]["flops_shortcut"] = shortcut.flops
    x = jax.random.normal(ctx.key("which_type", "x"), (2, s, s, k1))
    layer = nnx.Conv(k1, k2, kernel_size=(k, k), padding="SAME", rngs=nnx.Rngs(c.seed))
    layer.bias[...] = jax.random.normal(ctx.key("which_type", "bias"), (k2,))
    kernel, bias = layer.kernel[...], layer.bias[...]
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(layer, nnx.Param)))
    y = np.asarray(layer(x))
    b4 = bias.reshape(1, 1, 1, k2)
    y22 = np.asarray(jconv.conv(x, kernel, precision="highest") + b4)
    y21 = np.asarray(jconv.shared_filter_conv(x, kernel[:, :, 0, :]) + b4)
    y1 = np.asarray(jconv.per_map_conv(x, kernel[:, :, 0, :]))
    target = y.reshape(-1, k2)  # (N*H*W, K)
    patches = _patches(np.asarray(x, np.float64), k)  # (N*H*W, k*k, C)
    fit22 = max(_best_fit(patches.reshape(len(patches), -1), target[:, j]) for j in range(k2))
    fit21 = min(_best_fit(patches.sum(-1), target[:, j]) for j in range(k2))
    fit1 = min(_best_fit(patches[..., i], target[:, j]) for i in range(k1) for j in range(k2))
    f = ctx.figures["nnx"] = {
        "params": n_params, "kernel_shape": list(kernel.shape),
        "max_abs_vs_type2_2": max_abs(y, y22), "max_abs_vs_type2_1": max_abs(y, y21),
        "type1_maps": int(y1.shape[-1]), "nnx_maps": int(y.shape[-1]),
        "fit_residual_type2_2": fit22, "fit_residual_type2_1": fit21,
        "fit_residual_type1": fit1}
    return f"""## 1. Which type is used?

The question's layer 2 maps k1 = {k1} input maps to k2 = {k2} output maps with {k}×{k}
filters ({s}×{s} maps, batch 1, SAME padding; FLOPs = 2 × multiply-adds, from `jconv.cost`):

{table(["layer 2 read as", "op", "output maps", "params (with biases)", "FLOPs"], rows)}

Type 1 does as many multiply-adds as Type 2.2 (every filter meets every map) but writes
k1 times as many maps. Type 2.1 as defined (the 2-D filter repeated through the depth)
costs the same too, yet by linearity it equals one single-channel conv of the summed
maps: {shortcut.flops:,} FLOPs that way, about 1/k1.

**Evidence that `flax.nnx.Conv` computes Type 2.2.** A `flax.nnx.Conv({k1}, {k2},
kernel_size=({k}, {k}))` with a random bias has {n_params:,} parameters
({'×'.join(map(str, kernel.shape))} kernel + {k2} biases), exactly `jconv.cost.conv`'s
{costs['Type 2.2 (3-D filter)'][1].params:,}; Type 1 and Type 2.1 would have
{costs['Type 1 (per map)'][1].params:,}. On a random batch of 2×{s}×{s}×{k1}:

- max |nnx.Conv − `jconv.conv` with the same kernel and bias| = {f['max_abs_vs_type2_2']:.3g}
  (0 means bit-identical; otherwise float32 rounding);
- max |nnx.Conv − Type 2.1 with the kernel's first slice| = {f['max_abs_vs_type2_1']:.3g};
  Type 1 gives {f['type1_maps']} maps where nnx.Conv gives {f['nnx_maps']}.
- Not just these kernels: fitting by least squares, the best Type 2.1 filter (a 5×5
  filter on the sum of the maps) leaves a relative residual of at least
  {f['fit_residual_type2_1']:.3f} on every nnx output map, the best Type 1 filter (a 5×5
  filter on one map) at least {f['fit_residual_type1']:.3f}, while a full {k}×{k}×{k1}
  kernel fits every map to {f['fit_residual_type2_2']:.1e}.

`nnx.Conv` only creates the parameters and calls `lax.conv_general_dilated`, whose kernel
is `(kh, kw, C/groups, K)` ([flax.nnx.Conv]({FLAX_CONV}),
[lax.conv_general_dilated]({LAX_CONV})); Keras' `Conv2D(8, 3)` after 40 maps has
8·3·3·40 + 8 = 2,888 weights by the same rule ([Keras Conv2D]({KERAS_CONV})). No
framework offers Type 1 or Type 2.1 as a layer.
"""


def one_by_one(ctx: Context) -> str:
    """The 1×1 conv as a per-pixel matmul and the cost of two chained layers. Long by design:
    one section's computations and text in reading order."""
    c = ctx.config
    k1, k2, s = c.k1, c.k2, c.evidence_size
    x = jax.random.normal(ctx.key("1x1", "x"), (1, s, s, k1))
    w1 = jax.random.normal(ctx.key("1x1", "w1"), (1, 1, k2))
    y1 = np.asarray(jconv.per_map_conv(x, w1)).reshape(1, s, s, k1, k2)  # (N, H, W, C, K)
    ratio = y1 / np.asarray(x)[..., None]  # (N, H, W, C, K)
    spread = float(np.max(ratio.max((0, 1, 2)) - ratio.min((0, 1, 2))))
    exact = max_abs(y1, np.asarray(x)[..., None] * np.asarray(w1).reshape(1, 1, 1, 1, k2))

    w22 = jax.random.normal(ctx.key("1x1", "w22"), (k1, k2))
    y22 = np.asarray(jconv.pointwise_conv(x, w22), np.float64).reshape(-1, k2)
    xs = np.asarray(x, np.float64).reshape(-1, k1)
    multiple = min(np.linalg.norm(y22[:, j] - (xs[:, i] @ y22[:, j]) / (xs[:, i] @ xs[:, i])
                                  * xs[:, i]) / np.linalg.norm(y22[:, j])
                   for i in range(k1) for j in range(k2))
    mix = max_abs(y22, xs @ np.asarray(w22, np.float64))

    hidden = 2 * k1
    keys = jax.random.split(ctx.key("1x1", "nin"), 4)
    wa, ba = jax.random.normal(keys[0], (k1, hidden)), jax.random.normal(keys[1], (hidden,))
    wb, bb = jax.random.normal(keys[2], (hidden, k2)), jax.random.normal(keys[3], (k2,))
    hid = jax.nn.relu(jconv.pointwise_conv(x, wa) + ba.reshape(1, 1, 1, hidden))  # (N, H, W, 2C)
    conv_net = jconv.pointwise_conv(hid, wb) + bb.reshape(1, 1, 1, k2)  # (N, H, W, K)

    def mlp(v):  # one pixel's k1 values -> k2 values
        return jax.nn.relu(v @ wa + ba) @ wb + bb

    per_pixel = jax.vmap(jax.vmap(jax.vmap(mlp)))(x)  # (N, H, W, K)
    nin = max_abs(conv_net, per_pixel)

    m, dk, size = c.mobilenet_maps, c.mobilenet_kernel, c.mobilenet_size
    xm_shape = (1, size, size, m)
    sep = cost.separable_conv(xm_shape, (dk, dk, 1, m), (m, m), bias=False)
    full = cost.conv(xm_shape, (dk, dk, m, m), bias=False)
    xm = jax.random.normal(ctx.key("mobilenet", "x"), xm_shape)
    wd = jax.random.normal(ctx.key("mobilenet", "wd"), (dk, dk, 1, m))
    wp = jax.random.normal(ctx.key("mobilenet", "wp"), (m, m))
    wf = jax.random.normal(ctx.key("mobilenet", "wf"), (dk, dk, m, m))
    t_sep = ctx.seconds({"part": "mobilenet", "layer": "separable", "size": size, "maps": m},
                        jax.jit(jconv.separable_conv), xm, wd, wp)
    t_full = ctx.seconds({"part": "mobilenet", "layer": "conv", "size": size, "maps": m},
                         jax.jit(jconv.conv), xm, wf)
    f = ctx.figures["one_by_one"] = {
        "type1_ratio_spread": spread, "type1_max_abs_vs_scaled": exact,
        "type2_2_min_residual_vs_multiple": float(multiple), "type2_2_max_abs_vs_mix": mix,
        "nin_max_abs_vs_mlp": nin,
        "mobilenet": {"N": m, "Dk": dk, "formula": 1 / m + 1 / dk**2,
                      "cost_model": sep.macs / full.macs, "macs_separable": sep.macs,
                      "macs_conv": full.macs, "time_separable_s": t_sep, "time_conv_s": t_full,
                      "timed": t_sep / t_full}}
    mb = f["mobilenet"]
    slow = (" The measured ratio is well above the counted one: XLA's depthwise conv is a "
            "slow path on CPU (jax#23713), so fewer multiply-adds do not buy as much time."
            if mb["timed"] > 1.5 * mb["cost_model"] else "")
    return f"""## 4. 1×1 convolutions

On a random {s}×{s}×{k1} input, with {k2} filters:

- **Type 1, 1×1**: each output map is one input map times one number. Over every pixel,
  output ÷ input is constant per map: the largest spread (max − min of the ratio) over all
  {k1 * k2} maps is {spread:.3g}, and max |y − w_k·x_c| = {exact:.3g}. Nothing is mixed.
- **Type 2.2, 1×1** (`jconv.pointwise_conv`): each output map is a learned linear mix of
  all input maps, max |y − x·W| = {mix:.3g}. No output map is a multiple of any input
  map: the best scalar multiple leaves a relative residual of at least {multiple:.3f}.
- **Followed by a nonlinearity** (Network in Network's "mlpconv"): 1×1 conv ({k1}→{hidden}),
  ReLU, 1×1 conv ({hidden}→{k2}) equals the same two-layer MLP applied at every pixel
  (`jax.vmap` over N, H, W): max abs difference {nin:.3g}.
- **MobileNet's cost ratio** for a {dk}×{dk} layer of N = {m} maps to {m} maps on
  {size}×{size}: a depthwise {dk}×{dk} conv followed by a 1×1 conv costs
  1/N + 1/Dk² = {mb['formula']:.4f} of the full conv by the formula; the cost model's
  multiply-adds give {mb['macs_separable']:,} / {mb['macs_conv']:,} = {mb['cost_model']:.4f};
  timed on this machine ({c.repeats} calls, median) {1e3 * t_sep:.3f} ms / {1e3 * t_full:.3f}
  ms = {mb['timed']:.3f}.{slow}

References: Lin, Chen & Yan, Network in Network (2013); Howard et al., MobileNets (2017);
Szegedy et al., Going deeper with convolutions (2014) for the 1×1 reductions (section 3).
"""


def pooling(ctx: Context) -> str:
    s, maps, g = ctx.config.evidence_size, 6, 2
    x = jax.random.normal(ctx.key("pooling", "x"), (1, s, s, maps))
    bump = jnp.zeros_like(x).at[..., 2].set(jax.random.normal(ctx.key("pooling", "d"), (1, s, s)))
    per_map = jconv.max_pool(x, 2, 2)
    per_map_changed = np.abs(np.asarray(jconv.max_pool(x + bump, 2, 2) - per_map)).max((0, 1, 2))
    maxout = jconv.channel_max_pool(x, g)
    maxout_changed = np.abs(np.asarray(jconv.channel_max_pool(x + bump, g) - maxout)).max(
        (0, 1, 2))
    reference = max_abs(maxout, np.asarray(x).reshape(1, s, s, maps // g, g).max(-1))
    ctx.figures["pooling"] = {
        "per_map_shape": list(per_map.shape), "maxout_shape": list(maxout.shape),
        "per_map_changed": per_map_changed.tolist(), "maxout_changed": maxout_changed.tolist(),
        "maxout_max_abs_vs_reference": reference}
    rows = [[f"output map {j}", num(per_map_changed[j], ".3g"),
             num(maxout_changed[j], ".3g") if j < len(maxout_changed) else "(none)"]
            for j in range(maps)]
    return f"""## 6. Pooling: per map versus across maps

A random 1×{s}×{s}×{maps} input. **Per map** (`jconv.max_pool`, 2×2, stride 2, as every
framework pools): shape {tuple(x.shape)} → {tuple(per_map.shape)}, the map count unchanged.
**Across maps** (maxout, `jconv.channel_max_pool` with groups of {g} adjacent maps, the
max at each pixel): {tuple(x.shape)} → {tuple(maxout.shape)}, the spatial size unchanged
and the maps divided by {g} (max |result − max over each group| = {reference:.3g}).

Perturbing input map 2 only (random noise added to it), the max abs change of each output map:

{table(["", "per-map max pool", "maxout over pairs"], rows)}

Per-map pooling changes only output map 2; maxout changes output map 1, the one whose group
holds input map 2. References: Goodfellow et al., Maxout Networks (2013); Krizhevsky et al.
(2012) pool per map, overlapping 3×3/2; Flax's `pool` uses window 1 on the feature axis.
"""


def _orders(x, w) -> dict:
    """The same 3-D filter output computed by visiting the volume in different orders."""
    kd = w.shape[0]
    flip = (1, 2, 3)
    out = {"lax (XLA's loop order)": jconv.depth_sliding_conv(x, w, impl="lax"),
           "shift (one shifted window per tap)": jconv.depth_sliding_conv(x, w, impl="shift")}
    swapped = jconv.depth_sliding_conv(jnp.swapaxes(x, 1, 2), jnp.swapaxes(w, 1, 2), impl="lax")
    out["axes permuted: W before H"] = jnp.swapaxes(swapped, 2, 3)
    backwards = jconv.depth_sliding_conv(jnp.flip(x, (1, 2, 3)), jnp.flip(w, (0, 1, 2)),
                                         impl="lax")
    out["every axis visited backwards"] = jnp.flip(backwards, flip)
    depth = x.shape[-1] - kd + 1
    visit = np.random.default_rng(0).permutation(depth)
    slabs = {int(q): jconv.conv(x[..., q:q + kd], jnp.moveaxis(w, 0, 2), padding="VALID",
                                impl="lax") for q in visit}  # Type 2.2 over kd maps
    out["depth positions in random order (Type 2.2 per slab)"] = jnp.stack(
        [slabs[q] for q in range(depth)], axis=1)
    xn, wn = np.asarray(x), np.asarray(w)
    kh, kw = wn.shape[1:3]
    h, wid = xn.shape[1] - kh + 1, xn.shape[2] - kw + 1
    acc = np.zeros((x.shape[0], depth, h, wid, wn.shape[-1]), np.float32)
    for u, t, v in np.random.default_rng(1).permutation(
            list(itertools.product(range(kd), range(kh), range(kw)))):
        window = np.moveaxis(xn[:, t:t + h, v:v + wid, u:u + depth], -1, 1)  # (N, D', H', W')
        acc += window[..., None] * wn[u, t, v]
    out["taps summed in random order (NumPy)"] = acc
    return out


def depth_filter(ctx: Context) -> str:
    """A 3-D filter sliding over the maps (the 1337-map question): its output shapes and
    counts. Long by design: one section's computations and text in reading order."""
    c = ctx.config
    x_shape = (1, c.depth_height, c.depth_width, c.depth_maps)
    w_shape = (*c.depth_filter, 1)
    shapes = [["VALID", 1, jconv.output_shape("depth_sliding_conv", x_shape, w_shape,
                                              padding="VALID")],
              ["SAME", 1, jconv.output_shape("depth_sliding_conv", x_shape, w_shape,
                                             padding="SAME")],
              ["VALID", c.depth_stride, jconv.output_shape(
                  "depth_sliding_conv", x_shape, w_shape, padding="VALID", stride=c.depth_stride)],
              ["SAME", c.depth_stride, jconv.output_shape(
                  "depth_sliding_conv", x_shape, w_shape, padding="SAME", stride=c.depth_stride)]]
    params = jconv.param_count("depth_sliding_conv", w_shape)
    kd, kh, kw = c.depth_filter
    full22 = cost.conv(x_shape, (kh, kw, c.depth_maps, 1), padding="VALID")
    rng = np.random.default_rng(c.seed)
    x = jnp.asarray(rng.integers(-2, 3, x_shape), jnp.float32)  # small integers: exact sums
    w = jnp.asarray(rng.integers(-2, 3, w_shape), jnp.float32)
    full = jax.jit(jconv.depth_sliding_conv)
    seconds = ctx.seconds({"part": "depth_filter", "shape": list(x_shape)}, full, x, w)
    y_full = full(x, w)
    part = x[..., :c.order_maps]
    exact = _orders(part, w)
    gauss = _orders(jax.random.normal(ctx.key("depth", "x"), part.shape),
                    jax.random.normal(ctx.key("depth", "w"), w_shape))
    ref_name = next(iter(exact))
    full_vs_slice = max_abs(y_full[:, :c.order_maps - kd + 1], exact[ref_name])
    diff_exact = {name: max_abs(exact[name], exact[ref_name]) for name in exact}
    diff_gauss = {name: max_abs(gauss[name], gauss[ref_name]) for name in gauss}
    rows = [[name, f"{diff_exact[name]:.3g}", f"{diff_gauss[name]:.3g}"] for name in exact]
    ctx.figures["depth_filter"] = {
        "shapes": {f"{p} stride {s}": list(o) for p, s, o in shapes}, "params": params,
        "params_type2_2": full22.params, "full_output_shape": list(y_full.shape),
        "full_seconds": seconds, "full_vs_slice_max_abs": full_vs_slice,
        "order_max_abs_exact": diff_exact, "order_max_abs_gaussian": diff_gauss}
    return f"""## 7. A 3-D filter over 1337 maps of 42×314

Read the {c.depth_maps} maps of {c.depth_height}×{c.depth_width} as one volume of depth
{c.depth_maps} and slide one {kd}×{kh}×{kw} filter (depth × height × width) through it
(`jconv.depth_sliding_conv`, output `(N, D', H', W', K)`):

{table(["padding", "stride (depth, H, W)", "output shape"],
       [[p, s, "×".join(map(str, o[1:-1]))] for p, s, o in shapes])}

The filter has {kd}·{kh}·{kw} = {kd * kh * kw} weights + 1 bias = **{params}** parameters,
whatever the depth. As a Type 2.2 layer the same input needs a {kh}×{kw}×{c.depth_maps}
kernel: {full22.params:,} parameters for one output map, whose output is a single
{'×'.join(map(str, full22.output_shape[1:3]))} map (VALID) instead of a volume.

The full {c.depth_maps}-map volume ran once with `impl="auto"`: output
{'×'.join(map(str, y_full.shape))}, {seconds:.2f} s ({c.repeats} calls, median).
**Traversal order does not matter**: every output is the sum over its own window, so
visiting positions, axes or taps in any order gives the same numbers. On the first
{c.order_maps} maps (the full run agrees with it there to {full_vs_slice:.3g}), max abs
difference from the first row:

{table(["order", "small-integer data (exact in float32)", "Gaussian data (float32 rounding)"],
       rows)}

With integer data every partial sum is exact, so any difference would be a real order
dependence: there is none. With Gaussian data the sums are rounded in a different order,
which moves the last bits only.
"""
