"""Builds the oneDNN extension: ``python -m jconv.backends.build [--if-needed] [--force]``.

Compiles ``csrc/onednn_conv.cc`` (convolutions), ``csrc/onednn_pool.cc`` (pooling and
LRN) and ``csrc/max_pool_scatter.cc`` (max pooling's float32 backward), with the headers
beside them, into one library with ``g++ -O3 -std=c++17 -shared -fPIC -fopenmp`` against

* the XLA FFI headers of the installed jaxlib (``jax.ffi.include_dir()``);
* the oneDNN 3.2 headers (``include/oneapi/dnnl/``) of the ``onednn-devel-cpu-gomp`` wheel;
* ``libdnnl.so.3`` of the ``onednn-cpu-gomp`` wheel. It lands in the environment's
  ``lib/``, off the loader path, so the extension carries an rpath to it.

into ``jconv/backends/_build/libjconv_onednn.so``, and records in ``build.json`` what it
was built from (source hash, jaxlib version, library), so :mod:`jconv.backends.onednn`
can tell a stale build. ``JCONV_ONEDNN_ROOT=DIR`` uses ``DIR/include`` and ``DIR/lib``
instead of the wheels; ``CXX`` names another compiler.

A build that cannot happen (not Linux x86-64, no compiler, a wheel missing) or fails
prints one line and exits with status 1; jconv runs without oneDNN and
``jconv.backends()`` says why. ``--if-needed`` does nothing, silently, when the build is
current, and does not retry a build that failed with the same inputs (``--force`` does).

This file imports neither jax nor jconv, so ``scripts/_venv.sh`` runs it as a script.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

BUILD_DIR = Path(__file__).resolve().parent / "_build"
EXTENSION = BUILD_DIR / "libjconv_onednn.so"
STAMP = BUILD_DIR / "build.json"
LOG = BUILD_DIR / "build.log"
SOURCES = tuple(Path(__file__).resolve().parents[2] / "csrc" / name
                for name in ("onednn_conv.cc", "onednn_pool.cc", "max_pool_scatter.cc"))
SOURCE = SOURCES[0]
LIBRARY_NAME = "libdnnl.so.3"
WHEELS = ("onednn-cpu-gomp==2023.2.0", "onednn-devel-cpu-gomp==2023.2.0")


def supported_platform() -> str | None:
    """None on Linux x86-64 (where the oneDNN wheels exist), else why not."""
    if sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64"):
        return None
    return f"the oneDNN wheels are for Linux x86-64; this is {sys.platform} {platform.machine()}"


def _wheel_file(dist: str, suffix: str) -> Path | None:
    """The installed file of wheel ``dist`` whose path ends with ``suffix``, if any."""
    try:
        files = importlib.metadata.distribution(dist).files or ()
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if ("/" + str(f).replace("\\", "/")).endswith("/" + suffix):
            path = Path(f.locate()).resolve()
            if path.exists():
                return path
    return None


def find_onednn() -> tuple[Path | None, Path | None]:
    """``(include directory, libdnnl.so.3)``: from ``JCONV_ONEDNN_ROOT``, else the wheels."""
    root = os.environ.get("JCONV_ONEDNN_ROOT")
    if root:
        include, lib = Path(root) / "include", Path(root) / "lib" / LIBRARY_NAME
        return (include if (include / "oneapi/dnnl/dnnl.hpp").exists() else None,
                lib if lib.exists() else None)
    header = _wheel_file("onednn-devel-cpu-gomp", "oneapi/dnnl/dnnl.hpp")
    library = _wheel_file("onednn-cpu-gomp", LIBRARY_NAME)
    return (header.parents[2] if header else None), library


def ffi_include() -> Path | None:
    """jaxlib's header directory (``jax.ffi.include_dir()``), found without importing jax."""
    spec = importlib.util.find_spec("jaxlib")
    for location in (spec.submodule_search_locations or []) if spec else []:
        include = Path(location) / "include"
        if (include / "xla/ffi/api/ffi.h").exists():
            return include
    return None


def fingerprint(library: Path | None = None) -> dict:
    """What a build depends on: the sources' hash (every ``.cc`` and ``.h`` of ``csrc/``),
    jaxlib's version, the library."""
    if library is None:
        library = find_onednn()[1]
    try:
        jaxlib = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        jaxlib = None
    source = None
    if all(path.exists() for path in SOURCES):  # the .cc files and the headers beside them
        digest = hashlib.sha256()
        for path in sorted(SOURCE.parent.glob("*.[ch]*")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        source = digest.hexdigest()
    return dict(source_sha256=source, jaxlib=jaxlib, library=str(library))


def read_stamp() -> dict:
    """``build.json`` of the last build attempt (``{}`` if none)."""
    try:
        return json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return {}


def _write_stamp(ok: bool, inputs: dict, message: str) -> None:
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    STAMP.write_text(json.dumps(dict(inputs, ok=ok, message=message), indent=1) + "\n")


def build(*, if_needed: bool = False, force: bool = False) -> tuple[bool, str]:
    """Compiles the extension; returns ``(built, one line saying what happened)``."""
    why = supported_platform()
    if why:
        return False, f"not built: {why}"
    include, library = find_onednn()
    if include is None or library is None:
        missing = "headers (include/oneapi/dnnl)" if include is None else LIBRARY_NAME
        return False, f"not built: oneDNN {missing} not found; pip install {' '.join(WHEELS)}"
    ffi = ffi_include()
    if ffi is None:
        return False, "not built: jaxlib's XLA FFI headers (xla/ffi/api/ffi.h) not found"
    missing = [path for path in SOURCES if not path.exists()]
    if missing:
        return False, f"not built: source {missing[0]} not found (jconv installed without csrc/)"
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        return False, f"not built: C++ compiler {os.environ.get('CXX', 'g++')!r} not found"
    inputs = fingerprint(library)
    stamp = read_stamp()
    if if_needed and not force and {k: stamp.get(k) for k in inputs} == inputs:
        if stamp.get("ok") and EXTENSION.exists():
            return True, f"up to date: {EXTENSION}"
        if not stamp.get("ok"):
            return False, f"not built: failed before with the same inputs (see {LOG}); --force"
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    partial = EXTENSION.with_suffix(f".{os.getpid()}.tmp")
    command = [cxx, "-O3", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-fopenmp",
               "-I", str(ffi), "-I", str(include), *map(str, SOURCES), "-o", str(partial),
               "-L", str(library.parent), f"-l:{library.name}",
               f"-Wl,-rpath,{library.parent}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        output, ok = result.stdout + result.stderr, result.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as e:
        output, ok = str(e), False
    LOG.write_text(" ".join(command) + "\n\n" + output)
    if not ok:
        partial.unlink(missing_ok=True)
        message = f"not built: {Path(cxx).name} failed (see {LOG})"
        _write_stamp(False, inputs, message)
        return False, message
    os.replace(partial, EXTENSION)  # atomic: a process loading it sees old or new
    message = f"built {EXTENSION}"
    _write_stamp(True, inputs, message)
    return True, message


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jconv.backends.build",
                                     description="Build jconv's oneDNN extension.")
    parser.add_argument("--if-needed", action="store_true",
                        help="skip when current, or when it failed with the same inputs")
    parser.add_argument("--force", action="store_true", help="rebuild regardless")
    args = parser.parse_args(argv)
    ok, message = build(if_needed=args.if_needed, force=args.force)
    if ok and args.if_needed and message.startswith("up to date"):
        return 0  # nothing done, nothing to say
    suffix = "" if ok else "; jconv runs without impl='onednn'"
    print(f"jconv oneDNN extension: {message}{suffix}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
