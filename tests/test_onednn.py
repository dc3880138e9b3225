"""``impl="onednn"``: oneDNN convolutions through XLA's FFI, and the fallback without them.

Where the extension is built and loads (``jconv.backends()["onednn"].available``), every
pass must run oneDNN and agree with ``lax`` at ``Precision.HIGHEST`` and with the float64
NumPy reference, over a hypothesis sweep of 1-3 spatial axes, strides, dilations, groups
and paddings; under ``jit``, ``grad``, ``jvp``, ``hessian``, ``vmap`` and from several
Python threads; in float32 and bfloat16. Those tests skip, saying why, where it is not.
The fallback tests (``JCONV_DISABLE_ONEDNN=1``, float64 and float16) run everywhere.
"""

import concurrent.futures
import os
import re
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax
from jax.test_util import check_grads

import jconv
from jconv import onednn, reference
from jconv.onednn import Backend, ImplUnavailableWarning, build, library
from jconv.ops import dispatch
from jconv.testing import hlo_scopes
from tests.strategies import array, geometries, split
from tests.tolerance import assert_close, tolerance

HIGHEST = lax.Precision.HIGHEST
STATUS = jconv.backends()["onednn"]
needs_onednn = pytest.mark.skipif(not STATUS.available,
                                  reason=f"oneDNN unavailable: {STATUS.reason}")
TARGETS = ("jconv_onednn_fwd", "jconv_onednn_bwd_data", "jconv_onednn_bwd_weights")


def conv(impl, **kwargs):
    """``jconv.conv`` with ``impl`` and ``kwargs`` bound, at HIGHEST precision."""
    return lambda x, w: jconv.conv(x, w, impl=impl, precision=HIGHEST, **kwargs)


def hlo(fn, *args) -> str:
    return jax.jit(fn).lower(*args).compile().as_text()


def ran(hlo_text: str) -> set[str]:
    """The oneDNN custom calls of a compiled program, and ``"xla"`` if XLA convolves too."""
    calls = set(re.findall(r'custom_call_target="(jconv_onednn_\w+)"', hlo_text))
    return calls | ({"xla"} if re.search(r"= \S+ convolution\(", hlo_text) else set())


def test_backends_says_what_is_available_and_why():
    b = jconv.backends()
    assert set(b) == {"lax", "onednn"} and b["lax"].available
    assert b["onednn"].reason and isinstance(b["onednn"].available, bool)
    if b["onednn"].available:
        assert b["onednn"].version.startswith("3.")
        assert b["onednn"].dtypes[0] == "float32" and b["onednn"].dtypes[1].startswith("bf")
        assert os.path.exists(b["onednn"].extension) and os.path.exists(b["onednn"].library)


# --------------------------------------------------------------------------- values


@needs_onednn
@settings(max_examples=20)
@given(geometries(), st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 2**16))
def test_matches_lax_and_reference(geometry, n, groups, cin, cout, seed):
    sizes, kernel, kwargs = split(geometry)
    x = array(seed, (n, *sizes, groups * cin))
    w = array(seed + 1, (*kernel, cin, groups * cout))
    actual = conv("onednn", groups=groups, **kwargs)(x, w)
    assert_close(actual, reference.conv(x, w, groups=groups, **kwargs), err_msg=str(kwargs))
    assert_close(actual, conv("lax", groups=groups, **kwargs)(x, w), err_msg=str(kwargs))


@needs_onednn
@pytest.mark.parametrize("op, shapes, kwargs", [
    ("depthwise_conv", ((2, 9, 9, 8), (3, 3, 1, 16)), dict(stride=2)),
    ("depthwise_conv", ((1, 7, 7, 4), (5, 5, 1, 4)), dict(dilation=2, padding="SAME")),
    ("pointwise_conv", ((2, 5, 5, 8), (4, 6)), dict(groups=2, stride=2)),
    ("separable_conv", ((1, 6, 6, 4), (3, 3, 1, 8), (8, 5)), {}),
    ("spatially_separable_conv", ((1, 6, 6, 3), [(3, 1, 3, 4), (1, 3, 4, 5)]), {}),
])
def test_every_op_on_the_conv_path(op, shapes, kwargs):
    args = [array(i, s) if isinstance(s, tuple) else [array(i + j, t) for j, t in enumerate(s)]
            for i, s in enumerate(shapes)]
    fn = getattr(jconv, op)
    actual = fn(*args, impl="onednn", precision=HIGHEST, **kwargs)
    assert_close(actual, getattr(reference, op)(*args, **kwargs))
    assert hlo_scopes(lambda *a: fn(*a, impl="onednn", **kwargs), *args) == {(op, "onednn")}


