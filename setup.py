"""The oneDNN extension, built by the build backend (``pip install .``, ``python -m build``).

Everything else about the package is in ``pyproject.toml``. ``build_ext`` compiles with
:mod:`jconv.onednn.build` (loaded by path: it imports neither jax nor jconv), the same
compile as ``python -m jconv.onednn.build`` in a checkout, against the headers of the
build environment (``[build-system] requires``: jaxlib, onednn-devel-cpu-gomp). The
extension is optional: where it cannot be built (no compiler, not Linux x86-64, a failed
compile) the install goes on without it, says so in one line, and records why in
``jconv/onednn/_build/build.json``, which ``jconv.backends()`` reports.

The library is no Python extension module (it is loaded by ctypes and talks to XLA's C
API only), so the wheel is tagged ``py3-none-<platform>``: one wheel for every Python.
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
NAME = "jconv.onednn._build.libjconv_onednn"


def _build_module():
    spec = importlib.util.spec_from_file_location(
        "_jconv_build", ROOT / "jconv" / "onednn" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildOnednn(build_ext):
    """Compiles the extension into the wheel (or, editable, into the source tree)."""

    def get_ext_filename(self, fullname):
        if fullname == NAME:
            return str(Path(*NAME.split(".")[:-1], "libjconv_onednn.so"))
        return super().get_ext_filename(fullname)

    def copy_extensions_to_source(self):
        pass  # an editable build writes into the source tree itself (build_extension)

    def build_extension(self, ext):
        build = _build_module()
        editable = self.inplace or getattr(self, "editable_mode", False)
        target = build.BUILD_DIR if editable else Path(self.build_lib, *NAME.split(".")[:-1])
        if not editable:  # build/ persists between pip's in-tree builds: no stale library
            (target / build.EXTENSION_NAME).unlink(missing_ok=True)
        ok, message = build.build(build_dir=target, by="setup.py build_ext",
                                  if_needed=editable)
        if not ok:
            message += "; jconv installs without impl='onednn' (jconv.backends() says why)"
        print(f"jconv oneDNN extension: {message}", file=sys.stderr if not ok else sys.stdout)


class PlatformWheel(bdist_wheel):
    def get_tag(self):
        return ("py3", "none", super().get_tag()[2])


setup(ext_modules=[Extension(NAME, sources=[])],
      cmdclass={"build_ext": BuildOnednn, "bdist_wheel": PlatformWheel})
