"""oneDNN convolutions inside XLA programs: three JAX primitives over FFI handlers.

Letters: ``N`` batch, ``*S`` (``H W``; or ``W``; or ``D H W``) spatial, ``C`` input maps,
``K`` filters, ``G`` groups; kernels ``(*k, C/G, K)`` (``H W I O``). The three passes of
a convolution are three primitives, each a custom call into ``csrc/onednn_conv.cc``:

.. math::

    y &= \\mathrm{fwd}(x, w)                   && (N, *S', K) \\\\
    \\bar x &= \\mathrm{bwd\\_data}(\\bar y, w)   && (N, *S, C)
      = (\\partial y / \\partial x)^T \\bar y \\\\
    \\bar w &= \\mathrm{bwd\\_weights}(x, \\bar y) && (*k, C/G, K)
      = (\\partial y / \\partial w)^T \\bar y

Each is bilinear, and the transpose of each in either argument is another of the three
(``ad.defbilinear``), so ``grad``, ``vjp``, ``jvp``, ``jacfwd`` and ``hessian`` run
oneDNN in every pass. :func:`conv` binds the forward pass; :func:`conv_transpose` (a
transposed conv) binds backward-data, so its own gradients are the forward pass (in
``x``) and backward-weights (in ``w``). ``vmap`` folds a batched activation into ``N``
and maps anything else sequentially.

The shared library is loaded on first use (:func:`status`); ``JCONV_DISABLE_ONEDNN=1``
turns the backend off, checked on every call. float32 runs as float32; bfloat16 runs in
oneDNN's bfloat16 kernels where the CPU has them (avx512_core and newer), else in float32
and is rounded back. Accumulation is always float32, whatever ``precision`` says.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir, xla

from jconv.backends import Backend
from jconv.backends import onednn_transforms as transforms
from jconv.kernels.window import extent, output_size

DTYPES = ("float32", "bfloat16")
"""The dtypes oneDNN computes; others run another kernel (:func:`unavailable`)."""

DISABLE_ENV = "JCONV_DISABLE_ONEDNN"
_TARGETS = {"fwd": "JconvOnednnConvForward", "bwd_data": "JconvOnednnConvBackwardData",
            "bwd_weights": "JconvOnednnConvBackwardWeights"}


# --------------------------------------------------------------------------- loading


@functools.lru_cache(maxsize=1)
def _load() -> tuple[ctypes.CDLL | None, Backend]:
    """Loads the extension and registers its FFI targets, once per process."""
    from jconv.backends import build  # here: python -m jconv.backends.build runs it as main
    def no(reason, **kw):
        return None, Backend("onednn", False, reason, **kw)

    why = build.supported_platform()
    if why:
        return no(why)
    library = build.find_onednn()[1]
    if library is None:
        return no(f"libdnnl ({build.LIBRARY_NAME}) not found: pip install "
                  f"{' '.join(build.WHEELS)}" + (", then python -m jconv.backends.build"
                                                 if build.checkout() else ""))
    found = dict(library=str(library))
    stamp = build.read_stamp()
    rebuild = ("run python -m jconv.backends.build" if build.checkout()
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
        for name, symbol in _TARGETS.items():
            jax.ffi.register_ffi_target(f"jconv_onednn_{name}",
                                        jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    except (AttributeError, RuntimeError, ValueError) as e:
        return no(f"registering the FFI handlers failed (built against jaxlib "
                  f"{stamp.get('jaxlib')}): {e}; {rebuild}", **found)
    version = lib.jconv_onednn_version()
    bf16 = ("bfloat16" if _native_bfloat16(lib)
            else "bfloat16 (computed in float32: this CPU has no oneDNN bfloat16 kernels)")
    return lib, Backend("onednn", True, f"oneDNN {version // 10000}.{version // 100 % 100} "
                        "loaded; conv forward, backward-data and backward-weights on CPU; "
                        + openmp,
                        dtypes=("float32", bf16),
                        version=f"{version // 10000}.{version // 100 % 100}.{version % 100}",
                        **found)


WAIT_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


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


_LOCK = threading.Lock()


_OFF = contextvars.ContextVar("jconv_onednn_off", default=False)


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
        return Backend("onednn", False, "turned off by jconv.backends.onednn.disabled()")
    with _LOCK:
        return _load()[1]


def unavailable(backend: str, dtype) -> str | None:
    """None if oneDNN can run a conv of ``dtype`` on ``backend``, else why not."""
    if backend != "cpu":
        return f"oneDNN runs on the CPU, and this call runs on {backend}"
    name = np.dtype(dtype).name
    if name not in DTYPES:
        return f"oneDNN computes float32 and bfloat16, not {name}"
    st = status()
    return None if st.available else st.reason


def _library() -> ctypes.CDLL:
    st = status()
    if not st.available:
        raise RuntimeError(f"impl='onednn' is unavailable: {st.reason}")
    with _LOCK:
        return _load()[0]


@functools.lru_cache(maxsize=1)
def _native_bfloat16(lib) -> bool:
    return bool(lib.jconv_onednn_supports(1))


def cache_size() -> int:
    """Primitives in the extension's cache (bounded, least recently used evicted first)."""
    return _library().jconv_onednn_cache_size()


