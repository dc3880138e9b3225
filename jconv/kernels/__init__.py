"""Convolution kernels with the ``lax.conv_general_dilated`` signature
(:mod:`jconv.kernels.general_dilated`): einsum kernels (:mod:`jconv.kernels.einsum_conv`) and
kernels built from ``lax`` convs (:mod:`jconv.kernels.lax_conv`); :mod:`jconv.kernels.lax_nans`
puts back the NaNs that ``lax`` makes from its own zeros and a non-finite weight;
:mod:`jconv.kernels.batch_norm` is batch normalisation's formula and hand-written reverse
mode (:class:`jconv.nn.BatchNorm`)."""

from jconv.kernels.general_dilated import (hybrid_conv_general_dilated, patch_conv_general_dilated,
                                       shift_conv_general_dilated, split_conv_general_dilated)

__all__ = ["hybrid_conv_general_dilated", "patch_conv_general_dilated",
           "shift_conv_general_dilated", "split_conv_general_dilated"]
