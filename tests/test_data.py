"""jconv.data: shapes, ranges, determinism by seed, disjoint texture splits, batching, registry."""

import numpy as np
import pytest

from jconv import data


@pytest.mark.parametrize("size", [8, 16, 5])
def test_digits_shapes_range_and_stratified_split(size):
    ds = data.digits(size, channels=3, seed=0)
    assert ds.train_x.shape == (1437, size, size, 3) and ds.test_x.shape == (360, size, size, 3)
    assert ds.train_x.dtype == np.float32 and ds.train_y.dtype == np.int32
    assert ds.num_classes == 10 and ds.name == "digits" and ds.input_shape == (size, size, 3)
    assert 0.0 <= ds.train_x.min() and ds.train_x.max() <= 1.0
    np.testing.assert_array_equal(ds.train_x[..., 0], ds.train_x[..., 2])
    counts = np.bincount(ds.test_y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 of each class


def test_digits_at_8_keeps_the_original_pixels():
    from sklearn.datasets import load_digits

    ds = data.digits(8, seed=0)
    originals = {img.tobytes() for img in (load_digits().images / 16.0).astype(np.float32)}
    assert all(img[..., 0].tobytes() in originals for img in ds.test_x[:20])


def test_digits_split_is_deterministic_by_seed():
    a, b, c = data.digits(8, seed=1), data.digits(8, seed=1), data.digits(8, seed=2)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.test_y, b.test_y)
    assert not np.array_equal(a.test_y, c.test_y)


def test_textures_classes_determinism_and_disjoint_regions():
    ds = data.textures(16, crops_per_class=12, test_crops_per_class=4, seed=0)
    assert ds.train_x.shape == (36, 16, 16, 1) and ds.test_x.shape == (12, 16, 16, 1)
    assert ds.num_classes == 3 and np.bincount(ds.train_y).tolist() == [12, 12, 12]
    assert 0.0 <= ds.train_x.min() and ds.train_x.max() <= 1.0
    again = data.textures(16, crops_per_class=12, test_crops_per_class=4, seed=0)
    np.testing.assert_array_equal(ds.train_x, again.train_x)
    assert not np.array_equal(ds.train_x, data.textures(16, crops_per_class=12, seed=1).train_x)


def test_texture_crops_come_from_the_named_half():
    import skimage.data

    ds = data.textures(8, crops_per_class=5, test_crops_per_class=5, images=("brick",), seed=0)
    brick = skimage.data.brick().astype(np.float32) / 255.0
    windows = np.lib.stride_tricks.sliding_window_view(brick, (8, 8))  # (505, 505, 8, 8)

    def columns(crop):
        hits = np.argwhere((windows == crop[..., 0]).all(axis=(2, 3)))
        assert len(hits), "crop not found in the image"
        return hits[:, 1]

    assert all((columns(c) + 8 <= 256).any() for c in ds.train_x)
    assert all((columns(c) >= 256).any() for c in ds.test_x)


def test_textures_resized_crops():
    ds = data.textures(8, crop_size=32, crops_per_class=3, channels=2)
    assert ds.train_x.shape == (9, 8, 8, 2)


def test_synthetic_is_learnable_and_deterministic():
    ds = data.synthetic(400, 8, 2, 4, seed=0, noise=0.5)
    assert ds.train_x.shape == (320, 8, 8, 2) and ds.test_x.shape == (80, 8, 8, 2)
    np.testing.assert_array_equal(ds.train_x, data.synthetic(400, 8, 2, 4, seed=0, noise=0.5).train_x)
    # nearest class mean classifies the test set far above chance (1/4)
    means = np.stack([ds.train_x[ds.train_y == k].mean(0) for k in range(4)])  # (4, H, W, C)
    dist = ((ds.test_x[:, None] - means[None]) ** 2).sum(axis=(2, 3, 4))  # (N, 4)
    assert (dist.argmin(1) == ds.test_y).mean() > 0.9


