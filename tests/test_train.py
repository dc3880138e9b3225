"""jconv.train: single trace, determinism, data parallelism, checkpoints, resume after a kill, NaN stop.

The model is a tiny NNX CNN defined here (conv → relu → mean pool → dropout → linear), so these
tests do not depend on jconv.models. Runs that need a fresh process (4 forced CPU devices, a kill)
call ``run_tiny`` in a subprocess.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from jconv import data
from jconv.data.sources import ArraySource
from jconv.train import NonFiniteLossError, TrainConfig, make_optimizer, train
from tests.tolerance import assert_close

REPO = Path(__file__).resolve().parents[1]


class TinyCNN(nnx.Module):
    def __init__(self, channels, num_classes, *, rngs: nnx.Rngs, features=8, dropout=0.25):
        self.conv = nnx.Conv(channels, features, (3, 3), rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.head = nnx.Linear(features, num_classes, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.conv(x)).mean(axis=(1, 2))  # (N, features)
        return self.head(self.dropout(h))


class TupleCNN(TinyCNN):
    """Returns (logits, aux) as a model with auxiliary heads does."""

    def __call__(self, x):
        logits = super().__call__(x)
        return logits, logits * 0.0


def tiny_dataset():
    return data.synthetic(200, 8, 1, 4, seed=0)


def params_of(model):
    flat, _ = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def run_tiny(workdir, *, steps=12, checkpoint_every=0, sleep=0.0, batch_size=16, learning_rate=0.05,
             optimizer="sgd", log_every=1, progress=False):
    """Train TinyCNN on the tiny dataset; save its final params to workdir/final_params.npz."""
    ds = tiny_dataset()
    model = TinyCNN(1, ds.num_classes, rngs=nnx.Rngs(0))
    config = TrainConfig(steps=steps, batch_size=batch_size, learning_rate=learning_rate, optimizer=optimizer,
                         log_every=log_every, checkpoint_every=checkpoint_every, seed=3)
    on_step = (lambda step: time.sleep(sleep)) if sleep else None
    result = train(model, ds, config, workdir, progress=progress, on_step=on_step)
    np.savez(Path(workdir) / "final_params.npz", **params_of(model))
    print("RESULT " + json.dumps(result), flush=True)
    return result


def _env(num_devices=None):
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    if num_devices:
        flags.append(f"--xla_force_host_platform_device_count={num_devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    return env


def try_bad_batch_size(workdir):
    """Print the error of a batch size that does not split over the devices."""
    try:
        run_tiny(workdir, steps=1, batch_size=18)
    except ValueError as e:
        print("ERROR " + str(e), flush=True)


def _start(workdir, num_devices=None, try_bad_batch=False, **kwargs):
    script = "from tests.test_train import run_tiny, try_bad_batch_size\n"
    if try_bad_batch:
        script += f"try_bad_batch_size({str(workdir)!r} + '_bad')\n"
    script += f"run_tiny({str(workdir)!r}, **{kwargs!r})\n"
    return subprocess.Popen([sys.executable, "-W", "error", "-c", script], cwd=REPO,
                            env=_env(num_devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=180):
    """The result dict printed by run_tiny, and the other stdout lines."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    lines = out.splitlines()
    line = [text for text in lines if text.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):]), lines


def _losses(workdir):
    lines = (Path(workdir) / "train_log.jsonl").read_text().splitlines()
    return {rec["step"]: rec["loss"] for rec in map(json.loads, lines)}


def _load_params(workdir):
    with np.load(Path(workdir) / "final_params.npz") as f:
        return {k: f[k] for k in f.files}


def test_config_rejects_unknown_names():
    with pytest.raises(ValueError, match="adamw"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(ValueError, match="warmup_cosine"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(schedule="warmup_cosine", warmup_steps=0)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "warmup_cosine"])
def test_optimizer_and_schedule(optimizer, schedule):
    config = TrainConfig(steps=10, optimizer=optimizer, schedule=schedule, warmup_steps=2,
                         learning_rate=0.1, weight_decay=1e-4)
    tx, sched = make_optimizer(config)
    assert tx.init({"w": np.zeros(3, np.float32)}) is not None
    peak = {"constant": 0, "cosine": 0, "warmup_cosine": 2}[schedule]
    assert_close(np.float32(sched(peak)), np.float32(0.1))
    if schedule != "constant":
        assert float(sched(10)) < 1e-6


