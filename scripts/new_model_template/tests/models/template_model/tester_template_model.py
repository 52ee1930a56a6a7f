"""TemplateModel's entry in the shared model tester (``tests/model_tester.py``)."""

from tests.model_tester import IMAGENET_MEAN, IMAGENET_STD, ModelTester
from tests.processing_helpers import tiny_tokenizer


class TemplateModelModelTester(ModelTester):
    model_type = "template_model"
    # TODO(paper): the paper's input size and statistics, citing the section (written out here, not imported
    # from the image processor, so that a default that drifts from the paper fails)
    paper_image_size = (480, 480)
    paper_image_mean, paper_image_std = IMAGENET_MEAN, IMAGENET_STD
    # no instance scores (the instances are the mask's connected components): ``threshold`` is unused
    threshold_selects_instances = False

    def make_tokenizer(self):
        return tiny_tokenizer(model_max_length=16)
