"""Which implementation ``impl="auto"`` runs: every rule in one table.

Every op has a ``lax`` path (``lax.conv_general_dilated``, ``reduce_window``, ...) and
other kernels (:data:`jconv.ops.registry.IMPLS` says what each name computes forward
and for each gradient), proven equal by the tests. ``impl="auto"`` resolves the op's
plan from the call's shapes and arguments, reads the :class:`Facts` of that plan, and
takes the first rule below (after the op's own ``OpSpec.rules``) whose backend, op and
condition match, else the op's first implementation (``lax`` for every built-in op).
The op and :func:`which_impl` share that one path, so they cannot disagree.

On CPU, where oneDNN can run the call (:func:`jconv.backends`: the extension built, a
float32 or bfloat16 call), the convolutions run ``onednn``, but for 1×1 convs on small
maps, which stay one einsum (:data:`ONEDNN_RULES`). Without oneDNN those rules do not
match and the rules after them pick among the kernels XLA compiles::

    >>> cpu = dict(backend="cpu", groups=64, channels_per_group=1)  # a depthwise conv
    >>> decide("conv", Facts(**cpu, onednn=True)).impl
    'onednn'
    >>> decide("conv", Facts(**cpu, onednn=False)).impl
    'shift'
    >>> which_impl("conv", (8, 27, 27, 96), (5, 5, 48, 256), groups=2, backend="cpu",
    ...            dtype="float64").impl   # oneDNN does not compute float64
    'split'
    >>> which_impl("conv", (8, 14, 14, 96), (3, 3, 96, 96), backend="gpu").impl
    'lax'

Each op runs its computation under ``jax.named_scope(f"{op}[{impl}]")``, so profiler
traces and the compiled HLO's ``op_name`` metadata name the kernel that ran
(``conv[onednn]``).

The CPU rules come from ``jconv run configs/bench.py`` (2-core CPU, fp32; ratios of one
run, side by side, forward and forward+backward; where the two disagree the rule follows
forward+backward, since a call cannot know whether it will be differentiated). On GPU
``lax`` (cuDNN) stays the default: no GPU rule is added without a GPU measurement.

``impl="onednn"`` asked for by name runs only where it can: elsewhere the call runs
``lax``, and the reason says why::

    >>> c = which_impl("conv", (1, 8, 8, 4), (3, 3, 4, 4), impl="onednn", dtype="float64")
    >>> c.impl, "not float64" in c.reason
    ('lax', True)

A call of an op with ``impl="onednn"`` where oneDNN cannot run at all (the extension not
built or not loading: :func:`jconv.backends` says why) warns once per process with that
reason (:class:`jconv.platform.ImplUnavailableWarning`); a call it cannot take (a dtype,
a device, an argument) runs ``lax`` quietly, as :func:`which_impl` says. With
``JCONV_STRICT_IMPL=1`` any op asked for an ``impl`` by name that cannot run the call
raises instead. oneDNN turned off on purpose (``JCONV_DISABLE_ONEDNN=1``,
:func:`jconv.onednn.disabled`) neither warns nor raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import warnings
from collections.abc import Callable

import jax

from jconv import onednn
from jconv.onednn import ImplUnavailableWarning
from jconv.ops import registry
from jconv.ops._args import fail, floating_dtype


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the rules may look at, all read off the op's plan.

    Attributes:
      backend: ``"cpu"``, ``"gpu"`` or ``"tpu"``.
      groups: the plan's groups (``C`` for a depthwise conv).
      channels_per_group: ``C / groups``.
      taps: kernel or pooling window positions ``kh*kw`` (None without a window).
      pixels: output positions per image ``H'*W'`` of the window (None without one).
      batch: ``N``, the images of the call.
      features: the output maps ``C'`` of one image (None where traced).
      onednn: whether oneDNN can run the call (CPU, float32 or bfloat16, the extension
        loaded: :func:`jconv.backends`). A rule for ``onednn`` asks it, so that without
        oneDNN the next rule decides.
    """

    backend: str
    groups: int = 1
    channels_per_group: int | None = None
    taps: int | None = None
    pixels: int | None = None
    onednn: bool = False
    batch: int = 1
    features: int | None = None

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.channels_per_group == 1

    @property
    def rows(self) -> int:
        """Output positions of the whole batch, ``N·H'·W'`` (0 without a window)."""
        return self.batch * (self.pixels or 0)

    @classmethod
    def of(cls, plan, x_shape, backend: str, dtype="float32") -> Facts:
        window = plan.window
        return cls(backend, plan.groups, int(x_shape[-1]) // plan.groups,
                   None if window is None else window.taps,
                   None if window is None else math.prod(window.out_sizes),
                   onednn.unavailable(backend, dtype) is None, int(x_shape[0]),
                   plan.out_shape[-1] if isinstance(plan.out_shape[-1], int) else None)


