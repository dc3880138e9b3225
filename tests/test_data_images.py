"""jconv.data.image_folder: layouts, labels, pixels of every PIL mode, and every DataError."""

import pickle
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from jconv.data import image_folder
from jconv.data.errors import DataError
from jconv.data.image_folder import open_image_folder


def write_image(path, size=(9, 7), mode="RGB", seed=0):
    """A random image of ``size = (W, H)`` saved at ``path``; returns its ``(H, W, C)`` pixels."""
    channels = {"L": 1, "P": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        image.convert("P").save(path, transparency=bytes(range(256)))  # read back as bytes in info
    else:
        image.save(path)
    return pixels


def write_folder(root):
    """cat: 3 images (PNG, JPEG, grey), dog: 2 (RGBA, palette); val: one image per class."""
    for i, (name, mode) in enumerate([("b.png", "RGB"), ("a.JPG", "RGB"), ("c.Jpeg", "L")]):
        write_image(root / "train" / "cat" / name, mode=mode, seed=i)
    write_image(root / "train" / "dog" / "x.PNG", mode="RGBA", seed=3)
    write_image(root / "train" / "dog" / "y.png", mode="P", seed=4)
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    (root / "train" / "dog" / ".hidden.png").write_bytes(b"junk")
    for name in ("cat", "dog"):
        write_image(root / "val" / name / "v.png", seed=5)


def test_image_folder_layout_labels_and_pixels(tmp_path):
    write_folder(tmp_path)
    train, val = open_image_folder(tmp_path, 9)
    assert train.class_names == val.class_names == ("cat", "dog") and train.num_classes == 2
    assert [p.name for p in train.files] == ["a.JPG", "b.png", "c.Jpeg", "x.PNG", "y.png"]
    assert [train[i][1] for i in range(len(train))] == [0, 0, 0, 1, 1] and len(val) == 2
    assert train.image_shape == (9, 9, 3) and train.name == tmp_path.name and val.split == "val"
    for i in range(len(train)):
        image, label = train[i]
        assert image.shape == (9, 9, 3) and image.dtype == np.uint8 and type(label) is int
    grey = train[2][0]
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    small, _ = open_image_folder(tmp_path, 4)[0][1]
    assert small.shape == (4, 4, 3)


def test_image_folder_keeps_png_pixels_at_their_size_is_deterministic_and_picklable(tmp_path):
    write_folder(tmp_path)
    pixels = write_image(tmp_path / "train" / "cat" / "b.png", size=(8, 8), seed=7)
    (a, _), (b, _) = open_image_folder(tmp_path, 8), open_image_folder(tmp_path, 8)
    np.testing.assert_array_equal(a[1][0], pixels)
    assert a.files == b.files and a.labels == b.labels
    copy = pickle.loads(pickle.dumps(a))
    for i in range(len(a)):
        np.testing.assert_array_equal(copy[i][0], b[i][0])
    assert str(tmp_path) in repr(a) and "size=5" in repr(a)


def test_image_folder_missing_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist; expected DIR/train/<class>"):
        open_image_folder(tmp_path / "nowhere", 8)
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="does not exist") as info:
        open_image_folder(tmp_path, 8)
    assert str(tmp_path / "train") in str(info.value)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "README").write_text("")
    with pytest.raises(DataError, match="has no class folders"):
        open_image_folder(tmp_path, 8)
    with pytest.raises(ValueError, match="positive int"):
        open_image_folder(tmp_path, 0)


def test_image_folder_val_classes_must_match(tmp_path):
    write_folder(tmp_path)
    write_image(tmp_path / "val" / "emu" / "e.png")
    with pytest.raises(DataError, match=r"other classes than train/ \(missing \[\], extra \['emu'\]\)") as info:
        open_image_folder(tmp_path, 8)
    assert str(tmp_path / "val") in str(info.value) and "['cat', 'dog']" in str(info.value)
    for name in ("emu", "dog"):
        shutil.rmtree(tmp_path / "val" / name)
    with pytest.raises(DataError, match=r"missing \['dog'\]"):
        open_image_folder(tmp_path, 8)
    (tmp_path / "val").rename(tmp_path / "valid")
    with pytest.raises(DataError, match="val: does not exist"):
        open_image_folder(tmp_path, 8)


def test_image_folder_class_without_images(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "train" / "dog" / "x.PNG").unlink()
    (tmp_path / "train" / "dog" / "y.png").unlink()
    with pytest.raises(DataError, match="holds no image; expected at least one .jpg/.jpeg/.png") as info:
        open_image_folder(tmp_path, 8)
    assert str(tmp_path / "train" / "dog") in str(info.value)


@pytest.mark.parametrize("blob", [b"", b"not an image at all", b"GIF89a" + bytes(40)])
def test_image_folder_unreadable_header_is_reported_at_open(tmp_path, blob):
    write_folder(tmp_path)
    bad = tmp_path / "val" / "dog" / "bad.jpg"
    bad.write_bytes(blob)
    with pytest.raises(DataError, match="is not a readable image") as info:
        open_image_folder(tmp_path, 8)
    assert str(bad) in str(info.value) and "expected a JPEG or PNG image" in str(info.value)


