"""Benchmark: refseg's InstanceVG vs the original implementation, CPU inference, side by side in one run.

With ``--original CHECKOUT`` (a checkout of https://github.com/Dmmm1997/InstanceVG and the parity virtualenv,
see ``scripts/parity/instancevg_original.py``), the original gRefCOCO model is built on CPU through the parity
harness, every weight is randomised (``randomise_``), and its state dict is converted with refseg's converter
(``convert_state_dict`` / ``config_from_state_dict``), so both models hold the same weights; the benchmark checks
that they give the same mask logits before timing. Without ``--original`` only refseg's model is measured
(built from ``--preset`` with random weights).

What is timed: one network forward per run, batch 1, the preset's image size (320 for the released models) and an expression
of ``--valid-tokens`` tokens (BOS ... EOS) right-padded to the preset's ``max_text_length`` (50 for gRefCOCO), as
the original's data pipeline pads (refseg's encoder does not encode the columns after the longest sentence,
its processor would not pad them in the first place). refseg: ``InstanceVGForReferringSegmentation(pixel_values, input_ids,
attention_mask)``; original: ``vis_enc`` + ``head.forward_test`` (``run_original_heads``), i.e. everything before
post-processing. After ``--warmup`` runs each, the timed runs alternate between the two models (the order
flips every round) so that both see the same machine load; the report gives medians, minima, the ratio of
medians and the median of per-round ratios, the load average before and after, the median time of the main
components (forward hooks) and, with ``--profile N``, the top-N operators by self CPU time (torch.profiler).
Peak memory is measured in a fresh subprocess per implementation: VmHWM (the peak RSS of the whole process) and
the peak RSS during the first forward (``peak_memory.py``: VmHWM reset through /proc/self/clear_refs plus
VmRSS sampling).

    PYTHONPATH=src /work/parity-venv/bin/python benchmarks/instancevg_vs_original.py --original /path/to/InstanceVG
    PYTHONPATH=src python benchmarks/instancevg_vs_original.py            # refseg only, b-grefcoco preset
    PYTHONPATH=src python benchmarks/instancevg_vs_original.py --preset tiny --repeats 2 --warmup 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

# refseg (and the transformers modules it registers with) must be imported before the parity harness installs
# its stub packages (a stub torchvision would confuse transformers' version checks)
from peak_memory import forward_peak_rss, status_kb
from timing import ComponentTimer, time_runners
from transformers.initialization import no_init_weights

from refseg.models.instancevg import InstanceVGConfig, InstanceVGForReferringSegmentation
from refseg.models.instancevg.convert_instancevg import config_from_state_dict, convert_state_dict

TARGET_RATIO = 0.7
GREFCOCO = "configs/gres/InstanceVG-grefcoco.py"
PARITY_DIR = Path(__file__).resolve().parent.parent / "scripts" / "parity"


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages of the machine (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries only the JSON report)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_inputs(image_size: int, max_length: int, valid_tokens: int, vocab_size: int, seed: int = 0):
    """A normalised image, token ids (BOS ... EOS, right padding with id 1) and the padding mask (1 = pad)."""
    if valid_tokens < 2:
        raise ValueError(f"--valid-tokens must be at least 2 (BOS and EOS), got {valid_tokens}")
    valid_tokens = min(valid_tokens, max_length)
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(1, 3, image_size, image_size, generator=generator)
    input_ids = torch.ones(1, max_length, dtype=torch.long)
    input_ids[0, :valid_tokens] = torch.randint(4, vocab_size, (valid_tokens,), generator=generator)
    input_ids[0, 0], input_ids[0, valid_tokens - 1] = 0, 2
    padding = torch.ones(1, max_length, dtype=torch.long)
    padding[0, :valid_tokens] = 0
    return pixel_values, input_ids, padding


def build_original(checkout: str, seed: int):
    """The original gRefCOCO model (eval), its weights randomised, through the parity harness."""
    sys.path.insert(0, str(PARITY_DIR))
    from instancevg_original import build_original_model, randomise_

    model = build_original_model(checkout, GREFCOCO)
    randomise_(model, seed=seed)
    return model.eval()


def refseg_from_original(original: torch.nn.Module):
    """refseg's model holding the original's weights, through refseg's checkpoint converter."""
    state = original.state_dict()
    with no_init_weights():  # every weight is loaded next; skipping the random init saves minutes on CPU
        model = InstanceVGForReferringSegmentation(config_from_state_dict(state))
    model.load_state_dict(convert_state_dict(state), strict=True)
    return model.eval()


