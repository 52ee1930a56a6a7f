"""The shared model tester: what every registered refseg architecture is checked for.

The design follows transformers' per-model ``ModelTester`` (a tiny config and inputs built locally) run by a
common mixin, and timm's ``tests/test_models.py`` (one test function parametrised over the registered models).
``tests/models/test_all_models.py`` reads the architectures registered in :mod:`refseg.models`, loads each one's
tester with :func:`load_tester` and runs the common checks on it: output contract, save / load, the Auto
classes, the ``referring-segmentation`` pipeline, unknown keyword arguments, loss and backward, the
post-processing thresholds near their values, the processor's image statistics against the paper, batch =
per-sample runs and eval determinism. A registered model without a tester fails there.

Adding a model ``foo``: create ``tests/models/foo/tester_foo.py`` holding one :class:`ModelTester` subclass::

    from tests.model_tester import IMAGENET_MEAN, IMAGENET_STD, ModelTester
    from tests.processing_helpers import tiny_tokenizer


    class FooModelTester(ModelTester):
        model_type = "foo"
        # Foo paper Sec. 4.1: 480 x 480 inputs, ImageNet-pretrained Swin-B (ImageNet statistics)
        paper_image_size = (480, 480)
        paper_image_mean, paper_image_std = IMAGENET_MEAN, IMAGENET_STD

        def make_tokenizer(self):
            return tiny_tokenizer(model_max_length=16)

The defaults fit a model that follows the contracts of ``docs/pipeline.md``: a ``tiny`` config preset whose
``text_config.vocab_size`` is set to the tokenizer's, an image processor taking ``size``, a processor
``(image_processor, tokenizer)``, and ``mask_labels`` for training. Override :meth:`ModelTester.make_config`
(another text-config key), :attr:`ModelTester.unused_parameters` (parameters that get no gradient by design),
:attr:`ModelTester.default_threshold`, :attr:`ModelTester.threshold_selects_instances` or
:attr:`ModelTester.no_target_threshold_decides` where the model differs.
"""

from __future__ import annotations

import functools
import importlib
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

import refseg.models
from refseg.modeling.outputs import ReferringSegmentationOutput

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SWIN_FINAL_LAYERNORM",
    "ModelTester",
    "constant_outputs",
    "load_tester",
    "registered_model_types",
]

#: the ImageNet statistics of the Swin / BEiT-3 pre-training every paper's encoder starts from, written out
#: here (not imported from transformers) so that a processor default that drifts from them fails
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: SwinBackbone keeps SwinModel's final LayerNorm, which its feature maps never pass through: no gradient
SWIN_FINAL_LAYERNORM = frozenset(
    {"model.backbone.model.swin.layernorm.weight", "model.backbone.model.swin.layernorm.bias"}
)

#: a logit far enough from 0 that its probability is 1 - 1e-5 (or 1e-5): a clear decision
_CONFIDENT = 11.5


def registered_model_types() -> list[str]:
    """The ``model_type`` of every architecture registered in :mod:`refseg.models`."""
    return refseg.models.model_types()


def path_of_tester(model_type: str) -> Path:
    """Where the tester of ``model_type`` lives: ``tests/models/<model_type>/tester_<model_type>.py``."""
    return Path(__file__).parent / "models" / model_type / f"tester_{model_type}.py"


def load_tester(model_type: str, workdir: Path) -> ModelTester:
    """The :class:`ModelTester` of ``model_type``, working in ``workdir``; fails naming the missing file."""
    path = path_of_tester(model_type)
    if not path.is_file():
        raise AssertionError(
            f"the registered architecture {model_type!r} has no tester: add {path.relative_to(path.parents[3])} "
            "with a ModelTester subclass (see tests/model_tester.py)"
        )
    module = importlib.import_module(f"tests.models.{model_type}.tester_{model_type}")
    testers = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, ModelTester) and value is not ModelTester
    ]
    if len(testers) != 1 or testers[0].model_type != model_type:
        raise AssertionError(
            f"{path.name} must define exactly one ModelTester subclass with model_type = {model_type!r}, "
            f"found {[(t.__name__, t.model_type) for t in testers]}"
        )
    return testers[0](workdir)


def _logit(probability: float) -> float:
    return math.log(probability / (1.0 - probability))