def test_train_is_deterministic_traces_once_and_logs(tmp_path):
    ds = data.digits(8, seed=1)
    config = TrainConfig(steps=6, batch_size=32, learning_rate=1e-2, optimizer="adamw", schedule="cosine",
                         log_every=2, checkpoint_every=3)
    runs = []
    for name in ("a", "b"):
        model = TinyCNN(1, 10, rngs=nnx.Rngs(0))
        result = train(model, ds, config, tmp_path / name, progress=True)
        runs.append((result, params_of(model)))
    (r1, p1), (r2, p2) = runs
    assert r1["train_step_traces"] == 1  # one trace for all six steps
    assert r1["steps"] == 6 and r1["start_step"] == 0 and r1["num_devices"] == jax.device_count()
    assert 0.0 <= r1["test_accuracy"] <= 1.0
    assert r1["images_per_s"] > 0 and r1["step_time_s"] > 0
    assert (r1["final_loss"], r1["test_accuracy"], r1["test_loss"]) == (r2["final_loss"], r2["test_accuracy"], r2["test_loss"])
    for key in p1:
        np.testing.assert_array_equal(p1[key], p2[key], err_msg=key)
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    records = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert set(records[0]) >= {"step", "loss", "images_per_s", "lr", "time"}
    assert records[-1]["loss"] == r1["final_loss"]
    assert json.loads((tmp_path / "a" / "train_config.json").read_text())["steps"] == 6
    steps = sorted(int(p.name) for p in (tmp_path / "a" / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [3, 6]


def test_tuple_output_and_rerun_of_a_finished_run(tmp_path):
    ds = tiny_dataset()
    config = TrainConfig(steps=3, batch_size=16, log_every=1)
    model = TupleCNN(1, ds.num_classes, rngs=nnx.Rngs(0))
    first = train(model, ds, config, tmp_path, progress=False)
    again = train(TupleCNN(1, ds.num_classes, rngs=nnx.Rngs(0)), ds, config, tmp_path, progress=False)
    assert again["start_step"] == 3 and again["train_step_traces"] == 0
    assert again["final_loss"] == first["final_loss"] and again["test_accuracy"] == first["test_accuracy"]


def test_bad_device_count_and_mismatched_workdir(tmp_path):
    ds = tiny_dataset()
    n = jax.device_count()
    with pytest.raises(ValueError, match="devices are available"):
        train(TinyCNN(1, 4, rngs=nnx.Rngs(0)), ds, TrainConfig(steps=1, num_devices=n + 1), tmp_path)
    train(TinyCNN(1, 4, rngs=nnx.Rngs(0)), ds, TrainConfig(steps=1, batch_size=16), tmp_path, progress=False)
    with pytest.raises(ValueError, match="seed"):
        train(TinyCNN(1, 4, rngs=nnx.Rngs(0)), ds, TrainConfig(steps=2, batch_size=16, seed=1), tmp_path)


def test_wrong_number_of_classes_is_a_shape_error(tmp_path):
    with pytest.raises(AssertionError, match="shape"):
        train(TinyCNN(1, 3, rngs=nnx.Rngs(0)), tiny_dataset(), TrainConfig(steps=1, batch_size=16), tmp_path)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    ds = tiny_dataset()
    config = TrainConfig(steps=20, batch_size=16, optimizer="sgd", momentum=0.0, learning_rate=1e30,
                         log_every=5, checkpoint_every=1)
    with pytest.raises(NonFiniteLossError, match=r"step (\d+)") as info:
        train(TinyCNN(1, 4, rngs=nnx.Rngs(0), dropout=0.0), ds, config, tmp_path, progress=False)
    message = str(info.value)
    assert "loss=" in message and "Last good checkpoint" in message
    bad_step = int(message.split("step ")[1].split()[0].rstrip(":"))
    with ocp.CheckpointManager(tmp_path / "checkpoints") as manager:
        good = manager.latest_step()
        assert good is not None and good < bad_step
        restored = manager.restore(good, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                                 meta=ocp.args.JsonRestore()))
    assert restored["meta"]["step"] == good
    for leaf in jax.tree.leaves(restored["state"]["params"]):
        assert np.isfinite(np.asarray(leaf)).all()


@pytest.mark.slow  # training in other processes
def test_same_losses_on_1_and_4_devices(tmp_path):
    procs = {n: _start(tmp_path / f"d{n}", num_devices=n, try_bad_batch=n == 4, steps=6, batch_size=16)
             for n in (1, 4)}
    (r4, lines), (r1, _) = _finish(procs[4]), _finish(procs[1])
    assert "ERROR batch_size=18 does not split over 4 devices; use a multiple of 4 (or set num_devices)" in lines
    assert r1["num_devices"] == 1 and r4["num_devices"] == 4
    l1, l4 = _losses(tmp_path / "d1"), _losses(tmp_path / "d4")
    assert sorted(l1) == sorted(l4) == list(range(1, 7))
    assert_close(np.array([l4[s] for s in sorted(l4)], np.float32), np.array([l1[s] for s in sorted(l1)], np.float32))
    p1, p4 = _load_params(tmp_path / "d1"), _load_params(tmp_path / "d4")
    for key in p1:
        assert_close(p4[key], p1[key], err_msg=key)


@pytest.mark.slow  # training in other processes
def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    proc = _start(killed, steps=12, checkpoint_every=3, sleep=0.25)
    deadline = time.monotonic() + 180
    try:
        while proc.poll() is None and not any(p.name.isdigit() for p in (killed / "checkpoints").glob("*")):
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()  # no-op when already dead
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err[-4000:]
    proc = _start(killed, steps=12, checkpoint_every=3)
    straight = run_tiny(tmp_path / "straight", steps=12, checkpoint_every=3)  # meanwhile, in this process
    resumed, _ = _finish(proc)
    assert 3 <= resumed["start_step"] < 12 and resumed["steps"] == 12
    assert straight["start_step"] == 0
    p_resumed, p_straight = _load_params(killed), _load_params(tmp_path / "straight")
    assert p_resumed.keys() == p_straight.keys()
    for key in p_straight:
        np.testing.assert_array_equal(p_resumed[key], p_straight[key], err_msg=key)
    assert resumed["final_loss"] == straight["final_loss"]


class _Stop(Exception):
    pass


def _stop_at(step):
    def on_step(done):
        if done == step:
            raise _Stop
    return on_step


def _procedural(seed=0):
    return data.open_dataset("procedural", image_size=16, train_size=40, test_size=11, seed=seed)


def test_streamed_run_resumes_with_the_batches_of_an_uninterrupted_run(tmp_path):
    """Grain path, CIFAR augmentation: 8 steps straight vs 4, a crash, and 4 more in a fresh model and iterator."""
    config = TrainConfig(steps=8, batch_size=12, learning_rate=0.05, optimizer="sgd", checkpoint_every=4,
                         log_every=1, seed=5)

    def fresh(workdir, on_step=None):
        train_src, test_src, _ = _procedural()
        model = TinyCNN(3, train_src.num_classes, rngs=nnx.Rngs(0))
        return model, train(model, (train_src, test_src, "cifar"), config, workdir, progress=False,
                            on_step=on_step)

    straight_model, straight = fresh(tmp_path / "straight")
    with pytest.raises(_Stop):
        fresh(tmp_path / "crashed", on_step=_stop_at(6))  # after the checkpoint of step 4
    resumed_model, resumed = fresh(tmp_path / "crashed")
    assert (straight["start_step"], resumed["start_step"], resumed["steps"]) == (0, 4, 8)
    assert straight["train_step_traces"] == 1
    p_straight, p_resumed = params_of(straight_model), params_of(resumed_model)
    for key in p_straight:
        np.testing.assert_array_equal(p_resumed[key], p_straight[key], err_msg=key)
    assert resumed["final_loss"] == straight["final_loss"]
    assert (resumed["test_accuracy"], resumed["test_loss"]) == (straight["test_accuracy"], straight["test_loss"])
    assert straight["test_accuracy"] * 11 == pytest.approx(round(straight["test_accuracy"] * 11))
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "crashed")
    assert not (tmp_path / "crashed" / "checkpoints" / "8" / "data").exists()  # batch t: f(seed, t)


def test_arrays_in_memory_and_the_same_arrays_as_sources_train_alike(tmp_path):
    """One path: a Dataset and its arrays given as sources give the same run, bit for bit."""
    config = TrainConfig(steps=6, batch_size=8, learning_rate=0.05, optimizer="sgd", log_every=1, seed=2)
    ds = data.synthetic(44, 16, 3, 10, seed=0)
    sources = tuple(ArraySource(x, y, num_classes=10, name="s", value_range=None)
                    for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)))
    runs = [train(TinyCNN(3, 10, rngs=nnx.Rngs(0)), d, config, tmp_path / name, progress=False)
            for name, d in (("memory", ds), ("sources", sources))]
    assert _losses(tmp_path / "memory") == _losses(tmp_path / "sources")
    assert runs[0]["test_accuracy"] == runs[1]["test_accuracy"]
    with pytest.raises(TypeError, match="Dataset or a"):
        train(TinyCNN(3, 10, rngs=nnx.Rngs(0)), {"train": sources[0]}, config, tmp_path / "x", progress=False)
