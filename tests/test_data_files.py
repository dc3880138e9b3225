"""jconv.data.cifar and jconv.data.image_folder: layouts, pixel order, labels, and every DataError."""

import os
import pickle
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from jconv.data import cifar
from jconv.data.cifar import VARIANTS, open_cifar
from jconv.data.errors import DataError
from jconv.data.image_folder import open_image_folder

N = 6  # images per CIFAR batch file


def write_batch(path, batch, protocol=2):
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=protocol)


def write_cifar(folder, variant="cifar10", protocol=2, seed=0):
    """A CIFAR folder of random batches; returns ``{file: batch dict}``."""
    spec, rng = VARIANTS[variant], np.random.default_rng(seed)
    num_classes = 10 if variant == "cifar10" else 100
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in (*spec.train, *spec.test):
        batches[name] = {b"batch_label": name.encode(), spec.labels: rng.integers(0, num_classes, N).tolist(),
                         b"data": rng.integers(0, 256, (N, 3072), dtype=np.uint8),
                         b"filenames": [f"{name}_{i}.png".encode() for i in range(N)]}
        if variant == "cifar100":
            batches[name][b"coarse_labels"] = [y // 5 for y in batches[name][spec.labels]]
        write_batch(folder / name, batches[name], protocol)
    meta = {spec.names: [f"class{i}".encode() for i in range(num_classes)]}
    if variant == "cifar100":
        meta[b"coarse_label_names"] = [f"super{i}".encode() for i in range(20)]
    write_batch(folder / spec.meta, meta, protocol)
    return batches


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_shapes_labels_and_pixel_layout(tmp_path, variant, protocol):
    batches = write_cifar(tmp_path, variant, protocol)
    spec = VARIANTS[variant]
    train, test = open_cifar(tmp_path, variant)
    assert (len(train), len(test)) == (N * len(spec.train), N)
    assert train.num_classes == len(train.class_names) == (10 if variant == "cifar10" else 100)
    assert train.class_names[:2] == ("class0", "class1") and train.name == variant
    assert train.images.shape == (len(train), 32, 32, 3) and train.image_shape == (32, 32, 3)
    image, label = test[4]
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3) and type(label) is int
    assert label == batches[spec.test[0]][spec.labels][4]
    row = batches[spec.train[-1]][b"data"][2]
    image, _ = train[N * (len(spec.train) - 1) + 2]
    for r, c, ch in [(0, 0, 0), (5, 17, 1), (31, 30, 2)]:
        assert image[r, c, ch] == row[1024 * ch + 32 * r + c]
    expected = [y for f in spec.train for y in batches[f][spec.labels]]
    assert [train[i][1] for i in range(len(train))] == expected


def test_cifar_is_deterministic_picklable_and_a_grain_source(tmp_path):
    import grain
    write_cifar(tmp_path)
    (a, _), (b, _) = open_cifar(tmp_path), open_cifar(tmp_path)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    copy = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(copy[3][0], a[3][0])
    assert repr(copy) == repr(a) and str(tmp_path) in repr(a)
    image, label = grain.MapDataset.source(a)[7]
    np.testing.assert_array_equal(image, a[7][0])
    assert label == a[7][1]


def test_cifar_reads_python2_numpy_names_without_warnings(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "test_batch"
    blob = path.read_bytes()
    assert b"numpy._core.multiarray" in blob
    path.write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    _, test = open_cifar(tmp_path)
    assert len(test) == N


class Evil:
    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


@pytest.mark.parametrize("file", ["data_batch_3", "batches.meta"])
@pytest.mark.parametrize("kind", ["os.system", "eval", "subprocess"])
def test_cifar_refuses_foreign_globals_and_runs_nothing(tmp_path, file, kind):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    payload = {"os.system": Evil(os.system, f"touch {marker}"),
               "eval": Evil(eval, f"open({str(marker)!r}, 'w')"),
               "subprocess": Evil(subprocess.run, ["touch", str(marker)])}[kind]
    refused = {"os.system": "system", "eval": "builtins.eval", "subprocess": "subprocess.run"}[kind]
    write_batch(tmp_path / file, {b"data": payload, b"labels": [0], b"label_names": [b"a"]})
    with pytest.raises(DataError, match="refused") as info:
        open_cifar(tmp_path)
    assert str(tmp_path / file) in str(info.value) and refused in str(info.value)
    assert not marker.exists()


def test_cifar_admits_codecs_encode_only_for_latin1_bytes(tmp_path):
    import codecs

    write_cifar(tmp_path)
    write_batch(tmp_path / "test_batch", {b"data": Evil(codecs.encode, "text", "rot13")})
    with pytest.raises(DataError, match="encoding 'rot13' is not admitted") as info:
        open_cifar(tmp_path)
    assert str(tmp_path / "test_batch") in str(info.value)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.9, -1])
