"""Import, build and run the ORIGINAL ReLA implementation (henghuiding/ReLA, GRES) on CPU, for parity checks.

This is our own harness around a checkout of https://github.com/henghuiding/ReLA (branch ``main``) and a
checkout of https://github.com/facebookresearch/detectron2 whose paths the user gives; nothing of either is
copied here and refseg never imports this file. detectron2 is imported from its source tree as it is (no
build, no install): the model path needs none of its compiled code. Only four things are replaced at import
time by ``install_stubs``:

* ``torchvision`` and ``detectron2._C`` (compiled or absent): stub modules; ``torchvision._is_tracing``, which
  the original's ``nested_tensor_from_tensor_list`` calls in the loss, answers ``False``;
* ``timm.models.layers``: ``DropPath``, ``to_2tuple`` and ``trunc_normal_`` with timm's semantics;
* ``MultiScaleDeformableAttention`` (the original's compiled CUDA op): an EMPTY module, so that the import
  succeeds, the op's call fails and the original's own ``except:`` runs its pure-PyTorch path
  (``ms_deform_attn_core_pytorch``), as it does on every CPU.

At build time ``BertModel.from_pretrained("bert-base-uncased")`` is replaced by a randomly initialised
``BertModel`` of a given config (no download; the parity script sets every weight anyway), and, for reduced
sizes only, three literals of the original are followed to the reduced widths (``reduced_literals``).

Environment: Python with torch, transformers, pycocotools (as refseg), plus ``fvcore iopath omegaconf yacs``
for detectron2's config code (``python -m venv --system-site-packages /work/rela-venv &&
/work/rela-venv/bin/pip install fvcore iopath omegaconf yacs``).

    git clone https://github.com/henghuiding/ReLA /path/to/ReLA                    # 3ca9551 was used
    git clone https://github.com/facebookresearch/detectron2 /path/to/detectron2   # 02b5c4e was used

Command line (build a config at full size with random weights, print key and parameter counts)::

    python scripts/parity/rela_original.py --original /path/to/ReLA --detectron2 /path/to/detectron2 \\
        --config configs/referring_swin_base.yaml
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import math
import os
import sys
import types
from collections.abc import Iterator
from typing import Any
from unittest.mock import MagicMock

import torch

# (1) transformers must be imported before the stubs: its package probes choke on a stub torchvision
import transformers  # noqa: E402,F401
from torch import nn
from transformers import BertConfig, BertModel  # noqa: E402

STUBBED = ("torchvision", "detectron2._C", "timm")
_REAL_ATTRIBUTES: dict[str, dict[str, Any]] = {}


class _StubModule(types.ModuleType):
    """A package whose every attribute is a MagicMock, unless given a real attribute."""

    __path__: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = MagicMock(name=f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves the modules of ``STUBBED`` to stubs and ``MultiScaleDeformableAttention`` to an empty module."""

    def find_spec(self, fullname, path, target=None):  # noqa: D102
        if fullname == "MultiScaleDeformableAttention" or any(
            fullname == s or fullname.startswith(s + ".") for s in STUBBED
        ):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):  # noqa: D102
        if spec.name == "MultiScaleDeformableAttention":
            return types.ModuleType(spec.name)  # empty: MSDA.ms_deform_attn_forward raises AttributeError
        module = _StubModule(spec.name)
        module.__dict__.update(_REAL_ATTRIBUTES.get(spec.name, {}))
        return module

    def exec_module(self, module):  # noqa: D102
        pass


def _to_2tuple(x: Any) -> tuple:
    """timm's ``to_2tuple``: an iterable is returned as a tuple, anything else is repeated twice."""
    if isinstance(x, (list, tuple)):
        return tuple(x)
    return (x, x)


