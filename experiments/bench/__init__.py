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

Three more tables come from the same run: issue 13's nine convolutions at batch 8
(:data:`~experiments.bench.cases.VERSUS_TORCH`: ``lax``, ``onednn``, ``auto`` and
PyTorch on channels-last tensors, PyTorch's time over ``auto``'s); the dense 3×3 ones'
``auto`` and ``onednn`` in bfloat16 beside float32 (float32's time over bfloat16's, and
whether oneDNN has native bfloat16 kernels on this CPU); and the training step of
AlexNet, GoogLeNet and MobileNet v1 with ``impl="auto"`` against ``impl="lax"``
(:mod:`~experiments.bench.model_steps`, images/s). Where PyTorch does not import (or
``config.torch`` is off, or the backend is not the CPU) the torch column says it was
skipped, and why.

Outputs in the work directory: ``measurements.jsonl`` (one line per measurement),
``environment.json`` (hardware, library versions, XLA flags), ``summary.csv``,
``table.md`` (time per impl, auto/lax speed-up, auto/best ratio, PyTorch; the nine
against PyTorch, bfloat16, the models; the targets), ``models.csv`` and ``bench.png``.

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
from experiments.bench.cases import (BF16, CASES, NAIVE, POOLS, TRAIN_STEP, VERSUS_TORCH, Case,
                                     auto_choice, call, case_shapes, flops, impls,
                                     registered_cases, selected, split_impl)
from experiments.bench.jax_calls import call_arrays, jax_fn, random_arrays
from experiments.bench.measurements import environment, matmul_peak, measure_group, threads
from experiments.bench.model_steps import IMPLS, ModelCase, measure_model, model_cases
from experiments.bench.report import ratios, rows, summarize
from experiments.bench.targets import TARGETS, targets_section
from experiments.bench.torch_ports import import_torch, torch_call, torch_fn, torch_skipped
from jconv.runner import ConfigError, Store, progress

# The names the tests have used since this was one module.
_arrays, _ratios, _targets, _torch = random_arrays, ratios, targets_section, import_torch

__all__ = [
    "BF16", "CASES", "NAIVE", "POOLS", "TARGETS", "TRAIN_STEP", "VERSUS_TORCH", "Case",
    "ModelCase", "auto_choice", "call", "call_arrays", "case_shapes", "check", "environment", "flops",
    "impls", "import_torch", "jax_fn", "matmul_peak", "measure_group", "measure_model",
    "model_cases", "plan", "random_arrays", "ratios", "registered_cases", "rows", "run",
    "selected", "split_impl", "summarize", "targets_section", "threads", "torch_call",
    "torch_fn", "torch_skipped",
]


PASSES = ("fwd", "fwd_bwd")


def check(config) -> None:
    """Raises ConfigError for a setting the benchmark cannot use, naming it, before anything is
    written: cases, passes, models and the counts and sizes."""
    for key, low in (("batch", 1), ("repeats", 1), ("peak_size", 1), ("model_batch", 1),
                     ("model_repeats", 1), ("warmup", 0), ("max_size", 0), ("max_channels", 0),
                     ("model_input_size", 0)):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"--config.{key}={value!r}; expected an int ≥ {low}")
    for key in ("min_sample_s", "model_width"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
                key == "model_width" and value == 0):
            raise ConfigError(f"--config.{key}={value!r}; expected a number {'> 0' if key == 'model_width' else '≥ 0'}")
    if any(i not in IMPLS + ("torch",) for i in config.model_breakdown):
        raise ConfigError(f"--config.model_breakdown={tuple(config.model_breakdown)}; expected "
                          f"names of {IMPLS + ('torch',)}")
    if not config.passes or any(p not in PASSES for p in config.passes):
        raise ConfigError(f"--config.passes={tuple(config.passes)}; expected one or more of {PASSES}")
    for key, names in (("cases", selected), ("models", model_cases)):
        try:
            names(config)
        except ValueError as error:
            raise ConfigError(f"--config.{key}={tuple(config[key])}: {error}") from None
    from jconv import summary

    for case in model_cases(config):  # built abstractly: no memory, no compute
        settings = summary.config(case.model)
        settings.update(width=float(config.model_width), input_size=config.model_input_size,
                        **case.kwargs)
        try:
            summary.build_abstract(settings)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"--config.model_width={config.model_width!r}, --config.model_input_size="
                              f"{config.model_input_size!r}: {error}") from None


def plan(config, cases, model_rows=()) -> list[dict]:
    """The key of every measurement the run makes: the matmul peak, then each case's
    passes and implementations (PyTorch where :func:`torch_skipped` says nothing), then
    each model's training step with ``lax``, ``auto`` and PyTorch."""
    torch_ok = torch_skipped(config) is None
    keys = [{"case": "matmul_peak", "pass": "fwd", "impl": "jnp.dot"}]
    for case in cases:
        for pass_ in config.passes:
            for impl in impls(case) + (("torch",) if torch_ok else ()):
                keys.append({"case": case.name, "pass": pass_, "impl": impl})
    for case in model_rows:
        keys += [{"case": case.name, "pass": "train_step", "impl": impl}
                 for impl in IMPLS + (("torch",) if torch_ok else ())]
    return keys


def run(config, workdir: Path) -> dict:
    """Measures what :func:`plan` lists and ``workdir``'s store does not yet hold, then
    writes the summary."""
    check(config)
    cases = selected(config)
    model_rows = model_cases(config)
    torch = import_torch() if torch_skipped(config) is None else None
    if torch is not None:
        torch.set_num_threads(threads())
    store = Store(workdir)
    (workdir / "environment.json").write_text(json.dumps(environment(config, torch),
                                                         indent=2) + "\n")
    by_name = {c.name: c for c in [*cases, *model_rows]}
    todo = plan(config, cases, model_rows)
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
            elif isinstance(by_name[name], ModelCase):
                results = measure_model(by_name[name], [k["impl"] for k in missing], config,
                                        torch)
            else:
                results = measure_group(by_name[name], pass_, [k["impl"] for k in missing],
                                        config, torch)
            for key in missing:
                store.add(key, results[key["impl"]])
                bar.update()
    return summarize(config, cases, store, workdir, model_rows)
