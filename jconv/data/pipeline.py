"""Training and evaluation batches streamed with grain: every kind of data, one path.

A *source* is a grain ``RandomAccessDataSource``: ``len(source)`` and ``source[i] -> (image,
label)``, the image a uint8 or float32 ``(H, W, C)`` NumPy array and the label an int. A source
may also have ``take(indices) -> (images, labels)``, a whole batch at once (arrays in memory:
:class:`jconv.data.sources.ArraySource`); otherwise batches are read item by item.

:func:`train_iterator` yields ``{"image": (B, H, W, C) in the source's dtype, "label": int32
(B,)}`` forever, where ``B = batch_size // process_count`` is this process's part of the global
batch. Global step ``t`` is batch ``t mod E`` of epoch ``t // E`` of
:func:`jconv.data.batch_indices` (``E = len(source) // batch_size`` steps per epoch: a
permutation of ``(seed, epoch)``, the ragged end dropped), so a batch is a pure function of
``(seed, t)``: a process reads only its own rows, worker processes change nothing, and a run
resumed at step ``t`` starts its iterator there (``start=t``). In grain terms::

    MapDataset.range(E).repeat()                       # global steps
      .map_with_index(rows of batch t, augmented)      # RNG = f(seed, t, row)
      [start:].to_iter_dataset(ReadOptions(...)).mp_prefetch(...)

:func:`eval_iterator` goes over a split once, the last batch padded and masked.
:func:`save_args` / :func:`restore_args` put an iterator into an ``ocp.CheckpointManager`` step
beside the model (``ocp.args.Composite``); :func:`save` / :func:`restore` write one alone.

>>> import numpy as np
>>> src = [(np.full((4, 4, 1), i, np.uint8), i) for i in range(10)]
>>> it = train_iterator(src, batch_size=4, seed=0, process_index=0, process_count=1)
>>> batch = next(it)
>>> batch["image"].shape, batch["image"].dtype, batch["label"].dtype
((4, 4, 4, 1), dtype('uint8'), dtype('int32'))
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import flags

__all__ = ["train_iterator", "eval_iterator", "cifar_augment", "folder_augment", "AUGMENTATIONS",
           "save_args", "restore_args", "save", "restore"]


def cifar_augment(image: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Random crop with ``pad`` zero pixels on every side, then a horizontal flip with p = 1/2.

    The CIFAR recipe of He et al. (2016), Sec. 4.2: the ``(H, W, C)`` image is zero padded to
    ``(H + 2 pad, W + 2 pad, C)`` and an ``(H, W)`` window is taken at a uniform offset.
    Returns an array of the input's shape and dtype.
    """
    h, w = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))  # (H+2p, W+2p, C)
    i, j = rng.integers(0, 2 * pad + 1, size=2)
    crop = padded[i:i + h, j:j + w]  # (H, W, C)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def _resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(h, w, C)`` → ``(height, width, C)``, half-pixel centres, same dtype (rounded if integer)."""
    def taps(n_in, n_out):
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.intp)
        return lo, np.minimum(lo + 1, n_in - 1), (pos - lo).astype(np.float32)

    y0, y1, wy = taps(image.shape[0], height)
    x0, x1, wx = taps(image.shape[1], width)
    img = image.astype(np.float32)
    rows = img[y0] * (1 - wy)[:, None, None] + img[y1] * wy[:, None, None]  # (height, w, C)
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]  # (height, width, C)
    if np.issubdtype(image.dtype, np.integer):
        out = np.rint(out)
    return out.astype(image.dtype)


def _crop_box(h, w, rng, scale, ratio):
    """Inception's crop box ``(top, left, height, width)``: torchvision's RandomResizedCrop rule."""
    log_ratio = np.log(ratio)
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(*log_ratio))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    aspect = w / h
    if aspect < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif aspect > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        ch, cw = h, w
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def folder_augment(image: np.ndarray, rng: np.random.Generator, scale=(0.08, 1.0),
                   ratio=(3 / 4, 4 / 3)) -> np.ndarray:
    """Inception-style random-resized crop back to the input size, then a horizontal flip.

    Szegedy et al. (2015): a box covering a uniform fraction ``scale`` of the area, with an aspect
    ratio log-uniform in ``ratio``, at a uniform position (10 tries, then the largest central box
    within ``ratio``), resized bilinearly to ``(H, W)``. Returns the input's shape and dtype.
    """
    h, w = image.shape[:2]
    top, left, ch, cw = _crop_box(h, w, rng, scale, ratio)
    out = _resize_bilinear(image[top:top + ch, left:left + cw], h, w)  # (H, W, C)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


AUGMENTATIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "cifar": cifar_augment,
    "folder": folder_augment,
}


def _check_int(name, value, low, high=None):
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value >= high):
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")


