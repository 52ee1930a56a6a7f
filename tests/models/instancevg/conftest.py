"""Shared fixtures of the InstanceVG tests: a tiny sentencepiece model, its tokenizer and a saved tiny model."""

import pytest
import torch

from tests.models.instancevg.spm_helpers import train_sentencepiece


@pytest.fixture(scope="session")
def beit3_spm(tmp_path_factory):
    return train_sentencepiece(tmp_path_factory.mktemp("spm") / "beit3.spm")


@pytest.fixture(scope="session")
def tiny_tokenizer(beit3_spm):
    from refseg.models.instancevg.processing_instancevg import tokenizer_from_sentencepiece

    return tokenizer_from_sentencepiece(beit3_spm, model_max_length=12)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A random tiny InstanceVG + processor saved to a folder; the no-target head favours 'target'."""
    from refseg.models.instancevg import (
        InstanceVGConfig,
        InstanceVGForReferringSegmentation,
        InstanceVGImageProcessor,
        InstanceVGProcessor,
    )

    torch.manual_seed(0)
    config = InstanceVGConfig.preset("tiny", encoder_config={"vocab_size": len(tiny_tokenizer)})
    model = InstanceVGForReferringSegmentation(config)
    with torch.no_grad():
        model.no_target_head.layers[-1].bias.copy_(torch.tensor([5.0, -5.0]))
        model.class_head.bias.copy_(torch.tensor([3.0, -3.0]))
    path = tmp_path_factory.mktemp("tiny_instancevg")
    model.save_pretrained(path)
    InstanceVGProcessor(InstanceVGImageProcessor(size=config.image_size), tiny_tokenizer).save_pretrained(
        path
    )
    return path
