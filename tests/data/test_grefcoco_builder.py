import json

import numpy as np
import pytest

from refseg.data import build_grefcoco, decode_rle, merge_instances
from tests.data.refer_fixtures import MASK_1, MASK_2, MASK_4, grefcoco_refs, make_grefcoco


@pytest.fixture
def grefcoco(tmp_path):
    make_grefcoco(tmp_path)
    return build_grefcoco(tmp_path, cache_dir=str(tmp_path / "cache"))


def test_splits_rows_and_flags(grefcoco):
    ds, stats = grefcoco
    assert list(ds) == ["train", "val", "testA", "testB"]
    assert all(
        d.cache_files for d in ds.values()
    )  # generated to memory-mapped Arrow files, not held in memory
    assert {s: len(d) for s, d in ds.items()} == {"train": 2, "val": 2, "testA": 1, "testB": 1}
    train = ds["train"]
    assert train["sent_id"] == [0, 1] and train["ref_id"] == [0, 0]
    assert train["sentence"] == ["two people", "both persons"]
    assert train["no_target"] == [False, False]
    val = ds["val"].to_list()
    assert val[0]["ref_id"] == 1 and val[0]["no_target"] is True and val[0]["instances"] == []


def test_instances_masks_and_boxes(grefcoco):
    ds, _ = grefcoco
    row = ds["train"][0]
    assert row["image"].size == (30, 20) and row["image_id"] == 101
    inst = row["instances"]
    assert [i["ann_id"] for i in inst] == [1, 2]
    assert inst[0]["bbox"] == [2.0, 2.0, 8.0, 6.0] and inst[1]["bbox"] == [20.0, 12.0, 8.0, 6.0]
    assert np.array_equal(decode_rle(inst[0]["segmentation"]), MASK_1)  # invalid 2-point polygon dropped
    assert np.array_equal(decode_rle(inst[1]["segmentation"]), MASK_2)  # compressed RLE kept
    assert np.array_equal(merge_instances(inst, 20, 30), MASK_1 | MASK_2)
    # crowd annotation 3 is skipped: one instance left
    crowd_row = ds["val"][1]
    assert [i["ann_id"] for i in crowd_row["instances"]] == [1] and crowd_row["no_target"] is False
    # bare-int ann_id and uncompressed (list counts) RLE
    dog = ds["testA"][0]
    assert [i["ann_id"] for i in dog["instances"]] == [4] and dog["instances"][0]["category_id"] == 18
    assert np.array_equal(decode_rle(dog["instances"][0]["segmentation"]), MASK_4)
    assert dog["image"].size == (16, 16)


def test_dropped_counts(grefcoco):
    _, stats = grefcoco
    total = stats["total"]
    assert total["crowd_annotations_skipped"] == 1
    assert total["invalid_polygons_dropped"] == 3  # ann 1 (used by refs 0 and 2) and ann 5 (ref 4)
    assert total["instances_without_valid_segmentation"] == 1
    assert total["targeted_rows_without_instances"] == 1  # testB: ann 5 had nothing valid
    assert total["rows"] == 6 and total["no_target_rows"] == 1 and total["multi_target_rows"] == 2
    assert stats["splits"]["val"]["rows"] == 2 and stats["images"] == 2
    assert total["duplicate_ref_ids"] == 0


def test_duplicate_ref_ids_are_counted(tmp_path):
    refs = grefcoco_refs()
    refs[4]["ref_id"] = 3
    _, stats = _build_with(tmp_path, refs)
    assert stats["total"]["duplicate_ref_ids"] == 1 and stats["splits"]["testB"]["duplicate_ref_ids"] == 1


def _build_with(tmp_path, refs):
    make_grefcoco(tmp_path, refs)
    return build_grefcoco(tmp_path, cache_dir=str(tmp_path / "cache"))


def test_missing_image_names_file_and_record(tmp_path):
    make_grefcoco(tmp_path)
    (tmp_path / "images" / "train2014" / "COCO_val2014_000000000102.png").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"grefs\(unc\)\.json: ref #3 \(ref_id=3\).*COCO_val2014_000000000102\.png"
    ):
        build_grefcoco(tmp_path, cache_dir=str(tmp_path / "cache"))


def test_unknown_annotation_id(tmp_path):
    refs = grefcoco_refs()
    refs[2]["ann_id"] = [1, 999]
    with pytest.raises(ValueError, match=r"ref #2 \(ref_id=2\): unknown annotation id 999"):
        _build_with(tmp_path, refs)


def test_malformed_records(tmp_path):
    refs = grefcoco_refs()
    del refs[1]["sentences"]
    with pytest.raises(ValueError, match=r"ref #1: malformed record, missing key\(s\) \['sentences'\]"):
        _build_with(tmp_path, refs)
    refs = grefcoco_refs()
    refs[0]["sentences"][1] = {"sent_id": 1, "tokens": []}
    with pytest.raises(ValueError, match=r"ref_id=0\) sentence #1: malformed record, no 'raw' or 'sent'"):
        _build_with(tmp_path / "b", refs)
    refs = grefcoco_refs()
    refs[0]["ann_id"] = [-1, 2]
    with pytest.raises(ValueError, match=r"ref_id=0\): malformed ann_id"):
        _build_with(tmp_path / "c", refs)


def test_unknown_image_and_size_mismatch(tmp_path):
    refs = grefcoco_refs()
    refs[4]["image_id"] = 555
    with pytest.raises(ValueError, match=r"ref_id=4\): image_id 555 is not in .*instances\.json"):
        _build_with(tmp_path, refs)
    root = tmp_path / "d"
    make_grefcoco(root)
    instances = root / "grefcoco" / "instances.json"
    data = json.loads(instances.read_text())
    data["images"][0]["height"] = 21
    instances.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"is 20x30 but instances\.json says 21x30"):
        build_grefcoco(root, cache_dir=str(tmp_path / "cache"))


def test_missing_refs_file_lists_tried_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"refs file not found; tried:"):
        build_grefcoco(tmp_path)


def test_malformed_annotations_fail_at_planning(tmp_path):
    make_grefcoco(tmp_path)
    instances = tmp_path / "grefcoco" / "instances.json"
    data = json.loads(instances.read_text())
    data["annotations"][1]["segmentation"]["size"] = [10, 10]
    instances.write_text(json.dumps(data))
    with pytest.raises(
        ValueError,
        match=r"ref_id=0\): annotation 2: RLE size \[10, 10\] does not match the image size \[20, 30\]",
    ):
        build_grefcoco(tmp_path, cache_dir=str(tmp_path / "cache"))
    data["annotations"][1]["segmentation"] = [[1, 2, "x", 4, 5, 6]]
    instances.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotation 2: malformed polygon segmentation"):
        build_grefcoco(tmp_path, cache_dir=str(tmp_path / "cache"))
    del data["annotations"][0]["bbox"]
    instances.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"instances\.json: annotations\[0\]: malformed record, missing key\(s\) \['bbox'\]"
    ):
        build_grefcoco(tmp_path)
