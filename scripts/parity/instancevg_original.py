"""Import, build and checkpoint the ORIGINAL InstanceVG implementation on CPU, for parity checks.

This is our own harness around a checkout of https://github.com/Dmmm1997/InstanceVG whose path the user gives;
nothing of the original is copied here, and refseg never imports this directory. The original declares CUDA,
detectron2, detrex, mmdet, mmcv-full, timm, torchvision, ...; on CPU its model path only needs the pure-Python
parts, so the packages it imports but does not use for the model are replaced by stub modules at import time
(``install_stubs``), and two source-level problems are patched at run time (a missing
``torch.nn.functional`` import in the pure-PyTorch deformable attention; ``load_checkpoint`` moving tensors to
CUDA, avoided by ``load_official_checkpoint``).

Environment (a separate virtualenv, so that the project's environment is not changed)::

    python -m venv --system-site-packages /work/parity-venv      # sees torch, transformers, safetensors, scipy
    V=/work/parity-venv/bin
    $V/pip install 'setuptools<70' wheel
    $V/pip install torchscale==0.3.0 --no-deps
    $V/pip install fairscale==0.4.0 --no-deps --no-build-isolation
    MMCV_WITH_OPS=0 $V/pip install --no-build-isolation --no-deps mmcv==1.7.2
    $V/pip install einops opencv-python-headless addict yapf==0.40.1 pycocotools matplotlib

    git clone https://github.com/Dmmm1997/InstanceVG /path/to/InstanceVG   # commit 49fd8fa was used

Use from another script (run with the venv's python, ``PYTHONPATH=src`` for refseg)::

    from instancevg_original import build_original_model, randomise_, save_official_checkpoint
    model = build_original_model("/path/to/InstanceVG", "configs/gres/InstanceVG-grefcoco.py")
    randomise_(model, seed=0)
    save_official_checkpoint(model, "random_grefcoco.pth")

or from the command line (writes a random-weight checkpoint in the official format)::

    /work/parity-venv/bin/python scripts/parity/instancevg_original.py /path/to/InstanceVG \\
        --config configs/gres/InstanceVG-grefcoco.py --output random_grefcoco.pth [--reduced]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
from collections.abc import Iterator
from typing import Any
from unittest.mock import MagicMock

import torch
from torch import nn

# Packages the original imports but whose code the model path does not run on CPU (or only two functions of).
MOCKED_PACKAGES = (
    "mmdet",
    "detrex",
    "detectron2",
    "torchvision",
    "torchmetrics",
    "timm",
    "wandb",
    "mmengine",
    "lmdb",
    "pickle5",
    "tensorboardX",
)
# Not mocked: apex (torchscale falls back to torch.nn.LayerNorm only when ``import apex`` fails).
_REAL_ATTRIBUTES: dict[str, dict[str, Any]] = {}


class _MockModule(types.ModuleType):
    """A package whose every attribute is a MagicMock (unless given real attributes)."""

    __path__: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = MagicMock(name=f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class _MockFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves every module under ``MOCKED_PACKAGES`` to a ``_MockModule``."""

    def find_spec(self, fullname, path, target=None):  # noqa: D102
        if fullname.split(".")[0] in MOCKED_PACKAGES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):  # noqa: D102
        module = _MockModule(spec.name)
        module.__dict__.update(_REAL_ATTRIBUTES.get(spec.name, {}))
        return module

    def exec_module(self, module):  # noqa: D102
        pass


def timm_drop_path(
    x: torch.Tensor, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True
):
    """timm's ``drop_path`` (the only timm function BEiT-3 runs, with ``trunc_normal_``)."""
    if drop_prob == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - drop_prob)
    return x * keep / (1 - drop_prob) if scale_by_keep else x * keep


class _BaseModule(nn.Module):
    """mmengine's ``BaseModule`` as far as the original uses it: an ``nn.Module`` taking ``init_cfg``."""

    def __init__(self, init_cfg=None):
        super().__init__()
        self.init_cfg = init_cfg


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _to_tensor(data: Any) -> torch.Tensor:
    """mmdet 2.x ``to_tensor`` (``mmdet/datasets/pipelines/formatting.py``), which the original's formatting uses."""
    import numpy as np

    if isinstance(data, torch.Tensor):
        return data
    if isinstance(data, np.ndarray):
        return torch.from_numpy(data)
    if isinstance(data, int):
        return torch.LongTensor([data])
    if isinstance(data, float):
        return torch.FloatTensor([data])
    return torch.tensor(data)


