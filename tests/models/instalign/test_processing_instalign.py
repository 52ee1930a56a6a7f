"""InstAlignProcessor: encoding, one sentence per image, post-processing on hand-made outputs, save/load."""

import math
import sys

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, AutoProcessor

import refseg  # noqa: F401  (registers the Auto classes)
from refseg.data import encode_mask
from refseg.models.instalign import InstAlignImageProcessor, InstAlignProcessor
from refseg.models.instalign.processing_instalign import masks_to_boxes
from tests.processing_helpers import fake_outputs, tiny_tokenizer


@pytest.fixture
def processor():
    return InstAlignProcessor(InstAlignImageProcessor(size=8), tiny_tokenizer(model_max_length=6))


def test_call_returns_model_inputs_padded_and_truncated(processor):
    images = [np.zeros((10, 12, 3), np.uint8), np.zeros((7, 7, 3), np.uint8)]
    out = processor(images=images, text=["the red circle", "all blue star and the small green square"])
    assert set(out) == {"pixel_values", "input_ids", "attention_mask"}
    assert out["pixel_values"].shape == (2, 3, 8, 8)
    assert out["input_ids"].shape == (2, 6)  # longest sentence truncated to model_max_length 6
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]
    pad = processor.tokenizer.pad_token_id
    assert out["input_ids"][0, -1].item() == pad


def test_single_image_and_instances_give_mask_labels(processor):
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    out = processor(
        images=np.zeros((4, 4, 3), np.uint8), text="the red circle", instances=[[encode_mask(mask)]]
    )
    assert out["input_ids"].shape[0] == 1
    assert out["mask_labels"][0].shape == (1, 8, 8)
    assert out["mask_labels"][0][0, :4].sum() == 32 and out["mask_labels"][0][0, 4:].sum() == 0


@pytest.mark.parametrize(
    "images, text, message",
    [
        ([np.zeros((4, 4, 3), np.uint8)] * 2, "the red circle", "2 image\\(s\\) and 1 sentence"),
        (np.zeros((4, 4, 3), np.uint8), ["a", "b"], "1 image\\(s\\) and 2 sentence"),
        (np.zeros((4, 4, 3), np.uint8), None, "both images and text"),
        (np.zeros((4, 4, 3), np.uint8), [3], "text\\[0\\] must be a string, got int"),
        (np.zeros((4, 4, 3), np.uint8), "", "text is an empty sentence"),
        (np.zeros((4, 4, 3), np.uint8), "  \t\n", "text is an empty sentence"),
        ([np.zeros((4, 4, 3), np.uint8)] * 2, ["the red circle", " "], "text\\[1\\] is an empty sentence"),
        (np.zeros((4, 4, 3), np.uint8), [], "text is an empty list"),
        ([], ["a"], "empty list of images"),
        (np.zeros((4, 4, 3), np.uint8), 3, "text must be a string or a list of strings"),
    ],
)
def test_sentence_count_errors(processor, images, text, message):
    with pytest.raises(ValueError, match=message):
        processor(images=images, text=text)


def test_masks_to_boxes_exclusive_corners_and_empty():
    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    assert masks_to_boxes(masks).tolist() == [[2.0, 1.0, 5.0, 3.0], [0.0, 0.0, 0.0, 0.0]]


def _hand_made():
    """Batch of 2 at model size 8 with logits at 4x4 (stride 2): sample 0 has a target, sample 1 none."""
    big, small = 10.0, -10.0
    pred_masks = torch.full((2, 3, 4, 4), small)
    pred_masks[0, 0, :2, :2] = big  # query 0: top-left quadrant
    pred_masks[0, 1, 2:, 2:] = big  # query 1: bottom-right quadrant
    pred_masks[0, 2] = big  # query 2: everything, but low score
    pred_scores = torch.tensor([[1.0, 3.0, -2.0], [4.0, 4.0, 4.0]])
    semantic = torch.full((2, 4, 4), small)
    semantic[0, :2, :2] = big
    semantic[0, 2:, 2:] = big
    semantic[1] = big
    no_target = torch.tensor([-3.0, 2.0])
    return fake_outputs(pred_masks, pred_scores, semantic, no_target)


