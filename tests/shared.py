"""An expensive fixture's output built once per test run, also under pytest-xdist.

A module-scoped fixture runs once in every worker that runs one of its tests, and
``pytest -n 2`` often sends the tests of one module to both workers: the scaling study or the
evidence report would then be built twice. :func:`built_once` builds into a folder the workers
of one run share; a worker that needs it while another builds it waits for that build.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """``build(folder)``'s result, ``build`` run once per test run into an empty ``folder``.

    Without xdist ``folder`` is a fresh temporary folder. Under xdist it is ``name`` in the
    run's own temporary folder (the parent of every worker's): the first worker to get the lock
    builds and marks it done; the others wait for the lock and reuse it. A build that failed
    leaves no mark, so the next worker to need it builds again (and fails the same way).
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        return build(folder)
    root = tmp_path_factory.getbasetemp().parent
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            done.write_text(str(build(folder)), encoding="utf-8")
    return Path(done.read_text(encoding="utf-8"))


def killed_and_resumed_quadratic_smoke(folder: Path) -> Path:
    """``jconv run configs/quadratic_cost.py:smoke`` from the command line into
    ``folder/run``, killed (SIGKILL) once its log holds 3 measurements, then run again to the
    end; ``folder/partial`` holds how many measurements the killed run had logged. The
    finished work directory is what an uninterrupted run writes (the runner's promise), so
    the tests of the resumption and of the job's outputs share this one run."""
    workdir = folder / "run"
    log = workdir / "measurements.jsonl"
    command = [sys.executable, "-m", "jconv", "run", "configs/quadratic_cost.py:smoke", "--workdir", str(workdir)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.communicate(timeout=60)  # reaps it and closes its pipe
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    (folder / "partial").write_text(str(len(log.read_text().splitlines())), encoding="utf-8")
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    return folder
