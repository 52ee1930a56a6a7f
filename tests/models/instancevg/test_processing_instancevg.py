"""InstanceVG processor: BEiT-3 tokenizer, the original's resize, targets, post-processing and the pipeline."""

import numpy as np
import PIL.Image
import pytest
import sentencepiece as spm
import torch
from torch.nn import functional as F
from transformers import AutoModel, AutoProcessor, pipeline
from transformers.utils import ModelOutput

import refseg  # noqa: F401
from refseg.models.instancevg import InstanceVGImageProcessor, InstanceVGProcessor
from refseg.models.instancevg.processing_instancevg import clean_expression, tokenizer_from_sentencepiece
from tests.models.instancevg.spm_helpers import train_sentencepiece


def test_clean_expression_matches_the_original():
    assert clean_expression('The "Red"-circle, on the LEFT!? (a/b);:#*') == "the red circle on the left a b"


def test_tokenizer_ids_follow_the_fairseq_offset(beit3_spm, tiny_tokenizer):
    sp = spm.SentencePieceProcessor(model_file=str(beit3_spm))
    for text in [
        "the red circle on the left",
        "zebra xylophone qq",
        "a man holding two umbrellas with a dog and a cat",
    ]:
        ids = tiny_tokenizer(text, truncation=True, max_length=12)["input_ids"]
        pieces = [(i + 1) if i != 0 else 3 for i in sp.encode(text)]  # spm id 0 is <unk> -> 3
        assert ids == [0] + pieces[:10] + [2]
    assert (tiny_tokenizer.pad_token_id, tiny_tokenizer.unk_token_id) == (1, 3)


def test_bpe_sentencepiece_is_rejected(tmp_path):
    path = train_sentencepiece(tmp_path / "bpe.spm", model_type="bpe")
    with pytest.raises(ValueError, match="not a Unigram"):
        tokenizer_from_sentencepiece(path)
    with pytest.raises(FileNotFoundError):
        tokenizer_from_sentencepiece(tmp_path / "missing.spm")


def test_processor_outputs_and_right_padding(tiny_tokenizer):
    processor = InstanceVGProcessor(InstanceVGImageProcessor(size=64), tiny_tokenizer)
    images = [PIL.Image.new("RGB", (50, 30), (255, 0, 0)), np.zeros((20, 20, 3), dtype=np.uint8)]
    out = processor(
        images=images, text=["The red circle!", "a man holding two umbrellas with a dog and a cat"]
    )
    assert out["pixel_values"].shape == (2, 3, 64, 64)
    assert out["input_ids"].shape[1] == 12  # truncated to model_max_length, BOS/EOS kept
    assert out["input_ids"][1, -1] == 2 and out["input_ids"][0, 0] == 0
    mask = out["attention_mask"]
    assert mask[0].tolist() == sorted(mask[0].tolist(), reverse=True) and mask[0, -1] == 0
    assert (out["input_ids"][0][mask[0] == 0] == 1).all()
    padded = processor(images=images[:1], text="the dog", padding="max_length", max_length=10)
    assert padded["input_ids"].shape == (1, 10) and padded["attention_mask"][0, -1] == 0
    paired = processor(images=images, text=["the dog", "a cat", "the dog"], image_indices=[1, 0, 1])
    assert "image_indices" not in paired and paired["pixel_values"].shape == (3, 3, 64, 64)
    single = processor(images=images, text=["the dog", "a cat"])["pixel_values"]
    assert torch.equal(paired["pixel_values"], single[[1, 0, 1]])  # each image repeated for its sentences
    with pytest.raises(ValueError, match="one sentence per image"):
        processor(images=images, text="one")
    with pytest.raises(ValueError, match="empty after cleaning"):
        processor(images=images[:1], text="?!")


def test_resize_is_bilinear_without_antialias_on_grey_levels():
    processor = InstanceVGImageProcessor(size=8, resample_backend="torch")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(32, 24, 3), dtype=np.uint8)
    pixels = processor(image)["pixel_values"][0]
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None]
    resized = F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False, antialias=False)[0]
    resized = resized.round().clamp(0, 255) / 255
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    torch.testing.assert_close(pixels, (resized - mean) / std)
    antialiased = F.interpolate(x, size=(8, 8), mode="bilinear", antialias=True)[0].round() / 255
    assert not torch.allclose(pixels, (antialiased - mean) / std)


def test_opencv_backend_is_cv2_inter_linear_on_uint8():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(37, 91, 3), dtype=np.uint8)
    pixels = InstanceVGImageProcessor(size=16)(image)["pixel_values"][0]
    expected = torch.from_numpy(cv2.resize(image, (16, 16), interpolation=cv2.INTER_LINEAR)).permute(2, 0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    torch.testing.assert_close(pixels, (expected.float() / 255 - mean) / std, rtol=0, atol=1e-6)


def test_sixteen_bit_images_keep_their_high_byte_as_opencv_decodes_them():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 65536, size=(12, 10), dtype=np.uint16)
    for backend in ("opencv", "torch"):
        if backend == "opencv":
            pytest.importorskip("cv2")
        processor = InstanceVGImageProcessor(size=6, resample_backend=backend)
        ours = processor(PIL.Image.fromarray(image))["pixel_values"]
        expected = processor(np.repeat((image >> 8).astype(np.uint8)[..., None], 3, axis=2))["pixel_values"]
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)


