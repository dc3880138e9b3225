"""jconv.data.pipeline: batches, shuffling by seed and epoch, shards, resume, workers, augmentation."""

import dataclasses
import itertools

import numpy as np
import orbax.checkpoint as ocp
import pytest

from jconv import data
from jconv.data import pipeline
from jconv.data.sources import ArraySource as TakingSource

N = 20  # not a multiple of 8: the ragged end of an epoch is dropped


@dataclasses.dataclass
class ArraySource:
    """In-memory source; the label of example i is i, so batches name their examples."""

    images: np.ndarray  # (N, H, W, C) uint8
    name: str = "array"

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(i)

    @property
    def num_classes(self):
        return len(self.images)

    @property
    def class_names(self):
        return [str(i) for i in range(len(self.images))]

    @property
    def image_shape(self):
        return self.images.shape[1:]


def make_source(n=N, shape=(32, 32, 3)):
    return ArraySource(np.random.default_rng(0).integers(0, 256, (n, *shape), dtype=np.uint8))


def take(it, k):
    return [next(it) for _ in range(k)]


def train(source, batch_size=8, seed=0, augment="cifar", index=0, count=1, **kw):
    return pipeline.train_iterator(source, batch_size=batch_size, seed=seed, augment=augment,
                                   process_index=index, process_count=count, **kw)


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