@dataclasses.dataclass(frozen=True)
class Rule:
    backends: tuple[str, ...]
    ops: tuple[str, ...]
    when: Callable[[Facts], bool]
    impl: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Choice:
    """The implementation a call runs, and why: the rule, then what runs in each pass.

    ``fallback``: why the implementation asked for cannot run the call, where ``lax``
    runs in its place (else None).
    """

    impl: str
    reason: str
    fallback: str | None = None


BACKENDS = ("cpu", "gpu", "tpu")
_DEPTHWISE_OPS = ("conv", "depthwise_conv", "separable_conv")

_CONV_OPS = ("conv", "depthwise_conv", "pointwise_conv", "separable_conv",
             "spatially_separable_conv")
SMALL_ROWS = 392
"""Output positions of the whole batch (``N·H'·W'``, the rows of a 1×1 conv's matmul; two
14×14 images) up to which a 1×1 conv stays an einsum beside oneDNN."""

ONEDNN_RULES: tuple[Rule, ...] = (
    Rule(("cpu",), ("conv", "pointwise_conv"),
         lambda f: f.onednn and f.groups == 1 and f.taps == 1 and f.rows <= SMALL_ROWS,
         "shift",
         "1x1 conv of few output positions on CPU (batch x map up to 392): one einsum over "
         "the maps (a matmul) is faster than oneDNN's 1x1 kernel there (forward+backward, "
         "4x7x7, 832->384: 1.5x; 1x7x7, 1024->1024: 1.5x); from 784 positions on oneDNN is "
         "even or ahead in isolation (16x7x7 0.93-1.13x, 16x14x14 1.3x) and ahead in a "
         "whole model, where the einsum's weight gradient transposes its input (MobileNet "
         "v1's training step, batch 16: 16% faster with oneDNN's)"),
    Rule(("cpu",), _DEPTHWISE_OPS, lambda f: f.onednn and f.depthwise, "onednn",
         "depthwise conv on CPU with oneDNN: its direct depthwise kernels run forward about "
         "as fast as shifted windows (0.8-1.5x) and forward+backward 4-6x faster (their "
         "transpose is a scatter), 11-35x faster than lax"),
    Rule(("cpu",), ("conv",), lambda f: f.onednn and f.groups > 1, "onednn",
         "grouped conv on CPU with oneDNN: every group in one direct kernel, forward 1.0-1.3x "
         "and forward+backward 1.1-1.4x faster than one lax conv per group, 5-7x faster than "
         "lax"),
    Rule(("cpu",), ("max_pool",), lambda f: f.onednn, "onednn",
         "max pooling on CPU with oneDNN's backward and the extension's forward (which keeps "
         "lax's NaN): its backward writes each gradient to the maximum the forward recorded, "
         "where shifted windows and lax select and scatter. Batch 32: 3x3/1 SAME on "
         "28x28x256 forward 3x and forward+backward 10x faster than shifted windows; 3x3/2 "
         "on 55x55x96 forward 1.2x slower, forward+backward even; 6-11x faster than lax"),
    Rule(("cpu",), ("per_map_conv",), lambda f: f.onednn and (f.features or 0) >= 16384,
         "onednn_gemm",
         "per-map conv of C*K >= 16384 output maps on CPU: onednn_patches with the weight "
         "gradient as one oneDNN GEMM of the windows stacked tap-major with dy read in place "
         "(a taps x K accumulator), where oneDNN's grouped backward-weights keeps taps x C*K, "
         "past a core's L2 from K = C = 128 (24x32 maps, 5x5 filters, one call's work fixed: "
         "weight gradient 7.5 against 8.5 ms at K = C = 128, 8.7 against 17.9 at 256; the "
         "Type 1 network's forward+backward 33 against 39 and 155 against 191 ms an image)"),
    Rule(("cpu",), ("per_map_conv",), lambda f: f.onednn, "onednn_patches",
         "per-map conv on CPU with oneDNN: one depthwise conv with a channel multiplier of "
         "K and the filters tied across the maps, about 2x faster than shift_fwd forward "
         "and forward+backward; its input gradient by patches (one matmul of dy over the "
         "filters, then the taps added back in place), which reads dy once where oneDNN's "
         "backward-data slows as K grows (24x32 maps, 5x5 filters, one call's work fixed: "
         "forward+backward 2.1x faster at K = 16, 3.1x at 64, 3.4x at 256)"),
    Rule(("cpu",), ("depth_sliding_conv",), lambda f: f.onednn, "onednn",
         "depth-sliding conv on CPU with oneDNN: the depth taps as channels of one dense "
         "conv, forward+backward about 11x faster than shift_fwd (forward alone 2x slower)"),
    Rule(("cpu",), ("conv_transpose",), lambda f: f.onednn and (f.pixels or 0) > 49, "onednn",
         "transposed conv on CPU with oneDNN: its backward-data pass, forward 1.1x and "
         "forward+backward 2x faster than hybrid (4x4/2, 14x14 -> 28x28, 64->32); on maps "
         "of 7x7 or less hybrid stays, 1.2x faster there"),
    Rule(("cpu",), ("spatially_separable_conv",), lambda f: f.onednn, "onednn",
         "k×1 and 1×k convs on CPU with oneDNN: forward 1.25x and forward+backward 1.4x "
         "faster than hybrid (lax, with the weight gradient by shifted windows)"),
    Rule(("cpu",), _CONV_OPS, lambda f: f.onednn, "onednn",
         "conv on CPU with oneDNN: forward within 0.85-1.2x of lax (2.2x faster for "
         "AlexNet's 11x11/4 conv1), forward+backward 1.1-3.6x faster, since XLA's CPU "
         "weight gradient is a slow path and oneDNN's is a direct kernel; 1x1 convs on "
         "maps over 14x14 1.3-7x"),
)
"""Where oneDNN can run (:attr:`Facts.onednn`), these come first; without it they do not
match, and the rules after them decide."""

