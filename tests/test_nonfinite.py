"""NaN and infinities propagate through every op and implementation as through ``lax``.

For every registered op, example and implementation (``auto`` included; ``onednn`` where
it can run), inputs holding NaN, +inf and -inf at random positions must give what
``impl="lax"`` gives, forward and for the gradients with respect to every array (a VJP
with a finite cotangent): NaN where lax has NaN, the same infinities, finite values
close. Max pooling follows ``reduce_window``'s max forward (a window holding a NaN is NaN,
a window of -inf is -inf) and the selection of ``select_and_scatter`` backward (the first
maximum; with a NaN, the maximum after the last NaN), ties and windows of only NaN
included, in every implementation and for 1 to 3 spatial axes.

``KNOWN`` lists where an implementation differs from lax, and why; those cases xfail
(not strictly: some examples happen not to meet the difference).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st

import jconv
from jconv import reference
from jconv.ops import BUILTIN_OPS, registry
from tests.strategies import geometries, split
from tests.tolerance import assert_close

ONEDNN = jconv.backends()["onednn"].available
SPECIAL = np.array([np.nan, np.inf, -np.inf], np.float32)
# Fewer examples than the suite's default: about 190 cases, two compilations each.
FEW = settings(max_examples=3, phases=(Phase.explicit, Phase.generate))

_LAX_PATCHES = ("lax.conv_general_dilated_local extracts patches with a one-hot conv, so an "
                "infinite input, or the infinite cotangent of an infinite weight, makes NaN "
                "(0 * inf) in every patch entry beside it; the patches kernel slices the "
                "windows and keeps the infinity")
_PHASE_PADS = ("each phase conv pads x with zeros that an infinite weight multiplies (NaN at "
               "positions no input reaches), where XLA:CPU's dense 2-D input-dilated conv "
               "skips the zeros it inserts")
KNOWN = {  # (op, impl, where the non-finite values are) -> why it differs from lax
    ("conv_transpose", "phases", "w"): _PHASE_PADS,
    **{("local_conv", impl, where): _LAX_PATCHES
       for impl in ("auto", "patches", "patches_grad") for where in ("x", "w")},
}


def _impls(op):
    """``auto`` and every implementation but ``lax`` (the reference) that can run here."""
    return [i for i in ("auto", *registry.get(op).impls[1:]) if i != "onednn" or ONEDNN]


def _case(op, i, impl, where):
    why = KNOWN.get((op, impl, where))
    marks = [pytest.mark.xfail(reason=why, strict=False)] if why else []
    return pytest.param(op, i, impl, where, id=f"{op}-{i}-{impl}-{where}", marks=marks)


CASES = [_case(op, i, impl, where) for op in BUILTIN_OPS
         for i in range(len(registry.get(op).examples)) for impl in _impls(op)
         for where in (("x", "w") if registry.get(op).weights else ("x",))]


def _is_shape(s):
    return isinstance(s, list) or (isinstance(s, tuple) and all(isinstance(d, int) for d in s))


def sprinkle(rng, a, count):
    """``a`` with ``count`` entries, at random positions, set to NaN, +inf or -inf."""
    a = a.copy()
    flat = a.reshape(-1)
    at = rng.choice(flat.size, size=min(count, flat.size), replace=False)
    flat[at] = rng.choice(SPECIAL, size=at.size)
    return a


@functools.lru_cache(maxsize=None)
def _forward_and_vjp(op, i, impl):
    """``jit((arrays, ct) -> (y, grads))`` for example ``i`` of ``op`` run by ``impl``."""
    spec = registry.get(op)
    shapes, kwargs = spec.examples[i]

    def call(arrays):
        it = iter(arrays)
        args = [next(it) if _is_shape(s) else s for s in shapes]
        return spec.fn(*args, impl=impl, **kwargs)

    def run(arrays, ct):
        y, vjp = jax.vjp(call, arrays)
        return y, vjp(ct)[0]
    return jax.jit(run), call


def assert_like(got, want, what, dtype="float32"):
    """NaN where ``want`` has NaN, its infinities, finite values close."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    nan = np.isnan(got) != np.isnan(want)
    assert not nan.any(), f"{what}: NaN differs at {np.argwhere(nan)[:4].tolist()}"
    inf = (np.isinf(got) | np.isinf(want)) & (got != want)
    assert not inf.any(), f"{what}: infinities differ at {np.argwhere(inf)[:4].tolist()}"
    assert_close(got, want, dtype=dtype, err_msg=what)


def _compare(op, impl, arrays, call_lax, runs, seed):
    y = jax.eval_shape(call_lax, arrays)
    ct = jnp.asarray(np.random.default_rng(seed + 1).standard_normal(y.shape), y.dtype)
    (y, grads), (y_lax, grads_lax) = (run(arrays, ct) for run in runs)
    assert_like(y, y_lax, f"{op}[{impl}] forward")
    for n, (g, g_lax) in enumerate(zip(jax.tree.leaves(grads), jax.tree.leaves(grads_lax))):
        assert_like(g, g_lax, f"{op}[{impl}] gradient of array {n}")


