"""Training data for :mod:`jconv.train`: batches in seed/epoch order, placed on a data-parallel mesh.

The mesh is 1-D, ``Mesh(devices, ("batch",))``: batches are sharded along their first axis
(``P("batch")``), everything else is replicated (``P()``). Each process takes the rows its own
devices hold and builds the global batch with ``jax.make_array_from_process_local_data``, so the
same code runs on one host or many.

Two kinds of data feed a run, behind one interface (``n_train``, ``n_test``, ``image_shape``,
``num_classes``, ``iterator``, ``train_batches``, ``eval_batches``): :class:`InMemory`, a
:class:`jconv.data.Dataset` whose full host batches are sliced to this process's rows, and
:class:`Streamed`, a pair of grain sources read by :mod:`jconv.data.pipeline`, whose iterators
yield only this process's rows and whose train iterator is checkpointed with the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jconv.data import Dataset, batch_indices
from jconv.data import pipeline


def check_dataset(dataset: Dataset) -> None:
    """Raises ValueError unless ``dataset`` can be trained on.

    Images must be float32 ``(N, H, W, C)``, or uint8 pixels (the step scales them by 1/255:
    a large set held in a quarter of the memory), of one shape in both splits, labels integers
    in ``[0, num_classes)``.
    """
    x, y = dataset.train_x, dataset.train_y
    if x.ndim != 4 or dataset.test_x.ndim != 4:
        raise ValueError(f"dataset {dataset.name!r}: images must be (N, H, W, C), got {x.shape}")
    if x.shape[1:] != dataset.test_x.shape[1:]:
        raise ValueError(f"dataset {dataset.name!r}: train images {x.shape[1:]} vs test {dataset.test_x.shape[1:]}")
    for split, images in (("train", x), ("test", dataset.test_x)):
        if images.dtype not in (np.float32, np.uint8):
            raise ValueError(f"dataset {dataset.name!r}: {split} images must be float32 or uint8, "
                             f"got {images.dtype}")
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

    def replicate(self, tree):
        """Copies of ``tree``'s arrays replicated over the mesh, from every process's equal values.

        ``jax.device_put`` cannot target devices of other processes; each process instead
        gives its full copy as its local data (PRNG keys as their raw key data).
        """
        def put(a):
            if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
                impl = jax.random.key_impl(a)
                data = put(jax.random.key_data(a))
                return jax.jit(lambda d: jax.random.wrap_key_data(d, impl=impl),
                               out_shardings=self.replicated)(data)
            return jax.make_array_from_process_local_data(self.replicated, np.asarray(a), a.shape)
        return jax.tree.map(put, tree)

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

    def _put_local(self, rows, b, arrays):
        lo, hi = rows
        if arrays[0].shape[0] != hi - lo:
            raise ValueError(f"this process holds batch rows [{lo}, {hi}) of {b}, but its data "
                             f"iterator gave {arrays[0].shape[0]} rows")
        return tuple(jax.make_array_from_process_local_data(self.batch_sharding, a, (b, *a.shape[1:]))
                     for a in arrays)

    def local_train_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[jax.Array, jax.Array]:
        """The global training batch from this process's rows ``x, y`` of it."""
        return self._put_local(self._rows, self.batch_shape[0], (x, y))

    def local_eval_batch(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[jax.Array, ...]:
        """The global evaluation batch ``(x, y, weight)`` from this process's rows of it."""
        return self._put_local(self._eval_rows, self.eval_batch_size, (x, y, weight))


class InMemory:
    """A :class:`jconv.data.Dataset`: every process computes the global batch and takes its rows."""

    iterator = None

    def __init__(self, dataset: Dataset):
        check_dataset(dataset)
        self.dataset = dataset
        self.n_train, self.n_test = len(dataset.train_y), len(dataset.test_y)
        self.image_shape, self.num_classes = tuple(dataset.train_x.shape[1:]), dataset.num_classes

    def train_batches(self, placement, config, start, stop, steps_per_epoch):
        """``(step, x, y)`` placed on the mesh, for steps ``start`` to ``stop``."""
        for step, x, y in train_batches(self.dataset, config.batch_size, config.seed, start, stop,
                                        steps_per_epoch):
            yield step, *placement.train_batch(x, y)

    def eval_batches(self, placement):
        """``(x, y, weight)`` placed on the mesh, over the test split."""
        for xb, yb, weight in eval_batches(self.dataset, placement.eval_batch_size):
            yield placement.eval_batch(xb, yb, weight)


class Streamed:
    """Train and test sources streamed by grain (:mod:`jconv.data.pipeline`).

    Call :meth:`open` before training: it makes the train iterator (``self.iterator``), which a
    checkpoint restore then moves to where the saved run stopped.

    Args:
      train: a random-access source of ``(uint8 (H, W, C), int)``.
      test: the same for the test split.
      augment: ``None``, ``"cifar"`` or ``"folder"``.
      workers: grain worker processes (0: threads of this process).
    """

    def __init__(self, train, test, augment: str | None = None, workers: int = 0):
        self.train, self.test, self.augment, self.workers = train, test, augment, workers
        self.n_train, self.n_test = len(train), len(test)
        image, _ = train[0]
        self.image_shape = tuple(np.shape(image))
        test_shape = tuple(np.shape(test[0][0])) if self.n_test else self.image_shape
        if test_shape != self.image_shape:
            raise ValueError(f"train images {self.image_shape} vs test images {test_shape}")
        self.num_classes = int(train.num_classes)
        self.iterator = None

    def open(self, config) -> None:
        """Makes the train iterator of ``config``'s batch size and seed."""
        self.iterator = pipeline.train_iterator(self.train, batch_size=config.batch_size, seed=config.seed,
                                                augment=self.augment, worker_count=self.workers)

    def train_batches(self, placement, config, start, stop, steps_per_epoch):
        """``(step, x, y)`` placed on the mesh: the iterator's next batch for each step."""
        for step in range(start, stop):
            batch = next(self.iterator)
            yield step, *placement.local_train_batch(batch["image"], batch["label"])

    def eval_batches(self, placement):
        """``(x, y, weight)`` placed on the mesh, once over the test split, padding masked out."""
        if not self.n_test:
            return
        for batch in pipeline.eval_iterator(self.test, batch_size=placement.eval_batch_size,
                                            worker_count=self.workers):
            yield placement.local_eval_batch(batch["image"], batch["label"],
                                             batch["mask"].astype(np.float32))


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a run spreads over devices and epochs."""

    num_devices: int
    eval_batch_size: int
    steps_per_epoch: int


def layout(n_train: int, config) -> Layout:
    """The device count, evaluation batch size and epoch length of a run on ``n_train`` examples.

    Args:
      n_train: the number of training examples.
      config: the run's :class:`jconv.train.TrainConfig`.

    Raises:
      ValueError: more devices than there are, a batch size that does not split over the devices,
        or fewer training examples than one batch.
    """
    available = len(jax.devices())
    n = available if config.num_devices is None else config.num_devices
    if not 1 <= n <= available:
        raise ValueError(f"num_devices={config.num_devices}, but {available} devices are available")
    eval_b = config.eval_batch_size or config.batch_size
    for name, b in (("batch_size", config.batch_size), ("eval_batch_size", eval_b)):
        if b % n:
            raise ValueError(f"{name}={b} does not split over {n} devices; use a multiple of {n} "
                             f"(or set num_devices)")
    if n_train < config.batch_size:
        raise ValueError(f"batch_size {config.batch_size} is larger than the {n_train} training examples")
    return Layout(n, eval_b, n_train // config.batch_size)


def make_data(dataset, augment=None, workers=0):
    """:class:`InMemory` for a ``Dataset``; :class:`Streamed` for ``(train, test[, augment])``."""
    if isinstance(dataset, Dataset):
        return InMemory(dataset)
    if isinstance(dataset, (tuple, list)) and len(dataset) in (2, 3):
        if len(dataset) == 3:
            augment = dataset[2]
        return Streamed(dataset[0], dataset[1], augment, workers)
    raise TypeError(f"dataset must be a jconv.data.Dataset or a (train, test[, augment]) pair of sources, "
                    f"got {type(dataset).__name__}")
