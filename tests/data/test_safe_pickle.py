"""The restricted unpickler: plain refs data loads, nothing in a crafted pickle runs."""

import copyreg
import os
import pickle

import numpy as np
import pytest

from refseg.data import RefsegDataError, build_refzom
from refseg.data.coco import load_refs
from refseg.data.safe_pickle import safe_load, safe_loads
from tests.data.refer_fixtures import make_refzom, refzom_refs


class WritesMarker:
    """Unpickling this with plain ``pickle`` calls ``os.system`` (writes the marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


class ExecsMarker:
    """Unpickling this with plain ``pickle`` calls ``builtins.exec`` (a builtin that is not allowed)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


class Plain:
    """An ordinary class: pickled by reference to its module (INST/OBJ/NEWOBJ opcodes)."""

    def __init__(self):
        self.x = 1


def refs_with(payload) -> list:
    refs = refzom_refs()
    refs[1]["sentences"][0]["tokens"] = [payload]  # deep inside an otherwise valid refs list
    return refs


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("payload_class", [WritesMarker, ExecsMarker])
def test_malicious_payload_never_runs(tmp_path, protocol, payload_class):
    marker = tmp_path / "marker"
    data = pickle.dumps(refs_with(payload_class(marker)), protocol=protocol)
    call, args = payload_class(marker).__reduce__()[:2]
    call(*args)  # sanity: the reduction a plain unpickler would call is live (no pickle is loaded here)
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "refs(final).p"
    path.write_bytes(data)
    with pytest.raises(
        RefsegDataError, match=r"refs\(final\)\.p: refused to load the global '(posix|builtins|__builtin__)\."
    ) as err:
        safe_load(path)
    assert "nothing from the file was run" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 1, 2, 4])
def test_classes_are_refused(protocol):
    with pytest.raises(
        RefsegDataError, match=r"refused to load the global '(copy_reg\._reconstructor|.*Plain)'"
    ):
        safe_loads(pickle.dumps([Plain()], protocol=protocol), "f.p")


def test_extension_registry_and_persistent_ids_are_refused(tmp_path):
    copyreg.add_extension("posix", "system", 0x7FFFFF0)
    try:
        data = pickle.dumps(os.system, protocol=2)
    finally:
        copyreg.remove_extension("posix", "system", 0x7FFFFF0)
    copyreg.add_extension("posix", "system", 0x7FFFFF0)  # registered while loading too
    try:
        with pytest.raises(RefsegDataError, match=r"f\.p: refused to load the global 'posix\.system'"):
            safe_loads(data, "f.p")
    finally:
        copyreg.remove_extension("posix", "system", 0x7FFFFF0)
    persistent = b"\x80\x02]q\x00Pfoo\nq\x01a."  # [persistent_load("foo")]
    with pytest.raises(
        RefsegDataError, match=r"f\.p: cannot be read as a pickle \(UnpicklingError: persistent"
    ):
        safe_loads(persistent, "f.p")


def test_builder_and_cli_refuse_the_payload_before_validation(tmp_path):
    marker = tmp_path / "marker"
    make_refzom(tmp_path / "src", refs_with(WritesMarker(marker)))
    with pytest.raises(
        RefsegDataError, match=r"ref-zom/refs\(final\)\.p: refused to load the global 'posix\.system'"
    ):
        build_refzom(tmp_path / "src", cache_dir=str(tmp_path / "cache"))
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_refs_load_unchanged(tmp_path, protocol):
    refs = refzom_refs()
    refs[0]["extra"] = {
        "tuple": (1, 2.5, "é"),
        "none": None,
        "flags": [True, False],
        "big": 2**70,
        "neg": -3,
        "set": {1, 2},
        "frozen": frozenset({"a"}),
        "bytes": b"\x00\xff",
        "unicode": "ß 東京",
    }
    path = tmp_path / "refs(final).p"
    path.write_bytes(pickle.dumps(refs, protocol=protocol))
    assert safe_load(path) == refs
    assert load_refs(path) == refs


def test_python2_style_pickle_with_builtin_set():
    py2 = b"(lp0\n(dp1\nS'raw'\np2\nS'hi'\np3\nsS'ids'\np4\nc__builtin__\nset\np5\n((lp6\nI1\naI2\natp7\nRp8\nsa."
    assert safe_loads(py2) == [{"raw": "hi", "ids": {1, 2}}]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_scalars_become_python_numbers(protocol):
    refs = [{"ref_id": np.int64(7), "exist": np.bool_(False), "score": np.float32(0.5), "u": np.uint8(200)}]
    out = safe_loads(pickle.dumps(refs, protocol=protocol))
    assert out == [{"ref_id": 7, "exist": False, "score": 0.5, "u": 200}]
    assert type(out[0]["ref_id"]) is int and type(out[0]["exist"]) is bool and type(out[0]["score"]) is float
    big_endian = np.array([258], dtype=">i4")[0]
    assert safe_loads(pickle.dumps(big_endian, protocol=protocol)) == 258


def test_numpy_arrays_object_scalars_and_other_codecs_are_refused():
    with pytest.raises(
        RefsegDataError, match=r"refused to load the global 'numpy\._core\.multiarray\._reconstruct'"
    ):
        safe_loads(pickle.dumps(np.arange(3), protocol=2), "f.p")
    obj_scalar = (
        b"\x80\x02cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R}\x86R."
    )
    with pytest.raises(RefsegDataError, match=r"unsupported NumPy scalar type 'O8'"):
        safe_loads(obj_scalar, "f.p")
    rot13 = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(RefsegDataError, match=r"refused _codecs\.encode with encoding 'rot13'"):
        safe_loads(rot13, "f.p")


@pytest.mark.parametrize("data", [b"", b"\x80\x04", b"not a pickle", pickle.dumps([1, 2, 3])[:-3]])
def test_damaged_pickles_name_the_file(data):
    with pytest.raises(RefsegDataError, match=r"^refs\.p: cannot be read as a pickle") as err:
        safe_loads(data, "refs.p")
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file: .*nope.p"):
        safe_load(tmp_path / "nope.p")
