"""The opcode scan run on a pickle before it is unpickled (``safe_pickle.safe_loads``): linear in the file.

``pickletools.genops`` walks the opcodes (it refuses a length field longer than the rest of the file, an
unknown opcode and a missing ``STOP``) while a symbolic stack tracks what each value will be, so that:

* a memo index stored is at most the file's size (the unpickler allocates a table as large as the largest
  index: 9 bytes could ask for 16 GiB) and a memo index read was stored before;
* a frame is no longer than the rest of the file;
* dict keys and set elements are values whose hashes an attacker cannot line up: strings, bytes, floats,
  booleans, ``None`` and integers below 2**61 in magnitude. Tuples, frozensets, larger integers and
  reconstructed objects are refused as keys, because equal hashes make each insertion scan every earlier
  key (a 1 MB file of colliding integer keys would take minutes, a 10 MB one hours).
"""

from __future__ import annotations

import pickletools

_SMALL_INT = 2**61  # CPython hashes ints modulo 2**61 - 1: below this, distinct ints have distinct hashes
# globals whose result is safe as a key: bytes, and NumPy scalars rebuilt as Python numbers below 2**63
_SAFE_REDUCERS = frozenset(
    {"_codecs encode", "numpy.core.multiarray scalar", "numpy._core.multiarray scalar"}
)
_GROUPS = {
    "text": ("STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE"),
    "scalar": ("BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "NONE", "NEWTRUE", "NEWFALSE")
    + ("FLOAT", "BINFLOAT"),
    "int": ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"),
    "put": ("PUT", "BINPUT", "LONG_BINPUT"),
    "get": ("GET", "BINGET", "LONG_BINGET"),
    "empty": ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "EMPTY_TUPLE"),
    "append": ("APPEND", "APPENDS"),
    "tuple": ("TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"),
    "setitem": ("SETITEM", "SETITEMS", "DICT"),
    "additems": ("ADDITEMS", "FROZENSET"),
    "global": ("GLOBAL", "STACK_GLOBAL"),
    "nothing": ("PROTO", "STOP", "READONLY_BUFFER"),
}
_GROUP_OF = {name: group for group, names in _GROUPS.items() for name in names}


class ScanRefused(ValueError):
    """The scan refused the file; the message says why."""


class _Tag:
    """What a stack entry will be (a short string is kept as itself): ``kind``, whether it is unsafe as a
    dict key or set element (``risky``), whether a list or tuple holds such a value (``holds_risky``), the
    elements of a tuple, a global's ``"module name"``."""

    __slots__ = ("kind", "risky", "holds_risky", "elems", "name")

    def __init__(self, kind: str, risky: bool, elems: list | None = None, name: str = ""):
        self.kind, self.risky, self.elems, self.name = kind, risky, elems, name
        self.holds_risky = any(_risky(e) for e in elems) if elems else False


def _risky(entry) -> bool:
    return type(entry) is not str and entry.risky


_SAFE = _Tag("scalar", False)
_OBJECT = "reconstructed object"


def _pop(items: list, marks: list, n: int) -> list:
    """The top ``n`` entries (above the last mark), removed."""
    if n > len(items) - (marks[-1] if marks else 0):
        raise ValueError("stack underflow")
    out = items[len(items) - n :]
    del items[len(items) - n :]
    return out


def _pop_mark(items: list, marks: list) -> list:
    """The entries above the last mark, removed with the mark."""
    if not marks:
        raise ValueError("no MARK on the stack")
    start = marks.pop()
    out = items[start:]
    del items[start:]
    return out


def _top(items: list, marks: list):
    if len(items) <= (marks[-1] if marks else 0):
        raise ValueError("empty stack")
    return items[-1]


def _check_keys(keys: list, where: str, pos: int) -> None:
    for key in keys:
        if _risky(key):
            what = "a large integer" if key.kind == "int" else f"a {key.kind}"
            raise ScanRefused(
                f"{where} at byte {pos} is {what}; dict keys and set elements must be strings, numbers below "
                "2**61, floats, booleans or None (equal hashes would make loading take quadratic time)"
            )


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 20 else f"{text[:8]}...({len(text)} digits)"


