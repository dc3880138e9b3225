"""One description per op: everything jconv knows about a convolution variant, in one place.

An :class:`OpSpec` names the pure function, its shape plan, its implementations, its
weight arguments, how a layer of it replaces a Type 2.2 conv (when it can), its cost
formula, its NumPy reference and its PyTorch mapping. Every consumer reads the
registry: the exports of :mod:`jconv.ops`, :func:`jconv.which_impl`, :mod:`jconv.cost`,
the NNX layers and the models' variant swap, the benchmark, the demo and the tests.
Adding a variant is one :func:`register` call (see ``examples/custom_variant.py``).

**Implementation names mean one thing in every op** (:data:`IMPLS`). Each names the
kernel that computes the forward pass and the kernels whose transposes give the input
and the weight gradients (:func:`jconv.kernels.combine.differentiated_by`); the kernels
are named in :data:`KERNELS`:

* ``lax``: XLA's own primitive (``lax.conv_general_dilated``, its local form,
  ``reduce_window`` or ``reduce``).
* ``shift``: shifted windows, one product (or max, or add) per kernel tap of a strided
  view of the padded input, summed and fused by XLA; a transposed conv scatters each
  tap's product to its shifted place (:mod:`jconv.kernels.einsum_conv`).
* ``patches``: the window's taps stacked (im2col), then one contraction.
* ``split``: one dense ``lax`` conv per group, concatenated.
* ``phases``: one dense stride-1 ``lax`` conv per output phase, interleaved.
* ``einsum``: one einsum over the maps, with no spatial window (a matmul or a sum).
* ``sum_maps``: the maps summed first, then one single-channel conv (Type 2.1 is linear
  in the maps): shifted windows forward, ``lax`` gradients.
* ``onednn``: oneDNN's primitives, forward and backward, called inside the XLA program
  through its FFI (CPU; float32 and bfloat16): convolution forward, backward-data and
  backward-weights (:mod:`jconv.onednn`); pooling and LRN
  (:mod:`jconv.onednn.pooling`, whose forward-mode derivatives of max pooling and
  LRN are JAX tangents, as the op's ``notes`` say). Where it cannot run (another device
  or dtype, no extension built, an argument it cannot express: the op's ``limits``) the
  op runs ``lax`` and :func:`jconv.which_impl` says why.

>>> from jconv.ops import registry
>>> registry.IMPLS["hybrid"]
Impl(forward='lax', input_grad='lax', weight_grad='shift')
>>> registry.get("conv").impls
('lax', 'shift', 'patches', 'split', 'hybrid', 'onednn')
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from jconv.ops._args import fail

KERNELS: dict[str, str] = {
    "lax": "XLA's own op",
    "shift": "shifted windows",
    "patches": "patches (im2col)",
    "patches_gemm": "patches (im2col) stacked tap-major, then one oneDNN GEMM",
    "split": "one dense lax conv per group",
    "phases": "one dense lax conv per output phase",
    "einsum": "one einsum over the maps",
    "sum_maps": "one conv of the summed maps",
    "onednn": "oneDNN through XLA's FFI, CPU",
}
"""The kernels an implementation is made of, by name."""


@dataclasses.dataclass(frozen=True)
class Impl:
    """What an implementation name computes: one kernel per pass (names of :data:`KERNELS`)."""

    forward: str
    input_grad: str
    weight_grad: str

    def describe(self, has_weights: bool = True) -> str:
        """``Forward: ...; input gradient: ...; weight gradient: ...`` in words."""
        parts = [("Forward", self.forward), ("input gradient", self.input_grad)]
        if has_weights:
            parts.append(("weight gradient", self.weight_grad))
        return "; ".join(f"{what}: {kernel} ({KERNELS[kernel]})" for what, kernel in parts)


def _same(kernel: str) -> Impl:
    return Impl(kernel, kernel, kernel)


IMPLS: dict[str, Impl] = {
    **{kernel: _same(kernel) for kernel in ("lax", "shift", "patches", "split", "einsum",
                                            "sum_maps", "onednn")},
    "hybrid": Impl("lax", "lax", "shift"),
    "shift_fwd": Impl("shift", "lax", "lax"),
    "patches_grad": Impl("lax", "patches", "patches"),
    "phases": Impl("phases", "phases", "shift"),
    "onednn_patches": Impl("onednn", "patches", "onednn"),
    "onednn_gemm": Impl("onednn", "patches", "patches_gemm"),
}
"""Every implementation name, and what it computes in every op that has it."""


def needs_onednn(impl: str) -> bool:
    """Whether implementation ``impl`` runs a oneDNN kernel in some pass."""
    return impl in IMPLS and "onednn" in dataclasses.astuple(IMPLS[impl])


@dataclasses.dataclass(frozen=True)
class LayerForm:
    """How a layer of this op replaces a Type 2.2 conv of ``C`` maps to ``K`` filters.

    Attributes:
      weights: ``(C, K, kernel) -> {argument name: shape}``, the op's weight arguments
        (in call order) for a layer with kernel size ``kernel`` (a tuple).
      out_features: ``(C, K) -> `` the layer's output maps (default ``K``).
      op_kwargs: ``(kernel, stride, padding) -> `` the op's keyword arguments (default
        ``dict(stride=stride, padding=padding)``).
    """

    weights: Callable[[int, int, tuple], dict[str, tuple]]
    out_features: Callable[[int, int], int] = lambda c, k: k
    op_kwargs: Callable[[tuple, Any, Any], dict] = (
        lambda kernel, stride, padding: dict(stride=stride, padding=padding))


@dataclasses.dataclass(frozen=True)
class Lazy:
    """A function named by where it lives, imported when first called: ``Lazy("jconv.cost",
    "conv")``, or an entry of a table, ``Lazy("jconv.torch_ports", "PORTS", "conv")``.

    An op declares its cost formula, NumPy reference and PyTorch form this way in its own
    ``register(...)``, so ``import jconv`` imports neither the oracle nor the PyTorch table
    until one is asked for, and ``jconv.ops`` (which :mod:`jconv.cost` imports) needs no
    import of them.
    """

    module: str
    attr: str
    key: str | None = None

    def resolve(self) -> Callable:
        import importlib

        target = getattr(importlib.import_module(self.module), self.attr)
        return target if self.key is None else target[self.key]

    def __call__(self, *args, **kwargs):
        return self.resolve()(*args, **kwargs)


def forms(name: str, *, torch: bool = True) -> dict[str, Lazy]:
    """A built-in op's ``cost``, ``reference`` and ``torch`` fields: :mod:`jconv.cost`'s,
    :mod:`jconv.reference`'s and :mod:`jconv.torch_ports`'s function of ``name`` (``torch=False``:
    the op has no PyTorch form)."""
    return dict(cost=Lazy("jconv.cost", name), reference=Lazy("jconv.reference", name),
                torch=Lazy("jconv.torch_ports", "PORTS", name) if torch else None)


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """Everything about one op.

    Attributes:
      name: the op's name, ``jconv.<name>`` for the built-in ops.
      fn: the pure function ``fn(x, *weights, **kwargs, impl="auto")``.
      plan: ``plan(*shapes, **kwargs) -> Plan``: checks shapes and arguments and resolves
        the output shape and window (:mod:`jconv.ops.shapes`), with no arrays.
      impls: the implementation names it accepts besides ``"auto"`` (keys of
        :data:`IMPLS`); the first is the default when no rule of
        :mod:`jconv.ops.dispatch` matches.
      weights: the names of its weight arguments after ``x``, in order.
      examples: ``(shapes, kwargs)`` pairs of small valid calls, for checks and sweeps.
      cost: ``cost(*shapes, **kwargs, dtype=, bias=) -> Cost`` (:mod:`jconv.cost`); this and
        the next two may be a :class:`Lazy` name of the function, imported when called.
      reference: a NumPy function with the op's signature (minus ``impl``), the
        ground truth of the tests.
      torch: ``torch(torch_module, shape_list, kwargs)``: returns a function of
        channels-last tensors computing the same op in PyTorch, for the benchmark
        (:mod:`jconv.torch_ports`).
      layer: how a layer of this op replaces a Type 2.2 conv, if it can.
      variant: the name the models' variant swap knows it by (with ``layer``).
      rules: extra ``auto`` rules (:class:`jconv.ops.dispatch.Rule`), tried first.
      notes: per implementation name, a sentence :func:`jconv.which_impl` appends to its
        reason (e.g. what computes forward-mode derivatives, where it differs).
      limits: ``limits(impl, plan) -> str | None``: why ``impl`` cannot run a call with
        this plan (None if it can); such a call runs ``lax``, and the reason says why.
    """

    name: str
    fn: Callable
    plan: Callable
    impls: tuple[str, ...]
    weights: tuple[str, ...] = ("w",)
    """The names of the weight arguments after ``x``, in order."""
    examples: tuple[tuple[tuple, dict], ...] = ()
    """``(shapes, kwargs)`` pairs of small valid calls, for checks and sweeps."""
    cost: Callable | None = None
    reference: Callable | None = None
    torch: Callable | None = None
    layer: LayerForm | None = None
    variant: str | None = None
    rules: tuple = ()
    """Extra ``auto`` rules (:class:`jconv.ops.dispatch.Rule`), tried first."""
    notes: dict[str, str] = dataclasses.field(default_factory=dict)
    limits: Callable[[str, Any], str | None] | None = None

    def __post_init__(self):
        unknown = [i for i in self.impls if i not in IMPLS]
        if not self.impls or unknown:
            fail("register", f"{self.name}.impls", self.impls,
                 f"a non-empty tuple of names from {tuple(IMPLS)}")
        if self.variant is not None and self.layer is None:
            fail("register", f"{self.name}.layer", None, "a LayerForm for a variant")

    @property
    def keywords(self) -> tuple[str, ...]:
        """The op's keyword arguments (all parameters after the arrays, minus ``impl``)."""
        params = list(inspect.signature(self.fn).parameters)[1 + len(self.weights):]
        return tuple(p for p in params if p not in ("impl", "precision"))


REGISTRY: dict[str, OpSpec] = {}
"""Every registered op by name, built-in ops first."""


def register(spec: OpSpec, *, replace: bool = False) -> OpSpec:
    """Adds ``spec`` to the registry; an existing name needs ``replace=True``."""
    if not isinstance(spec, OpSpec):
        fail("register", "spec", type(spec).__name__, "an OpSpec", TypeError)
    if spec.name in REGISTRY and not replace and REGISTRY[spec.name] != spec:
        fail("register", "spec.name", spec.name, "a name not yet registered (or replace=True)")
    REGISTRY[spec.name] = spec
    return spec


def update(name: str, **fields) -> OpSpec:
    """Sets fields of a registered op."""
    return register(dataclasses.replace(get(name), **fields), replace=True)


def get(name: str, caller: str = "jconv.ops.registry.get") -> OpSpec:
    """The spec of a registered op; an unknown name raises ``ValueError`` listing the known."""
    if name not in REGISTRY:
        fail(caller, "op", name, f"one of {sorted(REGISTRY)}")
    return REGISTRY[name]


def variants() -> dict[str, OpSpec]:
    """Registered ops that a model's conv layer can be swapped for, by variant name."""
    return {s.variant: s for s in REGISTRY.values() if s.variant is not None}
