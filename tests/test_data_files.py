"""jconv.data.cifar: layouts, pixel order, labels, forged and oversized pickles, and every DataError."""

import codecs
import os
import pickle
import re
import subprocess

import numpy as np
import pytest

from jconv.data import cifar
from jconv.data.cifar import VARIANTS, open_cifar
from jconv.data.errors import DataError
from jconv.data.safe_pickle import EXPANSION

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


class Forged:
    """Pickles as ``__reduce__`` says: ``(call, args)`` or ``(call, args, state)``."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


@pytest.mark.parametrize("file", ["data_batch_3", "batches.meta"])
@pytest.mark.parametrize("kind", ["os.system", "eval", "subprocess"])
def test_cifar_refuses_foreign_globals_and_runs_nothing(tmp_path, file, kind):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    payload = {"os.system": Forged(os.system, (f"touch {marker}",)),
               "eval": Forged(eval, (f"open({str(marker)!r}, 'w')",)),
               "subprocess": Forged(subprocess.run, (["touch", str(marker)],))}[kind]
    refused = {"os.system": "system", "eval": "builtins.eval", "subprocess": "subprocess.run"}[kind]
    write_batch(tmp_path / file, {b"data": payload, b"labels": [0], b"label_names": [b"a"]})
    with pytest.raises(DataError, match="refused") as info:
        open_cifar(tmp_path)
    assert str(tmp_path / file) in str(info.value) and refused in str(info.value)
    assert not marker.exists()


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
    "str labels": (lambda b: {**b, b"labels": ["a"] * N}, r"is not a list of ints \(a list holding str\)"),
    "nested labels": (lambda b: {**b, b"labels": [[0] * 1000] * N}, r"\(a list holding list\); expected one"),
    "numpy int labels": (lambda b: {**b, b"labels": [np.int64(11)] * N}, "label 11 at index 0 is out of range"),
}


@pytest.mark.parametrize("case", sorted(LAYOUTS))
def test_cifar_wrong_layout(tmp_path, case):
    batches = write_cifar(tmp_path)
    change, message = LAYOUTS[case]
    write_batch(tmp_path / "data_batch_5", change(batches["data_batch_5"]))
    with pytest.raises(DataError, match=message) as info:
        open_cifar(tmp_path)
    assert str(tmp_path / "data_batch_5") in str(info.value) and "expected" in str(info.value)


_reconstruct, u1 = np._core.multiarray._reconstruct, np.dtype(np.uint8)


def forged_array(shape, data, dtype=u1):
    """An array pickled as NumPy does, with its state forged: ``shape``, ``dtype`` and ``data``."""
    return Forged(_reconstruct, (np.ndarray, (0,), b"b"), (1, shape, dtype, False, data))


FORGERIES = {  # b"data" of data_batch_1 → what the error says (without BUILD: a file of ~200 bytes)
    "no BUILD, 6 rows": (Forged(_reconstruct, (np.ndarray, (N, 3072), b"B")),
                         "asks numpy _reconstruct(numpy.ndarray, (6, 3072), b'B') for an uninitialised "
                         "array; expected _reconstruct(numpy.ndarray, (0,), ...) then the array's state"),
    "no BUILD, 400,000 rows": (Forged(_reconstruct, (np.ndarray, (400_000, 3072), u1)),
                               "_reconstruct(numpy.ndarray, (400000, 3072), dtype('uint8')) for an uninit"),
    "no BUILD, empty": (Forged(_reconstruct, (np.ndarray, (0,), b"b")), "1 array(s) rebuilt by numpy "
                        "_reconstruct never receive their data (no BUILD gives them their state)"),
    "no BUILD, ndarray called": (Forged(np.ndarray, ((400_000, 3072), u1)), "calls numpy.ndarray(("
                                 "400000, 3072), dtype('uint8')), which makes an array without data"),
    "400,000 rows declared": (forged_array((400_000, 3072), bytes(3072)), "an array of shape (400000, "
                              "3072) and dtype uint8 needs 1,228,800,000 bytes but is given 3,072"),
    "truncated data": (forged_array((N, 3072), bytes(N * 3072 - 100)), "needs 18,432 bytes but is given "
                       "18,332; expected the data to match the declared shape"),
    "negative shape": (forged_array((-1, 3072), b""), "an array has shape (-1, 3072); expected a tuple"),
    "object dtype": (np.array([1, "a"], dtype=object), "an array has dtype dtype('O'); expected an array"),
    "subarray dtype": (forged_array((N,), bytes(N * 3072), np.dtype((u1, (3072,)))),
                       "has dtype dtype(('u1', (3072,))); expected an array of bools, ints or floats"),
    "dtype flagged as objects": (forged_array((N, 384), bytes(N * 3072), Forged(
        np.dtype, ("u8", False, True), (3, "<", None, None, None, -1, -1, 63))), "has dtype dtype('uint64') "
        "(state (3, '<', None, None, None, -1, -1, 63)); expected an array of bools, ints or floats as NumPy"),
    "dtype with a forged subarray": (forged_array((N, 3072), bytes(N * 3072), Forged(
        np.dtype, ("u1", False, True), (3, "|", (u1, (10 ** 6,)), None, None, -1, -1, 0))), "(state (3, '|', "
        "(dtype('uint8'), (1000000,)), None, None, -1, -1, 0))"),
    "list as data": (forged_array((2,), [1, 2]), "an array is given a list as its data; expected bytes"),
    "scalar without data": (Forged(np._core.multiarray.scalar, (np.dtype("V100000"),)),
                            "a numpy scalar has dtype dtype('V100000')"),
    "bytes(10**12)": (Forged(bytes, (10 ** 12,)), "calls bytes of a int; expected bytes of text or bytes"),
    "rot13 bytes": (Forged(codecs.encode, ("text", "rot13")), "_codecs.encode with encoding 'rot13' is not admitted"),
    "state of bytes": (Forged(bytes, (), {"x": 1}), "sets the state of a bytes; expected state for NumPy"),
}


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_cifar_refuses_forged_arrays(tmp_path, case, protocol):
    batches = write_cifar(tmp_path)
    data, message = FORGERIES[case]
    path = tmp_path / "data_batch_1"
    write_batch(path, {b"data": data, b"labels": [0] * N}, protocol)
    assert path.stat().st_size < 300 or "no BUILD" not in case
    with pytest.raises(DataError, match=re.escape(message)) as info:
        open_cifar(tmp_path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    write_batch(path, batches["data_batch_1"], protocol)
    assert len(open_cifar(tmp_path)[0]) == 5 * N


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_bounds_what_a_file_makes_by_its_size(tmp_path, protocol):
    batches = write_cifar(tmp_path)
    shared = np.random.default_rng(1).integers(0, 256, N * 3072, dtype=np.uint8).tobytes()
    copies = [forged_array((N, 3072), shared) for _ in range(2 * EXPANSION)]  # one bytes, memoised
    path = tmp_path / "test_batch"
    write_batch(path, {b"data": copies[0], b"labels": [0] * N, b"more": copies[1:]}, protocol)
    size = path.stat().st_size
    assert size < 2 * len(shared)  # the bytes are written once
    with pytest.raises(DataError, match=f"{path}: makes at least .* bytes of arrays and bytes from a file "
                                        f"of {size:,} bytes; expected at most {EXPANSION}× the file's size"):
        open_cifar(tmp_path)
    labels = np.array(batches["test_batch"][b"labels"], np.int32)  # an int array, scalars: read
    write_batch(path, {b"data": copies[0], b"labels": labels, b"more": copies[1], b"x": np.float64(.5)}, protocol)
    _, test = open_cifar(tmp_path)
    assert test.labels.tolist() == labels.tolist() and test.labels.dtype == np.int64
    assert test.images[1].transpose(2, 0, 1).ravel().tobytes() == shared[3072:6144]


@pytest.mark.parametrize("meta, message", [({b"names": [b"a"]}, "has no key b'fine_label_names'"),
                                           ({b"fine_label_names": []}, "not a non-empty list of names"),
                                           ({b"fine_label_names": [f"c{i}" for i in range(50)]}, "out of range")])
def test_cifar100_wrong_meta(tmp_path, meta, message):
    batches = write_cifar(tmp_path, "cifar100")
    write_batch(tmp_path / "train", {**batches["train"], b"fine_labels": [99] * N})
    write_batch(tmp_path / "meta", meta)
    with pytest.raises(DataError, match=message):
        open_cifar(tmp_path, "cifar100")