def set_cache_capacity(capacity: int) -> None:
    """Bounds the extension's primitive cache (default 256)."""
    _library().jconv_onednn_set_cache_capacity(int(capacity))


# --------------------------------------------------------------------------- primitives


def _out_shape(x_shape, w_shape, stride, dilation, pads):
    out = tuple(output_size(s, extent(k, d), st, p) for s, k, d, st, p in
                zip(x_shape[1:-1], w_shape[:-2], dilation, stride, pads))
    return (x_shape[0], *out, w_shape[-1])  # (N, *S', K)


def _fwd_abstract(x, w, *, stride, dilation, pads, groups, sizes):
    return jax.core.ShapedArray(_out_shape(x.shape, w.shape, stride, dilation, pads), x.dtype)


def _bwd_data_abstract(dy, w, *, stride, dilation, pads, groups, sizes):
    return jax.core.ShapedArray((dy.shape[0], *sizes, w.shape[-2] * groups), dy.dtype)


def _bwd_weights_abstract(x, dy, *, stride, dilation, pads, groups, sizes):
    return jax.core.ShapedArray((*sizes, x.shape[-1] // groups, dy.shape[-1]), x.dtype)


def _primitive(name, abstract):
    prim = Primitive(f"jconv_onednn_{name}")
    prim.def_impl(functools.partial(xla.apply_primitive, prim))
    prim.def_abstract_eval(abstract)
    mlir.register_lowering(prim, transforms.lowering(f"jconv_onednn_{name}", abstract,
                                           reduces_batch=name == "bwd_weights"),
                           platform="cpu",
                           cacheable=False)
    transforms.REQUIRES_DEVICES.add(prim)  # so a jit over several devices lowers with them known
    batching.primitive_batchers[prim] = transforms.batcher(prim, name)
    return prim


fwd_p = _primitive("fwd", _fwd_abstract)
bwd_data_p = _primitive("bwd_data", _bwd_data_abstract)
bwd_weights_p = _primitive("bwd_weights", _bwd_weights_abstract)


def _with(params, sizes):
    return dict(params, sizes=tuple(int(s) for s in sizes))


# y = fwd(x, w): x-bar = bwd_data(y-bar, w), w-bar = bwd_weights(x, y-bar).
ad.defbilinear(
    fwd_p,
    lambda ct, x, w, **p: bwd_data_p.bind(ct, w, **_with(p, x.aval.shape[1:-1])),
    lambda ct, x, w, **p: bwd_weights_p.bind(x, ct, **_with(p, w.aval.shape[:-2])))
# dx = bwd_data(dy, w): linear in dy with transpose fwd(., w); in w, bwd_weights(., dy).
ad.defbilinear(
    bwd_data_p,
    lambda ct, dy, w, **p: fwd_p.bind(ct, w, **_with(p, ())),
    lambda ct, dy, w, **p: bwd_weights_p.bind(ct, dy, **_with(p, w.aval.shape[:-2])))
# dw = bwd_weights(x, dy): in x, bwd_data(dy, .); in dy, fwd(x, .).
ad.defbilinear(
    bwd_weights_p,
    lambda ct, x, dy, **p: bwd_data_p.bind(dy, ct, **_with(p, x.aval.shape[1:-1])),
    lambda ct, x, dy, **p: fwd_p.bind(x, ct, **_with(p, ())))


def _check(name, x, w, preferred_element_type=None):
    """``x, w`` as oneDNN computes them, after checking what it takes."""
    if preferred_element_type is not None:
        raise NotImplementedError(f"onednn {name}: preferred_element_type is not supported")
    if np.dtype(x.dtype).name not in DTYPES or x.dtype != w.dtype:
        raise TypeError(f"onednn {name}: x.dtype={x.dtype}, w.dtype={w.dtype}; expected both "
                        f"float32 or both bfloat16")
    lib = _library()
    if x.dtype == jnp.bfloat16 and not _native_bfloat16(lib):
        return x.astype(jnp.float32), w.astype(jnp.float32)  # no bfloat16 kernels here
    return x, w


def conv(x, w, stride, pads, dilation, groups=1, lhs_dilation=None, precision=None,
         preferred_element_type=None):
    r"""Channels-last grouped conv by oneDNN: ``x (N, *S, C)``, ``w (*k, C/G, K)``.

    .. math:: y[n, p, k] = \sum_t \sum_{c \in g(k)} x_{pad}[n, p s + t d, c]\, w[t, c - g_0(k), k]

    The kernel signature of :mod:`jconv.kernels.einsum_conv` (``stride``, ``dilation``:
    one int per spatial axis; ``pads``: one ``(low, high)`` pair per axis). Every
    derivative is one of the three oneDNN primitives. ``precision`` is accepted and
    ignored: oneDNN accumulates in float32.

    Returns:
      ``(N, *S', K)`` with ``S' = (S + low + high - (k - 1) * d - 1) // s + 1``.

    Raises:
      RuntimeError: the extension is unavailable (:func:`status` says why).
      TypeError: a dtype other than float32 or bfloat16.
      NotImplementedError: ``lhs_dilation`` or ``preferred_element_type``.
    """
    if lhs_dilation is not None and any(d != 1 for d in lhs_dilation):
        raise NotImplementedError("onednn conv: lhs_dilation (a transposed conv) is not "
                                  "supported; use impl='lax'")
    dtype = x.dtype
    x, w = _check("conv", x, w, preferred_element_type)
    params = dict(stride=tuple(int(s) for s in stride),
                  dilation=tuple(int(d) for d in dilation),
                  pads=tuple((int(lo), int(hi)) for lo, hi in pads), groups=int(groups),
                  sizes=())
    return fwd_p.bind(x, w, **params).astype(dtype)


def conv_transpose(x, w, stride, pads, dilation, groups=1, sizes=None, precision=None,
                   preferred_element_type=None):
    r"""Transposed conv by oneDNN: the input-gradient of the conv of window ``pads``.

    ``x (N, *S, C)``, ``w (*k, C/G, K)`` (jconv's and PyTorch's grouping: group ``g``
    maps inputs ``g*C/G ...`` to filters ``g*K/G ...``). The result is the VJP of the
    forward conv ``(N, *sizes, K) -> (N, *S, C)`` with window ``stride``, ``pads``,
    ``dilation``, ``groups`` and kernel ``w'[t, j, g C/G + i] = w[t, i, g K/G + j]``:

    .. math:: y[n, p s + t d - lo, k] \mathrel{+}= \sum_{c \in g(k)} x[n, p, c]\, w[t, c - g_0, k]

    for ``0 <= p s + t d - lo < sizes``. That is one oneDNN backward-data call, so the
    gradient in ``x`` is one forward call and the gradient in ``w`` one backward-weights
    call (``x`` in the role of the output gradient).

    Args:
      x: ``(N, *S, C)``.
      w: ``(*k, C/G, K)``.
      stride, dilation: one int per spatial axis (of the forward conv).
      pads: one ``(low, high)`` pair per axis, of the forward conv: ``low >= 0``;
        ``high`` may be negative (output positions no window reaches, which are zero).
      groups: ``G``, dividing ``C`` and ``K``.
      sizes: the output's spatial sizes, with ``(sizes + low + high - (k - 1) d - 1) //
        s + 1 == S``; default ``(S - 1) s + (k - 1) d + 1 - low - high``.
      precision: accepted and ignored (oneDNN accumulates in float32).

    Returns:
      ``(N, *sizes, K)``.

    Raises:
      RuntimeError: the extension is unavailable (:func:`status` says why).
      TypeError: a dtype other than float32 or bfloat16.
      ValueError: ``sizes`` whose forward conv does not give ``S``.
    """
    dtype = x.dtype
    kernel, (ci, k) = w.shape[:-2], w.shape[-2:]
    full = [(s - 1) * st + (kk - 1) * d + 1 - lo - hi for s, kk, st, d, (lo, hi)
            in zip(x.shape[1:-1], kernel, stride, dilation, pads)]
    sizes = full if sizes is None else [int(s) for s in sizes]
    if not all(f <= s < f + st for f, s, st in zip(full, sizes, stride)):
        raise ValueError(f"onednn conv_transpose: sizes={tuple(sizes)}; expected from "
                         f"{tuple(full)} up to stride - 1 more per axis (stride {tuple(stride)})")
    x, w = _check("conv_transpose", x, w, preferred_element_type)
    g = int(groups)
    w = w.reshape(*kernel, ci, g, k // g)  # (*k, C/G, G, K/G)
    w = jnp.swapaxes(w, -3, -1).reshape(*kernel, k // g, g * ci)  # (*k, K/G, C)
    # oneDNN takes a high pad above -stride; a lower one crops rows no window reads,
    # whose gradient is zero: those are cut from oneDNN's output and padded back.
    extra = [max(0, -hi - st + 1) for (_, hi), st in zip(pads, stride)]
    y = bwd_data_p.bind(x, w, stride=tuple(int(s) for s in stride),
                        dilation=tuple(int(d) for d in dilation),
                        pads=tuple((int(lo), int(hi + e)) for (lo, hi), e in zip(pads, extra)),
                        groups=g, sizes=tuple(int(s - e) for s, e in zip(sizes, extra)))
    if any(extra):
        y = jnp.pad(y, ((0, 0), *((0, e) for e in extra), (0, 0)))  # (N, *sizes, K)
    return y.astype(dtype)
