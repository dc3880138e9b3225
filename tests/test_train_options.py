"""jconv.train options: bfloat16 compute with float32 parameters, and auxiliary classifiers in the loss.

Models and data are those of ``tests/test_train.py`` (TinyCNN, TupleCNN, the tiny dataset), plus
AuxCNN here, whose auxiliary head has its own parameters, so its logits carry gradient.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jconv import data
from jconv.train import TrainConfig, classification_loss, train
from tests.test_train import TinyCNN, TupleCNN, params_of, tiny_dataset
from tests.tolerance import assert_close


class AuxCNN(TinyCNN):
    """TinyCNN with a second linear head: returns ``(logits, aux)``, both trained."""

    def __init__(self, channels, num_classes, *, rngs: nnx.Rngs):
        super().__init__(channels, num_classes, rngs=rngs, dropout=0.0)
        self.aux = nnx.Linear(self.head.in_features, num_classes, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.conv(x)).mean(axis=(1, 2))  # (N, features)
        return self.head(h), self.aux(h)


def losses_of(workdir):
    return [json.loads(line)["loss"] for line in (workdir / "train_log.jsonl").read_text().splitlines()]


def np_cross_entropy(logits, labels):
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels].mean()


def first_batch(ds, batch_size, seed):
    rows = data.batch_indices(len(ds.train_y), batch_size, seed=seed, epoch=0)[0]
    return ds.train_x[rows], ds.train_y[rows]


@pytest.mark.parametrize("kw, match", [
    (dict(dtype="float16"), r"dtype='float16'; expected one of \['float32', 'bfloat16'\]"),
    (dict(aux_weight=-0.3), r"aux_weight=-0.3; expected a finite float ≥ 0"),
])
def test_config_rejects_bad_dtype_and_aux_weight(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_bfloat16_trains_float32_parameters_close_to_a_float32_run(tmp_path):
    ds = tiny_dataset()
    runs = {}
    for dtype in ("float32", "bfloat16"):
        model = TinyCNN(1, ds.num_classes, rngs=nnx.Rngs(0))
        config = TrainConfig(steps=6, batch_size=16, learning_rate=0.05, optimizer="sgd", log_every=1, seed=3,
                             dtype=dtype)
        result = train(model, ds, config, tmp_path / dtype, progress=False)
        assert result["train_step_traces"] == 1
        runs[dtype] = losses_of(tmp_path / dtype), params_of(model)
    (f32_losses, f32_params), (bf16_losses, bf16_params) = runs["float32"], runs["bfloat16"]
    assert all(np.isfinite(bf16_losses)) and bf16_losses[-1] < bf16_losses[0]
    assert {p.dtype for p in bf16_params.values()} == {np.dtype(np.float32)}
    assert bf16_losses != f32_losses
    assert any(not np.array_equal(bf16_params[k], f32_params[k]) for k in f32_params)
    np.testing.assert_allclose(bf16_losses[0], f32_losses[0], rtol=2e-2)


def test_classification_loss_weighs_auxiliary_logits_by_hand():
    ds = tiny_dataset()
    model = AuxCNN(1, ds.num_classes, rngs=nnx.Rngs(0))
    x, y = first_batch(ds, 16, seed=3)
    logits, aux = model(jnp.asarray(x))
    main_ce, aux_ce = np_cross_entropy(logits, y), np_cross_entropy(aux, y)
    assert abs(main_ce - aux_ce) > 1e-3
    loss, main = classification_loss((logits, aux), jnp.asarray(y), 0.3)
    assert_close(float(loss), main_ce + 0.3 * aux_ce, dtype=np.float32)
    assert_close(float(main), main_ce, dtype=np.float32)
    loss, main = classification_loss((logits, aux), jnp.asarray(y), 0.0)
    assert float(loss) == float(main)
    assert_close(float(loss), main_ce, dtype=np.float32)


@pytest.mark.parametrize("aux_weight", [0.3, 0.0])
def test_first_step_descends_the_weighted_loss_and_logs_the_main_one(tmp_path, aux_weight):
    ds = tiny_dataset()
    lr = 0.1
    model = AuxCNN(1, ds.num_classes, rngs=nnx.Rngs(0))
    x, y = first_batch(ds, 16, seed=3)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    initial = params_of(model)
    logits, aux = model(jnp.asarray(x))

    def by_hand(params):
        logits, aux = nnx.merge(graphdef, params, rest, copy=True)(jnp.asarray(x))

        def ce(z):
            return -jnp.take_along_axis(jax.nn.log_softmax(z), jnp.asarray(y)[:, None], axis=1).mean()

        return ce(logits) + aux_weight * ce(aux)

    expected = jax.tree.map(lambda p, g: p - lr * g, params, jax.grad(by_hand)(params))
    expected = params_of(nnx.merge(graphdef, expected, rest))
    config = TrainConfig(steps=1, batch_size=16, learning_rate=lr, optimizer="sgd", momentum=0.0, seed=3,
                         aux_weight=aux_weight)
    result = train(model, ds, config, tmp_path, progress=False)
    assert_close(result["final_loss"], np_cross_entropy(logits, y), dtype=np.float32)
    got = params_of(model)
    for key in expected:
        assert_close(got[key], expected[key], dtype=np.float32)
    aux_moved = [not np.array_equal(got[k], initial[k]) for k in got if k.startswith("['aux']")]
    assert aux_moved and all(aux_moved) == (aux_weight > 0) and any(aux_moved) == (aux_weight > 0)


def test_auxiliary_logits_without_gradient_leave_training_as_without_them(tmp_path):
    ds = tiny_dataset()
    config = TrainConfig(steps=3, batch_size=16, log_every=1, seed=3)
    results = {}
    for name, cls in (("plain", TinyCNN), ("tuple", TupleCNN)):
        model = cls(1, ds.num_classes, rngs=nnx.Rngs(0))
        results[name] = train(model, ds, config, tmp_path / name, progress=False), params_of(model)
    (plain, plain_params), (tup, tup_params) = results["plain"], results["tuple"]
    assert tup["final_loss"] == plain["final_loss"] and tup["test_accuracy"] == plain["test_accuracy"]
    for key in plain_params:
        np.testing.assert_array_equal(tup_params[key], plain_params[key])
