"""The training runs of the scaling study: which ones, their data, and one run.

Every run is a key of the study's store (``measurements.jsonl``) and a directory of its own
under ``WORKDIR/train`` (checkpoints with the data position, ``train_log.jsonl``): a killed study
resumes, skipping the finished runs and continuing the unfinished one from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from experiments import scaling
from jconv import data, nn, train
from jconv.nn.layers import SharedFilterConv
from jconv.runner import ConfigError

# The treatments of the Type 2.1 comparison: what each changes from the study's own training.
TREATMENTS = {
    "as_studied": "the study's own settings",
    "lr_0.1x": "learning rate × 0.1",
    "lr_3x": "learning rate × 3",
    "init_sum": "Type 2.1 kernels scaled by 1/√C at init (variance kept through the sum of C maps)",
    "batch_norm": "a BatchNorm after every conv, before its ReLU; no LRN",
}


def variants(config) -> tuple[str, ...]:
    """``config.variants``, or every variant (built-in and registered) when it is empty."""
    known = nn.variants()
    chosen = tuple(config.variants) or tuple(known)
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise ConfigError(f"--config.variants: unknown {unknown}; known: {sorted(known)}")
    return chosen


def input_size(config, model: str) -> int:
    sizes = config.input_sizes.to_dict()
    if model not in sizes:
        raise ConfigError(f"--config.models: {model!r} has no input size; add "
                          f"--config.input_sizes (has {sorted(sizes)})")
    return sizes[model]


def scaling_keys(config) -> list[dict]:
    """One key per (model, variant, width, seed) of the width sweep."""
    return [{"part": "scaling", "model": m, "variant": v, "width": w, "seed": s}
            for m in config.models for v in variants(config) for w in config.widths
            for s in config.seeds]


def control_keys(config) -> list[dict]:
    """One key per (variant, treatment, seed) of the Type 2.1 comparison (none if it is off)."""
    c = config.controls
    if not c.treatments:
        return []
    unknown = [t for t in c.treatments if t not in TREATMENTS]
    if unknown:
        raise ConfigError(f"--config.controls.treatments: unknown {unknown}; known: {list(TREATMENTS)}")
    return [{"part": "controls", "model": c.model, "variant": v, "width": c.width, "seed": s,
             "treatment": t}
            for v in c.variants for t in c.treatments for s in config.seeds]


def open_data(config, model: str):
    """The data at ``model``'s input size: arrays in memory for generated sets, else sources.

    A set without augmentation (procedural, digits, textures, synthetic) is read once into a
    :class:`jconv.data.Dataset` (pixels ``uint8 / 255``, as the streamed pipeline gives them),
    so no run pays for rendering or decoding; CIFAR and image folders stream through grain
    with their augmentation.
    """
    size = input_size(config, model)
    sized = config.copy_and_resolve_references()
    with sized.unlocked():
        sized.input_size = size
    selection = scaling.open_data(sized, difficulty=config.difficulty)
    if selection.augment is not None:
        return selection

    def arrays(source):
        items = [source[i] for i in range(len(source))]
        images = np.stack([im for im, _ in items]).astype(np.float32) / 255  # (N, H, W, C)
        return images, np.array([label for _, label in items], np.int32)

    (train_x, train_y), (test_x, test_y) = arrays(selection.train), arrays(selection.test)
    return data.Dataset(train_x, train_y, test_x, test_y, selection.train.num_classes,
                        config.dataset)


def scale_shared_filters(model: nnx.Module) -> int:
    """Divides every Type 2.1 kernel by √C (C: the maps it sums); returns how many it scaled.

    A Type 2.1 output is ``(Σ_c x_c) ⋆ w``: after a ReLU the maps ``x_c`` are positive and
    correlated, so the sum grows like ``C``, not ``√C`` as the He fan-in ``k²·C`` assumes.
    """
    scaled = 0
    for _, module in nnx.iter_modules(model):
        if isinstance(module, SharedFilterConv):
            module.kernel[...] = module.kernel[...] / math.sqrt(module.in_features)
            scaled += 1
    return scaled


def train_config(config, key: dict) -> train.TrainConfig:
    """The scaling experiments' training of ``config``, with the run's seed and treatment."""
    lr = config.learning_rate * {"lr_0.1x": 0.1, "lr_3x": 3.0}.get(key.get("treatment"), 1.0)
    return dataclasses.replace(scaling.train_config(config), learning_rate=lr, seed=key["seed"])


def run_dir(workdir: Path, key: dict) -> Path:
    name = f"{key['model']}/{key['variant']}_w{key['width']:g}_s{key['seed']}"
    if key["part"] == "controls":
        name = f"controls/{key['variant']}_{key['treatment']}_s{key['seed']}"
    return Path(workdir) / "train" / name


def measure(config, key: dict, selection, workdir: Path) -> dict:
    """Trains the run of ``key``; a run whose loss became non-finite is recorded as diverged."""
    treatment = key.get("treatment")
    num_classes = (selection.num_classes if isinstance(selection, data.Dataset)
                   else selection.train.num_classes)
    try:
        result = scaling.train_run(
            key["model"], key["variant"], key["width"], input_size(config, key["model"]), selection,
            train_config(config, key), run_dir(workdir, key),
            norm="batch" if treatment == "batch_norm" else "paper",
            prepare=scale_shared_filters if treatment == "init_sum" else None)
    except train.NonFiniteLossError as error:
        return {"diverged": str(error), "test_accuracy": None, "test_loss": None,
                "num_classes": num_classes}
    result["train_flops"] = 6 * result["macs"] * config.steps * config.batch_size
    result["devices"] = jax.device_count()
    result["num_classes"] = num_classes
    return result
