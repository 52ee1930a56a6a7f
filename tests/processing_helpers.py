"""Shared test helpers for the processor, pipeline and CLI tests: a tiny tokenizer and fake outputs."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast
from transformers.utils import ModelOutput

WORDS = (
    "the a red green blue small large circle square triangle star ring left right all and everything".split()
)


def tiny_tokenizer(model_max_length: int = 8) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with RoBERTa-style special tokens, built offline."""
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {tok: i for i, tok in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=model_max_length,
    )


def fake_outputs(pred_masks, pred_scores, semantic_mask_logits, no_target_logits) -> ModelOutput:
    """An InstAlignOutput-like ModelOutput with the fields post-processing reads."""
    return ModelOutput(
        pred_masks=torch.as_tensor(pred_masks, dtype=torch.float32),
        pred_scores=torch.as_tensor(pred_scores, dtype=torch.float32),
        semantic_mask_logits=torch.as_tensor(semantic_mask_logits, dtype=torch.float32),
        no_target_logits=torch.as_tensor(no_target_logits, dtype=torch.float32),
    )
