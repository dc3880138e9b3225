"""Where jconv's kernels come from: XLA itself, and optional compiled libraries.

``jconv.backends()`` says, for each backend, whether it can run here and why (not):

* ``lax``: XLA's own ops; always there.
* ``onednn``: oneDNN called from XLA through its FFI, ``impl="onednn"`` of the conv ops
  (:mod:`.onednn`) and of ``max_pool``, ``avg_pool`` and ``local_response_norm``
  (:mod:`.onednn_pool`): each pass a primitive made by :mod:`.primitive`, from the one
  library that :mod:`.library` loads. It needs Linux x86-64, the ``onednn-cpu-gomp`` wheel
  (``libdnnl.so.3``) and the extension: built by the build backend at ``pip install``
  (``setup.py``), or in a checkout by ``python -m jconv.backends.build`` (:mod:`.build`,
  run by ``scripts/_venv.sh``). ``JCONV_DISABLE_ONEDNN=1`` turns it off.

Where oneDNN is unavailable, or a call's dtype or device is one it does not take, the op
runs ``lax`` instead and :func:`jconv.which_impl` says why. An op asked for
``impl="onednn"`` by name where oneDNN cannot run at all warns once per process
(:class:`ImplUnavailableWarning`), or raises with ``JCONV_STRICT_IMPL=1``.

>>> import jconv
>>> b = jconv.backends()
>>> sorted(b), b["lax"].available
(['lax', 'onednn'], True)
>>> b["onednn"].reason   # e.g. 'oneDNN 3.2 loaded; ...' or 'extension not built ...'
'...'
"""

from __future__ import annotations

import dataclasses
import sys
import types

__all__ = ["Backend", "ImplUnavailableWarning", "backends"]


class ImplUnavailableWarning(RuntimeWarning):
    """An op was asked for ``impl="onednn"`` by name, and oneDNN cannot run in this
    process: the message says why and how to get it; ``lax`` runs instead."""


@dataclasses.dataclass(frozen=True)
class Backend:
    """One backend and whether it can run here.

    Attributes:
      name: ``"lax"`` or ``"onednn"``.
      available: whether ops can run on it in this process.
      reason: why (or why not), in one line.
      dtypes: the dtypes it computes (with how, where it matters).
      library, extension: paths of the library found and the extension built, if any.
      version: the library's version, once loaded.
    """

    name: str
    available: bool
    reason: str
    dtypes: tuple[str, ...] = ()
    library: str | None = None
    extension: str | None = None
    version: str | None = None


LAX = Backend("lax", True, "XLA's own ops; always available",
              dtypes=("float16", "bfloat16", "float32", "float64"))


def backends() -> dict[str, Backend]:
    """Every backend by name: can it run here, and why (not).

    Loads the oneDNN extension if it is built and not disabled (once per process).
    """
    from jconv.backends import onednn
    return {"lax": LAX, "onednn": onednn.status()}


class _Module(types.ModuleType):
    """This package, callable: ``jconv.backends()`` is :func:`backends`, while
    ``jconv.backends.onednn`` and ``jconv.backends.build`` stay its modules."""

    def __call__(self) -> dict[str, Backend]:
        return backends()


sys.modules[__name__].__class__ = _Module
