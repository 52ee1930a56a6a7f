"""Benchmark: ReLA (released Swin-B configuration) vs transformers' Mask2Former (Swin-B), CPU inference.

Both models are built from their configs with random weights (no download): ReLA with
``RelaConfig.preset("swin-base")`` (language-aware Swin-B, window 12, BERT-base, 6-layer deformable pixel
decoder, 9 ReLA layers, 100 region queries) and ``Mask2FormerForUniversalSegmentation`` with the same Swin-B
backbone config, as in ``instalign_vs_mask2former.py`` (whose builder, timing and memory helpers this script
reuses). Inputs are one 480x480 image (ReLA's processor resizes every image to that square) and a
``--text-length``-token expression (ReLA's processor always pads to 20). Timed runs alternate between the two
models in one process. MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one forward of
each model (FLOPs / 2; matmuls, convolutions and attention, as ``metris_macs.py`` counts; the fused fast path
of ``nn.MultiheadAttention`` is switched off while counting). Peak memory is measured for each model in a
fresh subprocess (``peak_memory.py``). Prints one JSON document.

    python benchmarks/rela_vs_mask2former.py [--threads 2] [--repeats 5] [--preset swin-base]
    python benchmarks/rela_vs_mask2former.py --preset tiny --image-size 64 --repeats 1 --skip-memory  # smoke test
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

MODELS = ("rela", "mask2former")
# component -> attribute path of the task model, for the per-component MACs
COMPONENTS = {
    "rela": {
        "text_encoder": "model.text_encoder",
        "language_aware_backbone": "model.backbone",
        "pixel_decoder": "model.pixel_decoder",
        "rela_decoder": "decoder",
    },
    "mask2former": {
        "backbone": "model.pixel_level_module.encoder",
        "pixel_decoder": "model.pixel_level_module.decoder",
        "transformer_decoder": "model.transformer_module",
    },
}


def rela_config(preset: str, image_size: int):
    from refseg.models.rela import RelaConfig

    return RelaConfig.preset(preset, image_size=image_size)


def build_rela(preset: str, image_size: int):
    """The model in eval mode, a component timer on it, and its config."""
    from refseg.models.rela import RelaForReferringSegmentation

    config = rela_config(preset, image_size)
    model = RelaForReferringSegmentation(config).eval()
    timer = ComponentTimer(
        {
            "text_encoder": model.model.text_encoder,
            "language_aware_backbone": model.model.backbone,
            "pixel_decoder": model.model.pixel_decoder,
            "rela_decoder": model.decoder,
        }
    )
    return model, timer, config


def make_inputs(config, image_size: int, text_length: int) -> dict:
    vocab = config.text_config.vocab_size
    input_ids = torch.randint(1000 if vocab > 2000 else 3, vocab, (1, text_length))
    return {
        "pixel_values": torch.randn(1, 3, image_size, image_size),
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
    }


def runner(name: str, model, inputs: dict):
    """A no-argument inference forward of ``model`` (Mask2Former reads the image only)."""
    kwargs = inputs if name == "rela" else {"pixel_values": inputs["pixel_values"]}

    def run():
        with torch.inference_mode():
            model(**kwargs)

    return run


def count_macs(name: str, model, inputs: dict) -> dict:
    """Total and per-component GMACs of one inference forward."""
    kwargs = inputs if name == "rela" else {"pixel_values": inputs["pixel_values"]}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    model.requires_grad_(False)
    try:
        counter = FlopCounterMode(display=False)
        # the counter's module tracker hooks every module input that requires grad; the region queries are
        # parameters (inputs of the heads), so the parameters are frozen while counting
        with torch.inference_mode(), counter:
            model(**kwargs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    by_module = counter.get_flop_counts()
    prefix = type(model).__name__
    components = {}
    for component, path in COMPONENTS[name].items():
        counts = by_module.get(f"{prefix}.{path}")
        if counts is not None:
            components[component] = round(sum(counts.values()) / 2e9, 2)
    return {"total_gmacs": round(counter.get_total_flops() / 2e9, 2), "components_gmacs": components}


def memory_child(args: argparse.Namespace) -> dict:
    """In a fresh subprocess: build one model, then measure the RSS before and the peak during one forward."""
    config = rela_config(args.preset, args.image_size)
    if args.memory_child == "rela":
        model, _, _ = build_rela(args.preset, args.image_size)
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
    parser.add_argument(
        "--preset", default="swin-base", help="RelaConfig preset (swin-base; tiny for a smoke test)"
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--skip-macs", action="store_true", help="skip the MAC counts")
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

    rela, rela_timer, config = build_rela(args.preset, args.image_size)
    mask2former, mask2former_timer, _ = build_mask2former(config.backbone_config)
    inputs = make_inputs(config, args.image_size, args.text_length)
    models = {"rela": rela, "mask2former": mask2former}
    runners = {
        "rela": (runner("rela", rela, inputs), rela_timer),
        "mask2former": (runner("mask2former", mask2former, inputs), mask2former_timer),
    }
    load_start = os.getloadavg()
    results = time_runners(runners, args.repeats, alternate=True)
    load_end = os.getloadavg()

    backbones = {
        "rela": rela.model.backbone.model,
        "mask2former": mask2former.model.pixel_level_module.encoder,
    }
    for name, model in models.items():
        entry = results[name]
        if not args.skip_memory:
            entry["memory"] = memory[name]
        entry["parameters"] = sum(p.numel() for p in model.parameters())
        entry["swin_parameters"] = sum(p.numel() for p in backbones[name].parameters())
        if not args.skip_macs:
            entry.update(count_macs(name, model, inputs))
    results["rela"]["parameters_by_part"] = {
        "text_encoder": sum(p.numel() for p in rela.model.text_encoder.parameters()),
        "language_aware_backbone": sum(p.numel() for p in rela.model.backbone.parameters()),
        "pixel_decoder": sum(p.numel() for p in rela.model.pixel_decoder.parameters()),
        "rela_decoder": sum(p.numel() for p in rela.decoder.parameters()),
    }
    report = {
        "benchmark": "rela_vs_mask2former",
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "load_average_1_5_15_min": {"start": load_start, "end": load_end},
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "preset": args.preset,
        "image_size": args.image_size,
        "text_length": args.text_length,
        "msda": implementation(torch.device("cpu")),
        "rela": results["rela"],
        "mask2former": results["mask2former"],
        **latency_ratios(results, "rela", "mask2former"),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
