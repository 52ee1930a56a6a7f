"""Benchmark: paper-config InstAlign vs transformers' Mask2Former (Swin-B), CPU inference, side by side.

Both models are built from their configs with random weights (no download): InstAlign with
``InstAlignConfig()`` (Swin-B, RoBERTa-base, 6-layer pixel decoder, N=100, K=9) and
``Mask2FormerForUniversalSegmentation`` with the same Swin-B backbone config (its pixel decoder uses
transformers' ``grid_sample`` deformable attention; ours uses ``refseg.kernels``). Inputs are one
480x480 image and, for InstAlign, a ``--text-length``-token expression. Timed runs alternate between the two
models in one process so that both see the same machine load. Prints one JSON document with, per model:
parameter count, median / min latency (ms), the RSS after building and the peak RSS during the first forward,
each model measured in a fresh subprocess (``peak_memory.py``), and the median time of the main components (forward hooks); plus the latency ratio
and whether InstAlign meets the target ratio (<= 0.8).

    python benchmarks/instalign_vs_mask2former.py [--threads 2] [--repeats 5] [--image-size 480] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
from peak_memory import forward_peak_rss, peak_rss_per_model
from timing import ComponentTimer, latency_ratios, time_runners

TARGET_RATIO = 0.8
MODELS = ("instalign", "mask2former")


def build_instalign(image_size: int):
    from refseg.models.instalign.configuration_instalign import InstAlignConfig
    from refseg.models.instalign.modeling_instalign import InstAlignForReferringSegmentation

    config = InstAlignConfig(image_size=image_size)
    model = InstAlignForReferringSegmentation(config).eval()
    inner = model.model
    timer = ComponentTimer(
        {
            "backbone": inner.backbone,
            "text_encoder": inner.text_encoder,
            "pixel_decoder": inner.pixel_decoder,
            "phrase_object_transformer": inner.phrase_object_transformer,
        }
    )
    return model, timer, config


def build_mask2former(backbone_config):
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    config = Mask2FormerConfig(backbone_config=backbone_config.to_dict())
    model = Mask2FormerForUniversalSegmentation(config).eval()
    inner = model.model
    timer = ComponentTimer(
        {
            "backbone": inner.pixel_level_module.encoder,
            "pixel_decoder": inner.pixel_level_module.decoder,
            "transformer_decoder": inner.transformer_module,
        }
    )
    return model, timer, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model (after one warm-up)")
    parser.add_argument("--image-size", type=int, default=480)
    parser.add_argument("--text-length", type=int, default=20)
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument(
        "--memory-child", choices=MODELS, help=argparse.SUPPRESS
    )  # internal: one model's memory
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    memory = {}
    if args.memory_child is None and not args.skip_memory:
        # before building the models here, so that each child has the RAM to itself
        memory = peak_rss_per_model(__file__, None, MODELS)
    import transformers

    from refseg.kernels import implementation

    if args.memory_child == "mask2former":  # the child builds only the model it measures
        from refseg.models.instalign.configuration_instalign import InstAlignConfig

        instalign, instalign_config = None, InstAlignConfig(image_size=args.image_size)
    else:
        instalign, instalign_timer, instalign_config = build_instalign(args.image_size)
    if args.memory_child != "instalign":
        mask2former, mask2former_timer, _ = build_mask2former(instalign_config.backbone_config)

    pixel_values = torch.randn(1, 3, args.image_size, args.image_size)
    input_ids = torch.randint(3, 1000, (1, args.text_length))
    input_ids[0, 0], input_ids[0, -1] = 0, 2
    attention_mask = torch.ones_like(input_ids)

    def run_instalign():
        with torch.inference_mode():
            instalign(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask)

    def run_mask2former():
        with torch.inference_mode():
            mask2former(pixel_values=pixel_values)

    if args.memory_child is not None:  # in the fresh subprocess: one model's first forward
        run = run_instalign if args.memory_child == "instalign" else run_mask2former
        print(json.dumps({"model": args.memory_child, **forward_peak_rss(run)}))
        return

    runners = {
        "instalign": (run_instalign, instalign_timer),
        "mask2former": (run_mask2former, mask2former_timer),
    }
    results = time_runners(runners, args.repeats)
    for name, model in (("instalign", instalign), ("mask2former", mask2former)):
        results[name]["memory"] = memory.get(name, "skipped (--skip-memory)")
        results[name]["parameters"] = sum(p.numel() for p in model.parameters())
    ratio = results["instalign"]["latency_ms_median"] / results["mask2former"]["latency_ms_median"]
    report = {
        "benchmark": "instalign_vs_mask2former",
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "image_size": args.image_size,
        "text_length": args.text_length,
        "instalign_msda": implementation(torch.device("cpu")),
        "instalign": results["instalign"],
        "mask2former": results["mask2former"],
        **latency_ratios(results, "instalign", "mask2former"),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
