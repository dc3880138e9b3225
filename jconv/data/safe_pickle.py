"""Pickles of plain data and NumPy arrays, read without trusting the file.

:func:`loads` reads a pickle with :class:`SafeUnpickler`, which holds three rules:

* **Only the globals in** :data:`ADMITTED`: the latin-1 ``_codecs.encode`` and ``bytes`` /
  ``bytearray`` that protocol 2 writes for bytes, ``numpy.dtype``, and the NumPy functions that
  rebuild arrays and scalars (``_reconstruct``, ``_frombuffer``, ``scalar``). Any other global
  (``os.system``, ``builtins.eval``, ...) is refused before anything of the file runs, and so is
  calling ``numpy.ndarray`` itself (it hands out uninitialised memory).
* **Every array receives its data from the file.** ``_reconstruct`` may only make an empty array,
  which the pickle's next BUILD must fill through ``ndarray.__setstate__(version, shape, dtype,
  is_fortran, data)``; the shape and dtype must need exactly the bytes given. An array never
  filled, filled twice, given too few or too many bytes, or of a dtype that is not a bool, int or
  float exactly as NumPy makes it (a dtype's state can be forged too) is refused.
* **What a file makes is bounded by its size.** The bytes of every array, scalar and bytes
  object the admitted globals make add up to at most :data:`EXPANSION` times the file's size (a
  protocol-2 array is written once as text and copied once into the array: about 2×).

Everything else a pickle can build (lists, dicts, ints, str) is made by its opcodes, a bounded
object per opcode. The pure-Python ``pickle._Unpickler`` is used because its BUILD step can be
overridden; the file is read into memory first, so no length in it makes Python allocate more.
Every refusal is a :class:`DataError` naming the file and what is wrong.
"""

from __future__ import annotations

import _codecs
import _compat_pickle
import io
import math
import pickle
import reprlib

import numpy as np
from numpy._core import multiarray as _multiarray
from numpy._core import numeric as _numeric

from jconv.data.errors import DataError

__all__ = ["ADMITTED", "EXPANSION", "SafeUnpickler", "loads"]

EXPANSION = 4
"""The bytes the admitted globals make, at most, per byte of the file."""

_NUMPY = {"multiarray": {"_reconstruct": "_reconstruct", "scalar": "_scalar"},
          "numeric": {"_frombuffer": "_frombuffer"}}
ADMITTED = {
    ("_codecs", "encode"): "_encode",
    ("builtins", "bytes"): "_bytes",
    ("builtins", "bytearray"): "_bytearray",
    ("numpy", "dtype"): "_dtype",
    ("numpy", "ndarray"): "_ndarray",
    **{(f"numpy.{core}.{module}", name): method for core in ("core", "_core")
       for module, names in _NUMPY.items() for name, method in names.items()},
}
"""The globals a pickle may name, ``(module, name) →`` the :class:`SafeUnpickler` attribute that
stands for it; nothing is imported."""

_ARRAY = "a pickle of dicts, lists, bytes, ints and NumPy arrays of numbers, each array with its data"


def _is_shape(shape) -> bool:
    return isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)


def _plain(dtype) -> np.dtype | None:
    """A fresh bool, int or float dtype equal to ``dtype`` in every part of its state, or None.

    A pickle can give a dtype any state: a ``uint64`` flagged as holding objects, or one with a
    subarray larger than its itemsize. Only dtypes NumPy itself would make pass.
    """
    if not (isinstance(dtype, np.dtype) and dtype.kind in "biuf"):
        return None
    plain = np.dtype(f"{dtype.byteorder}{dtype.kind}{dtype.itemsize}")
    return plain if plain.__reduce__() == dtype.__reduce__() else None