@needs_onednn
def test_bfloat16_within_its_tolerance():
    x, w = array(0, (2, 8, 8, 6)), array(1, (3, 3, 3, 4))
    xb, wb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
    f = conv("onednn", groups=2, stride=2)
    y = f(xb, wb)
    assert y.dtype == jnp.bfloat16
    exact = reference.conv(np.asarray(xb, np.float32), np.asarray(wb, np.float32), groups=2,
                           stride=2)
    assert_close(y, exact, dtype="bfloat16")
    gx, gw = jax.grad(lambda a, b: jnp.sum(f(a, b).astype(jnp.float32) ** 2), (0, 1))(xb, wb)
    lx, lw = jax.grad(lambda a, b: jnp.sum(conv("lax", groups=2, stride=2)(a, b) ** 2),
                      (0, 1))(jnp.asarray(xb, jnp.float32), jnp.asarray(wb, jnp.float32))
    assert gx.dtype == gw.dtype == jnp.bfloat16
    assert_close(gx, lx, dtype="bfloat16")
    assert_close(gw, lw, dtype="bfloat16")


# --------------------------------------------------------------------------- derivatives


@needs_onednn
@pytest.mark.parametrize("nd", [1, 2, 3])
@settings(max_examples=6)
@given(st.data(), st.integers(1, 2), st.integers(1, 9), st.integers(1, 3),
       st.integers(0, 2**16))
def test_vjp_matches_lax(nd, data, groups, cin, cout, seed):
    # Several maps per group under a window of several taps take backward-weights through
    # oneDNN's blocked layouts (maps in blocks of 8: 9 leaves a partial block).
    sizes, kernel, kwargs = split(data.draw(geometries(nd=nd, modes=("zeros",))))
    x = jnp.asarray(array(seed, (2, *sizes, groups * cin)))
    w = jnp.asarray(array(seed + 1, (*kernel, cin, groups * cout)))
    y, vjp = jax.vjp(conv("onednn", groups=groups, **kwargs), x, w)
    y_lax, vjp_lax = jax.vjp(conv("lax", groups=groups, **kwargs), x, w)
    dy = jnp.asarray(array(seed + 2, y.shape))
    for got, want in zip(vjp(dy), vjp_lax(dy)):
        assert_close(got, want, err_msg=str(kwargs))


@needs_onednn
@pytest.mark.parametrize("sizes, kernel", [((9,), (3,)), ((6, 7), (3, 3)), ((4, 5, 4), (3, 1, 3))])
def test_vjp_of_a_wide_conv_matches_lax(sizes, kernel):
    # 64 maps into 128 filters: backward-weights as im2col and one GEMM on AVX2.
    x = jnp.asarray(array(0, (2, *sizes, 64)))
    w = jnp.asarray(array(1, (*kernel, 64, 128)))
    kwargs = dict(stride=1, padding="SAME")
    y, vjp = jax.vjp(conv("onednn", **kwargs), x, w)
    dy = jnp.asarray(array(2, y.shape))
    for got, want in zip(vjp(dy), jax.vjp(conv("lax", **kwargs), x, w)[1](dy)):
        assert_close(got, want)


@needs_onednn
def test_every_pass_of_grad_jvp_and_hessian_is_onednn():
    x, w = jnp.asarray(array(0, (1, 5, 5, 4))), jnp.asarray(array(1, (3, 3, 2, 4)))
    f = conv("onednn", groups=2, stride=2, dilation=(1, 2), padding=((1, 0), (2, 1)))

    def loss(x, w):
        return jnp.sum(jnp.tanh(f(x, w)))

    assert ran(hlo(f, x, w)) == {"jconv_onednn_fwd"}
    assert ran(hlo(jax.grad(loss, (0, 1)), x, w)) == set(TARGETS)
    assert ran(hlo(lambda x, w: jax.jvp(f, (x, w), (x, w)), x, w)) == {"jconv_onednn_fwd"}
    assert "xla" not in ran(hlo(jax.hessian(loss, 1), x, w))


