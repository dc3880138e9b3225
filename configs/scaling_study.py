"""The scaling study: test accuracy against compute for every conv variant, with seeds and fitted laws.

The 2012 AlexNet (at 67×67, the smallest input its table fits) and GoogLeNet (Inception v1, at
32×32) with every conv variant (built-in and registered) at four widths and two seeds, trained
on the procedural set (10 classes, difficulty 0.5, rendered once into memory) for the same
steps each; then Type 2.1 (shared filter) and the standard conv under other training. It
writes ``table.md``, ``summary.csv``, ``results.json`` and four plots
(:mod:`experiments.scaling_study`); a killed study resumes where it stopped::

    jconv run configs/scaling_study.py                       # into runs/scaling_study
    jconv run configs/scaling_study.py:smoke --workdir /tmp/study
    jconv run configs/scaling_study.py --config.seeds='(0, 1, 2)' --config.steps=600

On CIFAR-10 (the python-version folder; images upsampled to each model's input, pad-4 crop and
flip) or a folder of images (``DIR/train/CLASS/*.png``, ``DIR/val/CLASS/*.png``)::

    jconv run configs/scaling_study.py --config.dataset=cifar10 --config.data_dir=DIR/cifar-10-batches-py
    jconv run configs/scaling_study.py --config.dataset=image_folder --config.data_dir=DIR

On several processes of this machine, each with its share of every batch (the batch must divide
by the devices), and on a GPU (the same command; ``--config.dtype=bfloat16`` for its tensor
cores, wider models with ``--config.widths``)::

    jconv launch --processes 2 -- jconv run configs/scaling_study.py --workdir runs/study2
    jconv run configs/scaling_study.py --config.widths='(0.25, 0.5, 1.0, 2.0)' --config.dtype=bfloat16

The report (``configs/report.py``) shows the results when they are in ``WORKDIR/scaling_study``.
"""

import ml_collections

from experiments.scaling_study import run  # run(config, workdir): what this runs
from experiments.scaling_study.runs import TREATMENTS


def get_config(arg=None):
    if arg not in (None, "smoke"):
        raise ValueError(f"arg={arg!r}; expected None or 'smoke'")
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.models = ("alexnet",) if smoke else ("alexnet", "googlenet")
    config.input_sizes = ml_collections.ConfigDict({"alexnet": 67, "googlenet": 32})
    config.variants = ("standard", "shared_filter") if smoke else ()  # (): every variant
    config.widths = (0.0625, 0.125) if smoke else (0.0625, 0.125, 0.25, 0.5)
    config.seeds = (0, 1)
    # Data: any name of jconv.data.open_dataset; `seed` draws the generated sets.
    config.dataset = "procedural"
    config.data_dir = ""
    config.difficulty = 0.5  # procedural only
    config.in_channels = 0  # 0: the data's own
    config.train_size = 64 if smoke else 8192
    config.test_size = 32 if smoke else 2048
    config.seed = 0
    config.data_workers = 0
    # Training, the same for every run.
    config.steps = 2 if smoke else 300
    config.batch_size = 8 if smoke else 32
    config.learning_rate = 1e-3
    config.optimizer = "adam"
    config.schedule = "cosine"
    config.warmup_steps = 0
    config.log_every = 1 if smoke else 50
    config.checkpoint_every = 0 if smoke else 100
    config.dtype = "float32"
    # Type 2.1 or its training? Each variant under each treatment, every seed.
    config.controls = ml_collections.ConfigDict()
    config.controls.model = "alexnet"
    config.controls.width = 0.0625 if smoke else 0.25
    config.controls.variants = ("standard", "shared_filter")
    config.controls.treatments = ("as_studied", "init_sum") if smoke else tuple(TREATMENTS)
    config.lock()
    return config
