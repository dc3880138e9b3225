"""Every mistake of the user ends in one line naming the culprit and what was expected, and exit
status 2, from every command; nothing is written before the config is validated; one run per work
directory; a bug of jconv shows its traceback and says so."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from jconv import cli, models, runner

ROOT = Path(__file__).resolve().parent.parent
QC = "configs/quadratic_cost.py:smoke"
ALEX = "configs/scaling_alexnet.py:smoke"
STUDY = "configs/scaling_study.py:smoke"
BENCH = "configs/bench.py:smoke"
REPORT = "configs/report.py:smoke"

# A config whose run records `n` measurements; before the second it waits for the file `gate`
# (if one is named), and it fails after the last if `fail`; check refuses n < 1.
TOY = textwrap.dedent('''
    import os
    import time

    import ml_collections

    from jconv.runner import ConfigError, Store


    def get_config(arg=None):
        return ml_collections.ConfigDict({"n": 4, "gate": "", "fail": False})


    def check(config):
        if config.n < 1:
            raise ConfigError(f"--config.n={config.n}; expected an int >= 1")


    def run(config, workdir):
        store = Store(workdir)
        for i in range(config.n):
            if not store.has({"i": i}):
                while i == 1 and config.gate and not os.path.exists(config.gate):
                    time.sleep(0.02)
                store.add({"i": i}, {"square": i * i})
        if config.fail:
            raise RuntimeError("a bug in the experiment")
''')

CASES = [
    # overrides and values of the quadratic-cost experiment
    ("qc_unknown_key", ["run", QC, "--config.widthz=(4,)"], ["--config.widthz", "no key 'widthz'", "known keys"]),
    ("qc_bad_int", ["run", QC, "--config.repeats=many"], ["--config.repeats='many'", "expected int"]),
    ("qc_bad_tuple", ["run", QC, "--config.widths=(1, 2"], ["--config.widths", "expected tuple"]),
    ("qc_no_value", ["run", QC, "--config.repeats"], ["--config.repeats", "expected --config.KEY=VALUE"]),
    ("qc_not_an_override", ["run", QC, "--bogus"], ["--bogus", "--config.KEY=VALUE"]),
    ("qc_zero_width", ["run", QC, "--config.widths=(0, 4)"], ["--config.widths=(0, 4)", "ints ≥ 1"]),
    ("qc_variant", ["run", QC, "--config.variants=('type3',)"], ["--config.variants", "type2_2"]),
    ("qc_repeats", ["run", QC, "--config.repeats=0"], ["--config.repeats=0", "int ≥ 1"]),
    ("qc_kernel", ["run", QC, "--config.kernel2=0"], ["--config.kernel2=0", "int ≥ 1"]),
    ("qc_height", ["run", QC, "--config.height=-3"], ["--config.height=-3", "int ≥ 1"]),
    ("qc_ratio", ["run", QC, "--config.reduce_ratio=-1"], ["--config.reduce_ratio=-1.0", "> 0"]),
    ("qc_image", ["run", QC, "--config.image=no_such_image"], ["--config.image='no_such_image'", "skimage.data"]),
    # the scaling experiments: training settings, models, data
    ("alex_steps", ["run", ALEX, "--config.steps=-5"], ["--config.steps=-5", "≥ 1"]),
    ("alex_batch", ["run", ALEX, "--config.batch_size=0"], ["--config.batch_size=0", "≥ 1"]),
    ("alex_rate", ["run", ALEX, "--config.learning_rate=0"], ["--config.learning_rate=0.0", "> 0"]),
    ("alex_optimizer", ["run", ALEX, "--config.optimizer=rmsprop"], ["--config.optimizer='rmsprop'", "adam"]),
    ("alex_schedule", ["run", ALEX, "--config.schedule=nope"], ["--config.schedule='nope'", "known"]),
    ("alex_dtype", ["run", ALEX, "--config.dtype=float16"], ["--config.dtype='float16'", "bfloat16"]),
    ("alex_width", ["run", ALEX, "--config.widths=(0.001,)"], ["--config.widths=(0.001,)", "rounds"]),
    ("alex_negative_width", ["run", ALEX, "--config.widths=(-1.0,)"], ["--config.widths", "numbers > 0"]),
    ("alex_variant", ["run", ALEX, "--config.variants=('nope',)"], ["--config.variants", "unknown conv variant"]),
    ("alex_input_size", ["run", ALEX, "--config.input_size=32"], ["--config.input_size=32", "does not fit"]),
    ("alex_dataset", ["run", ALEX, "--config.dataset=nope"], ["--config.dataset='nope'", "expected one of"]),
    ("alex_data_dir", ["run", ALEX, "--config.dataset=cifar10"], ["--config.dataset='cifar10'", "data_dir"]),
    ("alex_missing_dir", ["run", ALEX, "--config.dataset=cifar10", "--config.data_dir=/no/such/dir"],
     ["/no/such/dir", "does not exist", "expected"]),
    ("alex_channels", ["run", ALEX, "--config.in_channels=2"], ["--config.in_channels=2", "1 or 3"]),
    ("googlenet_warmup", ["run", "configs/scaling_googlenet.py:smoke", "--config.warmup_steps=-1"],
     ["--config.warmup_steps=-1", "≥ 0"]),
    ("study_horizons", ["run", STUDY, "--config.horizons=(20, 10)"], ["--config.horizons=(20, 10)", "increasing"]),
    ("study_rates", ["run", STUDY, "--config.learning_rates=(0.0,)"], ["--config.learning_rates", "> 0"]),
    ("study_models", ["run", STUDY, "--config.models=('vgg',)"], ["--config.models", "'vgg'"]),
    ("study_controls", ["run", STUDY, "--config.controls.width=0.5"], ["--config.controls.width=0.5", "--config.widths"]),
    ("study_batch", ["run", STUDY, "--config.batch_size=0"], ["--config.batch_size=0", "≥ 1"]),
    ("study_input_size", ["run", STUDY, "--config.input_sizes.alexnet=32"],
     ["--config.input_sizes.alexnet=32", "does not fit"]),
    ("study_dtype", ["run", STUDY, "--config.dtype=x"], ["--config.dtype='x'", "float32"]),
    ("study_seeds", ["run", STUDY, "--config.seeds=()"], ["--config.seeds", "one or more"]),
    ("study_smoothing", ["run", STUDY, "--config.label_smoothing=1.5"], ["--config.label_smoothing=1.5", "[0, 1)"]),
    ("bench_cases", ["run", BENCH, "--config.cases=('nope',)"], ["--config.cases=('nope',)", "known"]),
    ("bench_passes", ["run", BENCH, "--config.passes=('sideways',)"], ["--config.passes", "fwd_bwd"]),
    ("bench_repeats", ["run", BENCH, "--config.repeats=0"], ["--config.repeats=0", "≥ 1"]),
    ("bench_model_size", ["run", BENCH, "--config.model_input_size=20"], ["--config.model_input_size=20", "fit"]),
    ("report_quadratic", ["run", REPORT, "--config.quadratic.widths=(0,)"], ["--config.quadratic.widths=(0,)", "≥ 1"]),
    ("report_order", ["run", REPORT, "--config.order_maps=5000"], ["--config.order_maps=5000", "depth_maps"]),
    # config files
    ("missing_config", ["run", "configs/no_such.py"], ["configs/no_such.py", "does not exist"]),
    ("json_config", ["run", "{tmp}/config.json"], ["config.json", "expected a Python file"]),
    ("json_text_config", ["run", "{tmp}/json_text.py"], ["json_text.py", "NameError", "true"]),
    ("broken_python_config", ["run", "{tmp}/broken.py"], ["broken.py", "not a Python config file", "line"]),
    ("binary_config", ["run", "{tmp}/binary.py"], ["binary.py", "not a Python config file"]),
    ("directory_config", ["run", "{tmp}"], ["is a directory", "configs/NAME.py"]),
    ("unknown_arg", ["run", "configs/quadratic_cost.py:huge"], ["arg='huge'", "expected None or 'smoke'"]),
    ("no_get_config", ["run", "{tmp}/no_get_config.py"], ["no_get_config.py", "get_config"]),
    ("get_config_no_arg", ["run", "{tmp}/no_arg.py:smoke"], ["no_arg.py", "get_config('smoke')", "arg=None"]),
    # work directories
    ("workdir_is_a_file", ["run", "{tmp}/toy.py", "--workdir", "{tmp}/a_file"], ["a_file", "a file is in the way"]),
    ("workdir_under_a_file", ["run", "{tmp}/toy.py", "--workdir", "{tmp}/a_file/sub"], ["a_file/sub", "expected a directory"]),
    ("corrupt_config_json", ["run", "{tmp}/toy.py", "--workdir", "{tmp}/corrupt_config"],
     ["corrupt_config/config.json", "not a config.json"]),
    ("corrupt_middle_line", ["run", "{tmp}/toy.py", "--workdir", "{tmp}/corrupt_line"],
     ["corrupt_line/measurements.jsonl", "line 2", "not a measurement record"]),
    ("other_config", ["run", "{tmp}/toy.py", "--config.n=3", "--workdir", "{tmp}/other"], ["different config", "['n']"]),
    # summary
    ("summary_model", ["summary", "vgg"], ["model='vgg'", "alexnet"]),
    ("summary_width", ["summary", "alexnet", "--config.width=0"], ["--config.width=0.0", "positive"]),
    ("summary_classes", ["summary", "alexnet", "--config.num_classes=0"], ["num_classes=0", "expected an int ≥ 1"]),
    ("summary_channels", ["summary", "mobilenet_v1", "--config.in_channels=0"], ["in_channels=0", "int ≥ 1"]),
    ("summary_size", ["summary", "alexnet_single_tower", "--config.input_size=40"], ["--config.input_size=40", "does not fit"]),
    ("summary_variant", ["summary", "alexnet", "--config.variant=nope"], ["--config.variant='nope'", "known"]),
    ("summary_aux", ["summary", "alexnet", "--config.aux_classifiers=true"], ["--config.aux_classifiers", "googlenet"]),
    ("summary_key", ["summary", "alexnet", "--config.widht=1"], ["--config.widht", "no key"]),
    ("summary_option", ["summary", "alexnet", "--wide"], ["--wide", "--config.KEY=VALUE"]),
    # launch
    ("launch_processes", ["launch", "--processes", "0", "--", "demo"], ["--processes", ">= 1"]),
    ("launch_not_int", ["launch", "--processes", "two", "--", "demo"], ["--processes", "'two'"]),
    ("launch_no_command", ["launch", "--processes", "2"], ["launch", "-- and a jconv command"]),
    ("launch_unknown_command", ["launch", "--", "train"], ["'train'", "run"]),
    ("launch_nested", ["launch", "--", "launch", "--", "demo"], ["launch", "other than launch"]),
    ("launch_bad_config", ["launch", "--", "run", QC, "--config.repeats=0"], ["--config.repeats=0", "int ≥ 1"]),
    # demo and the command line itself
    ("demo_size", ["demo", "--size", "3"], ["--size", ">= 5", "3"]),
    ("demo_k1", ["demo", "--k1", "0"], ["--k1", ">= 1"]),
    ("demo_k2", ["demo", "--k2", "x"], ["--k2", "'x'"]),
    ("demo_option", ["demo", "--big"], ["--big", "unrecognized"]),
    ("info_option", ["info", "--verbose"], ["--verbose", "unrecognized"]),
    ("info_argument", ["info", "all"], ["all", "unrecognized"]),
    ("no_command", [], ["COMMAND", "required"]),
    ("run_after_dashes", ["run", QC, "--", "demo"], ["unrecognized arguments", "-- demo"]),
]


@pytest.fixture
def files(tmp_path, monkeypatch):
    """The files the cases name under ``{tmp}``; the tests run from the repository root."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("JCONV_DEBUG", raising=False)
    (tmp_path / "toy.py").write_text(TOY)
    (tmp_path / "config.json").write_text('{"n": 4}')
    (tmp_path / "json_text.py").write_text('{"n": 4, "smoke": true}\n')
    (tmp_path / "broken.py").write_text('{"n": 4,\n "widths": [1, 2\n')
    (tmp_path / "binary.py").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "no_get_config.py").write_text("def run(config, workdir):\n    pass\n")
    (tmp_path / "no_arg.py").write_text(TOY.replace("def get_config(arg=None)", "def get_config()"))
    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "corrupt_config").mkdir()
    (tmp_path / "corrupt_config" / "config.json").write_text('{"n": 4, "pause"')
    (tmp_path / "corrupt_line").mkdir()
    records = [json.dumps({"key": {"i": i}, "square": i * i}) for i in range(3)]
    records[1] = records[1][:12]  # a line cut short in the middle of the file
    (tmp_path / "corrupt_line" / "measurements.jsonl").write_text("\n".join(records) + "\n")
    assert cli.main(["run", str(tmp_path / "toy.py"), "--workdir", str(tmp_path / "other")]) == 0
    return tmp_path