def test_cifar_truncated_file(tmp_path, keep):
    write_cifar(tmp_path)
    path = tmp_path / "data_batch_2"
    blob = path.read_bytes()
    path.write_bytes(blob[:-1] if keep == -1 else blob[: int(len(blob) * keep)])
    with pytest.raises(DataError, match="is truncated or not a pickle") as info:
        open_cifar(tmp_path)
    assert str(path) in str(info.value) and "expected an intact CIFAR" in str(info.value)


def test_cifar_missing_folder_files_and_unknown_variant(tmp_path):
    with pytest.raises(DataError, match="does not exist; expected the cifar10 python-version folder"):
        open_cifar(tmp_path / "nowhere")
    write_cifar(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    (tmp_path / "batches.meta").unlink()
    with pytest.raises(DataError, match="is missing data_batch_4, batches.meta; expected") as info:
        open_cifar(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(DataError, match="is missing train, test, meta"):
        open_cifar(tmp_path, "cifar100")
    (tmp_path / "test_batch").unlink()
    (tmp_path / "test_batch").mkdir()
    with pytest.raises(DataError, match="is missing data_batch_4, test_batch, batches.meta"):
        open_cifar(tmp_path)
    with pytest.raises(ValueError, match="unknown CIFAR variant"):
        open_cifar(tmp_path, "cifar20")


def test_cifar_unreadable_file(tmp_path, monkeypatch):
    def denied(path, mode):
        raise PermissionError(13, "Permission denied", str(path))

    write_cifar(tmp_path)
    monkeypatch.setattr(cifar, "open", denied, raising=False)
    with pytest.raises(DataError, match=r"cannot be read \(Permission denied\); expected a readable") as info:
        open_cifar(tmp_path)
    assert str(tmp_path / "batches.meta") in str(info.value)


LAYOUTS = {
    "not a dict": (lambda b: [b], "holds a list; expected a pickled dict"),
    "no data": (lambda b: {k: v for k, v in b.items() if k != b"data"}, "has no key b'data'"),
    "no labels": (lambda b: {k: v for k, v in b.items() if k != b"labels"}, "has no key b'labels'"),
    "float data": (lambda b: {**b, b"data": b[b"data"].astype(np.float32)}, "float32 array of shape"),
    "wide data": (lambda b: {**b, b"data": np.zeros((N, 3073), np.uint8)}, r"shape \(6, 3073\)"),
    "flat data": (lambda b: {**b, b"data": b[b"data"].ravel()}, r"expected a uint8 array of shape \(N, 3072\)"),
    "list data": (lambda b: {**b, b"data": b[b"data"].tolist()}, "b'data' is a list"),
    "few labels": (lambda b: {**b, b"labels": b[b"labels"][:-1]}, "has 5 labels for 6 images"),
    "label 10": (lambda b: {**b, b"labels": [10] * N}, r"label 10 at index 0 is out of range; expected labels in \[0, 10\)"),
    "label -1": (lambda b: {**b, b"labels": [0, -1] + [0] * (N - 2)}, "label -1 at index 1"),
    "str labels": (lambda b: {**b, b"labels": ["a"] * N}, "is not a list of ints"),
}


@pytest.mark.parametrize("case", sorted(LAYOUTS))
def test_cifar_wrong_layout(tmp_path, case):
    batches = write_cifar(tmp_path)
    change, message = LAYOUTS[case]
    write_batch(tmp_path / "data_batch_5", change(batches["data_batch_5"]))
    with pytest.raises(DataError, match=message) as info:
        open_cifar(tmp_path)
    assert str(tmp_path / "data_batch_5") in str(info.value) and "expected" in str(info.value)


@pytest.mark.parametrize("meta, message", [({b"names": [b"a"]}, "has no key b'fine_label_names'"),
                                           ({b"fine_label_names": []}, "not a non-empty list of names"),
                                           ({b"fine_label_names": [f"c{i}" for i in range(50)]}, "out of range")])
def test_cifar100_wrong_meta(tmp_path, meta, message):
    batches = write_cifar(tmp_path, "cifar100")
    write_batch(tmp_path / "train", {**batches["train"], b"fine_labels": [99] * N})
    write_batch(tmp_path / "meta", meta)
    with pytest.raises(DataError, match=message):
        open_cifar(tmp_path, "cifar100")


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

