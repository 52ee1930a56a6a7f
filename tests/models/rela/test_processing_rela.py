"""ReLA's image processor (the released square PIL resize), processor (tokenization as released),
post-processing and pipeline."""

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoProcessor, pipeline

import refseg  # noqa: F401
from refseg.models.rela import RelaConfig, RelaForReferringSegmentation, RelaImageProcessor, RelaProcessor
from tests.processing_helpers import tiny_tokenizer

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def test_pixels_are_pil_bilinear_resized_and_normalised_on_the_8_bit_scale():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (50, 90, 3), dtype=np.uint8)
    processor = RelaImageProcessor(size=32)
    out = processor(PIL.Image.fromarray(array))["pixel_values"][0]
    resized = np.asarray(PIL.Image.fromarray(array).resize((32, 32), PIL.Image.BILINEAR)).astype(np.float32)
    expected = (
        torch.from_numpy(resized).permute(2, 0, 1) - torch.tensor(MEAN)[:, None, None]
    ) / torch.tensor(STD)[:, None, None]
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    # arrays and PIL images give the same pixels; the torch path stays within about a grey level
    torch.testing.assert_close(processor(array)["pixel_values"][0], out, atol=0, rtol=0)
    torch_path = RelaImageProcessor(size=32, pil_resize=False)(array)["pixel_values"][0]
    assert (torch_path - out).abs().max() * 58 < 1.5


def test_square_resize_keeps_no_aspect_ratio_and_builds_mask_labels():
    processor = RelaImageProcessor(size=64)
    mask = np.zeros((20, 40), dtype=bool)
    mask[:10, 20:] = True
    out = processor(np.zeros((20, 40, 3), dtype=np.uint8), instances=[[mask]])
    assert out["pixel_values"].shape == (1, 3, 64, 64) and "pixel_mask" not in out
    label = out["mask_labels"][0]
    assert label.shape == (1, 64, 64) and label[0, :32, 32:].all() and not label[0, 32:].any()


def test_tokenization_pads_to_max_length_and_cuts_like_the_original():
    processor = RelaProcessor(RelaImageProcessor(size=32), tiny_tokenizer(model_max_length=6))
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    out = processor(
        images=[image, image], text=["the red circle", "the small red circle and the blue square"]
    )
    tokenizer = processor.tokenizer
    short = tokenizer("the red circle")["input_ids"]
    assert out["input_ids"].shape == (2, 6)
    assert out["input_ids"][0].tolist() == short + [tokenizer.pad_token_id] * (6 - len(short))
    assert out["attention_mask"][0].tolist() == [1] * len(short) + [0] * (6 - len(short))
    # encode with special tokens, keep the first 6 ids: the end token is cut off
    long = tokenizer("the small red circle and the blue square")["input_ids"]
    assert out["input_ids"][1].tolist() == long[:6] and tokenizer.eos_token_id not in long[:6]
    assert out["attention_mask"][1].tolist() == [1] * 6


def _outputs(semantic, no_target):
    return {
        "semantic_mask_logits": torch.as_tensor(semantic, dtype=torch.float32),
        "no_target_logits": torch.tensor(no_target, dtype=torch.float32),
    }


def test_post_processing_thresholds_near_their_values():
    processor = RelaImageProcessor(size=4)
    semantic = torch.full((1, 4, 4), -0.1)
    semantic[0, :2, :2] = 0.1  # sigmoid 0.525
    results = processor.post_process_referring_segmentation(_outputs(semantic, [-0.05]), mask_threshold=0.5)
    assert results[0]["mask"][:2, :2].all() and results[0]["mask"].sum() == 4
    assert (
        not results[0]["no_target"]
        and abs(results[0]["target_score"] - (1 - torch.sigmoid(torch.tensor(-0.05)).item())) < 1e-6
    )
    assert len(results[0]["instances"]) == 1 and results[0]["instances"][0]["box"].tolist() == [0, 0, 2, 2]
    stricter = processor.post_process_referring_segmentation(_outputs(semantic, [-0.05]), mask_threshold=0.53)
    assert not stricter[0]["mask"].any()
    # sigmoid(0.05) = 0.5125 > 0.5: no target, the mask is emptied but the semantic mask is kept
    rejected = processor.post_process_referring_segmentation(_outputs(semantic, [0.05]))[0]
    assert rejected["no_target"] and not rejected["mask"].any() and rejected["instances"] == []
    assert rejected["semantic_mask"].sum() == 4
    kept = processor.post_process_referring_segmentation(_outputs(semantic, [0.05]), no_target_threshold=0.52)
    assert not kept[0]["no_target"]


def test_post_processing_resizes_to_the_target_size():
    processor = RelaImageProcessor(size=8)
    semantic = torch.full((1, 2, 2), -3.0)
    semantic[0, 0, 0] = 3.0
    result = processor.post_process_referring_segmentation(
        _outputs(semantic, [-3.0]), target_sizes=[(10, 20)]
    )[0]
    assert result["mask"].shape == (10, 20) and result["mask"][0, 0] and not result["mask"][9, 19]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("rela_tiny")
    torch.manual_seed(0)
    config = RelaConfig.preset("tiny")
    model = RelaForReferringSegmentation(config).eval()
    with torch.no_grad():
        model.decoder.heads.no_target_embed.layers[-1].bias.copy_(torch.tensor([5.0, 0.0]))  # "target"
    model.save_pretrained(path)
    RelaProcessor(
        RelaImageProcessor(size=config.image_size), tiny_tokenizer(config.max_text_length)
    ).save_pretrained(path)
    return path


def test_processor_round_trip_and_model_inputs(model_dir):
    processor = AutoProcessor.from_pretrained(model_dir)
    assert isinstance(processor, RelaProcessor) and isinstance(processor.image_processor, RelaImageProcessor)
    assert processor.image_processor.pil_resize
    images = [np.zeros((30, 60, 3), dtype=np.uint8), np.zeros((64, 64, 3), dtype=np.uint8)]
    batch = processor(images=images, text=["the red circle", "all squares"])
    assert set(batch) == {"pixel_values", "input_ids", "attention_mask"}
    assert batch["input_ids"].shape == (2, 8)
    model = RelaForReferringSegmentation.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model(**batch)
    results = processor.post_process_referring_segmentation(out, target_sizes=[(30, 60), (64, 64)])
    assert results[0]["mask"].shape == (30, 60) and results[1]["mask"].shape == (64, 64)


def test_pipeline_with_the_tiny_model(model_dir):
    segmenter = pipeline("referring-segmentation", model=str(model_dir))
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 72, 3), dtype=np.uint8))
    result = segmenter(image, "the red circle")
    assert set(result) == {"mask", "score", "no_target", "instances"}
    assert result["mask"].size == (72, 40) and result["mask"].mode == "L"
    assert not result["no_target"] and result["score"] > 0.5
    mask = np.asarray(result["mask"]) > 0
    assert sum(np.asarray(i["mask"]).astype(bool).sum() for i in result["instances"]) == mask.sum()
    batch = segmenter(
        [{"image": image, "text": "a"}, {"image": image, "text": "the red circle"}], batch_size=2
    )
    assert np.array_equal(np.asarray(batch[1]["mask"]), np.asarray(result["mask"]))
