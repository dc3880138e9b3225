"""Wall time of every op, every implementation, and PyTorch, on layers of real networks.

Each :class:`Case` is one layer (AlexNet, GoogLeNet, MobileNet) of one op. For each case,
pass (``fwd``: the op; ``fwd_bwd``: the op's output and its vector-Jacobian product
with a fixed random cotangent, with respect to every array argument, as a training step
computes them) and implementation (every ``impl`` in ``registry.get(op).impls``,
``auto``, and ``torch`` when PyTorch imports) the run records the median and minimum of
``repeats`` timed samples after ``warmup`` calls (a sample is the mean of ``number``
back-to-back calls, ``number`` chosen so that a sample lasts at least ``min_sample_s``,
as ``timeit.autorange`` does; :func:`jconv.measure.interleaved`), and GFLOP/s from the
dense FLOPs of :mod:`jconv.cost` (``fwd_bwd`` counts 3× the forward FLOPs for ops with weights:
forward, input gradient, weight gradient; 2× for pooling and LRN). The matmul peak is
measured in the same run, so every rate is also a fraction of what this machine's
``jnp.dot`` reaches. The ``mobilenet_block`` case is a training step (gradient and SGD
update) of depthwise 3×3 → ReLU → pointwise → ReLU.

Outputs in the work directory: ``measurements.jsonl`` (one line per measurement),
``environment.json`` (hardware, library versions, XLA flags), ``summary.csv``,
``table.md`` (time per impl, auto/lax speed-up, auto/best ratio, PyTorch) and
``bench.png``.

Modules: :mod:`~experiments.bench.cases` (the case table and what it implies),
:mod:`~experiments.bench.jax_calls` (the timed JAX functions),
:mod:`~experiments.bench.torch_ports` (PyTorch's form of each op),
:mod:`~experiments.bench.measurements` (timing a case's implementations together, with
:mod:`jconv.measure`), :mod:`~experiments.bench.report`, :mod:`~experiments.bench.targets`
and :mod:`~experiments.bench.plots` (the outputs).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax

import jconv  # noqa: F401  (the tests reach the ops as bench.jconv)
from experiments.bench.cases import (CASES, NAIVE, POOLS, TRAIN_STEP, Case, auto_choice, call,
                                     case_shapes, flops, impls, registered_cases, selected)
from experiments.bench.jax_calls import call_arrays, jax_fn, random_arrays
from experiments.bench.measurements import environment, matmul_peak, measure_group, threads
from experiments.bench.report import ratios, rows, summarize
from experiments.bench.targets import TARGETS, targets_section
from experiments.bench.torch_ports import import_torch, torch_call, torch_fn
from jconv.runner import Store, progress

# The names the tests have used since this was one module.
_arrays, _ratios, _targets, _torch = random_arrays, ratios, targets_section, import_torch

__all__ = [
    "CASES", "NAIVE", "POOLS", "TARGETS", "TRAIN_STEP", "Case", "auto_choice", "call",
    "call_arrays", "case_shapes", "environment", "flops", "impls", "import_torch", "jax_fn",
    "matmul_peak", "measure_group", "plan", "random_arrays", "ratios", "registered_cases", "rows",
    "run", "selected", "summarize", "targets_section", "threads", "torch_call", "torch_fn",
]


def plan(config, cases) -> list[dict]:
    """The key of every measurement the run makes: the matmul peak, then each case's
    passes and implementations (PyTorch on the CPU only)."""
    torch_ok = config.torch and import_torch() is not None and jax.default_backend() == "cpu"
    keys = [{"case": "matmul_peak", "pass": "fwd", "impl": "jnp.dot"}]
    for case in cases:
        for pass_ in config.passes:
            for impl in impls(case) + (("torch",) if torch_ok else ()):
                keys.append({"case": case.name, "pass": pass_, "impl": impl})
    return keys


def run(config, workdir: Path) -> dict:
    """Measures what :func:`plan` lists and ``workdir``'s store does not yet hold, then
    writes the summary."""
    cases = selected(config)
    torch = import_torch() if config.torch else None
    if torch is not None:
        torch.set_num_threads(threads())
    store = Store(workdir)
    (workdir / "environment.json").write_text(json.dumps(environment(config, torch),
                                                         indent=2) + "\n")
    by_name = {c.name: c for c in cases}
    todo = plan(config, cases)
    groups: dict[tuple, list[dict]] = {}
    for key in todo:
        groups.setdefault((key["case"], key["pass"]), []).append(key)
    with progress(len(todo), sum(store.has(k) for k in todo), "bench") as bar:
        for (name, pass_), keys in groups.items():
            missing = [k for k in keys if not store.has(k)]
            if not missing:
                continue
            bar.set_postfix_str(f"{name} {pass_}")
            if name == "matmul_peak":
                results = {"jnp.dot": matmul_peak(config)}
            else:
                results = measure_group(by_name[name], pass_, [k["impl"] for k in missing],
                                        config, torch)
            for key in missing:
                store.add(key, results[key["impl"]])
                bar.update()
    return summarize(config, cases, store, workdir)
