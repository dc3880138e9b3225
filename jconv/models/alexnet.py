"""AlexNet as published (Krizhevsky, Sutskever & Hinton 2012) and as torchvision ships it.

``alexnet``: the 2012 two-tower network, 227×227×3 input (the paper's "224" does not give
its 55×55 conv1 output; Caffe's reference uses 227). The two GPUs are expressed as
``groups=2``: a conv whose towers do not exchange maps sees only the 48 (or 192) maps of
its own tower, hence conv2's 256 kernels of 5×5×48.

=========  ===========================  ======  ===========  ============
layer      kernels                      groups  stride, pad  output
=========  ===========================  ======  ===========  ============
conv1      96 of 11×11×3                1       4, VALID     55×55×96
lrn1, pool1 (3×3/2)                                          27×27×96
conv2      256 of 5×5×48                2       1, 2         27×27×256
lrn2, pool2 (3×3/2)                                          13×13×256
conv3      384 of 3×3×256               1       1, 1         13×13×384
conv4      384 of 3×3×192               2       1, 1         13×13×384
conv5      256 of 3×3×192               2       1, 1         13×13×256
pool5 (3×3/2)                                                6×6×256
fc6, fc7   4096, 4096 (ReLU, dropout 0.5 after each)
fc8        classes
=========  ===========================  ======  ===========  ============

``alexnet_single_tower``: torchvision's ``alexnet`` (from "One weird trick", Krizhevsky
2014): 224 input, channels 64, 192, 384, 256, 256, no LRN, no groups, an adaptive
average pool to 6×6 (PyTorch's bins, for any grid size), dropout before fc6 and fc7.
"""

from __future__ import annotations

LAYERS_2012 = (
    ("conv1", "conv", dict(features=96, kernel=11, stride=4, padding="VALID", relu=True)),
    ("lrn1", "lrn", {}),
    ("pool1", "max_pool", dict(window=3, stride=2)),
    ("conv2", "conv", dict(features=256, kernel=5, padding=2, groups=2, relu=True)),
    ("lrn2", "lrn", {}),
    ("pool2", "max_pool", dict(window=3, stride=2)),
    ("conv3", "conv", dict(features=384, kernel=3, padding=1, relu=True)),
    ("conv4", "conv", dict(features=384, kernel=3, padding=1, groups=2, relu=True)),
    ("conv5", "conv", dict(features=256, kernel=3, padding=1, groups=2, relu=True)),
    ("pool5", "max_pool", dict(window=3, stride=2)),
    ("flatten", "flatten", {}),
    ("fc6", "linear", dict(features=4096, relu=True)),
    ("dropout6", "dropout", dict(rate=0.5)),
    ("fc7", "linear", dict(features=4096, relu=True)),
    ("dropout7", "dropout", dict(rate=0.5)),
    ("fc8", "linear", dict(features=None)),
)

LAYERS_SINGLE_TOWER = (
    ("conv1", "conv", dict(features=64, kernel=11, stride=4, padding=2, relu=True)),
    ("pool1", "max_pool", dict(window=3, stride=2)),
    ("conv2", "conv", dict(features=192, kernel=5, padding=2, relu=True)),
    ("pool2", "max_pool", dict(window=3, stride=2)),
    ("conv3", "conv", dict(features=384, kernel=3, padding=1, relu=True)),
    ("conv4", "conv", dict(features=256, kernel=3, padding=1, relu=True)),
    ("conv5", "conv", dict(features=256, kernel=3, padding=1, relu=True)),
    ("pool5", "max_pool", dict(window=3, stride=2)),
    ("avgpool", "adaptive_avg_pool", dict(size=6)),
    ("flatten", "flatten", {}),
    ("dropout6", "dropout", dict(rate=0.5)),
    ("fc6", "linear", dict(features=4096, relu=True)),
    ("dropout7", "dropout", dict(rate=0.5)),
    ("fc7", "linear", dict(features=4096, relu=True)),
    ("fc8", "linear", dict(features=None)),
)

INPUT_SIZE = {"alexnet": 227, "alexnet_single_tower": 224}
