"""Train any ``flax.nnx`` classifier: optax, data-parallel jit step, orbax checkpoints, resume.

``train(model, dataset, config, workdir)`` works for every ``nnx.Module`` whose ``__call__(x)``
returns logits ``(N, num_classes)`` (or a tuple whose first item is the logits, as a model with
auxiliary heads returns; only the first item enters the loss). Dropout and BatchNorm follow
``model.train()`` / ``model.eval()``; dropout keys come from the model's own ``nnx.Rngs``, which
live in the split state, so they are checkpointed and resumed with everything else.

How a step runs
---------------
``nnx.split(model, nnx.Param, ...)`` once gives a static ``graphdef`` and two pure pytrees
(parameters; everything else: BatchNorm statistics, RNG keys and counters). One ``jax.jit`` step
merges them, computes softmax cross-entropy, applies the optax update and returns the new pytrees;
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
a file system every host sees. The multi-host path is written but tested here only with a single
process.

Checkpoints and resume
----------------------
Orbax ``CheckpointManager`` under ``workdir/checkpoints``: every ``checkpoint_every`` steps and at
the end. A checkpoint holds parameters, the rest of the model state (BatchNorm statistics, RNG
keys and counts), the optimizer state, the step and the data position (epoch, batch in epoch; the
batch order is a pure function of seed and epoch). Running again in the same ``workdir`` resumes
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
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jconv.data import Dataset, batch_indices

__all__ = ["TrainConfig", "NonFiniteLossError", "make_optimizer", "train", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train. ``checkpoint_every=0`` saves only the final checkpoint.

    ``weight_decay`` is decoupled for ``adamw`` and an L2 term added to the gradient for ``sgd``
    and ``adam``. ``num_devices=None`` uses every device (every local device on one host).
    ``eval_batch_size=None`` evaluates in batches of ``batch_size``.
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

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; known: {list(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {list(SCHEDULES)}")
        for name in ("steps", "batch_size", "log_every", "max_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        for name in ("checkpoint_every", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)}")
        if self.schedule == "warmup_cosine" and not 0 < self.warmup_steps < self.steps:
            raise ValueError(f"warmup_cosine needs 0 < warmup_steps < steps, got warmup_steps="
                             f"{self.warmup_steps}, steps={self.steps}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


class NonFiniteLossError(FloatingPointError):
    """The loss (or the parameters after an update) became NaN or infinite."""


def make_optimizer(config: TrainConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax optimizer and learning-rate schedule of ``config``."""
    lr = config.learning_rate
    if config.schedule == "constant":
        schedule = optax.constant_schedule(lr)
    elif config.schedule == "cosine":
        schedule = optax.cosine_decay_schedule(lr, decay_steps=config.steps)
    else:
        schedule = optax.warmup_cosine_decay_schedule(0.0, lr, config.warmup_steps, decay_steps=config.steps)
    if config.optimizer == "adamw":
        return optax.adamw(schedule, weight_decay=config.weight_decay), schedule
    if config.optimizer == "adam":
        tx = optax.adam(schedule)
    else:
        tx = optax.sgd(schedule, momentum=config.momentum or None)
    if config.weight_decay:
        tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
    return tx, schedule


def _logits(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _is_key(x):
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_saveable(tree):
    """Typed PRNG keys → their uint32 key data (what orbax stores)."""
    return jax.tree.map(lambda a: jax.random.key_data(a) if _is_key(a) else a, tree)


def _from_saveable(tree, template):
    return jax.tree.map(
        lambda a, t: jax.random.wrap_key_data(a, impl=jax.random.key_impl(t)) if _is_key(t) else a,
        tree, template)


def _host_scalar(x):
    """A replicated scalar as a Python float, on one host or many."""
    return float(np.asarray(x.addressable_data(0)))


def _local_rows(sharding, global_shape):
    """[start, stop) of the batch rows held by this process's devices."""
    slices = [idx[0] for idx in sharding.addressable_devices_indices_map(global_shape).values()]
    start = min(s.start or 0 for s in slices)
    stop = max(global_shape[0] if s.stop is None else s.stop for s in slices)
    return start, stop


def _check_dataset(dataset: Dataset):
    x, y = dataset.train_x, dataset.train_y
    if x.ndim != 4 or dataset.test_x.ndim != 4:
        raise ValueError(f"dataset {dataset.name!r}: images must be (N, H, W, C), got {x.shape}")
    if x.shape[1:] != dataset.test_x.shape[1:]:
        raise ValueError(f"dataset {dataset.name!r}: train images {x.shape[1:]} vs test {dataset.test_x.shape[1:]}")
    for split, images in (("train", x), ("test", dataset.test_x)):
        if images.dtype != np.float32:
            raise ValueError(f"dataset {dataset.name!r}: {split} images must be float32, got {images.dtype}")
    for split, labels in (("train", y), ("test", dataset.test_y)):
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"dataset {dataset.name!r}: {split} labels must be integers, got {labels.dtype}")
        if labels.size and not 0 <= labels.min() <= labels.max() < dataset.num_classes:
            raise ValueError(f"dataset {dataset.name!r}: {split} labels outside [0, {dataset.num_classes})")


