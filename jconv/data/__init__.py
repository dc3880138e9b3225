"""Image classification data that works offline: nothing is ever downloaded.

Three sources, all returning a :class:`Dataset` of ``(N, H, W, C)`` float32 images in [0, 1]
(synthetic: roughly zero mean) and ``(N,)`` int32 labels:

* :func:`digits`: scikit-learn's bundled handwritten digits (1,797 images of 8×8, values 0..16),
  resized to the model's input, stratified train/test split by seed.
* :func:`textures`: random crops of scikit-image's bundled 512×512 grey textures (brick, grass,
  gravel by default), one class per image; train crops come from the left half of each image and
  test crops from the right half, so no test pixel was ever seen in training.
* :func:`synthetic`: random images with a learnable class signal, any size, for size sweeps.

:func:`batches` shuffles deterministically per ``(seed, epoch)``; :func:`load` picks a source by
name. Every function is deterministic given its seed.

:func:`open_dataset` (:mod:`jconv.data.sources`) selects any data set by name, these three, CIFAR,
image folders and the procedural set, as grain sources for :func:`jconv.train.train`.

>>> ds = digits(16, channels=3)
>>> ds.train_x.shape[1:], ds.train_x.dtype, ds.num_classes
((16, 16, 3), dtype('float32'), 10)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np

__all__ = ["Dataset", "digits", "textures", "synthetic", "batch_indices", "batches", "load", "DATASETS",
           "open_dataset", "SOURCES"]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train and test split of an image classification set.

    Images are ``(N, H, W, C)`` float32, or uint8 pixels that :func:`jconv.train.train` scales
    by 1/255 in its step; labels ``(N,)`` int32 in ``[0, num_classes)``.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    name: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        return tuple(self.train_x.shape[1:])

    def __repr__(self):
        return (f"Dataset({self.name!r}, train={self.train_x.shape}, test={self.test_x.shape}, "
                f"num_classes={self.num_classes})")


def _check_size(input_size, channels):
    if not (isinstance(input_size, (int, np.integer)) and input_size >= 1):
        raise ValueError(f"input_size must be a positive int, got {input_size!r}")
    if not (isinstance(channels, (int, np.integer)) and channels >= 1):
        raise ValueError(f"channels must be a positive int, got {channels!r}")


def _resize(images, input_size, method):
    """(N, h, w) float images → (N, input_size, input_size); skimage, antialiased when shrinking."""
    from skimage.transform import resize

    if method not in ("nearest", "bilinear"):
        raise ValueError(f"unknown resize method {method!r}; expected 'nearest' or 'bilinear'")
    n, h, w = images.shape
    if (h, w) == (input_size, input_size):
        return images
    order = 0 if method == "nearest" else 1
    out = resize(images, (n, input_size, input_size), order=order, mode="edge",
                 anti_aliasing=(order == 1 and input_size < min(h, w)), preserve_range=True)
    return out.astype(np.float32)  # (N, H, W)


def _to_channels(images, channels):
    return np.ascontiguousarray(np.repeat(images[..., None], channels, axis=-1))  # (N, H, W, C)


def digits(input_size: int = 8, *, channels: int = 1, seed: int = 0, test_fraction: float = 0.2,
           method: str = "bilinear") -> Dataset:
    """scikit-learn's bundled handwritten digits, resized to ``input_size × input_size``.

    Args:
      input_size: output height and width (8 keeps the original pixels).
      channels: the grey image is repeated to this many channels.
      seed: seed of the stratified train/test split.
      test_fraction: share of each class held out for testing.
      method: ``"bilinear"`` (antialiased when shrinking) or ``"nearest"``.

    Returns:
      A :class:`Dataset` named ``"digits"`` with 10 classes; values in [0, 1].
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    _check_size(input_size, channels)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0  # (N, 8, 8) in [0, 1]
    labels = bunch.target.astype(np.int32)
    images = np.clip(_resize(images, input_size, method), 0.0, 1.0)
    x = _to_channels(images, channels)
    train_x, test_x, train_y, test_y = train_test_split(
        x, labels, test_size=test_fraction, random_state=seed, stratify=labels)
    return Dataset(train_x, train_y, test_x, test_y, num_classes=10, name="digits")


TEXTURES = ("brick", "grass", "gravel")


def _random_crops(image, n, crop, rng):
    h, w = image.shape
    if crop > min(h, w):
        raise ValueError(f"crop {crop} does not fit a {h}×{w} region")
    top = rng.integers(0, h - crop + 1, size=n)
    left = rng.integers(0, w - crop + 1, size=n)
    rows = top[:, None] + np.arange(crop)  # (n, crop)
    cols = left[:, None] + np.arange(crop)  # (n, crop)
    return image[rows[:, :, None], cols[:, None, :]]  # (n, crop, crop)


