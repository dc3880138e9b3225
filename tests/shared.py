"""An expensive fixture's output built once per test run, also under pytest-xdist.

A module-scoped fixture runs once in every worker that runs one of its tests, and
``pytest -n 2`` often sends the tests of one module to both workers: the scaling study or the
evidence report would then be built twice. :func:`built_once` builds into a folder the workers
of one run share; a worker that needs it while another builds it waits for that build.
"""

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


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
