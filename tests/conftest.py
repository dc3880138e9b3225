"""Suite-wide settings: strict numerics, reproducible hypothesis sweeps, and two tiers.

* The full tier (``bash scripts/test.sh``, what CI runs): every test, hypothesis profile
  ``full`` (10 examples per sweep, or ``JCONV_EXAMPLES``).
* The quick tier (``bash scripts/test.sh --quick``): ``-m "not slow"
  --hypothesis-profile=quick``. A test is marked ``slow`` where it starts other Python
  processes (the command line as a user runs it, training or multi-process jobs), builds
  the docs or the report, drives a browser, or trains end to end, and where it sweeps every
  op and impl a second way (jit and not, float64 numerical gradients, NaN and infinities);
  every test file but ``test_examples.py`` and ``test_report.py`` keeps some tests in the
  quick tier. A doctest is marked here (:data:`SLOW_DOCTESTS`).
"""

import os
import shutil
import tempfile

# XLA:CPU compiles the suite's many small programs at LLVM's lowest optimisation level and
# with its older fusion emitters (same values; compiling is most of the suite's time, and
# these two flags took a third of it off). Processes the tests start inherit them.
_SUITE_XLA_FLAGS = {"--xla_backend_optimization_level": "0", "--xla_cpu_use_fusion_emitters": "false"}
_flags = os.environ.get("XLA_FLAGS", "").split()
os.environ["XLA_FLAGS"] = " ".join(
    [*_flags, *(f"{k}={v}" for k, v in _SUITE_XLA_FLAGS.items() if not any(f.startswith(k) for f in _flags))])

# One persistent compilation cache for the test run, shared by the workers and by the processes
# the tests start (command-line runs compile many programs that the in-process tests compiled).
# The process that made it (xdist's controller, or the one process) removes it at the end.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ.update(JAX_COMPILATION_CACHE_DIR=tempfile.mkdtemp(prefix="jconv-tests-compilation-cache-"),
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.05")

import jax  # noqa: E402  (after XLA_FLAGS: the CPU backend reads it when it starts)
import pytest
from hypothesis import HealthCheck, settings

from tests.shared import built_once, killed_and_resumed_quadratic_smoke

jax.config.update("jax_numpy_rank_promotion", "raise")

_COMMON = dict(
    deadline=None,
    derandomize=True,  # same examples every run: CI failures reproduce
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("full", max_examples=int(os.environ.get("JCONV_EXAMPLES", "10")),
                          **_COMMON)
settings.register_profile("quick", max_examples=4, **_COMMON)
settings.load_profile("full")  # --hypothesis-profile=quick (hypothesis' own option) overrides

SLOW_DOCTESTS = {"jconv.models"}  # runs a MobileNet eagerly, op by op: tens of seconds


def pytest_sessionfinish(session):
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


def pytest_collection_modifyitems(items):
    for item in items:
        if item.name in SLOW_DOCTESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def quadratic_smoke(tmp_path_factory):
    """The quadratic-cost job's smoke run, killed part-way and resumed, once per test run
    (:func:`tests.shared.killed_and_resumed_quadratic_smoke`)."""
    return built_once(tmp_path_factory, "quadratic_smoke", killed_and_resumed_quadratic_smoke)