def test_post_process_hand_made_outputs(processor):
    results = processor.post_process_referring_segmentation(_hand_made(), target_sizes=[(16, 8), (5, 7)])
    first, second = results
    assert first["no_target"] is False
    assert first["target_score"] == pytest.approx(1 - 1 / (1 + np.exp(3.0)))
    assert first["mask"].dtype == torch.bool and first["mask"].shape == (16, 8)
    expected = torch.zeros(16, 8, dtype=torch.bool)
    expected[:8, :4] = True
    expected[8:, 4:] = True
    assert torch.equal(first["mask"], expected)
    # query 2 has sigmoid(-2) < 0.5; the others are sorted by score: query 1 then query 0
    assert [round(i["score"], 4) for i in first["instances"]] == [
        round(1 / (1 + np.exp(-3.0)), 4),
        round(1 / (1 + np.exp(-1.0)), 4),
    ]
    assert first["instances"][0]["box"].tolist() == [4.0, 8.0, 8.0, 16.0]
    assert first["instances"][1]["box"].tolist() == [0.0, 0.0, 4.0, 8.0]
    top_left = first["instances"][1]["mask"]
    assert not top_left[8:].any() and not top_left[:, 4:].any()
    assert (
        top_left.sum() >= 31
    )  # the corner pixel interpolates to a logit of exactly 0 (not > 0.5 after sigmoid)
    # sample 1: no target wins, so the mask is empty and there are no instances even with high scores
    assert second["no_target"] is True and second["instances"] == []
    assert second["mask"].shape == (5, 7) and not second["mask"].any()
    assert second["target_score"] == pytest.approx(1 - 1 / (1 + np.exp(-2.0)))
    # the merged mask before the no-target decision is kept for ReLA's GRES union (docs/metrics.md)
    assert torch.equal(first["semantic_mask"], first["mask"])
    assert second["semantic_mask"].shape == (5, 7) and second["semantic_mask"].all()


def test_post_process_thresholds_and_default_size(processor):
    outputs = _hand_made()
    strict = processor.post_process_referring_segmentation(outputs, threshold=0.8)[0]
    assert [round(i["score"], 3) for i in strict["instances"]] == [round(1 / (1 + np.exp(-3.0)), 3)]
    assert strict["mask"].shape == (8, 8)  # model input size when no target size is given
    loose = processor.post_process_referring_segmentation(outputs, threshold=0.1, no_target_threshold=0.95)
    assert len(loose[0]["instances"]) == 3
    assert loose[1]["no_target"] is False and loose[1]["mask"].all()


def test_post_process_errors(processor):
    with pytest.raises(ValueError, match="1 target sizes for a batch of 2"):
        processor.post_process_referring_segmentation(_hand_made(), target_sizes=[(4, 4)])
    with pytest.raises(ValueError, match="have no .pred_scores."):
        processor.post_process_referring_segmentation({"pred_masks": torch.zeros(1, 1, 2, 2)})


def test_save_and_load_round_trip(tmp_path, processor):
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "processor_config.json").is_file() and (tmp_path / "tokenizer.json").is_file()
    for loaded in (InstAlignProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert isinstance(loaded, InstAlignProcessor)
        assert loaded.image_processor.size == {"height": 8, "width": 8}
        a = processor(images=np.full((5, 5, 3), 9, np.uint8), text="the small red circle")
        b = loaded(images=np.full((5, 5, 3), 9, np.uint8), text="the small red circle")
        torch.testing.assert_close(a["pixel_values"], b["pixel_values"])
        assert torch.equal(a["input_ids"], b["input_ids"])
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), InstAlignImageProcessor)


def test_image_processor_post_processes_the_same(processor):
    outputs = _hand_made()
    a = processor.post_process_referring_segmentation(outputs, target_sizes=[(16, 8), (5, 7)])
    b = processor.image_processor.post_process_referring_segmentation(outputs, target_sizes=[(16, 8), (5, 7)])
    assert [torch.equal(x["mask"], y["mask"]) for x, y in zip(a, b)] == [True, True]
    assert [len(x["instances"]) for x in a] == [len(y["instances"]) for y in b]