def _make_steps(graphdef, eval_graphdef, tx, batch_shape, num_classes, traces):
    b = batch_shape[0]

    def loss_fn(params, rest, x, y):
        model = nnx.merge(graphdef, params, rest, copy=True)
        logits = _logits(model(x))
        chex.assert_shape(logits, (b, num_classes))
        loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y).mean()
        _, new_rest = nnx.state(model, nnx.Param, ...)
        return loss, new_rest

    def train_step(params, rest, opt_state, x, y):
        traces["train_step"] += 1
        chex.assert_shape(x, batch_shape)
        chex.assert_type(x, jnp.float32)
        chex.assert_shape(y, (b,))
        chex.assert_type(y, jnp.int32)
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        finite = jnp.stack([jnp.isfinite(loss)] + [jnp.isfinite(p).all() for p in jax.tree.leaves(params)]).all()
        return params, rest, opt_state, loss, finite

    def eval_step(params, rest, x, y, weight):
        traces["eval_step"] += 1
        logits = _logits(nnx.merge(eval_graphdef, params, rest, copy=True)(x)).astype(jnp.float32)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct = (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)
        return (correct * weight).sum(), (losses * weight).sum()

    return jax.jit(train_step, donate_argnums=(0, 1, 2)), jax.jit(eval_step)


class _Logger:
    """One JSON line per logged step, flushed as written; only process 0 writes."""

    def __init__(self, path):
        self._file = open(path, "a", buffering=1) if jax.process_index() == 0 else None

    def write(self, record):
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.close()


