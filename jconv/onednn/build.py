"""Builds the oneDNN extension: ``python -m jconv.onednn.build [--if-needed] [--force]``.

Compiles ``csrc/onednn_conv.cc`` (convolutions), ``csrc/onednn_matmul.cc`` (matmuls),
``csrc/onednn_pool.cc`` (pooling and LRN), ``csrc/max_pool_scatter.cc`` (max pooling's
float32 backward), ``csrc/sgd_update.cc`` (SGD's one-pass update) and ``csrc/batch_norm.cc``
(BatchNorm's one-pass sums), with the headers beside them, into one library with
``g++ -O3 -std=c++17 -fPIC -fopenmp`` (a compiler per core at a time, one object per source,
then ``-shared`` to link them) against

* the XLA FFI headers of the installed jaxlib (``jax.ffi.include_dir()``);
* the oneDNN 3.2 headers (``include/oneapi/dnnl/``) of the ``onednn-devel-cpu-gomp`` wheel;
* ``libdnnl.so.3`` of the ``onednn-cpu-gomp`` wheel, linked by its soname.

into ``jconv/onednn/_build/libjconv_onednn.so``, and records in ``build.json`` what it
was built from (source hash, jaxlib version, oneDNN wheel), so :mod:`jconv.onednn`
can tell a stale build in a checkout. ``JCONV_ONEDNN_ROOT=DIR`` uses ``DIR/include`` and
``DIR/lib`` instead of the wheels; ``CXX`` names another compiler.

Two callers, one compile: ``pip install`` / ``python -m build`` (``setup.py``'s
``build_ext``, in the build environment, into the wheel) and this command (in a checkout,
in the environment that runs it; ``scripts/_venv.sh`` runs it after the editable install,
so a change to ``csrc/`` rebuilds). The library carries no absolute path to the
environment that built it: :mod:`jconv.onednn` loads ``libdnnl.so.3`` from the
installed wheel first, and the rpath ``$ORIGIN/../../../../..`` (``site-packages/../..``,
the environment's ``lib/`` where that wheel puts it) is the fallback.

A build that cannot happen (not Linux x86-64, no compiler, a wheel missing) or fails
prints one line and exits with status 1; jconv runs without oneDNN and
``jconv.backends()`` says why. ``--if-needed`` does nothing, silently, when the build is
current, and does not retry a build that failed with the same inputs (``--force`` does).

This file imports neither jax nor jconv, so ``scripts/_venv.sh`` and ``setup.py`` run it
as a script or load it by path.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BUILD_DIR = Path(__file__).resolve().parent / "_build"
EXTENSION_NAME = "libjconv_onednn.so"
EXTENSION = BUILD_DIR / EXTENSION_NAME
STAMP = BUILD_DIR / "build.json"
LOG = BUILD_DIR / "build.log"
CSRC = Path(__file__).resolve().parents[2] / "csrc"
SOURCES = tuple(CSRC / name for name in ("onednn_conv.cc", "onednn_pool.cc", "onednn_matmul.cc",
                                         "max_pool_scatter.cc", "sgd_update.cc",
                                         "batch_norm.cc"))
SOURCE = SOURCES[0]
LIBRARY_NAME = "libdnnl.so.3"
ONEDNN_DIST = "onednn-cpu-gomp"
WHEELS = ("onednn-cpu-gomp==2023.2.0", "onednn-devel-cpu-gomp==2023.2.0")
RPATH = "$ORIGIN/../../../../.."
"""From ``site-packages/jconv/onednn/_build`` to the environment's ``lib/``."""
REINSTALL = ("reinstall jconv from source with a C++ compiler (g++) on PATH: pip install "
             "--force-reinstall --no-deps --no-cache-dir <jconv's directory, git+URL or sdist>")
"""How an installed (non-editable) jconv gets its extension: the build backend builds it."""


def supported_platform() -> str | None:
    """None on Linux x86-64 (where the oneDNN wheels exist), else why not."""
    if sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64"):
        return None
    return f"the oneDNN wheels are for Linux x86-64; this is {sys.platform} {platform.machine()}"


def checkout() -> bool:
    """Whether jconv runs from a source tree (``csrc/`` beside the package): an editable
    install, where ``python -m jconv.onednn.build`` builds and a stale build is told.
    An installed wheel has no sources; its extension was built with it."""
    return all(path.exists() for path in SOURCES)


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
    library = _wheel_file(ONEDNN_DIST, LIBRARY_NAME)
    return (header.parents[2] if header else None), library


def ffi_include() -> Path | None:
    """jaxlib's header directory (``jax.ffi.include_dir()``), found without importing jax."""
    spec = importlib.util.find_spec("jaxlib")
    for location in (spec.submodule_search_locations or []) if spec else []:
        include = Path(location) / "include"
        if (include / "xla/ffi/api/ffi.h").exists():
            return include
    return None


def _library_id(library: Path | None) -> str | None:
    """The oneDNN a build links: its wheel and version, or its path under
    ``JCONV_ONEDNN_ROOT`` (so an editable install built in pip's build environment and
    a build in the venv agree)."""
    if library is None:
        return None
    if not os.environ.get("JCONV_ONEDNN_ROOT"):
        try:
            return f"{ONEDNN_DIST}=={importlib.metadata.version(ONEDNN_DIST)}"
        except importlib.metadata.PackageNotFoundError:
            pass
    return str(library)


