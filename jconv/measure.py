"""Measuring compiled functions: XLA's FLOP count and wall time.

>>> import jax, jax.numpy as jnp
>>> compiled = jax.jit(lambda a, b: a @ b).lower(jnp.ones((4, 8)), jnp.ones((8, 2))).compile()
>>> xla_flops(compiled)   # 4*2 outputs, 8 multiply-adds each
128
>>> median_seconds(compiled, jnp.ones((4, 8)), jnp.ones((8, 2)), repeats=3) > 0
True
"""

from __future__ import annotations

import statistics
import time

import jax


def xla_flops(compiled) -> int | None:
    """FLOPs from ``compiled.cost_analysis()``; ``None`` where XLA does not report them.

    jax 0.10 returns one dict; older versions returned a list of dicts (one per
    computation), which are summed. A negative count (a library call XLA cannot see
    into, as convolutions on GPU) also gives ``None``.
    """
    try:
        cost = compiled.cost_analysis()
    except NotImplementedError:
        return None
    if isinstance(cost, dict):
        cost = [cost]
    if not isinstance(cost, (list, tuple)):
        return None
    flops = [c["flops"] for c in cost if isinstance(c, dict) and "flops" in c]
    if not flops or any(f < 0 for f in flops):
        return None
    return int(round(sum(flops)))


def median_seconds(fn, *args, repeats: int) -> float:
    """Median wall time of ``fn(*args)`` over ``repeats`` calls, after one warm-up call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)
