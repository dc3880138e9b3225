"""Measuring compiled functions: XLA's FLOP count and wall time.

>>> import jax, jax.numpy as jnp
>>> compiled = jax.jit(lambda a, b: a @ b).lower(jnp.ones((4, 8)), jnp.ones((8, 2))).compile()
>>> xla_flops(compiled)   # 4*2 outputs, 8 multiply-adds each
128
>>> median_seconds(compiled, jnp.ones((4, 8)), jnp.ones((8, 2)), repeats=3) > 0
True
>>> timed = interleaved({"a": blocking(compiled, jnp.ones((4, 8)), jnp.ones((8, 2)))},
...                     warmup=1, repeats=3)
>>> sorted(timed["a"]), len(timed["a"]["times_s"])
(['min_s', 'number', 'time_s', 'times_s'], 3)
"""

from __future__ import annotations

import contextlib
import math
import random
import statistics
import time
from collections.abc import Callable

import jax


@contextlib.contextmanager
def counting():
    """Functions traced inside are traced for XLA's FLOP count: with oneDNN off
    (:func:`jconv.onednn.disabled`: XLA sees nothing inside oneDNN's calls, and XLA's kernels
    have the same FLOPs) and lax's NaN masks left out (:func:`jconv.kernels.lax_nans.left_out`:
    they run only where a weight is not finite, but XLA counts every branch of a ``cond``)."""
    from jconv import onednn  # noqa: PLC0415
    from jconv.kernels import lax_nans  # noqa: PLC0415

    with onednn.disabled(), lax_nans.left_out():
        yield


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


def blocking(fn, *args) -> Callable[[], object]:
    """A no-argument call of ``fn(*args)`` that waits for the result to be computed."""
    return lambda: jax.block_until_ready(fn(*args))


def seconds(call: Callable[[], object], number: int = 1) -> float:
    """Wall time of ``number`` back-to-back ``call()``s, in total."""
    start = time.perf_counter()
    for _ in range(number):
        call()
    return time.perf_counter() - start


def interleaved(calls: dict[str, Callable[[], object]], warmup: int, repeats: int,
                min_sample_s: float = 0.0) -> dict[str, dict]:
    """Times every call ``repeats`` times, round-robin in a shuffled order each round, so
    that load from other processes, and the state one call leaves for the next, fall on
    every implementation alike; median and minimum per call.

    Each sample is the mean of ``number`` back-to-back calls, with ``number`` the
    smallest count whose total time, judged from the last warm-up call, reaches
    ``min_sample_s`` (as ``timeit.autorange`` does): short calls are averaged over
    enough runs to rise above timer and scheduler noise.
    """
    numbers = {}
    for name, call in calls.items():
        elapsed = 0.0
        for _ in range(warmup):
            elapsed = seconds(call)
        numbers[name] = max(1, math.ceil(min_sample_s / elapsed)) if elapsed else 1
    times = {name: [] for name in calls}
    order = list(calls)
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)  # no implementation always follows the same one
        for name in order:
            times[name].append(seconds(calls[name], numbers[name]) / numbers[name])
    return {name: {"time_s": statistics.median(t), "min_s": min(t), "times_s": t,
                   "number": numbers[name]}
            for name, t in times.items()}


def median_seconds(fn, *args, repeats: int) -> float:
    """Median wall time of ``fn(*args)`` over ``repeats`` calls, after one warm-up call."""
    return interleaved({"fn": blocking(fn, *args)}, warmup=1, repeats=repeats)["fn"]["time_s"]
