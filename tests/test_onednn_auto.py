"""oneDNN as ``auto``'s pick on CPU: what it runs, on several devices, and its threads.

``tests/test_dispatch.py`` checks which rule picks what, with oneDNN and without it;
here the picked kernel runs: in the compiled program, split along the batch by XLA's
partitioner in a jit over several devices (convolutions, pooling and LRN), and with
OpenMP threads that sleep while they wait. Skipped, saying why, where oneDNN is unavailable.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import jconv
from jconv.testing import hlo_scopes
from tests.strategies import array
from tests.tolerance import assert_close

REPO = Path(__file__).resolve().parents[1]
STATUS = jconv.backends()["onednn"]
pytestmark = pytest.mark.skipif(not STATUS.available,
                                reason=f"oneDNN unavailable: {STATUS.reason}")


def _run(code: str, devices: int = 1, **env) -> str:
    """``code`` in a fresh CPU process with ``devices`` devices; its stdout."""
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", **env)
    env["XLA_FLAGS"] = " ".join([*(f for f in env.get("XLA_FLAGS", "").split()
                                   if "force_host_platform_device_count" not in f),
                                 f"--xla_force_host_platform_device_count={devices}"])
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout


@pytest.mark.slow  # another process
def test_auto_runs_onednn_for_convs_on_cpu():
    x, w = jnp.asarray(array(0, (2, 9, 9, 8))), jnp.asarray(array(1, (3, 3, 8, 16)))
    for fn, shapes in [(jconv.conv, (x.shape, w.shape)),
                       (lambda x, w: jconv.conv(x, w[:, :, :4], groups=2),
                        (x.shape, (3, 3, 4, 16)))]:
        op = "conv"
        kwargs = {} if fn is jconv.conv else dict(groups=2)
        assert jconv.which_impl(op, *shapes, **kwargs).impl == "onednn"
        assert hlo_scopes(fn, x, w) == {(op, "onednn")}
    assert_close(jconv.conv(x, w), jconv.conv(x, w, impl="lax"))


SHARDED = """
import json, re
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jconv
mesh = Mesh(np.array(jax.devices()), ("batch",))
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((8, 10, 10, 6)), jnp.float32)
w = jnp.asarray(rng.standard_normal((3, 3, 3, 8)), jnp.float32)
loss = lambda impl: lambda x, w: jnp.sum(jnp.tanh(jconv.conv(x, w, groups=2, impl=impl)))
step = jax.jit(jax.grad(loss("auto"), argnums=(0, 1)))
xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
ws = jax.device_put(w, NamedSharding(mesh, P()))
dx, dw = step(xs, ws)
ex, ew = jax.jit(jax.grad(loss("lax"), argnums=(0, 1)))(x, w)
hlo = step.lower(xs, ws).compile().as_text()
print(json.dumps(dict(
    calls=sorted(set(re.findall(r'custom_call_target="(jconv_onednn_\\w+)"', hlo))),
    all_gather="all-gather" in hlo, all_reduce="all-reduce" in hlo,
    dx_spec=list(dx.sharding.spec), dw_spec=list(dw.sharding.spec),
    dx_err=float(jnp.max(jnp.abs(dx - ex))), dw_err=float(jnp.max(jnp.abs(dw - ew))))))
"""


@pytest.mark.slow  # another process
def test_a_jit_over_four_devices_splits_every_pass_along_the_batch():
    """Forward and backward-data run on each device's rows; backward-weights sums the
    devices' partial gradients (one all-reduce); nothing gathers the batch."""
    out = json.loads(_run(SHARDED, devices=4).strip().splitlines()[-1])
    assert out["calls"] == ["jconv_onednn_bwd_data", "jconv_onednn_bwd_weights",
                            "jconv_onednn_fwd"]
    assert not out["all_gather"] and out["all_reduce"]
    assert out["dx_spec"] == ["batch"] and not any(out["dw_spec"])
    assert out["dx_err"] < 1e-4 and out["dw_err"] < 1e-3, out


POOL_SHARDED = """
import json, re
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jconv
mesh = Mesh(np.array(jax.devices()), ("batch",))
x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 9, 9, 6)), jnp.float32)
def net(impl):
    def f(x):
        y = jconv.max_pool(x, 3, stride=2, padding=1, impl=impl)
        y = jconv.local_response_norm(y, size=3, k=1.0, alpha=0.05, impl=impl)
        return jconv.avg_pool(y, 2, padding=1, count_include_pad=False, impl=impl)
    return f
loss = lambda impl: lambda x: jnp.sum(jnp.sin(net(impl)(x)))
step, fwd = jax.jit(jax.grad(loss("onednn"))), jax.jit(net("onednn"))
xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
dx, y = step(xs), fwd(xs)
hlo = step.lower(xs).compile().as_text() + fwd.lower(xs).compile().as_text()
print(json.dumps(dict(
    calls=sorted(set(re.findall(r'custom_call_target="jconv_onednn_(\\w+)"', hlo))),
    all_gather="all-gather" in hlo, all_to_all="all-to-all" in hlo,
    dx_spec=list(dx.sharding.spec), y_spec=list(y.sharding.spec),
    y_err=float(jnp.max(jnp.abs(y - net("lax")(x)))),
    dx_err=float(jnp.max(jnp.abs(dx - jax.grad(loss("lax"))(x)))))))
"""