def test_batches_shuffle_per_seed_and_epoch_and_drop_ragged():
    x, y = np.arange(10, dtype=np.float32)[:, None], np.arange(10, dtype=np.int32)
    e0 = [b for _, b in data.batches(x, y, 3, seed=0, epoch=0)]
    assert [len(b) for b in e0] == [3, 3, 3]
    assert len(set(np.concatenate(e0).tolist())) == 9
    assert all(np.array_equal(a, b) for a, b in zip(e0, [b for _, b in data.batches(x, y, 3, seed=0, epoch=0)]))
    assert not all(np.array_equal(a, b) for a, b in zip(e0, [b for _, b in data.batches(x, y, 3, seed=0, epoch=1)]))
    assert not all(np.array_equal(a, b) for a, b in zip(e0, [b for _, b in data.batches(x, y, 3, seed=1, epoch=0)]))
    for xb, yb in data.batches(x, y, 3, seed=0, epoch=0):
        np.testing.assert_array_equal(xb[:, 0], yb)
    with pytest.raises(ValueError, match="larger than"):
        data.batch_indices(2, 3, seed=0, epoch=0)


def test_load_registry():
    ds = data.load("synthetic", n=20, input_size=4, channels=1, num_classes=2, seed=0)
    assert ds.name == "synthetic"
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; known: \['digits', 'synthetic', 'textures'\]"):
        data.load("mnist")


@pytest.mark.parametrize("bad", [dict(input_size=0), dict(input_size=8, channels=0), dict(input_size=8, method="cubic")])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        data.digits(**bad)


def test_open_dataset_in_memory_sets_are_quantised_honestly():
    train, test, augment = data.open_dataset("digits", image_size=8)
    ds = data.digits(8)
    assert augment is None and train.image_shape == (8, 8, 1) and train.num_classes == 10
    assert (len(train), len(test)) == (len(ds.train_y), len(ds.test_y))
    image, label = train[3]
    assert image.dtype == np.uint8 and label == ds.train_y[3]
    assert np.abs(train.images / 255 - ds.train_x).max() <= 1 / 510 + 1e-7
    syn, _, _ = data.open_dataset("synthetic", image_size=8, train_size=40, test_size=10)
    assert syn.images.min() == 0 and syn.images.max() == 255 and len(syn) == 40


@pytest.mark.parametrize("name", ["digits", "textures", "synthetic", "procedural"])
@pytest.mark.parametrize("channels", [None, 1, 3])
def test_open_dataset_sizes_and_channels(name, channels):
    train, test, _ = data.open_dataset(name, image_size=20, channels=channels, train_size=30, test_size=10)
    own = 1 if name in ("digits", "textures") else 3
    want = channels or own
    for source in (train, test):
        image, label = source[len(source) - 1]
        assert image.shape == source.image_shape == (20, 20, want) and image.dtype == np.uint8
        assert 0 <= label < source.num_classes and source.name == name


def test_open_dataset_converts_rgb_to_luminance_and_resizes():
    train, _, _ = data.open_dataset("procedural", image_size=16, train_size=4, test_size=1)
    grey, _, _ = data.open_dataset("procedural", image_size=16, channels=1, train_size=4, test_size=1)
    expected = np.rint(train[2][0].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    np.testing.assert_array_equal(grey[2][0][..., 0], expected.astype(np.uint8))
    small, _, _ = data.open_dataset("procedural", image_size=8, train_size=4, test_size=1)
    assert small[0][0].shape == (8, 8, 3)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(name="mnist", image_size=8), "unknown dataset 'mnist'"),
    (dict(name="cifar10", image_size=32), "data_dir must name its folder"),
    (dict(name="image_folder", image_size=32, data_dir=""), "data_dir must name its folder"),
    (dict(name="digits", image_size=0), "image_size must be a positive int, got 0"),
    (dict(name="digits", image_size=8, channels=2), "channels must be None, 1 or 3, got 2"),
])
def test_open_dataset_bad_arguments(kwargs, pattern):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=pattern):
        data.open_dataset(name, **kwargs)
