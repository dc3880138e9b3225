"""Convolution kernels built from ``lax`` convolutions.

* **split** — one ungrouped ``lax`` convolution per group on the group's slice of maps
  and filters, concatenated: XLA's CPU grouped convolution (``feature_group_count > 1``)
  is a slow path, its dense convolution is not.
* **hybrid** — ``lax`` forward and input gradient; the weight gradient by the shift
  algorithm (:func:`jconv.kernels.combine.differentiated_by`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jconv.kernels.combine import differentiated_by
from jconv.kernels.einsum_conv import channels_last_dnums, shift_conv

__all__ = ["split_conv", "hybrid_conv"]


def split_conv(x, w, stride, pads, dilation, groups=1, lhs_dilation=None, precision=None,
               preferred_element_type=None):
    """Channels-last grouped conv as ``groups`` dense ``lax`` convs, one per group."""
    dnums = channels_last_dnums(x.ndim - 2)
    xs = jnp.split(x, groups, axis=-1)  # G x (N, *S, C/G)
    ws = jnp.split(w, groups, axis=-1)  # G x (*k, C/G, K/G)
    ys = [lax.conv_general_dilated(xg, wg, stride, pads, lhs_dilation=lhs_dilation,
                                   rhs_dilation=dilation, dimension_numbers=dnums,
                                   precision=precision,
                                   preferred_element_type=preferred_element_type)
          for xg, wg in zip(xs, ws)]
    return ys[0] if groups == 1 else jnp.concatenate(ys, axis=-1)  # (N, *S', K)


def _lax_conv(x, w, stride, pads, dilation, groups, lhs_dilation, precision,
              preferred_element_type):
    return lax.conv_general_dilated(x, w, stride, pads, lhs_dilation=lhs_dilation,
                                    rhs_dilation=dilation,
                                    dimension_numbers=channels_last_dnums(x.ndim - 2),
                                    feature_group_count=groups, precision=precision,
                                    preferred_element_type=preferred_element_type)


def _bound(core, stride, pads, dilation, groups, lhs_dilation, precision,
           preferred_element_type):
    """``core`` as a function of ``(x, w)`` alone."""
    return lambda x, w: core(x, w, stride, pads, dilation, groups, lhs_dilation, precision,
                             preferred_element_type)


def hybrid_conv(x, w, stride, pads, dilation, groups=1, lhs_dilation=None, precision=None,
                preferred_element_type=None):
    """Channels-last grouped conv: ``lax`` forward, the weight gradient by shifted windows.

    The tangent's ``w`` term is :func:`shift_conv`, so reverse mode computes the weight
    gradient as one strided slice and ``(N*H'*W', C) x (N*H'*W', K)`` contraction per tap
    instead of XLA's CPU weight-gradient convolution, a slow path for 1×1 and ``k×1``
    kernels (about 6x and 2.5x slower). Forward and input gradient stay ``lax``.
    """
    static = (stride, pads, dilation, groups, lhs_dilation, precision, preferred_element_type)
    lax_conv = _bound(_lax_conv, *static)
    return differentiated_by(lax_conv, lax_conv, _bound(shift_conv, *static))(x, w)