def constant_outputs(
    template: ReferringSegmentationOutput,
    mask_probability: float,
    score: float,
    no_target_probability: float = 1e-5,
) -> ReferringSegmentationOutput:
    """Shared output fields shaped like sample 0 of ``template``, filled with chosen probabilities.

    Every mask logit (``semantic_mask_logits`` and each of ``pred_masks``) is ``logit(mask_probability)``;
    query 0 scores ``logit(score)`` and the other queries ``-11.5`` (``p = 1e-5``); ``no_target_logits`` is
    ``logit(no_target_probability)`` (by default the sample refers to something); boxes (for a box head) cover the image. Fields the model does not
    predict stay ``None``. Post-processing reads these fields only, so the result depends on its thresholds alone.
    """

    def like(name: str, value: float) -> torch.Tensor | None:
        field = getattr(template, name)
        return None if field is None else torch.full_like(field[:1], value, dtype=torch.float32)

    pred_scores = like("pred_scores", -_CONFIDENT)
    if pred_scores is not None:
        pred_scores[:, 0] = _logit(score)
    pred_boxes = like("pred_boxes", 0.5)
    if pred_boxes is not None:
        pred_boxes[..., 2:] = 1.0  # (cx, cy, w, h) = the whole image
    return ReferringSegmentationOutput(
        semantic_mask_logits=like("semantic_mask_logits", _logit(mask_probability)),
        no_target_logits=like("no_target_logits", _logit(no_target_probability)),
        pred_masks=like("pred_masks", _logit(mask_probability)),
        pred_scores=pred_scores,
        pred_boxes=pred_boxes,
    )


class ModelTester:
    """Builds a tiny model of one registered architecture, its processor and inputs, offline.

    Subclasses set :attr:`model_type` and the paper's image statistics, and implement :meth:`make_tokenizer`.
    """

    #: the registered ``model_type`` this tester covers
    model_type: ClassVar[str]
    #: ``(height, width)``, per-channel mean and std of the paper's pre-processing (cite the section)
    paper_image_size: ClassVar[tuple[int, int]]
    paper_image_mean: ClassVar[tuple[float, float, float]]
    paper_image_std: ClassVar[tuple[float, float, float]]
    #: the processor's default instance ``threshold`` of post-processing
    default_threshold: ClassVar[float] = 0.5
    #: ``False`` when post-processing documents ``threshold`` as unused (no instance scores)
    threshold_selects_instances: ClassVar[bool] = True
    #: ``False`` when post-processing documents ``no_target_threshold`` as unused (another no-target rule)
    no_target_threshold_decides: ClassVar[bool] = True
    #: parameter names that get no gradient by design (e.g. a final norm no output passes through)
    unused_parameters: ClassVar[frozenset[str]] = frozenset()
    #: tolerance of the batch = per-sample comparison
    batch_atol: ClassVar[float] = 1e-4
    #: two sentences of different lengths (so a batch pads one), in every tiny tokenizer's vocabulary
    sentences: ClassVar[tuple[str, str]] = ("the red circle", "a large green square and a small blue circle")
    #: ``(height, width)`` of the two test images (different aspect ratios)
    image_shapes: ClassVar[tuple[tuple[int, int], tuple[int, int]]] = ((48, 64), (64, 40))

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        (
            self.config_class,
            self.model_class,
            self.image_processor_class,
            self.processor_class,
        ) = refseg.models.architecture(self.model_type)

    # ------------------------------------------------------------------ what a model's tester provides
    def make_tokenizer(self) -> Any:
        """A tiny tokenizer built offline (no Hub access in tests)."""
        raise NotImplementedError

    def make_config(self) -> Any:
        """The ``tiny`` preset with the text vocabulary of :attr:`tokenizer`."""
        return self.config_class.preset("tiny", text_config={"vocab_size": len(self.tokenizer)})

    def make_image_processor(self) -> Any:
        """The model's image processor at the tiny config's input size."""
        return self.image_processor_class(size=self.config.image_size)

    # ------------------------------------------------------------------ built from the above
    @functools.cached_property
    def tokenizer(self) -> Any:
        return self.make_tokenizer()

    @functools.cached_property
    def config(self) -> Any:
        return self.make_config()

    @functools.cached_property
    def processor(self) -> Any:
        return self.processor_class(self.make_image_processor(), self.tokenizer)

    def model(self) -> torch.nn.Module:
        """A freshly initialised tiny model (seed 0) in eval mode."""
        torch.manual_seed(0)
        return self.model_class(self.config).eval()

    def images(self) -> list[np.ndarray]:
        """Two random uint8 RGB images of :attr:`image_shapes`."""
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in self.image_shapes]

    def instances(self) -> list[list[np.ndarray]]:
        """Referred objects at the original sizes: two boxes in image 0, none (no target) in image 1."""
        (h, w), (h1, w1) = self.image_shapes
        first, second = np.zeros((h, w), bool), np.zeros((h, w), bool)
        first[: h // 3, : w // 3] = True
        second[h // 2 :, w // 2 :] = True
        return [[first, second], []]

    def inputs(self, labels: bool = False, index: int | None = None) -> dict[str, Any]:
        """Processor outputs for both images and sentences (or only sample ``index``), with labels if asked."""
        images, sentences, instances = self.images(), list(self.sentences), self.instances()
        if index is not None:
            images, sentences, instances = [images[index]], [sentences[index]], [instances[index]]
        return dict(self.processor(images=images, text=sentences, instances=instances if labels else None))