def _shard(batch_size, process_index, process_count):
    """``(index, count, per-process batch)`` checked; ``None, None`` means this JAX process."""
    if (process_index is None) != (process_count is None):
        raise ValueError(f"process_index and process_count must be given together, got "
                         f"process_index={process_index!r}, process_count={process_count!r}")
    if process_count is None:
        process_index, process_count = jax.process_index(), jax.process_count()
    _check_int("process_count", process_count, 1)
    _check_int("process_index", process_index, 0, process_count)
    _check_int("batch_size", batch_size, 1)
    if batch_size % process_count:
        raise ValueError(f"batch_size must be a multiple of process_count={process_count}, "
                         f"got {batch_size}")
    return process_index, process_count, batch_size // process_count


def _check_source(source):
    if len(source) == 0:
        raise ValueError(f"source must hold at least one example, got len(source)=0 ({source!r})")
    image, _ = source[0]
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.dtype in (np.uint8, np.float32)):
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"source[0] image must be a uint8 or float32 (H, W, C) array, got {got}")
    return image


def _epoch_order(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """:func:`jconv.data.batch_indices` of one epoch, the last two epochs kept per process."""
    return _cached_order(n, batch_size, seed, epoch)


@functools.lru_cache(maxsize=2)
def _cached_order(n, batch_size, seed, epoch):
    from jconv.data import batch_indices

    return batch_indices(n, batch_size, seed=seed, epoch=epoch)


def _take(source, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(images (B, H, W, C), labels (B,))`` of ``source`` at ``idx``: its ``take`` where it has
    one (arrays in memory: one gather), else item by item."""
    take = getattr(source, "take", None)
    if take is not None:
        return take(idx)
    items = [source[int(i)] for i in idx]
    return np.stack([image for image, _ in items]), np.array([label for _, label in items])


def _train_batch(step, _, *, source, batch_size, seed, rows, augment, augment_seed):
    """This process's ``rows`` of global batch ``step`` (module docstring)."""
    epoch, i = divmod(step, len(source) // batch_size)
    idx = _epoch_order(len(source), batch_size, seed, epoch)[i, rows[0]:rows[1]]
    images, labels = _take(source, idx)
    if augment is not None:
        images = np.stack([augment(image, np.random.default_rng([augment_seed, step, row]))
                           for row, image in zip(range(*rows), images)])
    return {"image": images, "label": labels.astype(np.int32)}


def _eval_batch(b, _, *, source, batch_size, rows, blank):
    """This process's ``rows`` of evaluation batch ``b``, past the end padded (``blank``: a
    ``(0, H, W, C)`` array of the images' dtype) and masked."""
    n = len(source)
    idx = np.arange(b * batch_size + rows[0], b * batch_size + rows[1])
    real = idx[idx < n]
    images, labels = _take(source, real) if len(real) else (blank, np.zeros(0, np.int32))
    pad = len(idx) - len(real)
    if pad:
        images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
        labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
    return {"image": images, "label": labels.astype(np.int32), "mask": idx < n}


def _make_worker_flag_readable():
    """grain 0.2.18 reads ``--grain_enable_multiprocess_worker_profiling`` when starting workers,
    which raises ``UnparsedFlagAccessError`` unless absl parsed the flags (google/grain#1355); mark
    that one flag present at its default, as grain does for its own debug flags in workers."""
    name = "grain_enable_multiprocess_worker_profiling"
    if name in flags.FLAGS and not flags.FLAGS.is_parsed():
        flags.FLAGS[name].present = True


def _iterate(ds, worker_count, prefetch):
    _check_int("worker_count", worker_count, 0)
    _check_int("prefetch", prefetch, 0)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=prefetch, prefetch_buffer_size=prefetch))
    if worker_count:
        _make_worker_flag_readable()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=worker_count, per_worker_buffer_size=max(prefetch, 1)))
    return iter(it_ds)