class _Collect:
    """mmdet 2.x ``Collect``, the base class of the original's ``CollectData``: the ``meta_keys`` go to
    ``img_metas`` (a cpu-only ``DataContainer``), the ``keys`` are passed on."""

    def __init__(self, keys, meta_keys=()):
        self.keys, self.meta_keys = keys, meta_keys

    def __call__(self, results: dict) -> dict:
        from mmcv.parallel import DataContainer

        data = {"img_metas": DataContainer({k: results[k] for k in self.meta_keys}, cpu_only=True)}
        data.update({k: results[k] for k in self.keys})
        return data


class _BitmapMasks:
    """mmdet 2.x ``BitmapMasks`` as far as the original's post-processing uses it (``rescale=True``):
    ``resize`` = ``mmcv.imresize(mask, (w, h), interpolation="nearest")`` per mask."""

    def __init__(self, masks, height: int, width: int):
        self.masks, self.height, self.width = masks, height, width

    def resize(self, out_shape, interpolation: str = "nearest") -> _BitmapMasks:
        import mmcv
        import numpy as np

        if len(self.masks) == 0:
            resized = np.empty((0, *out_shape), dtype=np.uint8)
        else:
            resized = np.stack(
                [mmcv.imresize(m, out_shape[::-1], interpolation=interpolation) for m in self.masks]
            )
        return _BitmapMasks(resized, *out_shape)


def install_stubs() -> None:
    """Put the stub finder in front of ``sys.meta_path`` (idempotent)."""
    if any(isinstance(finder, _MockFinder) for finder in sys.meta_path):
        return
    _REAL_ATTRIBUTES.update(
        {
            "timm.models.layers": {"drop_path": timm_drop_path, "trunc_normal_": nn.init.trunc_normal_},
            "torchvision.ops.boxes": {"box_area": _box_area},
            "torchvision.ops": {"box_area": _box_area},
            "mmengine.model": {"BaseModule": _BaseModule},
            "detrex._C": {},
            # the few mmdet 2.x pieces the original's test-time data pipeline and rescaling run
            "mmdet.datasets.pipelines": {"Collect": _Collect, "to_tensor": _to_tensor},
            "mmdet.core": {"BitmapMasks": _BitmapMasks},
        }
    )
    sys.meta_path.insert(0, _MockFinder())


def import_original(checkout: str | os.PathLike) -> types.ModuleType:
    """Import the original ``instancevg.models`` from ``checkout`` (registers every model) and return it."""
    checkout = os.path.abspath(os.fspath(checkout))
    if not os.path.isdir(os.path.join(checkout, "instancevg")):
        raise FileNotFoundError(f"{checkout} is not an InstanceVG checkout (no instancevg/ folder)")
    install_stubs()
    if checkout not in sys.path:
        sys.path.insert(0, checkout)
    models = importlib.import_module("instancevg.models")
    msda_utils = importlib.import_module("instancevg.models.heads.transformers.utils")
    msda_utils.F = torch.nn.functional  # the pure-PyTorch deformable attention uses F without importing it
    return models


def original_beit3_config(
    *,
    img_size: int,
    patch_size: int,
    vocab_size: int,
    embed_dim: int,
    num_layers: int,
    num_heads: int,
    ffn_dim: int,
    drop_path_rate: float = 0.0,
    max_text_positions: int = 1024,
) -> Any:
    """A torchscale ``EncoderConfig`` as InstanceVG's ``_get_base_config`` builds it, with other sizes
    (``max_text_positions`` is torchscale's ``max_source_positions``, 1024 in InstanceVG)."""
    from torchscale.architecture.config import EncoderConfig

    return EncoderConfig(
        img_size=img_size,
        patch_size=patch_size,
        vocab_size=vocab_size,
        multiway=True,
        layernorm_embedding=False,
        normalize_output=True,
        no_output_layer=True,
        drop_path_rate=drop_path_rate,
        encoder_embed_dim=embed_dim,
        encoder_attention_heads=num_heads,
        encoder_ffn_embed_dim=ffn_dim,
        encoder_layers=num_layers,
        checkpoint_activations=None,
        max_source_positions=max_text_positions,
    )


