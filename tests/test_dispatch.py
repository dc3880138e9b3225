"""``impl="auto"`` follows ``dispatch.RULES``: representative facts per backend; rules valid."""

import jax.numpy as jnp
import pytest

import jconv
from jconv.ops import dispatch
from jconv.ops.dispatch import IMPLS, RULES, which_impl

CASES = [
    # (op, facts, backend, expected impl)
    ("conv", dict(groups=1, channels_per_group=64), "cpu", "lax"),
    ("conv", dict(groups=1, channels_per_group=64, pixels=56 * 56), "cpu", "lax"),
    ("conv", dict(groups=1, channels_per_group=96, pixels=14 * 14), "cpu", "hybrid"),
    ("conv", dict(groups=1, channels_per_group=3, pixels=14 * 14), "cpu", "lax"),
    ("conv", dict(groups=1, channels_per_group=96, pixels=14 * 14), "gpu", "lax"),
    ("local_conv", dict(channels_per_group=32), "cpu", "hybrid"),
    ("local_conv", dict(channels_per_group=32), "gpu", "lax"),
    ("conv", dict(groups=2, channels_per_group=48), "cpu", "split"),
    ("conv", dict(groups=64, channels_per_group=1), "cpu", "einsum"),
    ("depthwise_conv", dict(groups=512, channels_per_group=1), "cpu", "einsum"),
    ("separable_conv", dict(groups=256, channels_per_group=1), "cpu", "einsum"),
    ("pointwise_conv", dict(groups=1, channels_per_group=128), "cpu", "einsum"),
    ("pointwise_conv", dict(groups=2, channels_per_group=64), "cpu", "lax"),
    ("spatially_separable_conv", dict(channels_per_group=128), "cpu", "hybrid"),
    ("per_map_conv", dict(channels_per_group=1), "cpu", "hybrid"),
    ("shared_filter_conv", dict(channels_per_group=64), "cpu", "einsum"),
    ("depth_sliding_conv", dict(channels_per_group=1), "cpu", "hybrid"),
    ("max_pool", dict(taps=9), "cpu", "einsum"),
    ("avg_pool", dict(taps=9), "cpu", "einsum"),
    ("avg_pool", dict(taps=49), "cpu", "lax"),
    ("max_pool", {}, "cpu", "lax"),
    ("max_pool", dict(taps=9), "gpu", "lax"),
    ("pointwise_conv", dict(groups=1, channels_per_group=128), "gpu", "lax"),
    ("local_response_norm", {}, "cpu", "lax"),
    ("conv", dict(groups=2, channels_per_group=48), "gpu", "lax"),
    ("conv", dict(groups=64, channels_per_group=1), "gpu", "lax"),
    ("depthwise_conv", dict(groups=512, channels_per_group=1), "gpu", "lax"),
    ("per_map_conv", dict(channels_per_group=1), "gpu", "lax"),
    ("conv_transpose", dict(groups=1, channels_per_group=64), "cpu", "hybrid"),
    ("conv_transpose", dict(groups=1, channels_per_group=64), "gpu", "lax"),
    ("shared_filter_conv", dict(channels_per_group=64), "gpu", "einsum"),
]


@pytest.mark.parametrize("op, facts, backend, expected", CASES,
                         ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in CASES])
def test_auto_follows_rules(op, facts, backend, expected):
    choice = which_impl(op, backend=backend, **facts)
    assert choice.impl == expected, choice
    assert choice.reason


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.impl)
def test_every_rule_names_an_impl_its_ops_have(rule):
    assert set(rule.backends) <= set(dispatch.BACKENDS)
    for op in rule.ops:
        assert rule.impl in IMPLS[op], (op, rule.impl)


def test_first_matching_rule_wins():
    for op in IMPLS:
        for backend in dispatch.BACKENDS:
            facts = dispatch.Facts(backend, 4, 1)
            matching = [r for r in RULES if backend in r.backends and op in r.ops
                        and r.when(facts)]
            expected = matching[0].impl if matching else "lax"
            assert which_impl(op, groups=4, channels_per_group=1, backend=backend).impl \
                == expected


def test_gpu_has_no_rule_without_a_gpu_measurement():
    gpu_ops = {op for r in RULES if "gpu" in r.backends for op in r.ops}
    assert gpu_ops <= {"shared_filter_conv"}, gpu_ops


def test_auto_runs_what_which_impl_says(monkeypatch):
    seen = []
    resolve = dispatch.resolve

    def spy(op, impl, **facts):
        seen.append((op, resolve(op, impl, **facts)))
        return seen[-1][1]

    monkeypatch.setattr(dispatch, "resolve", spy)
    x = jnp.ones((1, 6, 6, 4))
    jconv.conv(x, jnp.ones((3, 3, 2, 4)), groups=2)
    jconv.depthwise_conv(x, jnp.ones((3, 3, 1, 4)))
    expected = [("conv", which_impl("conv", groups=2, channels_per_group=2).impl),
                ("depthwise_conv",
                 which_impl("depthwise_conv", groups=4, channels_per_group=1).impl)]
    assert seen == expected


def test_unknown_names_fail():
    with pytest.raises(ValueError, match="which_impl: op='no_op'"):
        which_impl("no_op")
    with pytest.raises(ValueError, match="which_impl: backend='abacus'"):
        which_impl("conv", backend="abacus")
