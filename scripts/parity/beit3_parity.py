"""Parity of refseg's ``Beit3Encoder`` with the ORIGINAL InstanceVG / torchscale BEiT-3, on random weights.

Builds InstanceVG's BEiT-3 encoder (``vis_enc``: torchscale ``BEiT3`` under InstanceVG's wrapper) from a checkout
whose path you give, randomises every weight, runs it on a batch with different amounts of right padding,
maps the weights into ``refseg.modeling.beit3.Beit3Encoder`` with ``beit3_state_dict_from_original`` and
compares the CLS, image and text outputs. With ``--write-fixture`` the reduced-size run is saved to
``tests/fixtures/beit3/beit3_parity.safetensors`` (weights under their original names, inputs and the original's
outputs; ~200 KB), which ``tests/modeling/beit3/test_model.py`` checks without the original.

Run (environment: see the docstring of ``instancevg_original.py``; from the repository root)::

    PYTHONPATH=src /work/parity-venv/bin/python scripts/parity/beit3_parity.py /path/to/InstanceVG \\
        [--write-fixture] [--full]

``--full`` also compares BEiT-3 base at 320x320 (12 layers, 768 wide, text 50) in float32 and bfloat16.
Prints one JSON object with the maximum absolute differences.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from instancevg_original import build_original_beit3, randomise_  # noqa: E402

from refseg.modeling.beit3 import (
    Beit3Config,  # noqa: E402
    Beit3Encoder,  # noqa: E402
)
from refseg.modeling.beit3.pretrained import beit3_state_dict_from_original  # noqa: E402

FIXTURE = os.path.join("tests", "fixtures", "beit3", "beit3_parity.safetensors")
REDUCED = dict(
    image_size=32,
    patch_size=8,
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_text_positions=16,
)
BASE = dict(
    image_size=320,
    patch_size=16,
    vocab_size=64010,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_text_positions=1024,
)


def build_pair(checkout: str, sizes: dict, seed: int) -> tuple[torch.nn.Module, Beit3Encoder]:
    """The original encoder with random weights, and a ``Beit3Encoder`` holding the same weights."""
    original = build_original_beit3(
        checkout,
        img_size=sizes["image_size"],
        patch_size=sizes["patch_size"],
        vocab_size=sizes["vocab_size"],
        embed_dim=sizes["hidden_size"],
        num_layers=sizes["num_hidden_layers"],
        num_heads=sizes["num_attention_heads"],
        ffn_dim=sizes["intermediate_size"],
        max_text_positions=sizes["max_text_positions"],
    )
    randomise_(original, seed=seed)
    ours = Beit3Encoder(Beit3Config(drop_path_rate=0.0, **sizes)).eval()
    ours.load_state_dict(beit3_state_dict_from_original(original.state_dict(), "beit3."), strict=True)
    return original, ours


def make_inputs(sizes: dict, batch_lengths: list[int], length: int, seed: int) -> dict[str, torch.Tensor]:
    """Random images and ids; sample ``i`` has ``batch_lengths[i]`` valid tokens, then padding (id 1)."""
    generator = torch.Generator().manual_seed(seed)
    batch = len(batch_lengths)
    pixels = torch.randn(batch, 3, sizes["image_size"], sizes["image_size"], generator=generator)
    ids = torch.randint(3, sizes["vocab_size"], (batch, length), generator=generator)
    padding = torch.arange(length)[None, :] >= torch.tensor(batch_lengths)[:, None]
    ids[:, 0] = 0
    ids = ids.masked_fill(padding, 1)
    return {"pixel_values": pixels, "input_ids": ids, "text_padding_mask": padding}


@torch.no_grad()
def compare(original, ours, inputs: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> dict:
    """Run both encoders and return their outputs' maximum absolute differences (valid text tokens only for
    ``text_tokens``; ``text_tokens_padded`` covers the padded positions too)."""
    if dtype != torch.float32:  # cast copies: rounding the weights in place would change later runs
        original, ours = copy.deepcopy(original).to(dtype), copy.deepcopy(ours).to(dtype)
    pixels = inputs["pixel_values"].to(dtype)
    image, text, cls = original(pixels, inputs["input_ids"], inputs["text_padding_mask"])
    out = ours(pixels, inputs["input_ids"], inputs["text_padding_mask"])
    valid = ~inputs["text_padding_mask"]
    result = {
        "cls_token": (out.cls_token - cls).abs().max().item(),
        "image_tokens": (out.image_tokens - image).abs().max().item(),
        "text_tokens": (out.text_tokens - text)[valid].abs().max().item(),
        "text_tokens_padded": (out.text_tokens - text).abs().max().item(),
        "output_scale": image.abs().max().item(),
    }
    return result, {"cls_token": cls, "image_tokens": image, "text_tokens": text}


def write_fixture(path: str, original, inputs: dict, outputs: dict, sizes: dict) -> None:
    """Save weights (original names, prefix ``weights.``), inputs and the original's outputs as safetensors."""
    from safetensors.torch import save_file

    tensors = {f"weights.{key}": value.contiguous() for key, value in original.state_dict().items()}
    tensors.update({f"inputs.{key}": value.contiguous() for key, value in inputs.items()})
    tensors.update({f"outputs.{key}": value.contiguous() for key, value in outputs.items()})
    metadata = {
        "config": json.dumps(dict(sizes, drop_path_rate=0.0)),
        "weights_prefix": "weights.beit3.",
        "source": "InstanceVG commit 49fd8fa (vis_enc = torchscale 0.3.0 BEiT3), random weights",
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(tensors, path, metadata=metadata)


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="BEiT-3 parity with the original InstanceVG encoder")
    parser.add_argument("checkout", help="path of the InstanceVG checkout")
    parser.add_argument("--write-fixture", action="store_true", help=f"write {FIXTURE}")
    parser.add_argument("--full", action="store_true", help="also compare BEiT-3 base at 320x320")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    report = {}

    original, ours = build_pair(args.checkout, REDUCED, args.seed)
    inputs = make_inputs(REDUCED, batch_lengths=[8, 5, 2], length=8, seed=args.seed + 1)
    report["reduced_float32"], outputs = compare(original, ours, inputs)
    report["reduced_bfloat16"], _ = compare(original, ours, inputs, torch.bfloat16)
    if args.write_fixture:
        write_fixture(FIXTURE, original, inputs, outputs, REDUCED)
        report["fixture"] = {"path": FIXTURE, "bytes": os.path.getsize(FIXTURE)}

    if args.full:
        original, ours = build_pair(args.checkout, BASE, args.seed)
        inputs = make_inputs(BASE, batch_lengths=[50, 12], length=50, seed=args.seed + 1)
        report["base_320_float32"], _ = compare(original, ours, inputs)
        report["base_320_bfloat16"], _ = compare(original, ours, inputs, torch.bfloat16)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