RULES: tuple[Rule, ...] = ONEDNN_RULES + (
    Rule(("cpu",), _DEPTHWISE_OPS, lambda f: f.depthwise, "shift",
         "depthwise conv on CPU: XLA's CPU depthwise convolution is a slow path; "
         "shift-and-multiply avoids it"),
    Rule(("cpu",), ("conv",), lambda f: f.groups > 1 and not f.depthwise, "split",
         "grouped conv on CPU: XLA's CPU grouped convolution is a slow path (forward 4-6x, "
         "backward about 10x slower than one dense lax conv per group)"),
    Rule(("cpu",), ("conv_transpose",), lambda f: True, "hybrid",
         "transposed conv on CPU: lax forward, but XLA's CPU weight gradient of an "
         "input-dilated conv is a slow path (about 15x); hybrid takes it from the scatter form"),
    Rule(("cpu",), ("pointwise_conv",), lambda f: f.groups == 1, "shift",
         "1x1 conv on CPU: one einsum over the maps (a matmul) beats XLA's CPU 1x1 "
         "convolution, about 1.5-1.9x forward and 1.4-5x forward+backward (its weight "
         "gradient is a slow path)"),
    Rule(("cpu",), ("spatially_separable_conv",), lambda f: True, "hybrid",
         "k×1 and 1×k convs on CPU: XLA's CPU weight gradient of a one-axis kernel is a slow "
         "path (about 2.5x); hybrid keeps lax forward and input gradient"),
    Rule(("cpu",), ("max_pool", "avg_pool"), lambda f: f.taps is not None and f.taps <= 9,
         "shift",
         "small pooling window on CPU: an elementwise max/add over shifted windows fuses "
         "(about 6x faster forward than reduce_window); large windows stay lax"),
    Rule(("cpu",), ("conv",),
         lambda f: f.groups == 1 and (f.channels_per_group or 0) >= 32
         and f.pixels is not None and f.pixels <= 256, "hybrid",
         "wide conv on a small map on CPU (a late layer): XLA's CPU weight gradient is "
         "a slow path there (forward+backward 1.6x faster with shifted windows for "
         "GoogLeNet 4a); forward and input gradient stay lax"),
    Rule(("cpu",), ("local_conv",), lambda f: True, "patches_grad",
         "locally connected on CPU: lax forward, but the gradients of the patch einsum "
         "(about 2x faster forward+backward)"),
    Rule(("cpu",), ("per_map_conv",), lambda f: True, "shift_fwd",
         "per-map conv on CPU: a broadcast multiply per tap forward (about 2x faster than "
         "a one-channel lax conv), lax gradients (about 2x faster than its transpose)"),
    Rule(("cpu",), ("depth_sliding_conv",), lambda f: True, "shift_fwd",
         "depth-sliding conv on CPU: XLA's CPU 3-D conv of a one-channel volume is a slow "
         "path forward (about 45x slower than shift-and-multiply), but its gradients beat "
         "the transpose of shift-and-multiply (about 1.5x)"),
    Rule(("cpu", "gpu", "tpu"), ("shared_filter_conv",), lambda f: True, "sum_maps",
         "shared-filter conv sums the maps first: one single-channel conv, C times fewer MACs"),
)


