"""InstanceVG's entry in the shared model tester (``tests/model_tester.py``)."""

from refseg.models.instancevg.processing_instancevg import tokenizer_from_sentencepiece
from tests.model_tester import IMAGENET_MEAN, IMAGENET_STD, ModelTester
from tests.models.instancevg.spm_helpers import train_sentencepiece


class InstanceVGModelTester(ModelTester):
    model_type = "instancevg"
    # Sec. 4.3: 320 x 320 inputs; the released code normalises with ImageNet mean / std
    # ([123.675, 116.28, 103.53] / [58.395, 57.12, 57.375] on 0-255 values)
    paper_image_size = (320, 320)
    paper_image_mean, paper_image_std = IMAGENET_MEAN, IMAGENET_STD
    # thr_q of the released configs (Sec. 3.5)
    default_threshold = 0.7
    # Sec. 3.5: a sample is no-target when no query is kept; ``no_target_threshold`` is documented as unused
    no_target_threshold_decides = False

    def make_tokenizer(self):
        spm = train_sentencepiece(self.workdir / "beit3.spm")
        return tokenizer_from_sentencepiece(spm, model_max_length=20)

    def make_config(self):
        return self.config_class.preset("tiny", encoder_config={"vocab_size": len(self.tokenizer)})
