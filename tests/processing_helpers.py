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


def save_tiny_instalign(path, seed: int = 0, target_bias: float | None = -5.0):
    """Save a random tiny InstAlign + processor (synthetic tokenizer) to ``path``; returns the path.

    ``target_bias`` sets the no-target head's output bias so that the random model predicts targets
    (and therefore instances) instead of sitting at p = 0.5.
    """
    from refseg.data import synthetic_tokenizer
    from refseg.models.instalign import (
        InstAlignConfig,
        InstAlignForReferringSegmentation,
        InstAlignImageProcessor,
        InstAlignProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = synthetic_tokenizer()
    config = InstAlignConfig.preset("tiny", text_config={"vocab_size": len(tokenizer)})
    model = InstAlignForReferringSegmentation(config)
    if target_bias is not None:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "no_target" in name and name.endswith("bias"):
                    param.fill_(target_bias)
    model.save_pretrained(path)
    InstAlignProcessor(InstAlignImageProcessor(size=config.image_size), tokenizer).save_pretrained(path)
    return path
