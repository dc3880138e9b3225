"""The registry: one description per op, read by every consumer."""

import jax
import jax.numpy as jnp
import pytest

import jconv
from jconv import testing
from jconv.ops import BUILTIN_OPS, registry


@pytest.mark.parametrize("op", BUILTIN_OPS)
def test_every_builtin_op_is_described(op):
    spec = registry.get(op)
    assert getattr(jconv, op) is spec.fn
    assert spec.impls[0] == "lax"
    assert spec.examples and spec.reference is not None and spec.cost is not None
    for shapes, kwargs in spec.examples:
        arrays = [s for s in shapes if isinstance(s, (tuple, list))]
        assert spec.plan(*shapes, **kwargs).out_shape == jconv.output_shape(op, *shapes,
                                                                            **kwargs)
        assert spec.cost(*shapes, **kwargs).output_shape == \
            spec.plan(*shapes, **kwargs).out_shape
        assert len(arrays) == 1 + len(spec.weights)


# check_grads' forward mode differentiates max-pooling's VJP; on GPU JAX warns that it
# uses reduced precision there (no pair-reductions in XLA:GPU).
@pytest.mark.slow  # every op's whole contract, every impl
@pytest.mark.filterwarnings("ignore:Using reduced precision for gradient of reduce-window")
@pytest.mark.parametrize("op", BUILTIN_OPS)
def test_check_op_passes_for_every_builtin_op(op):
    if jax.default_backend() == "gpu" and op == "conv_transpose":
        pytest.skip("XLA:GPU aborts compiling the float64 VJP of the scatter form "
                    "(tests/test_grads.py: GPU_F64_ABORTS)")
    examples = registry.get(op).examples[:1]  # the sweeps of test_ops_reference/test_grads cover more
    lines = testing.check_op(op, examples)
    assert len(lines) == 1 and lines[0].startswith(f"{op}: example 0 ")


def test_check_op_catches_a_wrong_kernel():
    spec = registry.get("pointwise_conv")

    def wrong(x, w, stride=1, groups=1, *, impl="auto", precision=None):
        y = spec.fn(x, w, stride, groups, impl=impl, precision=precision)
        return y + 1e-6 * (impl == "shift")  # one impl off by a little

    registry.register(registry.OpSpec("wrong_pointwise", wrong, spec.plan, spec.impls,
                                      examples=spec.examples, reference=spec.reference))
    try:
        with pytest.raises(AssertionError, match=r"wrong_pointwise\[shift\]"):
            testing.check_op("wrong_pointwise")
    finally:
        del registry.REGISTRY["wrong_pointwise"]


def test_register_refuses_bad_specs():
    spec = registry.get("conv")
    with pytest.raises(ValueError, match="register: spec.name='conv'"):
        registry.register(registry.OpSpec("conv", jnp.add, spec.plan, ("lax",)))
    with pytest.raises(ValueError, match=r"register: x.impls=\('fast',\)"):
        registry.OpSpec("x", jnp.add, spec.plan, ("fast",))
    with pytest.raises(ValueError, match="register: x.layer=None"):
        registry.OpSpec("x", jnp.add, spec.plan, ("lax",), variant="x")
    with pytest.raises(TypeError, match="register: spec='dict'"):
        registry.register({"name": "x"})
    with pytest.raises(ValueError, match=r"which_impl: op='nope'; expected one of \["):
        jconv.which_impl("nope", (1, 2, 2, 1))


def test_keywords_are_the_ops_arguments():
    assert registry.get("conv").keywords == ("stride", "padding", "dilation", "groups",
                                             "padding_mode")
    assert registry.get("separable_conv").keywords == ("stride", "padding", "dilation",
                                                       "padding_mode")
    assert registry.get("max_pool").keywords == ("window", "stride", "padding")