def train_iterator(source, *, batch_size: int, seed: int, augment: str | None = None,
                   process_index: int | None = None, process_count: int | None = None,
                   worker_count: int = 0, prefetch: int = 2, start: int = 0) -> grain.DatasetIterator:
    """Endless shuffled, augmented training batches from step ``start``: this process's rows of
    each global batch.

    Global step ``t`` is batch ``t mod E`` of epoch ``t // E`` of
    :func:`jconv.data.batch_indices` with ``seed`` (``E = len(source) // batch_size``; every
    epoch has its own permutation and holds each example at most once, the ragged end dropped);
    process ``p`` yields rows ``[p B, (p + 1) B)`` of it, ``B = batch_size / process_count``.
    Augmentation draws from ``np.random.default_rng([a, t, row])``, ``a`` derived from ``seed``.

    Invariant, for one ``seed``, ``batch_size``, ``augment`` and source: the global batch of
    each step (the processes' batches concatenated in process order) is the same array, rows,
    augmentations and order, for every ``process_count`` dividing ``batch_size``, every
    ``worker_count``, every ``prefetch`` and every ``start`` (an iterator from ``start = t``
    continues one from 0 exactly). Not invariant: which rows a process gets (they depend on
    ``process_count``); anything under another ``batch_size``, ``seed`` or source length.

    Args:
      source: random-access source of ``(uint8 or float32 (H, W, C), int)`` pairs (module
        docstring).
      batch_size: global batch size ``G``, a multiple of ``process_count``, at most ``len(source)``.
      seed: non-negative int; the shuffle and the augmentation seed come from it.
      augment: ``None``, ``"cifar"`` (:func:`cifar_augment`) or ``"folder"``
        (:func:`folder_augment`).
      process_index: this process, in ``[0, process_count)``; with ``process_count``, or both
        ``None`` for ``jax.process_index()`` and ``jax.process_count()``.
      process_count: number of processes sharing each global batch.
      worker_count: grain worker processes preparing batches (0: threads in this process).
      prefetch: batches prepared ahead, per process and per worker.
      start: the first global step.

    Returns:
      A grain ``DatasetIterator`` of ``{"image": (B, H, W, C) in the source's dtype, "label":
      int32 (B,)}``, with ``get_state``/``set_state``.

    Raises:
      ValueError: an argument is out of range, or ``source[0]`` is not a uint8 or float32
        ``(H, W, C)`` image.
    """
    index, count, local = _shard(batch_size, process_index, process_count)
    _check_int("seed", seed, 0)
    _check_int("start", start, 0)
    if augment is not None and augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be None or one of {sorted(AUGMENTATIONS)}, got {augment!r}")
    _check_source(source)
    if len(source) < batch_size:
        raise ValueError(f"batch_size {batch_size} is larger than the {len(source)} examples of {source!r}")
    augment_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
    batch = functools.partial(_train_batch, source=source, batch_size=batch_size, seed=seed,
                              rows=(index * local, (index + 1) * local),
                              augment=AUGMENTATIONS.get(augment), augment_seed=augment_seed)
    ds = grain.MapDataset.range(len(source) // batch_size).repeat().map_with_index(batch)
    return _iterate(ds[start:] if start else ds, worker_count, prefetch)


def eval_iterator(source, *, batch_size: int, process_index: int | None = None,
                  process_count: int | None = None, worker_count: int = 0,
                  prefetch: int = 2) -> grain.DatasetIterator:
    """One pass over ``source`` in order, every process yielding ``ceil(N / batch_size)`` batches.

    The split, padded to a multiple of ``batch_size`` ``G``, is cut into global batches as in
    :func:`train_iterator`: process ``p`` yields rows ``[p B, (p + 1) B)`` of each, ``B = G /
    process_count``. Padding rows have a zero image, label 0 and ``mask`` False, so summing a
    per-example metric times ``mask`` over all processes and batches counts each of the ``N``
    examples exactly once.

    Args:
      source: as in :func:`train_iterator`.
      batch_size: global batch size ``G``, a multiple of ``process_count``.
      process_index: as in :func:`train_iterator`.
      process_count: as in :func:`train_iterator`.
      worker_count: as in :func:`train_iterator`.
      prefetch: as in :func:`train_iterator`.

    Returns:
      A grain ``DatasetIterator`` of ``{"image": (B, H, W, C) in the source's dtype, "label": int32
      (B,), "mask": bool (B,)}``.

    Raises:
      ValueError: as :func:`train_iterator`.
    """
    index, count, local = _shard(batch_size, process_index, process_count)
    image = _check_source(source)
    batch = functools.partial(_eval_batch, source=source, batch_size=batch_size,
                              rows=(index * local, (index + 1) * local),
                              blank=np.zeros((0, *image.shape), image.dtype))
    ds = grain.MapDataset.range(-(-len(source) // batch_size)).map_with_index(batch)
    return _iterate(ds, worker_count, prefetch)


def save_args(iterator: grain.DatasetIterator) -> ocp.args.CheckpointArgs:
    """The orbax save argument for ``iterator``'s state, for one item of ``ocp.args.Composite``.

    grain's orbax handler (``grain.checkpoint.CheckpointHandler``) writes the state as JSON to
    ``process_{i}-of-{n}.json``, ``i, n = jax.process_index(), jax.process_count()`` (not the
    ``process_index=`` given to the iterator), so each JAX process saves its own state into the
    same checkpoint step::

        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(train_state), data=pipeline.save_args(it)))
    """
    return grain.checkpoint.CheckpointSave(iterator)


def restore_args(iterator: grain.DatasetIterator) -> ocp.args.CheckpointArgs:
    """The orbax restore argument that sets ``iterator``'s state in place.

    ``iterator`` must come from the same arguments, ``worker_count`` and process count as the
    saved one; ``manager.restore(step, args=ocp.args.Composite(data=pipeline.restore_args(it),
    ...))["data"]`` is ``it``, continuing where the saved one stopped.
    """
    return grain.checkpoint.CheckpointRestore(iterator)


def save(directory: str | Path, iterator: grain.DatasetIterator) -> None:
    """Writes ``iterator``'s state alone to the new orbax checkpoint ``directory``."""
    ocp.Checkpointer(grain.checkpoint.CheckpointHandler()).save(
        Path(directory).absolute(), args=save_args(iterator))


def restore(directory: str | Path, iterator: grain.DatasetIterator) -> grain.DatasetIterator:
    """Sets ``iterator``'s state from ``directory`` (written by :func:`save`); returns it."""
    return ocp.Checkpointer(grain.checkpoint.CheckpointHandler()).restore(
        Path(directory).absolute(), args=restore_args(iterator))
