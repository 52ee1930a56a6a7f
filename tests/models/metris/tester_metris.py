"""METRIS's entry in the shared model tester (``tests/model_tester.py``), and its tiny BERT tokenizer."""

from transformers import BertTokenizer

from tests.model_tester import IMAGENET_MEAN, IMAGENET_STD, SWIN_FINAL_LAYERNORM, ModelTester

WORDS = "the a red green blue small large circle square left right of and two".split()


def bert_tokenizer() -> BertTokenizer:
    """A word-level uncased BERT tokenizer built offline from a 14-word vocabulary (19 tokens)."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    return BertTokenizer(vocab={token: i for i, token in enumerate(tokens)})


class MetrisModelTester(ModelTester):
    model_type = "metris"
    # App. A "Experimental Settings": 480 x 480 inputs; Sec. 4.1: Swin-B pre-trained on ImageNet-22K
    paper_image_size = (480, 480)
    paper_image_mean, paper_image_std = IMAGENET_MEAN, IMAGENET_STD
    unused_parameters = SWIN_FINAL_LAYERNORM

    def make_tokenizer(self):
        return bert_tokenizer()
