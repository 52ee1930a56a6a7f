"""Benchmark: CPU latency of a refseg model in PyTorch vs its ONNX export in onnxruntime.

Prints one JSON document: for each batch size, the median and minimum forward latency (ms) of the
PyTorch model (deformable attention on the compiled op where available) and of the ONNX graph in
onnxruntime (CPUExecutionProvider), both with ``--threads`` intra-op threads, runs interleaved, plus the
max |difference| of their outputs. Inputs are synthetic scenes and their sentences through the model's
processor. Exports the model first unless ``--onnx`` names an existing export of it.

    python benchmarks/export_latency.py [--model DIR] [--onnx FILE] [--threads 2] [--repeats 20] [--batches 1,4]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="model folder or Hub id (default: the bundled demo model)"
    )
    parser.add_argument(
        "--onnx", default=None, help="an existing ONNX export of --model (default: export now)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batches", default="1,4")
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    import refseg
    from refseg.data import synthetic_scenes
    from refseg.export import (
        INPUT_NAMES,
        ReferringSegmentationExportWrapper,
        export_onnx,
        load_for_export,
    )
    from refseg.kernels import implementation

    torch.set_num_threads(args.threads)
    path = args.model or refseg.demo_model_path()
    model, processor = load_for_export(path)
    size = processor.image_processor.size["height"]
    rows = synthetic_scenes(num_images=8, seed=123, image_size=size, sentences_per_image=1)

    def inputs(batch: int):
        picked = [rows[k % len(rows)] for k in range(batch)]
        enc = processor(images=[r["image"] for r in picked], text=[r["sentence"] for r in picked])
        return tuple(enc[name] for name in INPUT_NAMES)

    export_s = None
    onnx_path = args.onnx
    if onnx_path is None:
        onnx_path = str(Path(tempfile.mkdtemp()) / "model.onnx")
        start = time.perf_counter()
        export_onnx(model, onnx_path, inputs=inputs(2))
        export_s = time.perf_counter() - start
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]  # the contract fields the model fills
    wrapper = ReferringSegmentationExportWrapper(model, names).eval()

    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        x = inputs(batch)
        feeds = {name: t.numpy() for name, t in zip(INPUT_NAMES, x)}
        torch_ms, ort_ms = [], []
        with torch.inference_mode():
            for _ in range(2):  # warm-up
                expected = wrapper(*x)
                got = session.run(names, feeds)
            for _ in range(args.repeats):
                start = time.perf_counter()
                wrapper(*x)
                torch_ms.append(1e3 * (time.perf_counter() - start))
                start = time.perf_counter()
                session.run(names, feeds)
                ort_ms.append(1e3 * (time.perf_counter() - start))
        diffs = {n: float((torch.from_numpy(g) - e).abs().max()) for n, g, e in zip(names, got, expected)}
        results.append(
            {
                "batch": batch,
                "pytorch_ms_median": round(statistics.median(torch_ms), 2),
                "pytorch_ms_min": round(min(torch_ms), 2),
                "onnxruntime_ms_median": round(statistics.median(ort_ms), 2),
                "onnxruntime_ms_min": round(min(ort_ms), 2),
                "speedup_onnxruntime": round(statistics.median(torch_ms) / statistics.median(ort_ms), 2),
                "max_abs_diff": diffs,
            }
        )
    print(
        json.dumps(
            {
                "model": str(path),
                "input": [3, size, size],
                "threads": args.threads,
                "repeats": args.repeats,
                "pytorch_deformable_attention": implementation("cpu"),
                "torch": torch.__version__,
                "onnxruntime": ort.__version__,
                "cpu": platform.processor() or platform.machine(),
                "export_seconds": None if export_s is None else round(export_s, 1),
                "onnx_mb": round(Path(onnx_path).stat().st_size / 2**20, 2),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