def fingerprint(library: Path | None = None) -> dict:
    """What a build depends on: the sources' hash (every ``.cc`` and ``.h`` of ``csrc/``),
    jaxlib's version, the oneDNN library."""
    if library is None:
        library = find_onednn()[1]
    try:
        jaxlib = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        jaxlib = None
    source = None
    if checkout():  # the .cc files and the headers beside them
        digest = hashlib.sha256()
        for path in sorted(CSRC.glob("*.[ch]*")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        source = digest.hexdigest()
    return dict(source_sha256=source, jaxlib=jaxlib, library=_library_id(library))


def read_stamp(build_dir: Path = BUILD_DIR) -> dict:
    """``build.json`` of the last build attempt (``{}`` if none)."""
    try:
        return json.loads((build_dir / STAMP.name).read_text())
    except (OSError, ValueError):
        return {}


def _write_stamp(build_dir: Path, ok: bool, inputs: dict, message: str, by: str) -> None:
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / STAMP.name).write_text(
        json.dumps(dict(inputs, ok=ok, message=message, built_by=by), indent=1) + "\n")


def _run(command: list[str]) -> tuple[bool, str]:
    """Runs one compiler command: whether it succeeded, and the command with its output."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        output, ok = result.stdout + result.stderr, result.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as e:
        output, ok = str(e), False
    return ok, " ".join(command) + "\n\n" + output


def _compile(cxx: str, compile_flags, link_flags, target: Path, build_dir: Path) -> tuple[bool, str]:
    """Compiles every source to an object, one compiler per core at a time, and links them
    into ``target``: whether that worked, and the commands with their output (the log)."""
    objects = Path(tempfile.mkdtemp(prefix=".objects-", dir=build_dir))
    try:
        compiles = [[cxx, *compile_flags, "-c", str(source), "-o", str(objects / f"{source.stem}.o")]
                    for source in SOURCES]
        workers = max(1, min(len(compiles), os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(_run, compiles))
        if all(ok for ok, _ in results):
            results.append(_run([cxx, "-shared", "-fopenmp", *(c[-1] for c in compiles),
                                 "-o", str(target), *link_flags]))
        return all(ok for ok, _ in results), "\n\n".join(out for _, out in results)
    finally:
        shutil.rmtree(objects, ignore_errors=True)


def build(*, if_needed: bool = False, force: bool = False, build_dir: Path = BUILD_DIR,
          by: str = "python -m jconv.onednn.build") -> tuple[bool, str]:
    """Compiles the extension into ``build_dir``; returns ``(built, one line saying what
    happened)``. ``by`` names the caller in ``build.json``; a build that cannot happen
    records why there too, so an installed jconv can say why it has no extension."""
    def cannot(message):
        if by != "python -m jconv.onednn.build":  # the build backend: the wheel says why
            _write_stamp(build_dir, False, {}, message, by)
        return False, message

    why = supported_platform()
    if why:
        return cannot(f"not built: {why}")
    missing = [path for path in SOURCES if not path.exists()]
    if missing and build_dir == BUILD_DIR and read_stamp().get("ok") and EXTENSION.exists():
        return True, f"installed with jconv, built at install: {EXTENSION}"
    if missing:
        return cannot(f"not built: no {missing[0]} (an installed jconv has no csrc/: the "
                      f"build backend builds its extension at install); {REINSTALL}")
    include, library = find_onednn()
    if include is None or library is None:
        what = "headers (include/oneapi/dnnl)" if include is None else LIBRARY_NAME
        return cannot(f"not built: oneDNN {what} not found; pip install {' '.join(WHEELS)}")
    ffi = ffi_include()
    if ffi is None:
        return cannot("not built: jaxlib's XLA FFI headers (xla/ffi/api/ffi.h) not found")
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        return cannot(f"not built: C++ compiler {os.environ.get('CXX', 'g++')!r} not found")
    inputs = fingerprint(library)
    stamp = read_stamp(build_dir)
    extension, log = build_dir / EXTENSION_NAME, build_dir / LOG.name
    if if_needed and not force and {k: stamp.get(k) for k in inputs} == inputs:
        if stamp.get("ok") and extension.exists():
            return True, f"up to date: {extension}"
        if not stamp.get("ok"):
            return False, f"not built: failed before with the same inputs (see {log}); --force"
    build_dir.mkdir(parents=True, exist_ok=True)
    partial = extension.with_suffix(f".{os.getpid()}.tmp")
    compile_flags = ["-O3", "-std=c++17", "-fPIC", "-fvisibility=hidden", "-fopenmp",
                     # no path of the build in the library (__FILE__ of asserts): reproducible
                     f"-ffile-prefix-map={ffi}=jaxlib/include", f"-ffile-prefix-map={include}=include",
                     f"-ffile-prefix-map={CSRC}=csrc", "-I", str(ffi), "-I", str(include)]
    link_flags = ["-L", str(library.parent), f"-l:{library.name}", f"-Wl,-rpath,{RPATH}"]
    ok, output = _compile(cxx, compile_flags, link_flags, partial, build_dir)
    log.write_text(output)
    if not ok:
        partial.unlink(missing_ok=True)
        message = f"not built: {Path(cxx).name} failed (see {log})"
        _write_stamp(build_dir, False, inputs, message, by)
        return False, message
    os.replace(partial, extension)  # atomic: a process loading it sees old or new
    message = f"built {extension}"
    _write_stamp(build_dir, True, inputs, message, by)
    return True, message


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jconv.onednn.build",
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
