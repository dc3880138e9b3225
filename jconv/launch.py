"""Several JAX processes on one machine, training as one: ``jconv launch``.

``jconv launch --processes 2 [--devices-per-process 2] -- run CONFIG [...]`` starts the
same ``jconv`` command in ``P`` processes. Each gets a local coordinator address, the
process count and its index in the environment (:data:`ENV`); :func:`initialize_from_env`,
called first by every ``jconv`` command, turns those into
``jax.distributed.initialize(coordinator_address=..., num_processes=..., process_id=...)``
with gloo CPU collectives, so ``jax.devices()`` lists every process's devices and
:func:`jconv.train.train` runs one data-parallel job over all of them: each process feeds
the rows of the global batch that its own devices hold, and orbax writes one checkpoint.

On a cluster no launcher is needed: SLURM and TPU pods start one process per host, and
``jax.distributed.initialize()`` with no arguments reads the coordinator, the process
count and the index from the cluster's environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

ENV = ("JCONV_COORDINATOR", "JCONV_NUM_PROCESSES", "JCONV_PROCESS_ID")
"""The environment variables :func:`launch` sets and :func:`initialize_from_env` reads."""


def initialize_from_env() -> bool:
    """``jax.distributed.initialize`` from :data:`ENV` when they are set; True if it ran."""
    if not all(name in os.environ for name in ENV):
        return False
    import jax  # noqa: PLC0415 (imported only for a distributed run)

    address, count, index = (os.environ[name] for name in ENV)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=address, num_processes=int(count),
                               process_id=int(index))
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(index: int, processes: int, port: int, devices_per_process: int | None,
                base: dict | None = None) -> dict:
    """The environment of process ``index``: :data:`ENV` and, if given, its CPU device
    count (``JAX_PLATFORMS=cpu`` then)."""
    env = dict(os.environ if base is None else base)
    env.update(zip(ENV, (f"127.0.0.1:{port}", str(processes), str(index))))
    if devices_per_process:  # CPU devices: no other backend is looked for
        flags = [f for f in env.get("XLA_FLAGS", "").split()
                 if "force_host_platform_device_count" not in f]
        flags.append(f"--xla_force_host_platform_device_count={devices_per_process}")
        env["XLA_FLAGS"] = " ".join(flags)
        env["JAX_PLATFORMS"] = "cpu"
    return env


def start(command: list[str], processes: int, devices_per_process: int | None = None,
          **popen) -> list[subprocess.Popen]:
    """Starts ``command`` in ``processes`` processes that form one JAX job on this machine."""
    if not isinstance(processes, int) or processes < 1:
        raise ValueError(f"launch: processes={processes!r}; expected an int >= 1")
    if devices_per_process is not None and (not isinstance(devices_per_process, int)
                                            or devices_per_process < 1):
        raise ValueError(f"launch: devices_per_process={devices_per_process!r}; expected an "
                         "int >= 1 or None")
    port = _free_port()
    return [subprocess.Popen(command, env=process_env(i, processes, port, devices_per_process),
                             **popen) for i in range(processes)]


def _relay(proc: subprocess.Popen, index: int) -> None:
    for line in proc.stdout:
        sys.stdout.write(line if index == 0 else f"[process {index}] {line}")
        sys.stdout.flush()


def launch(argv: list[str], processes: int, devices_per_process: int | None = None) -> int:
    """Runs ``python -m jconv ARGV`` in ``processes`` processes; returns the exit code of the
    first process that failed (0 if none did).

    Process 0's output is printed as it is; the others' lines carry ``[process i]``. When
    one process fails, the others are stopped (their kill is not the job's exit code).
    """
    procs = start([sys.executable, "-m", "jconv", *argv], processes, devices_per_process,
                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    relays = [threading.Thread(target=_relay, args=(p, i), daemon=True)
              for i, p in enumerate(procs)]
    for t in relays:
        t.start()
    codes, failed = [None] * len(procs), None
    try:
        while None in codes:
            for i, p in enumerate(procs):
                if codes[i] is None and (code := p.poll()) is not None:
                    codes[i] = code
                    if code != 0 and failed is None:
                        failed = code
                        for other in procs:
                            other.kill()
            threading.Event().wait(0.1)
    finally:
        for p in procs:
            p.kill()
        for t in relays:
            t.join(timeout=5)
    return 0 if failed is None else abs(failed)