@needs_onednn
def test_check_grads_forward_and_reverse_to_second_order():
    x, w = jnp.asarray(array(0, (1, 5, 4, 2))), jnp.asarray(array(1, (2, 3, 1, 4)))
    f = jax.jit(conv("onednn", groups=2, stride=(2, 1), dilation=(1, 2), padding=1))
    check_grads(f, (x, w), order=2, modes=("fwd", "rev"), **tolerance("float32", kind="grad"))


# --------------------------------------------------------------------------- vmap


@needs_onednn
@pytest.mark.parametrize("in_axes", [(0, None), (None, 0), (1, 3)], ids=str)
def test_vmap_matches_lax(in_axes):
    x, w = array(0, (3, 2, 6, 6, 4)), array(1, (3, 3, 3, 2, 4))  # a batch of 3 of each
    x = x if in_axes[0] == 0 else x[0] if in_axes[0] is None else np.moveaxis(x, 0, 1)
    w = w if in_axes[1] == 0 else w[0] if in_axes[1] is None else np.moveaxis(w, 0, 3)
    kw = dict(groups=2, stride=(1, 2))
    got = jax.vmap(conv("onednn", **kw), in_axes)(x, w)
    assert_close(got, jax.vmap(conv("lax", **kw), in_axes)(x, w))


@needs_onednn
def test_per_example_gradients_under_vmap():
    x, w = jnp.asarray(array(0, (3, 1, 6, 6, 2))), jnp.asarray(array(1, (3, 3, 2, 5)))

    def per_example(impl):
        loss = lambda w, x: jnp.sum(conv(impl)(x, w) ** 2)
        return jax.vmap(jax.grad(loss), (None, 0))(w, x)

    assert_close(per_example("onednn"), per_example("lax"))


# --------------------------------------------------------------------------- threads


