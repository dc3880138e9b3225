"""Image folders on disk, one sub-folder per class, decoded on the fly with Pillow.

The layout is ``DIR/train/<class>/*.jpg`` and ``DIR/val/<class>/*.jpg`` (``.jpg``, ``.jpeg`` and
``.png``, in any case); other files are ignored, as are names starting with ``.``. A class's label
is its position among the sorted class-folder names of ``train/``, and ``val/`` must have the same
classes. :func:`open_image_folder` checks the layout and every file's header before returning, so
an unreadable file is reported before training; a file that fails only when its pixels are
decoded raises :class:`DataError` from ``source[i]``, and ``source.check()`` decodes every file.

The returned sources follow grain's ``RandomAccessDataSource`` protocol: ``len(source)`` and
``source[i] == (image, label)`` with ``image`` a uint8 ``(H, W, C)`` array, ``C = 3`` (RGB), and
``label`` an int. They hold only paths, so they pickle cheaply to grain's worker processes.

Every PIL mode a JPEG or PNG opens in (:data:`MODES`) becomes 8-bit RGB by its own meaning: grey
(``1``, ``L``, ``LA``) is copied to the three channels, palettes (``P``, ``PA``) are looked up,
``CMYK`` is converted by Pillow, and alpha is dropped (not composited). 16-bit grey (``I;16``,
``I;16B``, ...) and 32-bit int (``I``, as 16-bit PNGs opened) are scaled by ``v / 257`` rounded, so
0 → 0, 32768 → 128 and 65535 → 255; an ``I`` image outside 0..65535 is refused. Float images
(``F``) must lie in [0, 1] and are scaled by 255, rounded; any other float range is refused rather
than guessed. A file in any other mode is refused when the folder is opened.
"""

from __future__ import annotations

import dataclasses
import operator
from pathlib import Path

import numpy as np
from PIL import Image

from jconv.data.errors import DataError

__all__ = ["ImageFolderSource", "open_image_folder", "EXTENSIONS", "MODES", "SPLITS"]

EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val")
_FORMATS = ("JPEG", "PNG")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", *_SIXTEEN_BIT, "I", "F")
"""The PIL modes an image may have; each is converted to 8-bit RGB (see the module's doc)."""
_EXPECTED_MODE = f"a JPEG or PNG image in one of the modes {', '.join(MODES)}"


@dataclasses.dataclass(frozen=True, repr=False)
class ImageFolderSource:
    """One split of an image folder: ``files[i]`` has label ``labels[i]``.

    ``source[i]`` decodes ``files[i]``, converts it to RGB and resizes it bilinearly to
    ``(image_size, image_size)``: an ``(H, W, C) = (image_size, image_size, 3)`` uint8 array.
    """

    files: tuple[Path, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    image_size: int
    name: str
    split: str
    path: Path

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index) -> tuple[np.ndarray, int]:
        index = operator.index(index)
        return _decode(self.files[index], self.image_size), self.labels[index]

    def check(self) -> None:
        """Decode every file once; raises the first :class:`DataError`."""
        for path in self.files:
            _decode(path, self.image_size)

    def __repr__(self):
        return (f"ImageFolderSource({self.name!r}, split={self.split!r}, path={str(self.path)!r}, "
                f"size={len(self)}, image_size={self.image_size})")


def _decode(path: Path, image_size: int) -> np.ndarray:
    """``path`` as an ``(image_size, image_size, 3)`` uint8 RGB array."""
    try:
        with Image.open(path, formats=_FORMATS) as image:
            image.load()
    except _DECODE_ERRORS as err:
        raise DataError(path, f"cannot be decoded ({err})", "a complete JPEG or PNG image") from err
    image = _to_rgb(image, path)
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.array(image, dtype=np.uint8)  # (H, W, C)


