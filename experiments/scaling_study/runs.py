"""The training runs of the scaling study: which ones, their data, and one trunk with its branches.

A *trunk* is one model (model, variant, width, seed, learning rate) trained at the warmup-stable
rate of :func:`recipe`, with no cooldown. The run at horizon ``h`` is a *branch*: it starts from
the trunk's checkpoint at ``h − D`` (``D = round(f·h)``, ``f`` the cooldown fraction, 0.2 by
default) and cools the rate down to 0 over its last ``D`` steps (the 1−√ shape of Hägele et al.
2024). Every horizon of a model thus costs one constant-rate run to ``0.8·h_max`` plus the
cooldowns. Each trunk and branch is a directory under ``WORKDIR/train`` with its own
checkpoints, so a killed study resumes mid-trunk or mid-branch.

The rate of each (model, variant, width, seed) is chosen per horizon on the validation set: every
rate at the shortest horizon, then at each longer one the rate chosen before and the next lower
(:func:`live_rates`); each rate is a trunk of its own, and a lower rate's trunk resumes from where
it stopped when it becomes a candidate.

Training data never repeats within a run: a procedural study renders one pool of
``h_max · batch`` training images (uint8, shared by every run, each run reading it once in the
order of its seed), a validation set from the train split's next indices (what the learning-rate
sweep is judged on) and a fixed test set from the test split, whose generating keys differ from
the train split's. CIFAR and image folders stream through grain with epochs; their sweep is
judged on the final training loss.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from jconv import data, models, nn, summary, train
from jconv.data.errors import DataError
from jconv.nn.layers import SharedFilterConv
from jconv.runner import ConfigError

# The treatments of the Type 2.1 comparison: what each changes from the study's own training.
TREATMENTS = {
    "as_studied": "the study's own recipe",
    "init_sum": "Type 2.1 kernels scaled by 1/√C at init (variance kept through the sum of C maps)",
    "paper_norm": "the papers' normalisation: LRN where AlexNet has it, no BatchNorm",
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


def check(config) -> None:
    """Raises ConfigError for settings the study cannot run, naming the flag."""
    lrs = tuple(config.learning_rates)
    if not lrs or not all(isinstance(lr, (int, float)) and lr > 0 for lr in lrs):
        raise ConfigError(f"--config.learning_rates={lrs}; expected one or more rates > 0")
    if config.controls.treatments and config.controls.width not in config.widths:
        raise ConfigError(f"--config.controls.width={config.controls.width}: not one of --config.widths="
                          f"{tuple(config.widths)}; the comparison runs at a width whose rate the sweep chose")
    unknown = [t for t in config.controls.treatments if t not in TREATMENTS]
    if unknown:
        raise ConfigError(f"--config.controls.treatments: unknown {unknown}; known: {list(TREATMENTS)}")
    if config.reference.variant and config.reference.variant not in variants(config):
        raise ConfigError(f"--config.reference.variant={config.reference.variant!r}: not one of the study's "
                          f"variants {variants(config)}")
    if int(config.reference.factor) < 1:
        raise ConfigError(f"--config.reference.factor={config.reference.factor}; expected an int ≥ 1")
    if not set(config.more_horizons.variants) <= set(variants(config)):
        raise ConfigError(f"--config.more_horizons.variants={tuple(config.more_horizons.variants)}: not all of "
                          f"the study's variants {variants(config)}")
    r = config.repeats
    if r.variants or r.seeds:
        study = variants(config)
        if not set(r.variants) <= set(study):
            raise ConfigError(f"--config.repeats.variants={tuple(r.variants)}: not all of the study's variants "
                              f"{study}")
        seeds = tuple(r.seeds)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or len(set(seeds)) < len(seeds) \
                or set(seeds) & set(config.seeds):
            raise ConfigError(f"--config.repeats.seeds={seeds}: expected distinct int seeds, none of "
                              f"--config.seeds={tuple(config.seeds)}")
        for v in r.variants:
            if not set(repeat_horizons(config, v)) <= set(horizons(config, v)):
                raise ConfigError(f"--config.repeats.horizons={tuple(r.horizons)}: not all of {v}'s horizons "
                                  f"{horizons(config, v)} (--config.horizons and --config.more_horizons)")
    noise = config.label_noise
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 1:
        raise ConfigError(f"--config.label_noise={noise!r}; expected a number in [0, 1)")


def cooldown_steps(config, horizon: int) -> int:
    return int(round(config.cooldown_fraction * horizon))


def horizons(config, variant: str | None = None) -> tuple[int, ...]:
    """The study's horizons in steps, checked: increasing, each longer than its cooldown + warmup.

    With ``variant``: its horizons, those of ``config.horizons`` and, for a variant of
    ``config.more_horizons.variants``, those of ``config.more_horizons.horizons`` among them.
    """
    hs = tuple(int(h) for h in config.horizons)
    if not hs or list(hs) != sorted(set(hs)) or hs[0] - cooldown_steps(config, hs[0]) < max(1, config.warmup_steps):
        raise ConfigError(f"--config.horizons={hs}: expected increasing step counts whose first "
                          f"trunk ({hs[0] if hs else 0} − cooldown) reaches past warmup_steps={config.warmup_steps}")
    more = tuple(config.more_horizons.horizons)
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > hs[0] for h in more) \
            or len(set(more) | set(hs)) != len(more) + len(hs):
        raise ConfigError(f"--config.more_horizons.horizons={more}: expected int step counts, each longer than "
                          f"the first of --config.horizons={hs} and none of them")
    if variant is not None and variant in config.more_horizons.variants:
        return tuple(sorted(hs + more))
    return hs


def repeat_horizons(config, variant: str | None = None) -> tuple[int, ...]:
    """The horizons the repeat seeds (``config.repeats``) train to: ``config.repeats.horizons``, or
    every horizon of ``variant`` when it is empty."""
    return tuple(int(h) for h in config.repeats.get("horizons", ())) or horizons(config, variant)


def longest(config) -> int:
    """The longest horizon any run of the study trains to (the reference run's included)."""
    every = [horizons(config, v)[-1] for v in variants(config)]
    ref = config.reference
    if ref.variant:
        every.append(horizons(config, ref.variant)[-1] * max(1, int(ref.factor)))
    return max(every)


def recipe(config, *, seed: int, learning_rate: float, steps: int, cooldown: bool) -> train.TrainConfig:
    """The study's :class:`jconv.train.TrainConfig`: a trunk (``cooldown=False``) or a branch."""
    return train.TrainConfig(
        steps=steps, batch_size=config.batch_size, learning_rate=learning_rate, optimizer=config.optimizer,
        momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay,
        label_smoothing=config.label_smoothing, ema_decay=config.ema_decay, schedule="wsd",
        warmup_steps=config.warmup_steps, cooldown_fraction=config.cooldown_fraction if cooldown else 0.0,
        log_every=config.log_every, checkpoint_every=config.checkpoint_every, max_checkpoints=2, seed=seed,
        data_workers=config.data_workers, dtype=config.dtype)


@dataclasses.dataclass
class StudyData:
    """A model's data: what :func:`jconv.train.train` takes, and the validation arrays (or None)."""

    train: object
    validation: tuple[np.ndarray, np.ndarray] | None
    num_classes: int
    image_shape: tuple[int, int, int]
    render_s: float = 0.0


def open_data(config, model: str) -> StudyData:
    """The data at ``model``'s input size (module docstring).

    Raises:
      ConfigError: a bad dataset name, channel count or missing ``data_dir``.
      DataError: a missing or bad folder or file.
    """
    size = input_size(config, model)
    if config.dataset == "procedural":
        from jconv.data.procedural import open_procedural, render

        n_train, n_val = longest(config) * config.batch_size, config.validation_size
        train_split, test_split = open_procedural(
            num_classes=config.num_classes, train_size=n_train + n_val, test_size=config.test_size,
            image_size=size, difficulty=config.difficulty, seed=config.seed, label_noise=config.label_noise)
        start = time.perf_counter()
        x, y = render(train_split, 0, n_train + n_val, workers=config.render_workers)
        tx, ty = render(test_split, 0, config.test_size, workers=config.render_workers)
        dataset = data.Dataset(x[:n_train], y[:n_train], tx, ty, config.num_classes, "procedural")
        return StudyData(dataset, (x[n_train:], y[n_train:]), config.num_classes, tuple(x.shape[1:]),
                         time.perf_counter() - start)
    try:
        selection = data.open_dataset(config.dataset, image_size=size, data_dir=config.data_dir or None,
                                      channels=config.in_channels or None, seed=config.seed)
    except DataError:
        raise
    except ValueError as error:
        raise ConfigError(f"--config.dataset={config.dataset!r}: {error}") from None
    return StudyData(tuple(selection), None, selection.train.num_classes, tuple(selection.train.image_shape))


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


def norm_of(config, treatment: str | None) -> str:
    return "paper" if treatment == "paper_norm" else config.norm


def build(config, key: dict, study_data: StudyData) -> nnx.Module:
    """A fresh model of ``key`` (seeded by its seed), with its treatment's initialisation."""
    treatment = key.get("treatment")
    model = models.build(key["model"], variant=key["variant"], width=key["width"],
                         input_size=input_size(config, key["model"]), in_channels=study_data.image_shape[-1],
                         num_classes=study_data.num_classes, norm=norm_of(config, treatment),
                         rngs=nnx.Rngs(key["seed"]))
    if treatment == "init_sum":
        scale_shared_filters(model)
    return model


_STEP_FLOPS: dict = {}
"""XLA's count of one train step per model structure, step recipe and data shape, in this process:
the controls' treatments change the weights, not the program, and each count is a compile."""


def cost(config, key: dict, study_data: StudyData) -> dict:
    """Params, MACs per image (cost model) and XLA's FLOPs of one train step, oneDNN off."""
    norm = norm_of(config, key.get("treatment"))
    _, total = summary.summarize(key["model"], variant=key["variant"], width=key["width"],
                                 input_size=input_size(config, key["model"]),
                                 in_channels=study_data.image_shape[-1], num_classes=study_data.num_classes,
                                 norm=norm)
    step = recipe(config, seed=0, learning_rate=1.0, steps=horizons(config)[0], cooldown=True)
    model = build(config, {**key, "seed": 0}, study_data)
    memo = (nnx.graphdef(model), step, study_data.image_shape, study_data.num_classes)
    try:
        flops = _STEP_FLOPS.get(memo)
    except TypeError:  # a layer with an attribute that does not hash: counted every time
        memo = flops = None
    if flops is None:
        flops = train.step_flops(model, step, study_data.image_shape, study_data.num_classes)
        if memo is not None:
            _STEP_FLOPS[memo] = flops
    return {"params": total["params"], "macs": total["macs"], "step_flops": flops,
            "cost_model_step_flops": 6 * total["macs"] * config.batch_size}


def trunk_dir(workdir: Path, key: dict) -> Path:
    name = f"{key['variant']}_w{key['width']:g}_s{key['seed']}_lr{key['lr']:g}"
    if key.get("treatment"):
        name = f"controls/{name}_{key['treatment']}"
    return Path(workdir) / "train" / key["model"] / name / "trunk"


def validation_error(model: nnx.Module, validation, batch_size: int) -> float | None:
    """The error of ``model`` (in eval mode) on the validation arrays, or None without them."""
    if validation is None:
        return None
    x, y = validation
    forward = nnx.jit(lambda m, xb: m(xb.astype(np.float32) / 255.0).argmax(-1))
    wrong = 0
    for lo in range(0, len(y), batch_size):
        xb = x[lo:lo + batch_size]
        pad = batch_size - len(xb)
        if pad:
            xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
        predicted = np.asarray(forward(model, xb))[:batch_size - pad]
        wrong += int((predicted != y[lo:lo + batch_size]).sum())
    return wrong / len(y)


def branch(config, key: dict, study_data: StudyData, workdir: Path,
           steps_cache: train.StepCache | None = None) -> dict:
    """Trains the trunk of ``key`` to the branch point of ``key["horizon"]``, then the branch.

    Both resume from what their directories hold; the branch's checkpoints are removed once it
    is recorded by the caller's store (they are never read again). A loss that became non-finite
    is recorded as diverged. With ``steps_cache`` every trunk and branch of one model and width
    runs the same compiled steps (:class:`jconv.train.StepCache`).
    """
    h = key["horizon"]
    start = h - cooldown_steps(config, h)
    trunk = trunk_dir(workdir, key)
    lr, seed = key["lr"], key["seed"]
    t0 = time.perf_counter()
    try:
        train.train(build(config, key, study_data), study_data.train,
                    recipe(config, seed=seed, learning_rate=lr, steps=start, cooldown=False), trunk,
                    progress=False, evaluate=False, steps_cache=steps_cache)
        t1 = time.perf_counter()
        model = build(config, key, study_data)
        result = train.train(model, study_data.train,
                             recipe(config, seed=seed, learning_rate=lr, steps=h, cooldown=True),
                             trunk.parent / f"h{h}", progress=False, start_from=(trunk, start),
                             steps_cache=steps_cache)
    except train.NonFiniteLossError as error:
        return {"diverged": str(error), "test_accuracy": None, "test_loss": None}
    t2 = time.perf_counter()
    return {"test_accuracy": result["test_accuracy"], "test_loss": result["test_loss"],
            "val_error": validation_error(model, study_data.validation, config.batch_size),
            "final_loss": result["final_loss"], "steps": h, "branch_start": start,
            "samples": h * config.batch_size, "images_per_s": result["images_per_s"],
            "trunk_s": t1 - t0, "branch_s": t2 - t1, "devices": jax.device_count()}


def drop_checkpoints(workdir: Path, key: dict) -> None:
    """Removes the recorded branch's checkpoints (its log and config stay)."""
    shutil.rmtree(trunk_dir(workdir, key).parent / f"h{key['horizon']}" / "checkpoints", ignore_errors=True)


def live_rates(rates, best: float | None) -> tuple[float, ...]:
    """The rates run at a horizon, after ``best`` was chosen at the one before: ``best`` and the
    next lower of ``rates`` (none when nothing was chosen). The best rate of a constant-rate run
    falls as its horizon grows, so a higher rate is not tried again.

    >>> live_rates((0.2, 0.05, 0.1), 0.1), live_rates((0.05, 0.1), 0.05), live_rates((0.1,), None)
    ((0.1, 0.05), (0.05,), ())
    """
    if best is None:
        return ()
    lower = [r for r in rates if r < best]
    return (best, max(lower)) if lower else (best,)


def choose_lr(sweep: list[dict]) -> float | None:
    """The learning rate of the sweep's best run: lowest validation error, else lowest final
    training loss (data without a validation split); ties go to the smaller rate. None if every
    run diverged."""
    done = [r for r in sweep if r.get("test_accuracy") is not None]
    if not done:
        return None
    has_val = all(r.get("val_error") is not None for r in done)
    return min(done, key=lambda r: (r["val_error"] if has_val else r["final_loss"], r["key"]["lr"]))["key"]["lr"]
