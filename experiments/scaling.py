"""Width × conv-variant scaling of the paper models, trained on real offline data.

For every (variant, width) of one model (``config.model``) the run builds it at
``config.input_size`` (any variant of :mod:`jconv.nn.variants`, any width), counts its
params and MACs with the cost model (:mod:`jconv.summary`), trains it with
:func:`jconv.train.train` on ``config.dataset`` streamed with grain, and records train-step
time, images/s, achieved FLOP/s and test accuracy. Each training run has its own directory
(checkpoints with the data iterator's position, ``train_log.jsonl``), so a killed run resumes
where it stopped, reading the batches an uninterrupted run would.
Plots: test accuracy vs MACs, and step time vs width (log-log, fitted slope per variant).

Data: ``--config.dataset`` is any name of :func:`jconv.data.open_dataset` (``cifar10``,
``cifar100``, ``image_folder``, ``procedural``, ``digits``, ``textures``, ``synthetic``);
``cifar*`` and ``image_folder`` read ``--config.data_dir``, checked before any training. Images
are resized to ``config.input_size`` (CIFAR's 32×32 upsampled bilinearly), with the paper's
augmentation for CIFAR (pad-4 crop, flip) and image folders (Inception crop, flip).
``config.in_channels = 0`` keeps the data's own channels; 1 or 3 converts.
``train_size``/``test_size`` (0: the set's default) size the generated ``procedural`` and
``synthetic`` sets. ``--config.dtype=bfloat16`` runs the forward pass in bfloat16 with float32
parameters (:class:`jconv.train.TrainConfig`). Achieved FLOP/s is the cost model's estimate
``6 · MACs · images/s`` (forward 2 FLOPs per MAC, backward twice the forward).
"""

from __future__ import annotations

import csv
from pathlib import Path

from flax import nnx

from experiments.common import check_models, log_axis
from jconv import cost, data, models, summary, train
from jconv.data.errors import DataError
from jconv.runner import ConfigError, Store, progress, setting_error


def train_config(config) -> train.TrainConfig:
    """The :class:`jconv.train.TrainConfig` of a scaling config's training fields."""
    return train.TrainConfig(
        steps=config.steps, batch_size=config.batch_size, learning_rate=config.learning_rate,
        optimizer=config.optimizer, schedule=config.schedule, warmup_steps=config.warmup_steps,
        log_every=config.log_every, checkpoint_every=config.checkpoint_every, seed=config.seed,
        data_workers=config.data_workers, dtype=config.dtype)


TRAIN_KEYS = {k: k for k in ("steps", "batch_size", "learning_rate", "optimizer", "schedule", "warmup_steps",
                             "log_every", "checkpoint_every", "seed", "data_workers", "dtype")}


def check(config) -> None:
    """Raises ConfigError for a setting the run cannot use, naming it, before anything is written:
    the training settings (:class:`jconv.train.TrainConfig`), the models of every variant and
    width, and the data set's name, channels and folder (its files are read by the run)."""
    try:
        train_config(config)
    except (TypeError, ValueError) as error:
        raise setting_error(error, config, TRAIN_KEYS) from None
    if config.in_channels not in (0, 1, 3):
        raise ConfigError(f"--config.in_channels={config.in_channels!r}; expected 0 (the data's own), 1 or 3")
    check_models(config, (config.model,), config.variants, config.widths, lambda _: config.input_size,
                 config.in_channels or 3, {"model": "model", "variant": "variants", "width": "widths",
                                           "input_size": "input_size"})
    for key in ("train_size", "test_size", "data_workers"):
        if isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < 0:
            raise ConfigError(f"--config.{key}={config[key]!r}; expected an int ≥ 0 (0: the default)")
    files = config.dataset in data.sources.NEEDS_DATA_DIR
    if config.dataset not in data.sources.SOURCES or (files and not (config.data_dir and Path(config.data_dir).is_dir())):
        open_data(config)  # raises the error that names the setting, at once
        raise ConfigError(f"--config.dataset={config.dataset!r}, --config.data_dir={config.data_dir!r}: "
                          "cannot be opened")


def open_data(config, difficulty: float | None = None) -> data.sources.Selection:
    """``config.dataset`` at ``config.input_size``, checked (``difficulty``: the procedural set's).

    Raises:
      ConfigError: a bad dataset name, channel count or missing ``data_dir``.
      DataError: a missing or bad folder or file.
    """
    try:
        return data.open_dataset(config.dataset, image_size=config.input_size, data_dir=config.data_dir or None,
                                 channels=config.in_channels or None, seed=config.seed,
                                 train_size=config.train_size or None, test_size=config.test_size or None,
                                 difficulty=difficulty)
    except DataError:
        raise
    except ValueError as error:
        raise ConfigError(f"--config.dataset={config.dataset!r}: {error}") from None