def test_pil_images_resize_like_opencv_on_their_decoded_arrays():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(29, 41, 3), dtype=np.uint8)
    grey, bilevel = rgb[..., 0], rgb[..., 0] > 127
    processor = InstanceVGImageProcessor(size=12)
    cases = [  # (PIL image, the uint8 RGB array OpenCV's colour decoder would give)
        (PIL.Image.fromarray(rgb), rgb),
        (PIL.Image.fromarray(grey), np.repeat(grey[..., None], 3, axis=2)),
        (PIL.Image.fromarray(np.dstack([rgb, grey])), rgb),  # alpha dropped, not composited
        (PIL.Image.fromarray(bilevel), np.repeat(bilevel[..., None].astype(np.uint8) * 255, 3, axis=2)),
    ]
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    for image, array in cases:
        resized = torch.from_numpy(cv2.resize(array, (12, 12), interpolation=cv2.INTER_LINEAR)).permute(
            2, 0, 1
        )
        expected = ((resized.float() / 255 - mean) / std)[None]
        torch.testing.assert_close(
            processor(image)["pixel_values"], expected, rtol=0, atol=1e-6, msg=image.mode
        )


def test_missing_opencv_says_how_to_install_it_or_avoid_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    image = np.zeros((9, 7, 3), dtype=np.uint8)
    with pytest.raises(ImportError, match=r"refseg\[opencv\].*resample_backend='torch'"):
        InstanceVGImageProcessor(size=4)(image)
    assert InstanceVGImageProcessor(size=4, resample_backend="torch")(image)["pixel_values"].shape == (
        1,
        3,
        4,
        4,
    )


def test_box_labels_from_dataset_boxes_are_clipped_and_normalised():
    processor = InstanceVGImageProcessor(size=16)
    image = np.zeros((10, 20, 3), dtype=np.uint8)
    masks = np.zeros((10, 20), dtype=bool)
    masks[2:5, 4:10] = True
    instances = [[{"segmentation": masks, "bbox": [4, 2, 20, 3]}]]
    with pytest.raises(ValueError):
        processor(image, instances=[[{"bbox": [4, 2, 20, 3]}]])  # no mask
    from refseg.models.instancevg.image_processing_instancevg import InstanceVGImageProcessor as P

    boxes = P.prepare_box_labels(instances, [(10, 20)])
    # [4, 2, 24, 5] clipped to x <= 19 -> [4, 2, 19, 5] / (20, 10, 20, 10) -> cxcywh
    torch.testing.assert_close(boxes[0], torch.tensor([[11.5 / 20, 3.5 / 10, 15 / 20, 3 / 10]]))
    out = processor(image, instances=[[masks]])
    assert "box_labels" not in out and out["mask_labels"][0].shape == (1, 16, 16)


def _outputs(size=4):
    pred_masks = torch.full((1, 3, size, size), -5.0)
    pred_masks[0, 0, :2, :2] = 5.0
    pred_masks[0, 1, 2:, 2:] = 5.0
    pred_masks[0, 2, 0, 3] = 5.0
    semantic = torch.full((1, size, size), -5.0)
    semantic[0, 3, 0] = 5.0
    class_logits = torch.tensor([[[3.0, 0.0], [1.0, 0.0], [0.0, 4.0]]])  # p_obj .953, .731, .018
    nt = torch.tensor([[2.0, 0.0]])  # sigmoid(2) = .881
    boxes = torch.tensor([[[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.9, 0.1, 0.0, 0.2]]])
    return ModelOutput(
        pred_masks=pred_masks,
        pred_boxes=boxes,
        semantic_mask_logits=semantic,
        pred_class_logits=class_logits,
        no_target_class_logits=nt,
        pred_scores=class_logits[..., 0] - class_logits[..., 1],
        no_target_logits=-nt[:, 0],
    )


