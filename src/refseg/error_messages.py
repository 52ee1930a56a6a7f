"""Error messages for people: one plain line, whatever the underlying library raised."""

from __future__ import annotations

import re

__all__ = ["one_line"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # terminal colour / cursor escape codes


def one_line(err: BaseException) -> str:
    """``err``'s message on one line, without line breaks or terminal escape codes (its type name when empty)."""
    return " ".join(_ANSI.sub("", str(err)).split()) or type(err).__name__
