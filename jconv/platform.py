"""Where jconv's kernels come from: XLA itself, and optional compiled libraries.

``jconv.backends()`` (:func:`backends`) says, for each backend, whether it can run here and
why (not):

* ``lax``: XLA's own ops; always there.
* ``onednn``: oneDNN called from XLA through its FFI (:mod:`jconv.onednn`),
  ``impl="onednn"`` of the conv ops and of ``max_pool``, ``avg_pool`` and
  ``local_response_norm``. It needs Linux x86-64, the ``onednn-cpu-gomp`` wheel
  (``libdnnl.so.3``) and the extension: built by the build backend at ``pip install``
  (``setup.py``), or in a checkout by ``python -m jconv.onednn.build`` (run by
  ``scripts/_venv.sh``). ``JCONV_DISABLE_ONEDNN=1`` turns it off.

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

from jconv.onednn import library
from jconv.onednn.library import Backend, ImplUnavailableWarning

__all__ = ["Backend", "ImplUnavailableWarning", "backends"]

LAX = Backend("lax", True, "XLA's own ops; always available",
              dtypes=("float16", "bfloat16", "float32", "float64"))


def backends() -> dict[str, Backend]:
    """Every backend by name: can it run here, and why (not).

    Loads the oneDNN extension if it is built and not disabled (once per process).
    """
    return {"lax": LAX, "onednn": library.status()}
