"""Training data for :mod:`jconv.train`: batches in seed/epoch order, placed on a data-parallel mesh.

The mesh is 1-D, ``Mesh(devices, ("batch",))``: batches are sharded along their first axis
(``P("batch")``), everything else is replicated (``P()``). Each process takes the rows its own
devices hold and builds the global batch with ``jax.make_array_from_process_local_data``, so the
same code runs on one host or many.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jconv.data import Dataset, batch_indices


def check_dataset(dataset: Dataset) -> None:
    """Raises ValueError unless ``dataset`` can be trained on.

    Images must be float32 ``(N, H, W, C)`` of one shape in both splits, labels integers in
    ``[0, num_classes)``.
    """
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


def train_batches(dataset: Dataset, batch_size: int, seed: int, start: int, stop: int,
                  steps_per_epoch: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(step, x, y)`` for steps ``start`` to ``stop``, with int32 labels.

    The batch order is a pure function of seed and epoch (:func:`jconv.data.batch_indices`), so a
    resumed run sees the same batches as one that was never interrupted.
    """
    epoch_cache = (None, None)
    for step in range(start, stop):
        epoch, i = divmod(step, steps_per_epoch)
        if epoch_cache[0] != epoch:
            epoch_cache = (epoch, batch_indices(len(dataset.train_y), batch_size, seed=seed, epoch=epoch))
        idx = epoch_cache[1][i]
        yield step, dataset.train_x[idx], dataset.train_y[idx].astype(np.int32)


def eval_batches(dataset: Dataset, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(x, y, weight)`` over the test split in batches of ``batch_size``, int32 labels.

    The last batch is padded with zeros to ``batch_size``; ``weight`` is 1 on real rows, 0 on padding.
    """
    n_test = len(dataset.test_y)
    for b0 in range(0, n_test, batch_size):
        xb, yb = dataset.test_x[b0:b0 + batch_size], dataset.test_y[b0:b0 + batch_size].astype(np.int32)
        m = len(yb)
        weight = np.zeros(batch_size, np.float32)
        weight[:m] = 1.0
        if m < batch_size:
            xb = np.concatenate([xb, np.zeros((batch_size - m, *xb.shape[1:]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros(batch_size - m, np.int32)])
        yield xb, yb, weight


def host_scalar(x) -> float:
    """A replicated scalar as a Python float, on one host or many."""
    return float(np.asarray(x.addressable_data(0)))


def local_rows(sharding, global_shape) -> tuple[int, int]:
    """[start, stop) of the batch rows held by this process's devices."""
    slices = [idx[0] for idx in sharding.addressable_devices_indices_map(global_shape).values()]
    start = min(s.start or 0 for s in slices)
    stop = max(global_shape[0] if s.stop is None else s.stop for s in slices)
    return start, stop


class Placement:
    """Where arrays live on the 1-D ``("batch",)`` mesh over ``devices``.

    Attributes:
      replicated: the sharding of parameters and optimizer state.
      batch_sharding: the sharding of batches, split along their first axis.
      batch_shape: ``(batch_size, H, W, C)`` of a training batch.
      eval_batch_size: rows per evaluation batch.
    """

    def __init__(self, devices, batch_size: int, eval_batch_size: int, image_shape: tuple[int, ...]):
        mesh = Mesh(np.array(devices), ("batch",))
        self.replicated = NamedSharding(mesh, P())
        self.batch_sharding = NamedSharding(mesh, P("batch"))
        self.batch_shape = (batch_size, *image_shape)
        self.eval_batch_size = eval_batch_size
        self._rows = local_rows(self.batch_sharding, self.batch_shape)
        self._eval_rows = local_rows(self.batch_sharding, (eval_batch_size, *image_shape))

    def _put(self, rows, b, x, y):
        xs = jax.make_array_from_process_local_data(self.batch_sharding, x[rows[0]:rows[1]], (b, *x.shape[1:]))
        ys = jax.make_array_from_process_local_data(self.batch_sharding, y[rows[0]:rows[1]], (b,))
        return xs, ys

    def train_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array]:
        """The global training batch from the full host batch ``x, y``."""
        return self._put(self._rows, self.batch_shape[0], x, y)

    def eval_batch(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[jax.Array, ...]:
        """The global evaluation batch ``(x, y, weight)`` from the full host batch."""
        (lo, hi), b = self._eval_rows, self.eval_batch_size
        xs, ys = self._put((lo, hi), b, x, y)
        return xs, ys, jax.make_array_from_process_local_data(self.batch_sharding, weight[lo:hi], (b,))
