"""Benchmark: paper-config presence & plurality model vs transformers' Mask2Former (Swin-B), CPU inference.

Both models are built from their configs with random weights (no download): the presence & plurality model
with ``PresencePluralityConfig()`` (language-aware Swin-B, BERT-base, 6-layer pixel decoder, target query,
mask MLP at the input resolution) and ``Mask2FormerForUniversalSegmentation`` with the same Swin-B backbone
config, as in ``instalign_vs_mask2former.py`` (whose timing and memory helpers this script reuses). Inputs are
one 480x480 image (a square image: the letterbox adds no padding) and a ``--text-length``-token expression.
Timed runs alternate between the two models in one process. Peak memory is measured for each model in a
fresh subprocess (``peak_memory.py``: the RSS after building the model, and the peak RSS during its first
forward), because in the timing process the allocator reuses the pages freed by earlier forwards and the RSS
barely grows. Prints one JSON document with, per model: parameter count (and the Swin backbone's), median /
min latency (ms), the memory figures (MB) and the median time of the main components; plus the latency ratio
and whether the target (<= 0.8) is met.

    python benchmarks/presence_plurality_vs_mask2former.py [--threads 2] [--repeats 5] [--image-size 480]
    python benchmarks/presence_plurality_vs_mask2former.py --mask-head-at-stride-4   # the cheaper mask head
    python benchmarks/presence_plurality_vs_mask2former.py --skip-memory             # no memory subprocesses
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from instalign_vs_mask2former import TARGET_RATIO, build_mask2former
from peak_memory import forward_peak_rss, peak_rss_per_model
from timing import ComponentTimer, latency_ratios, time_runners

MODELS = ("presence_plurality", "mask2former")


def presence_plurality_config(preset: str, image_size: int, full_resolution: bool):
    """The benchmarked configuration (``preset`` with the given canvas size and mask head)."""
    from refseg.models.presence_plurality import PresencePluralityConfig

    return PresencePluralityConfig.preset(
        preset, image_size=image_size, mask_head_at_full_resolution=full_resolution
    )


def build_presence_plurality(preset: str, image_size: int, full_resolution: bool):
    """The model in eval mode, a component timer on it, and its config."""
    from refseg.models.presence_plurality import PresencePluralityForReferringSegmentation

    config = presence_plurality_config(preset, image_size, full_resolution)
    model = PresencePluralityForReferringSegmentation(config).eval()
    inner = model.model
    timer = ComponentTimer(
        {
            "language_aware_backbone": inner.backbone,
            "text_encoder": inner.text_encoder,
            "pixel_decoder": inner.pixel_decoder,
            "target_query": model.target_query,
        }
    )
    mask_logits = model.mask_logits

    def timed_mask_logits(*args, **kwargs):  # the whole head: MLP and upsampling, in either order
        start = time.perf_counter()
        logits = mask_logits(*args, **kwargs)
        if timer.enabled:
            timer.times["mask_head"].append((time.perf_counter() - start) * 1000)
        return logits

    model.mask_logits = timed_mask_logits
    return model, timer, config


def make_inputs(config, image_size: int, text_length: int) -> dict:
    """One square image (the letterbox adds no padding) and a ``text_length``-token sentence."""
    vocab = config.text_config.vocab_size
    input_ids = torch.randint(1000 if vocab > 2000 else 3, vocab, (1, text_length))
    return {
        "pixel_values": torch.randn(1, 3, image_size, image_size),
        "pixel_mask": torch.ones(1, image_size, image_size, dtype=torch.long),
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
    }


def runner(name: str, model, inputs: dict):
    """A no-argument inference forward of ``model`` (Mask2Former reads the image only)."""
    kwargs = inputs if name == "presence_plurality" else {"pixel_values": inputs["pixel_values"]}

    def run():
        with torch.inference_mode():
            model(**kwargs)

    return run


def memory_child(args: argparse.Namespace) -> dict:
    """In a fresh subprocess: build one model, then measure the RSS before and the peak during one forward."""
    config = presence_plurality_config(args.preset, args.image_size, not args.mask_head_at_stride_4)
    if args.memory_child == "presence_plurality":
        model, _, _ = build_presence_plurality(args.preset, args.image_size, not args.mask_head_at_stride_4)
    else:
        model, _, _ = build_mask2former(config.backbone_config)
    run = runner(args.memory_child, model, make_inputs(config, args.image_size, args.text_length))
    return {"model": args.memory_child, **forward_peak_rss(run)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model (after one warm-up)")
    parser.add_argument("--image-size", type=int, default=480)
    parser.add_argument("--text-length", type=int, default=20)
    parser.add_argument("--preset", default="paper", help="config preset (paper; tiny for a smoke test)")
    parser.add_argument(
        "--mask-head-at-stride-4",
        action="store_true",
        help="mask_head_at_full_resolution=False: MLP at stride 4, then upsample the logits",
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument(
        "--memory-child", choices=MODELS, help=argparse.SUPPRESS
    )  # internal: one model's memory
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.memory_child:
        report = memory_child(args)
        print(json.dumps(report))
        return report
    memory = {}
    if (
        not args.skip_memory
    ):  # before building the models here, so that the children have the RAM to themselves
        memory = peak_rss_per_model(__file__, argv, MODELS)

    import transformers

    from refseg.kernels import implementation

    ours, ours_timer, config = build_presence_plurality(
        args.preset, args.image_size, not args.mask_head_at_stride_4
    )
    mask2former, mask2former_timer, _ = build_mask2former(config.backbone_config)
    inputs = make_inputs(config, args.image_size, args.text_length)
    runners = {
        "presence_plurality": (runner("presence_plurality", ours, inputs), ours_timer),
        "mask2former": (runner("mask2former", mask2former, inputs), mask2former_timer),
    }
    load_start = os.getloadavg()
    results = time_runners(runners, args.repeats)

    backbones = {
        "presence_plurality": ours.model.backbone.model,
        "mask2former": mask2former.model.pixel_level_module.encoder,
    }
    for name, model in (("presence_plurality", ours), ("mask2former", mask2former)):
        entry = results[name]
        if not args.skip_memory:
            entry["memory"] = memory[name]
        entry["parameters"] = sum(p.numel() for p in model.parameters())
        entry["swin_parameters"] = sum(p.numel() for p in backbones[name].parameters())
    results["presence_plurality"]["fusion_parameters"] = sum(
        p.numel() for n, p in ours.model.backbone.named_parameters() if not n.startswith("model.")
    )
    ratio = results["presence_plurality"]["latency_ms_median"] / results["mask2former"]["latency_ms_median"]
    report = {
        "benchmark": "presence_plurality_vs_mask2former",
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "load_average_1_5_15_min": {"start": load_start, "end": os.getloadavg()},
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "preset": args.preset,
        "image_size": args.image_size,
        "text_length": args.text_length,
        "mask_head_at_full_resolution": config.mask_head_at_full_resolution,
        "msda": implementation(torch.device("cpu")),
        "presence_plurality": results["presence_plurality"],
        "mask2former": results["mask2former"],
        **latency_ratios(results, "presence_plurality", "mask2former"),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
