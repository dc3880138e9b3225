"""Checks any registered op the way the test suite checks the built-in ones.

:func:`check_op` runs every implementation of an op on its registered examples
(:attr:`~jconv.ops.registry.OpSpec.examples`, or the ones given) and checks, in
float64:

* the value against the op's NumPy reference (``OpSpec.reference``);
* every implementation's value and VJP against the first implementation's;
* the gradients against finite differences (``jax.test_util.check_grads``, forward and
  reverse mode) in every array argument;
* that ``auto`` runs what :func:`jconv.which_impl` says.

A variant added in one file (``examples/custom_variant.py``) gets these checks by
calling it.

>>> from jconv import testing
>>> testing.check_op("pointwise_conv")   # doctest: +ELLIPSIS
['pointwise_conv: example 0 ...
"""

from __future__ import annotations

import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.test_util import check_grads

from jconv.ops import dispatch, registry

# float64 tolerances: values at HIGHEST against the reference, and finite differences.
VALUE_TOL = 1e-10
GRAD_TOL = 1e-5


def _arrays(shape, rng):
    if isinstance(shape, list):
        return [_arrays(s, rng) for s in shape]
    return rng.standard_normal(shape)


def _is_shape(value) -> bool:
    return isinstance(value, (tuple, list))


def _assert_close(name, actual, expected, tol):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {actual.shape}, expected {expected.shape}")
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=name)


def hlo_scopes(fn, *args) -> set[tuple[str, str]]:
    """The ``(op, impl)`` pairs of the ``op[impl]`` scopes in the HLO that ``jit(fn)`` hands XLA.

    The HLO is the lowered program's, with its metadata: an executable that JAX's persistent
    compilation cache returns may carry the names of another program that compiled to the same
    code (the cache's key leaves the metadata out).

    >>> import jax.numpy as jnp, jconv
    >>> x, w = jnp.ones((1, 14, 14, 96)), jnp.ones((3, 3, 96, 96))
    >>> ran = hlo_scopes(jconv.conv, x, w)    # {('conv', 'onednn')} on CPU with oneDNN
    >>> ran == {("conv", jconv.which_impl("conv", x.shape, w.shape).impl)}
    True
    """
    hlo = jax.jit(fn).lower(*args).as_text(dialect="hlo", debug_info=True)
    names = "|".join(re.escape(op) for op in sorted(registry.REGISTRY, key=len, reverse=True))
    return set(re.findall(rf'op_name="[^"]*?\b({names})\[([a-z_]+)\]', hlo))


def check_op(op: str, examples=None, *, seed: int = 0) -> list[str]:
    """Checks every implementation of ``op``; raises ``AssertionError`` on the first failure.

    Args:
      op: a registered op name.
      examples: ``(shapes, kwargs)`` pairs; default the spec's ``examples``. A shape is a
        tuple (a list of tuples for a list argument); other entries (a pool's window)
        are passed as they are.
      seed: for the random arrays.

    Returns:
      one line per example saying what was checked.
    """
    spec = registry.get(op, "check_op")
    examples = spec.examples if examples is None else examples
    if not examples:
        raise ValueError(f"check_op: {op} has no examples; pass examples=[(shapes, kwargs)]")
    rng = np.random.default_rng(seed)
    takes = "precision" in inspect.signature(spec.fn).parameters
    precision = {"precision": lax.Precision.HIGHEST} if takes else {}
    lines = []
    with jax.enable_x64(True):
        for i, (shapes, kwargs) in enumerate(examples):
            values = [_arrays(s, rng) if _is_shape(s) else s for s in shapes]
            is_array = [_is_shape(s) for s in shapes]
            arrays = [jnp.asarray(v) if not isinstance(v, list) else [jnp.asarray(a) for a in v]
                      for v, a in zip(values, is_array) if a]
            statics = [v for v, a in zip(values, is_array) if not a]

            def call(*arrays_, impl):
                return spec.fn(*arrays_, *statics, impl=impl, **precision, **kwargs)

            first, dy = None, None
            for impl in spec.impls:
                fn = jax.jit(lambda *a, impl=impl: call(*a, impl=impl))
                y, vjp = jax.vjp(fn, *arrays)
                name = f"{op}[{impl}] example {i}"
                if spec.reference is not None:
                    _assert_close(name, y, spec.reference(*values, **kwargs), VALUE_TOL)
                dy = jnp.asarray(rng.standard_normal(y.shape)) if dy is None else dy
                grads = vjp(dy)
                if first is None:
                    first = (y, grads)
                else:
                    _assert_close(name, y, first[0], VALUE_TOL)
                    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(first[1])):
                        _assert_close(f"{name} VJP", got, want, VALUE_TOL)
                check_grads(fn, tuple(arrays), order=1, modes=("fwd", "rev"), atol=GRAD_TOL,
                            rtol=GRAD_TOL)
            dtype = jax.tree.leaves(arrays)[0].dtype  # float64 runs no oneDNN kernel
            auto = dispatch.which_impl(op, *shapes, dtype=dtype, **kwargs).impl
            ran = hlo_scopes(lambda *a: call(*a, impl="auto"), *arrays)
            if ran != {(op, auto)}:
                raise AssertionError(f"{op} example {i}: auto ran {ran}, which_impl says {auto}")
            lines.append(f"{op}: example {i} {shapes} {kwargs}: {', '.join(spec.impls)} equal"
                         f"{' the reference' if spec.reference else ''}, gradients checked; "
                         f"auto runs {auto}")
    return lines
