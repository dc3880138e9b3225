"""jconv.data.procedural: items, determinism across orders and processes, disjoint splits, balance,
every class count, a cheap probe that learns something but saturates only at difficulty 0, errors."""

import hashlib
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jconv.data.procedural import PATTERNS, SHAPES, open_procedural, to_arrays


def _digest(source, indices):
    h = hashlib.sha256()
    for i in indices:
        image, label = source[i]
        h.update(image.tobytes() + bytes([label]))
    return h.hexdigest()


def test_items_shapes_dtype_and_attributes():
    train, test = open_procedural(num_classes=7, train_size=30, test_size=12, image_size=24, seed=1)
    assert (len(train), len(test)) == (30, 12)
    for source in (train, test):
        assert source.name == "procedural" and source.num_classes == 7 and source.image_shape == (24, 24, 3)
        assert len(set(source.class_names)) == 7 and all(isinstance(c, str) for c in source.class_names)
        image, label = source[3]
        assert image.shape == (24, 24, 3) and image.dtype == np.uint8 and image.flags.c_contiguous
        assert type(label) is int and 0 <= label < 7 and label == source.label(3)
    np.testing.assert_array_equal(train[-1][0], train[29][0])
    with pytest.raises(IndexError, match="index 30 out of range"):
        train[30]
    with pytest.raises(TypeError, match="index must be an int"):
        train[1.0]


@pytest.mark.parametrize("size", [16, 33, 67])
def test_any_resolution_shows_the_object(size):
    train, _ = open_procedural(train_size=4, image_size=size, difficulty=0.0)
    image, _ = train[0]
    assert image.shape == (size, size, 3)
    assert image.min() < 64 or image.max() > 192  # the object stands out from the 0.5 grey
    assert image[0, 0].tolist() == [128, 128, 128]  # the corner is background


@pytest.mark.parametrize("difficulty", [0.3, 1.0])
def test_same_seed_same_bytes_other_seed_other_bytes(difficulty):
    a, b, c = (open_procedural(train_size=40, test_size=10, difficulty=difficulty, seed=s) for s in (3, 3, 4))
    for split in (0, 1):
        assert _digest(a[split], range(10)) == _digest(b[split], range(10))
        assert all(not np.array_equal(a[split][i][0], c[split][i][0]) for i in range(10))


def test_at_difficulty_zero_the_image_is_the_class_alone():
    train, test = open_procedural(num_classes=5, train_size=30, test_size=30, difficulty=0, seed=0)
    other, _ = open_procedural(num_classes=5, train_size=30, difficulty=0, seed=9)
    by_class = {}
    for source in (train, test, other):
        for i in range(30):
            image, label = source[i]
            by_class.setdefault(label, set()).add(image.tobytes())
    assert sorted(by_class) == list(range(5)) and all(len(v) == 1 for v in by_class.values())


def test_an_item_does_not_depend_on_what_was_read_before_nor_on_the_split_sizes():
    train, _ = open_procedural(train_size=60, seed=5)
    forward = [train[i] for i in range(60)]
    order = np.random.default_rng(0).permutation(60)
    fresh, _ = open_procedural(train_size=60, seed=5)
    longer, _ = open_procedural(train_size=10_000, test_size=5, seed=5)
    copied = pickle.loads(pickle.dumps(fresh))
    for source in (fresh, longer, copied):
        for i in order:
            image, label = source[int(i)]
            assert label == forward[i][1] and np.array_equal(image, forward[i][0])


