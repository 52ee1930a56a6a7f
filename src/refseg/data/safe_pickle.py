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
registry) is refused with ``RefsegDataError`` naming the file and the global. The allowed constructors are
wrapped so that a pickle cannot set state on them (``BUILD``): a default argument of an allowed function
cannot be changed for the rest of the process.

Memory and time are bounded by the file's size:

* before anything is unpickled, the opcodes are scanned (``pickle_scan.scan_opcodes``): every length
  field must fit in the file, every memo index stored must be at most the file's size (the unpickler
  allocates a memo table as large as the largest index), every memo index read must have been stored
  before, and dict keys and set elements must be values whose hashes cannot be made to collide;
* after unpickling, the result is walked once: it may hold only plain values, nested at most
  ``MAX_DEPTH`` levels; no list, dict, tuple or set may appear twice (a file of shared references, e.g.
  one ref repeated a million times by memo look-ups, is refused instead of expanding to millions of
  rows), and the expanded size (one per value, plus the length of each string) is at most
  ``EXPANSION_FACTOR`` times the file's size.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections.abc import Callable

from .pickle_scan import ScanRefused, scan_opcodes
from .validate import RefsegDataError, read_regular_file

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


class _Constructor:
    """An allowed global as the unpickler sees it: callable, but without state a pickle could set
    (``BUILD`` calls ``__setstate__``, which refuses; attributes and items cannot be assigned)."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable):
        object.__setattr__(self, "_function", function)

    def __call__(self, *args):
        return self._function(*args)

    def __setstate__(self, state):
        raise _RefusedState(getattr(self._function, "__name__", "an allowed global"))

    def __setattr__(self, name, value):
        raise _RefusedState(getattr(self._function, "__name__", "an allowed global"))


ALLOWED_GLOBALS = {
    ("builtins", "set"): _Constructor(set),
    ("builtins", "frozenset"): _Constructor(frozenset),
    ("__builtin__", "set"): _Constructor(set),
    ("__builtin__", "frozenset"): _Constructor(frozenset),
    ("_codecs", "encode"): _Constructor(_latin1_encode),
    ("numpy", "dtype"): _Constructor(_NumpyDType),
    ("numpy.core.multiarray", "scalar"): _Constructor(_numpy_scalar),
    ("numpy._core.multiarray", "scalar"): _Constructor(_numpy_scalar),
}
MAX_DEPTH = 64
EXPANSION_FACTOR = 16
_TEXT = frozenset({str, bytes, bytearray})
_SCALARS = frozenset({int, float, bool, type(None)})
_CONTAINERS = frozenset({list, dict, tuple, set, frozenset})


class _RefusedGlobal(pickle.UnpicklingError):
    """A global outside ``ALLOWED_GLOBALS`` was requested."""


class _RefusedState(pickle.UnpicklingError):
    """A pickle tried to set state (``BUILD``) or an attribute on an allowed global."""


class _Refused(pickle.UnpicklingError):
    """The opcode scan or the walk of the result refused the file (the message says why)."""


def check_plain(obj, size: int) -> None:
    """Walk an unpickled value once (iteratively): plain values only, at most ``MAX_DEPTH`` levels deep, no
    container reached twice, expanded size at most ``EXPANSION_FACTOR * size`` (+ 4096); ``_Refused`` otherwise."""
    budget = EXPANSION_FACTOR * size + 4096
    seen: set[int] = set()
    stack: list[tuple[object, int]] = [([obj], 0)]  # the wrapper list is not counted
    while stack:
        container, depth = stack.pop()
        children = (container, container.values()) if type(container) is dict else (container,)
        for group in children:
            budget -= len(group)
            for value in group:
                kind = type(value)
                if kind in _TEXT:
                    budget -= len(value)
                    if budget < 0:
                        break
                elif kind in _CONTAINERS:
                    if not value:
                        continue
                    if id(value) in seen:
                        raise _Refused(
                            f"the same {kind.__name__} appears twice (a shared reference); refs must not repeat"
                        )
                    seen.add(id(value))
                    if depth >= MAX_DEPTH:
                        raise _Refused(f"values are nested deeper than {MAX_DEPTH} levels")
                    stack.append((value, depth + 1))
                elif kind not in _SCALARS:
                    raise _Refused(f"unpickled a {kind.__name__}, which is not plain data")
        if budget < 0:
            raise _Refused(
                f"the content expands to more than {EXPANSION_FACTOR} times the file's size "
                "(strings repeated by shared references)"
            )


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
    """Unpickle ``data`` with ``RestrictedUnpickler`` after ``scan_opcodes``, then ``check_plain`` the
    result; ``RefsegDataError`` naming ``where`` on refusal or damage."""
    data = bytes(data)
    try:
        scan_opcodes(data)
        out = RestrictedUnpickler(io.BytesIO(data), encoding="utf-8").load()
        check_plain(out, len(data))
        return out
    except _RefusedGlobal as err:
        raise RefsegDataError(
            f"{where}: refused to load the global '{err}' (a pickle may only hold {ALLOWED_DESCRIPTION}; "
            "nothing from the file was run)"
        ) from None
    except _RefusedState as err:
        raise RefsegDataError(
            f"{where}: refused to set state on the allowed global '{err}' (BUILD or attribute assignment; "
            "nothing was changed)"
        ) from None
    except (_Refused, ScanRefused) as err:
        raise RefsegDataError(f"{where}: refused: {err}") from None
    except Exception as err:  # pickle raises many types on damaged input
        raise RefsegDataError(
            f"{where}: cannot be read as a pickle ({type(err).__name__}: {str(err)[:120]})"
        ) from None


def safe_load(path: str | os.PathLike):
    """Read the pickle file at ``path`` with ``safe_loads`` (the file is read whole first). It must be a
    regular file: a FIFO or a link to a device (``/dev/zero``) is refused without being opened."""
    data = read_regular_file(path, f"no such file: {path}")
    return safe_loads(data, str(path))
