"""Speed of every convolution variant and pooling op: lax, every jconv kernel, auto, PyTorch.

For each case (a layer of AlexNet, GoogLeNet or MobileNet, see ``experiments/bench``)
and pass (forward; forward+backward), the median of ``repeats`` timed calls after
``warmup`` calls, for every ``impl`` the op has plus ``auto``, and PyTorch CPU when
``import torch`` works (``pip install .[bench]``). The matmul peak (a ``jnp.dot`` of
``peak_size``² fp32 matrices) is measured in the same run. Then issue 13's nine
convolutions at batch 8 against PyTorch (``lax``, ``onednn``, ``auto``; the dense 3×3
ones in bfloat16 too), and the training step of each of ``models`` at ``model_batch``
with ``impl="auto"`` against ``impl="lax"`` (``model_repeats`` samples each).

Run (about 5 minutes on 2 CPU cores, a tenth of it compiling the six model steps;
``:smoke`` about 45 seconds, half of it compiling the small AlexNet step twice; ``:gpu``
a short run for a GPU machine, see ``experiments/bench_gpu.sh``)::

    jconv run configs/bench.py
    jconv run configs/bench.py:smoke --workdir /tmp/bench
    jconv run configs/bench.py --config.cases='("depthwise_early", "grouped_late")'
"""

import ml_collections

from experiments.bench import check, run  # run(config, workdir), check(config)

ARGS = (None, "smoke", "gpu")
SMOKE_CASES = ("conv_late", "grouped_late", "depthwise_late", "conv_transpose", "max_pool_late",
               "mobilenet_block", "vs_3x3_28", "vs_dw_14")


def get_config(arg=None):
    if arg not in ARGS:
        raise ValueError(f"arg={arg!r}; expected one of {ARGS}")
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch = 1 if smoke else 8 if arg == "gpu" else 4
    # Smoke shrinks every case: spatial sizes and channel counts capped (kernels kept).
    config.max_size = 12 if smoke else 0  # 0: no cap
    config.max_channels = 8 if smoke else 0
    # Names from experiments/bench.py CASES; () runs all.
    config.cases = SMOKE_CASES if smoke else ()
    config.passes = ("fwd", "fwd_bwd")
    config.warmup = 1
    config.repeats = 1 if smoke else 5
    # A timed sample averages back-to-back calls until it lasts this long (0: one call).
    config.min_sample_s = 0.0 if smoke else 0.03
    config.peak_size = 256 if smoke else 1024
    config.torch = not smoke  # PyTorch CPU side by side when importable
    # Whole-model training steps, auto against lax: the papers' input sizes (0) at a small
    # batch; smoke: the smallest model, a quarter wide, at a reduced input size.
    # A model's name, or name:norm (alexnet:batch is the scaling study's BatchNorm AlexNet).
    config.models = ("alexnet",) if smoke else ("alexnet", "googlenet", "mobilenet_v1",
                                                "alexnet:batch")
    config.model_batch = 2 if smoke else 16
    config.model_input_size = 67 if smoke else 0  # 0: the paper's
    config.model_width = 0.25 if smoke else 1.0
    # Interleaved samples per model: a step of 0.4 s on a shared 2-core machine varies by
    # 20% from sample to sample, and a median of 3 moved a ratio from 0.92 to 1.18 between runs.
    config.model_repeats = 1 if smoke else 7
    # Where each step's time goes, from a profiler trace (categories of
    # experiments/bench/breakdown.py), for these implementations ("torch": PyTorch's step, where
    # PyTorch is installed).
    config.model_breakdown = ("auto", "torch")
    config.lock()
    return config
