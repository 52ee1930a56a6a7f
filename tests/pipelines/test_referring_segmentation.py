"""The referring-segmentation pipeline with a tiny random InstAlign: input forms, output types, batching,
input validation, model checks when the pipeline is built, URL timeouts and NaN outputs."""

import io
import math
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoModel, AutoProcessor, pipeline

import refseg  # noqa: F401  (registers the task and the Auto classes)
from refseg.data import synthetic_scenes
from refseg.models.instalign import InstAlignForReferringSegmentation, InstAlignProcessor
from refseg.pipelines import (
    IncompleteCheckpointError,
    ModelLoadingError,
    ReferringSegmentationPipeline,
    load_referring_segmentation_model,
)
from tests.processing_helpers import save_tiny_instalign


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


@pytest.mark.parametrize(
    "args, message",
    [
        ((PIL.Image.new("RGB", (8, 8)), ""), "input 0 text is an empty sentence"),
        ((PIL.Image.new("RGB", (8, 8)), " \t "), "input 0 text is an empty sentence"),
        (([PIL.Image.new("RGB", (8, 8))] * 2, ["the red circle", "\n"]), "input 1 text is an empty sentence"),
        (([], []), "empty list of inputs"),
        (([PIL.Image.new("RGB", (8, 8))], []), "empty list of sentences"),
        (
            (np.zeros((1, 8, 8, 3), np.uint8), "x"),
            "input 0 image must be a \\(H, W, C\\) or \\(H, W\\) array, got 4",
        ),
        ((torch.zeros(1, 1, 3, 8, 8), "x"), "got 5 dimensions"),
        ((np.full((8, 8, 3), np.nan, np.float32), "x"), "NaN or infinite pixel values"),
    ],
)
def test_refused_inputs_name_the_problem(segmenter, args, message):
    with pytest.raises(ValueError, match=message):
        segmenter(*args)


@pytest.mark.parametrize("name", ["threshold", "mask_threshold", "no_target_threshold"])
@pytest.mark.parametrize("value", [math.nan, -math.inf, -0.01, 1.01])
def test_thresholds_outside_0_1_are_refused(segmenter, name, value):
    with pytest.raises(ValueError, match=f"{name} must be a finite number in \\[0, 1\\]"):
        segmenter(PIL.Image.new("RGB", (8, 8)), "the red circle", **{name: value})


def test_missing_image_files_say_so(segmenter, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image file: .*nothere.png$"):
        segmenter(str(tmp_path / "nothere.png"), "the red circle")
    with pytest.raises(FileNotFoundError, match="it is a directory"):
        segmenter(tmp_path, "the red circle")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="cannot read image file .*broken.png"):
        segmenter(str(tmp_path / "broken.png"), "the red circle")


def test_urls_get_a_default_timeout(segmenter, monkeypatch):
    import refseg.url_fetch
    from refseg.image_utils import DEFAULT_URL_TIMEOUT

    seen = []
    png = io.BytesIO()
    PIL.Image.new("RGB", (8, 8)).save(png, "PNG")

    def fake_fetch_url(url, timeout, max_bytes):
        seen.append(timeout)
        return png.getvalue(), "image/png"

    monkeypatch.setattr(refseg.url_fetch, "fetch_url", fake_fetch_url)
    segmenter("https://example.com/a.png", "the red circle")
    segmenter("https://example.com/a.png", "the red circle", timeout=2.5)
    assert seen == [DEFAULT_URL_TIMEOUT, 2.5] and DEFAULT_URL_TIMEOUT > 0
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        segmenter("https://example.com/a.png", "the red circle", timeout=0)


def test_16_bit_images_are_not_clipped(segmenter):
    """A 16-bit scene and its 8-bit version give the same result (the old path clipped I;16 to 255)."""
    rng = np.random.default_rng(0)
    eight = rng.integers(0, 256, size=(32, 32), dtype=np.uint8)
    sixteen = PIL.Image.fromarray(eight.astype(np.uint16) * 257)  # mode I;16, same picture
    a = segmenter(PIL.Image.fromarray(eight), "the red circle", threshold=0.0)
    b = segmenter(sixteen, "the red circle", threshold=0.0)
    assert a["score"] == pytest.approx(b["score"], abs=1e-5)
    assert np.array_equal(np.asarray(a["mask"]), np.asarray(b["mask"]))


