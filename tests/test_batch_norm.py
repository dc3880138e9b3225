"""Batch normalisation: the fused form (hand-written reverse mode) and the native form (its
sums in the native library) against the textbook form (autodiff) and a NumPy reference, and
the layer against ``flax.nnx.BatchNorm``."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jconv
import jconv.nn
from jconv.kernels import batch_norm as K
from jconv.nn import norm
from jconv.onednn import batch_norm as NB
from tests.test_onednn_auto import _run
from tests.tolerance import assert_close

STATUS = jconv.backends()["onednn"]
needs_library = pytest.mark.skipif(not STATUS.available,
                                   reason=f"native library unavailable: {STATUS.reason}")

# Each example compiles its own shapes: ten at most keep the suite fast.
SWEEP = settings(max_examples=min(10, settings.default.max_examples))
EPS = 1e-3


def reference(x, scale, bias, epsilon, relu):
    """NumPy, float64: ``(y, mean, var)``, the biased variance."""
    x = np.asarray(x, np.float64)
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axes), x.var(axes)
    y = (x - mean) / np.sqrt(var + epsilon) * np.asarray(scale) + np.asarray(bias)
    return (np.maximum(y, 0) if relu else y), mean, var


def _arrays(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    c = shape[-1]
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3, c) + rng.uniform(-2, 2, c)
    return (jnp.asarray(x, dtype), jnp.asarray(rng.standard_normal(c), dtype),
            jnp.asarray(rng.standard_normal(c), dtype))


shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3).flatmap(
    lambda s: st.integers(1, 6).map(lambda c: (2, *s, c)))


@SWEEP
@given(shape=shapes, relu=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_forms_equal_the_reference_and_each_other_in_values_and_gradients(shape, relu, seed):
    with jax.enable_x64(True):
        x, scale, bias = _arrays(seed, shape, jnp.float64)
        want = reference(x, scale, bias, EPS, relu)
        rng = np.random.default_rng(seed + 1)
        cts = tuple(jnp.asarray(rng.standard_normal(a.shape)) for a in want)
        grads = {}
        for name, form in K.FORMS.items():
            fn = jax.jit(lambda x, s, b, form=form: form(x, s, b, EPS, relu))
            got, vjp = jax.vjp(fn, x, scale, bias)
            for g, w in zip(got, want):
                assert_close(g, w, err_msg=f"{name} value")
            grads[name] = vjp(cts)  # the mean's and the variance's cotangents included
            check_grads(fn, (x, scale, bias), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)
        for g, w in zip(grads["fused"], grads["lax"]):
            assert_close(g, w, err_msg="fused VJP against autodiff")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_low_precision_inputs_keep_their_dtype_and_sum_in_float32(dtype):
    x, scale, bias = _arrays(0, (4, 5, 5, 8), dtype)
    want = reference(np.asarray(x, np.float64), np.asarray(scale, np.float64),
                     np.asarray(bias, np.float64), EPS, True)
    for form in norm.FORMS.values():
        y, mean, var = form(x, scale, bias, EPS, True)
        assert y.dtype == dtype and mean.dtype == var.dtype == jnp.float32
        assert_close(y, want[0], dtype=dtype)
        dx = jax.grad(lambda x: form(x, scale, bias, EPS, True)[0].astype(jnp.float32).sum())(x)
        assert dx.dtype == dtype


def _uses_native_sums(fn, *args) -> bool:
    text = str(jax.make_jaxpr(fn)(*args))
    return "jconv_onednn_bn_sums" in text and "jconv_onednn_bn_grad_sums" in text


# Large enough for the library's threads (32,768 values), and a few maps, one pixel, one row.
NATIVE_SHAPES = st.sampled_from([(4, 32, 32, 13), (2, 3), (1, 1, 1, 5), (3, 2, 7, 1), (2, 70, 300)])


@needs_library
@SWEEP
@given(shape=st.one_of(shapes, NATIVE_SHAPES), relu=st.booleans(), seed=st.integers(0, 2 ** 16))
@example(shape=(4, 32, 32, 13), relu=True, seed=0)
@example(shape=(2, 70, 300), relu=False, seed=1)
def test_native_sums_equal_the_reference_and_the_fused_form_in_float32(shape, relu, seed):
    x, scale, bias = _arrays(seed, shape, jnp.float32)
    want = reference(x, scale, bias, EPS, relu)
    rng = np.random.default_rng(seed + 1)
    cts = tuple(jnp.asarray(rng.standard_normal(a.shape), jnp.float32) for a in want)
    out = {}
    for name, form in (("native", NB.native), ("fused", K.fused)):
        fn = jax.jit(lambda x, s, b, form=form: form(x, s, b, EPS, relu))
        got, vjp = jax.vjp(fn, x, scale, bias)
        for g, w in zip(got, want):
            assert_close(g, w, err_msg=f"{name} value")
        out[name] = vjp(cts)
    backward = lambda x: jax.vjp(lambda x: NB.native(x, scale, bias, EPS, relu), x)[1](cts)
    assert _uses_native_sums(backward, x)
    for g, w in zip(out["native"], out["fused"]):
        assert_close(g, w, err_msg="native VJP against fused")
    # The sums alone, against float64 NumPy.
    x64 = np.asarray(x, np.float64).reshape(-1, shape[-1])
    s1, s2 = jax.jit(NB.sums)(x)
    np.testing.assert_allclose(s1, x64.sum(0), rtol=1e-5, atol=1e-4 * np.abs(x64).sum(0).max())
    np.testing.assert_allclose(s2, (x64 ** 2).sum(0), rtol=1e-5)


@needs_library
def test_native_sums_vmap_and_have_second_derivatives():
    x, scale, bias = _arrays(3, (3, 2, 4, 4, 5), jnp.float32)
    for f in (NB.sums, lambda x: NB.grad_sums(x[::-1], x, scale, bias, True)):
        batched = jax.vmap(f)(x)
        for i in range(3):
            for got, want in zip(batched, f(x[i])):
                assert_close(got[i], want)
    x = x[0]

    def twice(form):  # the fused backward differentiated again (its sums' JVPs)
        inner = lambda x: jax.grad(lambda x: (form(x, scale, bias, EPS, True)[0] ** 2).sum())(x)
        return jax.grad(lambda x: (inner(x) * x).sum())(x)
    assert_close(twice(NB.native), twice(K.fused))
    t = x[::-1]
    for got, want in zip(jax.jvp(NB.sums, (x,), (t,))[1], jax.jvp(K.sums, (x,), (t,))[1]):
        assert_close(got, want)
    hvp = lambda f: jax.grad(lambda x: jax.jvp(f, (x,), (t,))[1][1].sum())(x)
    assert_close(hvp(NB.sums), hvp(K.sums))


@needs_library
@pytest.mark.slow  # another process
def test_native_sums_over_four_devices_add_across_the_batch():
    out = _run("""
