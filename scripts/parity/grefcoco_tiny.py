"""A tiny gRefCOCO-format dataset for evaluation parity (``instancevg_test_loop_parity.py``,
``rela_eval_parity.py``), written in the layouts the originals and refseg read.

JPEG images with drawn polygon objects; per image a single-target, a multi-target and a no-target ref with one or
two sentences each, all in the ``val`` split. The same objects are written twice:

* the official gRefCOCO layout, which ``refseg.data.build_grefcoco`` and ReLA's loader read:
  ``grefcoco/grefs(unc).json`` (no-target refs: ``ann_id == [-1]``), ``grefcoco/instances.json`` (COCO, polygon
  segmentations), ``images/train2014/COCO_train2014_%012d.jpg``;
* InstanceVG's seqtr-type ``seqtr_type/annotations/grefs/instances.json``: ``{"val": [item per sentence]}`` with
  ``image_id``, ``expressions.raw`` and ``annotations`` (``bbox`` ``[x, y, w, h]``, polygon ``segmentation``;
  a no-target item has one annotation with both None).

Objects stay 2 pixels inside the image (InstanceVG's loader clips boxes to ``w - 1`` / ``h - 1``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw

# (height, width) of the generated images: odd sizes, both orientations
IMAGE_SHAPES = (
    (240, 320),
    (333, 251),
    (199, 401),
    (300, 300),
    (177, 263),
    (411, 289),
    (256, 384),
    (321, 213),
)
COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (40, 60, 220)}
SHAPES = ("square", "triangle", "circle")
CATEGORIES = {"square": 1, "triangle": 2, "circle": 3}


def _polygon(kind: str, x0: float, y0: float, size: float) -> list[float]:
    """A closed polygon (flat ``[x, y, ...]``) inside the box ``(x0, y0, size, size)``."""
    if kind == "square":
        points = [(x0, y0), (x0 + size, y0), (x0 + size, y0 + size), (x0, y0 + size)]
    elif kind == "triangle":
        points = [(x0 + size / 2, y0), (x0 + size, y0 + size), (x0, y0 + size)]
    else:  # a 12-gon standing in for a circle
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        r = size / 2
        points = [(x0 + r + r * np.cos(a), y0 + r + r * np.sin(a)) for a in angles]
    return [round(float(v), 2) for point in points for v in point]


def make_dataset(
    folder: Path,
    seed: int = 0,
    target_boxes: dict[int, list[list[float]]] | None = None,
    target_masks: dict[int, np.ndarray] | None = None,
) -> dict[str, Path]:
    """Write the images and both annotation layouts; returns their paths and the sentence count.

    ``target_boxes`` (ref id -> ``[x0, y0, x1, y1]`` boxes in image pixels) replaces the referred objects of those
    refs by rectangles with these boxes (e.g. a model's predictions, so that box matching happens); images,
    sentences and ids stay those of the same ``seed`` without it. ``target_masks`` (ref id -> bool (h, w) mask)
    replaces them by one object with that mask, written as COCO RLE (which refseg's builder reads, and
    InstanceVG's seqtr-type loader does not: use it for ReLA only).
    """
    target_boxes, target_masks = target_boxes or {}, target_masks or {}
    rectangle_id = 100000
    rng = np.random.default_rng(seed)
    image_dir = folder / "images" / "train2014"
    image_dir.mkdir(parents=True)
    images, annotations, refs, seqtr = [], [], [], []
    ann_id, ref_id, sent_id = 1000, 0, 0
    for index, (height, width) in enumerate(IMAGE_SHAPES):
        image_id = 500 + index
        picture = PIL.Image.fromarray(background(height, width, 200 + index))
        draw = PIL.ImageDraw.Draw(picture)
        objects = []
        for k in range(4):
            kind, colour = SHAPES[k % 3], list(COLOURS)[int(rng.integers(0, 3))]
            size = float(rng.uniform(0.2, 0.4) * min(height, width))
            x0 = float(rng.uniform(2, width - size - 2))
            y0 = float(rng.uniform(2, height - size - 2))
            polygon = _polygon(kind, x0, y0, size)
            draw.polygon(polygon, fill=COLOURS[colour])
            xs, ys = polygon[0::2], polygon[1::2]
            bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            objects.append(
                {"id": ann_id, "kind": kind, "colour": colour, "segmentation": [polygon], "bbox": bbox}
            )
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": CATEGORIES[kind],
                    "segmentation": [polygon],
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
            ann_id += 1
        name = image_name(image_id)
        picture.save(image_dir / name, "JPEG", quality=90)
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        # one single-target, one multi-target and one no-target ref per image
        groups = (
            [objects[0]],
            objects[1 : 2 + int(rng.integers(1, 3))],
            [],
        )
        for group in groups:
            if group:
                words = [f"the {o['colour']} {o['kind']}" for o in group]
                sentences = [" and ".join(words), f"all {len(group)} of them" if len(group) > 1 else words[0]]
            else:
                sentences = ["the small dog", "a woman holding an umbrella"]
            sentences = sentences[: 1 + int(rng.integers(0, 2))]
            replacement = _replacement(ref_id, target_boxes, target_masks) if group else None
            if replacement is not None:
                group = []
                for segmentation, bbox in replacement:
                    group.append(
                        {"id": rectangle_id, "kind": "square", "segmentation": segmentation, "bbox": bbox}
                    )
                    annotations.append(
                        {
                            "id": rectangle_id,
                            "image_id": image_id,
                            "category_id": CATEGORIES["square"],
                            "segmentation": segmentation,
                            "bbox": bbox,
                            "area": bbox[2] * bbox[3],
                            "iscrowd": 0,
                        }
                    )
                    rectangle_id += 1
            records = []
            for sentence in sentences:
                records.append(
                    {"sent_id": sent_id, "sent": sentence, "raw": sentence, "tokens": sentence.split()}
                )
                seqtr.append(
                    {
                        "image_id": image_id,
                        "height": height,
                        "width": width,
                        "ref_id": ref_id,
                        "sent_id": sent_id,
                        "expressions": {"raw": sentence},
                        "annotations": [{"bbox": o["bbox"], "segmentation": o["segmentation"]} for o in group]
                        or [{"bbox": None, "segmentation": None}],
                    }
                )
                sent_id += 1
            refs.append(
                {
                    "ref_id": ref_id,
                    "image_id": image_id,
                    "split": "val",
                    "ann_id": [o["id"] for o in group] or [-1],
                    "category_id": [CATEGORIES[o["kind"]] for o in group] or [-1],
                    "no_target": not group,
                    "file_name": name.replace(".jpg", f"_{ref_id}.jpg"),
                    "sentences": records,
                }
            )
            ref_id += 1
    official = folder / "grefcoco"
    official.mkdir()
    (official / "grefs(unc).json").write_text(json.dumps(refs))
    categories = [{"id": v, "name": k, "supercategory": "shape"} for k, v in CATEGORIES.items()]
    (official / "instances.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    seqtr_file = folder / "seqtr_type" / "annotations" / "grefs" / "instances.json"
    seqtr_file.parent.mkdir(parents=True)
    seqtr_file.write_text(json.dumps({"val": seqtr}))
    return {
        "root": folder,
        "images": image_dir,
        "seqtr": seqtr_file,
        "sentences": len(seqtr),
        "refs": len(refs),
    }


def _replacement(
    ref_id: int, target_boxes: dict, target_masks: dict
) -> list[tuple[object, list[float]]] | None:
    """``[(segmentation, bbox xywh)]`` replacing a ref's objects, or None to keep the drawn ones."""
    if ref_id in target_boxes:
        out = []
        for x0, y0, x1, y1 in target_boxes[ref_id]:
            polygon = [round(float(v), 2) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]
            xs, ys = polygon[0::2], polygon[1::2]
            out.append(([polygon], [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]))
        return out
    if ref_id in target_masks:
        import pycocotools.mask as mask_utils

        rle = mask_utils.encode(np.asfortranarray(target_masks[ref_id].astype(np.uint8)))
        bbox = [float(v) for v in mask_utils.toBbox(rle)]
        return [({"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}, bbox)]
    return None


def image_name(image_id: int) -> str:
    """The COCO train2014 file name of an image id (what both loaders look for)."""
    return f"COCO_train2014_{image_id:012d}.jpg"


def background(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth uint8 (h, w, 3) gradient picture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 3.0, 2).tolist() + [rng.uniform(0, 2 * np.pi)]
        channels.append(128 + 80 * np.sin(2 * np.pi * (fx * x / width + fy * y / height) + phase))
    return np.clip(np.round(np.stack(channels, -1)), 0, 255).astype(np.uint8)
