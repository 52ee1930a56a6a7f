"""InstAlign's entry in the shared model tester (``tests/model_tester.py``)."""

from tests.model_tester import IMAGENET_MEAN, IMAGENET_STD, SWIN_FINAL_LAYERNORM, ModelTester
from tests.processing_helpers import tiny_tokenizer


class InstAlignModelTester(ModelTester):
    model_type = "instalign"
    # paper Sec. 4.1 "Implementation Details": 480 x 480 inputs; Swin-B pre-trained on ImageNet-22K
    paper_image_size = (480, 480)
    paper_image_mean, paper_image_std = IMAGENET_MEAN, IMAGENET_STD
    unused_parameters = SWIN_FINAL_LAYERNORM

    def make_tokenizer(self):
        return tiny_tokenizer(model_max_length=16)