def check_impl(op: str, impl: str) -> str:
    """``impl`` if ``op`` has it (or ``"auto"``), else a ``ValueError`` listing its names."""
    impls = registry.get(op).impls
    if impl != "auto" and impl not in impls:
        fail(op, "impl", impl, f"one of {('auto',) + impls}")
    return impl


def decide(op: str, facts: Facts) -> Choice:
    """The rule ``auto`` follows for ``op`` given ``facts``: its own rules, then :data:`RULES`."""
    spec = registry.get(op)
    for rule in (*spec.rules, *RULES):
        if facts.backend in rule.backends and op in rule.ops and rule.when(facts):
            return _choice(spec, rule.impl, rule.reason)
    default = spec.impls[0]
    why = ("default: lax is XLA's own convolution and reduction" if default == "lax"
           else f"default: {default} is {op}'s first implementation")
    return _choice(spec, default, why)


def _choice(spec, impl: str, why: str) -> Choice:
    note = f". {spec.notes[impl]}" if impl in spec.notes else ""
    return Choice(impl, f"{why}. {registry.IMPLS[impl].describe(bool(spec.weights))}{note}")


def _backend(backend: str | None) -> str:
    backend = backend or jax.default_backend()
    if backend not in BACKENDS:
        fail("which_impl", "backend", backend, f"one of {BACKENDS}")
    return backend


def choose(op: str, impl: str, plan, x_shape, backend: str | None = None,
           dtype=None) -> Choice:
    """What a call of ``op`` with this ``plan`` runs: ``impl`` itself, or ``auto``'s pick.

    A kernel that cannot run the call (``onednn`` off the CPU, on a dtype other than
    float32 and bfloat16, or without its extension) gives way to ``lax``, and the reason
    says why. ``dtype`` is the arrays' dtype (default float32).
    """
    check_impl(op, impl)
    backend = _backend(backend)
    spec = registry.get(op)
    dtype = "float32" if dtype is None else dtype
    if impl != "auto":
        choice = _choice(spec, impl, f"impl={impl!r} was asked for")
    else:
        facts = Facts.of(plan, x_shape, backend, dtype)
        if facts.onednn and spec.limits is not None and spec.limits("onednn", plan):
            facts = dataclasses.replace(facts, onednn=False)  # arguments it cannot express
        choice = decide(op, facts)
    return _runnable(spec, choice, plan, backend, dtype)


def _runnable(spec, choice: Choice, plan, backend: str, dtype) -> Choice:
    """``choice``, or ``lax`` where its kernel cannot run on ``backend`` for ``dtype``, or
    cannot express the call's arguments (the op's ``limits``)."""
    why = onednn.unavailable(backend, dtype) if registry.needs_onednn(choice.impl) else None
    if why is None and spec.limits is not None:
        why = spec.limits(choice.impl, plan)
    if why is None:
        return choice
    return dataclasses.replace(
        _choice(spec, "lax", f"{choice.reason}; but it cannot run this call ({why}), "
                "so lax runs instead"), fallback=why)


