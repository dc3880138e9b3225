"""The evidence report: every answer to "how exactly do convolution layers work?" as a figure.

Writes ``WORKDIR/report/index.md``, a self-contained ``WORKDIR/report/index.html`` (PNG
figures beside them and embedded), and ``WORKDIR/report/figures.json`` (every key figure).

Run (a few minutes on 2 CPU cores; ``:smoke`` about a minute)::

    jconv run configs/report.py                       # into runs/report
    jconv run configs/report.py:smoke --workdir /tmp/report
    jconv run configs/report.py --config.quadratic.widths='(8, 16, 32, 64, 128)'
"""

import importlib.util
from pathlib import Path

import ml_collections

from experiments import quadratic_cost, report


def check(config) -> None:
    """The report's settings, then the quadratic-cost experiment's (``--config.quadratic.*``)."""
    report.check(config)
    quadratic_cost.check(config.quadratic, prefix="--config.quadratic.")


def run(config, workdir) -> dict:
    """The quadratic-cost experiment into ``WORKDIR/quadratic_cost``, then the report, which
    reads its results (experiments do not import one another)."""
    quadratic_cost.run(config.quadratic, Path(workdir) / "quadratic_cost")
    return report.run(config, workdir)


def _quadratic_config(smoke: bool) -> ml_collections.ConfigDict:
    """The quadratic-cost experiment's own config, reduced to run inside the report."""
    path = Path(__file__).resolve().parent / "quadratic_cost.py"
    spec = importlib.util.spec_from_file_location("jconv_config_quadratic_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke" if smoke else None)
    config.unlock()
    if smoke:  # three widths give a two-point fit over the upper half
        config.widths = (2, 4, 8)
        config.variants = ("type1", "type2_2")
    else:
        config.widths = (8, 16, 32, 64)
        config.height, config.width = 16, 24
        config.min_call_s = 0.01
        config.peak_size = 1024
    return config


def get_config(arg=None):
    if arg not in (None, "smoke"):
        raise ValueError(f"arg={arg!r}; expected None or 'smoke'")
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.seed = 0
    # The question: layer 1 has k1 filters on an n×m grey image, layer 2 k2 filters of 5×5.
    config.k1 = 4
    config.k2 = 8
    config.kernel2 = 5
    config.image = "camera"  # scikit-image's bundled grey image
    config.photo_size = 96 if smoke else 192  # the n×m input of the feature-map figures
    config.evidence_size = 16  # n = m of the small random inputs of the numerical checks
    # GoogLeNet: a printed figure is flagged when |printed - computed| / computed exceeds this.
    config.mismatch_threshold = 0.10
    # MobileNet's cost ratio: one separable layer vs one full conv, timed.
    config.mobilenet_size = 14 if smoke else 28
    config.mobilenet_maps = 128 if smoke else 256
    config.mobilenet_kernel = 3
    config.repeats = 3 if smoke else 7
    # The 3-D filter over 1337 maps of 42×314: the full stack once with impl="auto", and
    # the traversal orders compared on the first `order_maps` maps.
    config.depth_maps = 1337
    config.depth_height = 42
    config.depth_width = 314
    config.depth_filter = (3, 4, 5)
    config.depth_stride = (2, 2, 3)
    config.order_maps = 16 if smoke else 64
    # The quadratic-cost experiment, run into WORKDIR/quadratic_cost (its keys as there).
    config.quadratic = _quadratic_config(smoke)
    # The scaling study's results (configs/scaling_study.py): read from this folder if given,
    # else from WORKDIR/scaling_study, else from runs/scaling_study (the study's default work
    # directory); the section says how to make them when there are none.
    config.study_dir = ""
    config.lock()
    return config
