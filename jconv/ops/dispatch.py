"""Which implementation ``impl="auto"`` runs: every rule in one table.

Every op has a ``lax`` path (``lax.conv_general_dilated``, ``reduce_window``, ...) and
one or more einsum kernels (:mod:`jconv.kernels.einsum_conv`), proven equal by the tests.
``impl="auto"`` takes the first rule below whose backend, op and condition match, else
``lax``. Ask which kernel a call would use, and why, with :func:`which_impl`::

    >>> which_impl("conv", groups=64, channels_per_group=1, backend="cpu")
    Choice(impl='einsum', reason="depthwise conv on CPU: XLA's CPU depthwise convolution is a slow path; shift-and-multiply avoids it")
    >>> which_impl("conv", groups=2, channels_per_group=48, backend="cpu").impl
    'split'
    >>> which_impl("conv", groups=1, channels_per_group=64, backend="gpu").impl
    'lax'

The CPU rules come from ``jconv run configs/bench.py`` (2-core CPU, fp32; ratios of one
run, forward and forward+backward; where the two disagree the rule follows
forward+backward, since a call cannot know whether it will be differentiated). On GPU
``lax`` (cuDNN) stays the default: no GPU rule is added without a GPU measurement.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax

from jconv.ops._args import fail

_CONV_LIKE = ("lax", "einsum", "patches")
_TWO = ("lax", "einsum")

IMPLS: dict[str, tuple[str, ...]] = {
    "conv": _CONV_LIKE + ("split", "hybrid"),
    "depthwise_conv": _CONV_LIKE,
    "pointwise_conv": _TWO + ("hybrid",),
    "separable_conv": _CONV_LIKE,
    "spatially_separable_conv": _CONV_LIKE + ("hybrid",),
    "per_map_conv": _TWO + ("hybrid",),
    "shared_filter_conv": _TWO,
    "conv_transpose": _TWO + ("hybrid", "phases"),
    "local_conv": _TWO + ("hybrid",),
    "depth_sliding_conv": _TWO + ("hybrid",),
    "max_pool": _TWO,
    "avg_pool": _TWO,
    "global_avg_pool": _TWO,
    "channel_max_pool": _TWO,
    "local_response_norm": _TWO,
}
"""Implementations each op accepts besides ``"auto"``."""


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the rules may look at: the backend, the op's grouping and its window size."""

    backend: str
    groups: int = 1
    channels_per_group: int | None = None
    taps: int | None = None  # window positions of a pooling op
    pixels: int | None = None  # output positions per image of a conv

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
    Rule(("cpu",), ("conv",), lambda f: f.groups > 1 and not f.depthwise, "split",
         "grouped conv on CPU: XLA's CPU grouped convolution is a slow path (forward 4-6x, "
         "backward about 10x slower than one dense lax conv per group)"),
    Rule(("cpu",), ("conv_transpose",), lambda f: True, "hybrid",
         "transposed conv on CPU: lax forward, but XLA's CPU weight gradient of an "
         "input-dilated conv is a slow path (about 15x); hybrid takes it from the scatter form"),
    Rule(("cpu",), ("pointwise_conv",), lambda f: f.groups == 1, "einsum",
         "1x1 conv on CPU: one einsum over the maps (a matmul) beats XLA's CPU 1x1 "
         "convolution, about 1.5-1.9x forward and 1.4-5x forward+backward (its weight "
         "gradient is a slow path)"),
    Rule(("cpu",), ("spatially_separable_conv",), lambda f: True, "hybrid",
         "k×1 and 1×k convs on CPU: XLA's CPU weight gradient of a one-axis kernel is a slow "
         "path (about 2.5x); hybrid keeps lax forward and input gradient"),
    Rule(("cpu",), ("max_pool", "avg_pool"), lambda f: f.taps is not None and f.taps <= 9,
         "einsum",
         "small pooling window on CPU: an elementwise max/add over shifted windows fuses "
         "(about 6x faster forward than reduce_window); large windows stay lax"),
    Rule(("cpu",), ("conv",),
         lambda f: f.groups == 1 and (f.channels_per_group or 0) >= 32
         and f.pixels is not None and f.pixels <= 256, "hybrid",
         "wide conv on a small map on CPU (a late layer): XLA's CPU weight gradient is "
         "a slow path there (forward+backward 1.6x faster with shifted windows for "
         "GoogLeNet 4a); forward and input gradient stay lax"),
    Rule(("cpu",), ("local_conv",), lambda f: True, "hybrid",
         "locally connected on CPU: lax forward, but the gradients of the patch einsum "
         "(about 2x faster forward+backward)"),
    Rule(("cpu",), ("per_map_conv",), lambda f: True, "hybrid",
         "per-map conv on CPU: a broadcast multiply per tap forward (about 2x faster than "
         "a one-channel lax conv), lax gradients (about 2x faster than its transpose)"),
    Rule(("cpu",), ("depth_sliding_conv",), lambda f: True, "hybrid",
         "depth-sliding conv on CPU: XLA's CPU 3-D conv of a one-channel volume is a slow "
         "path forward (about 45x slower than shift-and-multiply), but its gradients beat "
         "the transpose of shift-and-multiply (about 1.5x)"),
    Rule(("cpu", "gpu", "tpu"), ("shared_filter_conv",), lambda f: True, "einsum",
         "shared-filter conv sums the maps first: one single-channel conv, C times fewer MACs"),
)


def check_impl(op: str, impl: str) -> str:
    if impl != "auto" and impl not in IMPLS[op]:
        fail(op, "impl", impl, f"one of {('auto',) + IMPLS[op]}")
    return impl


def which_impl(op: str, *, groups: int = 1, channels_per_group: int | None = None,
               taps: int | None = None, pixels: int | None = None,
               backend: str | None = None) -> Choice:
    """The implementation ``impl="auto"`` picks for ``op``, and the rule that picked it.

    Args:
      op: an op name, e.g. ``"conv"``.
      groups, channels_per_group: the call's ``groups`` and ``C / groups``.
      taps: a pooling op's window size ``kh*kw``.
      pixels: a conv's output positions per image, ``H'*W'``.
      backend: ``"cpu"``, ``"gpu"`` or ``"tpu"``; default ``jax.default_backend()``.
    """
    if op not in IMPLS:
        fail("which_impl", "op", op, f"one of {sorted(IMPLS)}")
    backend = backend or jax.default_backend()
    if backend not in BACKENDS:
        fail("which_impl", "backend", backend, f"one of {BACKENDS}")
    facts = Facts(backend, groups, channels_per_group, taps, pixels)
    for rule in RULES:
        if facts.backend in rule.backends and op in rule.ops and rule.when(facts):
            return Choice(rule.impl, rule.reason)
    return Choice("lax", "default: lax is XLA's own convolution and reduction")


def resolve(op: str, impl: str, **facts) -> str:
    """``impl`` itself, or the one ``auto`` picks; raises for an unknown name."""
    check_impl(op, impl)
    return which_impl(op, **facts).impl if impl == "auto" else impl
