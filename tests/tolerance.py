"""The one tolerance helper of the test suite.

``tolerance(dtype, kind=..., backend=...)`` returns ``dict(rtol=..., atol=...)``;
``assert_close(actual, expected, ...)`` compares in float64 with those tolerances,
the absolute tolerance being scaled by ``max(1, max|expected|)``.

Kinds:
* ``"value"``: forward results computed at ``Precision.HIGHEST`` vs the float64 reference;
* ``"grad"``: numerical gradient checks (``jax.test_util.check_grads``), float64/float32 only.

This module does not need jax: it only looks at ``sys.modules`` to detect the backend of an
already imported jax when ``backend`` is not given.
"""

import sys

import numpy as np

_TOLERANCES = {
    "value": {
        "float64": (1e-10, 1e-10),
        "float32": (2e-5, 2e-5),
        "float16": (1e-2, 1e-2),
        "bfloat16": (5e-2, 5e-2),
    },
    "grad": {
        "float64": (1e-5, 1e-5),
        "float32": (5e-2, 5e-2),
    },
}

# Accelerators reorder reductions (and may use other kernels): float32 forward values x10 looser.
_BACKEND_FACTOR = {"cpu": {}, "gpu": {"float32": 10.0}, "tpu": {"float32": 10.0}}
_BACKEND_ALIASES = {"cuda": "gpu", "rocm": "gpu", "metal": "gpu"}
_DTYPE_ALIASES = {"complex64": "float32", "complex128": "float64"}


def _dtype_name(dtype):
    if isinstance(dtype, str):
        name = dtype
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = getattr(dtype, "name", None) or getattr(dtype, "__name__", str(dtype))
    name = _DTYPE_ALIASES.get(name, name)
    if name.startswith(("int", "uint", "bool")):
        return "exact"
    return name


def _backend_name(backend):
    if backend is None:
        jax = sys.modules.get("jax")  # never import jax here
        backend = jax.default_backend() if jax is not None else "cpu"
    backend = _BACKEND_ALIASES.get(backend.lower(), backend.lower())
    if backend not in _BACKEND_FACTOR:
        raise ValueError(f"unknown backend {backend!r}")
    return backend


def tolerance(dtype, *, kind="value", backend=None):
    """dict(rtol=..., atol=...) for results of ``dtype`` (name, numpy/jax dtype or scalar type).

    backend None -> the backend of an already imported jax, else "cpu"; "gpu"/"tpu" loosen
    float32 forward values by x10.  Integer/bool dtypes compare exactly.
    """
    if kind not in _TOLERANCES:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(_TOLERANCES)}")
    name = _dtype_name(dtype)
    if name == "exact":
        return dict(rtol=0.0, atol=0.0)
    if name not in _TOLERANCES[kind]:
        raise KeyError(f"no {kind!r} tolerance for dtype {name!r}; known: {sorted(_TOLERANCES[kind])}")
    rtol, atol = _TOLERANCES[kind][name]
    if kind == "value":
        factor = _BACKEND_FACTOR[_backend_name(backend)].get(name, 1.0)
        rtol, atol = rtol * factor, atol * factor
    return dict(rtol=rtol, atol=atol)


def _to_numpy64(a):
    a = np.asarray(a)
    return a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)


def assert_close(actual, expected, *, dtype=None, kind="value", backend=None, err_msg=""):
    """np.testing.assert_allclose in float64 with ``tolerance(dtype or actual.dtype, ...)``;
    atol is multiplied by max(1, max|expected|) (finite entries only). Shapes must match."""
    if dtype is None:
        dtype = getattr(actual, "dtype", None)
        if dtype is None:
            dtype = np.asarray(actual).dtype
    tol = tolerance(dtype, kind=kind, backend=backend)
    actual, expected = _to_numpy64(actual), _to_numpy64(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"shape mismatch: actual {actual.shape} vs expected {expected.shape}. {err_msg}")
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, float(finite.max(initial=0.0)))
    np.testing.assert_allclose(
        actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale,
        err_msg=f"{err_msg} (dtype={_dtype_name(dtype)}, kind={kind}, {tol}, atol scale={scale:g})",
    )
