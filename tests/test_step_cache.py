"""jconv.train.StepCache: runs that share it reuse the compiled steps and get the same numbers;
the learning rates of a run do not depend on how long the schedule's array is."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jconv import data
from jconv.kernels import lax_nans
from jconv.train import StepCache, TrainConfig, train
from jconv.train.loop import step_rates
from jconv.train.recipe import make_schedule
from tests.test_train import TinyCNN, params_of


def _run(tmp_path, name, config, cache, features=8):
    model = TinyCNN(1, 4, rngs=nnx.Rngs(0), features=features)
    result = train(model, data.synthetic(200, 8, 1, 4, seed=0), config, tmp_path / name, progress=False,
                   steps_cache=cache)
    return result, params_of(model)


def test_runs_sharing_a_cache_trace_once_and_match_fresh_runs(tmp_path):
    config = TrainConfig(steps=5, batch_size=16, learning_rate=0.05, optimizer="sgd", schedule="wsd",
                         warmup_steps=1, log_every=1)
    fresh, fresh_params = _run(tmp_path, "fresh", config, None)
    cache = StepCache()
    first, _ = _run(tmp_path, "first", config, cache)
    # Another length and rate: the schedule is outside the step, so the step is the same.
    longer = TrainConfig(**{**config.__dict__, "steps": 7, "learning_rate": 0.02})
    second, _ = _run(tmp_path, "second", longer, cache)
    again, again_params = _run(tmp_path, "again", config, cache)
    assert (fresh["train_step_traces"], first["train_step_traces"]) == (1, 1)
    assert (second["train_step_traces"], again["train_step_traces"]) == (0, 0)
    assert len(cache) == 1
    assert (again["final_loss"], again["test_accuracy"]) == (fresh["final_loss"], fresh["test_accuracy"])
    for key in fresh_params:
        np.testing.assert_array_equal(again_params[key], fresh_params[key], err_msg=key)


def test_a_new_shape_setting_or_switch_traces_again(tmp_path):
    config = TrainConfig(steps=2, batch_size=16, optimizer="sgd", log_every=1)
    cache = StepCache()
    assert _run(tmp_path, "a", config, cache)[0]["train_step_traces"] == 1
    assert _run(tmp_path, "wider", config, cache, features=6)[0]["train_step_traces"] == 1
    smoothed = TrainConfig(**{**config.__dict__, "label_smoothing": 0.1})
    assert _run(tmp_path, "smoothed", smoothed, cache)[0]["train_step_traces"] == 1
    with lax_nans.left_out():  # traced without the NaN masks: not the step traced with them
        assert _run(tmp_path, "no_masks", config, cache)[0]["train_step_traces"] == 1
    assert _run(tmp_path, "b", config, cache)[0]["train_step_traces"] == 0
    assert len(cache) == 4


def test_the_least_recently_used_steps_are_dropped(tmp_path):
    config = TrainConfig(steps=1, batch_size=16, optimizer="sgd", log_every=1)
    cache = StepCache(size=1)
    _run(tmp_path, "a", config, cache)
    _run(tmp_path, "b", config, cache, features=6)
    assert len(cache) == 1
    assert _run(tmp_path, "c", config, cache)[0]["train_step_traces"] == 1


def test_a_key_that_does_not_hash_is_made_afresh():
    cache, made = StepCache(), []
    for _ in range(2):
        cache.get(({"a": 1},), lambda: made.append(1) or "steps")
    assert len(made) == 2 and len(cache) == 0
    cache.get(("a",), lambda: made.append(1) or "steps")
    assert cache.get(("a",), lambda: made.append(1) or "other") == "steps" and len(made) == 3


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "8"])
def test_bad_cache_size(size):
    with pytest.raises(ValueError, match="size"):
        StepCache(size=size)


@pytest.mark.parametrize("steps", [2, 5, 64, 100, 257])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "warmup_cosine", "wsd"])
def test_step_rates_are_the_schedule_at_each_step(steps, schedule):
    config = TrainConfig(steps=steps, learning_rate=0.1, schedule=schedule, warmup_steps=min(3, steps - 1),
                         cooldown_fraction=0.3)
    sched = make_schedule(config)
    rates = step_rates(sched, steps)
    assert rates.shape == (steps,) and rates.dtype == np.float32
    expected = np.broadcast_to(np.asarray(sched(jnp.arange(steps)), np.float32), (steps,))
    np.testing.assert_array_equal(rates, expected)