@pytest.mark.parametrize("name", ["cut.jpg", "cut.png"])
def test_image_folder_truncated_file_fails_when_read_and_in_check(tmp_path, name):
    write_folder(tmp_path)
    path = tmp_path / "train" / "dog" / name
    write_image(path, size=(48, 48), seed=9)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    train, val = open_image_folder(tmp_path, 8)
    val.check()
    index = [p.name for p in train.files].index(name)
    train[index - 1]
    with pytest.raises(DataError, match="cannot be decoded") as info:
        train[index]
    assert str(path) in str(info.value) and "expected a complete JPEG or PNG image" in str(info.value)
    with pytest.raises(DataError, match=name):
        train.check()



def one_image_folder(root, image, name="x.png", **save):
    """``root/{train,val}/a/name`` holding ``image``; returns its pixels as the train split reads them."""
    for split in ("train", "val"):
        (root / split / "a").mkdir(parents=True, exist_ok=True)
        image.save(root / split / "a" / name, **save)
    return open_image_folder(root, image.width)[0][0][0].tolist()


def test_image_folder_converts_every_mode_a_file_opens_in(tmp_path):
    grey16 = Image.fromarray(np.array([[0, 257, 32768, 65535], [65280, 128, 129, 40000]] * 2, np.uint16))
    assert grey16.mode == "I;16" and one_image_folder(tmp_path / "16", grey16) == [  # v / 257, not clipped
        [[v] * 3 for v in row] for row in [[0, 1, 128, 255], [254, 0, 1, 156]] * 2]
    palette, bits = Image.new("P", (3, 3)), Image.new("1", (3, 3))
    palette.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90])
    palette.putdata([2, 0, 1] * 3)
    bits.putdata([0, 1, 0] * 3)
    for image, row in [(palette, [[70, 80, 90], [10, 20, 30], [40, 50, 60]]),
                       (Image.new("LA", (3, 3), (77, 10)), [[77, 77, 77]] * 3),
                       (Image.new("RGBA", (3, 3), (10, 20, 30, 0)), [[10, 20, 30]] * 3),
                       (bits, [[0, 0, 0], [255, 255, 255], [0, 0, 0]])]:
        assert one_image_folder(tmp_path / image.mode, image) == [row] * 3, image.mode
    cmyk = Image.new("CMYK", (8, 8), (0, 128, 0, 64))  # R = (255 - C)(255 - K) / 255, ...
    assert one_image_folder(tmp_path / "cmyk", cmyk, "x.jpg", quality=100) == [[[191, 95, 191]] * 8] * 8


PA = Image.new("PA", (2, 1))
PA.putpalette([0, 0, 0, 200, 100, 50, 7, 8, 9])
PA.putdata([(1, 0), (2, 255)])
MODES = [  # images no PNG or JPEG writer makes → RGB pixels, or what the DataError says
    (Image.frombytes("I;16B", (3, 1), bytes([0, 0, 0x80, 0, 0xFF, 0xFF])), [[0] * 3, [128] * 3, [255] * 3]),
    (Image.fromarray(np.array([[0, 257, 32768, 65535]], np.int32)), [[0] * 3, [1] * 3, [128] * 3, [255] * 3]),
    (Image.fromarray(np.array([[0, 0.25, 0.5, 1]], np.float32)), [[0] * 3, [64] * 3, [128] * 3, [255] * 3]),
    (PA, [[200, 100, 50], [7, 8, 9]]),
    (Image.fromarray(np.array([[-1, 65535]], np.int32)),
     "is a mode I image with values in [-1, 65535]; expected 16-bit values in [0, 65535]"),
    (Image.fromarray(np.array([[0, 70000]], np.int32)), "values in [0, 70000]"),
    (Image.fromarray(np.array([[0, 1.5]], np.float32)),
     "is a mode F image with values in [0.0, 1.5]; expected float values in [0, 1]"),
    (Image.fromarray(np.array([[0, np.nan]], np.float32)), "is a mode F image with values in [nan, nan]"),
    (Image.new("HSV", (2, 2)), "has PIL mode 'HSV'; expected a JPEG or PNG image in one of the modes 1, L"),
    (Image.new("LAB", (2, 2)), "has PIL mode 'LAB'"),
]


@pytest.mark.parametrize("image, expected", MODES, ids=[f"{image.mode}-{i}" for i, (image, _) in enumerate(MODES)])
def test_image_folder_converts_or_refuses_other_modes(tmp_path, image, expected):
    path = tmp_path / "odd.png"
    if isinstance(expected, list):
        assert np.asarray(image_folder._to_rgb(image, path)).tolist() == [expected]
        return
    with pytest.raises(DataError, match=re.escape(expected)) as info:
        image_folder._to_rgb(image, path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
