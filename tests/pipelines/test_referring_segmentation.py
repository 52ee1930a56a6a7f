"""The referring-segmentation pipeline with a tiny random InstAlign: input forms, output types, batching."""

import numpy as np
import PIL.Image
import pytest
from processing_helpers import save_tiny_instalign
from transformers import AutoModel, AutoProcessor, pipeline

import refseg  # noqa: F401  (registers the task and the Auto classes)
from refseg.data import synthetic_scenes
from refseg.models.instalign import InstAlignForReferringSegmentation, InstAlignProcessor
from refseg.pipelines import ReferringSegmentationPipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_instalign(tmp_path_factory.mktemp("tiny_instalign"))


@pytest.fixture(scope="module")
def scenes():
    return synthetic_scenes(num_images=2, seed=3, image_size=48)


@pytest.fixture(scope="module")
def segmenter(model_dir):
    return pipeline("referring-segmentation", model=str(model_dir))


def _check(result, size):
    assert set(result) == {"mask", "score", "no_target", "instances"}
    assert isinstance(result["mask"], PIL.Image.Image) and result["mask"].mode == "L"
    assert result["mask"].size == size
    assert isinstance(result["score"], float) and 0.0 <= result["score"] <= 1.0
    assert isinstance(result["no_target"], bool)
    scores = [inst["score"] for inst in result["instances"]]
    assert scores == sorted(scores, reverse=True)
    for inst in result["instances"]:
        assert isinstance(inst["mask"], PIL.Image.Image) and inst["mask"].size == size
        assert set(inst["box"]) == {"xmin", "ymin", "xmax", "ymax"}
        assert all(isinstance(v, int) for v in inst["box"].values())
        assert 0 <= inst["box"]["xmin"] < inst["box"]["xmax"] <= size[0]
        mask = np.asarray(inst["mask"]) > 0
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(
            inst["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")
        )


def test_pipeline_is_registered_and_loads_components(segmenter, model_dir):
    assert isinstance(segmenter, ReferringSegmentationPipeline)
    assert isinstance(segmenter.processor, InstAlignProcessor)
    assert isinstance(AutoModel.from_pretrained(model_dir), InstAlignForReferringSegmentation)
    assert isinstance(AutoProcessor.from_pretrained(model_dir), InstAlignProcessor)


def test_single_input_with_path_pil_and_array(segmenter, scenes, tmp_path):
    image = scenes[0]["image"]
    path = tmp_path / "scene.png"
    image.save(path)
    text = scenes[0]["sentence"]
    from_pil = segmenter(image, text, threshold=0.0)
    _check(from_pil, image.size)
    assert from_pil["no_target"] is False and len(from_pil["instances"]) > 0
    for other in (
        segmenter(str(path), text, threshold=0.0),
        segmenter(np.asarray(image), text, threshold=0.0),
    ):
        assert np.array_equal(np.asarray(other["mask"]), np.asarray(from_pil["mask"]))
        assert other["score"] == pytest.approx(from_pil["score"], abs=1e-6)


def test_non_square_image_keeps_its_size(segmenter):
    image = PIL.Image.new("RGB", (50, 30), (200, 30, 30))
    _check(segmenter(image, "the red circle", threshold=0.0), (50, 30))


def test_lists_dicts_and_batch_size_agree(segmenter, scenes):
    images = [scenes[i]["image"] for i in range(4)]
    texts = [scenes[i]["sentence"] for i in range(4)]  # different lengths -> padding inside batches
    one_by_one = segmenter(images, texts, batch_size=1, threshold=0.0)
    batched = segmenter([{"image": i, "text": t} for i, t in zip(images, texts)], batch_size=2, threshold=0.0)
    single_dict = segmenter({"image": images[0], "text": texts[0]}, threshold=0.0)
    assert isinstance(one_by_one, list) and len(one_by_one) == len(batched) == 4
    assert isinstance(single_dict, dict)
    for a, b in zip(one_by_one, batched):
        _check(b, images[0].size)
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        assert a["no_target"] == b["no_target"]
        assert np.mean(np.asarray(a["mask"]) != np.asarray(b["mask"])) < 0.002
        assert len(a["instances"]) == len(b["instances"])
    assert np.array_equal(np.asarray(single_dict["mask"]), np.asarray(one_by_one[0]["mask"]))


def test_thresholds_change_the_output(segmenter, scenes):
    image, text = scenes[0]["image"], scenes[0]["sentence"]
    everything = segmenter(image, text, threshold=0.0)
    nothing = segmenter(image, text, threshold=1.0)
    assert len(nothing["instances"]) == 0 < len(everything["instances"])
    rejected = segmenter(image, text, no_target_threshold=0.0)
    assert rejected["no_target"] is True and not np.asarray(rejected["mask"]).any()


@pytest.mark.parametrize(
    "args, message",
    [
        ((["a.png", "b.png"], ["one sentence"]), "2 images and 1 sentences"),
        ((PIL.Image.new("RGB", (8, 8)), None), "one sentence as a string"),
        (({"image": PIL.Image.new("RGB", (8, 8)), "sentence": "x"},), "keys 'image' and 'text'"),
        ((42, "x"), "unsupported input"),
    ],
)
def test_bad_inputs(segmenter, args, message):
    with pytest.raises(ValueError, match=message):
        segmenter(*args)


def test_unknown_parameter(segmenter):
    with pytest.raises(ValueError, match="unknown arguments"):
        segmenter(PIL.Image.new("RGB", (8, 8)), "x", top_k=3)
