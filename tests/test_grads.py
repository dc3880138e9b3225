"""Gradients of every public op, every implementation, every array argument.

* ``check_grads`` (forward and reverse mode, order 1) in float64 against finite
  differences, one array argument at a time, the others held fixed;
* the gradients of every non-``lax`` kernel equal those of ``lax`` in float32 at
  ``Precision.HIGHEST``.

One table, :data:`OPS`, drives both (and ``tests/test_kernels.py``' jit test): each row is
an op name, a builder of its array arguments and its keyword arguments, chosen small but
with non-trivial stride / dilation / groups / padding, and a non-zeros ``padding_mode``
for the conv ops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

import jconv
from tests.strategies import IMPLS
from tests.tolerance import assert_close, tolerance

HIGHEST = lax.Precision.HIGHEST


def _normal(rng, *shape):
    return rng.standard_normal(shape)


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the ops table.

    ``build(rng)`` returns the op's positional array arguments as float64 NumPy arrays
    (``spatially_separable_conv`` takes a list of kernels as one argument);
    ``precision``: whether the op takes a ``precision=`` keyword.
    """

    id: str
    op: str
    build: Callable[[np.random.Generator], tuple]
    kwargs: dict
    precision: bool = True

    def args(self, dtype, seed=0):
        return jax.tree.map(lambda a: jnp.asarray(a, dtype),
                            self.build(np.random.default_rng(seed)))

    def fn(self, impl, **extra):
        op = getattr(jconv, self.op)
        kwargs = dict(self.kwargs, impl=impl, **extra)
        if self.precision:
            kwargs.setdefault("precision", HIGHEST)
        return lambda *args: op(*args, **kwargs)



OPS: tuple[Case, ...] = (
    Case("conv", "conv",
         lambda r: (_normal(r, 1, 5, 5, 4), _normal(r, 3, 2, 2, 4)),
         dict(stride=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2)),
    Case("conv-reflect", "conv",
         lambda r: (_normal(r, 2, 5, 5, 3), _normal(r, 3, 2, 3, 2)),
         dict(stride=2, padding="SAME", dilation=(2, 1), padding_mode="reflect")),
    Case("depthwise_conv", "depthwise_conv",
         lambda r: (_normal(r, 1, 5, 5, 2), _normal(r, 2, 3, 1, 4)),
         dict(stride=(1, 2), padding="SAME", dilation=2, padding_mode="circular")),
    Case("pointwise_conv", "pointwise_conv",
         lambda r: (_normal(r, 2, 5, 5, 4), _normal(r, 2, 6)),
         dict(stride=2, groups=2)),
    Case("separable_conv", "separable_conv",
         lambda r: (_normal(r, 1, 5, 5, 3), _normal(r, 2, 3, 1, 6), _normal(r, 6, 4)),
         dict(stride=2, padding=1, dilation=(1, 2), padding_mode="edge")),
    Case("spatially_separable_conv", "spatially_separable_conv",
         lambda r: (_normal(r, 1, 5, 5, 3), [_normal(r, 3, 1, 3, 2), _normal(r, 1, 3, 2, 4)]),
         dict(stride=(2, 1), padding="SAME", dilation=(1, 2), padding_mode="reflect")),
    Case("per_map_conv", "per_map_conv",
         lambda r: (_normal(r, 1, 5, 5, 2), _normal(r, 3, 2, 3)),
         dict(stride=2, padding="SAME", dilation=(2, 1), padding_mode="circular")),
    Case("shared_filter_conv", "shared_filter_conv",
         lambda r: (_normal(r, 2, 5, 5, 3), _normal(r, 2, 3, 2)),
         dict(stride=(1, 2), padding=((2, 0), (1, 1)), padding_mode="edge")),
    Case("conv_transpose", "conv_transpose",
         lambda r: (_normal(r, 1, 3, 4, 4), _normal(r, 3, 2, 2, 4)),
         dict(stride=2, padding=1, output_padding=(1, 0), dilation=(1, 2), groups=2)),
    Case("local_conv", "local_conv",
         lambda r: (_normal(r, 1, 5, 5, 2), _normal(r, 3, 2, 3, 2, 2, 3)),
         dict(stride=2, padding=((1, 1), (0, 1)), dilation=(1, 2), padding_mode="reflect")),
    Case("depth_sliding_conv", "depth_sliding_conv",
         lambda r: (_normal(r, 1, 4, 5, 4), _normal(r, 2, 3, 2, 2)),
         dict(stride=(1, 2, 1), padding="SAME", dilation=(2, 1, 2), padding_mode="edge")),
    Case("max_pool", "max_pool",
         lambda r: (_normal(r, 1, 5, 5, 2),),
         dict(window=3, stride=2, padding="SAME"), precision=False),
    Case("avg_pool", "avg_pool",
         lambda r: (_normal(r, 1, 5, 5, 2),),
         dict(window=(2, 3), stride=(1, 2), padding=((0, 1), (1, 1))), precision=False),
    Case("avg_pool-exclude-pad", "avg_pool",
         lambda r: (_normal(r, 1, 5, 5, 2),),
         dict(window=(2, 3), stride=(1, 2), padding=((0, 1), (1, 1)), count_include_pad=False),
         precision=False),
    Case("global_avg_pool", "global_avg_pool",
         lambda r: (_normal(r, 2, 3, 4, 3),), {}, precision=False),
    Case("channel_max_pool", "channel_max_pool",
         lambda r: (_normal(r, 1, 3, 3, 7),),
         dict(group_size=3, stride=2), precision=False),
    Case("local_response_norm", "local_response_norm",
         lambda r: (_normal(r, 1, 2, 3, 6),),
         dict(size=4, k=1.0, alpha=0.3, beta=0.75)),
)