def which_impl(op: str, *shapes, backend: str | None = None, dtype=None, **kwargs) -> Choice:
    """The implementation ``jconv.<op>`` runs for arrays of these shapes, and why.

    Builds the same plan as the op (:attr:`OpSpec.plan`) and makes the same choice, so
    the answer is what the call runs: its ``named_scope`` is ``f"{op}[{impl}]"``.

    Args:
      op: an op name, e.g. ``"conv"``.
      *shapes: the shapes of the op's array arguments, in order (``x`` then weights).
      backend: ``"cpu"``, ``"gpu"`` or ``"tpu"``; default ``jax.default_backend()``.
      dtype: the arrays' dtype, default float32 (it decides whether ``onednn`` can run);
        one the op refuses (not floating) raises the op's ``TypeError``.
      **kwargs: the op's keyword arguments (``stride``, ``groups``, ``impl``, ...).

    Returns:
      a :class:`Choice`: ``impl``, and ``reason``: the rule that picked it, then which
      kernel computes the forward pass and each gradient.

    >>> c = which_impl("pointwise_conv", (2, 14, 14, 192), (192, 64), backend="cpu")
    >>> c.impl
    'shift'
    >>> c.reason.split(". ")[-1]
    'Forward: shift (shifted windows); input gradient: shift (shifted windows); weight gradient: shift (shifted windows)'
    """
    spec = registry.get(op, "which_impl")
    if dtype is not None:
        floating_dtype(op, "x", dtype)  # the op's own check of x, before its plan's
    impl = kwargs.pop("impl", "auto")
    kwargs.pop("precision", None)
    backend = _backend(backend)
    plan = spec.plan(*shapes, **kwargs)
    return choose(op, impl, plan, shapes[0], backend, dtype)


def scope(op: str, impl: str):
    """``jax.named_scope(f"{op}[{impl}]")``: the name the kernel's HLO carries."""
    return jax.named_scope(f"{op}[{impl}]")


@contextlib.contextmanager
def chosen(op: str, impl: str, plan, x_shape, dtype=None):
    """Resolves ``impl`` for a call of ``op`` with ``plan`` and runs the block under its scope.

    Every op computes inside it: ``with dispatch.chosen(op, impl, plan, x.shape) as impl:``
    gives the implementation name (``auto`` resolved by :func:`choose`, the same path as
    :func:`which_impl`; ``dtype`` is ``x.dtype``) within ``jax.named_scope(f"{op}[{impl}]")``.
    """
    choice = choose(op, impl, plan, x_shape, dtype=dtype)
    if impl != "auto" and choice.fallback is not None:
        _asked_for(op, impl, choice.fallback)
    with scope(op, choice.impl):
        yield choice.impl


STRICT_ENV = "JCONV_STRICT_IMPL"
_WARNED: set[str] = set()


def _asked_for(op: str, impl: str, why: str) -> None:
    """``impl`` was asked for by name and cannot run this call (``why``); ``lax`` will.

    Raises under ``JCONV_STRICT_IMPL=1``; otherwise warns, once per process, where it is
    oneDNN that cannot run at all. oneDNN turned off on purpose does neither.
    """
    if registry.needs_onednn(impl) and onednn.turned_off():
        return
    if os.environ.get(STRICT_ENV, "") not in ("", "0"):
        raise RuntimeError(f"{op}: impl={impl!r} cannot run this call ({why}); "
                           f"{STRICT_ENV}={os.environ[STRICT_ENV]} makes that an error "
                           "where lax would run instead")
    status = onednn.status() if registry.needs_onednn(impl) else None
    if status is None or status.available or status.reason in _WARNED:
        return
    _WARNED.add(status.reason)
    warnings.warn(f"impl='onednn' cannot run in this process, so lax runs instead: "
                  f"{status.reason} ({STRICT_ENV}=1 makes this an error; "
                  "jconv.backends() says the same)", ImplUnavailableWarning, stacklevel=5)
