"""The shared model tester run over every registered architecture (``tests/model_tester.py`` says how to add one).

Each test is parametrised over :func:`tests.model_tester.registered_model_types`, so a newly registered model is
picked up here and fails until ``tests/models/<model_type>/tester_<model_type>.py`` exists.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageSegmentation,
    AutoProcessor,
    pipeline,
)

import refseg  # noqa: F401  (registers the Auto classes and the pipeline task)
from refseg.modeling.outputs import ReferringSegmentationOutput
from refseg.modeling.post_processing import ReferringSegmentationPostProcessor
from tests.model_tester import (
    ModelTester,
    constant_outputs,
    load_tester,
    path_of_tester,
    registered_model_types,
)

pytestmark = pytest.mark.usefixtures("single_thread")

#: the contract fields every model fills (``docs/pipeline.md``, "Model outputs")
SHARED_FIELDS = ("semantic_mask_logits", "no_target_logits", "pred_masks", "pred_scores", "pred_boxes")
#: a non-square original image size for post-processing
TARGET_SIZE = (30, 44)


@pytest.fixture(scope="module", params=registered_model_types())
def tester(request, tmp_path_factory) -> ModelTester:
    return load_tester(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def model(tester):
    return tester.model()


@pytest.fixture(scope="module")
def outputs(tester, model):
    """Outputs of the tiny model on both samples, without labels, on one thread as every test here runs
    (module fixtures are set up before the function-scoped ``single_thread``; float sums depend on the
    thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return model(**tester.inputs())
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def saved_dir(tester, model, tmp_path_factory):
    """The tiny model and its processor saved with ``save_pretrained``."""
    path = tmp_path_factory.mktemp(f"saved_{tester.model_type}")
    model.save_pretrained(path)
    tester.processor.save_pretrained(path)
    return path


def _config_dict(config) -> dict:
    """Every config value but where it was loaded from."""
    return {key: value for key, value in config.to_dict().items() if key != "_name_or_path"}


def _fields(output) -> dict[str, torch.Tensor]:
    return {name: getattr(output, name) for name in SHARED_FIELDS if getattr(output, name) is not None}


def _assert_same_fields(actual, expected, atol: float = 0.0) -> None:
    expected_fields = _fields(expected)
    assert set(_fields(actual)) == set(expected_fields)
    for name, value in expected_fields.items():
        torch.testing.assert_close(getattr(actual, name), value, rtol=0, atol=atol, msg=name)


# ---------------------------------------------------------------------------------------------- registry
@pytest.mark.parametrize("model_type", registered_model_types())
def test_every_registered_model_has_a_tester(model_type, tmp_path):
    assert path_of_tester(model_type).is_file()
    assert load_tester(model_type, tmp_path).model_type == model_type


# ---------------------------------------------------------------------------------------------- model
def test_outputs_are_the_shared_contract(tester, model, outputs):
    """A ``ReferringSegmentationOutput`` (or subclass) with the documented shapes (``docs/pipeline.md``)."""
    assert isinstance(outputs, ReferringSegmentationOutput)
    semantic, no_target = outputs.semantic_mask_logits, outputs.no_target_logits
    assert semantic.ndim == 3 and semantic.shape[0] == 2 and no_target.shape == (2,)
    masks, scores, boxes = outputs.pred_masks, outputs.pred_scores, outputs.pred_boxes
    assert (masks is None) == (scores is None)  # instance masks come with their scores
    if masks is not None:
        queries = masks.shape[1]
        assert masks.ndim == 4 and masks.shape[0] == 2 and scores.shape == (2, queries)
        if boxes is not None:
            assert boxes.shape == (2, queries, 4) and ((boxes >= 0) & (boxes <= 1)).all()
    else:
        assert boxes is None
    for name in SHARED_FIELDS:  # attributes, not only dict keys
        assert hasattr(outputs, name), name


def test_save_and_load_round_trip_gives_the_same_outputs(tester, model, outputs, saved_dir):
    assert (saved_dir / "model.safetensors").is_file()  # weights never go through pickle
    assert _config_dict(AutoConfig.from_pretrained(saved_dir)) == _config_dict(model.config)
    loaded = tester.model_class.from_pretrained(saved_dir).eval()
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        _assert_same_fields(loaded(**tester.inputs()), outputs)


def test_auto_classes_resolve_the_saved_model(tester, saved_dir):
    assert type(AutoConfig.from_pretrained(saved_dir)) is tester.config_class
    assert type(AutoModel.from_pretrained(saved_dir)) is tester.model_class
    assert type(AutoModelForImageSegmentation.from_pretrained(saved_dir)) is tester.model_class
    assert type(AutoModel.from_config(tester.config)) is tester.model_class
    processor = AutoProcessor.from_pretrained(saved_dir)
    assert type(processor) is tester.processor_class
    assert type(processor.image_processor) is tester.image_processor_class
    assert type(AutoImageProcessor.from_pretrained(saved_dir)) is tester.image_processor_class
    reloaded, original = processor(**_pair(tester)), tester.processor(**_pair(tester))
    assert reloaded.keys() == original.keys()
    for key, value in original.items():
        assert torch.equal(reloaded[key], value), key


def _pair(tester: ModelTester) -> dict:
    return {"images": tester.images(), "text": list(tester.sentences)}


def test_unknown_keyword_arguments_are_refused(tester, model):
    with pytest.raises(TypeError, match="not_a_forward_argument"):
        model(**tester.inputs(), not_a_forward_argument=1)


def test_loss_is_finite_and_backward_reaches_every_trained_parameter(tester):
    model = tester.model().train()
    out = model(**tester.inputs(labels=True))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.loss_dict and all(torch.isfinite(value) for value in out.loss_dict.values())
    out.loss.backward()
    without = {name for name, p in model.named_parameters() if p.requires_grad and p.grad is None}
    assert without == tester.unused_parameters
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name


def test_a_few_training_steps_learn_the_referred_pixels_and_the_no_target_sample(tester):
    """20 AdamW steps on the two samples (two referred objects; no target): the loss falls, the referred pixels
    get higher mask logits than the rest of the image, and the no-target sample a higher no-target logit.
    Fails when a mask or no-target label, or the sign of a reported logit, is inverted."""
    model = tester.model().train()
    inputs = tester.inputs(labels=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = model(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad():
        out = model(**{k: v for k, v in inputs.items() if k not in ("mask_labels", "box_labels")})
    assert out.no_target_logits[1] > out.no_target_logits[0]
    logits = out.semantic_mask_logits[0]
    referred = inputs["mask_labels"][0].amax(0)[None, None]
    referred = torch.nn.functional.interpolate(referred, size=logits.shape, mode="nearest")[0, 0] > 0.5
    valid = torch.ones_like(referred)
    if "pixel_mask" in inputs:  # letterbox padding is no image
        valid = (
            torch.nn.functional.interpolate(inputs["pixel_mask"][:1, None].float(), size=logits.shape)[0, 0]
            > 0
        )
    assert logits[referred].mean() > logits[valid & ~referred].mean()


def test_no_labels_no_loss(outputs):
    assert outputs.loss is None and outputs.loss_dict is None


def test_batch_equals_per_sample_runs(tester, model, outputs):
    """Two samples in a batch (the shorter sentence padded) give each sample's outputs run alone."""
    for index in range(2):
        with torch.no_grad():
            single = model(**tester.inputs(index=index))
        for name, value in _fields(outputs).items():
            torch.testing.assert_close(
                getattr(single, name)[0], value[index], rtol=0, atol=tester.batch_atol, msg=name
            )


def test_eval_forward_is_deterministic(tester, model, outputs):
    assert not model.training
    with torch.no_grad():
        again = model(**tester.inputs())
    _assert_same_fields(again, outputs)


# ---------------------------------------------------------------------------------------------- processor
def test_processor_image_statistics_are_the_papers(tester):
    """The default image processor resizes to the paper's size and normalises with the paper's mean / std."""
    image_processor = tester.image_processor_class()
    size = tester.paper_image_size
    assert (image_processor.size["height"], image_processor.size["width"]) == size
    np.testing.assert_allclose(image_processor.image_mean, tester.paper_image_mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(image_processor.image_std, tester.paper_image_std, rtol=0, atol=1e-6)
    colour = np.array([200, 100, 50], dtype=np.uint8)
    image = np.broadcast_to(colour, (size[0] // 10, size[1] // 10, 3)).copy()  # the paper's aspect ratio
    pixel_values = image_processor(image)["pixel_values"]
    assert pixel_values.shape == (1, 3, *size)
    expected = (colour / 255.0 - np.array(tester.paper_image_mean)) / np.array(tester.paper_image_std)
    expected = torch.tensor(expected, dtype=torch.float32)[:, None, None].expand(3, *size)
    torch.testing.assert_close(pixel_values[0], expected, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- post-processing
def _post_process(tester: ModelTester, outputs, **thresholds) -> dict:
    (result,) = tester.processor.post_process_referring_segmentation(
        outputs, target_sizes=[TARGET_SIZE], **thresholds
    )
    return result


@pytest.mark.parametrize("given", [False, True], ids=["default", "non_default"])
@pytest.mark.parametrize("side", [+0.01, -0.01], ids=["above", "below"])
def test_mask_threshold_is_applied_near_its_value(tester, outputs, given, side):
    """Every mask pixel 0.01 above (below) ``mask_threshold`` is foreground (background), at the default 0.5
    and at 0.8: a post-processing that ignores ``mask_threshold`` or has another default fails."""
    mask_threshold = 0.8 if given else 0.5
    near = constant_outputs(outputs, mask_probability=mask_threshold + side, score=0.99)
    kwargs = {"mask_threshold": mask_threshold} if given else {}
    result = _post_process(tester, near, threshold=0.05, **kwargs)
    assert not result["no_target"]
    assert result["mask"].shape == TARGET_SIZE
    masks = [instance["mask"] for instance in result["instances"]]
    if side > 0:
        assert result["mask"].all() and len(masks) == 1 and masks[0].all()
    else:  # a box head may keep the instance's box; its mask is empty
        assert not result["mask"].any() and not any(mask.any() for mask in masks)


@pytest.mark.parametrize("given", [False, True], ids=["default", "non_default"])
@pytest.mark.parametrize("side", [+0.01, -0.01], ids=["above", "below"])
def test_threshold_is_applied_near_its_value(tester, outputs, given, side):
    """The one scored instance is kept when its score is 0.01 above ``threshold`` and dropped 0.01 below it,
    at the processor's default and at 0.8. Masks and scores share the probability, so that models scoring
    instances by their mask (connected components) see the same score; ``mask_threshold`` is far below it."""
    threshold = 0.8 if given else tester.default_threshold
    near = constant_outputs(outputs, mask_probability=threshold + side, score=threshold + side)
    kwargs = {"threshold": threshold} if given else {}
    result = _post_process(tester, near, mask_threshold=0.05, **kwargs)
    if not tester.threshold_selects_instances:  # documented as unused: the instance is always there
        assert len(result["instances"]) == 1
    elif side > 0:
        assert len(result["instances"]) == 1
        assert result["instances"][0]["score"] == pytest.approx(threshold + side, abs=1e-4)
    else:
        assert result["instances"] == []


@pytest.mark.parametrize("given", [False, True], ids=["default", "non_default"])
@pytest.mark.parametrize("side", [+0.01, -0.01], ids=["above", "below"])
def test_no_target_threshold_is_applied_near_its_value(tester, outputs, given, side):
    """A no-target probability 0.01 above ``no_target_threshold`` empties the mask and the instances, 0.01 below
    keeps them, at the default 0.5 and at 0.8."""
    no_target_threshold = 0.8 if given else 0.5
    near = constant_outputs(
        outputs, mask_probability=0.9, score=0.99, no_target_probability=no_target_threshold + side
    )
    kwargs = {"no_target_threshold": no_target_threshold} if given else {}
    result = _post_process(tester, near, threshold=0.05, mask_threshold=0.5, **kwargs)
    if not tester.no_target_threshold_decides:  # documented as unused: any value gives the same answer
        for value in (0.0, 1.0):
            again = _post_process(tester, near, threshold=0.05, mask_threshold=0.5, no_target_threshold=value)
            assert again["no_target"] == result["no_target"] and torch.equal(again["mask"], result["mask"])
    elif side > 0:
        assert result["no_target"] and not result["mask"].any() and result["instances"] == []
        assert result["target_score"] == pytest.approx(1 - no_target_threshold - side, abs=1e-4)
    else:
        assert not result["no_target"] and result["mask"].all() and len(result["instances"]) == 1


def _with_extra_field(outputs: ReferringSegmentationOutput) -> ReferringSegmentationOutput:
    """``outputs`` as an instance of a subclass of its class that appends a field (a model adding outputs)."""

    @dataclasses.dataclass
    class WithExtraField(type(outputs)):
        extra_logits: torch.Tensor | None = None

    fields = {name: getattr(outputs, name) for name in outputs.keys()}
    return WithExtraField(**fields, extra_logits=torch.full((2, 3), float("nan")))


def test_post_processing_is_the_shared_method_with_the_models_hook(tester, outputs):
    """Every image processor inherits the one ``post_process_referring_segmentation`` and declares its model's
    output class and fields; the model returns exactly that class."""
    image_processor = tester.processor.image_processor
    assert (
        type(image_processor).post_process_referring_segmentation
        is ReferringSegmentationPostProcessor.post_process_referring_segmentation
    )
    assert type(image_processor)._post_process is not ReferringSegmentationPostProcessor._post_process
    assert type(outputs) is image_processor.output_class
    field_names = {field.name for field in dataclasses.fields(image_processor.output_class)}
    assert set(image_processor.post_processing_fields()) <= field_names
    assert set(image_processor.required_output_fields) <= {
        name for name, v in outputs.items() if v is not None
    }


def test_post_processing_reads_the_output_object_by_its_fields(tester, outputs):
    """The model's output object, the same object as a subclass with one more field (NaN, never read), and
    the mapping of the fields post-processing declares give the same results."""
    expected = tester.processor.post_process_referring_segmentation(outputs, target_sizes=[TARGET_SIZE] * 2)
    fields = tester.processor.image_processor.post_processing_fields()
    declared = {name: value for name, value in outputs.items() if name in fields}
    for given in (_with_extra_field(outputs), declared):
        results = tester.processor.post_process_referring_segmentation(given, target_sizes=[TARGET_SIZE] * 2)
        assert len(results) == len(expected) == 2
        for got, want in zip(results, expected):
            assert got.keys() == want.keys()
            assert torch.equal(got["mask"], want["mask"]) and torch.equal(
                got["semantic_mask"], want["semantic_mask"]
            )
            assert got["no_target"] == want["no_target"] and got["target_score"] == want["target_score"]
            assert [i["score"] for i in got["instances"]] == [i["score"] for i in want["instances"]]


def test_post_processing_refuses_a_wrong_type_and_bad_arguments_naming_them(tester, outputs):
    post_process = tester.processor.image_processor.post_process_referring_segmentation
    for wrong in (outputs.to_tuple(), outputs.semantic_mask_logits, [outputs]):
        with pytest.raises(
            TypeError, match=rf"outputs must be the model's output .* got {type(wrong).__name__}"
        ):
            post_process(wrong)
    for name in ("threshold", "mask_threshold", "no_target_threshold", "instance_nms_threshold"):
        for value in (1.5, -0.1, float("nan")):
            with pytest.raises(ValueError, match=rf"^{name} must be a finite number in \[0, 1\], got"):
                post_process(outputs, **{name: value})
    with pytest.raises(ValueError, match="got 1 target sizes for a batch of 2"):
        post_process(outputs, target_sizes=[TARGET_SIZE])
    with pytest.raises(ValueError, match=r"target size \(0, 44\) of sample 1 must be positive"):
        post_process(outputs, target_sizes=[TARGET_SIZE, (0, 44)])
    required = tester.processor.image_processor.required_output_fields[0]
    with pytest.raises(ValueError, match=f"the model outputs have no '{required}'"):
        post_process({name: value for name, value in outputs.items() if name != required})


_READS_BY_NAME = {"get", "items", "keys", "values", "to_tuple"}


def _reads_outputs_by_string(tree: ast.AST) -> list[str]:
    """Places where a parameter named ``outputs`` is read other than by attribute: ``outputs["x"]``,
    ``outputs.get(...)`` and the like, ``getattr(outputs, ...)``; and any use of the removed ``output_field``."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == "outputs"
        ):
            found.append(f"line {node.lineno}: outputs[...]")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "outputs"
        ):
            if node.attr in _READS_BY_NAME:
                found.append(f"line {node.lineno}: outputs.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            if node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "outputs":
                found.append(f"line {node.lineno}: getattr(outputs, ...)")
        elif isinstance(node, ast.Name | ast.alias) and "output_field" in {
            getattr(node, "id", None),
            getattr(node, "name", None),
        }:
            found.append(f"line {node.lineno}: output_field")
    return found


def test_image_processors_read_outputs_by_attribute_only(tester):
    """The model's post-processing reads the output dataclass's attributes (``outputs.pred_masks``), never a
    field by its name as a string; the conversion of a mapping happens once, in the shared method."""
    path = Path(inspect.getsourcefile(type(tester.processor.image_processor)))
    assert _reads_outputs_by_string(ast.parse(path.read_text())) == [], path.name
    # the check sees the patterns it forbids
    assert (
        len(
            _reads_outputs_by_string(
                ast.parse('outputs["pred_masks"]; outputs.get("x"); getattr(outputs, "y")')
            )
        )
        == 3
    )


# ---------------------------------------------------------------------------------------------- pipeline
def test_pipeline_returns_the_result_contract(tester, model, saved_dir):
    """``pipeline("referring-segmentation", model=folder)`` returns the documented result, equal to the
    processor -> model -> post-processing route."""
    segmenter = pipeline("referring-segmentation", model=str(saved_dir))
    assert type(segmenter.model) is tester.model_class
    image = PIL.Image.fromarray(tester.images()[0])
    sentence = tester.sentences[0]
    thresholds = {"threshold": 0.0, "mask_threshold": 0.5, "no_target_threshold": 1.0}  # never no-target
    result = segmenter(image, sentence, **thresholds)
    assert set(result) == {"mask", "score", "no_target", "instances"}
    assert isinstance(result["mask"], PIL.Image.Image) and result["mask"].mode == "L"
    assert result["mask"].size == image.size
    assert isinstance(result["score"], float) and 0.0 <= result["score"] <= 1.0
    assert result["no_target"] is False
    for instance in result["instances"]:
        assert set(instance) == {"mask", "box", "score"}
        assert isinstance(instance["mask"], PIL.Image.Image) and instance["mask"].size == image.size
        box = instance["box"]
        assert set(box) == {"xmin", "ymin", "xmax", "ymax"} and all(isinstance(v, int) for v in box.values())
        assert (
            0 <= box["xmin"] <= box["xmax"] <= image.width and 0 <= box["ymin"] <= box["ymax"] <= image.height
        )
        assert isinstance(instance["score"], float)

    with torch.no_grad():
        direct_outputs = model(**tester.processor(images=image, text=sentence))
    (direct,) = tester.processor.post_process_referring_segmentation(
        direct_outputs, target_sizes=[(image.height, image.width)], **thresholds
    )
    np.testing.assert_array_equal(np.asarray(result["mask"]) > 0, direct["mask"].numpy())
    assert result["score"] == pytest.approx(direct["target_score"], abs=1e-6)
    assert len(result["instances"]) == len(direct["instances"])
    # _forward hands post-processing the fields it declares, not every tensor of the output
    forwarded = segmenter.forward(segmenter.preprocess({"image": image, "text": sentence}))
    declared = set(tester.processor.image_processor.post_processing_fields())
    assert set(forwarded) == {name for name, v in direct_outputs.items() if name in declared} | {
        "target_size"
    }
    batch = segmenter([image, image], list(tester.sentences), batch_size=2)
    assert len(batch) == 2 and all(set(r) == {"mask", "score", "no_target", "instances"} for r in batch)
