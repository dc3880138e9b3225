"""What one benchmark run measures: the implementations of a (case, pass) timed together
(:func:`jconv.measure.interleaved`), the matmul peak, and the environment they ran in."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jconv
from experiments.bench.cases import TRAIN_STEP, Case, auto_choice, case_shapes, flops, split_impl
from experiments.bench.jax_calls import call_arrays, jax_fn, random_arrays
from experiments.bench.torch_ports import torch_call
from jconv.measure import blocking, interleaved, seconds


def measure_group(case: Case, pass_: str, names, config, torch) -> dict[str, dict]:
    """Every implementation in ``names`` of one (case, pass), timed together (a name
    ``impl:bfloat16`` on the arrays cast to bfloat16 outside the timed call)."""
    shape_list = case_shapes(case, config)
    arrays = random_arrays(shape_list, config.seed)
    common = {"op": case.op, "layer": case.layer, "shapes": shape_list,
              "flops": flops(case, shape_list, pass_)}
    values = {name: dict(common) for name in names}
    calls = {}
    for name in names:
        if name == "torch":
            reference = jax_fn(case, "lax", "fwd", len(arrays))(*arrays)
            call, extra = torch_call(case, shape_list, pass_, arrays, reference, torch)
            values[name].update(extra)
            if call is None:
                continue
        else:
            impl, dtype = split_impl(name)
            typed = [a.astype(dtype) for a in arrays]
            call = blocking(jax_fn(case, impl, pass_, len(arrays)),
                            *call_arrays(case, impl, pass_, typed))
            values[name].update(compile_s=seconds(call), dtype=dtype)
            if impl == "auto" and case.name != TRAIN_STEP:
                choice = auto_choice(case, shape_list, dtype)
                values[name].update(chosen=choice.impl, reason=choice.reason)
        calls[name] = call
    for name, timing in interleaved(calls, config.warmup, config.repeats,
                                     config.min_sample_s).items():
        values[name].update(timing)
    return values


def matmul_peak(config) -> dict:
    """GFLOP/s of an fp32 ``jnp.dot`` of two ``peak_size``² matrices: the practical ceiling."""
    n = config.peak_size
    a, b = random_arrays([(n, n), (n, n)], config.seed)
    result = interleaved({"dot": blocking(jax.jit(jnp.dot), a, b)}, 2,
                         max(config.repeats, 5))["dot"]
    return {**result, "flops": 2.0 * n**3, "gflops": 2.0 * n**3 / result["time_s"] / 1e9}


def threads() -> int:
    """The CPU threads XLA uses: the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def environment(config, torch) -> dict:
    """Hardware, library versions (oneDNN's and the dtypes it computes natively here
    included) and the XLA/threading environment of the run."""
    from importlib import metadata

    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    onednn = jconv.backends()["onednn"]
    cpu = ""
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(), "python": platform.python_version(),
        "cpu": cpu or platform.processor(), "cpu_count": os.cpu_count(),
        "threads": threads(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__, "jaxlib": version("jaxlib"), "numpy": np.__version__,
        "flax": version("flax"), "ml_collections": version("ml-collections"),
        "torch": torch.__version__ if torch else None,
        "torch_threads": torch.get_num_threads() if torch else None,
        "onednn": {k: getattr(onednn, k) for k in ("available", "reason", "dtypes", "version")},
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("JAX_", "XLA_", "OMP_", "MKL_", "TF_CPP", "CUDA_VISIBLE"))},
    }
