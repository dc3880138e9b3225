"""Padding modes: zeros, reflect, edge (replicate) and circular.

``lax`` convolutions pad with zeros only. Any other mode is applied to the input with
``jnp.pad`` first, and the convolution then runs unpadded.
"""

from __future__ import annotations

import jax.numpy as jnp

_NUMPY_MODE = {"reflect": "reflect", "edge": "edge", "circular": "wrap"}


def apply_mode(x, pads, mode: str, axes=None):
    """Pads ``x`` along ``axes`` (default: the spatial axes of ``(N, *S, C)``) unless ``mode`` is zeros.

    Returns:
      ``(x, pads)``: for ``"zeros"`` the input and ``pads`` unchanged, to be applied by
      the convolution itself; otherwise the padded input and all-zero pads.
    """
    if mode == "zeros" or not any(lo or hi for lo, hi in pads):
        return x, tuple(pads)
    axes = range(1, x.ndim - 1) if axes is None else axes
    width = [(0, 0)] * x.ndim
    for a, pad in zip(axes, pads):
        width[a] = tuple(pad)
    return jnp.pad(x, width, mode=_NUMPY_MODE[mode]), ((0, 0),) * len(pads)
