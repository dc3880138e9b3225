"""Einsum convolution kernels; see :mod:`jconv.kernels.einsum_conv`."""

from jconv.kernels.einsum_conv import (hybrid_conv_general_dilated, patch_conv_general_dilated,
                                       shift_conv_general_dilated, split_conv_general_dilated)

__all__ = ["hybrid_conv_general_dilated", "patch_conv_general_dilated",
           "shift_conv_general_dilated", "split_conv_general_dilated"]
