"""``impl="auto"``: the rules, ``which_impl`` from shapes, and the kernel named in the HLO."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv
from jconv.ops import dispatch, registry
from jconv.ops.dispatch import RULES, Facts, which_impl
from jconv.testing import hlo_scopes
from tests.strategies import IMPLS

X = (2, 9, 9, 8)
ONEDNN = jconv.backends()["onednn"].available
CASES = [
    # (op, shapes, kwargs, backend, expected impl with oneDNN, expected without it)
    ("conv", ((8, 56, 56, 64), (3, 3, 64, 64)), {}, "cpu", "onednn", "lax"),
    ("conv", ((8, 14, 14, 96), (3, 3, 96, 96)), {}, "cpu", "onednn", "hybrid"),
    ("conv", ((8, 14, 14, 3), (3, 3, 3, 96)), {}, "cpu", "onednn", "lax"),
    ("conv", ((2, 14, 14, 96), (1, 1, 96, 96)), {}, "cpu", "shift", "hybrid"),
    ("conv", ((8, 14, 14, 96), (1, 1, 96, 96)), {}, "cpu", "onednn", "hybrid"),
    ("pointwise_conv", ((8, 7, 7, 64), (64, 64)), {}, "cpu", "shift", "shift"),
    ("pointwise_conv", ((16, 7, 7, 64), (64, 64)), {}, "cpu", "onednn", "shift"),
    ("conv", ((8, 28, 28, 96), (1, 1, 96, 96)), {}, "cpu", "onednn", "lax"),
    ("conv", ((8, 14, 14, 96), (3, 3, 96, 96)), {}, "gpu", "lax", "lax"),
    ("conv", ((8, 14, 14, 96), (3, 3, 48, 96)), dict(groups=2), "cpu", "onednn", "split"),
    ("conv", ((8, 14, 14, 96), (3, 3, 48, 96)), dict(groups=2), "gpu", "lax", "lax"),
    ("conv", ((8, 56, 56, 64), (3, 3, 1, 64)), dict(groups=64), "cpu", "onednn", "shift"),
    ("conv", ((8, 56, 56, 64), (3, 3, 1, 64)), dict(groups=64), "gpu", "lax", "lax"),
    ("local_conv", ((1, 6, 6, 32), (4, 4, 3, 3, 32, 4)), {}, "cpu", "patches_grad",
     "patches_grad"),
    ("local_conv", ((1, 6, 6, 32), (4, 4, 3, 3, 32, 4)), {}, "gpu", "lax", "lax"),
    ("depthwise_conv", ((1, 14, 14, 512), (3, 3, 1, 512)), {}, "cpu", "onednn", "shift"),
    ("depthwise_conv", ((1, 14, 14, 512), (3, 3, 1, 512)), {}, "gpu", "lax", "lax"),
    ("separable_conv", (X, (3, 3, 1, 8), (8, 16)), {}, "cpu", "onednn", "shift"),
    ("pointwise_conv", (X, (8, 16)), {}, "cpu", "shift", "shift"),
    ("pointwise_conv", ((2, 28, 28, 8), (8, 16)), {}, "cpu", "onednn", "shift"),
    ("pointwise_conv", (X, (4, 16)), dict(groups=2), "cpu", "onednn", "lax"),
    ("pointwise_conv", (X, (8, 16)), {}, "gpu", "lax", "lax"),
    ("spatially_separable_conv", (X, [(3, 1, 8, 4), (1, 3, 4, 8)]), {}, "cpu", "onednn",
     "hybrid"),
    ("per_map_conv", (X, (3, 3, 4)), {}, "cpu", "onednn_patches", "shift_fwd"),
    ("per_map_conv", ((1, 6, 8, 128), (5, 5, 128)), {}, "cpu", "onednn_gemm", "shift_fwd"),
    ("per_map_conv", ((1, 6, 8, 128), (5, 5, 127)), {}, "cpu", "onednn_patches", "shift_fwd"),
    ("per_map_conv", (X, (3, 3, 4)), {}, "gpu", "lax", "lax"),
    ("shared_filter_conv", (X, (3, 3, 4)), {}, "cpu", "sum_maps", "sum_maps"),
    ("shared_filter_conv", (X, (3, 3, 4)), {}, "gpu", "sum_maps", "sum_maps"),
    ("depth_sliding_conv", (X, (3, 3, 3, 2)), {}, "cpu", "onednn", "shift_fwd"),
    ("conv_transpose", ((2, 7, 7, 8), (3, 3, 8, 4)), dict(stride=2), "cpu", "hybrid", "hybrid"),
    ("conv_transpose", ((2, 14, 14, 8), (4, 4, 8, 4)), dict(stride=2, padding=1), "cpu",
     "onednn", "hybrid"),
    ("conv_transpose", (X, (3, 3, 8, 4)), dict(stride=2), "gpu", "lax", "lax"),
    ("max_pool", (X, 3), dict(stride=2), "cpu", "onednn", "shift"),
    ("max_pool", (X, 3), dict(stride=2), "gpu", "lax", "lax"),
    ("avg_pool", (X, 3), {}, "cpu", "shift", "shift"),
    ("avg_pool", ((1, 7, 7, 8), 7), {}, "cpu", "lax", "lax"),
    ("local_response_norm", (X,), {}, "cpu", "lax", "lax"),
    ("global_avg_pool", (X,), {}, "cpu", "lax", "lax"),
]


@pytest.mark.parametrize("op, shapes, kwargs, backend, with_onednn, without", CASES,
                         ids=[f"{c[0]}-{c[3]}-{c[4]}-{c[5]}" for c in CASES])
def test_auto_follows_rules(op, shapes, kwargs, backend, with_onednn, without, monkeypatch):
    """What ``auto`` picks where oneDNN runs (if it does here), and with it turned off."""
    if ONEDNN:
        choice = which_impl(op, *shapes, backend=backend, **kwargs)
        assert choice.impl == with_onednn, choice
        assert choice.reason
        float64 = which_impl(op, *shapes, backend=backend, dtype="float64", **kwargs)
        assert float64.impl == without, float64
    monkeypatch.setenv("JCONV_DISABLE_ONEDNN", "1")
    choice = which_impl(op, *shapes, backend=backend, **kwargs)
    assert choice.impl == without, choice
    assert choice.reason


def test_onednn_rules_step_aside_without_onednn():
    """Every oneDNN rule asks :attr:`Facts.onednn`: with it False none of them matches."""
    for rule in dispatch.ONEDNN_RULES:
        for facts in (Facts("cpu", 4, 1, 9, 100), Facts("cpu", 1, 8, 1, 49),
                      Facts("cpu", 1, 64, 9, 3136)):
            assert not rule.when(facts), rule.reason


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.impl)
def test_every_rule_names_an_impl_its_ops_have(rule):
    assert set(rule.backends) <= set(dispatch.BACKENDS)
    for op in rule.ops:
        assert rule.impl in IMPLS[op], (op, rule.impl)


def test_first_matching_rule_wins():
    for op in IMPLS:
        for backend in dispatch.BACKENDS:
            facts = Facts(backend, 4, 1)
            matching = [r for r in RULES if backend in r.backends and op in r.ops
                        and r.when(facts)]
            expected = matching[0].impl if matching else IMPLS[op][0]
            assert dispatch.decide(op, facts).impl == expected


def test_gpu_has_no_rule_without_a_gpu_measurement():
    gpu_ops = {op for r in RULES if "gpu" in r.backends for op in r.ops}
    assert gpu_ops <= {"shared_filter_conv"}, gpu_ops


@pytest.mark.parametrize("name", sorted(registry.IMPLS))
def test_reason_says_what_runs_in_each_pass(name):
    """One meaning per name: the reason spells out the forward and both gradient kernels."""
    impl = registry.IMPLS[name]
    ops = [op for op, impls in IMPLS.items() if name in impls]
    assert ops, f"no op has impl {name!r}"
    for op in ops:
        spec = registry.get(op)
        shapes, kwargs = spec.examples[0]
        reason = which_impl(op, *shapes, impl=name, **kwargs).reason
        assert f"Forward: {impl.forward} (" in reason
        assert f"input gradient: {impl.input_grad} (" in reason
        assert (f"weight gradient: {impl.weight_grad} (" in reason) == bool(spec.weights)


def test_which_impl_for_the_demo_shape_is_what_conv_runs():
    """The disagreement this design removes: what which_impl says is what the HLO names."""
    x, w = jnp.ones((1, 14, 14, 96)), jnp.ones((3, 3, 96, 96))
    assert which_impl("conv", x.shape, w.shape, backend="cpu").impl == (
        "onednn" if ONEDNN else "hybrid")
    choice = which_impl("conv", x.shape, w.shape)  # this machine's backend
    assert hlo_scopes(jconv.conv, x, w) == {("conv", choice.impl)}


SWEEP = [(op, i, shapes, kwargs) for op in sorted(IMPLS)
         for i, (shapes, kwargs) in enumerate(registry.get(op).examples)]


@pytest.mark.parametrize("op, i, shapes, kwargs", SWEEP,
                         ids=[f"{s[0]}-{s[1]}" for s in SWEEP])
def test_hlo_scope_equals_which_impl(op, i, shapes, kwargs):
    """For every op, example and impl (``auto`` included), the HLO names what which_impl says."""
    spec = registry.get(op)
    rng = np.random.default_rng(i)

    def arrays(shape):
        if isinstance(shape, list):
            return [arrays(s) for s in shape]
        return jnp.asarray(rng.standard_normal(shape), jnp.float32)

    args = [arrays(s) if isinstance(s, (tuple, list)) else s for s in shapes]
    arrays_ = [a for a, s in zip(args, shapes) if isinstance(s, (tuple, list))]
    statics = [a for a, s in zip(args, shapes) if not isinstance(s, (tuple, list))]
    for impl in ("auto", *spec.impls):
        expected = which_impl(op, *shapes, impl=impl, **kwargs).impl
        found = hlo_scopes(lambda *a: spec.fn(*a, *statics, impl=impl, **kwargs), *arrays_)
        assert found == {(op, expected)}, (impl, found)


def test_which_impl_checks_like_the_op():
    with pytest.raises(ValueError, match="which_impl: op='no_op'"):
        which_impl("no_op", (1, 4, 4, 1))
    with pytest.raises(ValueError, match="which_impl: backend='abacus'"):
        which_impl("conv", (1, 4, 4, 1), (3, 3, 1, 1), backend="abacus")
    with pytest.raises(ValueError, match=r"conv: groups=3; expected a divisor"):
        which_impl("conv", (1, 4, 4, 4), (3, 3, 1, 4), groups=3)
    with pytest.raises(ValueError, match="conv: impl='fast'"):
        which_impl("conv", (1, 4, 4, 1), (3, 3, 1, 1), impl="fast")


REFUSED = [  # (op, positional arguments as shapes, dtype): calls the op refuses
    ("conv", ((1, 6, 6, 4), (3, 3, 4, 4)), "int8"),
    ("conv", ((1, 6, 6, 4), (3, 3, 4, 4)), "complex64"),
    ("max_pool", ((1, 6, 6, 4), 2), "int32"),
    ("local_response_norm", ((1, 6, 6, 4),), "bool"),
    ("spatially_separable_conv", ((1, 6, 6, 4), [(3, 1, 4, 4), (1, 3, 4, 4)]), "uint8"),
    ("pointwise_conv", ((1, 6, 6, 4), (3, 3, 4, 4)), "float32"),
    ("separable_conv", ((1, 6, 6, 4), (3, 3, 1, 4), (3, 4, 4)), "float32"),
    ("conv", ((1, 6, 6, 4), (3, 3, 3, 4)), "float32"),
]


@pytest.mark.parametrize("op, shapes, dtype", REFUSED, ids=lambda v: str(v))
def test_which_impl_refuses_what_the_op_refuses_with_its_message(op, shapes, dtype):
    def arg(s):
        if isinstance(s, list):
            return [arg(t) for t in s]
        return jnp.zeros(s, dtype) if isinstance(s, tuple) else s

    with pytest.raises((TypeError, ValueError)) as by_op:
        registry.get(op).fn(*map(arg, shapes))
    with pytest.raises(by_op.type) as by_which_impl:
        which_impl(op, *shapes, dtype=dtype)
    assert str(by_which_impl.value) == str(by_op.value)
