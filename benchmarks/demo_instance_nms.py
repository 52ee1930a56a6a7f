"""Instance mask NMS on the bundled demo model: metrics and duplicate instances with it off and on (issue 24).

The model runs once per batch; its outputs are post-processed twice, with ``instance_nms_threshold=None``
(off) and with each threshold asked for. The scenes, loading, ground truth and metrics are those of
``examples/evaluate.py`` (its functions, imported), so the GRES numbers equal its output:

    python benchmarks/demo_instance_nms.py --synthetic-images 500 --seed 2 --nms 0.5 --output runs/nms.json

Reported per setting: GRES (gIoU, cIoU, N-acc, T-acc; from the semantic mask, which NMS does not touch),
GREC (from the instances' boxes), instances per single-target / multi-target sentence, and the share of
answers (sentences with at least one instance) that hold a pair of instances with mask IoU > 0.5.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch
from transformers import AutoProcessor

import refseg
from refseg import metrics
from refseg.data import merge_instances
from refseg.modeling.instance_nms import mask_iou_matrix
from refseg.pipelines.loading import load_referring_segmentation_model

ROOT = Path(__file__).resolve().parents[1]


def _evaluate_module():
    spec = importlib.util.spec_from_file_location(
        "refseg_examples_evaluate", ROOT / "examples" / "evaluate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: refseg.demo_model_path())")
    p.add_argument("--synthetic-images", type=int, default=500)
    p.add_argument("--synthetic-size", type=int, default=160)
    p.add_argument(
        "--seed", type=int, default=2, help="as examples/evaluate.py: validation scenes of seed + 1"
    )
    p.add_argument("--nms", type=float, nargs="+", default=[0.5], help="instance_nms_threshold values to try")
    p.add_argument(
        "--duplicate-iou", type=float, default=0.5, help="a pair above this mask IoU is a duplicate"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    model_dir = args.model or str(refseg.demo_model_path())
    ev = _evaluate_module()
    ev_args = ev.parse_args(
        [
            "--model", model_dir, "--dataset", "synthetic", "--split", "validation",
            "--synthetic-images", str(args.synthetic_images), "--synthetic-size", str(args.synthetic_size),
            "--seed", str(args.seed), "--resolution", "model",
        ]
    )  # fmt: skip
    torch.set_grad_enabled(False)
    ds, _ = ev.load_split(ev_args)
    model = load_referring_segmentation_model(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    size = processor.image_processor.size
    model_size = (int(size["height"]), int(size["width"]))
    settings = {"off": None, **{f"nms {t:g}": t for t in args.nms}}
    acc = {
        name: {
            "mask": [],
            "grec": [],
            "inst_single": [],
            "inst_multi": [],
            "answers": 0,
            "dup": 0,
            "dup_single": 0,
        }
        for name in settings
    }
    start = time.time()
    for batch in ds.iter(batch_size=args.batch_size):
        images = ev.batch_images(batch)
        inputs = processor(images=images, text=list(batch["sentence"]))
        outputs = model(**inputs)
        targets = [model_size] * len(images)
        for name, threshold in settings.items():
            preds = processor.image_processor.post_process_referring_segmentation(
                outputs, target_sizes=targets, instance_nms_threshold=threshold
            )
            a = acc[name]
            for k, pred in enumerate(preds):
                h, w = images[k].height, images[k].width
                instances, no_target = batch["instances"][k], bool(batch["no_target"][k])
                gt = ev.gt_at(merge_instances(instances, h, w), model_size)
                scored = {"mask": pred["semantic_mask"], "no_target": pred["no_target"]}
                a["mask"].append(metrics.segmentation_record(scored, gt, gt_no_target=no_target))
                boxes = ev.gt_boxes_xyxy(instances, (model_size[0] / h, model_size[1] / w))
                if no_target or boxes:
                    a["grec"].append(metrics.grec_record_from_prediction(pred, boxes, gt_no_target=no_target))
                found = pred["instances"]
                if not no_target:
                    a["inst_single" if len(instances) == 1 else "inst_multi"].append(len(found))
                if found:
                    a["answers"] += 1
                    dup = False
                    if len(found) > 1:
                        iou = mask_iou_matrix(torch.stack([inst["mask"] for inst in found]))
                        dup = bool((iou.triu(1) > args.duplicate_iou).any())
                    a["dup"] += dup
                    a["dup_single"] += dup and not no_target and len(instances) == 1
    seconds = time.time() - start
    resolution = f"{model_size[0]}x{model_size[1]}"
    report = {
        "model": model_dir,
        "scenes": args.synthetic_images,
        "seed": args.seed,
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "seconds": round(seconds, 1),
        "settings": {},
    }
    for name, a in acc.items():
        gres = metrics.gres_metrics(a["mask"], resolution=resolution)
        grec = metrics.grec_metrics(a["grec"], resolution=resolution)
        single, multi = a["inst_single"], a["inst_multi"]
        report["settings"][name] = {
            "gres": gres,
            "grec": grec,
            "sentences": len(a["mask"]),
            "single_target_sentences": len(single),
            "instances_per_single_target": sum(single) / max(len(single), 1),
            "single_target_with_exactly_one": sum(n == 1 for n in single) / max(len(single), 1),
            "instances_per_multi_target": sum(multi) / max(len(multi), 1),
            "answers_with_instances": a["answers"],
            "answers_with_duplicate_pair": a["dup"] / max(a["answers"], 1),
            "single_target_with_duplicate_pair": a["dup_single"] / max(len(single), 1),
        }
    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