@pytest.mark.slow  # every op and impl with NaN and infinities
@pytest.mark.parametrize("op, i, impl, where", CASES)
@FEW
@given(st.integers(1, 4), st.integers(0, 2**16))
def test_nonfinite_values_propagate_as_in_lax(op, i, impl, where, count, seed):
    rng = np.random.default_rng(seed)
    shapes = [s for s in registry.get(op).examples[i][0] if _is_shape(s)]

    def arrays(shape, special):
        if isinstance(shape, list):
            return [arrays(s, special) for s in shape]
        a = rng.standard_normal(shape).astype(np.float32)
        return jnp.asarray(sprinkle(rng, a, count) if special else a)

    xs = [arrays(s, (n == 0) == (where == "x")) for n, s in enumerate(shapes)]
    run, _ = _forward_and_vjp(op, i, impl)
    run_lax, call_lax = _forward_and_vjp(op, i, "lax")
    _compare(op, impl, xs, call_lax, (run, run_lax), seed)


# --------------------------------------------------------------------------- pooling


@st.composite
def dense(draw, shape):
    """Values from {-1, 0, 1} (ties everywhere), about a third of them NaN or infinite."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.integers(-1, 2, size=shape).astype(np.float32)
    return sprinkle(rng, x, draw(st.integers(0, x.size // 2)))


@st.composite
def pools(draw):
    """``(x, window, kwargs)``: 1 to 3 spatial axes, pads smaller than the window (as
    oneDNN takes them), so that some windows hold only NaN, or only -inf."""
    sizes, window, kwargs = split(draw(geometries(max_dilation=1, modes=("zeros",))))
    pads = reference.resolve_padding(sizes, window, kwargs["stride"], (1,) * len(sizes),
                                     kwargs["padding"])
    assume(all(max(p) < k for p, k in zip(pads, window)))
    x = draw(dense((2, *sizes, draw(st.sampled_from([1, 3, 17])))))
    return x, window, dict(stride=kwargs["stride"], padding=kwargs["padding"])


def _pooling(name, args, kwargs, x, dtype=jnp.float32):
    x = jnp.asarray(x, dtype)
    calls = {impl: jax.jit(lambda x, ct, impl=impl: (lambda y, vjp: (y, vjp(ct)[0]))(
        *jax.vjp(lambda x: getattr(jconv, name)(x, *args, impl=impl, **kwargs), x)))
        for impl in ("lax", *_impls(name)[1:])}  # auto runs one of them
    y = jax.eval_shape(lambda x: getattr(jconv, name)(x, *args, impl="lax", **kwargs), x)
    ct = jnp.asarray(np.random.default_rng(0).standard_normal(y.shape), dtype)
    return {impl: call(x, ct) for impl, call in calls.items()}


@settings(max_examples=5, phases=(Phase.explicit, Phase.generate))
@given(pools())
def test_max_and_avg_pool_windows_of_nan_inf_and_ties(pool):
    x, window, kwargs = pool
    for name, kw in (("max_pool", kwargs), ("avg_pool", kwargs),
                     ("avg_pool", dict(kwargs, count_include_pad=False))):
        out = _pooling(name, (window,), kw, x)
        for impl, (y, g) in out.items():
            assert_like(y, out["lax"][0], f"{name}[{impl}] {window} {kw} forward")
            assert_like(g, out["lax"][1], f"{name}[{impl}] {window} {kw} gradient")


@settings(max_examples=4, phases=(Phase.explicit, Phase.generate))
@given(dense((2, 3, 4, 9)), st.integers(1, 4), st.integers(1, 3))
def test_channel_max_pool_and_lrn_with_nan_inf_and_ties(x, size, stride):
    cases = [("channel_max_pool", (size,), dict(stride=stride)),
             ("local_response_norm", (), dict(size=size, k=1.0, alpha=0.05, beta=0.75))]
    for name, args, kwargs in cases:
        out = _pooling(name, args, kwargs, x)
        for impl, (y, g) in out.items():
            assert_like(y, out["lax"][0], f"{name}[{impl}] {args} {kwargs} forward")
            assert_like(g, out["lax"][1], f"{name}[{impl}] {args} {kwargs} gradient")


@pytest.mark.skipif(not ONEDNN, reason="oneDNN unavailable")
def test_onednn_max_pool_bfloat16_keeps_nan_and_inf():
    rng = np.random.default_rng(3)
    x = sprinkle(rng, rng.integers(-2, 3, size=(2, 7, 7, 20)).astype(np.float32), 60)
    x[0, :3, :3, 0] = np.nan   # a window of only NaN
    x[1, :3, :3, 1] = -np.inf  # a window of only -inf
    out = _pooling("max_pool", (3,), dict(stride=2, padding=1), x, jnp.bfloat16)
    y, g = out["onednn"]
    assert y.dtype == g.dtype == jnp.bfloat16
    assert_like(y, out["lax"][0], "forward", "bfloat16")
    assert_like(g, out["lax"][1], "gradient", "bfloat16")
