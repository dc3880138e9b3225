"""jconv as a package: the wheel the build backend makes, and the set-up's Python check.

The wheel test builds from a copy of the sources in a temporary directory with the
set-up's own setuptools, jaxlib and oneDNN headers (``--no-build-isolation``: nothing
downloads), installs the wheel with ``--no-deps --no-index`` into a fresh venv that sees
the set-up's packages for its dependencies (a path entry, not the editable checkout), and
runs ``impl="onednn"`` there against ``lax``.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest

from jconv.onednn import build

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "python_check.py"
PACKAGE = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "csrc", "jconv",
           "experiments")
"""What a build of jconv reads: the sdist's contents."""


def _check(*args):
    return subprocess.run([sys.executable, str(CHECK), *args], capture_output=True, text=True,
                          timeout=60)


def test_python_check_names_the_python_needed_found_and_the_package():
    out = _check("--as", "3.11.2")  # Debian 12's python3.11
    assert out.returncode == 1 and out.stdout.count("\n") == 1, out
    assert re.search(r"needs Python >= 3\.11\.5 \(pymdown-extensions==[\d.]+ .*\); "
                     r"found Python 3\.11\.2", out.stdout), out.stdout
    assert _check("--as", "3.11.5").returncode == 0
    assert _check().returncode == 0  # the interpreter running the tests


def test_venv_sh_stops_in_one_line_with_a_python_too_old(tmp_path):
    """``_venv.sh`` given only a Python 3.11.2 (a stand-in running the check ``--as`` it)
    stops before making ``.venv``: one line, what to do, in seconds."""
    for name in ("scripts", "requirements.lock", "pyproject.toml"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name,
                                                                    tmp_path / name)
    old = tmp_path / "python3.11.2"
    old.write_text(f'#!/bin/sh\nexec {sys.executable} "$@" --as 3.11.2\n')
    old.chmod(0o755)
    start = time.monotonic()
    out = subprocess.run(["bash", "-c", "source scripts/_venv.sh"], cwd=tmp_path,
                         env=dict(os.environ, JCONV_PYTHON=str(old)), capture_output=True,
                         text=True, timeout=60)
    assert time.monotonic() - start < 30
    assert out.returncode != 0 and not (tmp_path / ".venv").exists()
    assert out.stderr.count("\n") == 1, out.stderr
    for part in ("Python >= 3.11.5", "pymdown-extensions", "found Python 3.11.2", "JCONV_PYTHON"):
        assert part in out.stderr, out.stderr


def test_requires_python_table_covers_the_lock_and_pyproject_agrees():
    """``scripts/requires_python.txt`` has every pin of the lock at its version (rerun
    ``python scripts/python_check.py --write`` after changing the lock), and
    ``requires-python`` in pyproject.toml is the strictest lower bound among them."""
    sys.path.insert(0, str(CHECK.parent))
    try:
        import python_check
    finally:
        sys.path.remove(str(CHECK.parent))
    table = dict(python_check.read_table())
    lock = [line.split(";")[0].strip() for line in (ROOT / "requirements.lock").read_text()
            .splitlines() if line.strip() and not line.startswith("#")]
    rerun = "python scripts/python_check.py --write (in .venv) after changing the lock"
    assert set(table) <= set(lock), (set(table) - set(lock), rerun)
    import importlib.metadata as md
    for pin in lock:
        name, version = pin.split("==")
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            continue
        if installed == version:  # the set-up's packages are the lock's
            assert table.get(pin) == md.metadata(name).get("Requires-Python"), (pin, rerun)
    strictest = max(python_check.parse_version(python_check._lower_bound(spec) or "0")
                    for spec in table.values())
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert declared == ">=" + ".".join(map(str, strictest))


RUN = """
import pathlib, sys, warnings
warnings.simplefilter("error")
import jax, jax.numpy as jnp, numpy as np
from jax import lax
import jconv
assert pathlib.Path(jconv.__file__).is_relative_to(sys.prefix), jconv.__file__
b = jconv.backends()["onednn"]
assert b.available, b.reason
x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, 6)), jnp.float32)
w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3, 3, 8)), jnp.float32)
f = lambda impl: jax.jit(lambda x, w: jconv.conv(x, w, stride=2, groups=2, impl=impl,
                                                 precision=lax.Precision.HIGHEST))
assert "jconv_onednn_fwd" in f("onednn").lower(x, w).compile().as_text()
np.testing.assert_allclose(f("onednn")(x, w), f("lax")(x, w), rtol=1e-5, atol=1e-5)
print(b.extension)
"""


@pytest.mark.slow
@pytest.mark.skipif(build.supported_platform() is not None or shutil.which("g++") is None,
                    reason="the extension builds on Linux x86-64 with g++")
def test_wheel_installs_into_a_fresh_venv_and_runs_onednn(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in PACKAGE:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(
            ROOT / name, src / name,
            **({"ignore": shutil.ignore_patterns("_build", "__pycache__")}
               if (ROOT / name).is_dir() else {}))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    try:  # the set-up's setuptools builds (test extra); an older one: pip's isolated build
        import setuptools.command.bdist_wheel  # noqa: F401
        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run([*pip, "wheel", "--no-deps", *isolation, "-w", tmp_path / "dist",
                            src], capture_output=True, text=True, env=env, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    wheel, = (tmp_path / "dist").glob("jconv-*.whl")
    assert wheel.name.endswith("-py3-none-linux_x86_64.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path"
                                "('purelib'))"], capture_output=True, text=True,
                               check=True).stdout.strip())
    (site / "_jconv_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = subprocess.run([*pip, "--python", python, "install", "--no-deps", "--no-index",
                                wheel], capture_output=True, text=True, env=env, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    ran = subprocess.run([python, "-c", RUN], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env=dict(env, JAX_PLATFORMS="cpu"))
    assert ran.returncode == 0, ran.stderr
    extension = Path(ran.stdout.strip().splitlines()[-1])
    assert extension.is_relative_to(site), extension
    library = extension.read_bytes()
    assert build.RPATH.encode() in library  # libdnnl by the wheel, no path of the build
    assert str(tmp_path).encode() not in library and str(ROOT).encode() not in library