def test_max_length_is_checked_against_the_text_encoder(segmenter):
    limit = segmenter.text_position_limit
    assert limit == 64  # tiny preset: RoBERTa positions 66 minus the padding offset 2
    with pytest.raises(ValueError, match=f"max_length 65 is beyond the {limit} token positions"):
        segmenter(PIL.Image.new("RGB", (8, 8)), "the red circle", max_length=65)
    result = segmenter(PIL.Image.new("RGB", (8, 8)), "the red circle", max_length=3)
    assert isinstance(result["score"], float)


def test_parameters_given_when_built_are_checked_too(model_dir):
    with pytest.raises(ValueError, match="max_length 65 is beyond the 64 token positions"):
        pipeline("referring-segmentation", model=str(model_dir), max_length=65)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        pipeline("referring-segmentation", model=str(model_dir), threshold=-1)


def test_nan_logits_raise_instead_of_a_nan_score(model_dir):
    segmenter = pipeline("referring-segmentation", model=str(model_dir))
    with torch.no_grad():
        next(p for n, p in segmenter.model.named_parameters() if "no_target" in n).fill_(float("nan"))
    with pytest.raises(ValueError, match="the model produced NaN no-target logits"):
        segmenter(PIL.Image.new("RGB", (8, 8)), "the red circle")


@pytest.fixture(scope="module")
def not_models(tmp_path_factory, model_dir):
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("not_models")
    BertModel(
        BertConfig(
            hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8, vocab_size=20
        )
    ).save_pretrained(root / "bert")
    for name in ("missing", "reshaped", "garbage"):
        (root / name).mkdir()
        for f in Path(model_dir).iterdir():
            (root / name / f.name).write_bytes(f.read_bytes())
    weights = load_file(root / "missing" / "model.safetensors")
    key = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != key}, root / "missing" / "model.safetensors")
    reshaped = dict(weights)
    first_2d = next(k for k in sorted(reshaped) if reshaped[k].dim() == 2)
    reshaped[first_2d] = torch.zeros(reshaped[first_2d].shape[0] + 1, reshaped[first_2d].shape[1])
    save_file(reshaped, root / "reshaped" / "model.safetensors")
    (root / "garbage" / "model.safetensors").write_bytes(b"\x00" * 4)
    return root


def test_a_folder_that_is_not_a_refseg_model_is_refused_when_built(not_models):
    with pytest.raises(
        ModelLoadingError, match="holds a 'bert' model, not a refseg referring-segmentation model"
    ):
        pipeline("referring-segmentation", model=str(not_models / "bert"))
    from transformers import BertConfig, BertModel

    bert = BertModel(
        BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)
    )
    with pytest.raises(ModelLoadingError, match="'bert' model, not a refseg"):
        ReferringSegmentationPipeline(model=bert)


def test_checkpoints_with_missing_or_reshaped_weights_are_refused(not_models):
    with pytest.raises(
        IncompleteCheckpointError, match=r"1 missing weight\(s\): aggregation\.activation\.weight\)"
    ):
        pipeline("referring-segmentation", model=str(not_models / "missing"))
    with pytest.raises(IncompleteCheckpointError, match=r"1 weight\(s\) of another shape: "):
        load_referring_segmentation_model(not_models / "reshaped")
    with pytest.raises(ModelLoadingError, match="cannot read .*garbage/model.safetensors"):
        pipeline("referring-segmentation", model=str(not_models / "garbage"))


def test_missing_model_folders_say_so(tmp_path):
    for missing in (tmp_path / "nothere", "./nothere", "a/b/c"):
        with pytest.raises(FileNotFoundError, match=f"no such model folder: {missing}"):
            load_referring_segmentation_model(missing)
    with pytest.raises(ModelLoadingError, match="not a refseg model folder: it has no config.json"):
        load_referring_segmentation_model(tmp_path)
    with pytest.raises(
        FileNotFoundError, match="no such model folder, and no Hub model owner/none could be loaded"
    ):
        load_referring_segmentation_model("owner/none", local_files_only=True)


def test_the_bundled_demo_model_loads_with_every_weight():
    model = load_referring_segmentation_model(refseg.demo_model_path())
    assert isinstance(model, InstAlignForReferringSegmentation)


def test_unknown_parameter(segmenter):
    with pytest.raises(ValueError, match="unknown arguments"):
        segmenter(PIL.Image.new("RGB", (8, 8)), "x", top_k=3)
