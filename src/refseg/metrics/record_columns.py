"""Records as validated numpy columns, and the result helpers every metric shares.

A metric never sees pixels: each sample is reduced to a few numbers (a *record*) where the model ran,
so records from any number of processes are simply concatenated before a metric is computed.
Every metric function accepts records as

* a sequence of record dataclasses (``MaskRecord``, ``GRECRecord``, ``RECRecord``),
* a sequence of mappings with the record's field names, or
* a mapping of columns (field name -> list / numpy array / torch tensor), e.g. what
  ``accelerator.gather_for_metrics`` or an ``evaluate`` module hands back.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _column(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor, possibly on an accelerator
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def as_columns(
    records: Any, fields: Sequence[str], defaults: Mapping[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Normalize records (see module docstring) to a dict of 1-D numpy columns named ``fields``.

    Missing fields take ``defaults``; a field missing without a default raises ``ValueError``.
    """
    defaults = dict(defaults or {})
    if isinstance(records, Mapping):
        columns = {k: _column(v) for k, v in records.items()}
        lengths = {k: len(v) for k, v in columns.items() if k in fields}
        if not lengths:
            raise ValueError(f"records given as columns must contain the fields {list(fields)}")
        n = next(iter(lengths.values()))
        if any(length != n for length in lengths.values()):
            raise ValueError(f"record columns have different lengths: {lengths}")
    elif isinstance(records, Sequence) and not isinstance(records, str | bytes):
        n = len(records)
        rows = [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r for r in records]
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ValueError(
                    f"record {i} must be a record dataclass or a mapping, got {type(row).__name__}"
                )
        columns = {}
        for name in fields:
            if all(name in row for row in rows):
                columns[name] = np.asarray([row[name] for row in rows])
            elif any(name in row for row in rows):
                missing = next(i for i, row in enumerate(rows) if name not in row)
                raise ValueError(f"record {missing} has no field {name!r}")
    else:
        raise ValueError(
            f"records must be a sequence of records or a mapping of columns, got {type(records).__name__}"
        )
    if n == 0:
        raise ValueError("cannot compute a metric over zero samples")
    out: dict[str, np.ndarray] = {}
    for name in fields:
        if name in columns:
            col = columns[name].reshape(-1)
        elif name in defaults:
            col = np.full(n, defaults[name])
        else:
            raise ValueError(f"records are missing the field {name!r} (expected fields: {list(fields)})")
        out[name] = col
    return out


def _as_float(col: np.ndarray, field: str, kind: str, expected: str) -> np.ndarray:
    """``col`` as float64; ``ValueError`` naming the first record that is not a real number."""
    if col.dtype.kind in "biuf":
        return col.astype(np.float64)
    for k, value in enumerate(col.tolist()):
        if isinstance(value, bool | str | bytes) or not isinstance(value, int | float | np.number):
            raise ValueError(f"{kind} {k}: field {field!r} must be {expected}, got {value!r}")
    return col.astype(np.float64)


def _first_bad(col: np.ndarray, bad: np.ndarray, field: str, kind: str, expected: str) -> None:
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        value = col[k].item() if hasattr(col[k], "item") else col[k]
        raise ValueError(f"{kind} {k}: field {field!r} must be {expected}, got {value!r}")


def count_column(col: np.ndarray, field: str, kind: str = "record") -> np.ndarray:
    """An int64 column of whole numbers (pixel or box counts, ids); ``ValueError`` naming the field and the
    first record for NaN, infinity, a fraction, a boolean or a non-number."""
    expected = "a whole number"
    if col.dtype.kind in "iu":
        return col.astype(np.int64)
    if col.dtype.kind == "b":
        _first_bad(col, np.ones(len(col), dtype=bool), field, kind, expected)
    values = _as_float(col, field, kind, expected)
    finite = np.isfinite(values)
    whole = np.where(finite, values, 0.0)
    bad = ~finite | (whole != np.round(whole)) | (np.abs(whole) >= 2.0**63)
    _first_bad(col, bad, field, kind, expected)
    return values.astype(np.int64)


def flag_column(col: np.ndarray, field: str, kind: str = "record") -> np.ndarray:
    """A bool column from booleans or the numbers 0 and 1; ``ValueError`` for anything else (NaN included)."""
    if col.dtype == bool:
        return col
    expected = "a flag (True/False or 0/1)"
    values = _as_float(col, field, kind, expected)
    _first_bad(col, (values != 0) & (values != 1), field, kind, expected)
    return values == 1


def finite_column(col: np.ndarray, field: str, kind: str = "record") -> np.ndarray:
    """A float64 column of finite numbers; ``ValueError`` naming the first NaN or infinite value."""
    values = _as_float(col, field, kind, "a finite number")
    _first_bad(col, ~np.isfinite(values), field, kind, "a finite number")
    return values


_RESOLUTION = re.compile(r"^[1-9][0-9]*x[1-9][0-9]*$")


def format_resolution(resolution: str | int | Sequence[int]) -> str:
    """The evaluation resolution written into every result: ``"original"`` or ``"HxW"`` (e.g. ``"480x480"``).

    Accepts ``"original"``, ``"HxW"``, an int ``n`` (square ``n x n``) or an ``(H, W)`` pair.
    """
    if isinstance(resolution, str):
        if resolution == "original" or _RESOLUTION.match(resolution):
            return resolution
    elif isinstance(resolution, int) and not isinstance(resolution, bool) and resolution > 0:
        return f"{resolution}x{resolution}"
    elif (
        isinstance(resolution, Sequence)
        and len(resolution) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in resolution)
    ):
        return f"{resolution[0]}x{resolution[1]}"
    raise ValueError(
        f"resolution must be 'original', 'HxW' (e.g. '480x480'), a positive int or an (H, W) pair, got {resolution!r}"
    )


def ratio(numerator: float, denominator: float, scale: float = 100.0) -> float:
    """``scale * numerator / denominator``, or ``0.0`` when the denominator is 0 (documented per metric)."""
    return float(scale * numerator / denominator) if denominator else 0.0
