"""Every config file in configs/ loads, is locked, and runs end to end in its smoke mode."""

from pathlib import Path

import pytest

from jconv import runner

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.py"))


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_locked(path):
    config, _, _ = runner.load(str(path))
    with pytest.raises(AttributeError):
        config.no_such_key = 1


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_runs_in_smoke_mode(path, tmp_path):
    workdir = runner.run(f"{path}:smoke", workdir=tmp_path / path.stem)
    assert (workdir / "config.json").exists()
    assert (workdir / "measurements.jsonl").stat().st_size > 0
    for png in workdir.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
