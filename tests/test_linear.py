"""The linear layer: oneDNN's matmuls (``jconv.onednn.matmul``) against XLA's dot and the
float64 NumPy product, through every derivative, vmap and a jit over four devices; and
``jconv.nn.Linear`` against ``flax.nnx.Linear``."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from jax.test_util import check_grads

import jconv
import jconv.nn
from jconv.nn import linear as L
from tests.test_onednn_auto import _run
from tests.tolerance import assert_close

# Each example compiles its own shapes: ten at most keep the suite fast.
SWEEP = settings(max_examples=min(10, settings.default.max_examples))
STATUS = jconv.backends()["onednn"]
needs_onednn = pytest.mark.skipif(not STATUS.available,
                                  reason=f"oneDNN unavailable: {STATUS.reason}")
HIGHEST = lax.Precision.HIGHEST


def _pair(seed, n, c, k, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal((n, c)), dtype),
            jnp.asarray(rng.standard_normal((c, k)), dtype))


def dense(x, w):
    return jnp.dot(x, w, precision=HIGHEST)


@needs_onednn
@SWEEP
@given(n=st.integers(1, 9), c=st.integers(1, 40), k=st.integers(1, 40), seed=st.integers(0, 99))
def test_every_pass_matches_the_reference_and_xla(n, c, k, seed):
    from jconv.onednn import matmul

    x, w = _pair(seed, n, c, k)
    dy = jnp.asarray(np.random.default_rng(seed + 1).standard_normal((n, k)), jnp.float32)
    assert_close(matmul.linear(x, w), np.asarray(x, np.float64) @ np.asarray(w, np.float64))
    assert_close(matmul.bwd_data_p.bind(dy, w), dense(dy, w.T))
    assert_close(matmul.bwd_weights_p.bind(x, dy), dense(x.T, dy))
    got = jax.vjp(matmul.linear, x, w)[1](dy)
    want = jax.vjp(dense, x, w)[1](dy)
    for g, e in zip(got, want):
        assert_close(g, e)


@needs_onednn
def test_derivatives_to_second_order_and_vmap():
    from jconv.onednn import matmul

    x, w = _pair(0, 5, 7, 3)
    check_grads(matmul.linear, (x, w), order=2, modes=("fwd", "rev"), atol=5e-2, rtol=5e-2)
    f = lambda fn: lambda x, w: jnp.sum(jnp.sin(fn(x, w)))
    assert_close(jax.hessian(f(matmul.linear))(x, w), jax.hessian(f(dense))(x, w))
    xb, wb = jnp.stack([x, 2 * x]), jnp.stack([w, -w])
    assert_close(jax.vmap(matmul.linear, (0, None))(xb, w), jax.vmap(dense, (0, None))(xb, w))
    assert_close(jax.vmap(matmul.linear)(xb, wb), jax.vmap(dense)(xb, wb))
    per_example = jax.vmap(jax.grad(f(matmul.linear), 1), (0, None))
    assert_close(per_example(xb, w), jax.vmap(jax.grad(f(dense), 1), (0, None))(xb, w))
    hlo = jax.jit(jax.grad(f(matmul.linear), (0, 1))).lower(x, w).compile().as_text()
    assert set(re.findall(r'custom_call_target="(jconv_onednn_mm_\w+)"', hlo)) == {
        "jconv_onednn_mm_fwd", "jconv_onednn_mm_bwd_data"}  # the weight gradient: XLA's dot


@needs_onednn
def test_bfloat16_and_bad_arguments():
    from jconv.onednn import matmul

    x, w = _pair(1, 4, 16, 8, jnp.bfloat16)
    y = matmul.linear(x, w)
    assert y.dtype == jnp.bfloat16
    assert_close(y, dense(x.astype(jnp.float32), w.astype(jnp.float32)), dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match=r"x.shape=\(4, 16\), w.shape=\(8, 8\)"):
        matmul.linear(x, w[:8])
    with pytest.raises(TypeError, match="x.dtype=float32, w.dtype=bfloat16"):
        matmul.linear(x.astype(jnp.float32), w)


@pytest.mark.parametrize("impl", L.IMPLS)
def test_layer_matches_flax_linear(impl):
    x = jnp.asarray(np.random.default_rng(2).standard_normal((6, 12)), jnp.float32)
    ours = jconv.nn.Linear(12, 5, impl=impl, rngs=nnx.Rngs(0))
    theirs = nnx.Linear(12, 5, rngs=nnx.Rngs(0))
    theirs.kernel[...] = ours.kernel[...]
    theirs.bias[...] = jnp.arange(5.0)
    ours.bias[...] = jnp.arange(5.0)
    with jax.default_matmul_precision("highest"):
        assert_close(ours(x), theirs(x))
        grad = lambda m: nnx.grad(lambda m: jnp.sum(jnp.tanh(m(x))))(m)
        assert_close(grad(ours)["kernel"][...], grad(theirs)["kernel"][...])
    expected = "onednn" if impl != "lax" and STATUS.available else "lax"
    assert L.which(impl, jnp.float32) == expected and L.which(impl, jnp.float64) == "lax"
    assert jconv.nn.count_params(ours) == 12 * 5 + 5


def test_layer_refuses_bad_arguments_naming_them():
    with pytest.raises(ValueError, match="out_features=0"):
        jconv.nn.Linear(3, 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="impl='shift'"):
        jconv.nn.Linear(3, 2, impl="shift", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"x.shape=\(2, 4\); expected \(N, 3\)"):
        jconv.nn.Linear(3, 2, rngs=nnx.Rngs(0))(jnp.ones((2, 4)))


SHARDED = """
import json, re
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jconv.onednn import matmul
mesh = Mesh(np.array(jax.devices()), ("batch",))
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((8, 12)), jnp.float32)
w = jnp.asarray(rng.standard_normal((12, 6)), jnp.float32)
loss = lambda fn: lambda x, w: jnp.sum(jnp.tanh(fn(x, w)))
step = jax.jit(jax.grad(loss(matmul.linear), argnums=(0, 1)))
xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
ws = jax.device_put(w, NamedSharding(mesh, P()))
dx, dw = step(xs, ws)
dense = lambda x, w: jnp.dot(x, w, precision="highest")
ex, ew = jax.jit(jax.grad(loss(dense), argnums=(0, 1)))(x, w)
hlo = step.lower(xs, ws).compile().as_text()
print(json.dumps(dict(
    calls=sorted(set(re.findall(r'custom_call_target="(jconv_onednn_\\w+)"', hlo))),
    all_gather="all-gather" in hlo, dx_spec=list(dx.sharding.spec),
    dx_err=float(jnp.max(jnp.abs(dx - ex))), dw_err=float(jnp.max(jnp.abs(dw - ew))))))
"""


@needs_onednn
@pytest.mark.slow  # another process
def test_a_jit_over_four_devices_splits_the_matmuls_along_the_batch():
    out = json.loads(_run(SHARDED, devices=4).strip().splitlines()[-1])
    assert out["calls"] == ["jconv_onednn_mm_bwd_data", "jconv_onednn_mm_fwd"]
    assert not out["all_gather"] and out["dx_spec"] == ["batch"]
    assert out["dx_err"] < 1e-4 and out["dw_err"] < 1e-4, out
