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

import ctypes
import sys

from jconv.onednn import library
from jconv.onednn.library import Backend, ImplUnavailableWarning

__all__ = ["Backend", "ImplUnavailableWarning", "backends", "keep_freed_memory"]

LAX = Backend("lax", True, "XLA's own ops; always available",
              dtypes=("float16", "bfloat16", "float32", "float64"))


def backends() -> dict[str, Backend]:
    """Every backend by name: can it run here, and why (not).

    Loads the oneDNN extension if it is built and not disabled (once per process).
    """
    return {"lax": LAX, "onednn": library.status()}


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters (malloc.h)
KEEP_BELOW = 1 << 30
"""Blocks below this size (1 GiB) are kept by the process when freed (:func:`keep_freed_memory`)."""


def keep_freed_memory(limit: int = KEEP_BELOW) -> bool:
    """Lets glibc's ``malloc`` keep freed blocks below ``limit`` bytes for reuse, rather than
    return them to the system; True where it did (Linux with glibc), False elsewhere.

    By default glibc serves a block larger than 32 MB with a fresh ``mmap`` and unmaps it
    when freed, so every training step touches its large activations' pages for the first
    time again: a page fault per 4 KiB. XLA:CPU allocates the step's buffers anew on every
    call, and PyTorch its tensors, so both pay it. Raising the ``mmap`` and trim thresholds
    (``mallopt``) serves those blocks from the heap, which keeps its pages. Measured: the
    MobileNet v1 training step at batch 16, 224², on 2 cores, took 827 ms without and
    595–603 ms with it; PyTorch's the same network 673 and 519 ms. The price: memory freed
    stays with the process, up to its peak (as in any caching allocator).

    Every thread allocates from the one main arena (``M_ARENA_MAX`` 1): glibc gives a thread
    that meets a busy arena one of its own, whose heaps are at most 64 MB, and serves larger
    blocks there by ``mmap`` whatever the threshold. XLA runs a call on whichever thread of its
    pool is free, so without it a large call faulted its pages in again on some calls and not
    others (the depthwise-separable forward of 767 images, 603 MB of output: 100 or 210 µs an
    image, call by call; 93–102 µs with one arena).

    ``jconv``'s command line (``jconv run``, ``jconv bench``, ...) calls it at start; a
    program that imports jconv calls it itself if it wants it.

    >>> import jconv.platform
    >>> jconv.platform.keep_freed_memory() in (True, False)
    True
    """
    if not (isinstance(limit, int) and 0 < limit < 2 ** 31):
        raise ValueError(f"limit={limit!r}; expected an int of bytes in (0, 2**31)")
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc's; absent from musl and others
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return (bool(mallopt(_M_MMAP_THRESHOLD, limit)) and bool(mallopt(_M_TRIM_THRESHOLD, limit))
            and bool(mallopt(_M_ARENA_MAX, 1)))
