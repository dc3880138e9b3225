"""Width × variant scaling of `googlenet` on the digits, trained at 64×64.

Every conv variant (standard, grouped, Type 1 per-map, Type 2.1 shared-filter,
depthwise-separable) at widths 0.25, 0.5 and 1: params, MACs, train-step time,
images/s and test accuracy (about 25 minutes on 2 CPU cores; `:smoke` seconds)::

    jconv run configs/scaling_googlenet.py
    jconv run configs/scaling_googlenet.py:smoke
    jconv run configs/scaling_googlenet.py --config.widths='(0.25, 0.5, 1.0, 2.0)' --config.steps=300
"""

import ml_collections


def get_config(arg=None):
    if arg not in (None, "smoke"):
        raise ValueError(f"configs/scaling_googlenet.py: arg={arg!r}; expected None or 'smoke'")
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.experiment = "scaling"
    config.model = "googlenet"
    config.input_size = 32 if smoke else 64  # the digits (8x8) resized
    config.in_channels = 1
    config.variants = (("standard",) if smoke else
                       ("standard", "grouped", "per_map", "shared_filter", "separable"))
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
    config.lock()
    return config
