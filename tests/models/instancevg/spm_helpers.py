"""A tiny sentencepiece model trained offline, for the InstanceVG (BEiT-3) tokenizer tests."""

import io
import random

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