def build_refseg(preset: str):
    """refseg's model from a preset (image size and text length as the preset's), random weights."""
    return InstanceVGForReferringSegmentation(InstanceVGConfig.preset(preset)).eval()


def refseg_runner(model, pixel_values, input_ids, padding, compile_mode: str = "off"):
    """A closure running refseg's forward (inference mode) and a component timer for it.

    ``compile_mode`` "default" runs the model through ``torch.compile`` (inductor), "freezing" also sets
    inductor's ``freezing`` (weights folded as constants, CPU weight prepacking); the compiled graph has no
    module hooks, so the component timer stays empty then. The first call compiles."""
    attention_mask = 1 - padding
    inner = model.model
    components = {
        "encoder": inner.encoder,
        "simple_fpn": inner.simple_fpn,
        "unet_decoder": inner.unet_decoder,
        "query_generator": inner.query_generator,
        "decoder": inner.decoder,
    }
    timer = ComponentTimer({} if compile_mode != "off" else components)
    forward = model
    if compile_mode != "off":
        import torch._inductor.config as inductor_config

        inductor_config.freezing = compile_mode == "freezing"
        forward = torch.compile(model, dynamic=False)

    def run():
        with torch.inference_mode():
            return forward(pixel_values, input_ids, attention_mask)

    return run, timer


def original_runner(model, pixel_values, input_ids, padding):
    """A closure running the original's ``vis_enc`` + ``head.forward_test`` and a component timer for it."""
    from instancevg_original import run_original_heads

    head = model.head
    timer = ComponentTimer(
        {
            "encoder": model.vis_enc,
            "simple_fpn": head.neck,
            "unet_decoder": head.unet_decoder,
            "query_generator": head.query_generation,
            "decoder": head.decoder_transformer,
        }
    )

    def run():
        with torch.inference_mode():
            return run_original_heads(model, pixel_values, input_ids, padding)

    return run, timer


