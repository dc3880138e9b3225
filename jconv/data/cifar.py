"""CIFAR-10 and CIFAR-100 read from the "python version" files their authors distribute.

Nothing is downloaded: :func:`open_cifar` reads a local folder (``cifar-10-batches-py`` or
``cifar-100-python`` as unpacked from the archives), checks every file before returning, and
holds the images in memory (CIFAR is about 180 MB) as ``(N, H, W, C) = (N, 32, 32, 3)`` uint8.

Each batch file is a pickled dict whose ``b"data"`` is uint8 ``(N, 3072)``: per image the red,
then the green, then the blue plane, each 32×32 row-major, so pixel ``(row, col)`` of channel
``c`` sits at column ``1024·c + 32·row + col``. The pickles are read by
:class:`~jconv.data.safe_pickle.SafeUnpickler`, which admits only the globals that format holds
(what NumPy needs to rebuild an array, and protocol 2's bytes); any other global is refused before
anything of the file runs, every array must receive its data from the file, and what a file makes
is bounded by its size. Labels must be a flat list of ints, so they too take at most 8 bytes per
label, each written in at least 2.

The returned sources follow grain's ``RandomAccessDataSource`` protocol: ``len(source)`` and
``source[i] == (image, label)`` with ``image`` a uint8 ``(H, W, C)`` array and ``label`` an int.
"""

from __future__ import annotations

import dataclasses
import operator
from pathlib import Path

import numpy as np

from jconv.data.errors import DataError
from jconv.data.safe_pickle import SafeUnpickler, loads

__all__ = ["CifarSource", "SafeUnpickler", "open_cifar", "VARIANTS"]

SIDE, CHANNELS = 32, 3
ROW = SIDE * SIDE * CHANNELS  # 3072 bytes per image


@dataclasses.dataclass(frozen=True)
class Variant:
    """Where one CIFAR variant keeps its splits, labels and class names."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    labels: bytes
    names: bytes


VARIANTS = {
    "cifar10": Variant("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                       ("test_batch",), "batches.meta", b"labels", b"label_names"),
    "cifar100": Variant("cifar-100-python", ("train",), ("test",), "meta", b"fine_labels",
                        b"fine_label_names"),
}


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class CifarSource:
    """One split of CIFAR in memory: ``images`` ``(N, 32, 32, 3)`` uint8, ``labels`` ``(N,)`` int64.

    ``source[i]`` is ``(images[i], int(labels[i]))``, the image an ``(H, W, C)`` uint8 array.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str
    split: str
    path: Path

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (SIDE, SIDE, CHANNELS)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index) -> tuple[np.ndarray, int]:
        index = operator.index(index)
        return self.images[index], int(self.labels[index])

    def __repr__(self):
        return f"CifarSource({self.name!r}, split={self.split!r}, path={str(self.path)!r}, size={len(self)})"


def _load(path: Path) -> dict:
    """The dict pickled in ``path``, read by :class:`SafeUnpickler`; keys as bytes."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
        obj = loads(blob, path)
    except DataError:
        raise
    except OSError as err:
        raise DataError(path, f"cannot be read ({err.strerror or err})", "a readable file") from err
    except Exception as err:  # a damaged pickle can fail in any of the unpickler's steps
        raise DataError(path, f"is truncated or not a pickle ({type(err).__name__}: {err})",
                        "an intact CIFAR python-version file") from err
    if not isinstance(obj, dict):
        raise DataError(path, f"holds a {type(obj).__name__}", "a pickled dict")
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _require(path: Path, batch: dict, key: bytes):
    if key not in batch:
        raise DataError(path, f"has no key {key!r} (keys: {sorted(map(repr, batch))})",
                        f"a dict with {key!r}")
    return batch[key]


def _class_names(path: Path, key: bytes) -> tuple[str, ...]:
    names = _require(path, _load(path), key)
    if not (isinstance(names, (list, tuple)) and names and
            all(isinstance(n, (bytes, str)) for n in names)):
        raise DataError(path, f"{key!r} is not a non-empty list of names", "a list of bytes or str")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def _batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(data (N, 3072) uint8, labels (N,) int64)`` of one batch file, checked."""
    batch = _load(path)
    data, labels = _require(path, batch, b"data"), _require(path, batch, label_key)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == ROW and len(data) > 0):
        got = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise DataError(path, f"b'data' is a {got}", f"a uint8 array of shape (N, {ROW}), N ≥ 1")
    labels = _labels(path, labels, label_key)
    if len(labels) != len(data):
        raise DataError(path, f"has {len(labels)} labels for {len(data)} images",
                        "one label per row of b'data'")
    bad = next((i for i, y in enumerate(labels) if not 0 <= y < num_classes), None)
    if bad is not None:
        raise DataError(path, f"label {labels[bad]} at index {bad} is out of range",
                        f"labels in [0, {num_classes})")
    return data, np.array(labels, dtype=np.int64)


