"""One selection function for every data set: :func:`open_dataset` returns grain sources.

Every name gives a ``(train, test)`` pair of random-access sources (``len(s)``, ``s[i] ->
(uint8 (H, W, C), int)``, attributes ``num_classes``, ``class_names``, ``name``,
``image_shape``) at the model's input size, and the augmentation of
:func:`jconv.data.pipeline.train_iterator` that goes with it:

=================  ==========================================  ================  ==========
name               read from                                   needs data_dir    augment
=================  ==========================================  ================  ==========
``cifar10``        :func:`jconv.data.cifar.open_cifar`          yes               ``cifar``
``cifar100``       :func:`jconv.data.cifar.open_cifar`          yes               ``cifar``
``image_folder``   :func:`jconv.data.image_folder.open_...`     yes               ``folder``
``procedural``     :func:`jconv.data.procedural.open_...`       no                none
``digits``         :func:`jconv.data.digits` (in memory)        no                none
``textures``       :func:`jconv.data.textures` (in memory)      no                none
``synthetic``      :func:`jconv.data.synthetic` (in memory)     no                none
=================  ==========================================  ================  ==========

**Sizes.** Images are resized bilinearly to ``image_size``: CIFAR's 32×32 is upsampled (to 67×67
for AlexNet, whose table needs at least 67); the CIFAR crop-and-flip augmentation then runs at
that size, on the upsampled image, padding 4 pixels of it. Image folders are decoded at
``image_size`` directly, and the procedural set is rendered at it (it renders at 16 at least and
is shrunk below that).

**Channels.** ``channels=None`` keeps the data's own (3 for CIFAR, image folders and the
procedural set; 1 for digits and textures, ``3`` for synthetic). Asking 1 of an RGB source gives
its luminance (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B); asking 3 of a grey one repeats it.

**In-memory sets as sources.** :class:`ArraySource` quantises a :class:`jconv.data.Dataset`'s
float images to uint8, ``round(255 (x - lo) / (hi - lo))`` clipped to [0, 255], with ``[lo, hi] =
[0, 1]`` for digits and textures (so the pipeline's ``/ 255`` gives them back within 1/510) and the
train split's minimum and maximum for the zero-mean synthetic set (test pixels outside it clip).
Training on these sources is therefore not bit-identical to training on the ``Dataset`` itself.

**Checks up front.** Everything a run will read is checked before :func:`open_dataset` returns:
CIFAR files are read whole; every image of an image folder is decoded once (``verify=False``
checks only headers, for folders too large to decode twice). A bad folder or file raises
:class:`jconv.data.errors.DataError`, one line naming the path and what was expected.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np
from PIL import Image

__all__ = ["ArraySource", "AdaptedSource", "Selection", "open_dataset", "SOURCES", "NEEDS_DATA_DIR"]

SOURCES = ("cifar10", "cifar100", "image_folder", "procedural", "digits", "textures", "synthetic")
NEEDS_DATA_DIR = ("cifar10", "cifar100", "image_folder")
AUGMENT = {"cifar10": "cifar", "cifar100": "cifar", "image_folder": "folder"}
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class Selection(NamedTuple):
    """What :func:`open_dataset` returns: unpacks as ``train, test, augment``."""

    train: object
    test: object
    augment: str | None


class ArraySource:
    """In-memory ``(N, H, W, C)`` images and ``(N,)`` labels as a source.

    With ``value_range=None`` the images are kept as they are (uint8 or float32); with ``(lo,
    hi)``, float images become uint8 ``q = clip(round(255 (images - lo) / (hi - lo)), 0, 255)``,
    computed once. ``source[i]`` is ``(images[i], int(labels[i]))`` and ``take(idx)`` a whole
    batch, ``(images[idx], labels[idx])``, in one gather (:mod:`jconv.data.pipeline`).

    Args:
      images: ``(N, H, W, C)`` images.
      labels: ``(N,)`` integer labels in ``[0, num_classes)``.
      num_classes: number of classes.
      name: the data set's name.
      value_range: ``(lo, hi)`` mapped to 0 and 255, ``lo < hi``; or None.

    >>> src = ArraySource(np.zeros((5, 2, 2, 1), np.float32), np.arange(5) % 2, num_classes=2,
    ...                   name="zeros", value_range=None)
    >>> images, labels = src.take(np.array([4, 0]))
    >>> images.shape, images.dtype, labels.tolist()
    ((2, 2, 2, 1), dtype('float32'), [0, 0])
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, num_classes: int, name: str,
                 value_range: tuple[float, float] | None = (0.0, 1.0)):
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
        if len(labels) != len(images):
            raise ValueError(f"labels must have one entry per image: {len(labels)} vs {len(images)}")
        if value_range is not None:
            lo, hi = (float(v) for v in value_range)
            if not lo < hi:
                raise ValueError(f"value_range must be (lo, hi) with lo < hi, got {value_range!r}")
            scaled = (images.astype(np.float32) - np.float32(lo)) * np.float32(255 / (hi - lo))
            images, value_range = np.clip(np.rint(scaled), 0, 255).astype(np.uint8), (lo, hi)
        self.images, self.labels = images, np.asarray(labels)  # (N, H, W, C), (N,)
        self.num_classes, self.name, self.value_range = int(num_classes), name, value_range
        self.class_names = tuple(str(k) for k in range(self.num_classes))
        self.image_shape = tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index) -> tuple[np.ndarray, int]:
        index = operator.index(index)
        return self.images[index], int(self.labels[index])

    def take(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(images[indices], labels[indices])``."""
        return self.images[indices], self.labels[indices]

    def __repr__(self):
        return f"ArraySource({self.name!r}, size={len(self)}, image_shape={self.image_shape})"


class AdaptedSource:
    """``source`` with its images resized bilinearly to ``image_size`` and turned to ``channels``.

    Args:
      source: a random-access source of ``(uint8 (H, W, C), int)`` with ``C`` 1 or 3.
      image_size: output height and width.
      channels: 1 (luminance of RGB) or 3 (grey repeated), or the source's own.
    """

    def __init__(self, source, image_size: int, channels: int):
        self.source, self.image_size, self.channels = source, int(image_size), int(channels)
        self.num_classes, self.class_names = source.num_classes, tuple(source.class_names)
        self.name = getattr(source, "name", type(source).__name__)
        self.image_shape = (self.image_size, self.image_size, self.channels)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index) -> tuple[np.ndarray, int]:
        image, label = self.source[index]
        return _adapt(image, self.image_size, self.channels), label

    def __repr__(self):
        return f"AdaptedSource({self.source!r}, image_shape={self.image_shape})"


def _adapt(image: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 ``(h, w, c)`` → uint8 ``(size, size, channels)``."""
    c = image.shape[-1]
    if c != channels:
        if channels == 1:
            image = np.rint(image.astype(np.float32) @ _LUMA)[..., None].astype(np.uint8)  # (h, w, 1)
        else:
            image = np.repeat(image, channels, axis=-1)  # (h, w, 3)
    if image.shape[:2] != (size, size):
        planes = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., k])).resize(
            (size, size), Image.Resampling.BILINEAR)) for k in range(image.shape[-1])]
        image = np.stack(planes, axis=-1)  # (size, size, channels)
    return image


