"""Orbax checkpoints of a :func:`jconv.train.train` run under ``workdir/checkpoints``.

A checkpoint is a composite of two items: ``state``, the :class:`TrainState` as a dict (typed PRNG
keys stored as their uint32 key data), and ``meta``, JSON with the step, the loss, the seed, the
batch size and the data position (epoch, batch in epoch, steps per epoch). The data need no state
of their own: batch ``t`` is a pure function of the seed and ``t`` (:mod:`jconv.data.pipeline`),
so a resumed run reads exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jconv.train.config import TrainConfig


class TrainState(NamedTuple):
    """What a training step updates and a checkpoint's ``state`` item holds."""

    params: Any
    rest: Any
    opt_state: Any


def _is_key(x):
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_saveable(tree):
    """Typed PRNG keys → their uint32 key data (what orbax stores)."""
    return jax.tree.map(lambda a: jax.random.key_data(a) if _is_key(a) else a, tree)


def _from_saveable(tree, template):
    return jax.tree.map(
        lambda a, t: jax.random.wrap_key_data(a, impl=jax.random.key_impl(t)) if _is_key(t) else a,
        tree, template)


def make_manager(workdir: Path, max_to_keep: int) -> ocp.CheckpointManager:
    """The manager of ``workdir/checkpoints``, keeping the latest ``max_to_keep``."""
    return ocp.CheckpointManager(
        workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def restore(manager: ocp.CheckpointManager, state: TrainState, config: TrainConfig,
            workdir: Path, start_from: tuple[Path, int] | None = None
            ) -> tuple[TrainState, int, float] | None:
    """The latest checkpoint as ``(state, step, loss)``, or None if there is none.

    Args:
      manager: from :func:`make_manager`.
      state: the freshly initialised state; the restored one takes its structure, shapes, dtypes
        and key types.
      config: the run's config; its seed and batch size must match the checkpoint's.
      workdir: named in the error.
      start_from: ``(other_workdir, step)``: where ``manager`` holds no checkpoint, checkpoint
        ``step`` of the run in ``other_workdir`` (a branch of that run starts there).

    Raises:
      ValueError: the checkpoint is from a run with another seed or batch size; ``start_from``
        names a missing checkpoint.
    """
    latest = manager.latest_step()
    if latest is not None:
        return _restore(manager, latest, state, config, workdir)
    if start_from is None:
        return None
    other, step = Path(start_from[0]).resolve(), int(start_from[1])
    source = ocp.CheckpointManager(other / "checkpoints",
                                   options=ocp.CheckpointManagerOptions(create=False))
    try:
        if step not in source.all_steps():
            raise ValueError(f"start_from: {other / 'checkpoints'} has no checkpoint of step {step} "
                             f"(it has {sorted(source.all_steps())})")
        return _restore(source, step, state, config, other)
    finally:
        source.close()


def _restore(manager, step, state, config, workdir):
    template = state._asdict()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saveable(template))
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    for key in ("seed", "batch_size"):
        if meta[key] != getattr(config, key):
            raise ValueError(f"{workdir} holds a run with {key}={meta[key]}, this config has "
                             f"{key}={getattr(config, key)}; use another workdir")
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return TrainState(**_from_saveable(restored["state"], template)), int(meta["step"]), meta["loss"]


def save(manager: ocp.CheckpointManager, step: int, loss: float | None, state: TrainState,
         config: TrainConfig, steps_per_epoch: int) -> None:
    """Saves ``state`` as the checkpoint of ``step``."""
    meta = {"step": step, "loss": loss, "seed": config.seed, "batch_size": config.batch_size,
            "epoch": step // steps_per_epoch, "batch_in_epoch": step % steps_per_epoch,
            "steps_per_epoch": steps_per_epoch}
    manager.save(step, force=True, args=ocp.args.Composite(
        meta=ocp.args.JsonSave(meta), state=ocp.args.StandardSave(_to_saveable(state._asdict()))))


def describe_latest(manager: ocp.CheckpointManager, workdir: Path) -> str:
    """``"step N in DIR"`` for the latest checkpoint, ``"none in DIR"`` if there is none."""
    good = manager.latest_step()
    return f"{'none' if good is None else f'step {good}'} in {workdir / 'checkpoints'}"
