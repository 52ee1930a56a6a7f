"""Benchmark files are validated where they enter: paths, images, RLEs, polygons, flags, ids, splits."""

import json
import math
import os

import numpy as np
import pytest

from refseg.data import (
    RefsegDataError,
    build_grefcoco,
    build_refzom,
    build_rrefcoco,
    decode_rle,
    prepare_dataset,
    write_parquet,
)
from refseg_cli import data as data_command
from tests.data.refer_fixtures import (
    IMAGES,
    MASK_1,
    grefcoco_refs,
    make_grefcoco,
    make_refer_style,
    make_refzom,
    refzom_refs,
    rrefcoco_refs,
)
from tests.data.test_prepare import build_parser


def edit_instances(root, edit, folder="grefcoco"):
    path = root / folder / "instances.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def build(root):
    return build_grefcoco(root, cache_dir=str(root / "cache"))


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ---- image paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "file_name,message",
    [
        ("../secret.jpg", r"file_name '\.\./secret\.jpg' leaves the image folder \('\.\.' is refused\)"),
        ("sub/../../secret.jpg", r"leaves the image folder"),
        ("..\\secret.jpg", r"leaves the image folder"),
        ("ABSOLUTE", r"is an absolute path"),
        ("C:\\secret.jpg", r"is an absolute path"),
        ("", r"field 'file_name' must be a non-empty file name"),
        ("a\x00b.jpg", r"field 'file_name' must be a non-empty file name"),
        (7, r"field 'file_name' must be a string"),
    ],
)
def test_file_names_must_stay_inside_the_image_folder(tmp_path, file_name, message):
    root = make_grefcoco(tmp_path / "src")
    secret = tmp_path / "src" / "images" / "secret.jpg"  # exists, one level above train2014
    (root / "images" / "train2014" / IMAGES[101]["file_name"]).rename(secret)
    if file_name == "ABSOLUTE":
        file_name = str(secret)
    edit_instances(root, lambda d: d["images"][0].update(file_name=file_name))
    with pytest.raises(RefsegDataError, match=r"instances\.json: image 101: .*" + message) as err:
        build(root)
    one_line_error(err)


def test_symbolic_links_leading_outside_are_refused(tmp_path):
    root = make_grefcoco(tmp_path / "src")
    folder = root / "images" / "train2014"
    outside = tmp_path / "elsewhere.jpg"
    (folder / IMAGES[101]["file_name"]).rename(outside)
    os.symlink(outside, folder / IMAGES[101]["file_name"])
    with pytest.raises(
        RefsegDataError, match=r"image 101: file_name .* resolves to .*elsewhere\.jpg, outside"
    ):
        build(root)
    # a link that stays inside the folder, and a folder that is itself a link, are fine
    (folder / IMAGES[101]["file_name"]).unlink()
    outside.rename(folder / "real.jpg")
    os.symlink(folder / "real.jpg", folder / IMAGES[101]["file_name"])
    linked = tmp_path / "linked"
    os.symlink(folder, linked)
    ds, _ = build_grefcoco(root, image_dir=linked, cache_dir=str(tmp_path / "cache"))
    assert ds["train"][0]["image"].size == (30, 20)