@pytest.mark.parametrize("augment", [None, "cifar", "folder"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_batch_shapes_dtypes_ranges(augment, dtype):
    source = make_source()
    source.images = source.images.astype(dtype)
    batch = next(train(source, augment=augment))
    assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == dtype
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
    assert 0 <= batch["image"].min() and batch["image"].max() <= 255
    assert set(batch["label"].tolist()) <= set(range(N))


def test_steps_follow_batch_indices_and_drop_the_ragged_end():
    src = make_source()
    labels = [b["label"] for b in take(train(src, batch_size=8, seed=3, augment=None), 6)]
    want = [row for epoch in range(3) for row in data.batch_indices(N, 8, seed=3, epoch=epoch)]
    np.testing.assert_array_equal(np.stack(labels), np.stack(want))  # labels name the examples


def test_a_source_that_takes_batches_gives_the_batches_read_item_by_item():
    src = make_source()
    taking = TakingSource(src.images, np.arange(N), num_classes=N, name="a", value_range=None)
    for augment in (None, "cifar"):
        assert_batches_equal(take(train(taking, augment=augment), 5), take(train(src, augment=augment), 5))
    assert_batches_equal(list(pipeline.eval_iterator(taking, batch_size=8, process_index=0, process_count=1)),
                         list(pipeline.eval_iterator(src, batch_size=8, process_index=0, process_count=1)))


def test_an_iterator_from_a_later_step_continues_one_from_the_start():
    src = make_source()
    assert_batches_equal(take(train(src, start=5), 4), take(train(src), 9)[5:])


def test_same_seed_same_batches_other_seed_differs():
    src = make_source()
    assert_batches_equal(take(train(src, seed=3), 4), take(train(src, seed=3, prefetch=0), 4))
    a, b = take(train(src, seed=3), 2), take(train(src, seed=4), 2)
    assert not np.array_equal(a[0]["label"], b[0]["label"])


def test_each_epoch_is_a_permutation_and_epochs_differ():
    src = make_source()  # batch 4 divides N: nothing dropped
    labels = np.concatenate([b["label"] for b in take(train(src, batch_size=4), 3 * N // 4)])
    epochs = labels.reshape(3, N)  # (epochs, N)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(N))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])


def test_augmentation_differs_between_epochs():
    src = make_source(n=8)
    first, second = take(train(src, batch_size=8), 2)
    i, j = np.argsort(first["label"]), np.argsort(second["label"])
    assert not np.array_equal(first["image"][i], second["image"][j])


def test_processes_split_the_global_batch():
    src = make_source()
    whole = take(train(src, batch_size=8), 6)
    shards = [take(train(src, batch_size=8, index=p, count=2), 6) for p in range(2)]
    for step, (p0, p1) in enumerate(zip(*shards)):
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([p0[key], p1[key]]), whole[step][key])
    first_epoch = [set(b["label"].tolist()) for shard in shards for b in shard[:N // 8]]
    assert len(set().union(*first_epoch)) == sum(map(len, first_epoch)) == 2 * (N // 8) * 4


def test_resume_from_orbax_checkpoint_continues_exactly(tmp_path):
    src = make_source()
    want = take(train(src), 7)
    it = train(src)
    take(it, 3)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(3, args=ocp.args.Composite(
            meta=ocp.args.JsonSave({"step": 3}), data=pipeline.save_args(it)))
        manager.wait_until_finished()
    take(it, 2)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        fresh = train(src)
        restored = manager.restore(3, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore(), data=pipeline.restore_args(fresh)))
    assert restored["data"] is fresh and restored["meta"] == {"step": 3}
    assert_batches_equal(take(fresh, 4), want[3:])


def test_standalone_save_and_restore(tmp_path):
    src = make_source()
    it = train(src, augment="folder")
    take(it, 2)
    pipeline.save(tmp_path / "state", it)
    want = take(it, 3)
    assert_batches_equal(take(pipeline.restore(tmp_path / "state", train(src, augment="folder")), 3),
                         want)


@pytest.mark.slow  # grain worker processes
def test_workers_give_the_same_batches_and_resume(tmp_path):
    src = make_source()
    want = take(train(src), 6)
    it = train(src, worker_count=2)
    try:
        assert_batches_equal(take(it, 3), want[:3])
        pipeline.save(tmp_path / "state", it)
    finally:
        it.close()
    resumed = pipeline.restore(tmp_path / "state", train(src, worker_count=2))
    try:
        assert_batches_equal(take(resumed, 3), want[3:])
    finally:
        resumed.close()


@pytest.mark.parametrize("name", sorted(pipeline.AUGMENTATIONS))
def test_augmentation_keeps_shape_dtype_and_is_seeded(name):
    augment = pipeline.AUGMENTATIONS[name]
    image = make_source(n=1, shape=(24, 20, 3)).images[0]
    outs = [augment(image, np.random.default_rng(seed)) for seed in (0, 0, 1, 2, 3)]
    for out in outs:
        assert out.shape == image.shape and out.dtype == image.dtype
    np.testing.assert_array_equal(outs[0], outs[1])
    assert any(not np.array_equal(outs[0], out) for out in outs[2:])


def test_cifar_augment_is_a_padded_window_maybe_flipped():
    image = make_source(n=1, shape=(8, 8, 2)).images[0]
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    windows = [w for i, j in itertools.product(range(9), repeat=2)
               for w in (padded[i:i + 8, j:j + 8], padded[i:i + 8, j:j + 8][:, ::-1])]
    for seed in range(10):
        out = pipeline.cifar_augment(image, np.random.default_rng(seed))
        assert any(np.array_equal(out, w) for w in windows)


def test_folder_augment_of_a_constant_image_is_constant():
    image = np.full((16, 12, 3), 77, np.uint8)
    for seed in range(5):
        np.testing.assert_array_equal(pipeline.folder_augment(image, np.random.default_rng(seed)), image)


def test_folder_augment_at_full_scale_can_be_the_identity():
    image = make_source(n=1, shape=(10, 10, 1)).images[0]
    outs = [pipeline.folder_augment(image, np.random.default_rng(s), scale=(1, 1), ratio=(1, 1))
            for s in range(8)]
    assert any(np.array_equal(out, image) for out in outs)
    assert any(np.array_equal(out, image[:, ::-1]) for out in outs)


@pytest.mark.parametrize("count", [1, 2])
def test_eval_counts_every_example_once(count):
    src = make_source(n=21)
    seen = []
    batches = []
    for p in range(count):
        batches.append(list(pipeline.eval_iterator(src, batch_size=8, process_index=p,
                                                   process_count=count)))
        for b in batches[-1]:
            assert b["image"].shape == (8 // count, 32, 32, 3) and b["mask"].dtype == bool
            np.testing.assert_array_equal(b["image"][~b["mask"]], 0)
            seen += b["label"][b["mask"]].tolist()
    assert [len(b) for b in batches] == [3] * count
    assert sorted(seen) == list(range(21))


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
    ({"batch_size": 7, "count": 2}, "batch_size must be a multiple of process_count=2, got 7"),
    ({"index": 2, "count": 2}, r"process_index must be an int in \[0, 2\), got 2"),
    ({"index": None, "count": 2}, "process_index and process_count must be given together"),
    ({"seed": -1}, "seed must be an int >= 0, got -1"),
    ({"augment": "mnist"}, "augment must be None or one of \\['cifar', 'folder'\\], got 'mnist'"),
    ({"worker_count": -1}, "worker_count must be an int >= 0, got -1"),
    ({"start": -1}, "start must be an int >= 0, got -1"),
    ({"batch_size": 24}, "batch_size 24 is larger than the 20 examples"),
])
def test_bad_arguments_name_argument_value_and_expected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train(make_source(), **kwargs)


def test_bad_source_is_named():
    with pytest.raises(ValueError, match=r"source\[0\] image must be a uint8 or float32 \(H, W, C\) array, got float64"):
        train(ArraySource(np.zeros((4, 8, 8, 3), np.float64)))
    with pytest.raises(ValueError, match="len\\(source\\)=0"):
        pipeline.eval_iterator(make_source(n=0), batch_size=4, process_index=0, process_count=1)
