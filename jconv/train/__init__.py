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
it is traced once per run (``result["train_step_traces"]``), or once for many runs that share
a :class:`StepCache` (``train(..., steps_cache=cache)``: the same model structure and step
settings reuse the compiled steps). This is cheaper per step than
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

Data: one path
--------------
``dataset`` is either a :class:`jconv.data.Dataset` (arrays in memory) or a pair
``(train_source, test_source)`` of grain sources, optionally with the augmentation name as a third
item, as :func:`jconv.data.open_dataset` returns. Both become one
:class:`jconv.train.data.TrainData` of two sources (a ``Dataset``'s arrays as they are, uint8 or
float32), read by one path: :func:`jconv.data.pipeline.train_iterator` (this process's rows of
each global batch: :func:`jconv.data.batch_indices` of seed and epoch, the ragged end of an epoch
dropped, augmented) and, once over the whole test split,
:func:`jconv.data.pipeline.eval_iterator` (last batch padded and masked). ``data_workers`` sets
grain's worker processes.

Checkpoints and resume
----------------------
Orbax ``CheckpointManager`` under ``workdir/checkpoints``: every ``checkpoint_every`` steps and at
the end. A checkpoint holds parameters, the rest of the model state (BatchNorm statistics, RNG
keys and counts), the optimizer state, the step and the data position (epoch, batch in epoch; the
batch order is a pure function of seed and epoch, so the data need no state of their own), in
the same orbax step (``ocp.args.Composite``). Running again in the same ``workdir`` resumes
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

Modules: :mod:`~jconv.train.config` (:class:`TrainConfig`), :mod:`~jconv.train.recipe` (optimizer,
schedule, loss, weight average), :mod:`~jconv.train.step` (the jitted train and eval steps, their
state, XLA's FLOP count), :mod:`~jconv.train.data` (batches and their placement on the mesh),
:mod:`~jconv.train.checkpoint`, :mod:`~jconv.train.log` (log lines, progress bar, clock) and
:mod:`~jconv.train.loop` (:func:`train`).
"""

from jconv.train.config import DTYPES, OPTIMIZERS, SCHEDULES, NonFiniteLossError, TrainConfig
from jconv.train.loop import train
from jconv.train.recipe import classification_loss, make_optimizer
from jconv.train.step import StepCache, step_flops

__all__ = ["StepCache", "TrainConfig", "NonFiniteLossError", "classification_loss", "make_optimizer", "train",
           "OPTIMIZERS", "SCHEDULES", "DTYPES", "step_flops"]
