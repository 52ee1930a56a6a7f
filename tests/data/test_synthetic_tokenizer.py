"""The synthetic grammar's word-level tokenizer: special tokens, coverage of the grammar, offline round trip."""

import numpy as np

from refseg.data import synthetic_tokenizer
from refseg.data.synthetic import sample_expressions, sample_scene, vocabulary


def test_special_tokens_and_template():
    tok = synthetic_tokenizer()
    assert [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert tok.mask_token_id == len(tok) - 1 == len(vocabulary()) + 4
    assert tok.model_max_length == 32 and tok.padding_side == "right"
    ids = tok("The small RED circle, on the left.")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == [
        "<s>", "the", "small", "red", "circle", ",", "on", "the", "left", ".", "</s>",
    ]  # fmt: skip
    assert tok("the hexagon")["input_ids"][2] == tok.unk_token_id
    batch = tok(["all circles", "the red circle and the green square"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 9)
    assert batch["input_ids"][0].tolist()[-6:] == [tok.eos_token_id] + [tok.pad_token_id] * 5
    assert batch["attention_mask"][0].tolist() == [1] * 4 + [0] * 5


def test_covers_every_generated_sentence():
    tok = synthetic_tokenizer()
    rng = np.random.default_rng(0)
    seen_words = set()
    longest = 0
    for _ in range(200):
        scene = sample_scene(rng, image_size=64)
        for ref in sample_expressions(scene, 6, rng):
            ids = tok(ref.sentence)["input_ids"]
            assert tok.unk_token_id not in ids, ref.sentence
            longest = max(longest, len(ids))
            seen_words.update(ref.sentence.replace(",", " ,").split())
    assert longest <= 32
    assert seen_words <= set(vocabulary())
    assert len(seen_words) >= len(vocabulary()) - 2  # everything but "." (and maybe a rare word) appears


def test_save_and_load_round_trip(tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = synthetic_tokenizer()
    tok.save_pretrained(tmp_path)
    for loaded in (
        PreTrainedTokenizerFast.from_pretrained(tmp_path),
        AutoTokenizer.from_pretrained(tmp_path),
    ):
        assert loaded.get_vocab() == tok.get_vocab()
        assert loaded.model_max_length == 32 and loaded.padding_side == "right"
        assert loaded.pad_token == "<pad>" and loaded.mask_token == "<mask>"
        text = ["the square above the blue star", "everything yellow"]
        assert loaded(text, padding=True)["input_ids"] == tok(text, padding=True)["input_ids"]
        assert (
            loaded.decode(tok("the two triangles")["input_ids"], skip_special_tokens=True)
            == "the two triangles"
        )
