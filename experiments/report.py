"""The evidence report: "how exactly do convolution layers work?", answered with figures.

Every number is computed when the report is built (the printed figures of the GoogLeNet
paper are the one quoted exception, labelled as such). The run writes
``WORKDIR/report/index.md``, ``index.html`` (self-contained: figures as data URIs),
``figures.json`` (every key figure, for tests and for citing) and the PNGs; the
quadratic-cost experiment runs into ``WORKDIR/quadratic_cost`` with its own store
(``configs/report.py`` runs it before the report, which reads its results), and the
timings of the report are kept in ``WORKDIR/measurements.jsonl``, so a rerun reuses them.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import jax

from experiments.report_sections import Context, table
from experiments.report_sections import evidence, html, networks, photo, study
from jconv.runner import ConfigError, Store, progress

TITLE = "How exactly do convolution layers work? The evidence, computed by jconv"

REFERENCES = """## 10. References

Papers:

- Krizhevsky, Sutskever & Hinton (2012). ImageNet Classification with Deep Convolutional
  Neural Networks. NeurIPS. [paper](https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks)
- Szegedy et al. (2014). Going deeper with convolutions (GoogLeNet). [arXiv:1409.4842](https://arxiv.org/abs/1409.4842)
- Lin, Chen & Yan (2013). Network in Network. [arXiv:1312.4400](https://arxiv.org/abs/1312.4400)
- Goodfellow, Warde-Farley, Mirza, Courville & Bengio (2013). Maxout Networks. [arXiv:1302.4389](https://arxiv.org/abs/1302.4389)
- Howard et al. (2017). MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications. [arXiv:1704.04861](https://arxiv.org/abs/1704.04861)

Framework documentation:

- [flax.nnx.Conv](https://flax.readthedocs.io/en/latest/api_reference/flax.nnx/nn/linear.html#flax.nnx.Conv)
- [jax.lax.conv_general_dilated](https://docs.jax.dev/en/latest/_autosummary/jax.lax.conv_general_dilated.html)
- [torch.nn.LocalResponseNorm](https://pytorch.org/docs/stable/generated/torch.nn.LocalResponseNorm.html)
- [Keras Conv2D](https://keras.io/api/layers/convolution_layers/convolution2d/)
- [scikit-image data.camera](https://scikit-image.org/docs/stable/api/skimage.data.html#skimage.data.camera)
"""


def _growth(slope: float) -> str:
    return "quadratic" if slope > 1.75 else "linear" if slope < 1.25 else "between"


QUADRATIC_HOW = "jconv run configs/quadratic_cost.py --workdir WORKDIR/quadratic_cost"


def quadratic_section(ctx: Context) -> str:
    """The quadratic-cost experiment's results, read from ``WORKDIR/quadratic_cost`` (where
    ``configs/report.py`` runs it first, in a reduced form): its own slope table, verdicts
    and plot."""
    config = ctx.config.quadratic
    subdir = ctx.workdir / "quadratic_cost"
    if not (subdir / "slopes.json").is_file():
        ctx.figures["quadratic_slopes"] = None
        return f"""## 5. The quadratic cost of widening

No results of the quadratic-cost experiment in `{subdir}`. Run it there, then build this
report again:

    {QUADRATIC_HOW}
"""
    result = json.loads((subdir / "slopes.json").read_text())
    plot = shutil.copy(subdir / "quadratic_cost.png", ctx.dir / "quadratic_cost.png")
    fitted, labels = {}, {}
    for r in result["rows"]:
        if r["kernel"] != "fixed":
            continue
        labels[r["sweep"]], labels[r["variant"]] = r["sweep_label"], r["label"]
        entry = fitted.setdefault(f"{r['sweep']}/{r['variant']}", {
            "flops": r["flops"], "xla_flops": r["xla_flops"], "bytes": r["bytes"],
            "kernels": r["kernels"]})
        entry[f"time_{r['pass']}"] = {**(r["fit"] or {}), "verdict": r["verdict"],
                                      "reason": r["reason"]}
    ctx.figures["quadratic_slopes"] = fitted
    ctx.figures["quadratic_peak"] = result["peak"]
    sweeps = dict.fromkeys(key.split("/")[0] for key in fitted)
    verdict = "; ".join(
        f"{labels[sweep]}: " + ", ".join(
            f"{labels[key.split('/')[1]]} {_growth(s['flops'])} ({s['flops']:.2f})"
            for key, s in fitted.items() if key.startswith(sweep + "/") and s["flops"])
        for sweep in sweeps)
    return f"""## 5. The quadratic cost of widening

GoogLeNet's section 1: "if two convolutional layers are chained, any uniform increase in
the number of their filters results in a quadratic increase of computation". The
quadratic-cost experiment (`experiments/quadratic_cost/`, run here in a reduced form:
{config.height}×{config.width} grey camera images, widths {', '.join(map(str, config.widths))})
widens layer 1 (3×3, k1 filters) and layer 2 (5×5, k2 filters) together (a) or layer 2
alone (b). By the analytic counts: {verdict}. A slope near 2 is quadratic, near 1 linear.

{(subdir / "slopes.md").read_text().strip()}

The full-size run is `bash scripts/run.sh` (`configs/quadratic_cost.py`); its table, with
every point, is `runs/quadratic_cost/table.md`.

![Quadratic cost, log-log]({Path(plot).name})
"""


SECTIONS = (
    ("which type", evidence.which_type),
    ("AlexNet", networks.alexnet_section),
    ("GoogLeNet", networks.googlenet_section),
    ("1×1 convolutions", evidence.one_by_one),
    ("quadratic cost", quadratic_section),
    ("pooling", evidence.pooling),
    ("3-D filter", evidence.depth_filter),
    ("feature maps", photo.feature_maps),
    ("scaling study", study.scaling_study),
)


def _intro(ctx: Context) -> str:
    c = ctx.config
    return f"""# {TITLE}

A conv layer after a first layer of k1 maps, with k2 filters of 5×5, could compute
**Type 1** (each 2-D filter on each map separately: k1·k2 maps), **Type 2.1** (one 2-D
filter slid over all maps and summed: k2 maps) or **Type 2.2** (one 3-D kernel of
5×5×k1 per output map: k2 maps). Every framework computes Type 2.2. Each section below
shows it with numbers computed by jconv when this page was built (seed {c.seed},
JAX {jax.__version__} on {jax.default_backend()}); no figure is typed in, except the
GoogLeNet paper's printed table, quoted for comparison and labelled so.
Every key figure is also in [figures.json](figures.json).
"""


COUNTS = ("k1", "k2", "kernel2", "photo_size", "evidence_size", "mobilenet_size", "mobilenet_maps",
          "mobilenet_kernel", "repeats", "depth_maps", "depth_height", "depth_width", "order_maps")


def check(config) -> None:
    """Raises ConfigError for a setting the report cannot use, naming it, before anything is
    written (``configs/report.py`` checks the quadratic-cost part with the experiment's own check)."""
    def counts(value, n=None):
        values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        return (n is None or len(values) == n) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)

    for key in COUNTS:
        if not counts(config[key]):
            raise ConfigError(f"--config.{key}={config[key]!r}; expected an int ≥ 1")
    for key in ("depth_filter", "depth_stride"):
        if not counts(config[key], 3):
            raise ConfigError(f"--config.{key}={config[key]!r}; expected three ints ≥ 1 (maps, height, width)")
    extent = (config.depth_maps, config.depth_height, config.depth_width)
    if any(f > e for f, e in zip(config.depth_filter, extent)):
        raise ConfigError(f"--config.depth_filter={tuple(config.depth_filter)}; expected a filter within "
                          f"(depth_maps, depth_height, depth_width) = {extent}")
    if config.order_maps > config.depth_maps:
        raise ConfigError(f"--config.order_maps={config.order_maps}; expected at most depth_maps={config.depth_maps}")
    if not (isinstance(config.mismatch_threshold, (int, float)) and config.mismatch_threshold > 0):
        raise ConfigError(f"--config.mismatch_threshold={config.mismatch_threshold!r}; expected a number > 0")
    import skimage.data

    if not callable(getattr(skimage.data, str(config.image), None)) or config.image.startswith("_"):
        raise ConfigError(f"--config.image={config.image!r}; expected the name of a grey image of "
                          "skimage.data, such as 'camera'")


def run(config, workdir: Path) -> dict:
    workdir = Path(workdir)
    report_dir = workdir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(config=config, workdir=workdir, dir=report_dir, store=Store(workdir))
    parts, seconds = [_intro(ctx)], {}
    with progress(len(SECTIONS), 0, "report") as bar:
        for name, section in SECTIONS:
            bar.set_postfix_str(name)
            start = time.perf_counter()
            parts.append(section(ctx))
            seconds[name] = time.perf_counter() - start
            bar.update()
    parts.append(REFERENCES)
    ctx.figures["build_seconds"] = seconds
    markdown = "\n".join(parts)
    (report_dir / "index.md").write_text(markdown, encoding="utf-8")
    (report_dir / "index.html").write_text(html.to_html(markdown, TITLE, report_dir),
                                           encoding="utf-8")
    (report_dir / "figures.json").write_text(json.dumps(ctx.figures, indent=1, sort_keys=True,
                                                        default=float) + "\n")
    print("section seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    print(f"report: {report_dir / 'index.md'}\nhtml: {report_dir / 'index.html'}\n"
          f"figures: {report_dir / 'figures.json'}")
    return ctx.figures