class _DropPath(nn.Module):
    """timm's ``DropPath`` (stochastic depth per sample); identity in eval mode or with ``drop_prob == 0``."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob, self.scale_by_keep = drop_prob, scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.drop_prob)
        return x * keep / (1 - self.drop_prob) if self.scale_by_keep else x * keep


def install_stubs() -> None:
    """Put the stub finder in front of ``sys.meta_path`` (idempotent)."""
    if any(isinstance(finder, _StubFinder) for finder in sys.meta_path):
        return
    timm_layers = {"DropPath": _DropPath, "to_2tuple": _to_2tuple, "trunc_normal_": nn.init.trunc_normal_}
    _REAL_ATTRIBUTES.update(
        {"timm.models.layers": timm_layers, "torchvision": {"_is_tracing": lambda: False}}
    )
    sys.meta_path.insert(0, _StubFinder())


def import_original(original: str | os.PathLike, detectron2: str | os.PathLike) -> types.ModuleType:
    """Import ``gres_model`` from the ReLA checkout ``original``, with detectron2 from the checkout
    ``detectron2`` (its source tree, or ``None`` for an installed detectron2). Registers every model."""
    original = os.path.abspath(os.fspath(original))
    if not os.path.isdir(os.path.join(original, "gres_model")):
        raise FileNotFoundError(f"{original} is not a ReLA checkout (no gres_model/ folder)")
    install_stubs()
    if detectron2 is not None:
        detectron2 = os.path.abspath(os.fspath(detectron2))
        if not os.path.isfile(os.path.join(detectron2, "detectron2", "config", "config.py")):
            raise FileNotFoundError(f"{detectron2} is not a detectron2 checkout (no detectron2/config/)")
        if detectron2 not in sys.path:
            sys.path.insert(0, detectron2)
    if original not in sys.path:
        sys.path.insert(0, original)
    return importlib.import_module("gres_model")


def original_cfg(
    original: str | os.PathLike,
    detectron2: str | os.PathLike | None,
    config_name: str,
    opts: list[Any] | None = None,
) -> Any:
    """The frozen detectron2 config as the original's ``train_net.py: setup`` builds it, on CPU."""
    import_original(original, detectron2)
    from detectron2.config import get_cfg
    from detectron2.projects.deeplab import add_deeplab_config
    from gres_model import add_maskformer2_config, add_refcoco_config

    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    add_refcoco_config(cfg)
    path = config_name if os.path.isabs(config_name) else os.path.join(os.fspath(original), config_name)
    cfg.merge_from_file(path)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *(opts or [])])
    cfg.freeze()
    return cfg


@contextlib.contextmanager
def reduced_literals(text_dim: int | None = None, pixel_decoder_ffn_dim: int | None = None) -> Iterator[None]:
    """Follow three literals of the original to reduced sizes while building: the text width 768 of PWAM's
    key/value convolutions (``MMBasicLayer`` passes ``768`` to ``PWAM``) and of the decoder's ``lang_proj``
    (``Linear(768, ...)``), and the pixel decoder's FFN width 1024 (``MSDeformAttnPixelDecoder.from_config``).
    ``None`` keeps the original's value."""
    swin = importlib.import_module("gres_model.modeling.backbone.swin")
    decoder = importlib.import_module("gres_model.modeling.transformer_decoder.referring_transformer_decoder")
    pixel = importlib.import_module("gres_model.modeling.pixel_decoder.msdeformattn")
    saved = (swin.PWAM.__init__, decoder.Linear, pixel.MSDeformAttnPixelDecoder.__dict__["from_config"])
    if text_dim is not None:
        pwam_init, linear = saved[0], saved[1]

        def narrow_pwam_init(self, dim, v_in, l_in, *args, **kwargs):
            assert l_in == 768, l_in
            pwam_init(self, dim, v_in, text_dim, *args, **kwargs)

        def narrow_linear(in_features, *args, **kwargs):
            assert in_features == 768, in_features
            return linear(text_dim, *args, **kwargs)

        swin.PWAM.__init__, decoder.Linear = narrow_pwam_init, narrow_linear
    if pixel_decoder_ffn_dim is not None:
        from_config = saved[2].__func__

        def small_from_config(cls, cfg, input_shape):
            ret = from_config(cls, cfg, input_shape)
            assert ret["transformer_dim_feedforward"] == 1024
            ret["transformer_dim_feedforward"] = pixel_decoder_ffn_dim
            return ret

        pixel.MSDeformAttnPixelDecoder.from_config = classmethod(small_from_config)
    try:
        yield
    finally:
        swin.PWAM.__init__, decoder.Linear = saved[0], saved[1]
        pixel.MSDeformAttnPixelDecoder.from_config = saved[2]