def train_run(model_name: str, variant: str, width: float, input_size: int, selection,
              train_config: train.TrainConfig, run_dir: Path, *, norm: str = "paper",
              prepare=None) -> dict:
    """Builds ``model_name`` (seeded by ``train_config.seed``), trains it into ``run_dir`` (resuming
    what is there) and returns its params, MACs per image and what :func:`jconv.train.train` measured.

    ``selection`` is a :class:`jconv.data.Dataset` or a ``(train, test[, augment])`` of sources;
    ``prepare(model)``, if given, edits the fresh model before training (an initialisation).
    """
    shape = selection.input_shape if isinstance(selection, data.Dataset) else selection[0].image_shape
    num_classes = selection.num_classes if isinstance(selection, data.Dataset) else selection[0].num_classes
    _, total = summary.summarize(model_name, variant=variant, width=width, input_size=input_size,
                                 in_channels=shape[-1], num_classes=num_classes, norm=norm)
    model = models.build(model_name, variant=variant, width=width, input_size=input_size,
                         in_channels=shape[-1], num_classes=num_classes, norm=norm,
                         rngs=nnx.Rngs(train_config.seed))
    if prepare is not None:
        prepare(model)
    dataset = selection if isinstance(selection, data.Dataset) else tuple(selection)
    result = train.train(model, dataset, train_config, run_dir, progress=True)
    ips = result["images_per_s"]
    return {"params": total["params"], "macs": total["macs"],
            "train_flops_per_s": None if ips is None else 6 * total["macs"] * ips,
            **{k: result[k] for k in ("final_loss", "test_accuracy", "test_loss",
                                      "images_per_s", "step_time_s", "first_step_s", "steps")}}


def measure(config, variant: str, width: float, selection, workdir: Path) -> dict:
    return train_run(config.model, variant, width, config.input_size, selection, train_config(config),
                     workdir / "train" / f"{variant}_w{width:g}")


def run(config, workdir: Path) -> dict:
    store = Store(workdir)
    selection = open_data(config)
    todo = [{"model": config.model, "variant": v, "width": w}
            for v in config.variants for w in config.widths]
    with progress(len(todo), sum(store.has(k) for k in todo), f"scaling {config.model}") as bar:
        for key in todo:
            if not store.has(key):
                bar.set_postfix_str(f"{key['variant']} width {key['width']}")
                store.add(key, measure(config, key["variant"], key["width"], selection, workdir))
            bar.update()
    return summarize(config, store, workdir)


def summarize(config, store: Store, workdir: Path) -> dict:
    records = sorted(store.records(), key=lambda r: (r["key"]["variant"], r["key"]["width"]))
    fields = ["variant", "width", "params", "macs", "step_time_s", "images_per_s",
              "train_flops_per_s", "test_accuracy", "final_loss"]
    with open(workdir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        for r in records:
            writer.writerow({k: r.get(k, r["key"].get(k)) for k in fields})
    slopes = {}
    for variant in config.variants:
        mine = [r for r in records if r["key"]["variant"] == variant and r.get("step_time_s")]
        if len(mine) >= 2:
            slopes[variant] = {
                "step_time": cost.loglog_slope([r["key"]["width"] for r in mine],
                                               [r["step_time_s"] for r in mine], upper_half=False),
                "macs": cost.loglog_slope([r["key"]["width"] for r in mine],
                                          [r["macs"] for r in mine], upper_half=False)}
    lines = [f"# {config.model} on {config.dataset} {config.input_size}×{config.input_size}, "
             f"{config.steps} steps of batch {config.batch_size}", "",
             "| variant | width | params | MACs | step ms | images/s | GFLOP/s | test accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        step_ms = "—" if r["step_time_s"] is None else f"{1e3 * r['step_time_s']:.1f}"
        ips = "—" if r["images_per_s"] is None else f"{r['images_per_s']:.0f}"
        flops = "—" if r.get("train_flops_per_s") is None else f"{r['train_flops_per_s'] / 1e9:.2f}"
        lines.append(f"| {r['key']['variant']} | {r['key']['width']:g} | {r['params']:,} | "
                     f"{r['macs']:,} | {step_ms} | {ips} | {flops} | {r['test_accuracy']:.3f} |")
    lines += ["", "Log-log slope vs width (all widths):", "",
              "| variant | MACs | step time |", "|---|---|---|"]
    lines += [f"| {v} | {s['macs']:.2f} | {s['step_time']:.2f} |" for v, s in slopes.items()]
    table = "\n".join(lines) + "\n"
    (workdir / "table.md").write_text(table)
    _plot(config, records, slopes, workdir / "scaling.png")
    print(table)
    print(f"table: {workdir / 'table.md'}\nplot: {workdir / 'scaling.png'}")
    return {"records": records, "slopes": slopes}


def _plot(config, records, slopes, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc, step) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for variant in config.variants:
        mine = [r for r in records if r["key"]["variant"] == variant]
        acc.plot([r["macs"] for r in mine], [r["test_accuracy"] for r in mine], "o-",
                 label=variant)
        timed = [r for r in mine if r.get("step_time_s")]
        if timed:
            label = variant + (f" (slope {slopes[variant]['step_time']:.2f})"
                               if variant in slopes else "")
            step.plot([r["key"]["width"] for r in timed], [r["step_time_s"] for r in timed],
                      "o-", label=label)
    log_axis(acc)  # major ticks only: minor labels of a short log range overprint each other
    acc.set(xlabel="MACs per image", ylabel="test accuracy", title=f"{config.model}: accuracy vs MACs")
    step.set(xscale="log", yscale="log", xlabel="width multiplier",
             ylabel="train step time (s)", title=f"{config.model}: step time vs width")
    for ax in (acc, step):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
