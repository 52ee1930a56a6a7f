"""Letterbox image processor, processor and post-processing of the presence & plurality model; pipeline."""

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoProcessor, pipeline

import refseg  # noqa: F401
from refseg.data.masks import encode_mask
from refseg.models.presence_plurality import (
    PresencePluralityConfig,
    PresencePluralityForReferringSegmentation,
    PresencePluralityImageProcessor,
    PresencePluralityProcessor,
)
from refseg.models.presence_plurality.image_processing_presence_plurality import letterbox_size
from tests.processing_helpers import tiny_tokenizer


def test_letterbox_keeps_aspect_and_pads_bottom_right():
    processor = PresencePluralityImageProcessor(size=64, do_normalize=False)
    wide = np.full((20, 40, 3), 255, dtype=np.uint8)
    tall = np.full((50, 10, 3), 255, dtype=np.uint8)
    out = processor([wide, tall])
    assert out["pixel_values"].shape == (2, 3, 64, 64) and out["pixel_mask"].shape == (2, 64, 64)
    assert letterbox_size(20, 40, (64, 64)) == (32, 64) and letterbox_size(50, 10, (64, 64)) == (64, 13)
    assert out["pixel_mask"][0, :32].all() and not out["pixel_mask"][0, 32:].any()
    assert out["pixel_mask"][1, :, :13].all() and not out["pixel_mask"][1, :, 13:].any()
    torch.testing.assert_close(out["pixel_values"][0, :, :32], torch.ones(3, 32, 64))
    assert torch.all(out["pixel_values"][0, :, 32:] == 0)


def test_padding_is_zero_after_normalisation():
    processor = PresencePluralityImageProcessor(size=32)
    out = processor(np.zeros((16, 32, 3), dtype=np.uint8))
    assert torch.all(out["pixel_values"][0, :, 16:] == 0)
    assert torch.all(out["pixel_values"][0, :, :16] < 0)  # black normalised by ImageNet statistics


def test_mask_labels_follow_the_image_onto_the_canvas():
    processor = PresencePluralityImageProcessor(size=64)
    mask = np.zeros((20, 40), dtype=np.uint8)
    mask[:10, 20:] = 1  # top-right quarter of the image
    out = processor(np.zeros((20, 40, 3), dtype=np.uint8), instances=[[{"segmentation": encode_mask(mask)}]])
    label = out["mask_labels"][0]
    assert label.shape == (1, 64, 64)
    expected = torch.zeros(64, 64)
    expected[:16, 32:] = 1  # scaled by 1.6, padding below row 32 stays empty
    assert torch.equal(label[0], expected)
    empty = processor(np.zeros((20, 40, 3), dtype=np.uint8), instances=[[]])["mask_labels"][0]
    assert empty.shape == (0, 64, 64)


def _outputs(semantic, no_target):
    return {
        "semantic_mask_logits": torch.as_tensor(semantic, dtype=torch.float32),
        "no_target_logits": torch.tensor(no_target),
    }


def test_post_processing_crops_the_padding_and_returns_components():
    processor = PresencePluralityImageProcessor(size=8)
    semantic = torch.full((1, 8, 8), -10.0)
    semantic[0, 0:2, 0:2] = 10.0  # component 1 (4 pixels on the canvas)
    semantic[0, 0:3, 5:8] = 10.0  # component 2 (9 pixels), larger
    semantic[0, 6:, :] = 10.0  # in the padding of a 4x8 image: cropped away
    result = processor.post_process_referring_segmentation(
        _outputs(semantic, [-3.0]), target_sizes=[(8, 16)]
    )[0]
    assert result["mask"].shape == (8, 16) and not result["no_target"]
    assert result["target_score"] == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert len(result["instances"]) == 2
    first, second = result["instances"]
    assert first["mask"].sum() > second["mask"].sum()
    assert torch.equal(first["box"], torch.tensor([10.0, 0.0, 16.0, 6.0]))
    assert torch.equal(second["box"], torch.tensor([0.0, 0.0, 4.0, 4.0]))
    assert not result["mask"][6:].any()


