"""The scaling study: test error against training compute for every conv variant, laws judged by
extrapolation, intervals from the bootstrap (:mod:`experiments.scaling_study`).

The 2012 AlexNet at 67×67 (the smallest input its table fits) with BatchNorm, every conv variant
(built-in and registered) at three widths, each trained at four doubling horizons branched off
constant-rate runs (the rate chosen per horizon), the standard conv at five more (a factor √2
apart, to 5,120 steps) and with two more seeds to 2,560 steps (at the rates the first chose; a
point is the mean of its seeds), on procedural images that never repeat within a run::

    jconv run configs/scaling_study.py                       # into runs/scaling_study
    jconv run configs/scaling_study.py:smoke --workdir /tmp/study
    jconv run configs/scaling_study.py:gpu                   # both families, ≥ 3 decades, one GPU
    jconv run configs/scaling_study.py:paper                 # the papers' recipe: LRN, momentum SGD
    jconv run configs/scaling_study.py --config.seeds='(0, 1)' --config.horizons='(160, 320, 640)'

On CIFAR-10 (the python-version folder; images upsampled to each model's input, pad-4 crop and
flip) or a folder of images (``DIR/train/CLASS/*.png``, ``DIR/val/CLASS/*.png``), streamed
through grain with epochs::

    jconv run configs/scaling_study.py --config.dataset=cifar10 --config.data_dir=DIR/cifar-10-batches-py
    jconv run configs/scaling_study.py --config.dataset=image_folder --config.data_dir=DIR

On several processes of this machine, each with its share of every batch (the batch must divide
by the devices)::

    jconv launch --processes 2 -- jconv run configs/scaling_study.py --workdir runs/study2

The report (``configs/report.py``) shows the results when they are in ``WORKDIR/scaling_study``.
"""

import ml_collections

from experiments.scaling_study import check  # check(config): the settings, before any writing
from experiments.scaling_study import run  # run(config, workdir): what this runs
from experiments.scaling_study.runs import TREATMENTS

ARGS = (None, "smoke", "gpu", "paper")


def get_config(arg=None):
    if arg not in ARGS:
        raise ValueError(f"arg={arg!r}; expected one of {ARGS}")
    smoke, gpu = arg == "smoke", arg == "gpu"
    config = ml_collections.ConfigDict()
    config.models = ("alexnet", "googlenet") if gpu else ("alexnet",)
    config.input_sizes = ml_collections.ConfigDict({"alexnet": 67, "googlenet": 32})
    config.variants = ("standard", "shared_filter") if smoke else ()  # (): every variant
    # Not 1/32: with 3 maps in its first layer it trains erratically (three seeds spread by
    # 0.09–0.10 error at 640–1,280 steps; rate 0.05 stayed at chance), and its points were most
    # of the standard conv's misfit.
    config.widths = ((0.0625, 0.125) if smoke else (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0) if gpu
                     else (0.0625, 0.125, 0.25))
    config.seeds = (0,)  # each with its own learning-rate sweep
    # More seeds of some variants, each trained at the rates the first seed chose (no sweep of its
    # own); a point of the laws is the mean error of its seeds. The targets are the standard
    # conv's, and one seed's spread at the short horizons is most of its fit's scatter.
    config.repeats = ml_collections.ConfigDict()
    config.repeats.variants = () if smoke else ("standard",)
    config.repeats.seeds = () if smoke else (1, 2)
    # (): every horizon of the variant. Seeds differ most at the shortest horizons (the standard
    # conv at width 3/8 and 320 steps: 0.28–0.41 error over three seeds; at 2,560: 0.132–0.137).
    config.repeats.horizons = () if gpu or smoke else (320, 448, 640, 896, 1280, 1792, 2560)
    # Horizons in steps (doubling); each is a branch that cools down over its last
    # cooldown_fraction, off one constant-rate run per model.
    config.horizons = (10, 20, 40) if smoke else (320, 640, 1280, 2560, 5120) if gpu else (320, 640, 1280, 2560)
    # More horizons for some variants, among and after config.horizons: the targets are the
    # standard conv's, whose frontier gets twice the points (a factor √2 apart) and a top that
    # is not starved of data. Where no run trains longer than the widest model's, the frontier's
    # top is set by the horizon, not by compute (widths 1/4 and 3/8 both gave 0.134 error at
    # 2,560 steps, 3/8 at 5,120 0.121), and no law fitted below it extrapolates there.
    config.more_horizons = ml_collections.ConfigDict()
    config.more_horizons.variants = () if gpu or smoke else ("standard",)
    config.more_horizons.horizons = () if gpu or smoke else (448, 896, 1792, 3584, 5120)
    config.cooldown_fraction = 0.2
    config.warmup_steps = 4 if smoke else 64
    # The learning rate of each (variant, width, seed) and horizon, judged on the validation set:
    # every one of these at the shortest horizon, then at each longer horizon the rate chosen at
    # the one before and the next lower rate.
    config.learning_rates = (0.05, 0.2) if smoke else (0.025, 0.05, 0.1)
    # Data: the procedural set (never repeating: one pool of h_max·batch images), or any name
    # of jconv.data.open_dataset (CIFAR and image folders stream through grain, with epochs).
    config.dataset = "procedural"
    config.data_dir = ""
    config.in_channels = 0  # 0: the data's own
    config.num_classes = 10  # procedural only
    config.difficulty = 0.3  # procedural only
    # procedural only: the share of labels (train and test) that name another class, a known
    # irreducible error for the laws' floors to recover (0: none).
    config.label_noise = 0.1
    config.validation_size = 64 if smoke else 2000  # procedural only
    config.test_size = 64 if smoke else 5000  # procedural only
    config.render_workers = 2
    config.seed = 0
    config.data_workers = 0
    # The recipe, the same for every run.
    config.norm = "batch"
    config.batch_size = 8 if smoke else 64
    config.optimizer = "sgd"
    config.momentum = 0.9
    config.nesterov = True
    config.weight_decay = 5e-4
    config.label_smoothing = 0.1
    config.ema_decay = 0.0
    config.dtype = "float32"
    config.log_every = 5 if smoke else 64
    config.checkpoint_every = 0 if smoke else 256
    # A longer run of the largest width of one variant: did the longest horizon train enough?
    config.reference = ml_collections.ConfigDict()
    config.reference.variant = "standard"  # "": none
    config.reference.factor = 2
    # Type 2.1 against the standard conv under other training, at the shortest horizon.
    config.controls = ml_collections.ConfigDict()
    config.controls.width = 0.0625 if smoke else 0.25
    config.controls.variants = ("standard", "shared_filter")
    config.controls.treatments = ("as_studied", "init_sum") if smoke else tuple(TREATMENTS)
    # The analysis.
    config.bootstrap = 50 if smoke else 1000
    config.fit_workers = 1 if smoke else 2  # processes for the fits (the numbers do not depend on it)
    # L-BFGS-B runs per full fit of a law, from the grid points of lowest objective (of 9–162 per
    # form). The smoke run's errors sit near chance, where most starts run to the iteration limit.
    config.fit_starts = 4 if smoke else 24
    config.holdout_fraction = 0.25  # laws are fitted on compute ≤ this share of the largest
    if arg == "paper":
        config.norm = "paper"
        config.nesterov = False
        config.label_smoothing = 0.0
        config.learning_rates = (0.005, 0.01, 0.02)
    config.lock()
    return config
