"""MobileNet v1 (Howard et al. 2017), Table 1, with width multiplier α and resolution.

A 3×3 stride-2 conv with 32 filters, then 13 depthwise-separable blocks, each a 3×3
depthwise conv (BatchNorm, ReLU) and a 1×1 pointwise conv (BatchNorm, ReLU), given as the
paper's (stride, output maps); global average pool; fully connected classifier. Convs have
no bias (BatchNorm follows), SAME padding (TensorFlow's). The paper's Table 1 prints the
last depthwise conv as stride 2, but its input and output are both 7×7: it is stride 1
here, as in every released implementation.

Names follow Keras' ``MobileNet``: ``conv1``, ``conv1_bn``, then ``conv_dw_{i}``,
``conv_dw_{i}_bn``, ``conv_pw_{i}``, ``conv_pw_{i}_bn`` for block ``i = 1..13``. With a
conv variant other than ``standard``/``separable``, block ``i`` is instead the variant's
layer in place of the 3×3 conv it factorises, ``conv_{i}`` and ``conv_{i}_bn`` (see
:mod:`jconv.nn.variants`).
"""

from __future__ import annotations

STEM = (
    ("conv1", "conv", dict(features=32, kernel=3, stride=2, use_bias=False)),
    ("conv1_bn", "batch_norm", dict(relu=True)),
)

#        (stride, output maps) of the 13 depthwise-separable blocks
BLOCKS = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
          (1, 512), (1, 512), (1, 512), (1, 512), (1, 512),
          (2, 1024), (1, 1024))

HEAD = (
    ("pool", "global_avg_pool", {}),
    ("fc", "linear", dict(features=None)),
)

PAPER_BLOCK_VARIANTS = ("standard", "separable")


def block(i: int, stride: int, features: int, variant: str):
    """The rows of block ``i``: the paper's separable block, or a variant's 3×3 conv."""
    if variant in PAPER_BLOCK_VARIANTS:
        return (
            (f"conv_dw_{i}", "depthwise", dict(kernel=3, stride=stride, use_bias=False)),
            (f"conv_dw_{i}_bn", "batch_norm", dict(relu=True)),
            (f"conv_pw_{i}", "pointwise", dict(features=features, use_bias=False)),
            (f"conv_pw_{i}_bn", "batch_norm", dict(relu=True)),
        )
    return (
        (f"conv_{i}", "conv", dict(features=features, kernel=3, stride=stride,
                                   use_bias=False)),
        (f"conv_{i}_bn", "batch_norm", dict(relu=True)),
    )


def layers(variant: str):
    return STEM + sum((block(i, s, k, variant) for i, (s, k) in enumerate(BLOCKS, 1)),
                      ()) + HEAD


INPUT_SIZE = 224
