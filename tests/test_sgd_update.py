"""SGD's one-pass update (``jconv.onednn.sgd``) against optax's chain and a float64 NumPy
reference, and the training step's ``update="fused"`` against ``"optax"``, on one device and
four."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import jconv
from jconv import models, train
from jconv.onednn import sgd
from jconv.train import step as train_step
from jconv.train.data import Placement
from tests.test_onednn_auto import _run
from tests.tolerance import assert_close

SWEEP = settings(max_examples=min(10, settings.default.max_examples), deadline=None)
STATUS = jconv.backends()["onednn"]
needs_library = pytest.mark.skipif(not STATUS.available, reason=f"native library unavailable: {STATUS.reason}")


def _optax(p, g, m, lr, momentum, weight_decay, nesterov):
    tx = optax.sgd(1.0, momentum=momentum, nesterov=nesterov)
    if weight_decay:
        tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
    state = jax.tree.map(lambda _: m, tx.init(p))
    u, state = tx.update(g, state, p)
    return optax.apply_updates(p, lr * u), jax.tree.leaves(state)[0]


def _numpy(p, g, m, lr, momentum, weight_decay, nesterov):
    p, g, m = (np.asarray(a, np.float64) for a in (p, g, m))
    g1 = g + weight_decay * p
    m1 = momentum * m + g1
    p1 = p - lr * (g1 + momentum * m1 if nesterov else m1)
    return p1, m1


@needs_library
@SWEEP
@given(shape=st.sampled_from([(), (0,), (7,), (3, 5), (300, 257), (2, 3, 4, 70000)]),
       momentum=st.sampled_from([0.5, 0.9]), weight_decay=st.sampled_from([0.0, 5e-4]),
       nesterov=st.booleans(), lr=st.sampled_from([0.0, 0.01, 0.3]), seed=st.integers(0, 3))
def test_update_is_optax_chain_and_numpy(shape, momentum, weight_decay, nesterov, lr, seed):
    rng = np.random.default_rng(seed)
    p, g, m = (jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(3))
    kw = dict(momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    p1, m1, total = jax.jit(lambda p, g, m, lr: sgd.update(p, g, m, lr, **kw))(p, g, m, lr)
    want_p, want_m = _optax(p, g, m, lr, momentum, weight_decay, nesterov)
    assert_close(p1, want_p)
    assert_close(m1, want_m)
    ref_p, ref_m = _numpy(p, g, m, lr, momentum, weight_decay, nesterov)
    np.testing.assert_allclose(np.asarray(p1), ref_p, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(m1), ref_m, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(total), ref_p.sum(), rtol=1e-4, atol=1e-3)


@needs_library
def test_a_nan_or_inf_reaches_the_sum_and_bad_arguments_are_named():
    p, g, m = jnp.ones((70000,)), jnp.ones((70000,)), jnp.zeros((70000,))
    for bad in (jnp.nan, jnp.inf):
        _, _, total = sgd.update(p, g.at[123].set(bad), m, 0.1, momentum=0.9)
        assert not np.isfinite(float(total))
    with pytest.raises(ValueError, match=r"shapes .*'m': \(3,\)"):
        sgd.update(p, g, jnp.zeros(3), 0.1, momentum=0.9)
    with pytest.raises(TypeError, match="float32"):
        sgd.update(p, g, m.astype(jnp.bfloat16), 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="lr.shape"):
        sgd.update(p, g, m, jnp.ones(2), momentum=0.9)


def test_update_setting_is_checked_and_auto_picks_by_the_rule():
    with pytest.raises(ValueError, match="update='fused' is SGD with momentum"):
        train.TrainConfig(optimizer="adam", update="fused")
    with pytest.raises(ValueError, match="update='fast'"):
        train.TrainConfig(optimizer="sgd", update="fast")
    assert train_step.update_impl(train.TrainConfig(optimizer="adam")) == "optax"
    assert train_step.update_impl(train.TrainConfig(optimizer="sgd", momentum=0.0)) == "optax"
    assert train_step.update_impl(train.TrainConfig(optimizer="sgd")) == "optax"  # faster in a whole step
    assert train_step.update_impl(train.TrainConfig(optimizer="sgd", update="fused")) == "fused"


def _steps(update, steps=3, devices=None):
    model = models.build("alexnet", variant="standard", width=0.0625, input_size=67, num_classes=10, norm="batch",
                         rngs=nnx.Rngs(0))
    config = train.TrainConfig(steps=steps, batch_size=8, optimizer="sgd", momentum=0.9, nesterov=True,
                               weight_decay=5e-4, update=update)
    placement = Placement(devices or jax.devices()[:1], 8, 8, (67, 67, 3))
    state, _, step, _, _ = train_step.init_state(model, config, placement, 10, {"train_step": 0, "eval_step": 0})
    rng = np.random.default_rng(0)
    params, rest, opt = state
    for i in range(steps):
        x, y = placement.local_train_batch(rng.random((8, 67, 67, 3), np.float32),
                                           rng.integers(0, 10, 8).astype(np.int32))
        params, rest, opt, loss, finite = step(params, rest, opt, x, y, jnp.float32(0.02))
        assert bool(finite)
    return params, opt


@needs_library
def test_fused_steps_train_as_optax_steps():
    (p_a, o_a), (p_b, o_b) = _steps("optax"), _steps("fused")
    assert jax.tree.structure(o_a) == jax.tree.structure(o_b)  # checkpoints stay interchangeable
    for a, b in zip(jax.tree.leaves((p_a, o_a)), jax.tree.leaves((p_b, o_b))):
        assert_close(b, a)


@needs_library
@pytest.mark.slow  # another process
def test_fused_steps_on_four_devices_match_one():
    out = _run("""
import json, jax
import numpy as np
from tests.test_sgd_update import _steps
one, four = _steps("fused"), _steps("fused", devices=jax.devices())
print(json.dumps(max(float(abs(np.asarray(a) - np.asarray(b)).max())
                     for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(four)))))
""", devices=4)
    assert json.loads(out.strip().splitlines()[-1]) < 1e-4
