"""The one factory of jconv's oneDNN primitives, and the derivative rules they share.

:func:`define` makes a JAX primitive of one pass and gives it every rule it needs:

* its abstract evaluation (the output shape and dtype);
* its lowering: one custom call to the FFI target of :mod:`.library`, or, for a pass
  written in JAX (a tangent), that JAX form;
* the batch split: in a ``jit`` over several devices the call goes through
  ``custom_partitioning`` with a rule that splits the batch axis ``N`` only (:class:`Split`),
  so XLA never gathers the batch onto every device;
* its batching rule (``vmap``): by default the mapped axis folds into ``N``
  (:func:`fold_batch`);
* its derivatives: a JVP and transpose from :func:`bilinear`, :func:`linear`,
  :func:`linear_in` or :func:`jvp`. The rules name other passes, so they are bound late:
  a pass may name one defined after it.

A new pass is its C++ in ``csrc/``, its symbol in :data:`.library.TARGETS`, and one
:func:`define` call beside its siblings (:mod:`.convolution`, :mod:`.pooling`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir, xla
from jax.sharding import NamedSharding, PartitionSpec

from jconv.onednn import library


@dataclasses.dataclass(frozen=True)
class Split:
    """How a pass splits along the batch: which operands have ``N`` first, and whether
    the results do (``reduces=False``) or sum over it (``reduces=True``, each device's
    partial result summed across the batch's mesh axes)."""

    operands: tuple[bool, ...] = (True,)
    reduces: bool = False

    def rule(self, in_ndims, out_ndims) -> tuple[str, tuple[str, ...]]:
        """The Shardy rule (``n`` the batch, every other axis its own factor) and the
        factors that must stay whole."""
        whole = []

        def axes(tensor, ndim, batched):
            names = [f"{tensor}d{i}" for i in range(int(batched), ndim)]
            whole.extend(names)
            return " ".join(["n"] * batched + names)
        batched = (*self.operands, *(False,) * (len(in_ndims) - len(self.operands)))
        ins = ", ".join(axes(f"a{j}", nd, b) for j, (nd, b) in enumerate(zip(in_ndims, batched)))
        outs = ", ".join(axes(f"r{j}", nd, not self.reduces) for j, nd in enumerate(out_ndims))
        return f"{ins} -> {outs}", tuple(whole)


BATCH = Split()
"""Every operand and result has ``N`` first (pooling, LRN, a conv's forward pass)."""


def _ffi_lowering(name, abstract, attrs, split, multiple_results):
    """The FFI call; in a jit over several devices, one call per shard of the batch."""
    def lower(ctx, *args, **params):
        kwargs = attrs(**params)

        def call(*operands):
            outs = abstract(*operands, **params)
            types = [jax.ShapeDtypeStruct(o.shape, o.dtype)
                     for o in (outs if multiple_results else (outs,))]
            return jax.ffi.ffi_call(library.target(name),
                                    types if multiple_results else types[0])(*operands, **kwargs)
        devices = getattr(ctx.module_context.axis_context, "device_assignment", None)
        if devices is not None and len(devices) > 1:
            call = _batch_partitioned(call, split, ctx, multiple_results)
        return mlir.lower_fun(call, multiple_results=multiple_results)(ctx, *args)
    return lower


def _batch_partitioned(call, split: Split, ctx, multiple_results: bool):
    """``call`` split along the batch axis ``N`` of its operands by XLA's partitioner."""
    fn = custom_partitioning(call)
    rule, whole = split.rule([a.ndim for a in ctx.avals_in], [a.ndim for a in ctx.avals_out])
    first = split.operands.index(True)

    def partition(mesh, arg_shapes, result_shape):
        spec = getattr(arg_shapes[first].sharding, "spec", ())
        batch = spec[0] if len(spec) else None  # the mesh axes N is split along

        def on(shape, axis):
            return NamedSharding(mesh, PartitionSpec(axis, *(None,) * (len(shape.shape) - 1)))
        args = tuple(on(s, batch if b else None)
                     for s, b in zip(arg_shapes, (*split.operands, *(False,) * len(arg_shapes))))
        results = [on(s, None if split.reduces else batch)
                   for s in (result_shape if multiple_results else (result_shape,))]

        def lower_fn(*operands):
            out = call(*operands)
            return lax.psum(out, batch) if split.reduces and batch is not None else out
        return mesh, lower_fn, results if multiple_results else results[0], args

    fn.def_partition(partition, sharding_rule=rule,
                     reduction_factors=("n",) if split.reduces else (),
                     need_replication_factors=whole)
    return fn


def fold_batch(prim):
    """vmap: every operand is per image, so the mapped axis merges into ``N``."""
    def rule(args, dims, **params):
        size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
        args = [jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
                for a, d in zip(args, dims)]
        n = args[0].shape[1]
        out = prim.bind(*[a.reshape((size * n, *a.shape[2:])) for a in args], **params)
        unfold = lambda o: o.reshape((size, n, *o.shape[1:]))  # (B, N, ...)
        if prim.multiple_results:
            return [unfold(o) for o in out], [0] * len(out)
        return unfold(out), 0
    return rule


def define(name: str, abstract, *, attrs=None, jax_form=None, split: Split = BATCH,
           vmap=fold_batch, derivatives=None, multiple_results: bool = False) -> Primitive:
    """The primitive ``jconv_onednn_<name>`` with every rule it needs.

    Args:
      name: the pass; with ``attrs``, a key of :data:`.library.TARGETS`.
      abstract: ``abstract(*operands, **params)``: the output's shape and dtype (a
        ``ShapedArray``, or a tuple of them with ``multiple_results``); also called on
        each device's shard.
      attrs: ``attrs(**params)``: the FFI call's attributes, for a pass in the extension.
      jax_form: ``jax_form(*operands, **params)``, for a pass written in JAX instead
        (XLA partitions and lowers it as any JAX code).
      split: how the FFI call splits along the batch on several devices.
      vmap: ``vmap(prim)``: the batching rule.
      derivatives: ``derivatives(prim)`` registers its JVP and transpose
        (:func:`bilinear`, :func:`linear`, :func:`linear_in`, :func:`jvp`).
      multiple_results: whether the pass returns a tuple.
    """
    prim = Primitive(f"jconv_onednn_{name}")
    prim.multiple_results = multiple_results
    prim.def_abstract_eval(abstract)
    if jax_form is None:
        library.target(name)  # a pass the extension has
        prim.def_impl(functools.partial(xla.apply_primitive, prim))
        mlir.register_lowering(prim, _ffi_lowering(name, abstract, attrs, split,
                                                   multiple_results),
                               platform="cpu", cacheable=False)
        REQUIRES_DEVICES.add(prim)  # so a jit over several devices lowers with them known
    else:
        prim.def_impl(jax_form)
        mlir.register_lowering(prim, mlir.lower_fun(jax_form, multiple_results=multiple_results))
    batching.primitive_batchers[prim] = vmap(prim)
    if derivatives is not None:
        derivatives(prim)
    return prim


def with_sizes(params, sizes):
    """``params`` with ``sizes``: the spatial sizes a backward pass gives back."""
    return dict(params, sizes=tuple(int(s) for s in sizes))


def input_sizes(aval):
    """The spatial sizes of a channels-last ``(N, *S, C)`` value."""
    return aval.shape[1:-1]


def bilinear(lhs, rhs):
    """``prim(a, b)`` bilinear: ``lhs(ct, a, b, **params)`` is its transpose in ``a``,
    ``rhs(ct, a, b, **params)`` in ``b`` (``ad.defbilinear``)."""
    return lambda prim: ad.defbilinear(prim, lhs, rhs)


def linear(transpose):
    """``prim(a)`` linear, its transpose ``transpose(ct, a, **params)`` (a list)."""
    return lambda prim: ad.deflinear2(prim, transpose)


def linear_in(index: int, transpose, other_jvp=None):
    """``prim(a, b)`` linear in operand ``index`` with the other held fixed: its JVP
    there is ``prim`` itself, its transpose ``transpose(ct, other, **params)`` (with
    ``sizes``, where the pass has it, the spatial sizes of the operand transposed to);
    ``other_jvp(g, a, b, **params)`` is its JVP in the
    other operand (None: the other takes no tangent, as an index array)."""
    def register(prim):
        def transpose_rule(ct, *args, **params):
            fixed, moving = args[1 - index], args[index]
            assert not ad.is_undefined_primal(fixed)
            out = [None, None]
            if "sizes" in params:
                params = with_sizes(params, input_sizes(moving.aval))
            out[index] = (ad.Zero(moving.aval.to_ct_aval()) if type(ct) is ad.Zero
                          else transpose(ct, fixed, **params))
            return out

        def linear_jvp(g, *args, **params):
            args = list(args)
            args[index] = g
            return prim.bind(*args, **params)
        ad.primitive_transposes[prim] = transpose_rule
        ad.defjvp(prim, *((linear_jvp, other_jvp) if index == 0 else (other_jvp, linear_jvp)))
    return register


def jvp(rule):
    """The whole JVP ``rule(primals, tangents, **params)`` (``ad.primitive_jvps``), for a
    nonlinear pass; ``rule(g, *operands, **params)`` per operand with :func:`defjvp`."""
    def register(prim):
        ad.primitive_jvps[prim] = rule
    return register


def defjvp(*rules):
    """One JVP rule per operand (``ad.defjvp``)."""
    return lambda prim: ad.defjvp(prim, *rules)


def zero_tangent(value):
    """A symbolic zero tangent of ``value``."""
    return ad.Zero(jax.typeof(value).to_tangent_aval())


try:  # the primitives that jit lowers knowing its devices (as it does custom_partitioning)
    from jax._src.dispatch import prim_requires_devices_during_lowering as REQUIRES_DEVICES
except ImportError:  # another JAX: a multi-device jit then runs each call on the whole batch
    REQUIRES_DEVICES = set()