import json, jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from jconv.onednn import batch_norm as NB
x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 5, 5, 6)), jnp.float32)
dy = jnp.asarray(np.random.default_rng(1).standard_normal((8, 5, 5, 6)), jnp.float32)
s, b = jnp.linspace(0.5, 2, 6), jnp.linspace(-1, 1, 6)
def f(x, dy):
    (y, mean, var), vjp = jax.vjp(lambda x: NB.native(x, s, b, 1e-3, True), x)
    return y, mean, var, vjp((dy, mean * 0, var * 0))[0]
one = jax.jit(f)(x, dy)
mesh = jax.make_mesh((4,), ("b",))
rows = NamedSharding(mesh, P("b"))
four = jax.jit(f, in_shardings=(rows, rows))(jax.device_put(x, rows), jax.device_put(dy, rows))
text = jax.jit(f, in_shardings=(rows, rows)).lower(x, dy).compile().as_text()
print(json.dumps([max(float(abs(np.asarray(a) - np.asarray(c)).max()) for a, c in zip(one, four)),
                  "all-gather" in text]))
""", devices=4)
    diff, gathers = json.loads(out.strip().splitlines()[-1])
    assert diff < 1e-5 and not gathers


def test_auto_picks_native_for_float32_on_cpu_where_the_library_runs():
    want = "native" if STATUS.available else "fused"
    assert norm.which("auto", jnp.float32) == want and norm.which("native", jnp.float32) == want
    assert norm.which("auto", jnp.bfloat16) == "fused" == norm.which("native", jnp.bfloat16)
    assert norm.which("lax", jnp.float32) == "lax" and norm.which("fused") == "fused"
    with jconv.onednn.disabled():
        assert norm.which("auto", jnp.float32) == "fused"


def test_fused_vmaps_and_a_nan_spoils_only_its_own_map():
    x, scale, bias = _arrays(1, (3, 2, 4, 4, 5), jnp.float32)
    batched = jax.vmap(lambda x: K.fused(x, scale, bias, EPS, False)[0])(x)
    for i in range(3):
        np.testing.assert_array_equal(batched[i], K.fused(x[i], scale, bias, EPS, False)[0])
    x = x[0].at[0, 1, 1, 2].set(jnp.nan)
    for form in norm.FORMS.values():
        y, mean, _ = form(x, scale, bias, EPS, False)
        assert np.isnan(y[..., 2]).all() and np.isnan(mean[2])
        assert np.isfinite(np.delete(np.asarray(y), 2, axis=-1)).all()
        dx = jax.grad(lambda x: form(x, scale, bias, EPS, False)[0][..., 0].sum())(x)
        assert np.isfinite(dx[..., 0]).all()


@pytest.mark.parametrize("impl", ["lax", "fused", "native", "auto"])
def test_layer_matches_flax_batch_norm_then_relu(impl):
    x = jnp.asarray(np.random.default_rng(2).standard_normal((8, 3, 3, 6)) * 2 + 1, jnp.float32)
    ours = jconv.nn.BatchNorm(6, relu=True, impl=impl, rngs=nnx.Rngs(0))
    flax_bn = nnx.BatchNorm(6, rngs=nnx.Rngs(0))
    for _ in range(2):  # training: the batch's statistics, running averages updated
        assert_close(ours(x), jax.nn.relu(flax_bn(x)))
    for name in ("mean", "var"):
        assert_close(getattr(ours, name)[...], getattr(flax_bn, name)[...])
    ours.eval(), flax_bn.eval()  # evaluation: the running averages
    assert_close(ours(x), jax.nn.relu(flax_bn(x)))
    assert ours.use_running_average and jconv.nn.count_params(ours) == 12


def test_layer_refuses_bad_arguments_naming_them():
    with pytest.raises(ValueError, match="num_features=0"):
        jconv.nn.BatchNorm(0)
    with pytest.raises(ValueError, match="impl='onednn'"):
        jconv.nn.BatchNorm(4, impl="onednn")
    with pytest.raises(ValueError, match=r"x.shape=\(2, 3\); expected \(N, ..., 4\)"):
        jconv.nn.BatchNorm(4)(jnp.ones((2, 3)))