# ---- images --------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "garbage", "ppm"])
def test_undecodable_images_fail_at_prepare_time(tmp_path, damage):
    root = make_grefcoco(tmp_path / "src")
    image = root / "images" / "train2014" / IMAGES[101]["file_name"]
    data = image.read_bytes()
    if damage == "truncate":
        image.write_bytes(data[: len(data) * 2 // 3])  # header intact: the size check alone passes
    elif damage == "garbage":
        image.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    else:  # a valid image, but not in an accepted format
        image.write_bytes(b"P6\n30 20\n255\n" + bytes(30 * 20 * 3))
    with pytest.raises(
        RefsegDataError, match=r"COCO_train2014_000000000101\.jpg: cannot decode the image"
    ) as err:
        prepare_dataset("grefcoco", root, tmp_path / "out", progress=False)
    one_line_error(err)
    assert not (tmp_path / "out" / "data").exists()


@pytest.mark.parametrize("field,value", [("height", 0), ("width", -30), ("height", "tall"), ("width", 30.5)])
def test_image_sizes_must_be_positive_integers(tmp_path, field, value):
    root = make_grefcoco(tmp_path)
    edit_instances(root, lambda d: d["images"][0].update({field: value}))
    with pytest.raises(RefsegDataError, match=rf"instances\.json: image 101: field '{field}' must be"):
        build(root)


# ---- RLE and polygons ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts,message",
    [
        ("", r"RLE counts sum to 0, not height\*width = 600"),
        ("\x01\x02garbage", r"RLE counts string has characters outside the COCO alphabet"),
        ("0P", r"RLE counts string is truncated"),
        ([100, -1, 501], r"RLE counts must not be negative"),
        ([100, 10], r"RLE counts sum to 110"),
    ],
)
def test_bad_rle_fails_naming_the_annotation(tmp_path, counts, message):
    root = make_grefcoco(tmp_path)
    edit_instances(root, lambda d: d["annotations"][1]["segmentation"].update(counts=counts))
    with pytest.raises(
        RefsegDataError, match=r"grefs\(unc\)\.json: ref #0 \(ref_id=0\): annotation 2: " + message
    ):
        build(root)


def test_nan_and_far_outside_polygons_are_dropped_and_counted(tmp_path):
    def edit(data):
        anns = data["annotations"]
        anns[0]["segmentation"] = [
            [2, 2, 10, 2, 10, 8, 2, 8],
            [1, math.nan, 5, 5, 1, 5],
        ]  # NaN polygon dropped
        anns[1]["segmentation"] = [[1e9, 1e9, 2e9, 1e9, 2e9, 2e9]]  # wholly outside: empty instance

    root = make_grefcoco(tmp_path / "src")
    edit_instances(root, edit)  # json writes NaN, as some converters do
    stats = prepare_dataset("grefcoco", root, tmp_path / "out", progress=False)
    saved = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert saved["splits"]["train"]["empty_instances_dropped"] == 1
    assert (
        saved["splits"]["train"]["invalid_polygons_dropped"] == 1
    )  # the NaN polygon (counted per ref, not per row)
    assert saved["splits"]["train"]["multi_target_rows"] == 0  # ref 0 is left with one instance
    assert saved["total"] == stats["total"]
    ds, _ = build(root)
    row = ds["train"][0]
    assert [i["ann_id"] for i in row["instances"]] == [1]
    assert np.array_equal(decode_rle(row["instances"][0]["segmentation"]), MASK_1)


def test_all_zero_rle_is_an_empty_instance(tmp_path):
    root = make_grefcoco(tmp_path)
    edit_instances(
        root, lambda d: d["annotations"][1].update(segmentation={"size": [20, 30], "counts": [600]})
    )
    ds, stats = build(root)
    assert stats["splits"]["train"]["empty_instances_dropped"] == 1
    assert [i["ann_id"] for i in ds["train"][0]["instances"]] == [1]


@pytest.mark.parametrize(
    "bbox,message",
    [
        ([1, 2, 3], r"field 'bbox' must be \[x, y, w, h\]"),
        ([0, 0, math.nan, 1], "finite"),
        ([0, 0, -1, 2], "negative"),
    ],
)
def test_bad_boxes(tmp_path, bbox, message):
    root = make_grefcoco(tmp_path)
    edit_instances(root, lambda d: d["annotations"][1].update(bbox=bbox))
    with pytest.raises(RefsegDataError, match=r"annotation 2: .*" + message):
        build(root)


# ---- flags, read by value ------------------------------------------------------------------


@pytest.mark.parametrize(
    "iscrowd,kept", [("0", True), ("false", True), (0.0, True), ("1", False), ("TRUE", False)]
)
def test_iscrowd_is_read_by_value(tmp_path, iscrowd, kept):
    root = make_grefcoco(tmp_path)
    edit_instances(root, lambda d: d["annotations"][1].update(iscrowd=iscrowd))
    ds, stats = build(root)
    assert [i["ann_id"] for i in ds["train"][0]["instances"]] == ([1, 2] if kept else [1])
    assert stats["splits"]["train"]["crowd_annotations_skipped"] == (0 if kept else 1)


@pytest.mark.parametrize("iscrowd", ["maybe", "", 2, None, [0]])
def test_unknown_iscrowd_is_an_error(tmp_path, iscrowd):
    root = make_grefcoco(tmp_path)
    edit_instances(root, lambda d: d["annotations"][1].update(iscrowd=iscrowd))
    with pytest.raises(RefsegDataError, match=r"annotation 2: field 'iscrowd' must be a flag"):
        build(root)


def test_exist_is_read_by_value(tmp_path):
    refs = rrefcoco_refs()
    sentences = refs[0]["sentences"]
    sentences[0]["exist"], sentences[1]["exist"], sentences[2]["exist"] = "0", "True", "false"
    make_refer_style(tmp_path, "rrefcoco", "unc", refs)
    ds, _ = build_rrefcoco(tmp_path, cache_dir=str(tmp_path / "cache"))
    assert ds["val"]["exist"] == [False, True, False] and ds["val"]["no_target"] == [True, False, True]
    sentences[1]["exist"] = "sometimes"
    make_refer_style(tmp_path / "b", "rrefcoco", "unc", refs)
    with pytest.raises(RefsegDataError, match=r"ref_id=20\) sentence #1: field 'exist' must be a flag"):
        build_rrefcoco(tmp_path / "b", cache_dir=str(tmp_path / "cache"))


def test_refzom_source_is_compared_by_value(tmp_path):
    refs = refzom_refs()
    refs[0]["source"] = " Zero "
    make_refzom(tmp_path, refs)
    ds, _ = build_refzom(tmp_path, cache_dir=str(tmp_path / "cache"))
    assert ds["train"][0]["no_target"] is True and ds["train"][0]["source"] == "zero"
    refs[0]["source"] = 0
    make_refzom(tmp_path / "b", refs)
    with pytest.raises(RefsegDataError, match=r"ref_id=10\): field 'source' must be a string, got 0"):
        build_refzom(tmp_path / "b")


# ---- ids, splits, sentences ----------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("ref_id", True, r"ref #0: field 'ref_id' must be an integer, got the boolean True"),
        ("ref_id", 1.5, r"ref #0: field 'ref_id' must be an integer, got 1\.5"),
        ("ref_id", None, r"ref #0: field 'ref_id' must be an integer, got None"),
        ("ref_id", 2**70, r"ref #0: field 'ref_id' = \d+ does not fit in 64 bits"),
        ("image_id", "101x", r"ref_id=0\): field 'image_id' must be an integer"),
        ("ann_id", [1, "two"], r"ref_id=0\): malformed ann_id \[1, 'two'\] \(entries must be integers\)"),
        ("ann_id", [1, [2]], r"ref_id=0\): malformed ann_id"),
        ("split", "../../outside", r"ref_id=0\): field 'split' must be a name of letters, digits and '_'"),
        ("split", "train*", r"field 'split' must be a name"),
        ("split", 3, r"field 'split' must be a name"),
        ("sentences", "two people", r"'sentences' must be a non-empty list"),
    ],
)
def test_bad_ref_fields(tmp_path, field, value, message):
    refs = grefcoco_refs()
    refs[0][field] = value
    make_grefcoco(tmp_path, refs)
    with pytest.raises(RefsegDataError, match=r"grefs\(unc\)\.json: .*" + message) as err:
        build(tmp_path)
    one_line_error(err)