def scan_opcodes(data: bytes) -> None:
    """Check ``data`` as described in the module docstring: ``ScanRefused`` for what is refused, ``ValueError``
    for a damaged pickle (a length field past the end, an unknown opcode, a stack underflow)."""
    size = len(data)
    memo: dict[int, object] = {}
    items: list = []
    marks: list[int] = []
    push = items.append
    group_of = _GROUP_OF
    for opcode, arg, pos in pickletools.genops(data):
        name = opcode.name
        group = group_of.get(name, name)
        if group == "put" or group == "MEMOIZE":
            index = len(memo) if group == "MEMOIZE" else arg
            if not 0 <= index <= size:
                raise ScanRefused(
                    f"memo index {_short(index)} at byte {pos} is larger than the file ({size} bytes)"
                )
            memo[index] = _top(items, marks)
        elif group == "get":
            if arg not in memo:
                raise ScanRefused(f"memo index {_short(arg)} read at byte {pos} was never stored")
            push(memo[arg])
        elif group == "text":  # kept as itself when short: STACK_GLOBAL names a global with two of them
            push(arg if type(arg) is str and len(arg) <= 64 else _SAFE)
        elif group == "scalar":
            push(_SAFE)
        elif group == "int":
            push(_SAFE if -_SMALL_INT < arg < _SMALL_INT else _Tag("int", True))
        elif group == "MARK":
            marks.append(len(items))
        elif group == "setitem":
            pairs = _pop(items, marks, 2) if name == "SETITEM" else _pop_mark(items, marks)
            _check_keys(pairs[0::2], "a dict key", pos)
            if name == "DICT":
                push(_Tag("dict", True))
            else:
                _top(items, marks)
        elif group == "append":
            values = _pop(items, marks, 1) if name == "APPEND" else _pop_mark(items, marks)
            target = _top(items, marks)
            if type(target) is not str and not target.holds_risky:
                target.holds_risky = any(_risky(v) for v in values)
        elif group == "empty":
            push(_Tag(name[6:].lower(), True, [] if name == "EMPTY_TUPLE" else None))
        elif group == "LIST":
            push(_Tag("list", True, _pop_mark(items, marks)))
        elif group == "tuple":
            elems = _pop_mark(items, marks) if name == "TUPLE" else _pop(items, marks, int(name[-1]))
            push(_Tag("tuple", True, elems))
        elif group == "additems":
            _check_keys(_pop_mark(items, marks), "a set element", pos)
            if name == "FROZENSET":
                push(_Tag("frozenset", True))
            else:
                _top(items, marks)
        elif group == "global":
            if name == "STACK_GLOBAL":
                module, qualname = _pop(items, marks, 2)
                arg = f"{module} {qualname}" if type(module) is str and type(qualname) is str else ""
            push(_Tag("global", True, name=arg))
        elif group == "REDUCE":  # set(list) and frozenset(list) hash the list's items
            function, args = _pop(items, marks, 2)
            safe = type(function) is not str and function.name in _SAFE_REDUCERS
            first = args.elems[0] if type(args) is not str and args.elems else None
            if not safe and first is not None and type(first) is not str and first.holds_risky:
                _check_keys(
                    [_Tag("tuple, large integer or reconstructed object", True)], "a set element", pos
                )
            push(_SAFE if safe else _Tag(_OBJECT, True))
        elif group == "BUILD":
            _pop(items, marks, 1)
        elif group == "FRAME":
            if arg > size - pos:
                raise ScanRefused(f"frame of {_short(arg)} bytes at byte {pos} is longer than the file")
        elif group == "POP":
            if marks and marks[-1] == len(items):
                marks.pop()
            else:
                _pop(items, marks, 1)
        elif group == "POP_MARK":
            _pop_mark(items, marks)
        elif group == "DUP":
            push(_top(items, marks))
        elif group != "nothing":  # objects (refused or checked when unpickled): pop what they take, push one
            if pickletools.markobject in opcode.stack_before:  # INST, OBJ: everything above the mark
                _pop_mark(items, marks)
            else:
                _pop(items, marks, len(opcode.stack_before))
            push(_Tag(_OBJECT, True))
