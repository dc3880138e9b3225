"""Which implementation ``impl="auto"`` runs: every rule in one table.

Every op has a ``lax`` path (``lax.conv_general_dilated``, ``reduce_window``, ...) and
one or more einsum kernels (:mod:`jconv.kernels.einsum_conv`), proven equal by the tests.
``impl="auto"`` takes the first rule below whose backend, op and condition match, else
``lax``. Ask which kernel a call would use, and why, with :func:`which_impl`::

    >>> which_impl("conv", groups=64, channels_per_group=1, backend="cpu")
    Choice(impl='einsum', reason="depthwise conv on CPU: XLA's CPU depthwise convolution is a slow path; shift-and-multiply avoids it")
    >>> which_impl("conv", groups=1, channels_per_group=64, backend="gpu").impl
    'lax'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax

from jconv.ops._args import fail

_CONV_LIKE = ("lax", "einsum", "patches")
_TWO = ("lax", "einsum")

IMPLS: dict[str, tuple[str, ...]] = {
    "conv": _CONV_LIKE,
    "depthwise_conv": _CONV_LIKE,
    "pointwise_conv": _TWO,
    "separable_conv": _CONV_LIKE,
    "spatially_separable_conv": _CONV_LIKE,
    "per_map_conv": _TWO,
    "shared_filter_conv": _TWO,
    "conv_transpose": _TWO,
    "local_conv": _TWO,
    "depth_sliding_conv": _TWO,
    "max_pool": _TWO,
    "avg_pool": _TWO,
    "global_avg_pool": _TWO,
    "channel_max_pool": _TWO,
    "local_response_norm": _TWO,
}
"""Implementations each op accepts besides ``"auto"``."""


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the rules may look at: the backend and the op's grouping."""

    backend: str
    groups: int = 1
    channels_per_group: int | None = None

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.channels_per_group == 1


@dataclasses.dataclass(frozen=True)
class Rule:
    backends: tuple[str, ...]
    ops: tuple[str, ...]
    when: Callable[[Facts], bool]
    impl: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Choice:
    impl: str
    reason: str


BACKENDS = ("cpu", "gpu", "tpu")
_DEPTHWISE_OPS = ("conv", "depthwise_conv", "separable_conv")

RULES: tuple[Rule, ...] = (
    Rule(("cpu",), _DEPTHWISE_OPS, lambda f: f.depthwise, "einsum",
         "depthwise conv on CPU: XLA's CPU depthwise convolution is a slow path; "
         "shift-and-multiply avoids it"),
    Rule(("cpu",), ("per_map_conv",), lambda f: True, "einsum",
         "per-map conv on CPU: a broadcast multiply per tap beats a one-channel lax conv"),
    Rule(("cpu",), ("depth_sliding_conv",), lambda f: True, "einsum",
         "depth-sliding conv on CPU: XLA's CPU 3-D conv of a one-channel volume is a slow "
         "path (about 20x slower than shift-and-multiply for 1337 maps of 42x314)"),
    Rule(("cpu", "gpu", "tpu"), ("shared_filter_conv",), lambda f: True, "einsum",
         "shared-filter conv sums the maps first: one single-channel conv, C times fewer MACs"),
)


def check_impl(op: str, impl: str) -> str:
    if impl != "auto" and impl not in IMPLS[op]:
        fail(op, "impl", impl, f"one of {('auto',) + IMPLS[op]}")
    return impl


def which_impl(op: str, *, groups: int = 1, channels_per_group: int | None = None,
               backend: str | None = None) -> Choice:
    """The implementation ``impl="auto"`` picks for ``op``, and the rule that picked it.

    Args:
      op: an op name, e.g. ``"conv"``.
      groups, channels_per_group: the call's ``groups`` and ``C / groups``.
      backend: ``"cpu"``, ``"gpu"`` or ``"tpu"``; default ``jax.default_backend()``.
    """
    if op not in IMPLS:
        fail("which_impl", "op", op, f"one of {sorted(IMPLS)}")
    backend = backend or jax.default_backend()
    if backend not in BACKENDS:
        fail("which_impl", "backend", backend, f"one of {BACKENDS}")
    facts = Facts(backend, groups, channels_per_group)
    for rule in RULES:
        if facts.backend in rule.backends and op in rule.ops and rule.when(facts):
            return Choice(rule.impl, rule.reason)
    return Choice("lax", "default: lax is XLA's own convolution and reduction")


def resolve(op: str, impl: str, **facts) -> str:
    """``impl`` itself, or the one ``auto`` picks; raises for an unknown name."""
    check_impl(op, impl)
    return which_impl(op, **facts).impl if impl == "auto" else impl
