"""``impl="onednn"`` for max/average pooling and LRN, and the fallback where it cannot run.

Where the extension loads, each op must agree with ``lax`` and with the float64 NumPy
reference over a hypothesis sweep (1-3 spatial axes, windows, strides, paddings, both
average conventions, odd LRN sizes); ``grad`` must run oneDNN's backward custom call, and
``jvp``, ``hessian`` and ``vmap`` must agree with ``lax``; bfloat16 runs. Those tests skip,
saying why, where oneDNN is unavailable. The fallback tests run everywhere.
"""

import concurrent.futures
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jconv
from jconv import reference
from jconv.onednn import pooling as onednn_pool
from jconv.testing import hlo_scopes
from tests.strategies import array, geometries, split
from tests.tolerance import assert_close, tolerance

REPO = Path(__file__).resolve().parents[1]

STATUS = jconv.backends()["onednn"]
needs_onednn = pytest.mark.skipif(not STATUS.available,
                                  reason=f"oneDNN unavailable: {STATUS.reason}")
LRN = dict(k=1.0, alpha=0.05, beta=0.75)  # alpha large enough for the sum to matter


def op(name, impl, *args, **kwargs):
    """``jconv.<name>(x, *args, impl=impl, **kwargs)`` as a function of ``x``."""
    return lambda x: getattr(jconv, name)(x, *args, impl=impl, **kwargs)


