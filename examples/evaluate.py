"""Evaluate any refseg model on a benchmark and write every metric of that benchmark to JSON.

    python examples/evaluate.py --model PATH --dataset PREPARED_DIR --split val --output metrics.json
    python examples/evaluate.py --model PATH --dataset synthetic --split test --resolution model

``--dataset`` is a folder written by ``refseg data prepare`` (parquet shards), a ``save_to_disk`` folder
(of a ``DatasetDict``, or of a single split, which is then the one evaluated), or ``synthetic`` (fresh
synthetic scenes). The benchmark decides the metrics (refseg.metrics):

    gres      gRefCOCO / synthetic: GRES gIoU, cIoU, N-acc, T-acc, Pr@t  + GREC Pr@(F1=1, IoU>=0.5), N-acc, T-acc
    res       RefCOCO/+/g: mIoU, oIoU, P@t  + REC Precision@0.5 (top-scoring instance box)
    refzom    Ref-ZOM: mIoU, oIoU, P@t over targeted sentences, Acc over zero-target sentences
    rrefcoco  R-RefCOCO/+/g: mIoU, oIoU, mRR, rIoU grouped by ref_id

``auto`` takes the benchmark the dataset declares (``stats.json`` of ``refseg data prepare``: gRefCOCO ->
``gres``, RefCOCO/+/g -> ``res``, Ref-ZOM -> ``refzom``, R-RefCOCO -> ``rrefcoco``; synthetic scenes ->
``gres``); a folder that declares none is classified from its whole split, before ``--max-samples``:
``refzom`` (a ``source`` column), ``rrefcoco`` (an ``exist`` column), ``gres`` (any no-target or
multi-target row) or ``res``. ``--resolution original`` measures masks and boxes at the
original image size; ``--resolution model`` at the processor's square input size (the ReLA / LAVT /
InstanceVG protocol, e.g. 480x480), with ground-truth masks resized nearest-neighbour. Each metric
block carries its definition's name and the resolution.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoProcessor

import refseg  # noqa: F401  (registers the refseg Auto classes)
from refseg import metrics
from refseg.data import merge_instances
from refseg.data.images import load_row_image
from refseg.pipelines.loading import load_referring_segmentation_model

BENCHMARK_METRICS = {
    "gres": ("gres", "grec"),
    "res": ("res", "rec"),
    "refzom": ("refzom",),
    "rrefcoco": ("rrefcoco",),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="folder (or Hub id) loadable with AutoModel/AutoProcessor")
    p.add_argument(
        "--dataset", required=True, help="prepared parquet folder, save_to_disk folder, or 'synthetic'"
    )
    p.add_argument("--split", default=None, help="split to evaluate (default: val, validation or test)")
    p.add_argument("--benchmark", default="auto", choices=["auto", *BENCHMARK_METRICS])
    p.add_argument("--resolution", default="original", choices=["original", "model"])
    p.add_argument("--output", default="metrics.json")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--threshold", type=float, default=0.5, help="instance score threshold of post-processing")
    p.add_argument("--mask-threshold", type=float, default=0.5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--synthetic-images", type=int, default=100, help="scenes for --dataset synthetic")
    p.add_argument("--synthetic-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def declared_benchmark(dataset: str) -> str | None:
    """The benchmark a dataset declares: ``synthetic``, or the ``dataset`` of a prepared folder's stats.json."""
    if dataset == "synthetic":
        return "gres"
    try:
        name = json.loads((Path(dataset) / "stats.json").read_text()).get("dataset")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(name, str):
        return None
    for prefix, benchmark in (
        ("grefcoco", "gres"),
        ("rrefcoco", "rrefcoco"),
        ("refzom", "refzom"),
        ("refcoco", "res"),
    ):
        if name.lower().startswith(prefix):
            return benchmark
    return None


def load_split(args) -> tuple[datasets.Dataset, str]:
    if args.dataset == "synthetic":
        try:
            from refseg.data import synthetic_scenes
        except ImportError as err:
            raise SystemExit(f"--dataset synthetic needs refseg.data.synthetic_scenes ({err})") from err
        split = args.split or "test"
        if split not in ("train", "validation", "test"):
            raise SystemExit(f"synthetic splits are train, validation and test, not {split!r}")
        seed = args.seed + {"train": 0, "validation": 1, "test": 2}[split]
        return synthetic_scenes(
            args.synthetic_images, seed=seed, image_size=args.synthetic_size, split=split
        ), split
    try:
        dd = refseg.data.load_referring_dataset(args.dataset, split_name=args.split)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(str(error)) from None
    split = args.split or next((s for s in ("val", "validation", "test") if s in dd), None)
    if split is None and len(dd) == 1:  # a single split: that one
        split = next(iter(dd))
    if split not in dd:
        raise SystemExit(f"split {split!r} not in {args.dataset}; available: {list(dd)}")
    return dd[split], split  # images decoded by refseg's image loader (batch_images)


