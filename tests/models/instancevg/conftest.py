"""Shared fixtures of the InstanceVG tests: a tiny sentencepiece model, its tokenizer and a saved tiny model."""

import io
import random

import pytest
import torch

WORDS = (
    "the a red green blue small large circle square triangle left right man woman dog cat on of with two all "
    "person holding umbrella"
).split()


def train_sentencepiece(path, model_type: str = "unigram", vocab_size: int = 40):
    """Train a tiny sentencepiece model on a synthetic word list (offline) and write it to ``path``."""
    import sentencepiece as spm

    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(300)]
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        minloglevel=2,
    )
    path.write_bytes(buffer.getvalue())
    return path


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