@needs_onednn
def test_calls_from_several_threads_with_a_small_cache():
    def loss(impl, **kw):
        return jax.value_and_grad(lambda x, w: jnp.sum(conv(impl, **kw)(x, w) ** 2), (0, 1))

    cases = []  # (compiled in the threads, arguments, lax's answer)
    for i, (stride, groups) in enumerate([(s, g) for s in (1, 2) for g in (1, 2, 4)]):
        x = jnp.asarray(array(i, (2, 7, 7, 4)))
        w = jnp.asarray(array(i + 1, (3, 3, 4 // groups, 4)))
        cases.append((jax.jit(loss("onednn", stride=stride, groups=groups)), (x, w),
                      loss("lax", stride=stride, groups=groups)(x, w)))
    onednn.set_cache_capacity(3)  # fewer entries than shapes: evictions while others run
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            runs = [pool.submit(f, *args) for _ in range(4) for f, args, _ in cases]
            results = [r.result() for r in runs]
        assert onednn.cache_size() <= 3
    finally:
        onednn.set_cache_capacity(256)
    for got, (_, _, want) in zip(results, cases * 4):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            assert_close(a, b)


# --------------------------------------------------------------------------- fallback


def test_disabled_by_environment_runs_lax(monkeypatch):
    monkeypatch.setenv("JCONV_DISABLE_ONEDNN", "1")
    status = jconv.backends()["onednn"]
    assert not status.available and "JCONV_DISABLE_ONEDNN=1" in status.reason
    x, w = jnp.asarray(array(0, (1, 6, 6, 4))), jnp.asarray(array(1, (3, 3, 4, 2)))
    choice = jconv.which_impl("conv", x.shape, w.shape, impl="onednn")
    assert choice.impl == "lax" and "JCONV_DISABLE_ONEDNN=1" in choice.reason
    assert hlo_scopes(conv("onednn"), x, w) == {("conv", "lax")}
    assert_close(conv("onednn")(x, w), reference.conv(x, w))
    with pytest.raises(RuntimeError, match="impl='onednn' is unavailable: disabled"):
        onednn.conv(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1))


def test_asked_for_by_name_where_it_cannot_load_warns_once(monkeypatch):
    """No extension: an op asked for ``impl="onednn"`` warns once per process with the
    reason, runs lax; ``JCONV_STRICT_IMPL=1`` raises instead."""
    why = "extension not built (last attempt: g++ not found): reinstall"
    monkeypatch.setattr(library, "_load", lambda: (None, Backend("onednn", False, why)))
    monkeypatch.setattr(dispatch, "_WARNED", set())
    x, w = jnp.asarray(array(0, (1, 6, 6, 4))), jnp.asarray(array(1, (3, 3, 4, 2)))
    with pytest.warns(ImplUnavailableWarning, match=r"impl='onednn' cannot run .*g\+\+ not found"):
        y = jconv.conv(x, w, impl="onednn", precision=HIGHEST)
    assert_close(y, reference.conv(x, w))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jconv.max_pool(x, 2, impl="onednn")  # once per process, not per op or call
        jconv.conv(x, w, impl="onednn")
        jconv.conv(x, w)  # auto: no word
    monkeypatch.setenv("JCONV_STRICT_IMPL", "1")
    with pytest.raises(RuntimeError, match=r"conv: impl='onednn' cannot run this call .*"
                                           "g\\+\\+ not found.*JCONV_STRICT_IMPL=1"):
        jconv.conv(x, w, impl="onednn")


def test_strict_raises_for_a_call_it_cannot_take(monkeypatch):
    """float64 falls back quietly (the dtype, not the install); strict mode raises."""
    x, w = array(0, (1, 6, 6, 4), "float64"), array(1, (3, 3, 4, 2), "float64")
    with jax.enable_x64(True):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            jconv.conv(jnp.asarray(x), jnp.asarray(w), impl="onednn")
        monkeypatch.setenv("JCONV_STRICT_IMPL", "1")
        with pytest.raises(RuntimeError, match="not float64"):
            jconv.conv(jnp.asarray(x), jnp.asarray(w), impl="onednn")
    monkeypatch.setenv("JCONV_DISABLE_ONEDNN", "1")  # off on purpose: neither
    jconv.conv(jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 2)), impl="onednn")


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_other_dtypes_fall_back_to_lax(dtype):
    choice = jconv.which_impl("conv", (1, 6, 6, 4), (3, 3, 4, 2), impl="onednn", dtype=dtype)
    assert choice.impl == "lax" and f"not {dtype}" in choice.reason
    with jax.enable_x64(dtype == "float64"):
        x, w = array(0, (1, 6, 6, 4), dtype), array(1, (3, 3, 4, 2), dtype)
        y = conv("onednn")(jnp.asarray(x), jnp.asarray(w))
        assert y.dtype == dtype
        assert_close(y, reference.conv(x, w))
        assert hlo_scopes(conv("onednn"), x, w) == {("conv", "lax")}


def test_build_says_why_it_cannot(monkeypatch, tmp_path):
    monkeypatch.setenv("JCONV_ONEDNN_ROOT", str(tmp_path))  # no headers, no library
    ok, message = build.build()
    assert not ok and "oneDNN headers (include/oneapi/dnnl) not found" in message


def test_bad_arguments_to_the_kernel():
    x, w = jnp.ones((1, 5, 5, 2), jnp.float32), jnp.ones((3, 3, 2, 2), jnp.float32)
    window = ((1, 1), ((0, 0),) * 2, (1, 1))
    with pytest.raises(TypeError, match="x.dtype=float32, w.dtype=float16"):
        onednn.conv(x, w.astype(jnp.float16), *window)
    with pytest.raises(NotImplementedError, match="lhs_dilation"):
        onednn.conv(x, w, *window, lhs_dilation=(2, 2))


