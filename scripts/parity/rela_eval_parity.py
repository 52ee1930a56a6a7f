"""``examples/evaluate.py`` on a refseg ReLA model vs the ORIGINAL ReLA evaluator, on the same predictions.

The original evaluator is ``gres_model/evaluation/refer_evaluation.py: ReferEvaluator`` of a ReLA checkout whose
path the user gives (https://github.com/henghuiding/ReLA); that one file is loaded, with the three detectron2 names
it imports (``utils.comm``'s ``all_gather`` / ``is_main_process`` / ``synchronize``, ``utils.file_io``'s
``PathManager``, ``evaluation.evaluator``'s ``DatasetEvaluator``) given as single-process stand-ins, so neither
detectron2 nor the rest of the original is needed. Nothing of it is copied.

A tiny refseg ReLA model with random weights (``RelaConfig.preset("tiny")``, no-target bias set so that about
half of the sentences of a tiny gRefCOCO-format dataset (``grefcoco_tiny.py``) are predicted no-target) is saved
with its processor. The dataset is then written again with, for each single-target ref, the mask the model
predicts for its first sentence as ground truth (so that IoUs near 1 occur), built with ``refseg.data.build_grefcoco``
and saved to disk. Then:

* refseg: ``python examples/evaluate.py --benchmark gres --resolution model`` (subprocess);
* original: the same model's predictions on the same rows (``examples/evaluate.py``'s own image decoding, ground
  truth at the model resolution and post-processing) go through ``ReferEvaluator.process`` as ReLA's model
  returns them (``ref_seg`` (2, H, W): the mask before the no-target decision, ``nt_label`` (2,): index 1 = no
  target) and ``evaluate()``.

gIoU / cIoU / Pr@0.7-0.9 (percent in both) and T-acc / N-acc (fractions in ReLA, percent in refseg) must agree.
A last column, not compared, shows the original evaluator with the ground truth ReLA's own test mapper makes
(polygons scaled to the square input and rasterised there, ``rela_gt``) instead of ``examples/evaluate.py``'s
nearest resize of the merged mask: the one definitional difference between the two protocols.

    PYTHONPATH=src python scripts/parity/rela_eval_parity.py --original /path/to/ReLA
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

from refseg.data import build_grefcoco, merge_instances, synthetic_tokenizer
from refseg.models.rela import RelaConfig, RelaForReferringSegmentation, RelaImageProcessor, RelaProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grefcoco_tiny import IMAGE_SHAPES, make_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _load_evaluate_script() -> types.ModuleType:
    """``examples/evaluate.py`` as a module (its image decoding and ground-truth resizing are reused)."""
    spec = importlib.util.spec_from_file_location(
        "refseg_examples_evaluate", REPO / "examples" / "evaluate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_refer_evaluator(original: str | os.PathLike) -> type:
    """``ReferEvaluator`` from the checkout's ``gres_model/evaluation/refer_evaluation.py``, single process."""
    path = Path(original) / "gres_model" / "evaluation" / "refer_evaluation.py"
    if not path.is_file():
        raise FileNotFoundError(f"{original} is not a ReLA checkout (no {path.relative_to(original)})")

    class DatasetEvaluator:  # detectron2's base class: reset / process / evaluate
        def reset(self):
            pass

    class PathManager:  # only used when the evaluator is given an output folder (not here)
        @staticmethod
        def mkdirs(folder):
            os.makedirs(folder, exist_ok=True)

        @staticmethod
        def open(file, mode="r"):
            return open(file, mode)

    stand_ins = {
        "detectron2": {},
        "detectron2.utils": {},
        "detectron2.utils.comm": {
            "all_gather": lambda data: [data],
            "is_main_process": lambda: True,
            "synchronize": lambda: None,
        },
        "detectron2.utils.file_io": {"PathManager": PathManager},
        "detectron2.evaluation": {},
        "detectron2.evaluation.evaluator": {"DatasetEvaluator": DatasetEvaluator},
    }
    saved = {name: sys.modules.get(name) for name in stand_ins}
    try:
        for name, attributes in stand_ins.items():
            module = types.ModuleType(name)
            module.__dict__.update(attributes)
            sys.modules[name] = module
        spec = importlib.util.spec_from_file_location("rela_refer_evaluation", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module.ReferEvaluator


def rela_gt(segmentations: list, height: int, width: int, size: tuple[int, int]) -> np.ndarray:
    """Ground truth as ReLA's test mapper makes it from polygons: every instance's polygons scaled to the square
    input (``ResizeTransform.apply_coords``) and rasterised there (``convert_coco_poly_to_mask``), merged by a
    clamped sum. Our restatement of those two steps, only to show how far it is from refseg's nearest resize; an
    RLE instance is resized nearest-neighbour (as refseg does)."""
    import pycocotools.mask as mask_utils

    out = np.zeros(size, dtype=bool)
    scale = np.array([size[1] / width, size[0] / height])
    for segmentation in segmentations:
        if isinstance(segmentation, dict):
            rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
            out |= _load_evaluate_script().gt_at(mask_utils.decode(rle).astype(bool), size)
            continue
        scaled = [
            (np.asarray(p, dtype=np.float64).reshape(-1, 2) * scale).reshape(-1).tolist()
            for p in segmentation
        ]
        out |= mask_utils.decode(mask_utils.frPyObjects(scaled, size[0], size[1])).any(-1).astype(bool)
    return out


@torch.no_grad()
def predicted_masks(model_dir: Path, rows) -> dict[int, np.ndarray]:
    """Per single-target ref, the mask the model predicts for its first sentence (image size; non-empty ones
    only): used as that ref's ground truth, so that the IoU thresholds are crossed. Multi-target refs keep their
    polygons (whose rasterisation differs between ReLA and refseg)."""
    from transformers import AutoProcessor

    from refseg.pipelines.loading import load_referring_segmentation_model

    evaluate_script = _load_evaluate_script()
    model = load_referring_segmentation_model(os.fspath(model_dir)).eval()
    processor = AutoProcessor.from_pretrained(os.fspath(model_dir))
    out: dict[int, np.ndarray] = {}
    for row in rows:
        if len(row["instances"]) != 1 or row["ref_id"] in out:
            continue
        image = evaluate_script.batch_images({"image": [row["image"]], "instances": [row["instances"]]})[0]
        outputs = model(**processor(images=[image], text=[row["sentence"]]))
        mask = processor.post_process_referring_segmentation(
            outputs, target_sizes=[(image.height, image.width)]
        )
        mask = mask[0]["semantic_mask"].numpy().astype(bool)
        if mask.any():
            out[int(row["ref_id"])] = mask
    return out


def build_model(folder: Path, rows, seed: int, share: float = 0.5) -> Path:
    """A tiny random ReLA model and its processor in ``folder``; the no-target head's bias is shifted so that
    ``share`` of ``rows`` are predicted no-target (random weights decide the same for every sentence)."""
    torch.manual_seed(seed)
    config = RelaConfig.preset("tiny")
    model = RelaForReferringSegmentation(config).eval()
    processor = RelaProcessor(
        RelaImageProcessor(size=config.image_size), synthetic_tokenizer(config.max_text_length)
    )
    evaluate_script = _load_evaluate_script()
    with torch.no_grad():
        inputs = processor(images=evaluate_script.batch_images(rows[:]), text=list(rows["sentence"]))
        logits = model(**inputs).no_target_logits  # no-target minus target
        bias = model.decoder.heads.no_target_embed.layers[-1].bias
        shift = float(torch.quantile(logits, 1.0 - share))  # half of the logits above it
        bias[1] -= shift / 2
        bias[0] += shift / 2
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def refseg_metrics(model_dir: Path, dataset_dir: Path, work: Path) -> tuple[dict[str, float], str]:
    """``examples/evaluate.py`` in a subprocess: the GRES block."""
    output = work / "refseg_metrics.json"
    args = [
        "--model",
        os.fspath(model_dir),
        "--dataset",
        os.fspath(dataset_dir),
        "--split",
        "val",
        "--benchmark",
        "gres",
        "--resolution",
        "model",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--output",
        os.fspath(output),
    ]
    env = dict(os.environ, PYTHONPATH=os.fspath(REPO / "src"))
    done = subprocess.run(
        [sys.executable, os.fspath(REPO / "examples" / "evaluate.py"), *args],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"examples/evaluate.py failed:\n{done.stderr[-4000:]}")
    gres = json.loads(output.read_text())["metrics"]["gres"]
    keys = ("gIoU", "cIoU", "T-acc", "N-acc", "Pr@0.7", "Pr@0.8", "Pr@0.9")
    return {k: float(gres[k]) for k in keys}, "python examples/evaluate.py " + " ".join(args)


@torch.no_grad()
def original_metrics(
    original: str, model_dir: Path, rows, polygons: dict[int, list] | None = None
) -> tuple[dict[str, float], dict[str, int]]:
    """The model's predictions on ``rows`` (as ``examples/evaluate.py --resolution model`` computes them) through
    the original ``ReferEvaluator``; the original's T-acc / N-acc are fractions, returned here in percent. The
    ground truth is ``examples/evaluate.py``'s (nearest resize of the merged mask), or with ``polygons``
    (annotation id -> segmentation) the one ReLA's mapper rasterises (:func:`rela_gt`)."""
    from transformers import AutoProcessor

    from refseg.pipelines.loading import load_referring_segmentation_model

    evaluate_script = _load_evaluate_script()
    model = load_referring_segmentation_model(os.fspath(model_dir)).eval()
    processor = AutoProcessor.from_pretrained(os.fspath(model_dir))
    size = (int(processor.image_processor.size["height"]), int(processor.image_processor.size["width"]))
    evaluator = load_refer_evaluator(original)("grefcoco_val", distributed=False)
    evaluator.reset()
    counts = {"no-target rows": 0, "predicted no-target": 0}
    for batch in rows.iter(batch_size=4):
        images = evaluate_script.batch_images(batch)
        outputs = model(**processor(images=images, text=list(batch["sentence"])))
        predictions = processor.post_process_referring_segmentation(
            outputs, target_sizes=[size] * len(images)
        )
        inputs, original_outputs = [], []
        for k, pred in enumerate(predictions):
            height, width = images[k].height, images[k].width
            if polygons is None:
                gt = evaluate_script.gt_at(merge_instances(batch["instances"][k], height, width), size)
            else:
                ids = [int(inst["ann_id"]) for inst in batch["instances"][k]]
                gt = rela_gt([polygons[i] for i in ids], height, width, size)
            mask = pred["semantic_mask"].bool()
            inputs.append(
                {
                    "image_id": int(batch["image_id"][k]),
                    "source": "grefcoco",
                    "sentence": {"raw": batch["sentence"][k], "sent_id": int(batch["sent_id"][k])},
                    "empty": bool(batch["no_target"][k]),
                    "gt_mask_merged": torch.from_numpy(gt)[None].to(torch.uint8),
                }
            )
            no_target = bool(pred["no_target"])
            original_outputs.append(
                {
                    "ref_seg": torch.stack([~mask, mask]).float(),
                    "nt_label": torch.tensor([0.0, 1.0] if no_target else [1.0, 0.0]),
                }
            )
            counts["no-target rows"] += bool(batch["no_target"][k])
            counts["predicted no-target"] += no_target
        evaluator.process(inputs, original_outputs)
    results = evaluator.evaluate()["grefcoco"]
    out = {
        "gIoU": results["gIoU"],
        "cIoU": results["cIoU"],
        "T-acc": 100.0 * results["T_acc"],
        "N-acc": 100.0 * results["N_acc"],
    }
    out.update({f"Pr@{t}": results[f"Pr@{t}"] for t in ("0.7", "0.8", "0.9")})
    return {k: float(v) for k, v in out.items()}, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True, help="path of the ReLA checkout")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset and of the random weights")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = make_dataset(folder / "data", seed=args.seed)
        rows = build_grefcoco(data["root"])[0]["val"]
        model_dir = build_model(folder / "rela-tiny", rows, seed=args.seed)
        masks = predicted_masks(model_dir, rows)
        data = make_dataset(folder / "data_masks", seed=args.seed, target_masks=masks)
        dataset, _ = build_grefcoco(data["root"])
        dataset_dir = folder / "grefcoco_hf"
        dataset.save_to_disk(os.fspath(dataset_dir))
        rows = dataset["val"]
        print(f"dataset: {len(IMAGE_SHAPES)} images, {data['refs']} refs, {len(rows)} sentences", flush=True)
        print(
            f"{len(masks)} single-target refs take the mask predicted for their first sentence as ground truth"
        )
        ours, command = refseg_metrics(model_dir, dataset_dir, folder)
        reference, counts = original_metrics(args.original, model_dir, rows)
        coco = json.loads((Path(data["root"]) / "grefcoco" / "instances.json").read_text())
        polygons = {ann["id"]: ann["segmentation"] for ann in coco["annotations"]}
        rela_gt, _ = original_metrics(args.original, model_dir, rows, polygons)
    print("refseg: " + command.replace(tmp, "$TMP"))
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    print(
        "| metric | original ReferEvaluator | examples/evaluate.py | abs diff "
        "| ReferEvaluator, ReLA's ground truth (polygons rasterised at the input size; not compared) |"
    )
    print("|---|---|---|---|---|")
    ok = True
    for key, value in reference.items():
        diff = abs(value - ours[key])
        ok &= diff <= 1e-6 * max(1.0, abs(value))
        print(f"| {key} | {value:.4f} | {ours[key]:.4f} | {diff:.1e} | {rela_gt[key]:.4f} |")
    print("PARITY OK" if ok else "PARITY FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