def test_post_processing_empties_the_mask_when_nothing_is_referred():
    processor = PresencePluralityImageProcessor(size=8)
    semantic = torch.full((1, 8, 8), 10.0)
    result = processor.post_process_referring_segmentation(_outputs(semantic, [3.0]), target_sizes=[(8, 8)])[
        0
    ]
    assert result["no_target"] and not result["mask"].any() and result["instances"] == []
    assert result["semantic_mask"].all()  # the raw mask is kept for GRES metrics


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_presence_plurality")
    tokenizer = tiny_tokenizer(model_max_length=16)
    torch.manual_seed(0)
    config = PresencePluralityConfig.preset(
        "tiny", text_config={"vocab_size": len(tokenizer), "pad_token_id": 1}
    )
    model = PresencePluralityForReferringSegmentation(config)
    with torch.no_grad():
        model.presence_head[-1].bias.copy_(torch.tensor([0.0, 5.0]))  # predict "present"
    model.save_pretrained(path)
    PresencePluralityProcessor(
        PresencePluralityImageProcessor(size=config.image_size), tokenizer
    ).save_pretrained(path)
    return path


def test_processor_round_trip_and_model_inputs(model_dir):
    processor = AutoProcessor.from_pretrained(model_dir)
    assert isinstance(processor, PresencePluralityProcessor)
    assert isinstance(processor.image_processor, PresencePluralityImageProcessor)
    assert processor.image_processor.keep_aspect_ratio
    images = [np.zeros((30, 60, 3), dtype=np.uint8), np.zeros((64, 64, 3), dtype=np.uint8)]
    batch = processor(images=images, text=["the red circle", "all squares"])
    assert set(batch) == {"pixel_values", "pixel_mask", "input_ids", "attention_mask"}
    model = PresencePluralityForReferringSegmentation.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model(**batch)
    results = processor.post_process_referring_segmentation(out, target_sizes=[(30, 60), (64, 64)])
    assert results[0]["mask"].shape == (30, 60) and results[1]["mask"].shape == (64, 64)


def test_image_indices_repeat_each_image_for_its_sentences(model_dir):
    processor = AutoProcessor.from_pretrained(model_dir)
    images = [np.zeros((32, 64, 3), dtype=np.uint8), np.full((64, 64, 3), 200, dtype=np.uint8)]
    instances = [[np.ones((32, 64), dtype=bool)], [], [np.ones((64, 64), dtype=bool)]]
    batch = processor(images=images, text=["a", "b", "c"], instances=instances, image_indices=[0, 0, 1])
    assert "image_indices" not in batch and batch["pixel_values"].shape[0] == 3
    assert torch.equal(batch["pixel_values"][0], batch["pixel_values"][1])
    assert batch["mask_labels"][0][0, :32].all() and not batch["mask_labels"][0][0, 32:].any()
    assert batch["mask_labels"][1].shape == (0, 64, 64)
    with pytest.raises(ValueError, match="one sentence per"):
        processor(images=images, text=["a"])


def test_pipeline_with_the_tiny_model(model_dir):
    segmenter = pipeline("referring-segmentation", model=str(model_dir))
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 72, 3), dtype=np.uint8))
    result = segmenter(image, "the red circle")
    assert set(result) == {"mask", "score", "no_target", "instances"}
    assert result["mask"].size == (72, 40) and result["mask"].mode == "L"
    assert not result["no_target"] and result["score"] > 0.5
    mask = np.asarray(result["mask"]) > 0
    assert sum(np.asarray(i["mask"]).astype(bool).sum() for i in result["instances"]) == mask.sum()
    for inst in result["instances"]:
        ys, xs = np.nonzero(np.asarray(inst["mask"]))
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(
            inst["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")
        )
    batch = segmenter(
        [{"image": image, "text": "a"}, {"image": image, "text": "the red circle"}], batch_size=2
    )
    assert np.array_equal(np.asarray(batch[1]["mask"]), np.asarray(result["mask"]))