def test_post_processing_weights_thresholds_and_merges():
    processor = InstanceVGImageProcessor(size=4)
    p_obj = torch.softmax(torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 4.0]]), -1)[:, 0]
    scores = p_obj * torch.sigmoid(torch.tensor(2.0))  # .840, .644, .016
    result = processor.post_process_referring_segmentation(_outputs())[0]
    torch.testing.assert_close(result["scores"], scores)
    assert result["no_target"] is False and result["target_score"] == pytest.approx(float(scores[0]))
    assert [inst["score"] for inst in result["instances"]] == [pytest.approx(float(scores[0]))]  # > 0.7 only
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = True
    expected[3, 0] = True  # the global mask is OR-ed in
    assert torch.equal(result["mask"], expected)
    torch.testing.assert_close(result["instances"][0]["box"], torch.tensor([0.0, 0.0, 2.0, 2.0]))
    unweighted = processor.post_process_referring_segmentation(_outputs(), score_weighted=False)[0]
    assert len(unweighted["instances"]) == 2  # .953 and .731 > 0.7
    low = processor.post_process_referring_segmentation(_outputs(), threshold=0.5)[0]
    assert len(low["instances"]) == 2
    only_global = processor.post_process_referring_segmentation(_outputs(), mask_merge="global")[0]
    assert int(only_global["mask"].sum()) == 1
    only_instances = processor.post_process_referring_segmentation(_outputs(), mask_merge="instance")[0]
    assert int(only_instances["mask"].sum()) == 4


def test_post_processing_from_the_contract_fields_only():
    processor = InstanceVGImageProcessor(size=4)
    full = processor.post_process_referring_segmentation(_outputs())[0]
    contract = {
        k: v
        for k, v in _outputs().items()
        if k not in ("pred_class_logits", "no_target_class_logits", "pred_boxes")
    }
    reduced = processor.post_process_referring_segmentation(contract)[0]
    torch.testing.assert_close(reduced["scores"], full["scores"])
    assert torch.equal(reduced["mask"], full["mask"])
    # boxes from the binary instance masks instead of the box head
    torch.testing.assert_close(reduced["instances"][0]["box"], torch.tensor([0.0, 0.0, 2.0, 2.0]))


def test_post_processing_strict_threshold_no_target_and_zero_area_boxes():
    processor = InstanceVGImageProcessor(size=4, score_threshold=0.99)
    result = processor.post_process_referring_segmentation(_outputs())[0]
    assert result["no_target"] is True and result["instances"] == []
    assert not result["mask"].any() and result["semantic_mask"].sum() == 1
    # query 2 has a zero-width box: kept for its mask but not listed as an instance
    kept_all = processor.post_process_referring_segmentation(_outputs(), threshold=0.0)[0]
    assert len(kept_all["instances"]) == 2 and bool(kept_all["mask"][0, 3])


def test_post_processing_rescales_masks_nearest_and_boxes():
    processor = InstanceVGImageProcessor(size=4)
    result = processor.post_process_referring_segmentation(_outputs(), target_sizes=[(8, 12)])[0]
    assert result["mask"].shape == (8, 12)
    expected = F.interpolate(result["semantic_mask"][None, None].float(), size=(8, 12))[0, 0] > 0.5
    assert torch.equal(result["mask"], expected)
    torch.testing.assert_close(result["instances"][0]["box"], torch.tensor([0.0, 0.0, 6.0, 4.0]))


def test_processor_round_trip_and_pipeline(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert isinstance(processor, InstanceVGProcessor)
    assert processor.image_processor.score_threshold == 0.7 and processor.image_processor.size["height"] == 64
    segmenter = pipeline("referring-segmentation", model=str(tiny_model_dir))
    image = PIL.Image.new("RGB", (50, 30), (200, 30, 30))
    result = segmenter(image, "the red circle on the left", threshold=0.0)
    assert set(result) == {"mask", "score", "no_target", "instances"}
    assert result["mask"].size == (50, 30) and result["no_target"] is False
    assert len(result["instances"]) >= 1
    for inst in result["instances"]:
        assert inst["mask"].size == (50, 30)
        assert 0 <= inst["box"]["xmin"] <= inst["box"]["xmax"] <= 50
    batch = segmenter([image, image], ["the red circle", "a dog"], batch_size=2, threshold=0.0)
    assert len(batch) == 2


def test_pipeline_uses_the_box_head_and_the_released_score_threshold(tiny_model_dir):
    """The pipeline hands every model output to post-processing: boxes come from the box head (GREC), and
    without a ``threshold`` the processor's released default (0.7) applies, not a pipeline-wide 0.5."""
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModel.from_pretrained(tiny_model_dir).eval()
    segmenter = pipeline("referring-segmentation", model=str(tiny_model_dir))
    image = PIL.Image.new("RGB", (50, 30), (200, 30, 30))
    sentence = "the red circle on the left"
    inputs = processor(images=image, text=sentence)
    with torch.no_grad():
        outputs = model(**inputs)
    for threshold in (None, 0.0):
        kwargs = {} if threshold is None else {"threshold": threshold}
        expected = processor.post_process_referring_segmentation(outputs, target_sizes=[(30, 50)], **kwargs)[
            0
        ]
        result = segmenter(image, sentence, **kwargs)
        assert result["no_target"] == expected["no_target"]
        got = [[i["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for i in result["instances"]]
        want = [[int(round(float(v))) for v in i["box"]] for i in expected["instances"]]
        assert got == want
        assert [i["score"] for i in result["instances"]] == pytest.approx(
            [i["score"] for i in expected["instances"]]
        )
