"""Benchmark: refseg's compiled multi-scale deformable attention vs transformers' pure-PyTorch module.

Prints one JSON document. For each shape: forward and forward+backward medians (ms) of repeated runs of
both implementations interleaved in one process, their ratios, and forward peak-RSS growth (MB) measured
in a fresh subprocess per implementation (VmHWM reset through /proc/self/clear_refs). Sampling locations
are encoder-like: every query is a pixel of one level, sampling near its own centre (+- ~2 px) on each
level, as in a Mask2Former / Deformable-DETR pixel-decoder layer.

    python benchmarks/msda.py [--threads 2] [--repeats 15] [--cases m2f480,m2f480_b2,ddetr800]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "m2f480": {"batch": 1, "shapes": [(60, 60), (30, 30), (15, 15)]},
    "m2f480_b2": {"batch": 2, "shapes": [(60, 60), (30, 30), (15, 15)]},
    "ddetr800": {"batch": 1, "shapes": [(100, 167), (50, 84), (25, 42), (13, 21)]},
}
WARMUP = {"batch": 1, "shapes": [(4, 4), (2, 2), (1, 1)]}  # loads the op without priming the allocator
HEADS, CHANNELS, POINTS = 8, 32, 4


def make_inputs(case: str, dtype=None, seed: int = 0):
    import torch

    dtype = dtype or torch.float32
    spec = WARMUP if case == "warmup" else CASES[case]
    gen = torch.Generator().manual_seed(seed)
    shapes = spec["shapes"]
    batch, levels = spec["batch"], len(shapes)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    areas = spatial_shapes.prod(-1)
    level_start_index = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    seq = int(areas.sum())
    # reference points: pixel centres of every level, normalised (x, y); queries = all positions
    refs = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        refs.append(torch.stack([xs.flatten() / w, ys.flatten() / h], -1))
    ref = torch.cat(refs)  # (Lq, 2)
    wh = spatial_shapes.flip(-1).to(torch.float32)  # (L, 2) as (W, H)
    offsets = torch.randn(batch, seq, HEADS, levels, POINTS, 2, generator=gen) * 2.0
    loc = ref[None, :, None, None, None, :] + offsets / wh[None, None, None, :, None, :]
    logits = torch.randn(batch, seq, HEADS, levels * POINTS, generator=gen)
    attn = logits.softmax(-1).view(batch, seq, HEADS, levels, POINTS)
    value = torch.randn(batch, seq, HEADS, CHANNELS, generator=gen)
    return (
        value.to(dtype),
        spatial_shapes,
        level_start_index,
        loc.to(dtype),
        attn.to(dtype),
        [tuple(s) for s in shapes],
    )


def _callables():
    from transformers.models.deformable_detr.modeling_deformable_detr import MultiScaleDeformableAttention

    from refseg.kernels import multi_scale_deformable_attention

    hf = MultiScaleDeformableAttention()

    def ours(v, ss, lsi, loc, attn, shapes):
        return multi_scale_deformable_attention(v, ss, lsi, loc, attn, 64, spatial_shapes_list=shapes)

    def theirs(v, ss, lsi, loc, attn, shapes):
        return hf(v, ss, shapes, lsi, loc, attn, 64)

    return {"refseg": ours, "transformers": theirs}


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def time_case(case: str, repeats: int) -> dict:
    import torch

    inputs = make_inputs(case)
    impls = _callables()
    v, ss, lsi, loc, attn, shapes = inputs
    grads = {}
    result = {}
    fwd = {name: [] for name in impls}
    fwdbwd = {name: [] for name in impls}
    for fn in impls.values():  # warm-up (builds the op on first use)
        fn(*inputs)
    for _ in range(repeats):  # interleave the implementations so machine noise hits both
        for name, fn in impls.items():
            with torch.no_grad():
                fwd[name] += _time(lambda fn=fn: fn(*inputs), 1)
        for name, fn in impls.items():
            vg, lg, ag = (t.detach().requires_grad_() for t in (v, loc, attn))

            def step(fn=fn, vg=vg, lg=lg, ag=ag):
                out = fn(vg, ss, lsi, lg, ag, shapes)
                out.backward(torch.ones_like(out))

            fwdbwd[name] += _time(step, 1)
            grads[name] = vg.grad
    for name in impls:
        result[name] = {
            "forward_ms": round(statistics.median(fwd[name]), 3),
            "forward_min_ms": round(min(fwd[name]), 3),
            "forward_backward_ms": round(statistics.median(fwdbwd[name]), 3),
            "forward_backward_min_ms": round(min(fwdbwd[name]), 3),
        }
    result["speedup_forward"] = round(
        result["transformers"]["forward_ms"] / result["refseg"]["forward_ms"], 1
    )
    result["speedup_forward_backward"] = round(
        result["transformers"]["forward_backward_ms"] / result["refseg"]["forward_backward_ms"], 1
    )
    result["max_abs_diff_grad_value"] = float((grads["refseg"] - grads["transformers"]).abs().max())
    return result


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def memory_child(case: str, impl: str) -> None:
    """Runs in a subprocess: one forward, prints the VmHWM growth in KiB over the RSS before it."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    inputs = make_inputs(case)
    fn = _callables()[impl]
    # the DETR shape (~1 GB for the reference) must not be served from memory freed by the input set-up
    with torch.no_grad():
        fn(*make_inputs("warmup"))  # loads the op; small enough not to leave freed pages to reuse
        before = _rss_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        out = fn(*inputs)
        peak = _rss_kb("VmHWM")
    del out
    print(json.dumps({"peak_kb": peak - before}))


def memory_case(case: str, threads: int) -> dict:
    out = {}
    for impl in ("refseg", "transformers"):
        env = dict(os.environ, BENCH_THREADS=str(threads))
        proc = subprocess.run(
            [sys.executable, __file__, "--memory-child", case, impl], capture_output=True, text=True, env=env
        )
        if proc.returncode != 0:
            out[impl] = {"error": proc.stderr.strip().splitlines()[-1:]}
            continue
        out[impl] = round(json.loads(proc.stdout.strip().splitlines()[-1])["peak_kb"] / 1024, 1)
    return {"forward_peak_rss_mb": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-child", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    import torch

    import refseg.kernels as kernels
    from refseg.kernels import ops

    torch.set_num_threads(args.threads)
    report = {
        "torch": torch.__version__,
        "threads": args.threads,
        "implementation": kernels.implementation("cpu"),
        "cpu_isa": ops.cpu_isa(),
        "heads": HEADS,
        "channels": CHANNELS,
        "points": POINTS,
        "dtype": "float32",
        "cases": {},
    }
    for case in args.cases.split(","):
        spec = CASES[case]
        seq = sum(h * w for h, w in spec["shapes"])
        samples = spec["batch"] * seq * HEADS * len(spec["shapes"]) * POINTS
        entry = {"batch": spec["batch"], "shapes": spec["shapes"], "S=Lq": seq, "samples_K": samples}
        entry.update(time_case(case, args.repeats))
        entry["refseg"]["forward_ns_per_sample"] = round(entry["refseg"]["forward_ms"] * 1e6 / samples, 2)
        if not args.no_memory:
            entry.update(memory_case(case, args.threads))
        report["cases"][case] = entry
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
