"""The training loop: :func:`train` runs steps, logs, checkpoints, resumes and evaluates (the
package docstring says how)."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jconv.data import Dataset
from jconv.train import checkpoint
from jconv.train.checkpoint import TrainState
from jconv.train.config import NonFiniteLossError, TrainConfig
from jconv.train.data import Placement, as_data, host_scalar, layout
from jconv.train.log import Logger, Monitor
from jconv.train.step import StepCache, evaluated, init_state

__all__ = ["train"]


def _write_config(workdir: Path, config: TrainConfig) -> None:
    """Process 0 writes the resolved config to ``workdir/train_config.json``."""
    if jax.process_index() == 0:
        (workdir / "train_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")


def _nonfinite_error(manager, workdir, step, loss) -> NonFiniteLossError:
    """The error for a NaN/inf loss, or parameters, after ``step``; it names the last good checkpoint."""
    what = (f"non-finite loss at step {step}: loss={loss!r}" if not math.isfinite(loss) else
            f"non-finite parameters after step {step} (loss={loss!r})")
    return NonFiniteLossError(
        f"{what}; training stopped. Last good checkpoint: {checkpoint.describe_latest(manager, workdir)}. "
        f"Lower the learning rate or check the data for NaN/inf.")


def step_rates(schedule, steps: int) -> np.ndarray:
    """The learning rate of each of ``steps`` steps, ``(steps,)`` float32.

    The schedule runs on a power-of-two length (elementwise, so the first ``steps`` rates are
    the same): its small ops compile once per size class in a process, not once per run length.
    """
    n = 1 << max(steps - 1, 0).bit_length()
    return np.broadcast_to(np.asarray(schedule(jnp.arange(n)), np.float32), (n,))[:steps]


def _run_steps(train_step, state, start, *, config, schedule, data, placement, steps_per_epoch, monitor,
               manager, on_step):
    """Runs steps ``start`` to ``config.steps``; checks, logs and checkpoints on the way.

    Pending losses are checked and logged every ``log_every`` steps and at checkpoints, which
    come every ``checkpoint_every`` steps and at the end.

    Returns:
      The final state and the time its last step finished.
    """
    rates = step_rates(schedule, config.steps)
    try:
        for step, x, y in data.train_batches(placement, config, start, config.steps):
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
                checkpoint.save(manager, done, monitor.final_loss, state, config, steps_per_epoch)
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
          start_from: tuple[str | Path, int] | None = None, evaluate: bool = True,
          steps_cache: StepCache | None = None) -> dict[str, Any]:
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
      steps_cache: a :class:`StepCache` shared by runs in this process: a run of the same
        model structure and step settings reuses the compiled steps of an earlier one.

    Returns:
      A dict: ``steps`` (done in total), ``start_step`` (0, or the step resumed from),
      ``final_loss`` (cross-entropy of the main logits at the last step), ``test_accuracy``, ``test_loss``,
      ``images_per_s`` and ``step_time_s`` (after the first step of this call, excluding
      checkpoint writes; None if fewer than two steps ran), ``first_step_s`` (includes
      compilation), ``num_devices``, ``train_step_traces`` (the step's traces in this call: 1,
        or 0 where ``steps_cache`` held it), ``workdir``.
      On return the model holds the final state and is in eval mode.

    Raises:
      ValueError: bad config or data, batch size not a multiple of the device count, or a
        ``workdir`` holding a run with another seed or batch size.
      TypeError: ``dataset`` is neither a ``Dataset`` nor a pair of sources.
      NonFiniteLossError: the loss or the parameters became NaN/inf.
    """
    data = as_data(dataset, workers=config.data_workers)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    plan = layout(data.n_train, config)
    placement = Placement(jax.devices()[:plan.num_devices], config.batch_size, plan.eval_batch_size,
                          data.image_shape)
    state, schedule, train_step, eval_step, traces = init_state(
        model, config, placement, data.num_classes, {"train_step": 0, "eval_step": 0}, steps_cache)
    traced_before = traces["train_step"]
    _write_config(workdir, config)
    manager = checkpoint.make_manager(workdir, config.max_checkpoints)
    logger = Logger(workdir / "train_log.jsonl")
    try:
        state, start, final_loss = checkpoint.restore(
            manager, state, config, workdir, start_from) or (state, 0, None)
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
        "train_step_traces": traces["train_step"] - traced_before,
        "workdir": str(workdir),
    }
