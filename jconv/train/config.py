"""What a training run is told: :class:`TrainConfig`, checked when it is made, and the error a
diverged run raises."""

from __future__ import annotations

import dataclasses
import math

__all__ = ["TrainConfig", "NonFiniteLossError", "OPTIMIZERS", "SCHEDULES", "DTYPES", "UPDATES"]

OPTIMIZERS = ("sgd", "adam", "adamw")
UPDATES = ("auto", "optax", "fused")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "wsd")
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train. ``checkpoint_every=0`` saves only the final checkpoint.

    ``weight_decay`` is decoupled for ``adamw`` and an L2 term added to the gradient for ``sgd``
    and ``adam``. ``num_devices=None`` uses every device (every local device on one host).
    ``eval_batch_size=None`` evaluates in batches of ``batch_size``. ``data_workers`` is the
    number of grain worker processes for streamed data (0: threads of this process).

    ``dtype`` is the compute dtype of the forward pass (train and eval steps): ``"bfloat16"``
    casts the images and a copy of the float parameters; the parameters, optimizer state,
    update and cross-entropy stay float32. ``aux_weight`` weighs each auxiliary classifier's
    cross-entropy in the training loss; 0.3 is GoogLeNet's (Szegedy et al. 2015, "Going deeper
    with convolutions", section 6).

    ``nesterov`` makes ``sgd``'s momentum Nesterov's; ``label_smoothing`` is ``α`` of the
    smoothed targets; ``ema_decay > 0`` evaluates an exponential moving average of the weights;
    ``cooldown_fraction`` is the share of the steps that the ``wsd`` schedule cools down over
    (:mod:`jconv.train.recipe` gives the formulas).

    ``update`` says how the optimizer's step runs: ``"optax"``, optax's transformations as XLA
    compiles them; ``"fused"``, SGD with momentum in one pass over each parameter
    (:mod:`jconv.onednn.sgd`, the same arithmetic, on CPU); ``"auto"``, optax's, which was faster
    inside a whole step (:func:`jconv.train.step.update_impl` gives the measurement).
    """

    steps: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    log_every: int = 10
    checkpoint_every: int = 0
    max_checkpoints: int = 3
    seed: int = 0
    num_devices: int | None = None
    eval_batch_size: int | None = None
    data_workers: int = 0
    dtype: str = "float32"
    aux_weight: float = 0.3
    nesterov: bool = False
    label_smoothing: float = 0.0
    ema_decay: float = 0.0
    cooldown_fraction: float = 0.2
    update: str = "auto"

    @property
    def cooldown_steps(self) -> int:
        """The steps of the ``wsd`` cooldown: ``round(cooldown_fraction · steps)``."""
        return int(round(self.cooldown_fraction * self.steps))

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; known: {list(OPTIMIZERS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"TrainConfig: dtype={self.dtype!r}; expected one of {list(DTYPES)}")
        if not (isinstance(self.aux_weight, (int, float)) and math.isfinite(self.aux_weight)
                and self.aux_weight >= 0):
            raise ValueError(f"TrainConfig: aux_weight={self.aux_weight!r}; expected a finite float ≥ 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {list(SCHEDULES)}")
        for name in ("steps", "batch_size", "log_every", "max_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("checkpoint_every", "warmup_steps", "data_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if self.schedule == "warmup_cosine" and not 0 < self.warmup_steps < self.steps:
            raise ValueError(f"warmup_cosine needs 0 < warmup_steps < steps, got warmup_steps="
                             f"{self.warmup_steps}, steps={self.steps}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("label_smoothing", "ema_decay", "cooldown_fraction"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or not 0 <= value <= 1 or (value == 1 and name != "cooldown_fraction")):
                raise ValueError(f"TrainConfig: {name}={value!r}; expected a float in "
                                 f"[0, 1{']' if name == 'cooldown_fraction' else ')'}")
        if self.update not in UPDATES:
            raise ValueError(f"TrainConfig: update={self.update!r}; expected one of {list(UPDATES)}")
        if self.update == "fused" and not (self.optimizer == "sgd" and self.momentum):
            raise ValueError(f"TrainConfig: update='fused' is SGD with momentum; got optimizer="
                             f"{self.optimizer!r}, momentum={self.momentum!r}")
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"TrainConfig: nesterov={self.nesterov!r}; expected True or False")
        if self.schedule == "wsd" and self.warmup_steps + self.cooldown_steps > self.steps:
            raise ValueError(f"wsd needs warmup_steps + cooldown_steps ≤ steps, got warmup_steps="
                             f"{self.warmup_steps}, cooldown_steps={self.cooldown_steps}, steps={self.steps}")


class NonFiniteLossError(FloatingPointError):
    """The loss (or the parameters after an update) became NaN or infinite."""