def _check_args(name, data_dir, image_size, channels):
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(SOURCES)}")
    if not (isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool) and image_size >= 1):
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    if name in NEEDS_DATA_DIR and not data_dir:
        raise ValueError(f"dataset {name!r} reads files: data_dir must name its folder "
                         f"(--config.data_dir=PATH), got {data_dir!r}")


def _open(name, data_dir, image_size, channels, seed, train_size, test_size, verify, difficulty):
    """``(train, test)`` before resizing; in-memory sets already at ``image_size``."""
    from jconv import data

    if name in ("cifar10", "cifar100"):
        from jconv.data.cifar import open_cifar
        return open_cifar(data_dir, name)
    if name == "image_folder":
        from jconv.data.image_folder import open_image_folder
        train, test = open_image_folder(data_dir, int(image_size))
        if verify:
            train.check()
            test.check()
        return train, test
    if name == "procedural":
        from jconv.data.procedural import open_procedural
        sizes = {k: v for k, v in (("train_size", train_size), ("test_size", test_size)) if v}
        if difficulty is not None:
            sizes["difficulty"] = difficulty
        return open_procedural(image_size=max(16, int(image_size)), seed=seed, **sizes)
    kwargs = {"synthetic": {"input_size": image_size, "channels": channels or 3, "seed": seed},
              "digits": {"input_size": image_size, "channels": channels or 1, "seed": seed},
              "textures": {"input_size": image_size, "channels": channels or 1, "seed": seed}}[name]
    if name == "synthetic" and train_size:
        kwargs["n"] = train_size + (test_size or max(1, train_size // 4))
        kwargs["test_fraction"] = (kwargs["n"] - train_size) / kwargs["n"]
    ds = data.load(name, **kwargs)
    value_range = (float(ds.train_x.min()), float(ds.train_x.max())) if name == "synthetic" else (0.0, 1.0)
    return tuple(ArraySource(x, y, num_classes=ds.num_classes, name=name, value_range=value_range)
                 for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)))


