"""Feature maps on a real photo: layer 1's k1 maps, layer 2 as Type 1 and as Type 2.2."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jconv
from experiments.report_sections import Context, pyplot


def camera(size: int, name: str = "camera") -> np.ndarray:
    """scikit-image's bundled grey image, resized to ``size``×``size``, in [0, 1]."""
    import skimage.data
    import skimage.transform

    image = getattr(skimage.data, name)().astype(np.float32) / 255.0
    return skimage.transform.resize(image, (size, size), anti_aliasing=True).astype(np.float32)


def _filters(key, shape) -> jax.Array:
    """Random filters, each with zero mean and unit norm (edge and texture detectors)."""
    w = jax.random.normal(key, shape)
    axes = tuple(range(w.ndim - 1))
    w = w - jnp.mean(w, axis=axes, keepdims=True)
    return w / jnp.sqrt(jnp.sum(w * w, axis=axes, keepdims=True))


def _grid(ctx: Context, maps: np.ndarray, rows: int, cols: int, titles, name: str,
          suptitle: str, row_labels=None) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.8 * rows + 0.5),
                             squeeze=False, constrained_layout=True)
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            ax.imshow(maps[i * cols + j], cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(titles[i * cols + j], fontsize=8)
            if row_labels is not None and j == 0:
                ax.set_ylabel(row_labels[i], fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    return ctx.save(fig, name)


def feature_maps(ctx: Context) -> str:
    c = ctx.config
    k1, k2, k, n = c.k1, c.k2, c.kernel2, c.photo_size
    image = camera(n, c.image)
    x = jnp.asarray(image)[None, :, :, None]  # (1, n, m, 1)
    w1 = _filters(ctx.key("photo", "w1"), (3, 3, 1, k1))
    h = jax.nn.relu(jconv.conv(x, w1))  # (1, n, m, k1)
    w2d = _filters(ctx.key("photo", "w2d"), (k, k, k2))
    w3d = _filters(ctx.key("photo", "w3d"), (k, k, k1, k2))
    type1 = jconv.per_map_conv(h, w2d)  # (1, n, m, k1*k2), map-major: c*k2 + j
    type22 = jconv.conv(h, w3d)  # (1, n, m, k2)

    def maps(y):  # (1, n, m, K) -> (K, n, m)
        return np.moveaxis(np.asarray(y[0]), -1, 0)

    f1 = _grid(ctx, np.concatenate([image[None], maps(h)]), 1, k1 + 1,
               ["input (camera)"] + [f"map {i}" for i in range(k1)], "photo_layer1.png",
               f"Layer 1: {k1} filters of 3×3 on the {n}×{n} grey image → {k1} maps (ReLU)")
    f2 = _grid(ctx, maps(type1), k1, k2, [f"filter {j}" for _ in range(k1) for j in range(k2)],
               "photo_type1.png",
               f"Layer 2 as Type 1: each of {k2} 5×5 filters on each of the {k1} maps → "
               f"{k1}×{k2} = {k1 * k2} maps", row_labels=[f"map {i}" for i in range(k1)])
    rows = 2 if k2 % 2 == 0 and k2 > 4 else 1
    f3 = _grid(ctx, maps(type22), rows, k2 // rows, [f"output {j}" for j in range(k2)],
               "photo_type22.png",
               f"Layer 2 as Type 2.2: {k2} filters of 5×5×{k1}, each summing over all {k1} "
               f"maps → {k2} maps")
    ctx.figures["photo"] = {"input_shape": list(x.shape), "layer1_shape": list(h.shape),
                            "type1_shape": list(type1.shape), "type2_2_shape": list(type22.shape)}
    return f"""## 8. Feature maps on a real photo

The question's n×m one-channel input is scikit-image's bundled `camera` image resized to
{n}×{n}. The filters are random (zero-mean, seeded), not trained: what the figures show is
how the maps are wired, not what a trained network detects.

![Layer 1 maps]({f1})

Layer 2 read as **Type 1**: row *i* is input map *i*, column *j* filter *j*; every
output sees one map only, so there are {k1 * k2} maps from {k2 * k * k} weights.

![Layer 2 as Type 1]({f2})

Layer 2 read as **Type 2.2** (what frameworks compute): each output map combines all {k1}
layer-1 maps through its own 5×5×{k1} kernel, {k2} maps from {k2 * k * k * k1} weights.

![Layer 2 as Type 2.2]({f3})
"""