def call(argv, capsys):
    """``jconv ARGV`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_mistake_is_one_line_and_exit_2(files, capsys, argv, words):
    code, err = call([a.replace("{tmp}", str(files)) for a in argv], capsys)
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert " error: " in err
    for word in words:
        assert word in err, (word, err)


def test_there_are_forty_cases():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


def test_a_rejected_config_writes_nothing_and_the_next_run_works(files, capsys):
    workdir = files / "w"
    code, err = call(["run", str(files / "toy.py"), "--config.n=0", "--workdir", str(workdir)], capsys)
    assert code == 2 and "--config.n=0; expected an int >= 1" in err
    assert not workdir.exists()  # no config.json, no lock: nothing
    code, err = call(["run", str(files / "toy.py"), "--workdir", str(workdir)], capsys)
    assert code == 0, err
    assert len(runner.Store(workdir)) == 4


def test_a_rejected_override_of_a_real_experiment_writes_nothing(files, capsys):
    workdir = files / "qc"
    code, _ = call(["run", QC, "--config.repeats=-1", "--workdir", str(workdir)], capsys)
    assert code == 2 and not workdir.exists()
    runner.validate(QC)  # what the next, correct run finds: a valid config and no work directory


def test_a_locked_workdir_names_its_holder(files, capsys):
    workdir = files / "held"
    with runner.lock_workdir(workdir):
        code, err = call(["run", str(files / "toy.py"), "--workdir", str(workdir)], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"is in use by another run (pid {os.getpid()} on host " in err
    assert not (workdir / "config.json").exists()
    assert call(["run", str(files / "toy.py"), "--workdir", str(workdir)], capsys)[0] == 0


def test_read_only_workdir(files, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    workdir = files / "read_only"
    workdir.mkdir()
    workdir.chmod(0o555)
    try:
        code, err = call(["run", str(files / "toy.py"), "--workdir", str(workdir)], capsys)
    finally:
        workdir.chmod(0o755)
    assert code == 2 and "Traceback" not in err
    assert "read_only" in err and "Permission denied" in err and "expected a directory" in err


def test_debug_shows_the_traceback(files, capsys, monkeypatch):
    argv = ["run", QC, "--config.repeats=0"]
    code, err = call(["--debug", *argv], capsys)
    assert code == 2 and "Traceback" in err and "jconv.errors.ConfigError" in err
    assert err.strip().splitlines()[-1].startswith("jconv run: error: ")
    monkeypatch.setenv("JCONV_DEBUG", "1")
    code, err = call(argv, capsys)
    assert code == 2 and "Traceback" in err


def test_an_internal_error_shows_the_traceback_and_says_so(files, capsys):
    code, err = call(["run", str(files / "toy.py"), "--config.fail=true", "--workdir", str(files / "bug")], capsys)
    assert code == 1
    assert "Traceback" in err and "RuntimeError: a bug in the experiment" in err
    last = err.strip().splitlines()[-1]
    assert "internal error" in last and "bug of jconv" in last and "report it with the traceback" in last
    assert len(runner.Store(files / "bug")) == 4  # what was measured before it stays


def test_a_config_file_failing_inside_jconv_is_an_internal_error(files, capsys):
    (files / "calls_jconv.py").write_text("from jconv import runner\nrunner.Store(None)\n")
    code, err = call(["run", str(files / "calls_jconv.py")], capsys)
    assert code == 1 and "Traceback" in err and "internal error" in err.strip().splitlines()[-1]


def test_build_refuses_a_count_before_any_layer():
    with pytest.raises(ValueError, match=r"^build: num_classes=0; expected an int ≥ 1$"):
        models.build("alexnet", num_classes=0, rngs=None)
    with pytest.raises(ValueError, match=r"^build: num_classes=2\.5; expected an int ≥ 1$"):
        models.build("alexnet", num_classes=2.5, rngs=None)
    with pytest.raises(ValueError, match=r"^build: in_channels=True; expected an int ≥ 1$"):
        models.build("alexnet", in_channels=True, rngs=None)


def _jconv(*argv, **popen):
    return subprocess.Popen([sys.executable, "-m", "jconv", *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _wait_for_records(workdir, count, proc, timeout=120):
    log = workdir / "measurements.jsonl"
    deadline = time.monotonic() + timeout
    while not (log.exists() and len(log.read_text().splitlines()) >= count):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no measurement appeared"
        time.sleep(0.05)


@pytest.mark.slow  # another process: python -m jconv as a user runs it
def test_a_second_run_on_a_workdir_in_use_exits_2_and_the_first_records_once(files):
    workdir, gate = files / "shared", files / "gate"
    first = _jconv("run", str(files / "toy.py"), f"--config.gate={gate}", "--workdir", str(workdir))
    try:
        _wait_for_records(workdir, 1, first)  # the first holds the lock, waiting at its gate
        second = _jconv("run", str(files / "toy.py"), f"--config.gate={gate}", "--workdir", str(workdir))
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2 and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert f"is in use by another run (pid {first.pid} on host " in err
        gate.touch()
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, err
    keys = [json.loads(line)["key"]["i"] for line in (workdir / "measurements.jsonl").read_text().splitlines()]
    assert keys == [0, 1, 2, 3]


@pytest.mark.slow  # another process: python -m jconv as a user runs it
def test_a_killed_holder_does_not_block_the_next_run(files, capsys):
    workdir, gate = files / "killed", files / "gate"
    argv = ["run", str(files / "toy.py"), f"--config.gate={gate}", "--workdir", str(workdir)]
    holder = _jconv(*argv)
    try:
        _wait_for_records(workdir, 1, holder)  # it holds the lock, waiting at its gate
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=60)
    finally:
        holder.kill()
    assert holder.returncode == -signal.SIGKILL
    assert str(holder.pid) in (workdir / ".lock.owner").read_text()  # left behind, and harmless
    with open(workdir / "measurements.jsonl", "a") as f:
        f.write('{"key": {"i": 1}, "squ')  # a line cut short by the kill
    gate.touch()
    code, err = call(argv, capsys)
    assert code == 0, err
    keys = [json.loads(line)["key"]["i"] for line in (workdir / "measurements.jsonl").read_text().splitlines()]
    assert keys == [0, 1, 2, 3]
    assert not (workdir / ".lock.owner").exists()


@pytest.mark.slow  # another process: python -m jconv as a user runs it
def test_a_launched_job_takes_the_lock_once_and_records_once(files):
    workdir = files / "job"
    argv = ["launch", "--processes", "2", "--devices-per-process", "1", "--", "run", str(files / "toy.py"),
            "--workdir", str(workdir)]
    with runner.lock_workdir(workdir):
        _, err = (proc := _jconv(*argv)).communicate(timeout=120)
    assert proc.returncode == 2 and "is in use by another run" in err and len(err.strip().splitlines()) == 1
    out, _ = (proc := _jconv(*argv)).communicate(timeout=120)
    assert proc.returncode == 0, out
    keys = [json.loads(line)["key"]["i"] for line in (workdir / "measurements.jsonl").read_text().splitlines()]
    assert keys == [0, 1, 2, 3]  # written by process 0 alone


@pytest.mark.slow  # another process: python -m jconv as a user runs it
@pytest.mark.parametrize("argv, words", [
    (["run", QC, "--config.repeats=0"], ["--config.repeats=0", "int ≥ 1"]),
    (["summary", "alexnet", "--config.num_classes=0"], ["num_classes=0", "int ≥ 1"]),
    (["demo", "--size", "3"], ["--size", ">= 5"]),
], ids=["run", "summary", "demo"])
def test_python_m_jconv_mistakes(argv, words):
    _, err = (proc := _jconv(*argv)).communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert all(word in err for word in words), err