@contextlib.contextmanager
def random_bert(text_config: BertConfig) -> Iterator[None]:
    """Inside, the original's ``BertModel.from_pretrained(...)`` builds ``BertModel(text_config)`` instead."""
    gres = importlib.import_module("gres_model.GRES")
    saved = gres.BertModel

    class _RandomBert:
        @staticmethod
        def from_pretrained(name: str, *args, **kwargs) -> BertModel:
            return BertModel(text_config, add_pooling_layer=True)

    gres.BertModel = _RandomBert
    try:
        yield
    finally:
        gres.BertModel = saved


def bert_base_config() -> BertConfig:
    """bert-base-uncased's architecture (12 layers, 768 wide, vocabulary 30522), randomly initialised."""
    return BertConfig(
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        type_vocab_size=2,
    )


def build_original_model(
    cfg: Any,
    text_config: BertConfig | None = None,
    *,
    reduced_text_dim: bool = False,
    pixel_decoder_ffn_dim: int | None = None,
) -> nn.Module:
    """Build the original ``GRES`` of ``cfg`` on CPU in ``eval()`` mode, with a random BERT of ``text_config``
    (bert-base-uncased's architecture by default). ``reduced_text_dim`` follows the 768 literals to
    ``text_config.hidden_size``; ``pixel_decoder_ffn_dim`` replaces the literal 1024 (see ``reduced_literals``)."""
    from detectron2.modeling import build_model

    text_config = text_config or bert_base_config()
    text_dim = text_config.hidden_size if reduced_text_dim else None
    with random_bert(text_config), reduced_literals(text_dim, pixel_decoder_ffn_dim):
        model = build_model(cfg)
    return model.eval()


@torch.no_grad()
def randomise_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give EVERY parameter and FrozenBN statistic of ``model`` a random value, in place, so that a mapping
    mistake cannot hide behind a zero or one init (closed gates, zero ``lang_proj``, LayerNorm 1/0):
    norm weights ``1 + 0.2 N``, 1-D tensors ``0.1 N``, position tables ``0.5 N``, embeddings / queries ``N``,
    ``sampling_offsets.weight 0.02 N``, other matrices ``N / sqrt(fan_in)``; FrozenBN ``running_var`` in
    ``[0.5, 1.5)``."""
    generator = torch.Generator().manual_seed(seed)

    def normal(shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=generator)

    norm_types = (nn.LayerNorm, nn.GroupNorm)
    norm_weights = {
        id(m.weight) for m in model.modules() if isinstance(m, norm_types) and m.weight is not None
    }
    for name, p in model.named_parameters():
        if id(p) in norm_weights:
            value = 1 + 0.2 * normal(p.shape)
        elif "relative_position_bias_table" in name or name.endswith("level_embed"):
            value = 0.5 * normal(p.shape)
        elif p.dim() <= 1:
            value = 0.1 * normal(p.shape)
        elif "sampling_offsets" in name:
            value = 0.02 * normal(p.shape)
        elif any(k in name for k in ("query_feat", "query_embed", "embeddings", "level_embed")):
            value = normal(p.shape)
        else:
            value = normal(p.shape) / math.sqrt(p[0].numel())
        p.copy_(value)
    for module in model.modules():
        if type(module).__name__ == "FrozenBatchNorm2d":
            module.weight.copy_(1 + 0.2 * normal(module.weight.shape))
            module.bias.copy_(0.1 * normal(module.bias.shape))
            module.running_mean.copy_(0.1 * normal(module.running_mean.shape))
            module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))
    return model


def original_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The original's ``state_dict()`` as its checkpoints hold it (``{"model": ...}`` in a ``.pth``)."""
    return model.state_dict()