def open_dataset(name: str, *, image_size: int, data_dir=None, channels: int | None = None, seed: int = 0,
                 train_size: int | None = None, test_size: int | None = None,
                 verify: bool = True, difficulty: float | None = None) -> Selection:
    """The train and test sources of ``name`` at ``image_size``, checked, and their augmentation.

    Args:
      name: one of :data:`SOURCES`.
      image_size: the model's input height and width; every image is resized to it.
      data_dir: the folder to read, required for ``cifar10``, ``cifar100`` and ``image_folder``
        (CIFAR: the unpacked python-version folder; image folders: ``DIR`` holding ``train/`` and
        ``val/``); ignored otherwise.
      channels: 1, 3, or None for the data's own (see the module docstring).
      seed: seed of the generated sets (split, crops, rendering); files ignore it.
      train_size: images in the train split of ``procedural`` and ``synthetic`` (None: their
        default); ignored by the others.
      test_size: images in their test split, likewise.
      verify: decode every image of an image folder now (else only headers are checked).
      difficulty: the nuisance level in [0, 1] of ``procedural`` (None: its default); ignored
        by the others.

    Returns:
      A :class:`Selection` ``(train, test, augment)``: sources whose images are uint8
      ``(image_size, image_size, C)``, and ``"cifar"``, ``"folder"`` or None for
      :func:`jconv.data.pipeline.train_iterator`.

    Raises:
      ValueError: an unknown ``name``, a bad ``image_size`` or ``channels``, or no ``data_dir``
        for a set read from files.
      DataError: a missing folder, a wrong layout, or an unreadable or truncated file.

    >>> train, test, augment = open_dataset("digits", image_size=16, channels=3)
    >>> train[0][0].shape, train[0][0].dtype, train.num_classes, augment
    ((16, 16, 3), dtype('uint8'), 10, None)
    """
    _check_args(name, data_dir, image_size, channels)
    train, test = _open(name, data_dir, image_size, channels, seed, train_size, test_size, verify,
                        difficulty)
    own = train.image_shape[-1]
    want = own if channels is None else channels
    if own not in (1, 3):
        raise ValueError(f"dataset {name!r} has {own} channels; expected 1 or 3")
    if tuple(train.image_shape) != (image_size, image_size, want):
        train, test = (AdaptedSource(s, image_size, want) for s in (train, test))
    return Selection(train, test, AUGMENT.get(name))
