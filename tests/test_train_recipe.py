"""jconv.train's recipe options: the wsd schedule, Nesterov SGD, label smoothing, the weight
average, uint8 images, branches off another run's checkpoint, and XLA's count of a step."""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jconv import data
from jconv.train import TrainConfig, classification_loss, make_optimizer, step_flops, train
from jconv.train.recipe import make_schedule
from tests.test_train import TinyCNN, _losses, params_of, tiny_dataset
from tests.tolerance import assert_close


def test_wsd_schedule_by_hand():
    config = TrainConfig(steps=20, learning_rate=0.5, schedule="wsd", warmup_steps=4, cooldown_fraction=0.25)
    rates = np.asarray(make_schedule(config)(jnp.arange(20)))
    expected = [0.5 * min(t / 4, 1.0, 1.0 - math.sqrt(min(max((t - 15) / 5, 0.0), 1.0))) for t in range(20)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6, atol=1e-7)
    # Before the cooldown the rate does not depend on the horizon: every branch shares a trunk.
    longer = np.asarray(make_schedule(TrainConfig(steps=40, learning_rate=0.5, schedule="wsd", warmup_steps=4,
                                                  cooldown_fraction=0.25))(jnp.arange(30)))
    np.testing.assert_array_equal(rates[:15], longer[:15])


