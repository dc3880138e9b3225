"""Exact integer counts under ``jit`` and ``vmap``, in ``int32`` limbs.

JAX runs with 32-bit integers (``jax_enable_x64`` off), and a layer's FLOPs pass
``2**31`` long before they pass anything interesting; ``float32`` is exact only below
``2**24``. A :class:`Count` holds an integer as base-``2**14`` ``int32`` limbs, so every
limb product and the short sums of a multiplication stay below ``2**31``, and converts
to an exact Python int (or an ``int64`` array) on the host.

>>> import jax, jax.numpy as jnp, numpy as np
>>> c = jax.jit(lambda k: Count.of(k) * 8 * 224 * 224 * 9 * 64)(64)   # MACs of a layer
>>> c
Count(14797504512)
>>> int(c * c)                       # past 2**53, exact
218966139782660358144
>>> np.asarray(jax.vmap(lambda k: Count.of(k) * 2**40)(jnp.arange(1, 4)))
array([1099511627776, 2199023255552, 3298534883328])
"""

from __future__ import annotations

import functools
import math
import operator

import jax
import jax.numpy as jnp
import numpy as np

BITS = 14
BASE = 1 << BITS
MASK = BASE - 1
LIMB = 1 << 15  # |limb| <= LIMB below the top limb, so a product of two fits int32
_MAX_WIDTH = 510  # limbs: a product's limbs then stay below 2**28 before their carry round
_STEP = 3  # widths are multiples of the 3 limbs of an int32


