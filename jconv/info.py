"""What ``jconv info`` prints: the facts about this machine and install an issue report needs.

Versions (jconv, jax, jaxlib, flax, optax, grain, oneDNN), the devices JAX sees, each
backend with the reason it can (not) run (:func:`jconv.backends`), the CPU features that
decide oneDNN's kernels, and the OpenMP policy that oneDNN's threads run under.

>>> facts = gather()
>>> sorted(facts)
['backends', 'cpu', 'devices', 'openmp', 'versions']
>>> facts["backends"]["lax"]["available"], sorted(facts["cpu"]["features"])
(True, ['AMX', 'AVX-512', 'AVX2', 'AVX512-BF16'])
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ("jconv", "jax", "jaxlib", "flax", "optax", "grain")

FEATURES = {  # the name printed: the /proc/cpuinfo flags that give it (all of them)
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "AVX512-BF16": ("avx512_bf16",),
    "AMX": ("amx_tile", "amx_bf16"),
}
"""oneDNN's float32 kernels are AVX2 or AVX-512; its native bfloat16 kernels need
AVX-512 (avx512_core) and run fastest with AVX512-BF16 or AMX."""

OPENMP_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND",
              "OMP_PLACES", "OMP_DYNAMIC")
"""The variables libgomp reads when it is loaded, which oneDNN's threads then follow."""


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpuinfo(path: Path) -> dict:
    """The CPU's model name and flags from ``/proc/cpuinfo`` (empty where there is none)."""
    model, flags = None, None
    try:
        text = path.read_text()
    except OSError:
        return {"model": platform.processor() or None, "flags": None}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model is None:
            model = value.strip()
        elif key.strip() == "flags" and flags is None:
            flags = set(value.split())
    return {"model": model, "flags": flags}


def cpu(path: Path = Path("/proc/cpuinfo")) -> dict:
    """The CPU's model, the cores this process may use, and which :data:`FEATURES` it has
    (each True, False, or None where the flags cannot be read)."""
    found = _cpuinfo(path)
    flags = found["flags"]
    return {
        "model": found["model"],
        "machine": platform.machine(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "features": {name: None if flags is None else all(f in flags for f in need)
                     for name, need in FEATURES.items()},
    }


def _openmp_runtime() -> str | None:
    """The OpenMP library loaded in this process, if any (``/proc/self/maps``)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libgomp" in line or "libiomp" in line}
    except OSError:
        return None
    return sorted(paths)[0] if paths else None


def openmp(onednn, cores: int) -> dict:
    """What jconv did to OpenMP's wait policy (the clause of oneDNN's reason that says so),
    the threads oneDNN's OpenMP team has, the OpenMP variables as the process sees them,
    and the runtime loaded."""
    said = [part for part in onednn.reason.split("; ") if "OpenMP" in part]
    policy = said[0] if onednn.available and said else (
        "oneDNN is not loaded, so jconv sets no OpenMP variable (when it loads oneDNN it sets "
        "OMP_WAIT_POLICY=PASSIVE unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set)")
    threads = os.environ.get("OMP_NUM_THREADS")
    return {"policy": policy,
            "threads": (f"{threads} (OMP_NUM_THREADS)" if threads else
                        f"{cores} (OMP_NUM_THREADS unset: one per core this process may use)"),
            "env": {name: os.environ.get(name) for name in OPENMP_ENV},
            "runtime": _openmp_runtime()}


def gather() -> dict:
    """Everything ``jconv info`` prints, as plain data (JSON-serialisable)."""
    import jax

    import jconv

    found = jconv.backends()
    onednn = found["onednn"]
    versions = {name: _version(name) for name in PACKAGES}
    versions["jconv"] = versions["jconv"] or jconv.__version__
    versions["oneDNN"] = onednn.version or (
        f"wheel onednn-cpu-gomp {_version('onednn-cpu-gomp')} (not loaded)"
        if _version("onednn-cpu-gomp") else None)
    versions["python"] = platform.python_version()
    versions["platform"] = platform.platform()
    return {
        "versions": versions,
        "devices": {"default_backend": jax.default_backend(),
                    "process": f"{jax.process_index()} of {jax.process_count()}",
                    "devices": [str(d) for d in jax.devices()]},
        "backends": {name: {"available": b.available, "reason": b.reason, "dtypes": list(b.dtypes),
                            "library": b.library, "extension": b.extension}
                     for name, b in found.items()},
        "cpu": (here := cpu()),
        "openmp": openmp(onednn, here["cores"]),
    }


def _yes(value) -> str:
    return {True: "yes", False: "no", None: "unknown"}[value]


def text(facts: dict) -> str:
    """The report as lines to paste into an issue."""
    lines = ["versions:"]
    lines += [f"  {name:<9} {value or 'not installed'}" for name, value in facts["versions"].items()]
    devices = facts["devices"]
    lines += [f"devices: default backend {devices['default_backend']}, process {devices['process']}"]
    lines += [f"  {d}" for d in devices["devices"]]
    lines += ["backends:"]
    for name, b in facts["backends"].items():
        lines += [f"  {name:<7} {'available' if b['available'] else 'unavailable'}: {b['reason']}"]
        if b["dtypes"]:
            lines += [f"          dtypes: {', '.join(b['dtypes'])}"]
        lines += [f"          {key}: {b[key]}" for key in ("library", "extension") if b[key]]
    c = facts["cpu"]
    lines += [f"cpu: {c['model'] or 'unknown model'} ({c['machine']}), {c['cores']} cores for "
              "this process"]
    lines += ["  " + ", ".join(f"{name} {_yes(has)}" for name, has in c["features"].items())]
    omp = facts["openmp"]
    lines += ["openmp:", f"  {omp['policy']}", f"  threads: {omp['threads']}"]
    lines += ["  " + ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in omp["env"].items())]
    lines += [f"  runtime: {omp['runtime'] or 'none loaded'}"]
    return "\n".join(lines)


def main(as_json: bool = False) -> str:
    """What ``jconv info [--json]`` prints."""
    facts = gather()
    return json.dumps(facts, indent=1) if as_json else text(facts)
