"""ReLA's entry in the shared model tester (``tests/model_tester.py``)."""

from tests.model_tester import IMAGENET_MEAN, IMAGENET_STD, ModelTester
from tests.processing_helpers import tiny_tokenizer


class RelaModelTester(ModelTester):
    model_type = "rela"
    # ReLA (Liu, Ding and Jiang, CVPR 2023), implementation details and the released configs: 480 x 480
    # inputs, ImageNet mean / std ([123.675, 116.28, 103.53] / [58.395, 57.12, 57.375] on 0-255 values)
    paper_image_size = (480, 480)
    paper_image_mean, paper_image_std = IMAGENET_MEAN, IMAGENET_STD
    # region queries tile the image and are not instances: post-processing documents ``threshold`` as unused
    threshold_selects_instances = False

    def make_tokenizer(self):
        return tiny_tokenizer(model_max_length=8)  # the tiny preset's max_text_length
