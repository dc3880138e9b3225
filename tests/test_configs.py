"""Every config file in configs/ loads, is locked, and runs end to end in its smoke mode."""

from pathlib import Path

import pytest

from jconv import runner

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.py"))
# Configs whose smoke run another test makes, with more checks: not run twice.
SMOKED_ELSEWHERE = {"report": "tests/test_report.py", "scaling_study": "tests/test_scaling_study.py",
                    "scaling_alexnet": "tests/test_scaling_data.py",
                    "quadratic_cost": "tests/test_quadratic_cost.py"}


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_locked(path):
    config, _, _ = runner.load(str(path))
    with pytest.raises(AttributeError):
        config.no_such_key = 1


def test_configs_smoked_elsewhere_are_smoked_there():
    root = Path(__file__).resolve().parent.parent
    for stem, test in SMOKED_ELSEWHERE.items():
        assert f"configs/{stem}.py" in (root / test).read_text() or f'"{stem}.py"' in (root / test).read_text()


@pytest.mark.slow  # every config end to end
@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem not in SMOKED_ELSEWHERE], ids=lambda p: p.stem)
def test_config_runs_in_smoke_mode(path, tmp_path):
    workdir = runner.run(f"{path}:smoke", workdir=tmp_path / path.stem)
    assert (workdir / "config.json").exists()
    assert (workdir / "measurements.jsonl").stat().st_size > 0
    for png in workdir.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