@contextlib.contextmanager
def reduced_sizes(beit3_sizes: dict[str, int] | None = None, head_width: int | None = None) -> Iterator[None]:
    """Build the original at reduced size: inside the context, InstanceVG's base BEiT-3 configuration takes
    ``beit3_sizes`` (``embed_dim``, ``num_layers``, ``num_heads``, ``ffn_dim``, optionally ``max_text_positions``;
    image size, patch and vocabulary
    still come from the model config), and the head's deformable decoder, whose width 256 / FFN 1024 are
    literals, takes ``head_width`` / ``4 * head_width``. Call ``import_original`` first."""
    beit3_module = importlib.import_module("instancevg.models.vis_encs.beit.beit3")
    head_module = importlib.import_module("instancevg.models.heads.uni_gref_deformable_head")
    saved = (beit3_module._get_base_config, head_module.DeformableDetrTransformerDecoder)
    if beit3_sizes is not None:

        def small_base_config(img_size=224, patch_size=16, drop_path_rate=0, vocab_size=64010, **_):
            return original_beit3_config(
                img_size=img_size,
                patch_size=patch_size,
                vocab_size=vocab_size,
                drop_path_rate=drop_path_rate,
                **beit3_sizes,
            )

        beit3_module._get_base_config = small_base_config
    if head_width is not None:
        decoder_class = saved[1]

        def narrow_decoder(*args, **kwargs):
            kwargs.update(embed_dim=head_width, feedforward_dim=4 * head_width)
            return decoder_class(*args, **kwargs)

        head_module.DeformableDetrTransformerDecoder = narrow_decoder
    try:
        yield
    finally:
        beit3_module._get_base_config, head_module.DeformableDetrTransformerDecoder = saved


def build_original_model(
    checkout: str | os.PathLike,
    config_name: str,
    overrides: dict[str, Any] | None = None,
    *,
    beit3_sizes: dict[str, int] | None = None,
    head_width: int | None = None,
) -> nn.Module:
    """Build the original model of ``config_name`` (relative to ``checkout``) on CPU, in ``eval()`` mode.

    Args:
        checkout: path of the InstanceVG checkout.
        config_name: e.g. ``"configs/gres/InstanceVG-grefcoco.py"``.
        overrides: mmcv dotted keys merged into the config, e.g. ``{"model.head.num_queries": 3,
            "model.vis_enc.img_size": 128}``. ``model.vis_enc.pretrain`` is set to None (no BEiT-3 download)
            and ``model.process_visual`` to False unless given here.
        beit3_sizes, head_width: reduced sizes, see ``reduced_sizes`` (base ``vit_type`` only).
    """
    models = import_original(checkout)
    from mmcv import Config

    path = config_name if os.path.isabs(config_name) else os.path.join(os.fspath(checkout), config_name)
    cfg = Config.fromfile(path)
    cfg.model.vis_enc.pretrain = None
    cfg.model.process_visual = False
    if overrides:
        cfg.merge_from_dict(overrides)
    with reduced_sizes(beit3_sizes, head_width):
        model = models.build_model(cfg.model)
    return model.eval()


def build_original_beit3(
    checkout: str | os.PathLike,
    *,
    img_size: int,
    patch_size: int,
    vocab_size: int,
    embed_dim: int,
    num_layers: int,
    num_heads: int,
    ffn_dim: int,
    drop_path_rate: float = 0.0,
    max_text_positions: int = 1024,
) -> nn.Module:
    """The original InstanceVG BEiT-3 wrapper (``vis_enc`` of the model; ``.beit3`` is torchscale's ``BEiT3``)
    at the given size, without pretrained weights, in ``eval()`` mode. Its forward is
    ``(image, input_ids, padding_mask 1 = pad) -> (image tokens, text tokens, cls)``."""
    import_original(checkout)
    beit3_module = importlib.import_module("instancevg.models.vis_encs.beit.beit3")
    sizes = dict(
        embed_dim=embed_dim,
        num_layers=num_layers,
        num_heads=num_heads,
        ffn_dim=ffn_dim,
        max_text_positions=max_text_positions,
    )
    with reduced_sizes(beit3_sizes=sizes):
        encoder = beit3_module.BEIT3(
            img_size=img_size,
            patch_size=patch_size,
            vit_type="base",
            drop_path_rate=drop_path_rate,
            vocab_size=vocab_size,
            pretrain=None,
        )
    return encoder.eval()