def _width(bound: int) -> int:
    """Limbs for values of magnitude at most ``bound``: the smallest multiple of ``_STEP``
    with ``4*bound < BASE**L``. The margin keeps the top limb below ``BASE/4 + 3`` in
    magnitude (see :func:`_normalize`)."""
    width = max(1, -(-(4 * bound).bit_length() // BITS))
    width = -(-width // _STEP) * _STEP  # fewer distinct widths: fewer compiles
    if width > _MAX_WIDTH:
        raise OverflowError(f"Count: a bound of 2**{bound.bit_length()} needs {width} limbs; "
                            f"at most {_MAX_WIDTH} are supported")
    return width


def _constant(value: int) -> np.ndarray:
    n = _width(abs(value))
    return np.array([(value >> (BITS * i)) & MASK for i in range(n - 1)]
                    + [value >> (BITS * (n - 1))], np.int32)


def _same_rank(a, b):
    """Leading axes of size 1, so that batch axes broadcast without rank promotion."""
    a = a.reshape((1,) * (b.ndim - a.ndim) + a.shape)
    b = b.reshape((1,) * (a.ndim - b.ndim) + b.shape)
    return a, b


def _pad(limbs, before: int, after: int):
    return jnp.pad(limbs, [(0, 0)] * (limbs.ndim - 1) + [(before, after)])


def _normalize(raw, width: int):
    """Limbs ``(..., width)`` of the value ``sum_i raw[..., i] * BASE**i``.

    ``raw`` entries must be below ``2**28`` in magnitude (a product's limbs are sums of at
    most ``_MAX_WIDTH`` halves of limb products, each below ``2**17``), and the value at
    most ``bound`` with ``width = _width(bound)``. One carry round brings every limb but
    the top one within ``2**14 + 2**14 = LIMB``; limbs past ``width`` are folded into the
    top limb modulo ``2**32``, which is exact because the top limb's true value is small:
    ``|value| / BASE**(width-1)`` plus at most ``2 BASE/(BASE-1)`` from the limbs below,
    under ``BASE/4 + 3``.
    """
    if raw.shape[-1] < width:
        raw = _pad(raw, 0, width - raw.shape[-1])
    n = raw.shape[-1]
    if n > 1:  # keep the low 14 bits below the top; carry the rest one limb up
        top = np.arange(n) == n - 1
        raw = jnp.where(top, raw, raw & MASK) + _pad((raw >> BITS)[..., :-1], 1, 0)
    if n > width:  # int32 arithmetic wraps; BASE**3 = 2**42 vanishes modulo 2**32
        folded = sum(raw[..., width - 1 + j] << (BITS * j) for j in range(min(3, n - width + 1)))
        raw = jnp.concatenate([raw[..., :width - 1], folded[..., None]], axis=-1)
    return raw


# Each operation is one jitted function of the limbs (static: the result's width), so an
# eager vmap dispatches one call per operation instead of one per primitive.

@functools.partial(jax.jit, static_argnums=1)
def _split(x, width: int):
    """Limbs ``(..., width)`` of an integer array."""
    limbs = [(x >> (BITS * i)) & MASK for i in range(width - 1)] + [x >> (BITS * (width - 1))]
    return jnp.stack([limb.astype(jnp.int32) for limb in limbs], axis=-1)


@functools.partial(jax.jit, static_argnums=2)
def _add(a, b, width: int):
    a = _pad(a, 0, width - a.shape[-1])
    b = _pad(b, 0, width - b.shape[-1])
    return _normalize(jnp.add(*_same_rank(a, b)), width)


@functools.partial(jax.jit, static_argnums=2)
def _multiply(a, b, width: int):
    a, b = _same_rank(a, b)
    n, m = a.shape[-1], b.shape[-1]
    products = a[..., :, None] * b[..., None, :]  # (..., n, m), each within 2**30
    rows = _pad(products & MASK, 0, 1) + _pad(products >> BITS, 1, 0)  # (..., n, m+1)
    # Skew: row i moves i limbs up (pad each row by n, flatten, drop n, refold).
    flat = _pad(rows, 0, n).reshape(*rows.shape[:-2], n * (m + n + 1))[..., :n * (m + n)]
    raw = flat.reshape(*rows.shape[:-2], n, m + n).sum(axis=-2)  # (..., n+m)
    return _normalize(raw, width)


@jax.tree_util.register_pytree_node_class
class Count:
    """An exact integer (or array of them) that survives ``jit`` and ``vmap``.

    The value is ``sum_i limbs[..., i] * 2**(14*i)`` with ``int32`` limbs (a pytree leaf;
    ``vmap`` adds batch axes in front) and a static ``bound`` on its magnitude that fixes
    the number of limbs. Every limb but the top one lies within ``2**15``, so products of
    limbs fit ``int32``.

    Supports ``+``, ``-`` and ``*`` with Python ints, integer arrays (traced or not) and
    other Counts. On the host: ``int(c)`` and ``c.tolist()`` give exact Python ints,
    ``np.asarray(c)`` an ``int64`` array (``OverflowError`` past ``2**63``; the
    ``dtype`` argument converts from the exact value).
    """

    __slots__ = ("limbs", "bound")
    __array_ufunc__ = None  # NumPy scalars and arrays defer to the reflected operators

    def __init__(self, limbs, bound: int):
        self.limbs = limbs
        self.bound = bound

    @classmethod
    def of(cls, value) -> Count:
        """A Count from an int, a Count, or an integer array (traced or not; any shape)."""
        if isinstance(value, Count):
            return value
        if isinstance(value, (int, np.integer)):
            return cls(_constant(int(value)), abs(int(value)))
        dtype = getattr(value, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(f"Count.of: {value!r}; expected an int or an integer array")
        info = jnp.iinfo(dtype)
        bound = max(-int(info.min), int(info.max))
        return cls(_split(value, _width(bound)), bound)

    def tree_flatten(self):
        return (self.limbs,), self.bound

    @classmethod
    def tree_unflatten(cls, bound, children):
        return cls(children[0], bound)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.limbs.shape[:-1])

    # ------------------------------------------------------------------ arithmetic

    def __add__(self, other) -> Count:
        try:
            other = Count.of(other)
        except TypeError:
            return NotImplemented
        bound = self.bound + other.bound
        return Count(_add(self.limbs, other.limbs, _width(bound)), bound)

    __radd__ = __add__

    def __neg__(self) -> Count:
        return Count(-self.limbs, self.bound)

    def __sub__(self, other) -> Count:
        try:
            return self + -Count.of(other)
        except TypeError:
            return NotImplemented

    def __rsub__(self, other) -> Count:
        return -self + other

    def __mul__(self, other) -> Count:
        try:
            other = Count.of(other)
        except TypeError:
            return NotImplemented
        bound = self.bound * other.bound
        return Count(_multiply(self.limbs, other.limbs, _width(bound)), bound)

    __rmul__ = __mul__

    # ------------------------------------------------------------------ on the host

    def _values(self) -> np.ndarray:
        """The exact values as a NumPy object array of Python ints (the limbs must be concrete)."""
        limbs = np.asarray(self.limbs).astype(object)
        value = limbs[..., -1]
        for i in range(limbs.shape[-1] - 2, -1, -1):
            value = value * BASE + limbs[..., i]
        return np.asarray(value, dtype=object)  # a 0-d array, not a bare int, for a scalar

    def tolist(self):
        """A Python int, or nested lists of them."""
        return self._values().tolist()

    def __index__(self) -> int:
        value = self._values()
        if value.ndim:
            raise TypeError(f"only a scalar Count converts to int, not one of shape {self.shape}")
        return int(value.item())

    __int__ = __index__

    def __float__(self) -> float:
        return float(int(self))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.array(self.tolist(), dtype=np.int64 if dtype is None else dtype)

    def __repr__(self) -> str:
        try:
            return f"Count({self.tolist()})"
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return f"Count(traced, shape={self.shape}, |value| < 2**{self.bound.bit_length()})"


def is_static(*values) -> bool:
    """Whether every value is a Python int (none traced, none a :class:`Count`)."""
    return all(isinstance(v, int) for v in values)


def product(*factors):
    """Exact product: a Python int if every factor is one, else a :class:`Count`."""
    static = math.prod(f for f in factors if isinstance(f, int))
    traced = [Count.of(f) for f in factors if not isinstance(f, int)]
    return functools.reduce(operator.mul, traced, static) if traced else static


def total(*terms):
    """Exact sum: a Python int if every term is one, else a :class:`Count`."""
    static = sum(t for t in terms if isinstance(t, int))
    traced = [Count.of(t) for t in terms if not isinstance(t, int)]
    return functools.reduce(operator.add, traced, static) if traced else static
