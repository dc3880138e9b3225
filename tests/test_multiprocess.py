"""Two JAX processes with two CPU devices each train as one job (``jconv.launch``).

Checked against one process with four devices, with the data in memory and streamed by
grain (each process reading its own rows): the same losses, one checkpoint on disk, and,
after both processes are killed and restarted, the same final parameters bit for bit as
an uninterrupted two-process run (grain's iterator state restored per process).
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jconv import launch
from tests.test_train import REPO, _env, _losses
from tests.tolerance import assert_close

STEPS, EVERY = 6, 3


def run_worker(workdir, source, sleep=0.0):
    """One process of the job: TinyCNN on the tiny set held in memory, or on procedural
    sources streamed by grain (CIFAR augmentation); process 0 saves the final params."""
    launch.initialize_from_env()
    import jax
    from flax import nnx

    from jconv import data
    from jconv.train import TrainConfig, step_flops, train
    from tests.test_train import TinyCNN, tiny_dataset

    if source == "memory":
        ds = tiny_dataset()
        channels, num_classes = 1, ds.num_classes
    else:
        train_src, test_src, _ = data.open_dataset("procedural", image_size=16, train_size=40,
                                                   test_size=11, seed=0)
        ds, channels, num_classes = (train_src, test_src, "cifar"), 3, train_src.num_classes
    model = TinyCNN(channels, num_classes, rngs=nnx.Rngs(0))
    config = TrainConfig(steps=STEPS, batch_size=16, learning_rate=0.05, optimizer="sgd",
                         log_every=1, checkpoint_every=EVERY, seed=3)
    on_step = (lambda step: time.sleep(sleep)) if sleep else None
    result = train(model, ds, config, workdir, progress=False, on_step=on_step)
    # XLA's count of one step, on this process's first device (as the scaling study counts).
    shape = (8, 8, 1) if source == "memory" else (16, 16, 3)
    result["step_flops"] = step_flops(TinyCNN(channels, num_classes, rngs=nnx.Rngs(0)), config, shape, num_classes)
    if jax.process_index() == 0:
        state = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        flat, _ = jax.tree_util.tree_flatten_with_path(state)
        np.savez(Path(workdir) / "final_params.npz",
                 **{jax.tree_util.keystr(p): np.asarray(leaf.addressable_data(0))
                    for p, leaf in flat})
        print("RESULT " + json.dumps(result), flush=True)


def _job_env(cache):
    """The processes' environment: one persistent compilation cache for every job of a test
    (the killed and resumed jobs run the programs the first two-process job compiled); XLA's
    optimisation level is the suite's (``tests/conftest.py``)."""
    env = _env()
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


def _start_job(workdir, source, processes, devices, sleep=0.0):
    script = ("from tests.test_multiprocess import run_worker\n"
              f"run_worker({str(workdir)!r}, {source!r}, {sleep})\n")
    base = _job_env(Path(workdir).parent / "jax_cache")
    return [subprocess.Popen([sys.executable, "-W", "error", "-c", script], cwd=REPO,
                             env=launch.process_env(i, processes, port, devices, base),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for port in [launch._free_port()] for i in range(processes)]


def _wait(procs, timeout=240):
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]
    line = [t for t in outs[0][0].splitlines() if t.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def _params(workdir):
    with np.load(Path(workdir) / "final_params.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow  # multi-process job
@pytest.mark.parametrize("source", ["memory", "grain"])
def test_two_processes_train_as_one(tmp_path, source):
    two, one, killed = tmp_path / "two", tmp_path / "one", tmp_path / "killed"
    jobs = {"two": _start_job(two, source, 2, 2), "one": _start_job(one, source, 1, 4)}
    r2, r1 = _wait(jobs["two"]), _wait(jobs["one"])
    assert r2["num_devices"] == r1["num_devices"] == 4 and r2["steps"] == STEPS
    assert r2["step_flops"] == r1["step_flops"] > 0
    l2, l1 = _losses(two), _losses(one)
    assert sorted(l2) == sorted(l1) == list(range(1, STEPS + 1))  # one log, from process 0
    assert_close(np.array([l2[s] for s in sorted(l2)]), np.array([l1[s] for s in sorted(l1)]))
    steps_on_disk = sorted(p.name for p in (two / "checkpoints").iterdir() if p.name.isdigit())
    assert steps_on_disk == [str(s) for s in range(EVERY, STEPS + 1, EVERY)]
    p2, p1 = _params(two), _params(one)
    for key in p1:
        assert_close(p2[key], p1[key], err_msg=key)

    procs = _start_job(killed, source, 2, 2, sleep=0.5)
    deadline = time.monotonic() + 240
    try:
        while not any(p.name.isdigit() for p in (killed / "checkpoints").glob("*")):
            assert all(p.poll() is None for p in procs), "a process ended before a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=60)
    resumed = _wait(_start_job(killed, source, 2, 2))
    assert EVERY <= resumed["start_step"] < STEPS
    p_resumed = _params(killed)
    for key in p2:
        np.testing.assert_array_equal(p_resumed[key], p2[key], err_msg=key)


@pytest.mark.slow  # multi-process job
def test_launch_command_line_errors():
    for argv in (["launch", "--processes", "2"], ["launch", "--processes", "0", "--", "demo"],
                 ["run", "configs/bench.py", "--", "demo"]):
        result = subprocess.run([sys.executable, "-m", "jconv", *argv], cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (argv, result.stderr)
        assert "error:" in result.stderr, (argv, result.stderr)


def test_launch_exits_with_the_failed_process_code_not_the_kill_of_the_others(monkeypatch):
    """Process 1 exits 2 while process 0 still runs: the job exits 2, though process 0 is killed."""
    started = []

    def start(command, processes, devices_per_process=None, **popen):
        scripts = ["import time; time.sleep(60)", "import sys; print('bad value'); sys.exit(2)"]
        started.extend(subprocess.Popen([sys.executable, "-c", s], **popen) for s in scripts)
        return started

    monkeypatch.setattr(launch, "start", start)
    begin = time.monotonic()
    try:
        assert launch.launch(["run", "x.py"], 2) == 2
    finally:
        for p in started:
            p.wait()
            p.stdout.close()
    assert started[0].returncode == -signal.SIGKILL and time.monotonic() - begin < 30
