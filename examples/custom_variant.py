"""A new variant in one file: the shift convolution (Wu et al., 2018). Each group of maps
moves by one offset of a kh×kw grid (no multiply), then a 1×1 conv mixes the maps:
N*H'*W'*C*K MACs. Registering it gives the cost model, the checks, an NNX layer, every
model's variant swap, a benchmark row and a summary line: python examples/custom_variant.py
"""

import jax.numpy as jnp
import numpy as np
from jax import lax

import jconv
from jconv.ops import dispatch, registry


def offsets(kernel, c):  # (dy, dx) of each map; consecutive maps share one
    t = np.arange(c) * (kernel[0] * kernel[1]) // c
    return np.stack([t // kernel[1] - kernel[0] // 2, t % kernel[1] - kernel[1] // 2], 1)


def plan(x_shape, w_shape, *, stride=1, kernel=(3, 3)):
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"shift_conv: kernel={kernel}; expected odd sizes")
    return jconv.get("pointwise_conv").plan(x_shape, w_shape, stride=stride)


def shift_conv(x, w, stride=1, *, kernel=(3, 3), impl="auto", precision=None):
    """``y[n, p, k] = sum_c x[n, p*s + offset(c), c] w[c, k]``; x (N, H, W, C), w (C, K)."""
    p = plan(x.shape, w.shape, stride=stride, kernel=kernel)
    with dispatch.chosen("shift_conv", impl, p, x.shape) as impl:
        (ph, pw), (h, wd) = (k // 2 for k in kernel), x.shape[1:3]
        xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        moved = jnp.concatenate([xp[:, ph + dy:ph + dy + h, pw + dx:pw + dx + wd, c:c + 1]
                                 for c, (dy, dx) in enumerate(offsets(kernel, x.shape[-1]))], -1)
        if impl == "einsum":
            return jnp.einsum("nhwc,ck->nhwk", moved[:, ::stride, ::stride], w, precision=precision)
        return lax.conv_general_dilated(moved, w[None, None], (stride, stride), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)


def cost(x_shape, w_shape, *, stride=1, kernel=(3, 3), dtype="float32", bias=True):
    return jconv.cost.pointwise_conv(x_shape, w_shape, stride=stride, dtype=dtype, bias=bias)


def reference(x, w, stride=1, kernel=(3, 3)):
    x, (_, h, wd, c), moved = np.asarray(x, np.float64), x.shape, np.zeros(x.shape)
    for ch, (dy, dx) in enumerate(offsets(kernel, c)):
        for i in range(max(0, -dy), min(h, h - dy)):
            for j in range(max(0, -dx), min(wd, wd - dx)):
                moved[:, i, j, ch] = x[:, i + dy, j + dx, ch]
    return moved[:, ::stride, ::stride] @ np.asarray(w, np.float64)


registry.register(registry.OpSpec(
    "shift_conv", shift_conv, plan, ("lax", "einsum"), cost=cost, reference=reference,
    examples=((((2, 6, 6, 9), (9, 4)), {}), (((1, 7, 7, 5), (5, 6)), dict(stride=2, kernel=(3, 5)))),
    layer=registry.LayerForm(weights=lambda c, k, kernel: {"w": (c, k)},
                             op_kwargs=lambda kernel, stride, _: dict(stride=stride, kernel=kernel)),
    variant="shift"))

if __name__ == "__main__":
    import tempfile
    from pathlib import Path

    import jax
    from flax import nnx

    from experiments import bench
    from jconv import models, runner, summary, testing
    shapes = (8, 28, 28, 96), (96, 128)
    ours, xla = cost(*shapes).flops_in_bounds, jconv.cost.xla_cost("shift_conv", *shapes)
    print(f"cost: {ours:,} FLOPs, XLA {xla:,.0f}; auto: {jconv.which_impl('shift_conv', *shapes)}")
    assert ours == xla
    print(*testing.check_op("shift_conv"), sep="\n")
    layer = jconv.nn.OpLayer("shift_conv", 96, 128, 3, rngs=nnx.Rngs(0))
    print("layer:", layer(jnp.ones((2, 14, 14, 96))).shape, jconv.nn.count_params(layer), "params")
    for name in models.list_models():  # every model, and its `jconv summary` line
        model = nnx.eval_shape(lambda: models.build(name, variant="shift", rngs=nnx.Rngs(0)))
        x = jax.ShapeDtypeStruct((1, *model.input_shape), jnp.float32)
        rows, total = summary.summarize(name, variant="shift")
        line = summary.format_table([r for r in rows if r["op"] == "shift_conv"], total, "")
        print(f"{name}: logits {nnx.eval_shape(lambda m, x: m(x), model, x).shape};",
              line.splitlines()[3])
    config = runner.load("configs/bench.py:smoke")[0]
    with config.unlocked(), tempfile.TemporaryDirectory() as workdir:
        config.cases = ("shift_conv",)
        bench.run(config, Path(workdir))