def _labels(path: Path, labels, key: bytes) -> list:
    """``labels`` as a flat list of ints (never a nested list, which NumPy would blow up)."""
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        return labels.tolist()
    if isinstance(labels, (list, tuple)) and all(type(y) is int or isinstance(y, np.integer)
                                                 for y in labels):
        return list(labels)
    got = (f"a {labels.dtype} array of shape {labels.shape}" if isinstance(labels, np.ndarray) else
           f"a {type(labels).__name__} holding {', '.join(sorted({type(y).__name__ for y in labels}))}"
           if isinstance(labels, (list, tuple)) else f"a {type(labels).__name__}")
    raise DataError(path, f"{key!r} is not a list of ints ({got})", "one int label per image")


def _split(folder: Path, files: tuple[str, ...], label_key: bytes, num_classes: int):
    parts = [_batch(folder / f, label_key, num_classes) for f in files]
    data = np.concatenate([d for d, _ in parts])
    images = data.reshape(-1, CHANNELS, SIDE, SIDE).transpose(0, 2, 3, 1)  # (N, H, W, C)
    return np.ascontiguousarray(images), np.concatenate([y for _, y in parts])


def open_cifar(data_dir, variant: str = "cifar10") -> tuple[CifarSource, CifarSource]:
    """The train and test splits of CIFAR-10 or CIFAR-100 from a local "python version" folder.

    CIFAR-10's folder holds ``data_batch_1`` … ``data_batch_5``, ``test_batch`` and
    ``batches.meta`` (``b"label_names"``); CIFAR-100's holds ``train``, ``test`` and ``meta``, and
    its 100 fine labels are used (``b"fine_labels"``, ``b"fine_label_names"``). A row ``r`` of
    ``b"data"`` becomes ``r.reshape(C, H, W).transpose(1, 2, 0)``.

    Args:
      data_dir: the unpacked folder, e.g. ``.../cifar-10-batches-py``.
      variant: ``"cifar10"`` or ``"cifar100"``.

    Returns:
      ``(train, test)`` :class:`CifarSource` s (50,000 and 10,000 images for the real sets),
      images ``(N, 32, 32, 3)`` uint8 and labels in ``[0, num_classes)``.

    Raises:
      ValueError: an unknown ``variant``.
      DataError: a missing folder or file, a file that cannot be read or is truncated, a pickle
        naming a refused global, an array not given its data or whose data does not match its
        shape and dtype, a file making more than ``EXPANSION`` times its size (see
        :mod:`jconv.data.safe_pickle`), or a file of the wrong layout (keys, data shape or dtype,
        labels not a flat list of ints, label count or range).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown CIFAR variant {variant!r}; expected one of {sorted(VARIANTS)}")
    spec, folder = VARIANTS[variant], Path(data_dir)
    files = (*spec.train, *spec.test, spec.meta)
    expected = f"the {variant} python-version folder ({spec.folder}) holding {', '.join(files)}"
    if not folder.is_dir():
        raise DataError(folder, "is not a folder" if folder.exists() else "does not exist", expected)
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise DataError(folder, f"is missing {', '.join(missing)}", expected)
    names = _class_names(folder / spec.meta, spec.names)
    train, test = (CifarSource(*_split(folder, split_files, spec.labels, len(names)), names,
                               variant, split, folder)
                   for split, split_files in (("train", spec.train), ("test", spec.test)))
    return train, test
