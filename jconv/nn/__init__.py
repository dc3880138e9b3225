"""Thin ``flax.nnx`` layers over the jconv ops, and the rule that swaps conv variants.

Letters: ``N`` batch, ``H W`` spatial, ``C`` input maps, ``K`` filters; activations
``(N, H, W, C)``, kernels ``H W I O``.
"""

from jconv.nn.layers import (Conv, DepthwiseConv, PerMapConv, PointwiseConv, SeparableConv,
                             SharedFilterConv, count_params, he_normal)
from jconv.nn.linear import Linear
from jconv.nn.norm import BatchNorm
from jconv.nn.op_layer import OpLayer
from jconv.nn.pooling import AdaptiveAvgPool, AvgPool, GlobalAvgPool, LocalResponseNorm, MaxPool
from jconv.nn.variants import VARIANTS, ConvSpec, check_variant, make_conv, variants

__all__ = [
    "AdaptiveAvgPool", "AvgPool", "BatchNorm", "Conv", "ConvSpec", "DepthwiseConv", "GlobalAvgPool",
    "Linear", "LocalResponseNorm", "MaxPool", "OpLayer", "PerMapConv", "PointwiseConv", "SeparableConv",
    "SharedFilterConv", "VARIANTS", "check_variant", "count_params", "he_normal", "make_conv",
    "variants",
]