def targets(fn, *args) -> set[str]:
    """The oneDNN custom calls of ``fn``'s compiled program."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    return set(re.findall(r'custom_call_target="(jconv_onednn_\w+)"', text))


@st.composite
def pools(draw):
    """``(sizes, window, kwargs)``: a pooling window whose pads are smaller than it."""
    sizes, window, kwargs = split(draw(geometries(max_dilation=1, modes=("zeros",))))
    pads = reference.resolve_padding(sizes, window, kwargs["stride"], (1,) * len(sizes),
                                     kwargs["padding"])
    assume(all(max(p) < k for p, k in zip(pads, window)))
    return sizes, window, dict(stride=kwargs["stride"], padding=kwargs["padding"])


# --------------------------------------------------------------------------- values


@needs_onednn
@settings(max_examples=8, deadline=None)
@given(pools(), st.booleans(), st.integers(1, 3), st.integers(0, 2**16))
def test_pooling_matches_lax_and_reference(pool, count_include_pad, c, seed):
    sizes, window, kwargs = pool
    x = array(seed, (2, *sizes, c))
    got = op("max_pool", "onednn", window, **kwargs)(x)
    assert_close(got, reference.max_pool(x, window, **kwargs), err_msg=str(kwargs))
    assert_close(got, op("max_pool", "lax", window, **kwargs)(x))
    kwargs["count_include_pad"] = count_include_pad
    got = op("avg_pool", "onednn", window, **kwargs)(x)
    assert_close(got, reference.avg_pool(x, window, **kwargs), err_msg=str(kwargs))
    assert_close(got, op("avg_pool", "lax", window, **kwargs)(x))


@needs_onednn
@settings(max_examples=8, deadline=None)
@given(pools(), st.sampled_from([1, 5, 64, 70]), st.integers(0, 2**16))
def test_max_pool_gradient_matches_lax(pool, c, seed):
    # float32 backward is jconv's scatter to the recorded maxima, in tasks of 64 maps
    sizes, window, kwargs = pool
    x = jnp.asarray(array(seed, (2, *sizes, c)))
    ct = jnp.asarray(array(seed + 1, op("max_pool", "lax", window, **kwargs)(x).shape))
    grads = [jax.jit(lambda x, impl=impl: jax.vjp(op("max_pool", impl, window, **kwargs), x)[1](
        ct)[0])(x) for impl in ("onednn", "lax")]
    assert_close(*grads, err_msg=str(kwargs))


@needs_onednn
@settings(max_examples=6, deadline=None)
@given(st.sampled_from([1, 3, 5, 7]), st.integers(1, 9), st.integers(1, 3),
       st.floats(0.0, 2.0), st.floats(0.1, 1.5), st.integers(0, 2**16))
def test_lrn_matches_lax_and_reference(size, c, nd, k, beta, seed):
    x = array(seed, (2, *(3,) * nd, c))
    kw = dict(size=size, k=k + 0.1, alpha=0.05, beta=beta)
    got = op("local_response_norm", "onednn", **kw)(x)
    assert_close(got, reference.local_response_norm(x, **kw), err_msg=str(kw))
    assert_close(got, op("local_response_norm", "lax", **kw)(x))


@needs_onednn
def test_bfloat16_runs_within_its_tolerance():
    x = jnp.asarray(array(0, (2, 7, 7, 4)), jnp.bfloat16)
    x32 = np.asarray(x, np.float32)
    cases = [("max_pool", (3,), dict(stride=2), reference.max_pool(x32, 3, 2)),
             ("avg_pool", (3,), dict(stride=1, padding="SAME"),
              reference.avg_pool(x32, 3, 1, "SAME")),
             ("local_response_norm", (), LRN, reference.local_response_norm(x32, **LRN))]
    for name, args, kwargs, want in cases:
        f = op(name, "onednn", *args, **kwargs)
        y = f(x)
        assert y.dtype == jnp.bfloat16
        assert_close(y, want, dtype="bfloat16")
        g = jax.jit(jax.grad(lambda x: jnp.sum(f(x).astype(jnp.float32) ** 2)))(x)
        g_lax = jax.jit(jax.grad(lambda x: jnp.sum(op(name, "lax", *args, **kwargs)(x) ** 2)))(x32)
        assert g.dtype == jnp.bfloat16
        assert_close(g, g_lax, dtype="bfloat16")


# --------------------------------------------------------------------------- derivatives

CASES = [  # (op, args, kwargs, the forward's and the backward's custom calls)
    ("max_pool", (3,), dict(stride=2, padding=1), "max_fwd", "max_bwd"),
    ("max_pool", ((2, 3),), dict(stride=(1, 2), padding="SAME"), "max_fwd", "max_bwd"),
    ("avg_pool", (3,), dict(stride=2, padding=1), "avg_fwd", "avg_bwd"),
    ("avg_pool", (2,), dict(padding="SAME", count_include_pad=False), "avg_fwd", "avg_bwd"),
    ("local_response_norm", (), dict(size=3, **LRN), "lrn_fwd", "lrn_bwd"),
]


@needs_onednn
@pytest.mark.parametrize("name, args, kwargs, fwd, bwd", CASES, ids=lambda v: str(v))
def test_grad_runs_onednn_backward_and_derivatives_match_lax(name, args, kwargs, fwd, bwd):
    x = jnp.asarray(array(1, (2, 6, 7, 3)))
    f, f_lax = op(name, "onednn", *args, **kwargs), op(name, "lax", *args, **kwargs)
    loss = lambda f: lambda x: jnp.sum(jnp.tanh(f(x)) ** 2)
    assert targets(f, x) == {f"jconv_onednn_{fwd}"}
    assert targets(jax.grad(loss(f)), x) == {f"jconv_onednn_{fwd}", f"jconv_onednn_{bwd}"}
    assert hlo_scopes(f, x) == {(name, "onednn")}
    check_grads(jax.jit(f), (x,), order=1, modes=("rev",), **tolerance("float32", kind="grad"))
    t = jnp.asarray(array(2, x.shape))
    for d in (lambda f: jax.grad(loss(f)), lambda f: lambda x: jax.jvp(f, (x,), (t,))[1]):
        assert_close(jax.jit(d(f))(x), jax.jit(d(f_lax))(x))
    if fwd != "avg_fwd" and kwargs.get("padding") != "SAME":  # each nonlinear op once
        small = x[:1, :3, :4]  # (1, 3, 4, 3): a hessian of 36 x 36
        hessian = lambda f: jax.jit(jax.hessian(loss(f)))(small)
        assert_close(hessian(f), hessian(f_lax))


@needs_onednn
def test_max_pool_jvp_and_vjp_pick_the_same_maximum_on_ties():
    x = jnp.zeros((1, 4, 4, 2))  # every window a tie
    f = op("max_pool", "onednn", 2, stride=1)
    t = jnp.asarray(array(0, x.shape))
    y, f_vjp = jax.vjp(f, x)
    ct = jnp.asarray(array(1, y.shape))
    # <f'(x) t, ct> == <t, f'(x)^T ct>: one maximum per window, in both modes
    assert_close(jnp.vdot(jax.jvp(f, (x,), (t,))[1], ct), jnp.vdot(t, f_vjp(ct)[0]))


@needs_onednn
def test_windows_of_256_taps_or_more_record_int32_maxima():
    x = jnp.asarray(array(4, (1, 16, 17, 1)))
    kw = dict(stride=1, padding=((0, 0), (1, 0)))
    f, f_lax = op("max_pool", "onednn", 16, **kw), op("max_pool", "lax", 16, **kw)
    assert "xi32>" in jax.jit(f).lower(x).as_text()  # the workspace: (N, *S', C) int32
    for d in (lambda f: f, lambda f: jax.grad(lambda x: jnp.sum(f(x) ** 2)),
              lambda f: lambda x: jax.jvp(f, (x,), (2 * x,))[1]):
        assert_close(jax.jit(d(f))(x), jax.jit(d(f_lax))(x))


@needs_onednn
@pytest.mark.parametrize("name, args, kwargs, fwd, bwd", CASES[::2], ids=lambda v: str(v))
def test_vmap_and_per_example_gradients_match_lax(name, args, kwargs, fwd, bwd):
    x = jnp.asarray(array(3, (3, 2, 5, 5, 4)))  # a batch of 3 batches
    f, f_lax = op(name, "onednn", *args, **kwargs), op(name, "lax", *args, **kwargs)
    moved = jnp.moveaxis(x, 0, 1)
    assert_close(jax.jit(jax.vmap(f, 1, 1))(moved), jax.jit(jax.vmap(f_lax, 1, 1))(moved))
    per_example = lambda f: jax.jit(jax.vmap(jax.grad(lambda x: jnp.sum(f(x) ** 3))))(x)
    assert_close(per_example(f), per_example(f_lax))


@needs_onednn
def test_calls_from_several_threads_with_a_small_cache():
    cases = []  # (compiled gradient, input, lax's gradient)
    for i, (name, args, kwargs, _, _) in enumerate(CASES[::2]):
        x = jnp.asarray(array(i, (2, 6, 7, 3)))
        grads = [jax.jit(jax.grad(lambda x, f=op(name, impl, *args, **kwargs):
                                  jnp.sum(f(x) ** 2))) for impl in ("onednn", "lax")]
        cases.append((grads[0], x, grads[1](x)))
    onednn_pool.set_cache_capacity(2)  # fewer entries than primitives: evictions while others run
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            runs = [pool.submit(f, x) for _ in range(3) for f, x, _ in cases]
            results = [r.result() for r in runs]
        assert onednn_pool.cache_size() <= 2
    finally:
        onednn_pool.set_cache_capacity(256)
    for got, (_, _, want) in zip(results, cases * 3):
        assert_close(got, want)


# --------------------------------------------------------------------------- fallback


@pytest.mark.parametrize("name, args, kwargs", [(c[0], c[1], c[2]) for c in CASES[::2]],
                         ids=lambda v: str(v))
def test_float64_falls_back_to_lax_and_says_why(name, args, kwargs):
    shape = (1, 6, 6, 4)
    choice = jconv.which_impl(name, shape, *args, impl="onednn", dtype="float64", **kwargs)
    assert choice.impl == "lax" and "not float64" in choice.reason
    with jax.enable_x64(True):
        x = jnp.asarray(array(0, shape, np.float64))
        f = op(name, "onednn", *args, **kwargs)
        assert f(x).dtype == jnp.float64
        assert_close(f(x), getattr(reference, name)(x, *args, **kwargs))
        assert hlo_scopes(f, x) == {(name, "lax")}


def test_even_lrn_size_falls_back_to_lax_and_says_why():
    choice = jconv.which_impl("local_response_norm", (1, 3, 3, 6), size=4, impl="onednn")
    assert choice.impl == "lax" and "symmetric" in choice.reason
    x = jnp.asarray(array(0, (1, 3, 3, 6)))
    f = op("local_response_norm", "onednn", size=4, **LRN)
    assert hlo_scopes(f, x) == {("local_response_norm", "lax")}
    assert_close(f(x), reference.local_response_norm(x, size=4, **LRN))
    if STATUS.available:
        with pytest.raises(NotImplementedError, match="symmetric"):
            onednn_pool.local_response_norm(x, 4, 1.0, 0.05, 0.75)


def test_reason_names_the_forward_mode_kernel():
    for name, args in [("max_pool", (2,)), ("local_response_norm", ())]:
        reason = jconv.which_impl(name, (1, 6, 6, 4), *args, impl="onednn",
                                  backend="cpu").reason
        assert "jvp" in reason, reason
    assert "jvp" not in jconv.which_impl("avg_pool", (1, 6, 6, 4), 2, impl="onednn").reason


EVERY_WIDTH = """
import jax, jax.numpy as jnp, numpy as np
import jconv
rng = np.random.default_rng(0)
for shape, window, kw in [((2, 9, 9, 3), 3, dict(stride=2)), ((1, 7, 8, 20), 3, dict(padding="SAME")),
                          ((2, 6, 5, 64), (2, 3), dict(stride=1)), ((1, 16, 17, 9), 16, dict(stride=1)),
                          ((2, 10, 11, 17), 2, dict(stride=3)),  # pixels in no window
                          ((1, 5, 6, 7, 18), (2, 3, 2), dict(stride=(1, 2, 1), padding="SAME"))]:
    x = np.round(rng.standard_normal(shape), 1).astype(np.float32)  # ties
    x.flat[rng.choice(x.size, 5)] = [np.nan, np.inf, -np.inf, np.nan, np.inf]
    for dtype in (jnp.float32, jnp.bfloat16):
        xd = jnp.asarray(x, dtype)
        f, g = (jax.jit(lambda x, impl=impl: jconv.max_pool(x, window, impl=impl, **kw)) for impl in ("onednn", "lax"))
        np.testing.assert_array_equal(np.asarray(f(xd), np.float32), np.asarray(g(xd), np.float32))
        # cotangents of a few multiples of 1/4: every sum exact, whatever order lax adds in
        dy = jnp.asarray(rng.integers(-8, 9, f(xd).shape) / 4, dtype)
        df, dg = (jax.jit(lambda x, h=h: jax.vjp(h, x)[1](dy)[0]) for h in (f, g))
        np.testing.assert_array_equal(np.asarray(df(xd), np.float32), np.asarray(dg(xd), np.float32))
print("ok")
"""


@needs_onednn
@pytest.mark.slow  # other processes
@pytest.mark.parametrize("isa", ["SSE41", "AVX2", ""])
def test_max_pool_at_every_vector_width_equals_lax(isa):
    """The forward's and backward's 4-, 8- and 16-map versions (``ONEDNN_MAX_CPU_ISA`` caps the
    width to this CPU's or less), on windows of 3 to 64 maps (within a vector, several,
    overlapping), 2-D and 3-D, strides below, at and above the window, with NaN, infinities
    and ties, float32 and bfloat16, uint8 and int32 maxima: values and gradients equal lax's."""
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", ONEDNN_MAX_CPU_ISA=isa)
    out = subprocess.run([sys.executable, "-c", EVERY_WIDTH], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