def batch_images(batch: dict) -> list:
    """The RGB images of a batch of rows, decoded by refseg's image loader (allowed formats, pixel cap, EXIF
    orientation; ``refseg.data.images.load_row_image``)."""
    rows = [{"image": image, "instances": inst} for image, inst in zip(batch["image"], batch["instances"])]
    return [load_row_image(row).convert("RGB") for row in rows]


def detect_benchmark(ds: datasets.Dataset) -> str:
    if "source" in ds.column_names:
        return "refzom"
    if "exist" in ds.column_names:
        return "rrefcoco"
    table = ds.with_format("arrow")[:]
    lengths = pc.list_value_length(table["instances"]).to_numpy(zero_copy_only=False)
    has_no_target = bool(np.asarray(table["no_target"].to_numpy(zero_copy_only=False)).any())
    return "gres" if has_no_target or (lengths > 1).any() else "res"


def gt_at(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Ground-truth mask at the evaluation size (nearest-neighbour, as LAVT/DMMI/InstanceVG resize GT)."""
    if mask.shape == size:
        return mask
    t = torch.from_numpy(mask.astype(np.uint8))[None, None].float()
    return F.interpolate(t, size=size, mode="nearest")[0, 0].bool().numpy()


@torch.no_grad()  # scoped: a caller in the same process (a test, a notebook) keeps autograd
def evaluate(args) -> dict:
    ds, split = load_split(args)
    benchmark = args.benchmark
    if benchmark == "auto":  # the declared benchmark, else the whole split: never the rows of a subset
        benchmark = declared_benchmark(args.dataset) or detect_benchmark(ds)
    if args.max_samples is not None:
        ds = ds.select(range(min(args.max_samples, len(ds))))
    # strict: a folder missing weights (or with another config) is refused instead of run with random layers
    model = load_referring_segmentation_model(args.model).to(args.device).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    size = processor.image_processor.size
    model_size = (int(size["height"]), int(size["width"]))
    resolution = "original" if args.resolution == "original" else f"{model_size[0]}x{model_size[1]}"

    mask_records, grec_records, rec_records = [], [], []
    skipped = {"grec_target_rows_without_boxes": 0, "rec_rows_without_one_box": 0}
    start = time.time()
    bar = tqdm(total=len(ds), desc=f"evaluating {benchmark} on {split}", unit="sample")
    for batch in ds.iter(batch_size=args.batch_size):
        images = batch_images(batch)
        inputs = processor(images=images, text=list(batch["sentence"])).to(args.device)
        outputs = model(**inputs)
        originals = [(im.height, im.width) for im in images]
        targets = originals if args.resolution == "original" else [model_size] * len(images)
        preds = processor.post_process_referring_segmentation(
            outputs, target_sizes=targets, threshold=args.threshold, mask_threshold=args.mask_threshold
        )
        for k, pred in enumerate(preds):
            (h, w), target = originals[k], targets[k]
            instances, no_target = batch["instances"][k], bool(batch["no_target"][k])
            gt = gt_at(merge_instances(instances, h, w), target)
            # ReLA (GRES) keeps the predicted area of a target sample wrongly judged no-target in the union,
            # so GRES is counted on the mask before the no-target decision; the other benchmarks' evaluators
            # score the model's final (zeroed) output.
            scored = pred
            if benchmark == "gres" and "semantic_mask" in pred:
                scored = {"mask": pred["semantic_mask"], "no_target": pred["no_target"]}
            mask_records.append(
                metrics.segmentation_record(
                    scored, gt, gt_no_target=no_target, ref_id=int(batch["ref_id"][k])
                )
            )
            sy, sx = target[0] / h, target[1] / w
            boxes = metrics.row_gt_boxes({"instances": instances}) * np.array([sx, sy, sx, sy])
            if benchmark == "gres":
                if not no_target and not len(boxes):
                    skipped["grec_target_rows_without_boxes"] += 1
                else:
                    grec_records.append(
                        metrics.grec_record_from_prediction(pred, boxes, gt_no_target=no_target)
                    )
            if benchmark == "res":
                if len(boxes) != 1:
                    skipped["rec_rows_without_one_box"] += 1
                else:
                    rec_records.append(metrics.rec_record_from_prediction(pred, boxes))
        bar.update(len(images))
    bar.close()

    computed = {
        "gres": lambda: metrics.gres_metrics(mask_records, resolution=resolution),
        "grec": lambda: metrics.grec_metrics(grec_records, resolution=resolution),
        "res": lambda: metrics.res_metrics(mask_records, resolution=resolution),
        "rec": lambda: metrics.rec_metrics(rec_records, resolution=resolution),
        "refzom": lambda: metrics.refzom_metrics(mask_records, resolution=resolution),
        "rrefcoco": lambda: metrics.rrefcoco_metrics(mask_records, resolution=resolution),
    }
    return {
        "model": args.model,
        "dataset": args.dataset,
        "split": split,
        "benchmark": benchmark,
        "resolution": resolution,
        "num_samples": len(ds),
        "thresholds": {"score": args.threshold, "mask": args.mask_threshold},
        "skipped": skipped,
        "seconds": round(time.time() - start, 3),
        "metrics": {name: computed[name]() for name in BENCHMARK_METRICS[benchmark]},
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    result = evaluate(args)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
