"""XLA's own FLOP count beside ours, and the log-log slope of a cost curve."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jconv.cost.model import Cost
from jconv.ops import registry
from jconv.ops._args import fail

__all__ = ["compare", "loglog_slope", "xla_cost"]

def _abstract(value, dtype):
    """Shapes become ``jax.ShapeDtypeStruct``s (lists of shapes: lists of them)."""
    if isinstance(value, tuple) and all(isinstance(v, (int, np.integer)) for v in value):
        return jax.ShapeDtypeStruct(value, dtype)
    if isinstance(value, list) and all(isinstance(v, tuple) for v in value):
        return [jax.ShapeDtypeStruct(v, dtype) for v in value]
    return value


def xla_cost(op: str, *shapes_, impl: str = "lax", dtype="float32", **kwargs) -> float | None:
    """FLOPs that XLA's ``cost_analysis()`` reports for ``jconv.<op>`` on these shapes.

    Compiles the op (nothing is run) on ``jax.ShapeDtypeStruct`` inputs for the default
    backend. Arguments that are not shapes (a pool's ``window``) are passed as they are.

    Returns:
      the ``"flops"`` entry as a float, or None where XLA reports none or a negative value
      (GPU convolutions are library calls whose cost XLA does not know).
    """
    fn = registry.get(op, "xla_cost").fn
    args = [_abstract(s, jnp.dtype(dtype)) for s in shapes_]
    is_array = [isinstance(a, (jax.ShapeDtypeStruct, list)) for a in args]
    arrays = [a for a, is_a in zip(args, is_array) if is_a]

    def call(*arrays_):
        it = iter(arrays_)
        full = [next(it) if is_a else a for a, is_a in zip(args, is_array)]
        return fn(*full, impl=impl, **kwargs)

    from jconv.kernels import lax_nans  # noqa: PLC0415
    from jconv.measure import xla_flops  # noqa: PLC0415

    with lax_nans.left_out():  # the kernel's FLOPs, without the masks of non-finite weights
        flops = xla_flops(jax.jit(call).lower(*arrays).compile())
    return None if flops is None else float(flops)


def compare(op: str, *shapes_, impl: str = "lax", dtype="float32", **kwargs) -> dict:
    """Our dense and in-bounds FLOPs next to XLA's, for the same call.

    ``kwargs`` are the op's keyword arguments; ``bias`` and ``shortcut`` go to the cost
    function only. ``shapes_`` as in :func:`xla_cost`.

    Returns:
      ``dict(ours_dense=..., ours_in_bounds=..., xla=...)``.
    """
    spec = registry.get(op, "compare")
    if spec.cost is None:
        fail("compare", "op", op, "an op registered with a cost formula")
    ours: Cost = spec.cost(*shapes_, dtype=dtype, **kwargs)
    op_kwargs = {k: v for k, v in kwargs.items() if k not in ("bias", "shortcut")}
    return dict(ours_dense=ours.flops, ours_in_bounds=ours.flops_in_bounds,
                xla=xla_cost(op, *shapes_, impl=impl, dtype=dtype, **op_kwargs))


def loglog_slope(ks, values, upper_half: bool = True) -> float:
    """Slope of ``log(values)`` against ``log(ks)`` by least squares (``numpy.polyfit``).

    ``upper_half`` keeps the points with ``k >= sqrt(min(ks) * max(ks))``, the upper half
    of a geometric range, where lower-order terms matter least (all points when that
    leaves fewer than two). A cost ``a*k**2 + b*k``
    gives a slope near 2; one layer widening alone, near 1. ``values`` may be a
    :class:`~jconv.cost.counting.Count` (a vmapped cost curve).

    >>> ks = [4, 8, 16, 32, 64]
    >>> round(loglog_slope(ks, [3 * k**2 + 9 * k for k in ks]), 3)
    1.909
    """
    ks = np.asarray(ks, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if ks.shape != values.shape or ks.ndim != 1 or ks.size < 2:
        fail("loglog_slope", "ks, values", (ks.shape, values.shape),
             "two 1-D sequences of the same length, at least 2")
    if np.any(ks <= 0) or np.any(values <= 0):
        fail("loglog_slope", "ks, values", "non-positive entries", "positive numbers (logs)")
    if upper_half:
        keep = np.log(ks) >= (np.log(ks.min()) + np.log(ks.max())) / 2
        if keep.sum() >= 2:
            ks, values = ks[keep], values[keep]
    return float(np.polyfit(np.log(ks), np.log(values), 1)[0])
