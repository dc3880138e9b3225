"""How the oneDNN conv primitives lower and batch (:mod:`jconv.backends.onednn`).

* :func:`lowering`: each primitive is one FFI custom call. In a ``jit`` over several
  devices it goes through ``custom_partitioning`` with a rule that splits the batch axis
  ``N`` only: forward and backward-data run on each device's rows, and backward-weights
  sums the devices' partial gradients (``psum``), so XLA never gathers the batch.
* :func:`batcher`: ``vmap`` is one wider call, never a loop: a batched activation folds
  into ``N``, batched kernels into more filters per group, and both into more groups.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental.custom_partitioning import custom_partitioning
from jax.interpreters import mlir
from jax.sharding import NamedSharding, PartitionSpec


def lowering(target: str, abstract, reduces_batch: bool):
    """The FFI call; in a jit over several devices, one call per shard of the batch.

    ``N`` is the one axis a call may be split along (every other one is needed whole):
    forward and backward-data map batch shards to batch shards, and backward-weights
    sums over ``N``, so each device's partial weight gradient is summed across the batch
    axes (``psum``). Without this, XLA would gather the whole batch onto every device.
    """
    def lower(ctx, a, b, *, stride, dilation, pads, groups, sizes):
        params = dict(stride=stride, dilation=dilation, pads=pads, groups=groups, sizes=sizes)
        attrs = dict(stride=np.array(stride, np.int64), dilation=np.array(dilation, np.int64),
                     pad_lo=np.array([p[0] for p in pads], np.int64),
                     pad_hi=np.array([p[1] for p in pads], np.int64), groups=np.int64(groups))

        def call(a, b):
            out = abstract(a, b, **params)
            return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(out.shape, out.dtype))(
                a, b, **attrs)
        devices = getattr(ctx.module_context.axis_context, "device_assignment", None)
        if devices is None or len(devices) == 1:
            return mlir.lower_fun(call, multiple_results=False)(ctx, a, b)
        fn = _batch_partitioned(call, len(stride), reduces_batch, target)
        return mlir.lower_fun(fn, multiple_results=False)(ctx, a, b)
    return lower


def _batch_partitioned(call, nd: int, reduces_batch: bool, target: str):
    """``call(a, b)`` split along the batch axis ``N`` of its operands by XLA's partitioner."""
    fn = custom_partitioning(call)
    s, k, t = (" ".join(f"{p}{i}" for i in range(nd)) for p in "skt")
    rules = {"jconv_onednn_fwd": f"n {s} c, {k} ci o -> n {t} o",
             "jconv_onednn_bwd_data": f"n {t} o, {k} ci o -> n {s} c",
             "jconv_onednn_bwd_weights": f"n {s} c, n {t} o -> {k} ci o"}
    rule = next(r for name, r in rules.items() if target.startswith(name))
    whole = tuple(f for f in rule.replace(",", " ").replace("->", " ").split() if f != "n")

    def partition(mesh, arg_shapes, result_shape):
        spec = getattr(arg_shapes[0].sharding, "spec", ())
        batch = spec[0] if len(spec) else None  # the mesh axes N is split along

        def on(ndim, first):
            return NamedSharding(mesh, PartitionSpec(first, *(None,) * (ndim - 1)))
        args = (on(len(arg_shapes[0].shape), batch),
                on(len(arg_shapes[1].shape), batch if reduces_batch else None))
        result = on(len(result_shape.shape), None if reduces_batch else batch)

        def lower_fn(a, b):
            out = call(a, b)
            return lax.psum(out, batch) if reduces_batch and batch is not None else out
        return mesh, lower_fn, result, args

    fn.def_partition(partition, sharding_rule=rule,
                     reduction_factors=("n",) if reduces_batch else (),
                     need_replication_factors=tuple(dict.fromkeys(whole)))
    return fn


def _fold_maps(a):
    """``(B, N, *S, C) -> (N, *S, B*C)``: B copies side by side as B times the groups."""
    return jnp.moveaxis(a, 0, -2).reshape((*a.shape[1:-1], a.shape[0] * a.shape[-1]))


def _unfold_maps(y, size):
    """``(N, *S, B*C) -> (B, N, *S, C)``: the inverse of :func:`_fold_maps`."""
    return jnp.moveaxis(y.reshape((*y.shape[:-1], size, y.shape[-1] // size)), -2, 0)


def _fold_filters(a, groups):
    """``(B, ..., K) -> (..., G*B*K/G)``: B sets of filters as more filters per group."""
    b, k = a.shape[0], a.shape[-1]
    a = a.reshape((*a.shape[:-1], groups, k // groups))  # (B, ..., G, K/G)
    return jnp.moveaxis(a, 0, -2).reshape((*a.shape[1:-2], b * k))


def _unfold_filters(y, size, groups):
    """``(..., G*B*K/G) -> (B, ..., K)``: the inverse of :func:`_fold_filters`."""
    k = y.shape[-1] // size
    y = jnp.moveaxis(y.reshape((*y.shape[:-1], groups, size, k // groups)), -2, 0)
    return y.reshape((*y.shape[:-2], k))


def batcher(prim, name: str):
    """vmap as one wider oneDNN call, never a loop.

    A batched activation alone (``x`` of forward, ``dy`` of backward-data) merges into
    ``N``; batched filters alone (``w`` of forward, ``dy`` of backward-weights) become
    more filters per group, as vmap over a kernel does for ``lax``; otherwise both are
    batched (the other broadcast) and the B copies run as B times the groups.
    """
    def rule(args, dims, *, groups, **params):
        size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
        (a, b), (ba, bb) = ([x if d is None else jnp.moveaxis(x, d, 0)
                             for x, d in zip(args, dims)], [d is not None for d in dims])
        if ba and not bb and name in ("fwd", "bwd_data"):
            out = prim.bind(a.reshape((size * a.shape[1], *a.shape[2:])), b, groups=groups,
                            **params)  # (B*N, *S, C)
            return out.reshape((size, a.shape[1], *out.shape[1:])), 0
        if bb and not ba and name in ("fwd", "bwd_weights"):
            out = prim.bind(a, _fold_filters(b, groups), groups=groups, **params)
            return _unfold_filters(out, size, groups), 0
        a = a if ba else jnp.broadcast_to(a, (size, *a.shape))
        b = b if bb else jnp.broadcast_to(b, (size, *b.shape))
        wide = dict(params, groups=size * groups)
        if name == "bwd_weights":  # (x, dy) -> dw
            return _unfold_maps(prim.bind(_fold_maps(a), _fold_maps(b), **wide), size), 0
        out = prim.bind(_fold_maps(a), _fold_weights(b), **wide)  # (x or dy, w)
        return _unfold_maps(out, size), 0
    return rule


def _fold_weights(w):
    """``(B, *k, C/G, K) -> (*k, C/G, B*K)``: B kernels as B times the groups."""
    return jnp.moveaxis(w, 0, -2).reshape((*w.shape[1:-1], w.shape[0] * w.shape[-1]))


try:  # the primitives that jit lowers knowing its devices (as it does custom_partitioning)
    from jax._src.dispatch import prim_requires_devices_during_lowering as REQUIRES_DEVICES
except ImportError:  # another JAX: a multi-device jit then runs each call on the whole batch
    REQUIRES_DEVICES = set()
