"""Benchmark: paper-config presence & plurality model vs transformers' Mask2Former (Swin-B), CPU inference.

Both models are built from their configs with random weights (no download): the presence & plurality model
with ``PresencePluralityConfig()`` (language-aware Swin-B, BERT-base, 6-layer pixel decoder, target query,
mask MLP at the input resolution) and ``Mask2FormerForUniversalSegmentation`` with the same Swin-B backbone
config, as in ``instalign_vs_mask2former.py`` (whose timing and memory helpers this script reuses). Inputs are
one 480x480 image (a square image: the letterbox adds no padding) and a ``--text-length``-token expression.
Timed runs alternate between the two models in one process. Prints one JSON document with, per model:
parameter count (and the Swin backbone's), median / min latency (ms), peak-RSS growth during one forward (MB)
and the median time of the main components; plus the latency ratio and whether the target (<= 0.8) is met.

    python benchmarks/presence_plurality_vs_mask2former.py [--threads 2] [--repeats 5] [--image-size 480]
    python benchmarks/presence_plurality_vs_mask2former.py --mask-head-at-stride-4   # the cheaper mask head
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from instalign_vs_mask2former import TARGET_RATIO, ComponentTimer, build_mask2former, peak_rss_growth_mb


def build_presence_plurality(preset: str, image_size: int, full_resolution: bool):
    from refseg.models.presence_plurality import (
        PresencePluralityConfig,
        PresencePluralityForReferringSegmentation,
    )

    config = PresencePluralityConfig.preset(
        preset, image_size=image_size, mask_head_at_full_resolution=full_resolution
    )
    model = PresencePluralityForReferringSegmentation(config).eval()
    inner = model.model
    timer = ComponentTimer(
        {
            "language_aware_backbone": inner.backbone,
            "text_encoder": inner.text_encoder,
            "pixel_decoder": inner.pixel_decoder,
            "target_query": model.target_query,
            "mask_head": model.mask_head,
        }
    )
    return model, timer, config


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
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import transformers

    from refseg.kernels import implementation

    ours, ours_timer, config = build_presence_plurality(
        args.preset, args.image_size, not args.mask_head_at_stride_4
    )
    mask2former, mask2former_timer, _ = build_mask2former(config.backbone_config)

    pixel_values = torch.randn(1, 3, args.image_size, args.image_size)
    pixel_mask = torch.ones(1, args.image_size, args.image_size, dtype=torch.long)
    vocab = config.text_config.vocab_size
    input_ids = torch.randint(1000 if vocab > 2000 else 3, vocab, (1, args.text_length))
    attention_mask = torch.ones_like(input_ids)

    def run_ours():
        with torch.inference_mode():
            ours(
                pixel_values=pixel_values,
                input_ids=input_ids,
                attention_mask=attention_mask,
                pixel_mask=pixel_mask,
            )

    def run_mask2former():
        with torch.inference_mode():
            mask2former(pixel_values=pixel_values)

    runners = {
        "presence_plurality": (run_ours, ours_timer),
        "mask2former": (run_mask2former, mask2former_timer),
    }
    results = {}
    for name, (run, _) in runners.items():
        run()  # warm-up
        results[name] = {"peak_rss_growth_mb": peak_rss_growth_mb(run), "latencies_ms": []}
    for _ in range(args.repeats):
        for name, (run, timer) in runners.items():
            timer.enabled = True
            start = time.perf_counter()
            run()
            results[name]["latencies_ms"].append(round((time.perf_counter() - start) * 1000, 1))
            timer.enabled = False

    backbones = {
        "presence_plurality": ours.model.backbone.model,
        "mask2former": mask2former.model.pixel_level_module.encoder,
    }
    for name, model in (("presence_plurality", ours), ("mask2former", mask2former)):
        entry = results[name]
        entry["parameters"] = sum(p.numel() for p in model.parameters())
        entry["swin_parameters"] = sum(p.numel() for p in backbones[name].parameters())
        entry["latency_ms_median"] = round(statistics.median(entry["latencies_ms"]), 1)
        entry["latency_ms_min"] = min(entry["latencies_ms"])
        entry["components_ms_median"] = runners[name][1].medians()
    results["presence_plurality"]["fusion_parameters"] = sum(
        p.numel() for n, p in ours.model.backbone.named_parameters() if not n.startswith("model.")
    )
    ratio = results["presence_plurality"]["latency_ms_median"] / results["mask2former"]["latency_ms_median"]
    report = {
        "benchmark": "presence_plurality_vs_mask2former",
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "preset": args.preset,
        "image_size": args.image_size,
        "text_length": args.text_length,
        "mask_head_at_full_resolution": config.mask_head_at_full_resolution,
        "msda": implementation(torch.device("cpu")),
        "presence_plurality": results["presence_plurality"],
        "mask2former": results["mask2former"],
        "latency_ratio_presence_plurality_over_mask2former": round(ratio, 3),
        "latency_ratio_of_minima": round(
            results["presence_plurality"]["latency_ms_min"] / results["mask2former"]["latency_ms_min"], 3
        ),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
