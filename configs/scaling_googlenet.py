"""Width × variant scaling of GoogLeNet (Inception v1), trained at 64×64 (the digits unless told otherwise).

Every conv variant (standard, grouped, Type 1 per-map, Type 2.1 shared-filter,
depthwise-separable) at widths 0.25, 0.5 and 1: params, MACs, train-step time, images/s
and test accuracy (about 25 minutes on 2 CPU cores; ``:smoke`` about a minute, at 32×32)::

    jconv run configs/scaling_googlenet.py
    jconv run configs/scaling_googlenet.py:smoke
    jconv run configs/scaling_googlenet.py --config.variants='("standard", "separable")'

Any data set of ``jconv.data.open_dataset``: ``--config.dataset=cifar10|cifar100|image_folder``
with ``--config.data_dir=PATH`` (checked before training), or ``procedural``, ``digits``,
``textures``, ``synthetic``; images are resized to ``config.input_size``::

    jconv run configs/scaling_googlenet.py --config.dataset=cifar100 --config.data_dir=DIR/cifar-100-python
"""

import ml_collections

from experiments.scaling import check, run  # run(config, workdir), check(config)


def get_config(arg=None):
    if arg not in (None, "smoke"):
        raise ValueError(f"arg={arg!r}; expected None or 'smoke'")
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.model = "googlenet"
    config.dataset = "digits"
    config.data_dir = ""
    config.input_size = 32 if smoke else 64
    config.in_channels = 0  # 0: the data's own
    config.train_size = 256 if smoke else 0  # 0: the data set's own
    config.test_size = 64 if smoke else 0
    config.data_workers = 0
    config.variants = ("standard",) if smoke else ("standard", "grouped", "per_map", "shared_filter", "separable")
    config.widths = (0.125,) if smoke else (0.25, 0.5, 1.0)  # GoogLeNet compiles for half a minute a width
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
