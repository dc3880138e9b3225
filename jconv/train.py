"""Train any ``flax.nnx`` classifier: optax, data-parallel jit step, orbax checkpoints, resume.

``train(model, dataset, config, workdir)`` works for every ``nnx.Module`` whose ``__call__(x)``
returns logits ``(N, num_classes)``, or in training a tuple ``(logits, *aux_logits)`` as a model
with auxiliary heads returns: every auxiliary classifier enters the loss with weight
``aux_weight`` (:func:`classification_loss`), while the logged and evaluated losses and accuracy
are those of the main logits. Dropout and BatchNorm follow
``model.train()`` / ``model.eval()``; dropout keys come from the model's own ``nnx.Rngs``, which
live in the split state, so they are checkpointed and resumed with everything else.

How a step runs
---------------
``nnx.split(model, nnx.Param, ...)`` once gives a static ``graphdef`` and two pure pytrees
(parameters; everything else: BatchNorm statistics, RNG keys and counters). One ``jax.jit`` step
merges them, computes softmax cross-entropy in float32 (after a bfloat16 forward pass if
``dtype="bfloat16"``: images and a copy of the float parameters are cast, while parameters,
optimizer state and the update stay float32), applies the optax update and returns the new pytrees;
it is traced once per run (``result["train_step_traces"]``). This is cheaper per step than
``nnx.jit`` on small models.

Data parallelism
----------------
The step runs over a 1-D mesh ``Mesh(jax.devices()[:n], ("batch",))``: every batch is sharded
along its first axis with ``NamedSharding(mesh, P("batch"))``, parameters and optimizer state are
replicated (``P()``), and XLA inserts the gradient all-reduce. The global batch size must be a
multiple of ``n``. The losses do not depend on ``n`` beyond float32 reduction order (tested with
1 and 4 CPU devices via ``XLA_FLAGS=--xla_force_host_platform_device_count=4``).

Across hosts
------------
The same code is the path for users who outgrow one machine. Start the same script on every host
and call ``jax.distributed.initialize()`` first (it reads the coordinator address, process count
and index from the cluster environment: SLURM, TPU pods, or ``coordinator_address=``,
``num_processes=``, ``process_id=`` arguments)::

    import jax
    jax.distributed.initialize()
    from jconv import data, train
    ds = data.digits(64, channels=3)                  # every host builds the same dataset
    train.train(model, ds, train.TrainConfig(batch_size=256), "/shared/run1")

``jax.devices()`` then lists the devices of every host, and the mesh spans all of them
(``num_devices=None``). Each host computes the same shuffled global batch indices (they depend
only on seed and epoch), takes the rows its own devices hold, and builds the global batch with
``jax.make_array_from_process_local_data(sharding, local_rows, global_shape)``; this module does
exactly that on one host too. Orbax writes one checkpoint from all hosts, so ``workdir`` must be on
a file system every host sees. ``jconv launch`` (:mod:`jconv.launch`) runs the same path with
several processes on one machine; ``tests/test_multiprocess.py`` checks it against one process.

Data in memory or streamed
--------------------------
``dataset`` is either a :class:`jconv.data.Dataset` (arrays in memory; batches are
:func:`jconv.data.batch_indices` of seed and epoch, the ragged end of an epoch dropped) or a pair
``(train_source, test_source)`` of grain sources, optionally with the augmentation name as a third
item, as :func:`jconv.data.open_dataset` returns. Sources are streamed by
:func:`jconv.data.pipeline.train_iterator` (this process's rows of each global batch, shuffled by
seed and epoch, augmented) and evaluated once over the whole test split by
:func:`jconv.data.pipeline.eval_iterator` (last batch padded and masked). ``data_workers`` sets
grain's worker processes.

Checkpoints and resume
----------------------
Orbax ``CheckpointManager`` under ``workdir/checkpoints``: every ``checkpoint_every`` steps and at
the end. A checkpoint holds parameters, the rest of the model state (BatchNorm statistics, RNG
keys and counts), the optimizer state, the step and the data position (epoch, batch in epoch; the
batch order is a pure function of seed and epoch), and for streamed data the grain iterator's
state, in the same orbax step (``ocp.args.Composite``). Running again in the same ``workdir`` resumes
from the latest checkpoint and ends with the same parameters, bit for bit, as a run that was never
interrupted. A non-finite loss (or non-finite parameters after an update) raises
:class:`NonFiniteLossError` naming the step and the loss; parameters are checked before every
checkpoint, so the checkpoints on disk are the last good ones.

Logs
----
Process 0 writes ``workdir/train_config.json`` (the resolved config) and ``workdir/train_log.jsonl``, one JSON
line per logged step (step, epoch, loss, lr, images_per_s, time), flushed as written. A tqdm bar
shows loss, images/s and the ETA; it starts after the first (compiling) step, so the rate and ETA
exclude compile time, as do the reported ``images_per_s`` and ``step_time_s``.

Batches and their placement on the mesh are in :mod:`jconv.train_data`, checkpoints in
:mod:`jconv.train_checkpoint`, log lines, progress bar and clock in :mod:`jconv.train_log`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chex
import numpy as np
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jconv import train_checkpoint
from jconv.data import Dataset
from jconv.train_checkpoint import TrainState
from jconv.train_data import Placement, host_scalar, layout, make_data
from jconv.train_log import Logger, Monitor
from jconv.train_recipe import (OPTIMIZERS, SCHEDULES, _outputs, classification_loss, ema_update,
                                make_optimizer)

__all__ = ["TrainConfig", "NonFiniteLossError", "classification_loss", "make_optimizer", "train", "OPTIMIZERS",
           "SCHEDULES", "DTYPES", "step_flops"]

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
    (:mod:`jconv.train_recipe` gives the formulas).
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
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"TrainConfig: nesterov={self.nesterov!r}; expected True or False")
        if self.schedule == "wsd" and self.warmup_steps + self.cooldown_steps > self.steps:
            raise ValueError(f"wsd needs warmup_steps + cooldown_steps ≤ steps, got warmup_steps="
                             f"{self.warmup_steps}, cooldown_steps={self.cooldown_steps}, steps={self.steps}")


class NonFiniteLossError(FloatingPointError):
    """The loss (or the parameters after an update) became NaN or infinite."""


def _cast_floats(tree, dtype):
    """``tree`` with its floating leaves cast to ``dtype``; other leaves (RNG keys, counts) as they are."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _make_steps(graphdef, eval_graphdef, tx, batch_shape, num_classes, traces, config):
    """The jitted train step (donating the state) and eval step; each counts its traces in ``traces``.

    The train step takes the step's learning rate as an argument (:mod:`jconv.train_recipe`) and
    returns the new state, the loss of the main logits and whether the training loss and the new
    parameters are finite. With ``ema_decay`` the optimizer state is ``(tx_state, steps, (θ̄, rest̄))``.
    """
    b = batch_shape[0]
    dtype = jnp.dtype(config.dtype)

    def forward(graphdef, params, rest, x):
        if dtype != jnp.float32:
            params, x = _cast_floats(params, dtype), x.astype(dtype)
        model = nnx.merge(graphdef, params, rest, copy=True)
        return model, model(x)

    def loss_fn(params, rest, x, y):
        model, out = forward(graphdef, params, rest, x)
        chex.assert_shape(list(_outputs(out)), (b, num_classes))
        loss, main = classification_loss(out, y, config.aux_weight, config.label_smoothing)
        _, new_rest = nnx.state(model, nnx.Param, ...)
        new_rest = jax.tree.map(lambda new, old: new.astype(old.dtype), new_rest, rest)
        return loss, (main, new_rest)

    def train_step(params, rest, opt_state, x, y, lr):
        traces["train_step"] += 1
        chex.assert_shape(x, batch_shape)
        chex.assert_shape(y, (b,))
        chex.assert_type(y, jnp.int32)
        if x.dtype == jnp.uint8:
            x = x.astype(jnp.float32) / 255.0
        chex.assert_type(x, jnp.float32)
        tx_state, count, average = opt_state if config.ema_decay else (opt_state, None, None)
        (loss, (main, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, x, y)
        updates, tx_state = tx.update(grads, tx_state, params)
        params = optax.apply_updates(params, jax.tree.map(lambda u: (lr * u).astype(u.dtype), updates))
        finite = jnp.stack([jnp.isfinite(loss)] + [jnp.isfinite(p).all() for p in jax.tree.leaves(params)]).all()
        if config.ema_decay:
            opt_state = (tx_state, count + 1, ema_update(average, (params, rest), count, config.ema_decay))
        else:
            opt_state = tx_state
        return params, rest, opt_state, main, finite

    def eval_step(params, rest, x, y, weight):
        traces["eval_step"] += 1
        if x.dtype == jnp.uint8:
            x = x.astype(jnp.float32) / 255.0
        logits = _outputs(forward(eval_graphdef, params, rest, x)[1])[0].astype(jnp.float32)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct = (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)
        return (correct * weight).sum(), (losses * weight).sum()

    return jax.jit(train_step, donate_argnums=(0, 1, 2)), jax.jit(eval_step)


def evaluated(state: TrainState, config: TrainConfig) -> tuple:
    """The ``(params, rest)`` a run evaluates: the weight average with ``ema_decay``, else the live ones."""
    return state.opt_state[2] if config.ema_decay else (state.params, state.rest)


def _init_state(model, config, placement, num_classes, traces):
    """The model's state replicated on the mesh, the schedule, and the jitted train and eval steps.

    ``model`` is left in train mode; its own arrays are not donated.
    """
    model.eval()
    eval_graphdef = nnx.graphdef(model)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, schedule = make_optimizer(config)
    # Copies: the step donates its inputs, and the model keeps its own arrays.
    params, rest = placement.replicate((params, rest))
    opt_state = jax.jit(tx.init, out_shardings=placement.replicated)(params)
    if config.ema_decay:
        opt_state = (opt_state, *placement.replicate((np.zeros((), np.int32), (params, rest))))
    train_step, eval_step = _make_steps(graphdef, eval_graphdef, tx, placement.batch_shape, num_classes, traces,
                                        config)
    return TrainState(params, rest, opt_state), schedule, train_step, eval_step


def _write_config(workdir: Path, config: TrainConfig) -> None:
    """Process 0 writes the resolved config to ``workdir/train_config.json``."""
    if jax.process_index() == 0:
        (workdir / "train_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")


def _nonfinite_error(manager, workdir, step, loss) -> NonFiniteLossError:
    """The error for a NaN/inf loss, or parameters, after ``step``; it names the last good checkpoint."""
    what = (f"non-finite loss at step {step}: loss={loss!r}" if not math.isfinite(loss) else
            f"non-finite parameters after step {step} (loss={loss!r})")
    return NonFiniteLossError(
        f"{what}; training stopped. Last good checkpoint: {train_checkpoint.describe_latest(manager, workdir)}. "
        f"Lower the learning rate or check the data for NaN/inf.")


def _run_steps(train_step, state, start, *, config, schedule, data, placement, steps_per_epoch, monitor,
               manager, on_step):
    """Runs steps ``start`` to ``config.steps``; checks, logs and checkpoints on the way.

    Pending losses are checked and logged every ``log_every`` steps and at checkpoints, which
    come every ``checkpoint_every`` steps and at the end.

    Returns:
      The final state and the time its last step finished.
    """
    steps = jnp.arange(config.steps)
    rates = np.broadcast_to(np.asarray(schedule(steps), np.float32), steps.shape)
    try:
        for step, x, y in data.train_batches(placement, config, start, config.steps, steps_per_epoch):
            *new, loss, finite = train_step(*state, x, y, rates[step])
            state = TrainState(*new)
            done = step + 1
            monitor.step_done(done, loss, finite)
            if on_step is not None:
                on_step(done)
            is_ckpt = done == config.steps or (config.checkpoint_every and done % config.checkpoint_every == 0)
            if is_ckpt or done % config.log_every == 0:
                monitor.check_and_log(force_log=done == config.steps)
            if is_ckpt:
                t = time.perf_counter()
                train_checkpoint.save(manager, done, monitor.final_loss, state, config, steps_per_epoch,
                                      data.iterator)
                monitor.saved(time.perf_counter() - t)
        jax.block_until_ready(state.params)
        return state, time.perf_counter()
    finally:
        monitor.close_bar()


def _evaluate(eval_step, state, data, placement, config):
    """Test accuracy and mean test loss, or Nones without test examples."""
    correct = loss_sum = 0.0
    params, rest = evaluated(state, config)
    for batch in data.eval_batches(placement):
        batch_correct, batch_loss = eval_step(params, rest, *batch)
        correct += host_scalar(batch_correct)
        loss_sum += host_scalar(batch_loss)
    n_test = data.n_test
    return (correct / n_test, loss_sum / n_test) if n_test else (None, None)


def train(model: nnx.Module, dataset: Dataset | tuple, config: TrainConfig, workdir: str | Path, *,
          progress: bool = True, on_step: Callable[[int], None] | None = None,
          start_from: tuple[str | Path, int] | None = None, evaluate: bool = True) -> dict[str, Any]:
    """Train ``model`` in place on ``dataset``; resume from ``workdir/checkpoints`` if present.

    Args:
      model: any ``nnx.Module`` mapping ``(N, H, W, C)`` images to logits (or, in training, a
        tuple ``(logits, *aux_logits)``).
      dataset: a :class:`jconv.data.Dataset`, or ``(train_source, test_source[, augment])``
        streamed with grain (e.g. :func:`jconv.data.open_dataset`'s result).
      config: a :class:`TrainConfig`.
      workdir: directory for ``checkpoints/``, ``train_log.jsonl`` and ``train_config.json``.
      progress: show a tqdm progress bar.
      on_step: called on the host with the number of steps done, after each step is dispatched.
      start_from: ``(other_workdir, step)``: a branch. Where ``workdir`` holds no checkpoint yet,
        the run starts from checkpoint ``step`` of the run in ``other_workdir`` (same model, seed
        and batch size) instead of from ``model``'s weights, and goes on to ``config.steps``
        with its own schedule; once it has checkpoints of its own, it resumes from those.
      evaluate: evaluate on the test split at the end (else ``test_accuracy`` and
        ``test_loss`` are None).

    Returns:
      A dict: ``steps`` (done in total), ``start_step`` (0, or the step resumed from),
      ``final_loss`` (cross-entropy of the main logits at the last step), ``test_accuracy``, ``test_loss``,
      ``images_per_s`` and ``step_time_s`` (after the first step of this call, excluding
      checkpoint writes; None if fewer than two steps ran), ``first_step_s`` (includes
      compilation), ``num_devices``, ``train_step_traces``, ``workdir``.
      On return the model holds the final state and is in eval mode.

    Raises:
      ValueError: bad config or data, batch size not a multiple of the device count, or a
        ``workdir`` holding a run with another seed or batch size, or of the other kind of data.
      TypeError: ``dataset`` is neither a ``Dataset`` nor a pair of sources.
      NonFiniteLossError: the loss or the parameters became NaN/inf.
    """
    data = make_data(dataset, workers=config.data_workers)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    plan = layout(data.n_train, config)
    placement = Placement(jax.devices()[:plan.num_devices], config.batch_size, plan.eval_batch_size,
                          data.image_shape)
    traces = {"train_step": 0, "eval_step": 0}
    state, schedule, train_step, eval_step = _init_state(model, config, placement, data.num_classes, traces)
    if hasattr(data, "open"):
        data.open(config)
    _write_config(workdir, config)
    manager = train_checkpoint.make_manager(workdir, config.max_checkpoints)
    logger = Logger(workdir / "train_log.jsonl")
    try:
        state, start, final_loss = train_checkpoint.restore(
            manager, state, config, workdir, data.iterator, start_from) or (state, 0, None)
        monitor = Monitor(logger, config, schedule, plan.steps_per_epoch,
                          functools.partial(_nonfinite_error, manager, workdir), final_loss, progress)
        state, t_end = _run_steps(train_step, state, start, config=config, schedule=schedule, data=data,
                                  placement=placement,
                                  steps_per_epoch=plan.steps_per_epoch, monitor=monitor, manager=manager,
                                  on_step=on_step)
        manager.wait_until_finished()
        step_time, images_per_s = monitor.timing(t_end, config.steps - start - 1)
        test_accuracy, test_loss = (_evaluate(eval_step, state, data, placement, config) if evaluate
                                    else (None, None))
    finally:
        logger.close()
        manager.wait_until_finished()
        manager.close()

    nnx.update(model, *evaluated(state, config))
    model.eval()
    return {
        "steps": max(start, config.steps),
        "start_step": start,
        "final_loss": monitor.final_loss,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "images_per_s": images_per_s,
        "step_time_s": step_time,
        "first_step_s": monitor.first_step_s,
        "num_devices": plan.num_devices,
        "batch_size": config.batch_size,
        "train_step_traces": traces["train_step"],
        "workdir": str(workdir),
    }


def step_flops(model: nnx.Module, config: TrainConfig, image_shape: tuple[int, ...], num_classes: int) -> int | None:
    """XLA's FLOP count of one compiled train step of ``model`` on a batch of ``config.batch_size``.

    The step is traced with oneDNN off (:func:`jconv.backends.onednn.disabled`), so XLA sees the
    convolutions it would otherwise hand to oneDNN; the count covers the forward and backward
    passes, the loss and the optimizer update, on one device. None where XLA does not count.
    """
    from jconv.backends import onednn
    from jconv.measure import xla_flops

    placement = Placement(jax.devices()[:1], config.batch_size, config.batch_size, tuple(image_shape))
    with onednn.disabled():
        state, _, train_step, _ = _init_state(model, config, placement, num_classes,
                                              {"train_step": 0, "eval_step": 0})
        args = (jax.ShapeDtypeStruct(placement.batch_shape, jnp.float32),
                jax.ShapeDtypeStruct((config.batch_size,), jnp.int32), jax.ShapeDtypeStruct((), jnp.float32))
        compiled = train_step.lower(*state, *args).compile()
    return xla_flops(compiled)