@pytest.mark.slow  # another process
def test_another_process_renders_the_same_bytes():
    train, test = open_procedural(train_size=50, test_size=50, seed=2)
    code = ("from jconv.data.procedural import open_procedural; from tests.test_procedural import _digest; "
            "tr, te = open_procedural(train_size=50, test_size=50, seed=2); "
            "print(_digest(tr, [49, 7, 0]), _digest(te, [3]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1]).stdout.split()
    assert out == [_digest(train, [49, 7, 0]), _digest(test, [3])]


@pytest.mark.slow  # spawned processes
@pytest.mark.parametrize("workers", [1, 2])
def test_render_gives_the_items_in_order_by_any_number_of_workers(workers):
    from jconv.data.procedural import render

    train, _ = open_procedural(train_size=20, image_size=16, seed=1)
    x, y = render(train, 3, 17, workers=workers, chunk=4)
    assert x.shape == (14, 16, 16, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    for j, i in enumerate(range(3, 17)):
        assert np.array_equal(x[j], train[i][0]) and y[j] == train[i][1]
    empty, none = render(train, 5, 5, workers=workers)
    assert empty.shape == (0, 16, 16, 3) and none.shape == (0,)


def test_train_and_test_share_no_item():
    train, test = open_procedural(train_size=300, test_size=300, seed=0)
    seen = {train[i][0].tobytes() for i in range(300)}
    assert not any(test[i][0].tobytes() in seen for i in range(300))


@pytest.mark.parametrize("num_classes", [2, 3, 10, 17])
def test_labels_are_balanced_and_not_periodic(num_classes):
    train, _ = open_procedural(num_classes=num_classes, train_size=20 * num_classes + 1, seed=1)
    labels = np.array([train.label(i) for i in range(len(train))])
    counts = np.bincount(labels, minlength=num_classes)
    assert counts.min() == 20 and counts.max() == 21
    blocks = labels[:20 * num_classes].reshape(20, num_classes)  # (blocks, n): a permutation each
    assert (np.sort(blocks, axis=1) == np.arange(num_classes)).all()
    if num_classes > 2:
        assert len({tuple(b) for b in blocks}) > 1
    assert [train[i][1] for i in range(5)] == labels[:5].tolist()


@pytest.mark.parametrize("num_classes", [2, 3, 5, 6, 10, 40, 41, 100])
def test_every_num_classes_gives_distinct_classes(num_classes):
    train, _ = open_procedural(num_classes=num_classes, train_size=num_classes, image_size=16, difficulty=0.0)
    names = train.class_names
    assert len(names) == len(set(names)) == num_classes
    for name in names:
        shape, pattern = name.split("-")
        assert (shape in SHAPES or re.fullmatch(r"blob\d+", shape)) and pattern in PATTERNS
    clean = {label: image.tobytes() for image, label in (train[i] for i in range(num_classes))}
    assert sorted(clean) == list(range(num_classes)) and len(set(clean.values())) == num_classes
    if num_classes >= 6:  # neither the shape nor the pattern alone names the class
        shapes, patterns = zip(*(n.split("-") for n in names))
        assert len(set(shapes)) < num_classes and len(set(patterns)) < num_classes


def _nearest_class_mean_accuracy(difficulty, num_classes=10):
    train, test = open_procedural(num_classes=num_classes, train_size=2000, test_size=1000,
                                  difficulty=difficulty)
    x, y = to_arrays(train)
    x_test, y_test = to_arrays(test)
    means = np.stack([x[y == k].mean(0) for k in range(num_classes)]).reshape(num_classes, -1)  # (K, H*W*3)
    flat = x_test.reshape(len(x_test), -1)  # (N, H*W*3)
    dist = (flat ** 2).sum(1)[:, None] - 2 * flat @ means.T + (means ** 2).sum(1)  # (N, K)
    return float((dist.argmin(1) == y_test).mean())


def test_a_pixel_probe_learns_something_but_far_from_saturation():
    acc = {t: _nearest_class_mean_accuracy(t) for t in (0.0, 0.25, 0.5)}
    assert acc[0.0] > 0.95  # no nuisance: one template per class
    assert acc[0.0] - 0.3 > acc[0.25] > acc[0.5] + 0.1
    assert 0.13 < acc[0.5] < 0.4, acc  # the default: clearly above chance (0.1), far below 0.95


def test_to_arrays():
    train, _ = open_procedural(num_classes=3, train_size=6, image_size=16)
    x, y = to_arrays(train, [4, 1])
    assert x.shape == (2, 16, 16, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert 0 <= x.min() and x.max() <= 1 and y.tolist() == [train[4][1], train[1][1]]
    np.testing.assert_array_equal(x[0] * 255, train[4][0])


def test_grain_reads_it_as_a_map_dataset():
    grain = pytest.importorskip("grain")
    train, _ = open_procedural(train_size=12, seed=4)
    images, labels = grain.MapDataset.source(train).batch(4)[1]
    np.testing.assert_array_equal(images[2], train[6][0])
    assert labels.tolist() == [train[i][1] for i in range(4, 8)]


def test_rendering_is_fast():
    train, _ = open_procedural(difficulty=0.5)
    start = time.process_time()
    for i in range(200):
        train[i]
    assert time.process_time() - start < 2.0  # about 0.15 s on one core; a 10x guard


@pytest.mark.parametrize("kwargs, message", [
    ({"num_classes": 1}, "num_classes must be an int ≥ 2, got 1"),
    ({"num_classes": 2.0}, "num_classes must be an int ≥ 2, got 2.0"),
    ({"num_classes": True}, "num_classes must be an int ≥ 2, got True"),
    ({"train_size": 0}, "train_size must be an int ≥ 1, got 0"),
    ({"test_size": -5}, "test_size must be an int ≥ 1, got -5"),
    ({"image_size": 15}, "image_size must be an int ≥ 16, got 15"),
    ({"difficulty": 1.5}, "difficulty must be a number in [0, 1], got 1.5"),
    ({"difficulty": float("nan")}, "difficulty must be a number in [0, 1], got nan"),
    ({"difficulty": "hard"}, "difficulty must be a number in [0, 1], got 'hard'"),
    ({"seed": -1}, "seed must be a non-negative int, got -1"),
    ({"seed": None}, "seed must be a non-negative int, got None"),
    ({"label_noise": 1.0}, "label_noise must be a number in [0, 1), got 1.0"),
    ({"label_noise": -0.1}, "label_noise must be a number in [0, 1), got -0.1"),
    ({"label_noise": True}, "label_noise must be a number in [0, 1), got True"),
])
def test_argument_errors_name_the_argument_value_and_expectation(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        open_procedural(**kwargs)


def test_label_noise_names_another_class_at_its_rate_and_leaves_the_images():
    clean, clean_test = open_procedural(train_size=4000, test_size=2000, seed=2)
    noisy, noisy_test = open_procedural(train_size=4000, test_size=2000, seed=2, label_noise=0.2)
    for a, b in ((clean, noisy), (clean_test, noisy_test)):
        true = np.array([a.label(i) for i in range(len(a))])
        given = np.array([b.label(i) for i in range(len(b))])
        assert (true == np.array([b.true_label(i) for i in range(len(b))])).all()
        flipped = given != true
        assert 0.17 < flipped.mean() < 0.23  # 4,000 or 2,000 Bernoulli(0.2) draws: within 3 sd
        assert set(np.unique(given[flipped])) == set(range(10))  # every class can be named
    image, label = noisy[7]
    assert np.array_equal(image, clean[7][0]) and label == noisy.label(7)
    assert noisy.label(7) == open_procedural(train_size=10, seed=2, label_noise=0.2)[0].label(7)

