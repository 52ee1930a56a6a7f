"""``refseg demo``: run the pipeline on fresh synthetic scenes and write an overlay picture.

Each scene gets a single-target, a multi-target and a no-target sentence (when the grammar produced
one of each); the picture shows the ground truth beside the prediction for every sentence. The drawn
answer is the merged mask that the printed IoU scores; instances are outlines (``refseg.visualization``).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from ._common import add_model_arguments, check_thresholds, describe

KINDS = ("single", "multi", "no_target")
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 2048  # synthetic scenes need 32 pixels; 2048^2 px is already slow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``refseg demo``'s options to ``parser``."""
    add_model_arguments(parser, "default: the demo model bundled with refseg")
    parser.add_argument("--seed", type=int, default=None, help="scene seed (default: random, printed)")
    parser.add_argument("--num-scenes", type=int, default=3, help="number of synthetic scenes (default 3)")
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="scene size in pixels, 32 to 2048 (default: the model's input size)",
    )
    parser.add_argument(
        "--output",
        default="refseg_demo.png",
        help="overlay picture (default refseg_demo.png in the current folder; the absolute path is printed)",
    )


def pick_rows(dataset, kinds=KINDS) -> list[int]:
    """Row indices: per image, the first row of each kind in ``kinds`` (in that order)."""
    chosen: dict[tuple[int, str], int] = {}
    for idx, (image_id, kind) in enumerate(zip(dataset["image_id"], dataset["kind"])):
        chosen.setdefault((image_id, kind), idx)
    image_ids = sorted({image_id for image_id, _ in chosen})
    return [chosen[(i, k)] for i in image_ids for k in kinds if (i, k) in chosen]


def run(args: argparse.Namespace) -> int:
    """Segment fresh synthetic scenes, print each verdict and IoU, write the overlay picture."""
    import numpy as np

    from refseg.data import decode_rle, synthetic_scenes
    from refseg.pipelines.loading import load_referring_segmentation_pipeline
    from refseg.visualization import draw_comparison, make_grid

    if args.num_scenes < 1:
        raise ValueError("--num-scenes must be at least 1")
    if args.image_size is not None and not MIN_IMAGE_SIZE <= args.image_size <= MAX_IMAGE_SIZE:
        raise ValueError(
            f"--image-size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, got {args.image_size} "
            "(leave it out for the model's input size)"
        )
    check_thresholds(args)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    segmenter, path = load_referring_segmentation_pipeline(args.model, args.device)
    size = (
        args.image_size if args.image_size is not None else segmenter.processor.image_processor.size["height"]
    )
    print(f"refseg demo: model {path}, {args.num_scenes} synthetic scene(s) of {size}x{size}, seed {seed}")
    scenes = synthetic_scenes(
        num_images=args.num_scenes,
        seed=seed,
        image_size=size,
        sentences_per_image=9,
        split="demo",
        kind_weights={"single": 1.0, "multi": 1.0, "no_target": 1.0},
    )
    rows = [scenes[i] for i in pick_rows(scenes)]
    start = time.perf_counter()
    results = segmenter(
        [row["image"] for row in rows],
        [row["sentence"] for row in rows],
        threshold=args.threshold,
        mask_threshold=args.mask_threshold,
    )
    elapsed = time.perf_counter() - start
    panels, correct = [], 0
    scale = max(1, round(240 / size))
    for row, result in zip(rows, results):
        gt = [decode_rle(inst["segmentation"]) for inst in row["instances"]]
        pred = np.asarray(result["mask"]) > 0
        union = np.zeros_like(pred)
        for m in gt:
            union |= m
        if row["no_target"]:
            verdict = "correct: no target" if result["no_target"] else "WRONG: predicted a target"
            correct += bool(result["no_target"])
        else:
            inter, uni = np.logical_and(pred, union).sum(), np.logical_or(pred, union).sum()
            iou = inter / uni if uni else 0.0
            verdict = f"IoU of the answer with the ground truth {iou:.2f}" + (
                " (predicted no target)" if result["no_target"] else ""
            )
            correct += iou >= 0.5
        print(
            f"[scene {row['image_id']}, {row['kind']}] "
            + describe(row["sentence"], result)
            + f"\n     {verdict}"
        )
        panels.append(draw_comparison(row["image"], result, row["sentence"], gt, scale=scale, note=verdict))
    title = (
        f"refseg demo | model {Path(path).name} | seed {seed} | left: ground truth, right: prediction | "
        "answer (scored): bright, white outline | instances: dashed outlines"
    )
    output = Path(args.output).expanduser().resolve()
    make_grid(panels, columns=3, title=title).save(output)
    print(
        f"{correct}/{len(rows)} sentences right (IoU >= 0.5 or correct no-target) in {elapsed:.2f} s; "
        f"overlay written to {output}"
    )
    return 0
