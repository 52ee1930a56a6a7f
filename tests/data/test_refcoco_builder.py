import numpy as np
import pytest

from refseg.data import build_refcoco, decode_rle
from tests.data.refer_fixtures import MASK_2, MASK_4, make_refer_style, refcoco_refs


@pytest.mark.parametrize(
    "variant,split_by,splits",
    [
        ("refcoco", "unc", ["train", "testA"]),
        ("refcoco", "google", ["train", "val"]),
        ("refcoco+", "unc", ["train", "testA"]),
        ("refcocog", "umd", ["train", "test"]),
        ("refcocog", "google", ["train", "val"]),
    ],
)
def test_refcoco_family(tmp_path, variant, split_by, splits):
    make_refer_style(tmp_path, variant, split_by, refcoco_refs(split_by))
    ds, stats = build_refcoco(tmp_path, variant=variant, split_by=split_by, cache_dir=str(tmp_path / "cache"))
    assert list(ds) == splits
    train = ds[splits[0]].to_list()
    assert [r["sentence"] for r in train] == [
        "THE LADY ON THE RIGHT",
        "right woman",
    ]  # 'raw' as official loaders
    assert all(not r["no_target"] and len(r["instances"]) == 1 for r in train)
    assert np.array_equal(decode_rle(train[0]["instances"][0]["segmentation"]), MASK_2)
    assert np.array_equal(decode_rle(ds[splits[1]][0]["instances"][0]["segmentation"]), MASK_4)
    assert stats["dataset"] == f"{variant}-{split_by}" and stats["total"]["rows"] == 3


def test_refcoco_rejects_bad_split_scheme_and_multi_ann(tmp_path):
    with pytest.raises(ValueError, match=r"refcoco\+ has no split scheme 'umd'"):
        build_refcoco(tmp_path, variant="refcoco+", split_by="umd")
    refs = refcoco_refs()
    refs[1]["ann_id"] = [4, 5]
    make_refer_style(tmp_path, "refcoco", "unc", refs)
    with pytest.raises(ValueError, match=r"ref #1 \(ref_id=31\): malformed ann_id \[4, 5\]"):
        build_refcoco(tmp_path, cache_dir=str(tmp_path / "cache"))
