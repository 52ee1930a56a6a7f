"""Benchmark: paper-config METRIS MACs at 480x480, and CPU latency side by side with transformers' Mask2Former.

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass (FLOPs / 2; matmuls,
convolutions and attention are counted, element-wise ops are not, as in the usual MAC counters) of
``MetrisConfig()``: Swin-B with pixel-word attention, BERT-base, 20 tokens, decoder width 768. The paper
reports 432 G (Table 2). transformers' fast path of ``nn.MultiheadAttention`` is switched off while counting
(its fused kernel is invisible to the counter); the result of the forward pass is the same. Variants:
``encoder_fusion="none"`` and a 512-wide decoder show where the MACs go.

The latency part builds METRIS and ``Mask2FormerForUniversalSegmentation`` with the same Swin-B backbone config
(random weights, no download) and alternates timed forwards of the two in one process (2 threads by default),
reusing the timing helpers of ``benchmarks/instalign_vs_mask2former.py``. Peak memory is measured for each model
in a fresh subprocess (``peak_memory.py``: RSS after building the model, peak RSS during its first forward):
in the timing process the allocator reuses the pages freed by earlier forwards, so the RSS does not grow there.
Prints one JSON document.

    python benchmarks/metris_macs.py [--threads 2] [--repeats 5] [--image-size 480] [--skip-latency]
    python benchmarks/metris_macs.py --skip-variants --skip-memory   # paper config only, no memory subprocesses
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instalign_vs_mask2former import build_mask2former  # noqa: E402
from peak_memory import forward_peak_rss, peak_rss_per_model  # noqa: E402
from timing import ComponentTimer, latency_ratios, time_runners  # noqa: E402

MODELS = ("metris", "mask2former")

PAPER_MACS_G = 432.0
COMPONENTS = {
    "backbone": "model.backbone",
    "text_encoder": "model.text_encoder",
    "vision_projection": "model.vision_projection",
    "enhancer": "model.enhancer",
    "visual_expression_extractor": "model.visual_expression_extractor",
    "decoder": "model.decoder",
    "mask_head": "mask_head",
}


def build_metris(image_size: int, preset: str = "paper", **overrides):
    """METRIS of ``preset`` (the paper's by default) in eval mode, and its config."""
    from refseg.models.metris import MetrisConfig, MetrisForReferringSegmentation

    config = MetrisConfig.preset(preset, image_size=image_size, **overrides)
    return MetrisForReferringSegmentation(config).eval(), config


def inputs(image_size: int, text_length: int, vocab_size: int = 30522):
    """One image and a ``text_length``-token sentence (``[CLS] ... [SEP]`` for BERT's vocabulary)."""
    pixel_values = torch.randn(1, 3, image_size, image_size)
    low, high = (1000, 2000) if vocab_size > 2000 else (3, vocab_size)
    input_ids = torch.randint(low, high, (1, text_length))
    if vocab_size > 2000:
        input_ids[0, 0], input_ids[0, -1] = 101, 102  # BERT's [CLS] ... [SEP]
    return pixel_values, input_ids, torch.ones_like(input_ids)


def runner(name: str, model, pixel_values, input_ids, attention_mask):
    """A no-argument inference forward of ``model`` (Mask2Former reads the image only)."""
    kwargs = {"pixel_values": pixel_values}
    if name == "metris":
        kwargs.update(input_ids=input_ids, attention_mask=attention_mask)

    def run():
        with torch.inference_mode():
            model(**kwargs)

    return run


def memory_child(args: argparse.Namespace) -> dict:
    """In a fresh subprocess: build one model, then measure the RSS before and the peak during one forward."""
    from refseg.models.metris import MetrisConfig

    config = MetrisConfig.preset(args.preset, image_size=args.image_size)
    if args.memory_child == "metris":
        model, _ = build_metris(args.image_size, args.preset)
    else:
        model, _, _ = build_mask2former(config.backbone_config)
    vocab = config.text_config.vocab_size
    run = runner(args.memory_child, model, *inputs(args.image_size, args.text_length, vocab))
    return {"model": args.memory_child, **forward_peak_rss(run)}


def count_macs(model, pixel_values, input_ids, attention_mask) -> dict:
    """Total and per-component GMACs of one forward pass."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    by_module = counter.get_flop_counts()
    total = counter.get_total_flops() / 2e9
    prefix = type(model).__name__
    components = {}
    for name, path in COMPONENTS.items():
        counts = by_module.get(f"{prefix}.{path}")
        if counts is not None:
            components[name] = round(sum(counts.values()) / 2e9, 2)
    return {"total_gmacs": round(total, 2), "components_gmacs": components}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model (after one warm-up)")
    parser.add_argument("--image-size", type=int, default=480)
    parser.add_argument("--text-length", type=int, default=20)
    parser.add_argument("--skip-latency", action="store_true", help="count MACs only")
    parser.add_argument("--skip-variants", action="store_true", help="count the paper config only")
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--preset", default="paper", help="config preset (paper; tiny for a smoke test)")
    parser.add_argument(
        "--memory-child", choices=MODELS, help=argparse.SUPPRESS
    )  # internal: one model's memory
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return
    memory = {}
    if not (args.skip_latency or args.skip_memory):  # first, so that the children have the RAM to themselves
        memory = peak_rss_per_model(__file__, None, MODELS)
    import transformers

    metris, config = build_metris(args.image_size, args.preset)
    pixel_values, input_ids, attention_mask = inputs(
        args.image_size, args.text_length, config.text_config.vocab_size
    )
    report: dict = {
        "benchmark": "metris_macs",
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "preset": args.preset,
        "image_size": args.image_size,
        "text_length": args.text_length,
        "paper_macs_g": PAPER_MACS_G,
        "metris": {"parameters": sum(p.numel() for p in metris.parameters())},
    }
    report["metris"].update(count_macs(metris, pixel_values, input_ids, attention_mask))
    report["metris"]["macs_over_paper"] = round(report["metris"]["total_gmacs"] / PAPER_MACS_G, 3)
    if not args.skip_variants:
        report["variants"] = {}
        for name, overrides in (
            ("encoder_fusion_none", {"encoder_fusion": "none"}),
            ("decoder_512", {"decoder_hidden_dim": 512}),
        ):
            variant, _ = build_metris(args.image_size, args.preset, **overrides)
            report["variants"][name] = {
                "parameters": sum(p.numel() for p in variant.parameters()),
                **count_macs(variant, pixel_values, input_ids, attention_mask),
            }
            del variant

    if not args.skip_latency:
        mask2former, mask2former_timer, _ = build_mask2former(config.backbone_config)
        metris_timer = ComponentTimer({name: metris.get_submodule(path) for name, path in COMPONENTS.items()})

        models = {"metris": (metris, metris_timer), "mask2former": (mask2former, mask2former_timer)}
        runners = {
            name: (runner(name, model, pixel_values, input_ids, attention_mask), timer)
            for name, (model, timer) in models.items()
        }
        load_start = os.getloadavg()
        results = time_runners(runners, args.repeats)
        for name, model in (("metris", metris), ("mask2former", mask2former)):
            if memory:
                results[name]["memory"] = memory[name]
            results[name]["parameters"] = sum(p.numel() for p in model.parameters())
        report["latency"] = results
        report["load_average_1_5_15_min"] = {"start": load_start, "end": os.getloadavg()}
        report.update(latency_ratios(results, "metris", "mask2former"))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
