"""The quadratic cost of widening two chained convolutions (GoogLeNet, section 1).

The question's own setup: an n×m grey image (a batch of B), layer 1 a 3×3 conv with
k1 filters, layer 2 a 5×5 layer with k2 filters, SAME padding, for each reading of
layer 2 (Type 1, Type 2.1, Type 2.2, depthwise-separable, and Type 2.2 after an
Inception-style 1×1 reduction). Sweep (a) widens both layers (k1 = k2 = k), sweep (b)
widens layer 2 only (k1 fixed).

Run (about 3 minutes on 2 CPU cores; ``:smoke`` takes seconds)::

    jconv run configs/quadratic_cost.py
    jconv run configs/quadratic_cost.py:smoke --workdir /tmp/qc
    jconv run configs/quadratic_cost.py --config.repeats=9 --config.widths='(8, 16, 32)'
"""

import ml_collections

from experiments.quadratic_cost import check, run  # run(config, workdir), check(config)

VARIANTS = ("type1", "type2_1", "type2_2", "separable", "bottleneck")


def get_config(arg=None):
    if arg not in (None, "smoke"):
        raise ValueError(f"arg={arg!r}; expected None or 'smoke'")
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.image = "camera"  # scikit-image's bundled grey image, resized to height×width
    config.height = 8 if smoke else 24
    config.width = 12 if smoke else 32
    config.batch = 2  # the image and its mirror image
    config.widths = (4, 8) if smoke else (8, 16, 32, 64, 128, 256)
    config.fixed_k1 = 4 if smoke else 16  # layer 1's width in sweep (b)
    config.variants = VARIANTS
    config.reduce_ratio = 0.25  # bottleneck: 1×1 reduction to max(1, round(k1 * ratio)) maps
    config.kernel1 = 3
    config.kernel2 = 5
    config.repeats = 1 if smoke else 3  # timed calls after one warm-up call; median reported
    # Measure wall time only where layer 2's output has at most this many elements
    # (Type 1 at k1 = k2 = 256 would produce k1·k2 = 65,536 maps); the analytic and
    # XLA counts are recorded for every width.
    config.max_output_elements = 2**25
    config.lock()
    return config