@pytest.mark.parametrize("kw, match", [
    (dict(label_smoothing=1.0), r"label_smoothing=1.0; expected a float in \[0, 1\)"),
    (dict(ema_decay=-0.1), r"ema_decay=-0.1"),
    (dict(cooldown_fraction=1.5), r"cooldown_fraction=1.5; expected a float in \[0, 1\]"),
    (dict(nesterov="yes"), r"nesterov='yes'"),
    (dict(schedule="wsd", steps=10, warmup_steps=9, cooldown_fraction=0.2), r"warmup_steps \+ cooldown_steps"),
])
def test_config_rejects_bad_recipe_values(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_rate_outside_the_optimizer_is_optax_with_the_schedule_inside():
    """The unit-rate optimizer times the step's rate gives optax's own update, for every optimizer."""
    grads = [{"w": jnp.array([0.3, -1.0, 2.0])}, {"w": jnp.array([-0.5, 0.2, 0.1])}, {"w": jnp.array([1.0, 1.0, -3.0])}]
    for optimizer, nesterov in (("sgd", True), ("sgd", False), ("adam", False), ("adamw", False)):
        config = TrainConfig(steps=3, learning_rate=0.1, optimizer=optimizer, nesterov=nesterov, weight_decay=0.01,
                             schedule="cosine")
        tx, schedule = make_optimizer(config)
        if optimizer == "sgd":
            inner = optax.sgd(schedule, momentum=0.9, nesterov=nesterov)
            reference = optax.chain(optax.add_decayed_weights(0.01), inner)
        elif optimizer == "adam":
            reference = optax.chain(optax.add_decayed_weights(0.01), optax.adam(schedule))
        else:
            reference = optax.adamw(schedule, weight_decay=0.01)
        p1 = p2 = {"w": jnp.array([1.0, 2.0, 3.0])}
        s1, s2 = tx.init(p1), reference.init(p2)
        for t, g in enumerate(grads):
            u1, s1 = tx.update(g, s1, p1)
            p1 = optax.apply_updates(p1, jax_tree_scale(u1, schedule(t)))
            u2, s2 = reference.update(g, s2, p2)
            p2 = optax.apply_updates(p2, u2)
        assert_close(p1["w"], p2["w"])


def jax_tree_scale(tree, factor):
    return {k: factor * v for k, v in tree.items()}


def test_label_smoothing_by_hand():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    labels = jnp.array([0, 2])
    alpha = 0.2
    z = np.asarray(logits, np.float64)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    target = np.full((2, 3), alpha / 3) + (1 - alpha) * np.eye(3)[[0, 2]]
    loss, plain = classification_loss(logits, labels, 0.3, alpha)
    assert_close(loss, -(target * log_p).sum(1).mean(), dtype=np.float32)
    assert_close(plain, -log_p[[0, 1], [0, 2]].mean(), dtype=np.float32)


def _config(**kw):
    base = dict(steps=10, batch_size=16, learning_rate=0.05, optimizer="sgd", nesterov=True, log_every=1,
                seed=3, schedule="wsd", warmup_steps=2)
    return TrainConfig(**{**base, **kw})


def test_a_branch_off_a_constant_rate_run_is_the_uninterrupted_run(tmp_path):
    """Trunk to 0.8·h at constant rate, then a branch that cools down to h, equals one wsd run of h
    steps, bit for bit; the branch compiles nothing new and its own log starts at the branch point."""
    ds = tiny_dataset()
    whole = TinyCNN(1, ds.num_classes, rngs=nnx.Rngs(0))
    r_whole = train(whole, ds, _config(cooldown_fraction=0.2), tmp_path / "whole", progress=False)
    train(TinyCNN(1, ds.num_classes, rngs=nnx.Rngs(0)), ds, _config(steps=8, cooldown_fraction=0.0),
          tmp_path / "trunk", progress=False, evaluate=False)
    branch = TinyCNN(1, ds.num_classes, rngs=nnx.Rngs(5))  # its own weights are replaced by the trunk's
    r_branch = train(branch, ds, _config(cooldown_fraction=0.2), tmp_path / "branch", progress=False,
                     start_from=(tmp_path / "trunk", 8))
    assert r_branch["start_step"] == 8 and r_branch["steps"] == 10
    for key, value in params_of(whole).items():
        np.testing.assert_array_equal(params_of(branch)[key], value, err_msg=key)
    assert r_branch["test_accuracy"] == r_whole["test_accuracy"]
    assert sorted(_losses(tmp_path / "branch")) == [9, 10]
    assert _losses(tmp_path / "branch")[10] == _losses(tmp_path / "whole")[10]
    with pytest.raises(ValueError, match="has no checkpoint of step 7"):
        train(TinyCNN(1, ds.num_classes, rngs=nnx.Rngs(0)), ds, _config(), tmp_path / "other", progress=False,
              start_from=(tmp_path / "trunk", 7))


def test_weight_average_is_what_is_evaluated(tmp_path):
    """With ema_decay the returned model holds θ̄_t = δ_t θ̄_{t-1} + (1 − δ_t) θ_t, δ_t = min(d, (1+t)/(10+t)),
    replayed here from the live weights after each step (runs of 1, 2, ... steps resuming each other)."""
    ds, decay, steps = tiny_dataset(), 0.8, 6
    model = TinyCNN(1, ds.num_classes, rngs=nnx.Rngs(0), dropout=0.0)
    average = params_of(model)
    train(model, ds, _config(steps=steps, ema_decay=decay, schedule="constant"), tmp_path / "ema", progress=False)
    for t in range(steps):
        live = TinyCNN(1, ds.num_classes, rngs=nnx.Rngs(0), dropout=0.0)
        train(live, ds, _config(steps=t + 1, schedule="constant"), tmp_path / "live", progress=False,
              evaluate=False)
        delta = min(decay, (1 + t) / (10 + t))
        average = {k: delta * a + (1 - delta) * params_of(live)[k] for k, a in average.items()}
    for key, value in average.items():
        assert_close(params_of(model)[key], value)
        assert not np.allclose(value, params_of(live)[key]), key


def test_uint8_images_train_as_their_float_scaling(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)
    y = rng.integers(0, 4, 64).astype(np.int32)
    as_uint8 = data.Dataset(x, y, x[:16], y[:16], 4, "u8")
    as_float = data.Dataset(x.astype(np.float32) / 255, y, x[:16].astype(np.float32) / 255, y[:16], 4, "f32")
    results = []
    for name, ds in (("u", as_uint8), ("f", as_float)):
        model = TinyCNN(1, 4, rngs=nnx.Rngs(0))
        results.append((train(model, ds, _config(), tmp_path / name, progress=False), params_of(model)))
    (ru, pu), (rf, pf) = results
    assert ru["test_accuracy"] == rf["test_accuracy"]
    for key in pu:
        assert_close(pu[key], pf[key])


def test_step_flops_counts_the_conv_passes():
    """XLA's count of the train step holds the conv's forward and weight-gradient passes (the
    first layer needs no input gradient), whatever impl the conv runs."""
    ds = tiny_dataset()
    counts = {}
    for features in (8, 16):
        model = TinyCNN(1, ds.num_classes, rngs=nnx.Rngs(0), features=features)
        counts[features] = step_flops(model, _config(), ds.input_shape, ds.num_classes)
    # conv 3×3, 1 → F maps at 8×8, batch 16: 2·9·F·64·16 FLOPs a pass.
    per_map = 2 * 9 * 64 * 16
    assert 2 * per_map * 8 <= counts[16] - counts[8] < 3 * per_map * 8