# Every public op of the dispatch table has a row.
assert {c.op for c in OPS} == set(IMPLS), set(IMPLS) ^ {c.op for c in OPS}

OP_IMPLS = [pytest.param(c, impl, id=f"{c.id}-{impl}")
            for c in OPS for impl in IMPLS[c.op]]
NON_LAX = [pytest.param(c, impl, id=f"{c.id}-{impl}")
           for c in OPS for impl in IMPLS[c.op] if impl != "lax"]


# XLA:GPU aborts compiling the float64 VJP of the scatter form of conv_transpose
# ("triton_tiling_propagation.cc: Check failed: subdim_size_accumulator == dim_size");
# float32 compiles, and impl="auto" picks lax on GPU.
# The hybrid and polyphase kernels take their weight gradient from the scatter form.
GPU_F64_ABORTS = {("conv_transpose", impl) for impl in ("shift", "hybrid", "phases")}


# check_grads' forward mode differentiates max-pooling's VJP; on GPU JAX warns that it
# uses reduced precision there (no pair-reductions in XLA:GPU).
@pytest.mark.slow  # float64 numerical gradients of every op and impl
@pytest.mark.filterwarnings("ignore:Using reduced precision for gradient of reduce-window")
@pytest.mark.parametrize("case, impl", OP_IMPLS)
def test_check_grads_float64(case, impl):
    if jax.default_backend() == "gpu" and (case.op, impl) in GPU_F64_ABORTS:
        pytest.skip("XLA:GPU compiler abort on this float64 VJP")
    with jax.enable_x64(True):
        args = case.args(jnp.float64)
        f = jax.jit(case.fn(impl))  # one compiled function per transformation
        assert f(*args).dtype == jnp.float64
        check_grads(f, args, order=1, modes=("fwd", "rev"), **tolerance("float64", kind="grad"))
    assert not jax.config.jax_enable_x64, "x64 leaked out of the test"


@pytest.mark.parametrize("case, impl", NON_LAX)
def test_grad_matches_lax_float32(case, impl):
    args = case.args(jnp.float32)
    y = case.fn("lax")(*args)
    cotangent = jnp.asarray(np.random.default_rng(1).standard_normal(y.shape), jnp.float32)
    argnums = tuple(range(len(args)))

    def grads(which):
        f = case.fn(which)
        return jax.grad(lambda *a: jnp.sum(f(*a) * cotangent), argnums=argnums)(*args)

    expected, actual = grads("lax"), grads(impl)
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
        assert a.dtype == jnp.float32
        assert_close(a, e, err_msg=f"{case.id} impl={impl}: gradient {jax.tree_util.keystr(path)}")
