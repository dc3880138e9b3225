"""The quadratic cost of widening two chained convolutions (GoogLeNet, section 1), counted and timed.

The question's own setup: an n×m grey image, layer 1 a 3×3 conv with k1 filters, layer 2 a
5×5 layer with k2 filters, SAME padding, for each reading of layer 2 (Type 1, Type 2.1,
Type 2.2, depthwise-separable, and Type 2.2 after an Inception-style 1×1 reduction). Sweep
(a) widens both layers (k1 = k2 = k), sweep (b) widens layer 2 only (k1 fixed). Wall time
is measured where arithmetic dominates: a batch per point so that every call does the same
work (at least ``min_call_s`` at this machine's peak, measured in the run), one fixed kernel
per curve, ``repeats`` interleaved samples (more, up to ``max_repeats``, on a curve whose slope
interval is wide); each slope gets a bootstrap interval and a verdict.

Run (5 minutes on 2 CPU cores shared with other jobs, load 6–8; ``:smoke`` about 30 s)::

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
    config.widths = (4, 8) if smoke else (8, 16, 32, 64, 128, 256)
    config.fixed_k1 = 4 if smoke else 16  # layer 1's width in sweep (b)
    config.variants = VARIANTS
    config.reduce_ratio = 0.25  # bottleneck: 1×1 reduction to max(1, round(k1 * ratio)) maps
    config.kernel1 = 3
    config.kernel2 = 5
    config.repeats = 3 if smoke else 7  # interleaved samples per point, after one warm-up call
    # A curve whose slope interval is wider than 0.25 (verdicts.RETIME_INTERVAL) is timed
    # again, repeats rounds at a time, up to this many samples a point.
    config.max_repeats = 3 if smoke else 21
    # Batch per point: each call does the FLOPs of min_call_s at the measured peak, so no call
    # is shorter; a call's arrays stay under max_call_bytes (else a smaller batch, said so).
    config.min_call_s = 0.001 if smoke else 0.02
    config.max_call_bytes = 2**31
    # The peaks, measured in the run: a peak_size² float32 matmul, 3×3 convs of batch 8 on
    # (size, maps) (oneDNN where it is built; the best counts), the sum of peak_bytes of floats
    # (the memory bandwidth).
    config.peak_size = 256 if smoke else 2048
    config.peak_convs = ((8, 16),) if smoke else ((56, 64), (28, 128))
    config.peak_bytes = 2**22 if smoke else 2**28
    config.n_resamples = 200 if smoke else 2000  # bootstrap resamples of each slope
    config.lock()
    return config