def test_image_indices_process_each_image_once_and_label_every_sentence(processor):
    top, left = np.zeros((4, 4), bool), np.zeros((6, 6), bool)
    top[:2], left[:, :3] = True, True
    images = [np.zeros((4, 4, 3), np.uint8), np.full((6, 6, 3), 255, np.uint8)]
    out = processor(
        images=images,
        text=["the top", "the left", "nothing", "the top again"],
        instances=[[encode_mask(top)], [encode_mask(left)], [], [encode_mask(top)]],
        image_indices=[0, 1, 1, 0],
    )
    assert out["pixel_values"].shape == (2, 3, 8, 8)
    assert out["image_indices"].tolist() == [0, 1, 1, 0] and out["image_indices"].dtype == torch.long
    assert out["input_ids"].shape[0] == 4 and len(out["mask_labels"]) == 4
    assert [tuple(m.shape) for m in out["mask_labels"]] == [(1, 8, 8), (1, 8, 8), (0, 8, 8), (1, 8, 8)]
    assert out["mask_labels"][0][0, :4].sum() == 32 and out["mask_labels"][0][0, 4:].sum() == 0
    assert out["mask_labels"][1][0, :, :4].sum() == 32 and out["mask_labels"][1][0, :, 4:].sum() == 0
    single = processor(images=images[1], text="the left", instances=[[encode_mask(left)]])
    torch.testing.assert_close(out["pixel_values"][1], single["pixel_values"][0], rtol=0, atol=0)


@pytest.mark.parametrize(
    "indices, message",
    [([0], "got 1 image_indices for 2 sentence"), ([0, 2], r"must lie in \[0, 2\) for 2 image")],
)
def test_image_indices_errors(processor, indices, message):
    images = [np.zeros((4, 4, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match=message):
        processor(images=images, text=["a", "b"], image_indices=indices)


def test_max_length_beyond_the_tokenizer_is_refused(processor):
    image = np.zeros((4, 4, 3), np.uint8)
    assert processor(images=image, text="the red circle", max_length=4)["input_ids"].shape == (1, 4)
    with pytest.raises(ValueError, match="max_length 7 is beyond the 6 token positions of the tokenizer"):
        processor(images=image, text="the red circle", max_length=7)
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        processor(images=image, text="the red circle", max_length=0)


@pytest.mark.parametrize("name", ["threshold", "mask_threshold", "no_target_threshold"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -0.1, 1.5, "0.5"])
def test_post_process_refuses_thresholds_outside_0_1(processor, name, value):
    with pytest.raises(ValueError, match=f"{name} must be a"):
        processor.post_process_referring_segmentation(_hand_made(), **{name: value})


@pytest.mark.parametrize("field", ["pred_scores", "no_target_logits", "semantic_mask_logits", "pred_masks"])
def test_post_process_refuses_nan_logits(processor, field):
    outputs = _hand_made()
    outputs[field].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="the model produced NaN"):
        processor.post_process_referring_segmentation(outputs)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc (Linux)")
def test_post_process_memory_stays_o_image_size_at_threshold_0():
    """16 queries kept at a 2000 x 2000 target: the peak must stay far below 16 float masks (256 MB).

    Upsampling all kept queries at once (the old code) peaks above 512 MB here (float logits plus their
    sigmoid); one query at a time needs one float mask (16 MB) plus the kept bool masks (16 x 4 MB).
    """
    num_queries, side = 16, 2000
    image_processor = InstAlignImageProcessor(size=32)
    outputs = fake_outputs(
        torch.full((1, num_queries, 8, 8), 5.0),
        torch.full((1, num_queries), 5.0),
        torch.full((1, 8, 8), 5.0),
        [-5.0],
    )
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size to the current one
    before = _rss_kib("VmRSS")
    # NMS off: the 16 identical masks would be one instance (tests/models/test_instance_nms_post_processing.py)
    result = image_processor.post_process_referring_segmentation(
        outputs, target_sizes=[(side, side)], threshold=0.0, mask_threshold=0.0, instance_nms_threshold=None
    )[0]
    peak_mib = (_rss_kib("VmHWM") - before) / 1024
    assert len(result["instances"]) == num_queries and result["instances"][0]["mask"].dtype == torch.bool
    float_mask_mib = side * side * 4 / 2**20
    assert peak_mib < 10 * float_mask_mib, f"post-processing peaked at {peak_mib:.0f} MiB"
