"""Wall time where arithmetic dominates: this machine's peaks, a batch per point, and every
width of a curve timed together.

*Batch per point* (:func:`batch_for`): every call of a curve does about the same work,
``work = peak FLOP/s × min_call_s`` FLOPs, so that no call can take less than ``min_call_s``
(nothing here runs faster than the peak) and dispatch, thread wake-up and cache warm-up are
a small part of it. The batch is capped where the call's arrays would pass ``max_call_bytes``;
a point whose single image passes it is reported with that reason, not timed.

*Interleaved repeats* (:func:`time_points`): the widths of one curve are timed round-robin,
in a shuffled order each round (:func:`jconv.measure.interleaved`), so load from other
processes falls on every width alike and cannot tilt a slope. A curve whose slope interval
is wider than :data:`.verdicts.RETIME_INTERVAL` gets more rounds, ``repeats`` at a time, up
to ``max_repeats``.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import jconv
from experiments.quadratic_cost import model, verdicts
from jconv.measure import blocking, counting, interleaved, xla_flops

PASSES = {"fwd": "forward", "fwd_bwd": "forward+backward"}
PASS_FLOPS = {"fwd": 1, "fwd_bwd": 3}
"""FLOPs and bytes of a pass in forwards: backward is an input and a weight gradient, each
as costly as the forward (the 3× rule); the same factor for every width leaves slopes as they are."""


def batch_for(flops_per_image: float, bytes_per_image: float, work: float,
              max_bytes: float) -> tuple[int, str | None]:
    """The batch of one call: ``ceil(work / flops_per_image)`` images, at least one, at most
    what ``max_bytes`` holds. Returns ``(batch, note)``: the note says why the batch is
    smaller than the rule's (``batch = 0``: not even one image fits)."""
    if flops_per_image <= 0 or work <= 0:
        raise ValueError(f"flops_per_image={flops_per_image}, work={work}; expected both > 0")
    batch = max(1, math.ceil(work / flops_per_image))
    fits = int(max_bytes // bytes_per_image) if bytes_per_image > 0 else batch
    if fits < 1:
        return 0, (f"one image needs {bytes_per_image / 2**30:.2f} GiB of arrays, more than "
                   f"max_call_bytes = {max_bytes / 2**30:.2f} GiB")
    if fits < batch:
        return fits, (f"batch capped at {fits} by max_call_bytes (the rule asks {batch}): "
                      f"{fits * flops_per_image / work:.0%} of the work")
    return batch, None


def peaks(config) -> dict:
    """This machine's ceilings, measured now: a large float32 matmul, oneDNN's conv (the
    best of a few shapes) and the memory bandwidth of a sum over ``peak_bytes``."""
    rng = np.random.default_rng(config.seed)
    n = config.peak_size
    a, b = (jnp.asarray(rng.standard_normal((n, n)), jnp.float32) for _ in range(2))
    calls = {"matmul": blocking(jax.jit(jnp.dot), a, b)}
    flops = {"matmul": 2.0 * n**3}
    impl = "onednn" if jconv.backends()["onednn"].available else "auto"
    for s, c in config.peak_convs:  # 3×3, s×s maps, c -> c, batch 8
        x = jnp.asarray(rng.standard_normal((8, s, s, c)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((3, 3, c, c)), jnp.float32)
        calls[f"conv {s}² {c}"] = blocking(jax.jit(lambda x, w: jconv.conv(x, w, impl=impl)), x, w)
        flops[f"conv {s}² {c}"] = 2.0 * 8 * s * s * c * c * 9
    elements = config.peak_bytes // 4
    big = jnp.asarray(rng.standard_normal(elements), jnp.float32)
    calls["bandwidth"] = blocking(jax.jit(jnp.sum), big)  # reads only: no fresh pages to fault in
    timed = interleaved(calls, warmup=2, repeats=max(config.repeats, 5))
    gflops = {k: flops[k] / timed[k]["time_s"] / 1e9 for k in flops}
    best = max((k for k in gflops if k.startswith("conv")), key=gflops.get)
    return {"matmul_gflops": gflops["matmul"], "conv_gflops": gflops[best],
            "conv_shape": f"3×3, {best[5:]}→{best.split()[-1]}, batch 8", "conv_impl": impl,
            "bandwidth_gbs": elements * 4 / timed["bandwidth"]["time_s"] / 1e9,
            "all_gflops": gflops}


def _function(variant: str, impls: dict, pass_: str):
    forward = lambda p, x: model.timed_network(variant, p, x, impls)
    if pass_ == "fwd":
        return jax.jit(forward)
    # A loss that needs the forward values (the gradient of a plain sum of a layer that is
    # linear in its weights would not, and XLA would skip the forward pass).
    return jax.jit(jax.grad(lambda p, x: 0.5 * jnp.sum(jnp.square(forward(p, x)))))


def counted_flops(variant: str, k1: int, k2: int, impls: dict, config) -> int | None:
    """XLA's FLOPs for one image of the vmapped :func:`model.network` with these kernels,
    traced with oneDNN off (XLA sees nothing inside oneDNN's calls: its kernels have the
    same FLOPs as lax's, which XLA counts)."""
    params = {name: jax.ShapeDtypeStruct(shape, jnp.float32)
              for name, shape in model.weight_shapes(variant, k1, k2, config).items()}
    x = jax.ShapeDtypeStruct((1, config.height, config.width, 1), jnp.float32)
    with counting():
        fn = jax.jit(lambda p, x: model.network(variant, p, x, impls))
        return xla_flops(fn.lower(params, x).compile())


def time_points(points: list[dict], variant: str, pass_: str, work: float, config) -> list[dict]:
    """Every point of one curve timed together: ``points`` hold ``k1, k2, impls`` and the
    per-image ``flops`` (the kernels' own) and ``bytes``; each comes back with its ``batch``
    and call ``times_s`` (``repeats`` interleaved samples after one warm-up call each), or a
    ``missing`` reason."""
    factor = PASS_FLOPS[pass_]
    calls, results = {}, []
    for point in points:
        result = {"k1": point["k1"], "k2": point["k2"], "impls": point["impls"]}
        results.append(result)
        batch, note = batch_for(factor * point["flops"], factor * point["bytes"], work,
                                config.max_call_bytes)
        result.update(batch=batch, note=note)
        if batch == 0:
            result["missing"] = note
            continue
        params = model.init_params(variant, point["k1"], point["k2"], config)
        x = model.image_batch(config, batch)
        start = time.perf_counter()
        try:
            compiled = _function(variant, point["impls"], pass_).lower(params, x).compile()
        except Exception as error:  # noqa: BLE001 - a point that cannot compile is reported
            result["missing"] = f"compile failed: {type(error).__name__}: {str(error)[:200]}"
            continue
        result["compile_s"] = time.perf_counter() - start
        calls[len(results) - 1] = blocking(compiled, params, x)
    for i, call in list(calls.items()):  # the warm-up call, alone: a point that fails is reported
        try:
            call()
        except Exception as error:  # noqa: BLE001 - e.g. out of memory at this width
            results[i]["missing"] = f"run failed: {type(error).__name__}: {str(error)[:200]}"
            del calls[i]
    timed = {i: t["times_s"] for i, t in interleaved(calls, warmup=0, repeats=config.repeats).items()}
    # A curve whose slope interval is wide (calls slowed by another process) is timed again,
    # every point of it interleaved as before, until the interval narrows or max_repeats.
    while timed and len(next(iter(timed.values()))) < config.max_repeats \
            and _interval_width(results, timed, config) > verdicts.RETIME_INTERVAL:
        more = min(config.repeats, config.max_repeats - len(next(iter(timed.values()))))
        for i, t in interleaved(calls, warmup=0, repeats=more).items():
            timed[i] = timed[i] + t["times_s"]
    for i, times in timed.items():
        results[i]["times_s"] = times
    return results


def _interval_width(results: list[dict], timed: dict, config) -> float:
    """The width of the 95% interval of the slope of time per image against k2 (0: no interval)."""
    fit = verdicts.fit_slope([results[i]["k2"] for i in timed],
                             [np.asarray(t) / results[i]["batch"] for i, t in timed.items()],
                             n_resamples=config.n_resamples, seed=config.seed)
    return 0.0 if fit is None or fit.width is None else fit.width