def test_integral_ids_in_other_spellings_are_accepted(tmp_path):
    refs = grefcoco_refs()
    refs[0]["ref_id"], refs[0]["image_id"], refs[0]["ann_id"] = 0.0, "101", [1.0, "2"]
    make_grefcoco(tmp_path, refs)
    ds, _ = build(tmp_path)
    assert ds["train"][0]["ref_id"] == 0 and [i["ann_id"] for i in ds["train"][0]["instances"]] == [1, 2]


def test_bad_sentence_fields(tmp_path):
    refs = grefcoco_refs()
    refs[0]["sentences"][0]["raw"] = 5
    make_grefcoco(tmp_path, refs)
    with pytest.raises(RefsegDataError, match=r"ref_id=0\) sentence #0: field 'raw' must be a string, got 5"):
        build(tmp_path)
    refs = grefcoco_refs()
    refs[0]["sentences"][1]["sent_id"] = "one"
    make_grefcoco(tmp_path / "b", refs)
    with pytest.raises(RefsegDataError, match=r"sentence #1: field 'sent_id' must be an integer"):
        build(tmp_path / "b")


def test_blank_sentences_and_repeated_annotations_are_dropped_and_counted(tmp_path):
    refs = grefcoco_refs()
    refs[0]["sentences"][1]["raw"] = "   "
    refs[0]["sentences"][1]["sent"] = ""
    refs[2]["ann_id"] = [1, 1, 3]
    make_grefcoco(tmp_path, refs)
    ds, stats = build(tmp_path)
    assert ds["train"]["sent_id"] == [0]
    assert stats["splits"]["train"]["empty_sentences_dropped"] == 1 and stats["splits"]["train"]["rows"] == 1
    assert stats["splits"]["val"]["duplicate_ann_ids_dropped"] == 1
    assert [i["ann_id"] for i in ds["val"][1]["instances"]] == [1]  # 3 is a crowd annotation
    refs[0]["sentences"][0]["raw"] = "  "  # raw blank, sent used instead
    make_grefcoco(tmp_path / "b", refs)
    assert build(tmp_path / "b")[0]["train"]["sentence"] == ["two people"]


