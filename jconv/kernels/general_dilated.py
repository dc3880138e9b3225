"""Every kernel with exactly the ``lax.conv_general_dilated`` signature, so ``flax.nnx.Conv(...,
conv_general_dilated=shift_conv_general_dilated)`` runs on it: ``shift`` and ``patches``
(:mod:`jconv.kernels.einsum_conv`), ``split`` and ``hybrid`` (:mod:`jconv.kernels.lax_conv`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jconv.kernels.einsum_conv import patch_conv, shift_conv
from jconv.kernels.lax_conv import hybrid_conv, split_conv
from jconv.kernels.window import extent

__all__ = ["shift_conv_general_dilated", "patch_conv_general_dilated", "split_conv_general_dilated",
           "hybrid_conv_general_dilated"]


def _to_channels_last(lhs, rhs, dimension_numbers):
    dnums = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    lhs_spec, rhs_spec, out_spec = dnums
    x = jnp.transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1]))  # (N, *S, C)
    w = jnp.transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))  # (*k, I, O)
    # Output axis j of the channels-last result lands at position order[j].
    order = (out_spec[0], *out_spec[2:], out_spec[1])
    inverse = tuple(sorted(range(len(order)), key=order.__getitem__))
    return x, w, inverse


def _lax_signature(core):
    def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                             rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                             batch_group_count=1, precision=None, preferred_element_type=None,
                             out_sharding=None):
        if batch_group_count != 1:
            raise NotImplementedError(
                f"{core.__name__}: batch_group_count={batch_group_count}; only 1 is supported")
        if out_sharding is not None:
            raise NotImplementedError(
                f"{core.__name__}: out_sharding={out_sharding!r}; only None is supported")
        x, w, inverse = _to_channels_last(lhs, rhs, dimension_numbers)
        nd = x.ndim - 2
        lhs_dilation = tuple(lhs_dilation or (1,) * nd)
        rhs_dilation = tuple(rhs_dilation or (1,) * nd)
        if isinstance(padding, str):
            if any(d != 1 for d in lhs_dilation):
                raise ValueError(f"{core.__name__}: string padding={padding!r} with "
                                 f"lhs_dilation={lhs_dilation}; give explicit (low, high) pairs")
            extents = list(map(extent, w.shape[:-2], rhs_dilation))
            padding = lax.padtype_to_pads(x.shape[1:-1], extents, window_strides, padding)
        y = core(x, w, tuple(window_strides), tuple(map(tuple, padding)), rhs_dilation,
                 feature_group_count, lhs_dilation, precision, preferred_element_type)
        return jnp.transpose(y, inverse)

    conv_general_dilated.__name__ = f"{core.__name__}_general_dilated"
    conv_general_dilated.__qualname__ = conv_general_dilated.__name__
    conv_general_dilated.__doc__ = (
        f"``lax.conv_general_dilated`` computed by :func:`{core.__name__}`.\n\n"
        "Same arguments and result as ``jax.lax.conv_general_dilated``;\n"
        "``batch_group_count`` must be 1 and ``out_sharding`` None.\n\n"
        ">>> import jax.numpy as jnp\n"
        ">>> from jax import lax\n"
        ">>> x, w = jnp.ones((1, 2, 5, 5)), jnp.ones((3, 2, 3, 3))  # NCHW, OIHW\n"
        f">>> y = {core.__name__}_general_dilated(x, w, (1, 1), 'SAME')\n"
        ">>> bool(jnp.allclose(y, lax.conv_general_dilated(x, w, (1, 1), 'SAME')))\n"
        "True\n")
    return conv_general_dilated


shift_conv_general_dilated = _lax_signature(shift_conv)
patch_conv_general_dilated = _lax_signature(patch_conv)
split_conv_general_dilated = _lax_signature(split_conv)
hybrid_conv_general_dilated = _lax_signature(hybrid_conv)
