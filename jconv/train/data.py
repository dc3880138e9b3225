"""Training data for :mod:`jconv.train`: batches in seed/epoch order, placed on a data-parallel mesh.

The mesh is 1-D, ``Mesh(devices, ("batch",))``: batches are sharded along their first axis
(``P("batch")``), everything else is replicated (``P()``). Each process reads only the rows its
own devices hold and builds the global batch with ``jax.make_array_from_process_local_data``, so
the same code runs on one host or many.

Whatever :func:`jconv.train.train` is given reaches it as one :class:`TrainData`: a pair of
sources, read by :mod:`jconv.data.pipeline` (one batching path: batch ``t`` is a pure function
of the seed and ``t``, so a resumed run starts its iterator at its step). :func:`as_data` makes
it: a :class:`jconv.data.Dataset` becomes two :class:`jconv.data.sources.ArraySource` of its arrays as
they are; ``(train, test[, augment])`` sources (``jconv.data.open_dataset``'s result) are taken
as they are.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jconv.data import Dataset, pipeline
from jconv.data.sources import ArraySource


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


class TrainData:
    """A run's train and test sources, batched by :mod:`jconv.data.pipeline` (module docstring).

    Args:
      train: a random-access source of ``(uint8 or float32 (H, W, C), int)`` with
        ``num_classes``.
      test: the same for the test split (it may be empty).
      augment: ``None``, ``"cifar"`` or ``"folder"``.
      workers: grain worker processes (0: threads of this process; arrays in memory are copied
        to each worker).
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

    def train_batches(self, placement, config, start, stop):
        """``(step, x, y)`` placed on the mesh, for steps ``start`` to ``stop``."""
        iterator = pipeline.train_iterator(self.train, batch_size=config.batch_size, seed=config.seed,
                                           augment=self.augment, worker_count=self.workers, start=start)
        for step in range(start, stop):
            batch = next(iterator)
            yield step, *placement.local_train_batch(batch["image"], batch["label"])

    def eval_batches(self, placement):
        """``(x, y, weight)`` placed on the mesh, once over the test split, padding weighted 0."""
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


def as_data(dataset, workers: int = 0) -> TrainData:
    """The :class:`TrainData` of a :class:`jconv.data.Dataset` (checked by :func:`check_dataset`,
    its arrays as they are) or of ``(train, test[, augment])`` sources.

    Raises:
      ValueError: a ``Dataset`` that cannot be trained on.
      TypeError: anything else.
    """
    if isinstance(dataset, Dataset):
        check_dataset(dataset)
        return TrainData(*(ArraySource(x, y, num_classes=dataset.num_classes, name=dataset.name,
                                       value_range=None)
                           for x, y in ((dataset.train_x, dataset.train_y),
                                        (dataset.test_x, dataset.test_y))), None, workers)
    if isinstance(dataset, (tuple, list)) and len(dataset) in (2, 3):
        return TrainData(*dataset, workers=workers)
    raise TypeError(f"dataset must be a jconv.data.Dataset or a (train, test[, augment]) pair of sources, "
                    f"got {type(dataset).__name__}")
