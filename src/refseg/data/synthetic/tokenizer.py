"""A word-level tokenizer over the synthetic grammar's vocabulary, with RoBERTa-style special tokens.

Built offline with the ``tokenizers`` library: WordLevel model, lower-casing normaliser, whitespace +
punctuation pre-tokenizer and the template ``<s> $A </s>``. Ids: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2,
``<unk>`` 3, then the grammar's words in sorted order, then ``<mask>``.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from .grammar import vocabulary

SPECIAL_TOKENS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>")
MASK_TOKEN = "<mask>"


def synthetic_vocab() -> dict[str, int]:
    """Token -> id of the synthetic word-level tokenizer: special tokens, the grammar's words, mask."""
    tokens = [*SPECIAL_TOKENS, *vocabulary(), MASK_TOKEN]
    return {t: i for i, t in enumerate(tokens)}


def synthetic_tokenizer(model_max_length: int = 32) -> PreTrainedTokenizerFast:
    """Word-level fast tokenizer covering every word the synthetic grammar can emit."""
    vocab = synthetic_vocab()
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])],
    )
    tok.add_special_tokens([*SPECIAL_TOKENS, MASK_TOKEN])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token=MASK_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
        truncation_side="right",
    )
