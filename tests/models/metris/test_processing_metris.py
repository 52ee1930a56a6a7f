"""MetrisProcessor (BERT tokenizer, 20 tokens), post-processing to masks, connected-component instances and
boxes, and the referring-segmentation pipeline on the tiny model."""

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoProcessor, pipeline
from transformers.utils import ModelOutput

import refseg  # noqa: F401  (registers the Auto classes and the pipeline task)
from refseg.models.metris import (
    MetrisConfig,
    MetrisForReferringSegmentation,
    MetrisImageProcessor,
    MetrisProcessor,
)
from tests.models.metris.tester_metris import bert_tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_metris")
    torch.manual_seed(0)
    config = MetrisConfig.preset("tiny", text_config={"vocab_size": 32})
    MetrisForReferringSegmentation(config).save_pretrained(path)
    MetrisProcessor(MetrisImageProcessor(size=64), bert_tokenizer()).save_pretrained(path)
    return path


def test_processor_inputs_truncate_to_20_tokens():
    processor = MetrisProcessor(MetrisImageProcessor(), bert_tokenizer())
    image = PIL.Image.new("RGB", (40, 30), (255, 0, 0))
    long = " ".join(["red"] * 30)
    batch = processor(images=[image, image], text=["the red circle", long])
    assert batch["pixel_values"].shape == (2, 3, 480, 480)
    assert batch["input_ids"].shape == (2, 20) and batch["attention_mask"].shape == (2, 20)
    assert batch["input_ids"][0, :5].tolist() == [2, 5, 7, 12, 3]  # [CLS] the red circle [SEP]
    assert batch["attention_mask"][0].sum() == 5 and batch["input_ids"][1, -1] == 3
    assert "token_type_ids" not in batch
    blue = PIL.Image.new("RGB", (40, 30), (0, 0, 255))
    paired = processor(images=[image, blue], text=["a", "b", "c"], image_indices=[1, 0, 1])
    assert "image_indices" not in paired and paired["pixel_values"].shape == (3, 3, 480, 480)
    single = processor(images=[image, blue], text=["a", "b"])["pixel_values"]
    assert torch.equal(paired["pixel_values"], single[[1, 0, 1]])  # each image repeated for its sentences
    with pytest.raises(ValueError, match="one sentence per image"):
        processor(images=[image], text=["a", "b"])


def test_post_process_masks_instances_and_no_target():
    processor = MetrisImageProcessor(size=8)
    logits = torch.full((2, 4, 4), -5.0)
    logits[:, 0, 0] = 5.0  # one blob at the top left
    logits[:, 2:, 2:] = 5.0  # one at the bottom right
    outputs = ModelOutput(semantic_mask_logits=logits, no_target_logits=torch.tensor([-3.0, 3.0]))
    first, second = processor.post_process_referring_segmentation(outputs, target_sizes=[(16, 16), (8, 8)])
    assert first["mask"].shape == (16, 16) and not first["no_target"]
    assert first["target_score"] == pytest.approx(1 - torch.sigmoid(torch.tensor(-3.0)).item())
    assert len(first["instances"]) == 2
    boxes = sorted(inst["box"].tolist() for inst in first["instances"])
    assert boxes[0][:2] == [0.0, 0.0] and boxes[1][2:] == [16.0, 16.0]
    for inst in first["instances"]:
        ys, xs = torch.nonzero(inst["mask"], as_tuple=True)
        assert inst["box"].tolist() == [
            xs.min().item(),
            ys.min().item(),
            xs.max().item() + 1,
            ys.max().item() + 1,
        ]
        assert 0.5 < inst["score"] <= 1.0
    assert torch.equal(first["instances"][0]["mask"] | first["instances"][1]["mask"], first["mask"])
    assert second["no_target"] and not second["mask"].any() and second["instances"] == []
    assert second["semantic_mask"].any()  # kept for ReLA's evaluator
    empty = processor.post_process_referring_segmentation(
        ModelOutput(semantic_mask_logits=torch.full((1, 4, 4), -5.0), no_target_logits=torch.tensor([-9.0]))
    )[0]
    assert not empty["no_target"] and not empty["mask"].any() and empty["instances"] == []
    with pytest.raises(ValueError, match="semantic_mask_logits"):
        processor.post_process_referring_segmentation(ModelOutput(no_target_logits=torch.zeros(1)))


def test_post_process_upsamples_to_the_input_like_the_loss_with_align_corners():
    """The stride-4 logits reach the input size as in the loss (``align_corners=True``): [-1, 1] over 4 columns
    is -1, -1/3, 1/3, 1 (``align_corners=False`` would give -1, -0.5, 0.5, 1)."""
    processor = MetrisImageProcessor(size=4)
    outputs = ModelOutput(
        semantic_mask_logits=torch.tensor([[[-1.0, 1.0]]]), no_target_logits=torch.tensor([-9.0])
    )
    threshold = torch.sigmoid(torch.tensor(0.4)).item()  # between 1/3 and 0.5
    (result,) = processor.post_process_referring_segmentation(outputs, mask_threshold=threshold)
    assert result["mask"].tolist() == [[False, False, False, True]] * 4
    (low,) = processor.post_process_referring_segmentation(
        outputs, mask_threshold=torch.sigmoid(torch.tensor(0.3)).item()
    )
    assert low["mask"].tolist() == [[False, False, True, True]] * 4
    (instance,) = result["instances"]
    assert instance["score"] == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item())


def test_pipeline_and_auto_processor_on_the_tiny_model(model_dir):
    assert isinstance(AutoProcessor.from_pretrained(model_dir), MetrisProcessor)
    segmenter = pipeline("referring-segmentation", model=str(model_dir))
    assert isinstance(segmenter.model, MetrisForReferringSegmentation)
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    result = segmenter(image, "the red circle")
    assert set(result) == {"mask", "score", "no_target", "instances"}
    assert isinstance(result["mask"], PIL.Image.Image) and result["mask"].size == (70, 50)
    assert 0.0 <= result["score"] <= 1.0 and isinstance(result["no_target"], bool)
    union = np.zeros((50, 70), dtype=bool)
    for inst in result["instances"]:
        mask = np.asarray(inst["mask"]) > 0
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(
            inst["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")
        )
        union |= mask
    # every component of a thresholded map has a mean probability above the threshold: all are instances
    assert np.array_equal(union, np.asarray(result["mask"]) > 0)
    forced = segmenter(image, "the red circle", no_target_threshold=1.0)  # never no-target
    assert (np.asarray(forced["mask"]) > 0).any() == bool(forced["instances"])
    batch = segmenter([{"image": image, "text": "a square"}, {"image": image, "text": "two blue circles"}])
    assert len(batch) == 2


@pytest.mark.parametrize("name", ["threshold", "mask_threshold", "no_target_threshold"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.1, 1.5, "0.5"])
def test_post_process_refuses_thresholds_outside_0_1(name, value):
    """METRIS checks its thresholds like every other model's post-processing."""
    outputs = ModelOutput(semantic_mask_logits=torch.zeros(1, 4, 4), no_target_logits=torch.zeros(1))
    with pytest.raises(ValueError, match=f"{name} must be a"):
        MetrisImageProcessor(size=4).post_process_referring_segmentation(outputs, **{name: value})
