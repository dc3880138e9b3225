"""The jitted JAX function each (case, implementation, pass) times, and its arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jconv
from jconv.ops import registry
from experiments.bench.cases import NAIVE, POOLS, TRAIN_STEP, Case, call


def random_arrays(shape_list, seed) -> list:
    """Standard normal float32 arrays; the weights (every array after the first) scaled by
    ``1/sqrt(fan-in)``. Drawn by NumPy: ``jax.random`` would compile a sampler for every
    new shape, seconds each on a small CPU."""
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(s, np.float32)
                        / np.float32(np.sqrt(np.prod(s[:-1]) if i else 1.0)))
            for i, s in enumerate(shape_list)]


def _block(impl, x, wd, wp):
    """The MobileNet block: depthwise 3×3 → ReLU → pointwise → ReLU."""
    h = jax.nn.relu(jconv.depthwise_conv(x, wd, impl=impl))
    return jax.nn.relu(jconv.pointwise_conv(h, wp, impl={"patches": "shift"}.get(impl, impl)))


def _per_map_naive(x, w):
    """Type 1 as frameworks would write it: a lax depthwise conv with the filters tiled."""
    c = x.shape[-1]
    tiled = jnp.tile(w[..., None, :], (1, 1, c, 1))  # (kh, kw, C, K)
    return jconv.depthwise_conv(x, tiled.reshape(*w.shape[:-1], 1, -1), impl="lax")


def jax_fn(case: Case, impl: str, pass_: str, n_arrays: int):
    """The jitted function of the pass: ``fwd`` the op's output; ``fwd_bwd`` the output
    and its vector-Jacobian product (with respect to the input alone for pooling and LRN)
    with the cotangent passed last; the training step's updated parameters."""
    if impl == NAIVE:
        def forward(*arrays):
            return call(case, lambda x, w, **kw: _per_map_naive(x, w), arrays)
    elif case.name == TRAIN_STEP:
        def forward(*arrays):
            return _block(impl, *arrays)
    else:
        def forward(*arrays):
            return call(case, registry.get(case.op).fn, arrays, impl=impl)
    if pass_ == "fwd":
        return jax.jit(forward)
    n_grad = 1 if case.op in POOLS else n_arrays
    if case.name == TRAIN_STEP:
        def step(x, *params):
            grads = jax.grad(lambda *a: jnp.sum(forward(*a)), argnums=range(1, n_arrays))(
                x, *params)
            return tuple(p - 0.01 * g for p, g in zip(params, grads))
        return jax.jit(step)

    def forward_backward(*arrays_and_cotangent):
        *arrays, dy = arrays_and_cotangent
        y, vjp = jax.vjp(lambda *a: forward(*a, *arrays[n_grad:]), *arrays[:n_grad])
        return y, vjp(dy)
    return jax.jit(forward_backward)


def call_arrays(case: Case, impl: str, pass_: str, arrays) -> list:
    """The arguments of :func:`jax_fn`'s function: a ``fwd_bwd`` pass also takes the
    cotangent, a fixed random array passed in (not built in the graph, where XLA could
    fold or recompute it)."""
    if pass_ == "fwd" or case.name == TRAIN_STEP:
        return list(arrays)
    out = jax.eval_shape(jax_fn(case, impl, "fwd", len(arrays)), *arrays)
    dy = jnp.asarray(np.random.default_rng(1).standard_normal(out.shape, np.float32), out.dtype)
    return [*arrays, dy]