def top_operators(run: Callable[[], object], count: int) -> list[dict]:
    """The ``count`` operators with the largest self CPU time in one profiled run."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {
            "op": e.key,
            "self_ms": round(e.self_cpu_time_total / 1000, 1),
            "share": round(e.self_cpu_time_total / total, 3),
            "calls": e.count,
        }
        for e in events[:count]
    ]


def parameter_count(model: torch.nn.Module) -> int:
    """Unique parameters (shared modules counted once, as ``parameters()`` deduplicates)."""
    return sum(p.numel() for p in model.parameters())


def memory_worker(args: argparse.Namespace) -> None:
    """Run in a fresh subprocess: build one implementation, warm up, measure one forward; print JSON."""
    torch.set_num_threads(args.threads)
    if args.memory_worker == "original":
        model = build_original(args.original, args.seed)
        vocab = model.vis_enc.beit3.text_embed.weight.shape[0]
        inputs = make_inputs(320, args.max_length or 50, args.valid_tokens, vocab, args.seed)
        run, _ = original_runner(model, *inputs)
    else:
        model = build_refseg(args.preset)
        config = model.config
        inputs = make_inputs(
            config.image_size,
            args.max_length or config.max_text_length,
            args.valid_tokens,
            config.encoder_config.vocab_size,
            args.seed,
        )
        run, _ = refseg_runner(model, *inputs)
    # this process's own high-water mark so far (building the model): ru_maxrss would carry the parent's peak
    # over the fork; then the first forward, as the other paper-config benchmarks measure it (peak_memory.py)
    build_peak_kb = status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    forward = forward_peak_rss(run)
    peak_mb = max(build_peak_kb / 1024, forward["peak_rss_mb"] or 0.0)
    print(json.dumps({"process_peak_rss_mb": round(peak_mb, 1), **forward}))


def measure_memory(args: argparse.Namespace, implementation: str) -> dict:
    """Peak memory of ``implementation`` measured by this script in a fresh subprocess."""
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-worker", implementation]
    command += ["--threads", str(args.threads), "--preset", args.preset, "--seed", str(args.seed)]
    command += ["--valid-tokens", str(args.valid_tokens)]
    if args.original:
        command += ["--original", args.original]
    if args.max_length:
        command += ["--max-length", str(args.max_length)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, run the benchmark and print (and return) the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--original", default=None, help="InstanceVG checkout: compare with the original (else refseg only)"
    )
    parser.add_argument("--preset", default="b-grefcoco", help="refseg preset when --original is not given")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per model")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per model (interleaved)")
    parser.add_argument("--max-length", type=int, default=None, help="padded text length (default: preset's)")
    parser.add_argument(
        "--valid-tokens",
        type=int,
        default=20,
        help="tokens of the expression, BOS/EOS included (at most the padded length)",
    )
    parser.add_argument("--profile", type=int, default=0, help="list the top-N operators per model (0: off)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--compile",
        choices=("off", "default", "freezing"),
        default="off",
        help="run refseg's model through torch.compile (inductor; 'freezing' also folds the weights); the "
        "compile time is part of build_seconds",
    )
    parser.add_argument("--memory-worker", choices=("refseg", "original"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        memory_worker(args)
        return {}

    torch.set_num_threads(args.threads)
    load_at_start = load_average()
    started = time.perf_counter()
    runners: dict[str, tuple] = {}
    models: dict[str, torch.nn.Module] = {}
    report: dict = {"benchmark": "instancevg_vs_original", "device": "cpu"}
    if args.original:
        original = build_original(args.original, args.seed)
        ours = refseg_from_original(original)
        report["weights"] = "original built and randomised, converted with refseg's convert_state_dict"
        models = {"refseg": ours, "original": original}
    else:
        ours = build_refseg(args.preset)
        report["weights"] = f"random ({args.preset} preset)"
        models = {"refseg": ours}
    config = ours.config
    inputs = make_inputs(
        config.image_size,
        args.max_length or config.max_text_length,
        args.valid_tokens,
        config.encoder_config.vocab_size,
        args.seed,
    )
    runners["refseg"] = refseg_runner(ours, *inputs, compile_mode=args.compile)
    if args.original:
        runners["original"] = original_runner(models["original"], *inputs)
        # same weights and inputs must give the same outputs, else the comparison is meaningless
        theirs, mine = runners["original"][0](), runners["refseg"][0]()
        report["max_abs_diff_mask_logits"] = float((theirs["pred_mask"] - mine.pred_masks).abs().max())
        report["max_abs_diff_class_logits"] = float(
            (theirs["pred_class"] - mine.pred_class_logits).abs().max()
        )
    build_seconds = round(time.perf_counter() - started, 1)
    progress(f"built in {build_seconds} s; timing {list(runners)}")

    load_before_timing = load_average()
    results = time_runners(
        runners,
        args.repeats,
        args.warmup,
        alternate=True,
        progress=lambda line: progress(f"{line}, load {load_average()}"),
    )
    load_after_timing = load_average()
    for name, model in models.items():
        results[name]["parameters"] = parameter_count(model)
        if args.profile:
            results[name]["top_operators"] = top_operators(runners[name][0], args.profile)
    report.update(
        {
            "cpu": platform.processor() or platform.machine(),
            "logical_cpus": os.cpu_count(),
            "threads": args.threads,
            # the default (spinning) OpenMP wait policy costs milliseconds per parallel operator on a busy machine
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "torch": torch.__version__,
            "preset": "b-grefcoco (converted)" if args.original else args.preset,
            "image_size": config.image_size,
            "text_length": inputs[1].shape[1],
            "valid_tokens": int((inputs[2] == 0).sum()),
            "batch": 1,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "build_seconds": build_seconds,
            "refseg_compile": args.compile,
            "load_average_1_5_15": {
                "start": load_at_start,
                "before_timing": load_before_timing,
                "after_timing": load_after_timing,
            },
        }
    )
    # the models are freed before the memory subprocesses run, so that they do not compete for RAM
    del runners, models, ours, inputs
    if args.original:
        del original
    gc.collect()
    if not args.no_memory:
        for name in results:
            progress(f"memory of {name} (subprocess)")
            results[name]["memory"] = measure_memory(args, name)
        report["load_average_after_memory"] = load_average()
    report.update(results)
    if args.original:
        ours_ms, theirs_ms = results["refseg"]["latencies_ms"], results["original"]["latencies_ms"]
        ratio = results["refseg"]["latency_ms_median"] / results["original"]["latency_ms_median"]
        report["latency_ratio_refseg_over_original"] = round(ratio, 3)
        report["latency_ratio_median_of_rounds"] = round(
            statistics.median(a / b for a, b in zip(ours_ms, theirs_ms, strict=True)), 3
        )
        report["latency_ratio_of_minima"] = round(
            results["refseg"]["latency_ms_min"] / results["original"]["latency_ms_min"], 3
        )
        report["target_ratio"] = TARGET_RATIO
        report["meets_target"] = ratio <= TARGET_RATIO
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