@pytest.mark.slow  # another process
def test_jconv_runs_without_loading_onednn_when_disabled():
    """A fresh process with the backend off: jconv imports, conv runs, libdnnl never loads."""
    code = ("import jax.numpy as jnp, jconv; "
            "y = jconv.conv(jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 2)), impl='onednn'); "
            "assert float(y[0, 2, 2, 0]) == 18.0; "
            "print('libdnnl' in open('/proc/self/maps').read() if "
            "__import__('sys').platform.startswith('linux') else False)")
    env = dict(os.environ, JCONV_DISABLE_ONEDNN="1", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- other ops
# conv_transpose is oneDNN's backward-data pass, per_map_conv its depthwise conv with the
# filters tiled over the maps, depth_sliding_conv a conv with the depth taps as channels.

OPS = {  # op: (x shape, w shape, keyword arguments), small and awkward
    "conv_transpose": ((2, 4, 3, 4), (3, 2, 2, 6),
                       dict(stride=(2, 1), padding=1, output_padding=(1, 0), groups=2)),
    "per_map_conv": ((2, 6, 5, 3), (3, 2, 2), dict(stride=(2, 1), padding_mode="reflect")),
    "depth_sliding_conv": ((2, 5, 4, 6), (3, 2, 3, 2), dict(stride=(2, 1, 1), padding="SAME")),
}


def op_fn(op, impl, **kwargs):
    return jax.jit(lambda x, w: getattr(jconv, op)(x, w, impl=impl, precision=HIGHEST, **kwargs))


def agree(op, x, w, **kwargs):
    """oneDNN's result equals the float64 reference and lax at HIGHEST."""
    try:
        jconv.output_shape(op, x.shape, w.shape, **kwargs)
    except ValueError:  # the drawn geometry is not a valid call
        return
    actual = op_fn(op, "onednn", **kwargs)(x, w)
    assert_close(actual, getattr(reference, op)(x, w, **kwargs), err_msg=str(kwargs))
    assert_close(actual, op_fn(op, "lax", **kwargs)(x, w), err_msg=str(kwargs))


@needs_onednn
@settings(max_examples=6, deadline=None)
@given(st.integers(1, 2), st.data(), st.integers(1, 2), st.integers(1, 2), st.integers(1, 2),
       st.integers(0, 2**16))
def test_conv_transpose_matches_lax_and_reference(nd, data, groups, cin, cout, seed):
    ints = lambda lo, hi: data.draw(st.tuples(*[st.integers(lo, hi)] * nd))
    stride, dilation = ints(1, 3), ints(1, 2)
    out_pad = tuple(data.draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    padding = data.draw(st.one_of(st.integers(0, 2), st.sampled_from(["SAME", "VALID"]),
                                  st.just(tuple(zip(ints(0, 2), ints(0, 2))))))
    x = array(seed, (2, *ints(1, 4), groups * cin))
    w = array(seed + 1, (*ints(1, 3), cin, groups * cout))
    agree("conv_transpose", x, w, stride=stride, padding=padding, output_padding=out_pad,
          dilation=dilation, groups=groups)


@needs_onednn
@settings(max_examples=5, deadline=None)
@given(geometries(nd=2), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**16))
def test_per_map_conv_matches_lax_and_reference(geometry, c, k, seed):
    sizes, kernel, kwargs = split(geometry)
    agree("per_map_conv", array(seed, (1, *sizes, c)), array(seed + 1, (*kernel, k)), **kwargs)


@needs_onednn
@settings(max_examples=4, deadline=None)
@given(geometries(nd=2, extra_axes=1), st.integers(1, 2),
       st.integers(0, 2**16))
def test_depth_sliding_conv_matches_lax_and_reference(geometry, k, seed):
    (c, *sizes), kernel, kwargs = split(geometry)  # the map axis is the window's first
    agree("depth_sliding_conv", array(seed, (2, *sizes, c)), array(seed + 1, (*kernel, k)),
          **kwargs)


@needs_onednn
def test_depth_sliding_conv_of_volumes_has_four_window_axes():
    x, w = array(0, (1, 4, 3, 3, 5)), array(1, (2, 2, 1, 2, 3))  # (N, D, H, W, C)
    agree("depth_sliding_conv", x, w, stride=(2, 1, 1, 2), padding=1, padding_mode="edge")


@needs_onednn
@pytest.mark.parametrize("op", OPS)
def test_grads_of_other_ops_run_onednn_and_are_right(op):
    xs, ws, kwargs = OPS[op]
    x, w = jnp.asarray(array(0, xs)), jnp.asarray(array(1, ws))
    f = op_fn(op, "onednn", **kwargs)
    forward = "jconv_onednn_bwd_data" if op == "conv_transpose" else "jconv_onednn_fwd"
    assert ran(hlo(f, x, w)) == {forward}
    loss = lambda x, w: jnp.sum(jnp.tanh(f(x, w)))
    assert ran(hlo(jax.grad(loss, (0, 1)), x, w)) == set(TARGETS)
    check_grads(f, (x, w), order=1, modes=("fwd", "rev"),
                **tolerance("float32", kind="grad"))


@needs_onednn
@pytest.mark.parametrize("op", OPS)
def test_vmap_of_other_ops_matches_lax(op):
    xs, ws, kwargs = OPS[op]
    x, w = array(0, (2, *xs)), array(1, (2, *ws))
    for in_axes in [(0, None), (None, 0)]:
        args = [a if ax == 0 else a[0] for a, ax in zip((x, w), in_axes)]
        got = jax.vmap(op_fn(op, "onednn", **kwargs), in_axes)(*args)
        assert_close(got, jax.vmap(op_fn(op, "lax", **kwargs), in_axes)(*args))


@needs_onednn
@pytest.mark.parametrize("op", OPS)
def test_other_ops_in_bfloat16(op):
    xs, ws, kwargs = OPS[op]
    xb, wb = jnp.asarray(array(0, xs), jnp.bfloat16), jnp.asarray(array(1, ws), jnp.bfloat16)
    f = op_fn(op, "onednn", **kwargs)
    assert f(xb, wb).dtype == jnp.bfloat16
    x32, w32 = np.asarray(xb, np.float32), np.asarray(wb, np.float32)
    assert_close(f(xb, wb), getattr(reference, op)(x32, w32, **kwargs), dtype="bfloat16")
    loss = lambda a, b: jnp.sum(f(a, b).astype(jnp.float32) ** 2)
    grads = jax.jit(jax.grad(loss, (0, 1)))(xb, wb)
    want = jax.jit(jax.grad(loss, (0, 1)))(jnp.asarray(x32), jnp.asarray(w32))  # checked above
    for got, exact in zip(grads, want):
        assert got.dtype == jnp.bfloat16
        assert_close(got, exact, dtype="bfloat16")


@pytest.mark.parametrize("op", OPS)
def test_other_ops_in_float64_run_lax_and_say_why(op):
    xs, ws, kwargs = OPS[op]
    choice = jconv.which_impl(op, xs, ws, impl="onednn", dtype="float64", **kwargs)
    assert choice.impl == "lax" and "not float64" in choice.reason
    with jax.enable_x64(True):
        x, w = array(0, xs, np.float64), array(1, ws, np.float64)
        y = op_fn(op, "onednn", **kwargs)(jnp.asarray(x), jnp.asarray(w))
        assert y.dtype == jnp.float64
        assert_close(y, getattr(reference, op)(x, w, **kwargs))
        assert hlo_scopes(op_fn(op, "onednn", **kwargs), x, w) == {(op, "lax")}


def test_conv_transpose_kernel_checks_its_output_size():
    x, w = jnp.ones((1, 3, 2), jnp.float32), jnp.ones((3, 2, 2), jnp.float32)
    with pytest.raises(ValueError, match=r"sizes=\(9,\); expected from \(7,\) up to"):
        onednn.conv_transpose(x, w, (2,), ((0, 0),), (1,), sizes=(9,))


@pytest.mark.parametrize("op", OPS)
def test_other_ops_disabled_by_environment_run_lax(op, monkeypatch):
    monkeypatch.setenv("JCONV_DISABLE_ONEDNN", "1")
    xs, ws, kwargs = OPS[op]
    choice = jconv.which_impl(op, xs, ws, impl="onednn", **kwargs)
    assert choice.impl == "lax" and "JCONV_DISABLE_ONEDNN=1" in choice.reason
    x, w = array(0, xs), array(1, ws)
    assert hlo_scopes(op_fn(op, "onednn", **kwargs), x, w) == {(op, "lax")}