def _to_rgb(image: Image.Image, path: Path) -> Image.Image:
    """``image`` as an 8-bit RGB image, each mode by its meaning; other modes and ranges refused."""
    mode = image.mode
    if mode in ("P", "PA"):
        return image.convert("RGBA").convert("RGB")  # P → RGB warns when the transparency is bytes
    if mode in ("1", "L", "LA", "RGB", "RGBA", "CMYK"):
        return image.convert("RGB")
    if mode not in MODES:
        raise DataError(path, f"has PIL mode {mode!r}", _EXPECTED_MODE)
    values = np.asarray(image)
    if mode == "F":
        low, high, scale, expected = 0, 1, 255, "float values in [0, 1]"
    else:
        low, high, scale, expected = 0, 65535, 1 / 257, "16-bit values in [0, 65535]"
    if values.size and not (np.isfinite(values).all() and low <= values.min() and values.max() <= high):
        raise DataError(path, f"is a mode {mode} image with values in [{values.min()}, {values.max()}]",
                        expected)
    return Image.fromarray(np.rint(values * scale).astype(np.uint8)).convert("RGB")


def _check_header(path: Path) -> None:
    try:
        with Image.open(path, formats=_FORMATS) as image:
            mode = image.mode
    except _DECODE_ERRORS as err:
        raise DataError(path, f"is not a readable image ({err})", "a JPEG or PNG image") from err
    if mode not in MODES:
        raise DataError(path, f"has PIL mode {mode!r}", _EXPECTED_MODE)


def _visible(folder: Path):
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _classes(split_dir: Path, expected: str) -> tuple[str, ...]:
    if not split_dir.is_dir():
        raise DataError(split_dir, "does not exist" if not split_dir.exists() else "is not a folder",
                        expected)
    classes = tuple(p.name for p in _visible(split_dir) if p.is_dir())
    if not classes:
        raise DataError(split_dir, "has no class folders", expected)
    return classes


def _split(root: Path, split: str, class_names: tuple[str, ...], image_size: int) -> ImageFolderSource:
    files, labels = [], []
    for label, name in enumerate(class_names):
        folder = root / split / name
        images = [p for p in _visible(folder) if p.is_file() and p.suffix.lower() in EXTENSIONS]
        if not images:
            raise DataError(folder, "holds no image", f"at least one {'/'.join(EXTENSIONS)} file per class")
        for path in images:
            _check_header(path)
        files += images
        labels += [label] * len(images)
    return ImageFolderSource(tuple(files), tuple(labels), class_names, image_size, root.name,
                             split, root)


def open_image_folder(data_dir, image_size: int) -> tuple[ImageFolderSource, ImageFolderSource]:
    """The train and val splits of ``DIR/{train,val}/<class>/*.{jpg,jpeg,png}``.

    Files are listed in sorted order (by class, then file name), so the index ``i`` names the
    same image on every machine. Images are decoded only when read.

    Args:
      data_dir: the folder ``DIR`` holding ``train/`` and ``val/``.
      image_size: output height and width ``H = W``; every image is resized to it bilinearly.

    Returns:
      ``(train, val)`` :class:`ImageFolderSource` s whose items are ``(image, label)``, ``image``
      uint8 ``(image_size, image_size, 3)``, ``label`` the index of its class folder among the
      sorted names of ``train/``.

    Raises:
      ValueError: ``image_size`` is not a positive int.
      DataError: ``data_dir``, ``train/`` or ``val/`` is missing, ``train/`` has no class
        folders, ``val/`` has other classes than ``train/``, a class holds no image, or a
        file's header is not that of a JPEG or PNG image in one of the :data:`MODES`. A file
        whose pixels cannot be decoded, or an ``I`` or ``F`` image out of its range, raises
        :class:`DataError` from ``source[i]``.
    """
    if not (isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool)
            and image_size >= 1):
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    root = Path(data_dir)
    expected = "DIR/train/<class>/*.jpg|jpeg|png and DIR/val/<class>/..., one folder per class"
    if not root.is_dir():
        raise DataError(root, "does not exist" if not root.exists() else "is not a folder", expected)
    class_names = _classes(root / "train", expected)
    val_classes = _classes(root / "val", expected)
    if val_classes != class_names:
        missing = sorted(set(class_names) - set(val_classes))
        extra = sorted(set(val_classes) - set(class_names))
        raise DataError(root / "val", f"has other classes than train/ (missing {missing}, extra {extra})",
                        f"the classes of train/: {list(class_names)}")
    return tuple(_split(root, split, class_names, int(image_size)) for split in SPLITS)
