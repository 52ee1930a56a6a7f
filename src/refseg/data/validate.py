"""Checks for values read from annotation files, each raising a one-line ``RefsegDataError`` naming the
file, record and field.

Everything a benchmark file holds is checked here before it is used: ids are integers, flags are read by
value (``"0"`` and ``"false"`` are false), numbers are finite, split names are plain words and image file
names stay inside the image folder (see ``docs/data.md``, "What is checked").
"""

from __future__ import annotations

import math
import numbers
import os
import re
import reprlib
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath

_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3

TRUE_STRINGS = frozenset({"1", "true", "t", "yes", "y"})
FALSE_STRINGS = frozenset({"0", "false", "f", "no", "n"})
INT64_RANGE = (-(2**63), 2**63)
FLOAT32_MAX = 3.4028234663852886e38
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_]+")


class RefsegDataError(ValueError):
    """A benchmark file holds something refseg refuses; the message names the file, record and field."""


def short(value) -> str:
    """A bounded ``repr`` for error messages (never huge or deeply nested)."""
    return _REPR.repr(value)


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return kind
    return "not a plain file"


def check_regular_file(path: str | os.PathLike, not_found: str) -> Path:
    """``path`` if it is a regular file (symbolic links followed); ``FileNotFoundError(not_found)`` if it is
    missing, ``RefsegDataError`` if it is a FIFO, a device, a socket or a folder (never opened, so never
    blocks)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(not_found) from None
    except OSError as err:
        raise RefsegDataError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not stat.S_ISREG(mode):
        raise RefsegDataError(f"{path}: not a regular file ({_file_kind(mode)})")
    return path


def read_regular_file(path: str | os.PathLike, not_found: str) -> bytes:
    """The bytes of the regular file ``path`` (``check_regular_file``; re-checked on the opened file, which is
    opened non-blocking, so a file swapped for a FIFO meanwhile cannot hang the reader)."""
    path = check_regular_file(path, not_found)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise RefsegDataError(f"{path}: not a regular file ({_file_kind(mode)})")
            return f.read()
    except FileNotFoundError:
        raise FileNotFoundError(not_found) from None
    except OSError as err:
        raise RefsegDataError(f"{path}: cannot be read ({err.strerror or err})") from None


def as_int(value, field: str, where: str) -> int:
    """An integer id or count: ``int`` (not ``bool``), an integral float or a decimal string, within int64."""
    if isinstance(value, bool):
        raise RefsegDataError(f"{where}: field '{field}' must be an integer, got the boolean {value!r}")
    if isinstance(value, numbers.Integral):
        out = int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        out = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,20}\s*", value):
        out = int(value)
    else:
        raise RefsegDataError(f"{where}: field '{field}' must be an integer, got {short(value)}")
    if not INT64_RANGE[0] <= out < INT64_RANGE[1]:
        raise RefsegDataError(f"{where}: field '{field}' = {out} does not fit in 64 bits")
    return out


def as_flag(value, field: str, where: str) -> bool:
    """A yes/no flag read by value: booleans, 0/1 and the strings ``"0"``, ``"1"``, ``"true"``,
    ``"false"``, ``"yes"``, ``"no"`` (any case); anything else is an error, never Python truthiness."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE_STRINGS:
            return True
        if text in FALSE_STRINGS:
            return False
    raise RefsegDataError(
        f'{where}: field \'{field}\' must be a flag (true/false, 1/0, "true"/"false", "1"/"0"), '
        f"got {short(value)}"
    )


def as_number(value, field: str, where: str) -> float:
    """A finite real number (``bool`` and strings refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise RefsegDataError(f"{where}: field '{field}' must be a finite number, got {short(value)}")
    return float(value)


def as_text(value, field: str, where: str) -> str:
    """A string field that can be written as UTF-8 (``bytes`` are decoded as UTF-8; lone surrogates refused)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise RefsegDataError(f"{where}: field '{field}' is not UTF-8 text: {short(value)}") from None
    if not isinstance(value, str):
        raise RefsegDataError(f"{where}: field '{field}' must be a string, got {short(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RefsegDataError(f"{where}: field '{field}' is not valid Unicode text: {short(value)}") from None
    return value


def as_split_name(value, where: str) -> str:
    """A split name: letters, digits and ``_`` only (it becomes part of the parquet file names)."""
    if not isinstance(value, str) or not _SPLIT_NAME.fullmatch(value):
        raise RefsegDataError(
            f"{where}: field 'split' must be a name of letters, digits and '_' (e.g. 'train', 'testA'), "
            f"got {short(value)}"
        )
    return value


def as_bbox(value, where: str) -> list[float]:
    """A COCO box ``[x, y, w, h]``: four finite numbers with ``w, h >= 0``."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise RefsegDataError(f"{where}: field 'bbox' must be [x, y, w, h], got {short(value)}")
    box = [as_number(v, "bbox", where) for v in value]
    if any(abs(v) > FLOAT32_MAX for v in box):  # stored as float32
        raise RefsegDataError(f"{where}: field 'bbox' does not fit in float32: {short(value)}")
    if box[2] < 0 or box[3] < 0:
        raise RefsegDataError(f"{where}: field 'bbox' has a negative width or height: {short(value)}")
    return box


def image_path(image_root: str | os.PathLike, file_name, where: str) -> Path:
    """``image_root / file_name``, refused unless it stays inside ``image_root``: no absolute path, no
    ``..`` component and no symbolic link leading outside (checked on the resolved path)."""
    name = as_text(file_name, "file_name", where)
    if not name.strip() or "\x00" in name:
        raise RefsegDataError(f"{where}: field 'file_name' must be a non-empty file name, got {short(name)}")
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        raise RefsegDataError(
            f"{where}: file_name {short(name)} is an absolute path; it must be relative to the image folder"
        )
    if ".." in posix.parts or ".." in windows.parts:
        raise RefsegDataError(f"{where}: file_name {short(name)} leaves the image folder ('..' is refused)")
    root = Path(image_root).resolve()
    path = root / posix
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise RefsegDataError(
            f"{where}: file_name {short(name)} resolves to {resolved}, outside the image folder {root} "
            "(a symbolic link; copy or hard-link the images into the folder instead)"
        )
    return path