def test_conflicting_duplicate_ids_in_instances(tmp_path):
    root = make_grefcoco(tmp_path)
    edit_instances(root, lambda d: d["annotations"].append({**d["annotations"][0], "category_id": 18}))
    with pytest.raises(
        RefsegDataError, match=r"instances\.json: annotations\[5\]: annotations id 1 appears twice"
    ):
        build(root)
    edit_instances(root, lambda d: d.update(images={"101": {}}))
    with pytest.raises(RefsegDataError, match=r"instances\.json: 'images' must be a list, got dict"):
        build(root)


def test_instances_file_that_is_not_text(tmp_path):
    root = make_grefcoco(tmp_path)
    (root / "grefcoco" / "instances.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RefsegDataError, match=r"instances\.json: not valid JSON"):
        build(root)


# ---- prepare and the CLI -------------------------------------------------------------------


def test_prepare_arguments(tmp_path):
    root = make_grefcoco(tmp_path / "src")
    with pytest.raises(RefsegDataError, match="rows_per_shard must be a positive integer, got 0"):
        prepare_dataset("grefcoco", root, tmp_path / "out", rows_per_shard=0, progress=False)
    with pytest.raises(RefsegDataError, match="num_proc must be a positive integer, got -2"):
        prepare_dataset("grefcoco", root, tmp_path / "out", num_proc=-2, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RefsegDataError, match="output .*file exists and is not a folder"):
        prepare_dataset("grefcoco", root, tmp_path / "file", progress=False)
    with pytest.raises(
        RefsegDataError, match=r"invalid refs file name 'grefs\(\.\./x\)\.json' \(check split_by\)"
    ):
        build_grefcoco(root, split_by="../x")
    with pytest.raises(RefsegDataError, match="write_parquet: field 'split' must be a name"):
        write_parquet({"../x": None}, tmp_path / "out", progress=False)
    for bad in (["--rows-per-shard", "0"], ["--num-proc", "-1"], ["--num-proc", "two"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["prepare", "grefcoco", "--root", "r", "--output", "o", *bad])


def test_cli_raises_one_clear_line(tmp_path):
    root = make_grefcoco(tmp_path / "src")
    edit_instances(root, lambda d: d["images"][0].update(file_name="../../../etc/passwd"))
    args = build_parser().parse_args(
        ["prepare", "grefcoco", "--root", str(root), "--output", str(tmp_path / "o")]
    )
    with pytest.raises(
        ValueError, match=r"instances\.json: image 101: file_name '\.\./\.\./\.\./etc/passwd'"
    ) as err:
        data_command.run(args)
    one_line_error(err)
    (root / "grefcoco" / "grefs(unc).json").unlink()
    with pytest.raises(FileNotFoundError, match=r"refs file not found; tried: ") as err:
        data_command.run(args)
    one_line_error(err)


def test_text_that_cannot_be_stored_and_empty_refs(tmp_path):
    refs = grefcoco_refs()
    refs[0]["sentences"][0]["raw"] = "bad \ud800 text"  # a lone surrogate (valid in JSON, not in UTF-8)
    make_grefcoco(tmp_path, refs)
    with pytest.raises(RefsegDataError, match=r"sentence #0: field 'raw' is not valid Unicode text"):
        build(tmp_path)
    make_grefcoco(tmp_path / "b", [])
    with pytest.raises(RefsegDataError, match=r"grefs\(unc\)\.json: no rows to write \(0 refs read\)"):
        build(tmp_path / "b")


def test_box_beyond_float32(tmp_path):
    root = make_grefcoco(tmp_path)
    edit_instances(root, lambda d: d["annotations"][1].update(bbox=[0, 0, 1e39, 1]))
    with pytest.raises(RefsegDataError, match=r"annotation 2: field 'bbox' does not fit in float32"):
        build(root)
