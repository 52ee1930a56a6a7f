import pickle

import numpy as np
import pytest

from refseg.data import build_refzom, decode_rle, merge_instances
from tests.data.refer_fixtures import MASK_1, MASK_2, MASK_4, make_refzom, refzom_refs


def test_refzom_rows_sources_and_zero_targets(tmp_path):
    make_refzom(tmp_path)
    ds, stats = build_refzom(tmp_path, cache_dir=str(tmp_path / "cache"))
    assert list(ds) == ["train", "test"]
    train = ds["train"].to_list()
    assert [r["source"] for r in train] == ["one", "many"]
    assert np.array_equal(decode_rle(train[0]["instances"][0]["segmentation"]), MASK_1)
    assert np.array_equal(merge_instances(train[1]["instances"], 20, 30), MASK_1 | MASK_2)
    test = ds["test"].to_list()
    # one-to-zero: ann_id points at annotation 4 but the rows have no target
    assert [r["source"] for r in test] == ["zero", "zero", "one"]  # missing key defaults to 'one'
    assert [r["no_target"] for r in test] == [True, True, False]
    assert test[0]["instances"] == [] and test[1]["ref_id"] == 12 and test[1]["sent_id"] == 13
    assert np.array_equal(decode_rle(test[2]["instances"][0]["segmentation"]), MASK_4)
    # images come from the merged trainval2014 folder (a val2014 file name here)
    assert ds["test"][2]["image"].size == (16, 16)
    assert stats["splits"]["test"]["no_target_rows"] == 2 and stats["total"]["rows"] == 5


def test_refzom_zero_ref_with_unknown_annotation_is_an_error(tmp_path):
    refs = refzom_refs()
    refs[2]["ann_id"] = 77
    make_refzom(tmp_path, refs)
    with pytest.raises(ValueError, match=r"refs\(final\)\.p: ref #2 \(ref_id=12\): unknown annotation id 77"):
        build_refzom(tmp_path, cache_dir=str(tmp_path / "cache"))


def test_refzom_unreadable_pickle(tmp_path):
    make_refzom(tmp_path)
    (tmp_path / "ref-zom" / "refs(final).p").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"refs\(final\)\.p: cannot be read as a pickle"):
        build_refzom(tmp_path)
    with open(tmp_path / "ref-zom" / "refs(final).p", "wb") as f:
        pickle.dump({"refs": []}, f)
    with pytest.raises(ValueError, match=r"expected a list of refs, got dict"):
        build_refzom(tmp_path)
