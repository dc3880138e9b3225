"""Width × variant scaling of the 2012 AlexNet on the digits, trained at 67×67.

Every conv variant (standard, grouped, Type 1 per-map, Type 2.1 shared-filter,
depthwise-separable) at widths 0.25, 0.5 and 1: params, MACs, train-step time, images/s
and test accuracy (about 15 minutes on 2 CPU cores; ``:smoke`` about a minute)::

    jconv run configs/scaling_alexnet.py
    jconv run configs/scaling_alexnet.py:smoke
    jconv run configs/scaling_alexnet.py --config.widths='(0.25, 0.5, 1.0, 2.0)' --config.steps=300

67 is the smallest input AlexNet's table fits (conv1 11×11/4, three 3×3/2 pools).
"""

from experiments.scaling import make_config, run  # run(config, workdir): what this runs


def get_config(arg=None):
    return make_config("alexnet", input_size=67, smoke_input_size=67, arg=arg)
