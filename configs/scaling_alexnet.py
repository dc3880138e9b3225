"""Width × variant scaling of the 2012 AlexNet, trained at 67×67 (the digits unless told otherwise).

Every conv variant (standard, grouped, Type 1 per-map, Type 2.1 shared-filter,
depthwise-separable) at widths 0.25, 0.5 and 1: params, MACs, train-step time, images/s
and test accuracy (about 15 minutes on 2 CPU cores; ``:smoke`` about a minute)::

    jconv run configs/scaling_alexnet.py
    jconv run configs/scaling_alexnet.py:smoke
    jconv run configs/scaling_alexnet.py --config.widths='(0.25, 0.5, 1.0, 2.0)' --config.steps=300

Any data set of ``jconv.data.open_dataset``, streamed with grain; CIFAR's 32×32 is upsampled to
67×67, then cropped and flipped as in the CIFAR recipe (``:smoke`` on a folder of a few hundred
images: under a minute)::

    jconv run configs/scaling_alexnet.py --config.dataset=cifar10 --config.data_dir=DIR/cifar-10-batches-py
    jconv run configs/scaling_alexnet.py:smoke --config.dataset=image_folder --config.data_dir=DIR
    jconv run configs/scaling_alexnet.py --config.dataset=procedural --config.train_size=20000

67 is the smallest input AlexNet's table fits (conv1 11×11/4, three 3×3/2 pools).
"""

import ml_collections

from experiments.scaling import check, run  # run(config, workdir), check(config)


def get_config(arg=None):
    if arg not in (None, "smoke"):
        raise ValueError(f"arg={arg!r}; expected None or 'smoke'")
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.model = "alexnet"
    config.dataset = "digits"
    config.data_dir = ""
    config.input_size = 67 if smoke else 67
    config.in_channels = 0  # 0: the data's own
    config.train_size = 256 if smoke else 0  # 0: the data set's own
    config.test_size = 64 if smoke else 0
    config.data_workers = 0
    config.variants = ("standard",) if smoke else ("standard", "grouped", "per_map", "shared_filter", "separable")
    config.widths = (0.125, 0.25) if smoke else (0.25, 0.5, 1.0)
    config.steps = 2 if smoke else 150
    config.batch_size = 8 if smoke else 32
    config.learning_rate = 1e-3
    config.optimizer = "adam"
    config.schedule = "constant"
    config.warmup_steps = 0
    config.log_every = 1 if smoke else 10
    config.checkpoint_every = 0 if smoke else 50
    config.seed = 0
    config.dtype = "float32"
    config.lock()
    return config