def train(model: nnx.Module, dataset: Dataset, config: TrainConfig, workdir: str | Path, *,
          progress: bool = True, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train ``model`` in place on ``dataset``; resume from ``workdir/checkpoints`` if present.

    Args:
      model: any ``nnx.Module`` mapping ``(N, H, W, C)`` images to logits (or a tuple whose first
        item is the logits).
      dataset: a :class:`jconv.data.Dataset`.
      config: a :class:`TrainConfig`.
      workdir: directory for ``checkpoints/``, ``train_log.jsonl`` and ``train_config.json``.
      progress: show a tqdm progress bar.
      on_step: called on the host with the number of steps done, after each step is dispatched.

    Returns:
      A dict: ``steps`` (done in total), ``start_step`` (0, or the step resumed from),
      ``final_loss`` (training loss of the last step), ``test_accuracy``, ``test_loss``,
      ``images_per_s`` and ``step_time_s`` (after the first step of this call, excluding
      checkpoint writes; None if fewer than two steps ran), ``first_step_s`` (includes
      compilation), ``num_devices``, ``train_step_traces``, ``workdir``.
      On return the model holds the final state and is in eval mode.

    Raises:
      ValueError: bad config or data, batch size not a multiple of the device count, or a
        ``workdir`` holding a run with another seed or batch size.
      NonFiniteLossError: the loss or the parameters became NaN/inf.
    """
    from tqdm.auto import tqdm

    _check_dataset(dataset)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    devices = jax.devices()
    n = len(devices) if config.num_devices is None else config.num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices={config.num_devices}, but {len(devices)} devices are available")
    eval_b = config.eval_batch_size or config.batch_size
    for name, b in (("batch_size", config.batch_size), ("eval_batch_size", eval_b)):
        if b % n:
            raise ValueError(f"{name}={b} does not split over {n} devices; use a multiple of {n} "
                             f"(or set num_devices)")
    n_train = len(dataset.train_y)
    if n_train < config.batch_size:
        raise ValueError(f"batch_size {config.batch_size} is larger than the {n_train} training examples")
    steps_per_epoch = n_train // config.batch_size
    image_shape = dataset.train_x.shape[1:]

    mesh = Mesh(np.array(devices[:n]), ("batch",))
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("batch"))
    global_shape = (config.batch_size, *image_shape)
    lo, hi = _local_rows(batch_sharding, global_shape)
    eval_lo, eval_hi = _local_rows(batch_sharding, (eval_b, *image_shape))

    def put_batch(x, y, rows=(lo, hi), b=config.batch_size):
        xs = jax.make_array_from_process_local_data(batch_sharding, x[rows[0]:rows[1]], (b, *x.shape[1:]))
        ys = jax.make_array_from_process_local_data(batch_sharding, y[rows[0]:rows[1]], (b,))
        return xs, ys

    model.eval()
    eval_graphdef = nnx.graphdef(model)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, schedule = make_optimizer(config)
    # Copies (may_alias=False): the step donates its inputs, and the model keeps its own arrays.
    params, rest = jax.device_put((params, rest), replicated, may_alias=False)
    opt_state = jax.jit(tx.init, out_shardings=replicated)(params)
    traces = {"train_step": 0, "eval_step": 0}
    train_step, eval_step = _make_steps(graphdef, eval_graphdef, tx, global_shape, dataset.num_classes, traces)

    if jax.process_index() == 0:
        (workdir / "train_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    manager = ocp.CheckpointManager(
        workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=config.max_checkpoints, create=True))
    logger = _Logger(workdir / "train_log.jsonl")
    bar = None
    try:
        start = 0
        final_loss = None
        latest = manager.latest_step()
        if latest is not None:
            template = {"params": params, "rest": rest, "opt_state": opt_state}
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saveable(template))
            restored = manager.restore(latest, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
            meta = restored["meta"]
            for key in ("seed", "batch_size"):
                if meta[key] != getattr(config, key):
                    raise ValueError(f"{workdir} holds a run with {key}={meta[key]}, this config has "
                                     f"{key}={getattr(config, key)}; use another workdir")
            state = _from_saveable(restored["state"], template)
            params, rest, opt_state = state["params"], state["rest"], state["opt_state"]
            start, final_loss = int(meta["step"]), meta["loss"]

        def save(step, loss):
            manager.save(step, force=True, args=ocp.args.Composite(
                state=ocp.args.StandardSave(_to_saveable({"params": params, "rest": rest, "opt_state": opt_state})),
                meta=ocp.args.JsonSave({
                    "step": step, "loss": loss, "seed": config.seed, "batch_size": config.batch_size,
                    "epoch": step // steps_per_epoch, "batch_in_epoch": step % steps_per_epoch,
                    "steps_per_epoch": steps_per_epoch})))

        pending = []  # (step, loss, finite) still on device: checked at log and checkpoint steps
        t_run = time.perf_counter()
        clock = {"t0": None, "last_t": None, "last_step": None, "save_s": 0.0}

        def check_and_log(force_log):
            nonlocal final_loss
            if not pending:
                return
            values = jax.device_get(pending)
            pending.clear()
            for s, value, finite in values:
                value = float(value)
                if not bool(finite):
                    good = manager.latest_step()
                    what = (f"non-finite loss at step {s}: loss={value!r}" if not math.isfinite(value) else
                            f"non-finite parameters after step {s} (loss={value!r})")
                    raise NonFiniteLossError(
                        f"{what}; training stopped. Last good checkpoint: "
                        f"{'none' if good is None else f'step {good}'} in {workdir / 'checkpoints'}. "
                        f"Lower the learning rate or check the data for NaN/inf.")
                final_loss = value
            s, value = values[-1][0], float(values[-1][1])
            if not (force_log or s % config.log_every == 0):
                return
            now = time.perf_counter()
            rate = None
            if clock["last_step"] is not None and s > clock["last_step"]:
                dt = now - clock["last_t"] - clock["save_s"]
                rate = config.batch_size * (s - clock["last_step"]) / dt if dt > 0 else None
            if clock["t0"] is not None:
                clock["last_t"], clock["last_step"], clock["save_s"] = now, s, 0.0
            logger.write({"step": s, "epoch": (s - 1) // steps_per_epoch, "loss": value,
                          "lr": float(schedule(s - 1)), "images_per_s": rate, "time": now - t_run})
            if bar is not None:
                bar.set_postfix(loss=f"{value:.4f}", img_s="-" if rate is None else f"{rate:.0f}", refresh=False)

        first_step_s = None
        epoch_cache = (None, None)
        total_save_s = 0.0
        for step in range(start, config.steps):
            epoch, i = divmod(step, steps_per_epoch)
            if epoch_cache[0] != epoch:
                epoch_cache = (epoch, batch_indices(n_train, config.batch_size, seed=config.seed, epoch=epoch))
            idx = epoch_cache[1][i]
            x, y = put_batch(dataset.train_x[idx], dataset.train_y[idx].astype(np.int32))
            params, rest, opt_state, loss, finite = train_step(params, rest, opt_state, x, y)
            done = step + 1
            pending.append((done, loss, finite))
            if step == start:
                loss.block_until_ready()
                clock["t0"] = clock["last_t"] = time.perf_counter()
                clock["last_step"] = done
                first_step_s = clock["t0"] - t_run
                bar = tqdm(total=config.steps, initial=done, unit="step", disable=not progress,
                           dynamic_ncols=True, desc="train")
            else:
                bar.update(1)
            if on_step is not None:
                on_step(done)
            is_ckpt = done == config.steps or (config.checkpoint_every and done % config.checkpoint_every == 0)
            if is_ckpt or done % config.log_every == 0:
                check_and_log(force_log=done == config.steps)
            if is_ckpt:
                t = time.perf_counter()
                save(done, final_loss)
                dt = time.perf_counter() - t
                clock["save_s"] += dt
                total_save_s += dt
        jax.block_until_ready(params)
        t_end = time.perf_counter()
        if bar is not None:
            bar.close()
            bar = None
        manager.wait_until_finished()

        timed = config.steps - start - 1
        if timed > 0:
            elapsed = t_end - clock["t0"] - total_save_s
            step_time, images_per_s = elapsed / timed, config.batch_size * timed / elapsed
        else:
            step_time = images_per_s = None

        correct = loss_sum = 0.0
        n_test = len(dataset.test_y)
        for b0 in range(0, n_test, eval_b):
            xb, yb = dataset.test_x[b0:b0 + eval_b], dataset.test_y[b0:b0 + eval_b].astype(np.int32)
            m = len(yb)
            weight = np.zeros(eval_b, np.float32)
            weight[:m] = 1.0
            if m < eval_b:
                xb = np.concatenate([xb, np.zeros((eval_b - m, *xb.shape[1:]), xb.dtype)])
                yb = np.concatenate([yb, np.zeros(eval_b - m, np.int32)])
            xs, ys = put_batch(xb, yb, rows=(eval_lo, eval_hi), b=eval_b)
            w = jax.make_array_from_process_local_data(batch_sharding, weight[eval_lo:eval_hi], (eval_b,))
            batch_correct, batch_loss = eval_step(params, rest, xs, ys, w)
            correct += _host_scalar(batch_correct)
            loss_sum += _host_scalar(batch_loss)
    finally:
        if bar is not None:
            bar.close()
        logger.close()
        manager.wait_until_finished()
        manager.close()

    nnx.update(model, params, rest)
    model.eval()
    return {
        "steps": max(start, config.steps),
        "start_step": start,
        "final_loss": final_loss,
        "test_accuracy": correct / n_test if n_test else None,
        "test_loss": loss_sum / n_test if n_test else None,
        "images_per_s": images_per_s,
        "step_time_s": step_time,
        "first_step_s": first_step_s,
        "num_devices": n,
        "batch_size": config.batch_size,
        "train_step_traces": traces["train_step"],
        "workdir": str(workdir),
    }
