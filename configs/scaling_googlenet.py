"""Width × variant scaling of GoogLeNet (Inception v1) on the digits, trained at 64×64.

Every conv variant (standard, grouped, Type 1 per-map, Type 2.1 shared-filter,
depthwise-separable) at widths 0.25, 0.5 and 1: params, MACs, train-step time, images/s
and test accuracy (about 25 minutes on 2 CPU cores; ``:smoke`` about a minute, at 32×32)::

    jconv run configs/scaling_googlenet.py
    jconv run configs/scaling_googlenet.py:smoke
    jconv run configs/scaling_googlenet.py --config.variants='("standard", "separable")'
"""

from experiments.scaling import make_config, run  # run(config, workdir): what this runs


def get_config(arg=None):
    return make_config("googlenet", input_size=64, smoke_input_size=32, arg=arg)
