"""The experiment runner: config loading and overrides, resumable measurement store."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jconv import runner
from jconv import workdir as workdir_files

ROOT = Path(__file__).resolve().parent.parent
CONFIG = textwrap.dedent('''
    import ml_collections

    from experiments.quadratic_cost import run

    def get_config(arg=None):
        config = ml_collections.ConfigDict()
        config.repeats = 3
        config.rate = 0.5
        config.name = "camera"
        config.widths = (4, 8)
        config.flag = False
        config.nested = ml_collections.ConfigDict({"depth": 2})
        if arg == "smoke":
            config.repeats = 1
        config.lock()
        return config
''')


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "configs" / "toy.py"
    path.parent.mkdir()
    path.write_text(CONFIG)
    return path


def test_overrides_are_typed(config_file):
    config, _, arg = runner.load(f"{config_file}:smoke", [
        "--config.repeats=7", "--config.rate=2", "--config.name=coins",
        "--config.widths=(1, 2, 3)", "--config.flag=true", "--config.nested.depth=5"])
    assert arg == "smoke"
    assert (config.repeats, config.rate, config.name, config.widths, config.flag,
            config.nested.depth) == (7, 2.0, "coins", (1, 2, 3), True, 5)


def test_tuples_take_lists_and_single_values(config_file):
    config, _, _ = runner.load(str(config_file), ["--config.widths=[16, 32]"])
    assert config.widths == (16, 32)
    config, _, _ = runner.load(str(config_file), ["--config.widths=16"])
    assert config.widths == (16,)


@pytest.mark.parametrize("override, pattern", [
    ("--config.repets=7", r"toy\.py: --config\.repets='7': no key 'repets'; known keys: \["),
    ("--config.nested.dpth=1", r"toy\.py: --config\.nested\.dpth='1': no key 'nested\.dpth'"),
    ("--config.repeats.x=1", r"toy\.py: --config\.repeats\.x='1': no key 'repeats\.x'"),
    ("--config.repeats=seven", r"toy\.py: --config\.repeats='seven': expected int \(like 3\): "
                               r"invalid literal"),
    ("--config.repeats=2.5", r"toy\.py: --config\.repeats='2\.5': expected int \(like 3\)"),
    ("--config.rate=fast", r"toy\.py: --config\.rate='fast': expected float \(like 0\.5\)"),
    ("--config.flag=maybe", r"toy\.py: --config\.flag='maybe': expected bool \(like False\)"),
    ("--config.widths=(1, 2", r"toy\.py: --config\.widths='\(1, 2': expected tuple"),
    ("--config.repeats", r"toy\.py: override '--config\.repeats': expected --config\.KEY=VALUE"),
])
def test_bad_override_names_key_value_and_file(config_file, override, pattern):
    with pytest.raises(runner.ConfigError, match=pattern):
        runner.load(str(config_file), [override])


def test_bad_config_file(tmp_path):
    with pytest.raises(runner.ConfigError, match=r"config file '.*missing\.py' does not exist"):
        runner.load(str(tmp_path / "missing.py"))
    path = tmp_path / "bad.py"
    path.write_text("import ml_collections\ndef get_config():\n"
                    "    return ml_collections.ConfigDict({'x': 1})\n")
    with pytest.raises(runner.ConfigError, match=r"bad\.py: names no experiment: import its run"):
        runner.load(str(path))
    path.write_text("from experiments.no_such_experiment import run\n")
    with pytest.raises(runner.ConfigError,
                       match=r"bad\.py: No module named 'experiments\.no_such_experiment'$"):
        runner.load(str(path))
    with pytest.raises(runner.ConfigError, match=r"cost\.py: arg='huge'; expected None"):
        runner.load(str(ROOT / "configs" / "quadratic_cost.py:huge"))


@pytest.mark.slow  # other processes: python -m jconv run, killed and rerun
def test_a_config_file_names_what_it_runs_without_experiments(tmp_path):
    """jconv imports nothing of experiments/ and leaves sys.path alone."""
    path = tmp_path / "own.py"
    path.write_text(textwrap.dedent('''
        import ml_collections

        def run(config, workdir):
            (workdir / "done").write_text(str(config.n))

        def get_config():
            return ml_collections.ConfigDict({"n": 1})
    '''))
    code = textwrap.dedent(f'''
        import sys

        class NotInstalled:  # experiments/ as if jconv were installed without it
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] == "experiments":
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

        sys.meta_path.insert(0, NotInstalled())
        before = list(sys.path)
        from jconv import cli
        argv = ["run", {str(path)!r}, "--config.n=2", "--workdir", {str(tmp_path / "w")!r}]
        assert cli.main(argv) == 0
        assert sys.path == before and "experiments" not in sys.modules
        assert cli.main(["run", {str(ROOT / "configs" / "quadratic_cost.py")!r}]) == 2
    ''')
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "w" / "done").read_text() == "2"
    assert ("quadratic_cost.py: No module named 'experiments'; experiments/ is installed with "
            "the repository: pip install -e ." in done.stderr)


def test_workdir_of_another_config_is_refused(config_file, tmp_path):
    config, path, _ = runner.load(str(config_file))
    runner.check_workdir(tmp_path / "w", config, path)
    runner.check_workdir(tmp_path / "w", config, path)  # same config: fine
    other, _, _ = runner.load(str(config_file), ["--config.repeats=9"])
    with pytest.raises(runner.ConfigError, match=r"different config \(differs in \['repeats'\]"):
        runner.check_workdir(tmp_path / "w", other, path)


def test_workdir_of_a_config_with_an_experiment_key_resumes(config_file, tmp_path):
    """config.json written when configs named their module in ``experiment``."""
    config, path, _ = runner.load(str(config_file))
    saved = runner.config_json(config)
    saved["experiment"] = "quadratic_cost"
    saved["nested"]["experiment"] = "quadratic_cost"
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text(json.dumps(saved))
    runner.check_workdir(tmp_path / "w", config, path)
    assert "experiment" not in json.loads((tmp_path / "w" / "config.json").read_text())


def test_store_resumes_and_drops_a_partial_line(tmp_path):
    store = runner.Store(tmp_path)
    store.add({"k": 1}, {"v": 1.5})
    store.add({"k": 2}, {"v": 2.5})
    with open(store.path, "a") as f:
        f.write('{"key": {"k": 3}, "v"')  # killed mid-write
    reopened = runner.Store(tmp_path)
    assert len(reopened) == 2 and reopened.has({"k": 2}) and not reopened.has({"k": 3})
    reopened.add({"k": 3}, {"v": 3.5})
    lines = [json.loads(line) for line in store.path.read_text().splitlines()]
    assert [r["key"]["k"] for r in lines] == [1, 2, 3]


def test_store_refuses_a_corrupt_line_and_keeps_every_record(tmp_path):
    log = tmp_path / "measurements.jsonl"
    lines = [json.dumps({"key": {"k": i}, "v": i}) for i in range(3)]
    log.write_text(lines[0] + "\n\n" + lines[1] + "\n" + lines[2] + "\n")  # a blank line is no record
    assert len(runner.Store(tmp_path)) == 3
    for bad, number in (("{\"key\": {\"k\": 9}, \"v\"", 2), ("[1, 2]", 2), ('{"v": 1}', 2),
                        ('{"key": 3}', 2), ("\udcff", 2)):
        text = "\n".join([lines[0], bad, lines[1], lines[2]]) + "\n"
        log.write_text(text, errors="surrogateescape")
        with pytest.raises(runner.WorkdirError, match=rf"measurements\.jsonl: line {number} is not a "
                                                      "measurement record"):
            runner.Store(tmp_path)
        assert log.read_text(errors="surrogateescape") == text  # nothing dropped
    log.write_text("\n".join(lines) + "\n" + lines[0][:10] + "\n")  # a final line, but whole
    with pytest.raises(runner.WorkdirError, match="line 4"):
        runner.Store(tmp_path)


def test_store_drops_only_a_cut_final_line_and_only_in_the_writer(tmp_path, monkeypatch):
    log = tmp_path / "measurements.jsonl"
    whole = json.dumps({"key": {"k": 1}, "v": 1}) + "\n"
    log.write_text(whole + '{"key": {"k": 2}, "v": 2}')  # whole but for its newline: cut short
    monkeypatch.setattr(workdir_files, "writer", lambda: False)
    assert len(runner.Store(tmp_path)) == 1 and log.read_text() != whole  # another process's file
    monkeypatch.setattr(workdir_files, "writer", lambda: True)
    assert len(runner.Store(tmp_path)) == 1 and log.read_text() == whole


def test_lock_workdir_is_one_run_at_a_time(tmp_path, monkeypatch):
    workdir = tmp_path / "w"
    with runner.lock_workdir(workdir):
        owner = json.loads((workdir / ".lock.owner").read_text())
        assert owner["pid"] == os.getpid()
        with pytest.raises(runner.WorkdirError, match=rf"'.*w' is in use by another run \(pid "
                                                      rf"{os.getpid()} on host {owner['host']} since "):
            with runner.lock_workdir(workdir):
                pass
        monkeypatch.setattr(workdir_files, "writer", lambda: False)
        with runner.lock_workdir(workdir):  # another process of the same job: no lock of its own
            pass
        monkeypatch.setattr(workdir_files, "writer", lambda: True)
    assert not (workdir / ".lock.owner").exists()
    with runner.lock_workdir(workdir):  # released
        pass


def test_an_unwritable_workdir_is_a_workdir_error(tmp_path, monkeypatch):
    import filelock

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self.lock_file))

    monkeypatch.setattr(filelock.FileLock, "acquire", refuse)
    with pytest.raises(runner.WorkdirError, match=r"'.*ro': Permission denied; expected a directory"):
        with runner.lock_workdir(tmp_path / "ro"):
            pass
    (tmp_path / "file").write_text("")
    with pytest.raises(runner.WorkdirError, match=r"'.*file/w': a file is in the way"):
        runner.check_workdir(tmp_path / "file" / "w", runner.load(str(ROOT / "configs/quadratic_cost.py"))[0], "x")


def test_corrupt_config_json_is_named(config_file, tmp_path):
    config, path, _ = runner.load(str(config_file))
    (tmp_path / "w").mkdir()
    for text in ("{\"repeats\": 3", "[1, 2]", "\x00\x01"):
        (tmp_path / "w" / "config.json").write_text(text)
        with pytest.raises(runner.WorkdirError, match=r"w/config\.json: not a config\.json of a run"):
            runner.check_workdir(tmp_path / "w", config, path)


def test_validate_runs_the_config_files_check_before_anything_is_written(config_file, tmp_path):
    source = config_file.read_text()
    config_file.write_text(source + textwrap.dedent('''
        def check(config):
            if config.repeats < 1:
                raise ValueError(f"--config.repeats={config.repeats}; expected an int >= 1")
    '''))
    with pytest.raises(runner.ConfigError, match=r"toy\.py: --config\.repeats=0; expected an int >= 1$"):
        runner.run(str(config_file), ["--config.repeats=0"], tmp_path / "w")
    assert not (tmp_path / "w").exists()
    from jconv.data.errors import DataError

    config_file.write_text(source + "def check(config):\n    raise DataError('/data', 'is gone', 'a folder')\n"
                           "from jconv.data.errors import DataError\n")
    with pytest.raises(DataError, match="^/data: is gone; expected a folder$"):
        runner.validate(str(config_file))


def _run_cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "jconv", "run", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)


@pytest.mark.slow  # other processes: python -m jconv run, killed and rerun
def test_cli_reports_a_bad_override(tmp_path):
    proc = _run_cli("configs/quadratic_cost.py:smoke", "--config.widthz=(4,)",
                    "--workdir", str(tmp_path))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "configs/quadratic_cost.py: --config.widthz='(4,)': no key 'widthz'" in out
    assert "Traceback" not in out
    proc = _run_cli("configs/quadratic_cost.py:smoke", "--config.repeats=many",
                    "--workdir", str(tmp_path))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in out
    assert "configs/quadratic_cost.py: --config.repeats='many': expected int (like 3)" in out
    proc = _run_cli("configs/no_such.py", "--workdir", str(tmp_path))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "config file 'configs/no_such.py' does not exist" in out


@pytest.mark.slow  # other processes: python -m jconv run, killed and rerun
def test_killed_run_resumes_with_every_measurement_once(quadratic_smoke):
    log = quadratic_smoke / "run" / "measurements.jsonl"
    partial = int((quadratic_smoke / "partial").read_text())
    keys = [json.dumps(json.loads(line)["key"], sort_keys=True)
            for line in log.read_text().splitlines()]
    from experiments import quadratic_cost

    config, _, _ = runner.load(str(ROOT / "configs/quadratic_cost.py:smoke"))
    expected = {json.dumps(k, sort_keys=True) for k in quadratic_cost.plan(config)}
    assert len(keys) == len(set(keys)) == len(expected) and set(keys) == expected
    assert 3 <= partial < len(expected)