@pytest.mark.slow  # another process
def test_a_jit_over_four_devices_splits_pooling_and_lrn_along_the_batch():
    """Max and average pooling and LRN, forward and backward, run on each device's rows:
    nothing gathers the batch, the results stay split, and they equal lax's."""
    out = json.loads(_run(POOL_SHARDED, devices=4).strip().splitlines()[-1])
    assert out["calls"] == ["avg_bwd", "avg_fwd", "lrn_bwd", "lrn_fwd", "max_bwd", "max_fwd"]
    assert not out["all_gather"] and not out["all_to_all"]
    assert out["dx_spec"] == ["batch"] and out["y_spec"] == ["batch"]
    assert out["y_err"] < 1e-5 and out["dx_err"] < 1e-5, out


WAIT = ("import os, jconv; b = jconv.backends()['onednn']; "
        "print(os.environ.get('OMP_WAIT_POLICY'), '|', b.reason)")


@pytest.mark.slow  # another process
def test_openmp_threads_sleep_unless_told_otherwise():
    unset = "import os; [os.environ.pop(v, None) for v in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')]"
    policy, reason = _run(f"{unset}; {WAIT}").split(" | ")
    assert policy == "PASSIVE" and "OMP_WAIT_POLICY=PASSIVE" in reason
    policy, reason = _run(f"{unset}; os.environ['OMP_WAIT_POLICY'] = 'active'; {WAIT}").split(" | ")
    assert policy == "active" and "OMP_WAIT_POLICY=active says" in reason


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("in_axes", [(None, 3), (0, 0), (None, 0)])
def test_vmap_over_kernels_is_one_wider_call(groups, in_axes):
    """vmap over filters (the quadratic-cost experiment's ``filterwise``) or over (x, w)
    pairs: one oneDNN call per pass with more filters or more groups, no loop, equal to lax."""
    size = 3
    x = jnp.asarray(array(0, (2, 7, 7, 4)))
    w = jnp.asarray(array(1, (3, 3, 4 // groups, 6)))
    xs = x if in_axes[0] is None else jnp.stack([x * (i + 1) for i in range(size)])
    ws = jnp.stack([w * (i + 1) for i in range(size)], in_axes[1])

    def fn(impl):
        conv = lambda x, w: jconv.conv(x, w, stride=2, padding=1, groups=groups, impl=impl)
        loss = lambda x, w: jnp.sum(jnp.sin(conv(x, w)))
        return jax.jit(jax.vmap(lambda x, w: (conv(x, w), jax.grad(loss, (0, 1))(x, w)),
                                in_axes=in_axes))
    got, want = fn("onednn")(xs, ws), fn("lax")(xs, ws)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert_close(g, e, kind="grad")
    hlo = fn("onednn").lower(xs, ws).compile().as_text()
    assert "while" not in hlo and " convolution(" not in hlo
    assert hlo.count('custom_call_target="jconv_onednn_') == 3


def test_disabled_context_lets_xla_count_the_flops():
    """XLA's cost analysis sees nothing inside oneDNN's calls; ``measure.counting()`` traces
    the same call with XLA's kernels (oneDNN off), whose count is the cost model's."""
    from jconv.kernels import lax_nans
    from jconv.measure import counting, xla_flops
    shapes = (2, 8, 8, 4), (3, 3, 4, 8)
    args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
    fn = lambda x, w: jconv.conv(x, w, padding="VALID")
    assert jconv.which_impl("conv", *shapes, padding="VALID").impl == "onednn"
    with lax_nans.left_out():  # the kernel alone, without the NaN masks' cond
        opaque = xla_flops(jax.jit(fn).lower(*args).compile())
    with counting():
        impl = jconv.which_impl("conv", *shapes, padding="VALID").impl
        counted = xla_flops(jax.jit(lambda *a: fn(*a)).lower(*args).compile())  # not cached
    assert impl != "onednn"
    assert counted == jconv.cost.xla_cost("conv", *shapes, impl=impl, padding="VALID")
    assert counted >= jconv.cost.conv(*shapes, padding="VALID").macs
    assert opaque is None or opaque < counted / 10
    assert jconv.backends()["onednn"].available  # on again after the block
