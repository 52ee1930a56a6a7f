"""Refs pickles cost memory and time bounded by the file's size: memo, length, sharing and state attacks."""

from __future__ import annotations

import io
import pickle
import struct
import time
from pathlib import Path

import pytest

from refseg.data import RefsegDataError
from refseg.data.coco import load_refs
from refseg.data.safe_pickle import _latin1_encode, _numpy_scalar, safe_loads
from tests.data.bounded_run import run_bounded
from tests.data.refer_fixtures import refzom_refs


def memo_bomb(index: int = 0x7FFFFFF0) -> bytes:
    """10 bytes: ``None`` stored at a huge memo index (the unpickler grows its memo table to the index)."""
    return b"\x80\x02N" + b"r" + struct.pack("<I", index) + b"."


def shared_ref_bomb(n_refs: int = 20000, n_sents: int = 2000) -> bytes:
    """About 44 KB: one ref dict repeated ``n_refs`` times, its sentence repeated ``n_sents`` times (40M rows)."""
    out = io.BytesIO()
    out.write(b"\x80\x02]q\x00(}q\x01(")
    for k, (key, value) in enumerate({"ref_id": 1, "image_id": 101, "ann_id": 1}.items()):
        out.write(
            b"X" + struct.pack("<I", len(key)) + key.encode() + b"q" + bytes([2 + k]) + b"K" + bytes([value])
        )
    out.write(b"X\x05\x00\x00\x00splitX\x05\x00\x00\x00trainX\t\x00\x00\x00sentences]q\x08(")
    out.write(b"}q\t(X\x07\x00\x00\x00sent_idK\x01X\x03\x00\x00\x00rawX\x01\x00\x00\x00au")
    out.write(b"h\t" * (n_sents - 1) + b"eu" + b"h\x01" * (n_refs - 1) + b"e.")
    return out.getvalue()


def test_memo_index_beyond_the_file_is_refused_with_little_memory(tmp_path):
    path = tmp_path / "refs(final).p"
    path.write_bytes(memo_bomb())
    assert path.stat().st_size == 9
    result = run_bounded(
        f"from refseg.data.safe_pickle import safe_load\nsafe_load({str(path)!r})", extra_mb=200
    )
    assert "memo index 2147483632 at byte 3 is larger than the file (9 bytes)" in result.stdout, result.stdout
    assert result.seconds < 30


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\x80\x02h\x05.", "memo index 5 read at byte 2 was never stored"),
        (b"\x80\x02j\xff\xff\xff\x7f.", "memo index 2147483647 read at byte 2 was never stored"),
        (b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\x00\x00N.", "frame of 281474976710655 bytes at byte 2"),
    ],
)
def test_memo_reads_and_frames_are_checked_against_the_file(data, reason):
    with pytest.raises(RefsegDataError, match=r"^f\.p: refused: ") as err:
        safe_loads(data, "f.p")
    assert reason in str(err.value)


def test_length_fields_beyond_the_file_are_refused_with_little_memory(tmp_path):
    path = tmp_path / "refs.p"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"ab.")  # BINBYTES8 claiming 1 TiB
    result = run_bounded(
        f"from refseg.data.safe_pickle import safe_load\nsafe_load({str(path)!r})", extra_mb=200
    )
    assert "refs.p: cannot be read as a pickle (ValueError: expected 1099511627776 bytes" in result.stdout


def test_shared_reference_bomb_is_refused_fast(tmp_path):
    data = shared_ref_bomb()
    assert (
        len(data) < 45_000 and len(pickle.loads(data)) * len(pickle.loads(data)[0]["sentences"]) == 40_000_000
    )
    path = tmp_path / "refs(final).p"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(RefsegDataError, match=r"refused: the same dict appears twice \(a shared reference\)"):
        load_refs(path)
    assert time.perf_counter() - start < 5


def test_a_ref_listed_twice_by_reference_is_refused():
    ref = refzom_refs()[0]
    with pytest.raises(RefsegDataError, match="the same dict appears twice"):
        safe_loads(pickle.dumps([ref, ref], protocol=2), "f.p")


def test_a_shared_sentences_list_is_refused():
    refs = refzom_refs()
    refs[1]["sentences"] = refs[0]["sentences"]
    with pytest.raises(RefsegDataError, match="the same list appears twice"):
        safe_loads(pickle.dumps(refs, protocol=4), "f.p")


def test_a_long_string_repeated_by_reference_is_refused():
    text = "x" * 2000
    data = pickle.dumps([text] * 10000, protocol=2)  # 20 KB of memo look-ups, 20 MB of text
    assert len(data) < 25_000
    with pytest.raises(RefsegDataError, match="expands to more than 16 times the file's size"):
        safe_loads(data, "f.p")


def test_short_repeated_keys_and_values_still_load():
    refs = [{"split": "train", "category_id": 1, "sentences": [{"sent": "a"}]} for _ in range(2000)]
    assert safe_loads(pickle.dumps(refs, protocol=2)) == refs