@torch.no_grad()
def run_original_heads(
    model: nn.Module, pixel_values: torch.Tensor, input_ids: torch.Tensor, text_padding_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The original's inference intermediates for a batch, as ``MIXGrefUniModel.forward_test`` computes them
    before post-processing: BEiT-3 ``cls`` / ``image_tokens`` / ``text_tokens``, the head's ``pred_mask``,
    ``pred_global_mask``, ``pred_class``, ``pred_bbox``, ``nt_label`` and its extras (``img_selected_points``,
    ``attn_map_query``, ``attn_map``). ``text_padding_mask`` is True (1) at padding; it is passed on as int64,
    the dtype of the original's ``text_attention_mask``."""
    text_padding_mask = text_padding_mask.long()
    batch, _, height, width = pixel_values.shape
    patch = model.patch_size
    image, text, cls = model.vis_enc(pixel_values, input_ids, text_padding_mask)
    feature_map = image.transpose(-1, -2).reshape(batch, -1, height // patch, width // patch)
    predictions, extras = model.head.forward_test(feature_map, cls, text, text_padding_mask, pixel_values)
    return {"cls": cls, "image_tokens": image, "text_tokens": text, **predictions, **extras}


@torch.no_grad()
def randomise_(model: nn.Module, seed: int = 0, scale: float = 0.5) -> nn.Module:
    """Make every weight random and distinct, in place: add ``scale * N(0, 1) * (std of the tensor, or 1)`` to
    every (deduplicated) parameter, so that zero-initialised weights and LayerNorm 1/0 affines are perturbed,
    and give BatchNorm running statistics random values (variance > 0). Shared modules stay shared."""
    generator = torch.Generator().manual_seed(seed)
    for _, parameter in model.named_parameters():
        noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32).to(parameter.dtype)
        spread = parameter.float().std().item() if parameter.numel() > 1 else 0.0
        parameter.add_(noise * scale * (spread if spread > 0 else 1.0))
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))
    return model


def save_official_checkpoint(
    model: nn.Module, path: str | os.PathLike, module_prefix: bool = False, epoch: int = 0
) -> None:
    """Save ``{"state_dict": ..., "epoch": ...}`` as InstanceVG's training script does; ``module_prefix`` adds
    the ``module.`` prefix of checkpoints saved under DistributedDataParallel."""
    state = {(f"module.{key}" if module_prefix else key): value for key, value in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": epoch}, path)


def load_official_checkpoint(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load an official-format checkpoint on CPU, strictly (the original's ``load_checkpoint`` needs CUDA)."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    if next(iter(state)).startswith("module."):
        state = {key[len("module.") :]: value for key, value in state.items()}
    model.load_state_dict(state, strict=True)
    return model


def main(argv: list[str] | None = None) -> None:
    """Command line: build a config's original model, randomise it and save an official-format checkpoint."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", help="path of the InstanceVG checkout")
    parser.add_argument("--config", default="configs/gres/InstanceVG-grefcoco.py")
    parser.add_argument("--output", required=True, help="where to write the .pth checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--module-prefix", action="store_true", help="prefix keys with 'module.' as under DDP"
    )
    parser.add_argument(
        "--reduced",
        action="store_true",
        help="small sizes (BEiT-3 2 layers x 64, 4 heads, FFN 128; head width 32; 128x128 images; vocab 1000)",
    )
    args = parser.parse_args(argv)
    overrides, sizes, width = None, None, None
    if args.reduced:
        overrides = {
            "model.vis_enc.img_size": 128,
            "model.vis_enc.vocab_size": 1000,
            "model.head.input_channels": 64,
            "model.head.hidden_channels": 32,
        }
        sizes = dict(embed_dim=64, num_layers=2, num_heads=4, ffn_dim=128)
        width = 32
    model = build_original_model(args.checkout, args.config, overrides, beit3_sizes=sizes, head_width=width)
    randomise_(model, seed=args.seed)
    save_official_checkpoint(model, args.output, module_prefix=args.module_prefix)
    reloaded = load_official_checkpoint(
        build_original_model(args.checkout, args.config, overrides, beit3_sizes=sizes, head_width=width),
        args.output,
    )
    count = sum(p.numel() for p in reloaded.parameters())
    print(
        f"wrote {args.output}: {len(model.state_dict())} keys, {count:,} unique parameters (reloaded strictly)"
    )


if __name__ == "__main__":
    main()