def load_original_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load ``state`` strictly into the original model. A plain dict has no version metadata, which would make
    ``ReferringHead._load_from_state_dict`` rename (and so lose) every pixel-decoder key; the version 2 of
    ``sem_seg_head`` / ``sem_seg_head.predictor`` is restored here, as a ``torch.load``-ed checkpoint carries it."""
    from collections import OrderedDict

    state = OrderedDict(state)
    metadata = getattr(state, "_metadata", None) or model.state_dict()._metadata
    state._metadata = metadata
    model.load_state_dict(state, strict=True)
    return model


def _capture(module: nn.Module, store: dict[str, Any], key: str, index: int | None = None):
    """A forward hook storing the module's output (or its ``index``-th element) under ``store[key]``."""

    def hook(_module, _inputs, output):
        store.setdefault(key, []).append(output if index is None else output[index])

    return module.register_forward_hook(hook)


def original_batch(
    images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> list[dict[str, torch.Tensor]]:
    """``GRES.forward``'s input: one dict per sample, ``image`` uint8 CHW RGB, ``lang_tokens``/``lang_mask``
    ``(1, L)``."""
    return [
        {"image": images[b], "lang_tokens": input_ids[b : b + 1], "lang_mask": attention_mask[b : b + 1]}
        for b in range(images.shape[0])
    ]


@torch.no_grad()
def run_original(
    model: nn.Module, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> dict[str, Any]:
    """Run ``GRES.forward`` (inference) on ``images`` ``(B, 3, H, W)`` uint8 and record, by forward hooks, its
    intermediates: ``text_features`` (BERT's last hidden states), ``res2..res5``, ``mask_features``,
    ``multi_scale_features`` (strides 32, 16, 8), ``decoder_states`` (after each layer, ``(L, B, Q, C)``),
    ``pred_logits`` (the minimap), ``pred_masks``, ``all_masks``, ``nt_label``, the per-heads-call
    ``attention_logits`` (the region masks resized to the next layer's size, before ``sigmoid < 0.5``), and
    the final ``ref_seg`` / ``nt_prob`` (sigmoids at the padded input size) with the evaluator's decisions
    ``pred_mask = argmax(ref_seg)`` and ``pred_nt = argmax(nt_prob)``."""
    import torch.nn.functional as F

    store: dict[str, Any] = {}
    predictor = model.sem_seg_head.predictor
    handles = [
        _capture(model.text_encoder, store, "bert", 0),
        _capture(model.backbone, store, "backbone"),
        _capture(predictor, store, "predictor"),
    ]
    handles += [_capture(layer, store, "states") for layer in predictor.transformer_ffn_layers]
    pixel_decoder = model.sem_seg_head.pixel_decoder
    saved_features, saved_interpolate = pixel_decoder.forward_features, F.interpolate

    def forward_features(features):
        out = saved_features(features)
        store["pixel_decoder"] = out
        return out

    heads_module = importlib.import_module(type(predictor).__module__)
    saved_heads = type(predictor).forward_prediction_heads

    def heads(self, output, mask_features, attn_mask_target_size):
        # the region masks resized to the next layer's size, as the original computes them before thresholding
        minimap, all_mask, attn_mask, tgt_mask, nt = saved_heads(
            self, output, mask_features, attn_mask_target_size
        )
        resized = saved_interpolate(
            all_mask, size=attn_mask_target_size, mode="bilinear", align_corners=False
        )
        store.setdefault("attention_logits", []).append(resized)
        store.setdefault("attention_blocked", []).append(attn_mask)
        return minimap, all_mask, attn_mask, tgt_mask, nt

    pixel_decoder.forward_features = forward_features
    type(predictor).forward_prediction_heads = heads
    try:
        results = model(original_batch(images, input_ids, attention_mask))
    finally:
        pixel_decoder.forward_features = saved_features
        type(predictor).forward_prediction_heads = saved_heads
        for handle in handles:
            handle.remove()
    del heads_module
    mask_features, _, multi_scale = store["pixel_decoder"]
    prediction = store["predictor"][0]
    ref_seg = torch.stack([r["ref_seg"] for r in results])
    nt_prob = torch.stack([r["nt_label"] for r in results])
    return {
        "text_features": store["bert"][0],
        **{k: v for k, v in store["backbone"][0].items()},
        "mask_features": mask_features,
        "multi_scale_features": list(multi_scale),
        "decoder_states": torch.stack([s.transpose(0, 1) for s in store["states"]]),
        "pred_logits": prediction["pred_logits"],
        "pred_masks": prediction["pred_masks"],
        "all_masks": prediction["all_masks"],
        "nt_label": prediction["nt_label"],
        "attention_logits": store["attention_logits"],
        "attention_blocked": store["attention_blocked"],
        "ref_seg": ref_seg,
        "nt_prob": nt_prob,
        "pred_mask": ref_seg.argmax(dim=1),
        "pred_nt": nt_prob.argmax(dim=1),
    }


def attention_margins(outputs: dict[str, Any], num_layers: int) -> list[float]:
    """``min |logit|`` of the region-mask logits the original thresholds into each layer's attention mask
    (calls 0..L-1 of the heads; the last call's mask is unused): a port whose features differ by more than
    this may flip a masked-attention decision."""
    return [float(t.abs().min()) for t in outputs["attention_logits"][:num_layers]]


def original_loss(
    model: nn.Module,
    images: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    merged_masks: torch.Tensor,
) -> torch.Tensor:
    """``GRES.forward``'s training loss (``loss_mask`` after ``MASK_WEIGHT``) for targets ``merged_masks``
    ``(B, H, W)`` in {0, 1}; an all-zero mask is a no-target sample (``empty``). Only the top module is put in
    training mode (dropout and drop-path stay off), as in the parity note of ``scripts/parity/README.md``."""
    from detectron2.structures import Instances

    batch = original_batch(images, input_ids, attention_mask)
    height, width = images.shape[-2:]
    for sample, merged in zip(batch, merged_masks):
        instances = Instances((height, width))
        empty = not bool(merged.any())
        count = 0 if empty else 1
        instances.gt_classes = torch.zeros(count, dtype=torch.int64)
        instances.gt_masks = merged[None].to(torch.uint8)[:count]
        sample.update(instances=instances, empty=empty, gt_mask_merged=merged[None].to(torch.uint8))
    model.training = True
    try:
        with torch.no_grad():
            losses = model(batch)
    finally:
        model.training = False
    return losses["loss_mask"]


def original_test_mapper(cfg: Any, tokenizer: Any) -> Any:
    """The original's test-time ``RefCOCOMapper`` (``is_train=False``) of ``cfg``, with ``tokenizer`` in place of
    ``BertTokenizer.from_pretrained(cfg.REFERRING.BERT_TYPE)`` (no download)."""
    mapper_module = importlib.import_module("gres_model.data.dataset_mappers.refcoco_mapper")
    saved = mapper_module.BertTokenizer

    class _GivenTokenizer:
        @staticmethod
        def from_pretrained(name: str, *args, **kwargs) -> Any:
            return tokenizer

    mapper_module.BertTokenizer = _GivenTokenizer
    try:
        return mapper_module.RefCOCOMapper(cfg, is_train=False)
    finally:
        mapper_module.BertTokenizer = saved


def map_image_file(mapper: Any, path: str, sentence: str) -> dict[str, Any]:
    """The mapper's output for an image file and a sentence without annotations (a no-target record):
    ``image`` uint8 CHW RGB resized to ``INPUT.IMAGE_SIZE``, ``lang_tokens``, ``lang_mask``."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:  # the size as displayed (read_image applies the EXIF orientation)
        width, height = ImageOps.exif_transpose(image).size
    record = {
        "file_name": path,
        "height": height,
        "width": width,
        "annotations": [],
        "empty": True,
        "sentence": {"raw": sentence},
    }
    return mapper(record)


def main(argv: list[str] | None = None) -> None:
    """Build a released config at full size with random weights and print its key and parameter counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True, help="path of the ReLA checkout")
    parser.add_argument("--detectron2", required=True, help="path of the detectron2 checkout")
    parser.add_argument("--config", default="configs/referring_swin_base.yaml")
    args = parser.parse_args(argv)
    cfg = original_cfg(args.original, args.detectron2, args.config)
    model = build_original_model(cfg)
    count = sum(p.numel() for p in model.parameters())
    print(f"{args.config}: {len(model.state_dict())} keys, {count:,} parameters")


if __name__ == "__main__":
    main()
