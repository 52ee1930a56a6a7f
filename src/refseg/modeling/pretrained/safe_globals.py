"""The few harmless globals that released training checkpoints contain besides tensors, for safe loading.

Training scripts save more than weights: ``torch.save({"state_dict": ..., "optimizer": ..., "scheduler": ...,
"epoch": 9, "F1score": np.float64(...)})``. Optimizer and scheduler states are plain containers, which
``torch.load(weights_only=True)`` reads already; the evaluation metrics are numpy scalars, which it refuses.
A numpy scalar is pickled as ``numpy.core.multiarray.scalar(numpy.dtype("f8"), b"<8 raw bytes>")``
(``numpy._core`` since numpy 2), so reading it needs exactly these globals:

* the scalar reconstructor, under both module names, wrapped so that it only builds a bool, integer, float
  or complex scalar from raw bytes of the right length (no object or structured dtype);
* ``numpy.dtype``, wrapped so that it only builds those same numeric dtypes from a type string;
* the numeric dtype classes (``numpy.dtypes.Float64DType``...), which ``weights_only`` requires to restore
  a dtype's pickled state (allowed as classes, never called by name with other arguments than numpy's).

Nothing else is allowed: a numpy array (``numpy.core.multiarray._reconstruct``), any other numpy function
and every other global stay refused. :func:`numpy_scalar_globals` gives the list for
``torch.serialization.safe_globals``.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = ["numpy_scalar_globals"]

_NUMERIC_KINDS = "biufc"  # bool, signed and unsigned integers, floats, complex numbers
# Type codes of the numeric dtypes: bool, signed and unsigned integers of every C width, floats, complex.
_NUMERIC_TYPE_CODES = "?bBhHiIlLqQefdFD"


def _check_numeric(dtype: Any) -> None:
    import numpy as np

    if (
        not isinstance(dtype, np.dtype)
        or dtype.kind not in _NUMERIC_KINDS
        or dtype.fields is not None
        or dtype.hasobject
        or dtype.subdtype is not None
    ):
        raise pickle.UnpicklingError(f"numpy dtype {dtype!r} is not a plain number type")


def _numpy_dtype(spec: Any, align: bool = False, copy: bool = True) -> Any:
    """``numpy.dtype(spec, align, copy)`` for a numeric type string only."""
    import numpy as np

    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f"numpy dtype from {type(spec).__name__} is not allowed")
    dtype = np.dtype(spec, align=bool(align), copy=bool(copy))
    _check_numeric(dtype)
    return dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """numpy's scalar reconstructor, for a numeric dtype and raw bytes of its item size only."""
    import numpy as np

    _check_numeric(dtype)
    clean = np.dtype(dtype.str)  # rebuilt from its type string: no state the file may have set on it
    _check_numeric(clean)
    if not isinstance(data, bytes) or len(data) != clean.itemsize:
        raise pickle.UnpicklingError(f"a numpy {clean} scalar needs {clean.itemsize} raw bytes")
    return np.frombuffer(data, dtype=clean)[0]


def numpy_scalar_globals() -> list[Any]:
    """Entries for ``torch.serialization.safe_globals``: numpy scalars and their dtypes, nothing else.

    Empty when numpy is not installed (a file holding numpy scalars then stays refused).
    """
    try:
        import numpy as np
    except ImportError:
        return []
    entries: list[Any] = [
        (_numpy_scalar, "numpy.core.multiarray.scalar"),  # numpy 1.x files
        (_numpy_scalar, "numpy._core.multiarray.scalar"),  # numpy 2.x files
        (_numpy_dtype, "numpy.dtype"),
    ]
    for code in _NUMERIC_TYPE_CODES:  # numpy.dtypes.Float64DType... (numpy.dtype[float64] before numpy 1.25)
        cls = type(np.dtype(code))
        entries.append((cls, f"numpy.dtypes.{cls.__name__}"))
    return entries
