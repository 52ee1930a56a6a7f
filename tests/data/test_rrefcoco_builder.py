import numpy as np
import pytest

from refseg.data import build_rrefcoco, decode_rle
from tests.data.refer_fixtures import MASK_1, make_refer_style, rrefcoco_refs


@pytest.mark.parametrize(
    "variant,folder,split_by", [("rrefcoco", "rrefcoco", "unc"), ("rrefcocog", "rrefcocog", "umd")]
)
def test_negative_sentences_become_no_target_rows(tmp_path, variant, folder, split_by):
    make_refer_style(tmp_path, folder, split_by, rrefcoco_refs())
    ds, stats = build_rrefcoco(tmp_path, variant=variant, cache_dir=str(tmp_path / "cache"))
    assert list(ds) == ["train", "val"]
    val = ds["val"].to_list()
    assert [r["sent_id"] for r in val] == [20, 21, 22]
    assert [r["ref_id"] for r in val] == [20, 20, 20]  # negatives keep their ref for the per-ref metric
    assert [r["exist"] for r in val] == [True, True, False]  # no key = positive
    assert [r["no_target"] for r in val] == [False, False, True]
    assert val[2]["instances"] == [] and val[2]["sentence"] == "the green umbrella"
    assert np.array_equal(decode_rle(val[0]["instances"][0]["segmentation"]), MASK_1)
    assert ds["train"][0]["exist"] is True
    assert stats["dataset"] == variant and stats["total"]["no_target_rows"] == 1
    assert (
        stats["total"]["crowd_annotations_skipped"] == 0
        and stats["splits"]["train"]["invalid_polygons_dropped"] == 0
    )


def test_unknown_variant(tmp_path):
    with pytest.raises(ValueError, match="unknown R-RefCOCO variant 'rrefclef'"):
        build_rrefcoco(tmp_path, variant="rrefclef")
