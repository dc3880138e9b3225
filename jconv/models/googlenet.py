"""GoogLeNet / Inception v1 (Szegedy et al. 2014), Table 1, 224×224×3 input.

Each Inception module is the paper's tuple (#1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5,
pool proj): four branches on the same input, concatenated on the maps. The 1×1
"reduce" convolutions shrink the depth before the 3×3 and 5×5 convolutions (the point of
1×1 convolutions here); the 5×5 branch is a real 5×5 (torchvision ships 3×3 there).
The pool branch is a 3×3 stride-1 max pool (SAME) and a 1×1 projection. LRN uses
AlexNet's constants. Every conv has a bias and a ReLU.

Auxiliary classifiers (``aux_classifiers=True``), after 4a and 4d as in the paper: 5×5/3
average pool, 1×1 conv with 128 filters, FC 1024, dropout 0.7, linear. In training the
model then returns ``(logits, aux1, aux2)``. They need a 4a grid of at least 5×5 (input
of 65×65 or more).
"""

from __future__ import annotations

STEM = (
    ("conv1", "conv", dict(features=64, kernel=7, stride=2, padding=3, relu=True)),
    ("pool1", "max_pool", dict(window=3, stride=2, padding="SAME")),
    ("lrn1", "lrn", {}),
    ("conv2_reduce", "conv", dict(features=64, kernel=1, relu=True)),
    ("conv2", "conv", dict(features=192, kernel=3, padding=1, relu=True)),
    ("lrn2", "lrn", {}),
    ("pool2", "max_pool", dict(window=3, stride=2, padding="SAME")),
)

#            #1x1 #3x3r #3x3 #5x5r #5x5 pool proj
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}

ORDER = ("3a", "3b", "pool3", "4a", "4b", "4c", "4d", "4e", "pool4", "5a", "5b")

HEAD = (
    ("pool5", "global_avg_pool", {}),
    ("dropout", "dropout", dict(rate=0.4)),
    ("fc", "linear", dict(features=None)),
)

AUX_HEAD = (
    ("pool", "avg_pool", dict(window=5, stride=3)),
    ("conv", "conv", dict(features=128, kernel=1, relu=True)),
    ("flatten", "flatten", {}),
    ("fc1", "linear", dict(features=1024, relu=True)),
    ("dropout", "dropout", dict(rate=0.7)),
    ("fc2", "linear", dict(features=None)),
)
AUX_TAPS = ("inception_4a", "inception_4d")


def _conv(features, kernel):
    return dict(features=features, kernel=kernel, relu=True)


def inception(n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj):
    """The rows of one Inception module: a ``concat`` of its four branches."""
    return dict(branches=(
        (("branch_1x1", "conv", _conv(n1x1, 1)),),
        (("branch_3x3_reduce", "conv", _conv(n3x3_reduce, 1)),
         ("branch_3x3", "conv", _conv(n3x3, 3))),
        (("branch_5x5_reduce", "conv", _conv(n5x5_reduce, 1)),
         ("branch_5x5", "conv", _conv(n5x5, 5))),
        (("branch_pool", "max_pool", dict(window=3, stride=1, padding="SAME")),
         ("branch_pool_proj", "conv", _conv(pool_proj, 1))),
    ))


LAYERS = STEM + tuple(
    (name, "max_pool", dict(window=3, stride=2, padding="SAME")) if name.startswith("pool")
    else (f"inception_{name}", "concat", inception(*INCEPTION[name]))
    for name in ORDER) + HEAD

INPUT_SIZE = 224
