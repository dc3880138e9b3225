"""Einsum convolution kernels; see :mod:`jconv.kernels.einsum_conv`."""

from jconv.kernels.einsum_conv import patch_conv_general_dilated, shift_conv_general_dilated

__all__ = ["patch_conv_general_dilated", "shift_conv_general_dilated"]
