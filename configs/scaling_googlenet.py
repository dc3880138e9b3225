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

from experiments.scaling import check, make_config, run  # run(config, workdir), check(config)


def get_config(arg=None):
    return make_config("googlenet", input_size=64, smoke_input_size=32, arg=arg)