class SafeUnpickler(pickle._Unpickler):
    """An unpickler that resolves only :data:`ADMITTED` globals and checks every array it makes.

    ``SafeUnpickler(file, path, size).load()``: ``path`` names the file in errors and ``size`` is
    its length in bytes, which bounds what the pickle may make (:data:`EXPANSION`). Python 2
    names (``__builtin__.eval``, ``numpy.core.multiarray``) are mapped to their Python 3 names
    first, as ``pickle`` does. Raises :class:`DataError` for a refused global or array.
    """

    _dtype = np.dtype  # making a dtype allocates nothing of note

    def __init__(self, file, path, size: int):
        super().__init__(file, encoding="bytes")
        self.path, self.size, self.made = path, size, 0
        self.unfilled = {}  # id → the empty arrays _reconstruct made, until a BUILD fills them

    def _refuse(self, problem: str, expected: str = _ARRAY) -> DataError:
        return DataError(self.path, problem, expected)

    def find_class(self, module, name):
        key = _compat_pickle.NAME_MAPPING.get(
            (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        if key not in ADMITTED:
            written = "" if key == (module, name) else f" (written {module}.{name})"
            raise self._refuse(f"the pickle asks for the global {'.'.join(key)}{written}, which is "
                               "refused", "a pickle of dicts, lists, bytes, ints and NumPy arrays only")
        return getattr(self, ADMITTED[key])

    def load(self):
        """The unpickled object, once every array made has received its data."""
        obj = super().load()
        if self.unfilled:
            raise self._refuse(f"{len(self.unfilled)} array(s) rebuilt by numpy _reconstruct never "
                               "receive their data (no BUILD gives them their state)")
        return obj

    def _spend(self, nbytes: int) -> None:
        self.made += nbytes
        if self.made > EXPANSION * self.size:
            raise self._refuse(f"makes at least {self.made:,} bytes of arrays and bytes from a file of "
                               f"{self.size:,} bytes", f"at most {EXPANSION}× the file's size")

    def _numbers(self, dtype, shape, data, what: str) -> np.dtype:
        """The plain ``dtype`` if ``data`` is bytes that fill exactly ``shape``; else refuse."""
        plain = _plain(dtype)
        if plain is None:
            numeric = isinstance(dtype, np.dtype) and dtype.kind in "biuf"
            forged = f" (state {dtype.__reduce__()[2]})" if numeric else ""
            raise self._refuse(f"{what} has dtype {reprlib.repr(dtype)}{forged}",
                               "an array of bools, ints or floats as NumPy makes their dtypes")
        if not _is_shape(shape):
            raise self._refuse(f"{what} has shape {reprlib.repr(shape)}", "a tuple of non-negative ints")
        if not isinstance(data, (bytes, bytearray)):
            raise self._refuse(f"{what} is given a {type(data).__name__} as its data", "bytes")
        need = math.prod(shape) * plain.itemsize
        if len(data) != need:
            raise self._refuse(f"{what} of shape {shape} and dtype {plain} needs {need:,} bytes but "
                               f"is given {len(data):,}", "the data to match the declared shape")
        self._spend(need)
        return plain

    # The admitted globals.

    def _ndarray(self, *args):
        raise self._refuse(f"calls numpy.ndarray{reprlib.repr(args)}, which makes an array without data")

    def _reconstruct(self, subtype, shape, dtype):
        is_ndarray = getattr(subtype, "__func__", None) is SafeUnpickler._ndarray
        if not (is_ndarray and _is_shape(shape) and shape == (0,)):  # numpy writes (0,): no memory
            what = "numpy.ndarray" if is_ndarray else reprlib.repr(subtype)
            raise self._refuse(f"asks numpy _reconstruct({what}, {reprlib.repr(shape)}, "
                               f"{reprlib.repr(dtype)}) for an uninitialised array",
                               "_reconstruct(numpy.ndarray, (0,), ...) then the array's state")
        array = _multiarray._reconstruct(np.ndarray, (0,), b"b")  # its dtype comes with its state
        self.unfilled[id(array)] = array
        return array

    def _fill(self, array: np.ndarray, state) -> None:
        if self.unfilled.pop(id(array), None) is not array:
            raise self._refuse(f"gives data to a {array.dtype} array {array.shape} that already has it",
                               "one state per array rebuilt by _reconstruct")
        if not (isinstance(state, tuple) and len(state) in (4, 5)):
            raise self._refuse(f"gives an array the state {type(state).__name__}",
                               "(version, shape, dtype, is_fortran, data)")
        shape, dtype, is_fortran, data = state[-4:]
        if type(is_fortran) not in (bool, int):
            raise self._refuse(f"gives an array the order flag {reprlib.repr(is_fortran)}", "a bool")
        array.__setstate__((1, shape, self._numbers(dtype, shape, data, "an array"), bool(is_fortran), data))

    def _frombuffer(self, buffer, dtype, shape, order):
        return _numeric._frombuffer(buffer, self._numbers(dtype, shape, buffer, "an array"), shape, order)

    def _scalar(self, dtype, data=None):
        return _multiarray.scalar(self._numbers(dtype, (), data, "a numpy scalar"), data)

    def _encode(self, text, encoding="utf-8", errors="strict"):
        if encoding not in ("latin1", "latin-1") or errors != "strict" or not isinstance(text, str):
            raise self._refuse(f"_codecs.encode with encoding {encoding!r} is not admitted",
                               "latin-1 text encoded as bytes")
        self._spend(len(text))
        return _codecs.encode(text, encoding)

    def _bytes(self, *args):
        return self._bytes_of(bytes, args)

    def _bytearray(self, *args):
        return self._bytes_of(bytearray, args)

    def _bytes_of(self, kind, args):
        if args and not isinstance(args[0], (str, bytes, bytearray)):  # bytes(n) makes n zeros
            raise self._refuse(f"calls {kind.__name__} of a {type(args[0]).__name__}",
                               f"{kind.__name__} of text or bytes")
        made = kind(*args)
        self._spend(len(made))
        return made

    def load_build(self):
        """BUILD fills the arrays ``_reconstruct`` made and sets dtypes' state; nothing else."""
        inst, state = self.stack[-2], self.stack[-1]
        if isinstance(inst, np.ndarray):
            self._fill(inst, state)
            self.stack.pop()
        elif isinstance(inst, np.dtype):
            super().load_build()
        else:
            raise self._refuse(f"sets the state of a {type(inst).__name__}",
                               "state for NumPy arrays and dtypes only")

    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: load_build}


def loads(blob: bytes, path) -> object:
    """The object pickled in ``blob`` (the bytes of the file ``path``), read by :class:`SafeUnpickler`.

    Bytes stay bytes (Python 2 ``str`` included). Raises :class:`DataError` for a refused global
    or array; a damaged pickle raises whatever its failing step raises.
    """
    return SafeUnpickler(io.BytesIO(blob), path, len(blob)).load()
