"""Annotation files must be regular files (a FIFO or a device link is refused, never read) and JSON errors
name the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from refseg.data import RefsegDataError, build_refzom
from refseg.data.coco import CocoIndex, load_refs
from tests.data.bounded_run import run_bounded
from tests.data.refer_fixtures import make_refzom


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = tmp_path / "refs(final).p"
    os.mkfifo(path)
    return path


def test_fifo_refs_file_is_not_a_regular_file(fifo):
    with pytest.raises(RefsegDataError, match=r"refs\(final\)\.p: not a regular file \(a FIFO\)"):
        load_refs(fifo)


def test_fifo_given_to_safe_load_never_blocks(fifo):
    result = run_bounded(
        f"from refseg.data.safe_pickle import safe_load\nsafe_load({str(fifo)!r})", timeout=30
    )
    assert "not a regular file (a FIFO)" in result.stdout, result.stdout


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_dev_zero_link_is_refused_without_reading(tmp_path):
    link = tmp_path / "refs(final).p"
    link.symlink_to("/dev/zero")
    code = f"from refseg.data.safe_pickle import safe_load\nsafe_load({str(link)!r})"
    result = run_bounded(code, extra_mb=200, timeout=30)
    assert "not a regular file (a character device)" in result.stdout, result.stdout
    with pytest.raises(RefsegDataError, match="not a regular file"):
        load_refs(link)


def test_builder_refuses_a_fifo_refs_file_instead_of_not_found(tmp_path):
    make_refzom(tmp_path)
    refs = tmp_path / "ref-zom" / "refs(final).p"
    refs.unlink()
    os.mkfifo(refs)
    with pytest.raises(RefsegDataError, match=r"ref-zom/refs\(final\)\.p: not a regular file \(a FIFO\)"):
        build_refzom(tmp_path, cache_dir=str(tmp_path / "cache"))


def test_fifo_instances_json_is_refused(tmp_path):
    path = tmp_path / "instances.json"
    os.mkfifo(path)
    with pytest.raises(RefsegDataError, match=r"instances\.json: not a regular file \(a FIFO\)"):
        CocoIndex(path)


def test_missing_files_are_still_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="refs file not found"):
        load_refs(tmp_path / "refs(unc).p")
    with pytest.raises(FileNotFoundError, match="COCO annotation file not found"):
        CocoIndex(tmp_path / "instances.json")


def test_huge_integer_in_instances_json_names_the_file(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text('{"images": [{"id": ' + "9" * 5000 + "}], " + '"annotations": []}')
    with pytest.raises(RefsegDataError, match=r"instances\.json: not valid JSON \(.*digits") as err:
        CocoIndex(path)
    assert len(str(err.value)) < 400


def test_huge_integer_in_refs_json_names_the_file(tmp_path):
    path = tmp_path / "grefs(unc).json"
    path.write_text(json.dumps([{"ref_id": 1}]).replace("1", "1" * 5000))
    with pytest.raises(RefsegDataError, match=r"grefs\(unc\)\.json: not valid JSON"):
        load_refs(path)
