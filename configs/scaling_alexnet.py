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

from experiments.scaling import check, make_config, run  # run(config, workdir), check(config)


def get_config(arg=None):
    return make_config("alexnet", input_size=67, smoke_input_size=67, arg=arg)
