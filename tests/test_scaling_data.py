"""open_dataset on files a user wrote (CIFAR batches, a folder of PNGs), and the scaling smoke run on them."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jconv import data, runner
from jconv.data.errors import DataError
from tests.test_data_files import write_cifar

ROOT = Path(__file__).resolve().parents[1]


def write_image_folder(root, classes=("cat", "dog"), per_class=4, size=(12, 10), seed=0):
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class if split == "train" else 2):
                Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "jconv", "run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cifar_files_resized_to_the_model_input(tmp_path):
    batches = write_cifar(tmp_path)
    train, test, augment = data.open_dataset("cifar10", image_size=67, data_dir=tmp_path)
    assert augment == "cifar" and train.image_shape == (67, 67, 3) and train.num_classes == 10
    image, label = test[1]
    assert image.shape == (67, 67, 3) and image.dtype == np.uint8
    assert label == batches["test_batch"][b"labels"][1]
    native, _, _ = data.open_dataset("cifar10", image_size=32, data_dir=tmp_path)
    assert type(native).__name__ == "CifarSource"


def test_image_folder_checks_every_file_before_training(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    train, val, augment = data.open_dataset("image_folder", image_size=16, data_dir=root)
    assert augment == "folder" and (len(train), len(val)) == (8, 4) and train[0][0].shape == (16, 16, 3)
    bad = root / "val" / "dog" / "1.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated: the header still reads
    data.open_dataset("image_folder", image_size=16, data_dir=root, verify=False)
    with pytest.raises(DataError, match="1.png: cannot be decoded"):
        data.open_dataset("image_folder", image_size=16, data_dir=root)


@pytest.mark.slow  # end-to-end training run
def test_scaling_smoke_on_a_cifar_folder_from_the_command_line(tmp_path):
    write_cifar(tmp_path / "cifar")
    out = _run_cli("configs/scaling_alexnet.py:smoke", "--config.dataset=cifar10",
                   f"--config.data_dir={tmp_path / 'cifar'}", "--workdir", str(tmp_path / "w"))
    assert out.returncode == 0, out.stderr[-3000:]
    table = (tmp_path / "w" / "table.md").read_text()
    assert "# alexnet on cifar10 67×67" in table and table.count("| standard | 0.") == 2
    assert (tmp_path / "w" / "train" / "standard_w0.125" / "checkpoints" / "2" / "state").is_dir()


@pytest.mark.slow  # end-to-end training run
def test_scaling_smoke_on_an_image_folder(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=8)
    workdir = runner.run("configs/scaling_alexnet.py:smoke", ["--config.dataset=image_folder",
                         f"--config.data_dir={root}", "--config.widths=(0.125,)"], tmp_path / "w")
    table = (workdir / "table.md").read_text()
    assert "# alexnet on image_folder 67×67" in table and "| standard | 0.125 |" in table


@pytest.mark.slow  # end-to-end training run
@pytest.mark.parametrize("args, message", [
    (["--config.dataset=cifar10"], "--config.dataset='cifar10': dataset 'cifar10' "
                                   "reads files: data_dir must name its folder"),
    (["--config.dataset=cifar100", "--config.data_dir=/no/such/dir"], "/no/such/dir: does not exist; expected "
                                                                      "the cifar100 python-version folder"),
])
def test_bad_data_is_one_line_without_a_traceback(tmp_path, args, message):
    out = _run_cli("configs/scaling_alexnet.py:smoke", *args, "--workdir", str(tmp_path / "w"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("jconv run: error: ")
    assert message in out.stderr
    assert not (tmp_path / "w" / "train").exists()
