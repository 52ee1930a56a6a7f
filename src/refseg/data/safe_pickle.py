"""Loading pickled annotation files (``refs(unc).p``, Ref-ZOM ``refs(final).p``) without running code.

A pickle can name any importable function and call it while it is being read. The unpickler here
resolves no global except an explicit allow-list of harmless constructors, so a crafted file fails
before anything from it runs:

* ``set`` and ``frozenset`` (Python 2 and 3 names);
* ``_codecs.encode(text, "latin1")``, which protocol 2 uses for ``bytes``;
* NumPy scalars (``numpy.int64(5)`` etc., written by ``numpy.core.multiarray.scalar`` and
  ``numpy.dtype``): they are rebuilt as plain Python ``int``/``float``/``bool`` by the small
  decoders below, without importing or calling NumPy.

Everything else (``os.system``, ``builtins.eval``, any class, persistent ids, the copyreg extension
registry) is refused with ``RefsegDataError`` naming the file and the global.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

from .validate import RefsegDataError

ALLOWED_DESCRIPTION = "dicts, lists, tuples, sets, strings, numbers, booleans and None"


class _NumpyDType:
    """Stand-in for ``numpy.dtype(code, align, copy)``: only the type code and byte order are kept."""

    def __init__(self, code, align=False, copy=True):
        if not isinstance(code, str):
            raise pickle.UnpicklingError(f"unsupported NumPy dtype {code!r}")
        self.code, self.byteorder = code, "<"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]


_SCALAR_FORMATS = {
    "b1": "?",
    "i1": "b",
    "i2": "h",
    "i4": "i",
    "i8": "q",
    "u1": "B",
    "u2": "H",
    "u4": "I",
    "u8": "Q",
    "f2": "e",
    "f4": "f",
    "f8": "d",
}


def _numpy_scalar(dtype, data=None):
    """Stand-in for ``numpy.core.multiarray.scalar``: a bool/int/float NumPy scalar as a Python value."""
    if not isinstance(dtype, _NumpyDType) or dtype.code not in _SCALAR_FORMATS:
        code = getattr(dtype, "code", dtype)
        raise pickle.UnpicklingError(f"unsupported NumPy scalar type {code!r} (only bool, int and float)")
    if isinstance(data, str):
        data = data.encode("latin1")
    fmt = ("<" if dtype.byteorder in ("<", "|", "=") else ">") + _SCALAR_FORMATS[dtype.code]
    if not isinstance(data, bytes) or len(data) != struct.calcsize(fmt):
        raise pickle.UnpicklingError(f"malformed NumPy scalar of type {dtype.code!r}")
    return struct.unpack(fmt, data)[0]


def _latin1_encode(text, encoding="utf-8"):
    """Stand-in for ``_codecs.encode``, limited to the latin-1 form pickle protocol 2 uses for bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


ALLOWED_GLOBALS = {
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "dtype"): _NumpyDType,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class _RefusedGlobal(pickle.UnpicklingError):
    """A global outside ``ALLOWED_GLOBALS`` was requested."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only ``ALLOWED_GLOBALS`` and no persistent ids."""

    def find_class(self, module: str, name: str):
        """Return an allowed stand-in or refuse; nothing is imported."""
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise _RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid):
        """Persistent ids are never resolved."""
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_loads(data: bytes, where: str = "pickle"):
    """Unpickle ``data`` with ``RestrictedUnpickler``; ``RefsegDataError`` naming ``where`` on refusal or damage."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="utf-8").load()
    except _RefusedGlobal as err:
        raise RefsegDataError(
            f"{where}: refused to load the global '{err}' (a pickle may only hold {ALLOWED_DESCRIPTION}; "
            "nothing from the file was run)"
        ) from None
    except Exception as err:  # pickle raises many types on damaged input
        raise RefsegDataError(
            f"{where}: cannot be read as a pickle ({type(err).__name__}: {str(err)[:120]})"
        ) from None


def safe_load(path: str | os.PathLike):
    """Read the pickle file at ``path`` with ``safe_loads`` (the file is read whole first)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    except OSError as err:
        raise RefsegDataError(f"{path}: cannot be read ({err.strerror or err})") from None
    return safe_loads(data, str(path))