def test_deep_nesting_is_refused():
    value: list = []
    for _ in range(200):
        value = [value]
    with pytest.raises(RefsegDataError, match="nested deeper than 64 levels"):
        safe_loads(pickle.dumps(value, protocol=2), "f.p")


def test_a_bare_numpy_dtype_is_not_plain_data():
    data = b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R."
    with pytest.raises(RefsegDataError, match="unpickled a _NumpyDType, which is not plain data"):
        safe_loads(data, "f.p")


STATE_ATTACKS = {
    "build slot state on _codecs.encode": b"\x80\x02c_codecs\nencode\nN}X\x0c\x00\x00\x00__defaults__"
    b"X\x06\x00\x00\x00latin1\x85s\x86b.",
    "build dict state on _codecs.encode": b"\x80\x02c_codecs\nencode\n}X\x0c\x00\x00\x00__defaults__"
    b"X\x06\x00\x00\x00latin1\x85sb.",
    "build on numpy scalar": b"\x80\x02cnumpy.core.multiarray\nscalar\nN}X\x0c\x00\x00\x00__defaults__"
    b"N\x85s\x86b.",
}


@pytest.mark.parametrize("data", STATE_ATTACKS.values(), ids=STATE_ATTACKS.keys())
def test_state_cannot_be_set_on_allowed_globals(data):
    with pytest.raises(RefsegDataError, match=r"^f\.p: refused to set state on the allowed global"):
        safe_loads(data, "f.p")
    assert _latin1_encode.__defaults__ == ("utf-8",) and _numpy_scalar.__defaults__ == (None,)
    assert safe_loads(pickle.dumps(b"\xff", protocol=2)) == b"\xff"  # the latin-1 path is unchanged


def test_repeated_ref_ids_in_a_pickle_are_refused(tmp_path):
    refs = refzom_refs()
    refs[1]["ref_id"] = refs[0]["ref_id"]
    path = tmp_path / "refs(final).p"
    path.write_bytes(pickle.dumps(refs))
    with pytest.raises(RefsegDataError, match=r"ref #1 repeats ref_id \d+ of ref #0"):
        load_refs(path)


def test_bounded_runner_sees_today_s_allocations(tmp_path: Path):
    """Sanity: the bounded runner reports a memory error when the child really allocates too much."""
    result = run_bounded("bytearray(600 * 2**20)", extra_mb=200)
    assert "MemoryError" in result.stdout


def colliding_int_keys(n: int) -> bytes:
    """A dict whose ``n`` integer keys all hash alike (multiples of 2**61 - 1): quadratic to build."""
    keys = b"".join(pickle.dumps(k * (2**61 - 1), protocol=2)[2:-1] + b"K\x00" for k in range(1, n + 1))
    return b"\x80\x02}(" + keys + b"u."


def test_colliding_dict_keys_are_refused_before_hashing():
    data = colliding_int_keys(24000)  # 333 KB; about 9 s to unpickle (quadratic), the refusal far less
    start = time.perf_counter()
    with pytest.raises(RefsegDataError, match=r"refused: a dict key at byte \d+ is a large integer"):
        safe_loads(data, "f.p")
    assert time.perf_counter() - start < 3  # a shared 2-core machine took 2.2 s for 8000 keys' refusal


@pytest.mark.parametrize(
    "value, what",
    [
        ({(1, 2): "a"}, "a dict key at byte \\d+ is a tuple"),
        ({frozenset({1}): "a"}, "a dict key at byte \\d+ is a (frozenset|reconstructed object)"),
        ({(1,), (2,)}, "a set element at byte \\d+ is a tuple"),
        ({2**64, 2**65}, "a set element at byte \\d+ is a (tuple, )?large integer"),
    ],
)
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_keys_whose_hashes_can_be_lined_up_are_refused(value, what, protocol):
    with pytest.raises(RefsegDataError, match=f"refused: {what}"):
        safe_loads(pickle.dumps([value], protocol=protocol), "f.p")


def test_set_built_by_reduce_from_colliding_ints_is_refused():
    items = b"".join(pickle.dumps(k * (2**61 - 1), protocol=2)[2:-1] for k in range(1, 50))
    for global_op in (b"c__builtin__\nset\n", b"\x8c\x08builtins\x8c\x03set\x93"):
        with pytest.raises(RefsegDataError, match="a set element at byte \\d+ is a tuple, large integer"):
            safe_loads(b"\x80\x04" + global_op + b"](" + items + b"e\x85R.", "f.p")


def test_ordinary_keys_and_elements_still_load():
    value = [
        {"ref_id": 1, 2: 2.5, None: True, 1.5: b"x"},
        {1, "a", 2.5, 2**60},
        frozenset({"a"}),
        (1, (2, 3)),
    ]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert safe_loads(pickle.dumps(value, protocol=protocol)) == value