def textures(input_size: int = 32, *, crops_per_class: int = 200, test_crops_per_class: int | None = None,
             crop_size: int | None = None, channels: int = 1, seed: int = 0,
             images: tuple[str, ...] = TEXTURES, method: str = "bilinear") -> Dataset:
    """Random crops of scikit-image's bundled grey images, one class per image.

    Train crops are drawn from the left half of every image, test crops from the right half, so
    train and test never share a pixel. Crops are ``crop_size`` square (default: ``input_size``,
    i.e. no resizing; a larger crop is shrunk to ``input_size``).

    Args:
      input_size: output height and width.
      crops_per_class: train crops per image.
      test_crops_per_class: test crops per image (default: a quarter of ``crops_per_class``, ≥ 1).
      crop_size: side of the crop taken from the 512×512 image, at most 256 (half the width).
      channels: the grey crop is repeated to this many channels.
      seed: seed of the crop positions and of the train order.
      images: names of ``skimage.data`` grey images, one class each (label = position).
      method: ``"bilinear"`` or ``"nearest"`` resizing, when ``crop_size != input_size``.

    Returns:
      A :class:`Dataset` named ``"textures"``; values in [0, 1].
    """
    import skimage.data

    _check_size(input_size, channels)
    crop = input_size if crop_size is None else crop_size
    if test_crops_per_class is None:
        test_crops_per_class = max(1, crops_per_class // 4)
    if crops_per_class < 1 or test_crops_per_class < 1:
        raise ValueError("crops_per_class and test_crops_per_class must be ≥ 1")
    rng = np.random.default_rng(seed)
    splits = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(images):
        loader = getattr(skimage.data, name, None)
        if loader is None:
            raise ValueError(f"skimage.data has no image {name!r}; e.g. {list(TEXTURES)}")
        image = np.asarray(loader())
        if image.ndim != 2:
            raise ValueError(f"skimage.data.{name} is not a grey image (shape {image.shape})")
        image = image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max if image.dtype.kind in "ui" else 1)
        half = image.shape[1] // 2
        for split, region, n in (("train", image[:, :half], crops_per_class),
                                 ("test", image[:, half:], test_crops_per_class)):
            splits[split][0].append(_random_crops(region, n, crop, rng))
            splits[split][1].append(np.full(n, label, np.int32))
    out = []
    for split in ("train", "test"):
        x = np.concatenate(splits[split][0])  # (N, crop, crop)
        y = np.concatenate(splits[split][1])
        order = rng.permutation(len(y))
        x = np.clip(_resize(x[order], input_size, method), 0.0, 1.0)
        out += [_to_channels(x.astype(np.float32), channels), y[order]]
    return Dataset(out[0], out[1], out[2], out[3], num_classes=len(images), name="textures")


def synthetic(n: int = 512, input_size: int = 32, channels: int = 3, num_classes: int = 10, *,
              seed: int = 0, test_fraction: float = 0.2, noise: float = 1.0) -> Dataset:
    """Gaussian noise images plus one fixed random pattern per class (a learnable signal).

    ``x = pattern[y] + noise · ε``, with ``pattern`` a smooth random image per class of unit
    standard deviation and ε standard normal. ``n`` is the total count, split by ``test_fraction``.

    Args:
      n: total number of images (train + test).
      input_size: height and width.
      channels: image channels.
      num_classes: number of classes (and patterns).
      seed: seed of the patterns, labels and noise.
      test_fraction: share held out for testing.
      noise: noise standard deviation; larger is harder.

    Returns:
      A :class:`Dataset` named ``"synthetic"``.
    """
    _check_size(input_size, channels)
    if num_classes < 2:
        raise ValueError(f"num_classes must be ≥ 2, got {num_classes}")
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n - n_test < 1:
        raise ValueError(f"n={n} with test_fraction={test_fraction} leaves an empty split")
    rng = np.random.default_rng(seed)
    coarse = max(1, input_size // 4)
    patterns = rng.standard_normal((num_classes, coarse, coarse, channels)).astype(np.float32)
    reps = -(-input_size // coarse)
    patterns = np.repeat(np.repeat(patterns, reps, axis=1), reps, axis=2)[:, :input_size, :input_size]  # (classes, H, W, C)
    y = rng.integers(0, num_classes, size=n).astype(np.int32)
    x = patterns[y] + np.float32(noise) * rng.standard_normal((n, input_size, input_size, channels), dtype=np.float32)
    x = x.astype(np.float32)  # (N, H, W, C)
    return Dataset(x[n_test:], y[n_test:], x[:n_test], y[:n_test], num_classes=num_classes, name="synthetic")


def batch_indices(n: int, batch_size: int, *, seed: int, epoch: int) -> np.ndarray:
    """``(n // batch_size, batch_size)`` example indices of one epoch, shuffled by ``(seed, epoch)``.

    The ragged last batch is dropped; every epoch has its own permutation, and any epoch can be
    computed without the ones before it (so a resumed run sees the same batches).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if n < batch_size:
        raise ValueError(f"batch_size {batch_size} is larger than the {n} training examples")
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    num = n // batch_size
    return perm[: num * batch_size].reshape(num, batch_size)  # (num_batches, B)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int, epoch: int
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x[idx], y[idx])`` for the batches of :func:`batch_indices`.

    >>> x, y = np.arange(10.0)[:, None], np.arange(10)
    >>> [len(b) for b, _ in batches(x, y, 4, seed=0, epoch=0)]
    [4, 4]
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    for idx in batch_indices(len(x), batch_size, seed=seed, epoch=epoch):
        yield x[idx], y[idx]


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": digits,
    "textures": textures,
    "synthetic": synthetic,
}


def load(name: str, **kwargs) -> Dataset:
    """The dataset ``name`` (one of :data:`DATASETS`) built with ``kwargs``.

    >>> load("synthetic", n=20, input_size=4, channels=1, num_classes=2, seed=0).train_x.shape
    (16, 4, 4, 1)
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name](**kwargs)


from jconv.data.sources import SOURCES, open_dataset  # noqa: E402  (sources builds on load)
