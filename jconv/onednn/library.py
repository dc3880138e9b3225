"""The oneDNN extension's loader: finds and loads the library, registers every FFI target.

One shared library (``jconv/onednn/_build/libjconv_onednn.so``, from ``csrc/`` by
:mod:`jconv.onednn.build`) holds every pass, convolutions and pooling alike. It is loaded
on first use, once per process, and every target of :data:`TARGETS` is registered with XLA
then; :func:`status` says whether that worked and why (not). ``JCONV_DISABLE_ONEDNN=1``
turns the backend off, and :func:`disabled` turns it off for what is traced inside it;
both are checked on every call. The library keeps two bounded primitive caches, one for
convolutions and one for pooling and LRN (:func:`cache_size`, :func:`set_cache_capacity`).

>>> from jconv.onednn import library
>>> sorted(library.TARGETS)[:3]
['avg_bwd', 'avg_fwd', 'bn_grad_sums']
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import dataclasses
import functools
import os
import threading

import jax

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


DISABLE_ENV = "JCONV_DISABLE_ONEDNN"
WAIT_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

TARGETS = {
    "fwd": "JconvOnednnConvForward", "bwd_data": "JconvOnednnConvBackwardData",
    "bwd_weights": "JconvOnednnConvBackwardWeights",
    "max_fwd": "JconvOnednnMaxPoolForward", "max_bwd": "JconvOnednnMaxPoolBackward",
    "avg_fwd": "JconvOnednnAvgPoolForward", "avg_bwd": "JconvOnednnAvgPoolBackward",
    "lrn_fwd": "JconvOnednnLrnForward", "lrn_bwd": "JconvOnednnLrnBackward",
    **dict.fromkeys(("mm_fwd", "mm_bwd_data", "mm_bwd_weights"), "JconvOnednnMatmul"),
    "sgd_update": "JconvSgdUpdate", "bn_sums": "JconvBnSums", "bn_grad_sums": "JconvBnGradSums"}
"""Every pass in the library: the FFI target ``jconv_onednn_<name>`` and its C symbol."""

_FAMILIES = ("conv", "pool")  # the C functions of csrc/onednn_conv.cc, csrc/onednn_pool.cc
_LOCK = threading.Lock()
_OFF = contextvars.ContextVar("jconv_onednn_off", default=False)


def target(name: str) -> str:
    """The FFI target of pass ``name`` (a key of :data:`TARGETS`)."""
    if name not in TARGETS:
        raise KeyError(f"no oneDNN pass {name!r} in the extension; passes: {sorted(TARGETS)}")
    return f"jconv_onednn_{name}"


def _register(lib) -> None:
    for name, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(target(name), jax.ffi.pycapsule(getattr(lib, symbol)),
                                    platform="cpu")


def _symbol(family: str, name: str) -> str:
    """``jconv_onednn_<name>`` (conv) or ``jconv_onednn_pool_<name>`` (pooling and LRN)."""
    if family not in _FAMILIES:
        raise ValueError(f"family={family!r}; expected one of {_FAMILIES}")
    return f"jconv_onednn_{'pool_' if family == 'pool' else ''}{name}"


@functools.lru_cache(maxsize=1)
def _load() -> tuple[ctypes.CDLL | None, Backend]:
    """Loads the extension and registers its FFI targets, once per process."""
    from jconv.onednn import build  # here: python -m jconv.onednn.build runs it as main
    def no(reason, **kw):
        return None, Backend("onednn", False, reason, **kw)

    why = build.supported_platform()
    if why:
        return no(why)
    library = build.find_onednn()[1]
    if library is None:
        return no(f"libdnnl ({build.LIBRARY_NAME}) not found: pip install "
                  f"{' '.join(build.WHEELS)}" + (", then python -m jconv.onednn.build"
                                                 if build.checkout() else ""))
    found = dict(library=str(library))
    stamp = build.read_stamp()
    rebuild = ("run python -m jconv.onednn.build" if build.checkout()
               else build.REINSTALL)
    if not build.EXTENSION.exists() or not stamp.get("ok"):
        by = f" by {stamp['built_by']}" if stamp.get("built_by") else ""
        what = stamp.get("message", "").removeprefix("not built: ")
        last = f" (last attempt{by}: {what})" if what else ""
        return no(f"extension not built{last}: {rebuild}", **found)
    if build.checkout():  # a source tree: sources, jaxlib or oneDNN changed since the build?
        inputs = build.fingerprint(library)
        changed = [k for k in inputs if stamp.get(k) != inputs[k]]
        if changed:
            return no(f"extension is stale ({', '.join(changed)} changed since it was built): "
                      f"{rebuild}", **found)
    found["extension"] = str(build.EXTENSION)
    openmp = _openmp_wait_policy()
    try:  # libdnnl from its wheel first: the extension names it by soname, no absolute path
        ctypes.CDLL(str(library))
        lib = ctypes.CDLL(str(build.EXTENSION))
    except OSError as e:
        return no(f"extension failed to load: {e}; {rebuild}", **found)
    try:
        _register(lib)
    except (AttributeError, RuntimeError, ValueError) as e:
        return no(f"registering the FFI handlers failed (built against jaxlib "
                  f"{stamp.get('jaxlib')}): {e}; {rebuild}", **found)
    version = lib.jconv_onednn_version()
    bf16 = ("bfloat16" if lib.jconv_onednn_supports(1)
            else "bfloat16 (computed in float32: this CPU has no oneDNN bfloat16 kernels)")
    return lib, Backend("onednn", True, f"oneDNN {version // 10000}.{version // 100 % 100} "
                        "loaded; conv forward, backward-data and backward-weights on CPU; "
                        + openmp,
                        dtypes=("float32", bf16),
                        version=f"{version // 10000}.{version // 100 % 100}.{version % 100}",
                        **found)


def _openmp_wait_policy() -> str:
    """Makes oneDNN's OpenMP threads sleep, not spin, while they wait; says what it did.

    libgomp's default spins at every barrier. Beside XLA's own thread pool, or with any
    other busy process on the machine, the spinning threads take the cores the team is
    waiting for, and a 0.2 ms conv then takes 10-30 ms (2-core CPU: medians of 40 calls
    went from 0.20 to 16 ms, and a conv's forward+backward from 8 to 32-46 ms, with
    other jobs running; ``OMP_WAIT_POLICY=PASSIVE`` kept them at 0.3-0.4 and 8-14 ms).
    libgomp reads the variable once, when it is loaded: this runs before the extension
    loads it, and leaves the choice to anyone who set either variable of
    :data:`WAIT_ENV`, or loaded OpenMP already.
    """
    mine = [v for v in WAIT_ENV if v in os.environ]
    if mine:
        return f"OpenMP waits as {mine[0]}={os.environ[mine[0]]} says"
    try:
        with open("/proc/self/maps") as f:
            if "libgomp" in f.read():
                return "OpenMP was loaded before oneDNN, with its own wait policy"
    except OSError:
        pass
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "OpenMP threads sleep while they wait (OMP_WAIT_POLICY=PASSIVE)"


@contextlib.contextmanager
def disabled():
    """Calls traced inside run as if oneDNN were unavailable (``auto``'s other rules decide).

    For XLA's own FLOP count of a program: ``cost_analysis()`` counts nothing inside a
    custom call, so a program of oneDNN calls reports only its elementwise work. ``jit``
    caches what it traced by function, so trace a function it has not traced yet::

        with onednn.disabled():
            flops = jax.jit(lambda x: f(x)).lower(x).compile().cost_analysis()["flops"]
    """
    token = _OFF.set(True)
    try:
        yield
    finally:
        _OFF.reset(token)


def turned_off() -> bool:
    """Whether oneDNN is off on purpose: ``JCONV_DISABLE_ONEDNN``, or :func:`disabled`."""
    return os.environ.get(DISABLE_ENV, "") not in ("", "0") or _OFF.get()


def status() -> Backend:
    """Whether ``impl="onednn"`` can run here, and why (not); loads the extension once."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return Backend("onednn", False, f"disabled by {DISABLE_ENV}={os.environ[DISABLE_ENV]}")
    if _OFF.get():
        return Backend("onednn", False, "turned off by jconv.onednn.disabled()")
    with _LOCK:
        return _load()[1]


def library() -> ctypes.CDLL:
    """The loaded extension, its FFI targets registered.

    Raises:
      RuntimeError: oneDNN is unavailable here (:func:`status` says why).
    """
    st = status()
    if not st.available:
        raise RuntimeError(f"impl='onednn' is unavailable: {st.reason}")
    with _LOCK:
        return _load()[0]


@functools.lru_cache(maxsize=None)
def _native_bfloat16(lib, family: str) -> bool:
    return bool(getattr(lib, _symbol(family, "supports"))(1))


def native_bfloat16(family: str) -> bool:
    """Whether the ``family`` (``"conv"`` or ``"pool"``) passes compute bfloat16 in
    oneDNN's bfloat16 kernels here; where not, jconv runs them in float32."""
    return _native_bfloat16(library(), family)


def cache_size(family: str) -> int:
    """Primitives in the ``family``'s cache (bounded, least recently used evicted first)."""
    return getattr(library(), _symbol(family, "cache_size"))()


def set_cache_capacity(family: str, capacity: int) -> None:
    """Bounds the ``family``'s primitive cache (default 256)."""
    getattr(library(), _symbol(family, "set_cache_capacity"))(int(capacity))
