"""What a :class:`jconv.train.TrainConfig` trains with: the optimizer, the learning-rate schedule,
the loss and the weight average.

**Rate outside the optimizer.** :func:`make_optimizer` returns the optimizer at unit rate and the
schedule apart: the train step takes the step's rate ``η_t = schedule(t)`` as an argument and
applies ``θ ← θ + η_t · u_t`` (``u_t`` the optimizer's unit-rate update). For SGD with momentum,
Adam and AdamW this is the update ``optax`` gives with the schedule inside (their rate is the
last factor), and it lets one compiled step serve every schedule: a run branched off another
with a cooldown of its own (:func:`jconv.train.train`'s ``start_from``) compiles nothing new.

**Schedules** (``t`` the step, from 0; ``T`` the steps; ``W`` the warmup steps):

* ``constant``: ``η``;
* ``cosine``: ``η · (1 + cos(π t / T)) / 2``;
* ``warmup_cosine``: linear from 0 to ``η`` over ``W`` steps, then cosine to 0 at ``T``;
* ``wsd`` (warmup-stable-decay, Hägele et al. 2024, arXiv 2405.18392): linear warmup
  ``η · t / W``, constant ``η``, then over the last ``D = round(f · T)`` steps (``f`` the
  ``cooldown_fraction``) the 1−√ cooldown ``η · (1 − √((t − T + D) / D))``. Before ``T − D`` the
  rate does not depend on ``T``, so one constant-rate run (``f = 0``) is the start of every
  horizon: the branch to horizon ``h`` starts from its state at ``0.8 h`` with ``f = 0.2``.

**Loss.** Softmax cross-entropy with labels smoothed by ``α`` (target ``(1 − α)·onehot + α/K``;
Szegedy et al. 2016, section 7), plus ``w`` times each auxiliary classifier's. What is logged
and evaluated is the plain cross-entropy of the main logits.

**Weight average.** With ``ema_decay = d > 0`` the step also keeps
``θ̄ ← δ_t θ̄ + (1 − δ_t) θ``, ``δ_t = min(d, (1 + t) / (10 + t))`` (the warmup of the decay
lets the early average forget its start), over the parameters and the floating model state
(BatchNorm statistics); evaluation uses the average.

>>> from jconv.train import TrainConfig
>>> schedule = make_schedule(TrainConfig(steps=10, learning_rate=1.0, schedule="wsd",
...                                      warmup_steps=2, cooldown_fraction=0.4))
>>> [round(float(v), 3) for v in schedule(jnp.arange(10))]
[0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.293, 0.134]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jconv.train.config import OPTIMIZERS, SCHEDULES, TrainConfig

__all__ = ["make_optimizer", "make_schedule", "classification_loss", "ema_update", "OPTIMIZERS",
           "SCHEDULES"]


def wsd(learning_rate: float, steps: int, warmup_steps: int, cooldown_steps: int) -> optax.Schedule:
    """Warmup-stable-decay with the 1−√ cooldown (module docstring); works on ints and arrays."""
    start = steps - cooldown_steps

    def schedule(t):
        t = jnp.asarray(t, jnp.float32)
        warm = t / warmup_steps if warmup_steps else jnp.ones_like(t)
        cool = 1.0 - jnp.sqrt(jnp.clip((t - start) / max(cooldown_steps, 1), 0.0, 1.0))
        return learning_rate * jnp.minimum(jnp.minimum(warm, 1.0), cool)

    return schedule


def make_schedule(config: TrainConfig) -> optax.Schedule:
    """The learning-rate schedule of ``config`` (module docstring)."""
    lr = config.learning_rate
    if config.schedule == "constant":
        return optax.constant_schedule(lr)
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps=config.steps)
    if config.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, config.warmup_steps, decay_steps=config.steps)
    return wsd(lr, config.steps, config.warmup_steps, config.cooldown_steps)


def make_optimizer(config: TrainConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax optimizer of ``config`` at unit rate, and its schedule.

    ``weight_decay`` is decoupled for ``adamw`` and an L2 term added to the gradient for ``sgd``
    and ``adam``; ``sgd`` takes ``momentum`` (0: none) and ``nesterov``.
    """
    if config.optimizer == "adamw":
        tx = optax.adamw(1.0, weight_decay=config.weight_decay)
    elif config.optimizer == "adam":
        tx = optax.adam(1.0)
    else:
        tx = optax.sgd(1.0, momentum=config.momentum or None, nesterov=config.nesterov)
    if config.weight_decay and config.optimizer != "adamw":
        tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
    return tx, make_schedule(config)


def _outputs(out) -> tuple:
    """A model's output as ``(logits, *aux_logits)``: the tuple or list itself, or ``(out,)``."""
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def classification_loss(out, labels, aux_weight: float = 0.3, label_smoothing: float = 0.0):
    """The training loss of a model output and the mean cross-entropy of its main logits.

    ``L = CE_α(z) + w · Σ_i CE_α(z_i)``, ``CE_α`` the batch mean of softmax cross-entropy in
    float32 against labels smoothed by ``α``, ``z`` the main logits and ``z_i`` the auxiliary
    ones (GoogLeNet's, ``w = 0.3``: Szegedy et al. 2015, section 6).

    Args:
      out: logits ``(N, num_classes)``, or a tuple ``(logits, *aux_logits)`` of such arrays.
      labels: int labels ``(N,)``.
      aux_weight: ``w``, the weight of each auxiliary cross-entropy.
      label_smoothing: ``α`` in [0, 1).

    Returns:
      ``(L, CE_0(z))``, two float32 scalars; they are equal without auxiliary logits and smoothing.

    >>> z = jnp.zeros((2, 4))
    >>> [round(float(v), 4) for v in classification_loss((z, z), jnp.array([0, 1]))]
    [1.8022, 1.3863]
    """
    logits, *aux = _outputs(out)

    def ce(z, alpha):
        z = z.astype(jnp.float32)
        if not alpha:
            return optax.softmax_cross_entropy_with_integer_labels(z, labels).mean()
        target = optax.smooth_labels(jax.nn.one_hot(labels, z.shape[-1], dtype=jnp.float32), alpha)
        return optax.softmax_cross_entropy(z, target).mean()

    main = ce(logits, 0.0)
    smoothed = ce(logits, label_smoothing) if label_smoothing else main
    return smoothed + aux_weight * sum((ce(z, label_smoothing) for z in aux), jnp.float32(0.0)), main


def ema_update(average, new, step, decay: float):
    """``δ·average + (1 − δ)·new`` on floating leaves (others: ``new``), ``δ = min(decay, (1+t)/(10+t))``."""
    t = jnp.asarray(step, jnp.float32)
    delta = jnp.minimum(decay, (1.0 + t) / (10.0 + t))

    def mix(a, n):
        if jnp.issubdtype(n.dtype, jnp.floating):
            return (delta * a + (1.0 - delta) * n).astype(n.dtype)
        return n

    return jax.tree.map(mix, average, new)
