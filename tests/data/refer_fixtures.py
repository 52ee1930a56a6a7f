"""Tiny fixtures in exactly the official on-disk formats (the layouts in docs/data.md, "Benchmark builders").

Two images: 101 (20x30 JPEG, train2014 name) and 102 (16x16 PNG, val2014 name, used by Ref-ZOM's
merged folder). Annotations in ``instances.json``:
  1: image 101, polygon covering rows 2..7 x cols 2..9, plus an invalid 2-point polygon (dropped)
  2: image 101, compressed RLE (str counts) covering rows 12..17 x cols 20..27
  3: image 101, iscrowd=1, uncompressed RLE (skipped by the official loaders)
  4: image 102, iscrowd=0, uncompressed RLE covering rows 4..8 x cols 3..6
  5: image 102, only an invalid polygon (the instance is dropped)
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

IMAGES = {
    101: {"file_name": "COCO_train2014_000000000101.jpg", "height": 20, "width": 30},
    102: {"file_name": "COCO_val2014_000000000102.png", "height": 16, "width": 16},
}


def box_mask(h, w, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: run lengths over the column-major pixels, starting with zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


MASK_1 = box_mask(20, 30, 2, 8, 2, 10)
MASK_2 = box_mask(20, 30, 12, 18, 20, 28)
MASK_3 = box_mask(20, 30, 0, 5, 25, 30)
MASK_4 = box_mask(16, 16, 4, 9, 3, 7)


def annotations() -> list[dict]:
    return [
        {
            "id": 1,
            "image_id": 101,
            "category_id": 1,
            "iscrowd": 0,
            "area": 48.0,
            "bbox": [2.0, 2.0, 8.0, 6.0],
            "segmentation": [[2, 2, 10, 2, 10, 8, 2, 8], [1, 1, 2, 2]],
        },
        {
            "id": 2,
            "image_id": 101,
            "category_id": 1,
            "iscrowd": 0,
            "area": 48.0,
            "bbox": [20.0, 12.0, 8.0, 6.0],
            "segmentation": compressed_rle(MASK_2),
        },
        {
            "id": 3,
            "image_id": 101,
            "category_id": 1,
            "iscrowd": 1,
            "area": 25.0,
            "bbox": [25.0, 0.0, 5.0, 5.0],
            "segmentation": uncompressed_rle(MASK_3),
        },
        {
            "id": 4,
            "image_id": 102,
            "category_id": 18,
            "iscrowd": 0,
            "area": 20.0,
            "bbox": [3.0, 4.0, 4.0, 5.0],
            "segmentation": uncompressed_rle(MASK_4),
        },
        {
            "id": 5,
            "image_id": 102,
            "category_id": 18,
            "iscrowd": 0,
            "area": 0.0,
            "bbox": [0.0, 0.0, 5.0, 5.0],
            "segmentation": [[0, 0, 5, 5]],
        },
    ]


def write_images(folder: Path, ids=(101, 102)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for image_id in ids:
        info = IMAGES[image_id]
        pixels = rng.integers(0, 255, (info["height"], info["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / info["file_name"])


def write_instances(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "images": [{"id": i, **info} for i, info in IMAGES.items()],
        "annotations": annotations(),
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
    }
    path = folder / "instances.json"
    path.write_text(json.dumps(data))
    return path


def sentence(sent_id: int, text: str, **extra) -> dict:
    return {"sent_id": sent_id, "sent": text.lower(), "raw": text, "tokens": text.lower().split(), **extra}


def grefcoco_refs() -> list[dict]:
    return [
        {
            "ref_id": 0,
            "image_id": 101,
            "split": "train",
            "ann_id": [1, 2],
            "category_id": [1, 1],
            "no_target": False,
            "file_name": "COCO_train2014_000000000101_0.jpg",
            "sentences": [sentence(0, "two people"), sentence(1, "both persons")],
        },
        {
            "ref_id": 1,
            "image_id": 101,
            "split": "val",
            "ann_id": [-1],
            "category_id": [-1],
            "no_target": True,
            "file_name": "COCO_train2014_000000000101_1.jpg",
            "sentences": [sentence(2, "the zebra")],
        },
        {
            "ref_id": 2,
            "image_id": 101,
            "split": "val",
            "ann_id": [1, 3],
            "category_id": [1, 1],
            "no_target": False,
            "file_name": "COCO_train2014_000000000101_2.jpg",
            "sentences": [sentence(3, "left person and crowd")],
        },
        {
            "ref_id": 3,
            "image_id": 102,
            "split": "testA",
            "ann_id": 4,
            "category_id": 18,
            "no_target": False,
            "file_name": "COCO_val2014_000000000102_3.jpg",
            "sentences": [sentence(4, "the dog")],
        },
        {
            "ref_id": 4,
            "image_id": 102,
            "split": "testB",
            "ann_id": [5],
            "category_id": [18],
            "no_target": False,
            "file_name": "COCO_val2014_000000000102_4.jpg",
            "sentences": [sentence(5, "tiny dog")],
        },
    ]


def make_grefcoco(root: Path, refs=None) -> Path:
    """``root/grefcoco/{grefs(unc).json, instances.json}`` and ``root/images/train2014``."""
    write_instances(root / "grefcoco")
    (root / "grefcoco" / "grefs(unc).json").write_text(json.dumps(grefcoco_refs() if refs is None else refs))
    write_images(root / "images" / "train2014")
    return root


def refzom_refs() -> list[dict]:
    return [
        {
            "ref_id": 10,
            "image_id": 101,
            "split": "train",
            "ann_id": 1,
            "category_id": 1,
            "source": "one",
            "sent_ids": [10],
            "sentences": [sentence(10, "the person on the left")],
        },
        {
            "ref_id": 11,
            "image_id": 101,
            "split": "train",
            "ann_id": [1, 2],
            "category_id": [1, 1],
            "source": "many",
            "sent_ids": [11],
            "sentences": [sentence(11, "all people")],
        },
        {
            "ref_id": 12,
            "image_id": 102,
            "split": "test",
            "ann_id": 4,
            "category_id": 18,
            "source": "zero",
            "sent_ids": [12, 13],
            "sentences": [sentence(12, "the cat"), sentence(13, "a red car")],
        },
        {
            "ref_id": 13,
            "image_id": 102,
            "split": "test",
            "ann_id": 4,
            "category_id": 18,
            "sent_ids": [14],
            "sentences": [sentence(14, "the dog")],
        },
    ]


def make_refzom(root: Path, refs=None) -> Path:
    """``root/ref-zom/{refs(final).p, instances.json}`` and the merged ``root/images/trainval2014``."""
    write_instances(root / "ref-zom")
    with open(root / "ref-zom" / "refs(final).p", "wb") as f:
        pickle.dump(refzom_refs() if refs is None else refs, f)
    write_images(root / "images" / "trainval2014")
    return root


def rrefcoco_refs() -> list[dict]:
    return [
        {
            "ref_id": 20,
            "image_id": 101,
            "split": "val",
            "ann_id": 1,
            "category_id": 1,
            "sent_ids": [20, 21, 22],
            "sentences": [
                sentence(20, "person on the left"),
                sentence(21, "left person", exist=True),
                sentence(22, "the green umbrella", exist=0),
            ],
        },
        {
            "ref_id": 21,
            "image_id": 102,
            "split": "train",
            "ann_id": 4,
            "category_id": 18,
            "sent_ids": [23],
            "sentences": [sentence(23, "the dog", exist=1)],
        },
    ]


def refcoco_refs(split_by: str = "unc") -> list[dict]:
    splits = {"unc": ("train", "testA"), "google": ("train", "val"), "umd": ("train", "test")}[split_by]
    return [
        {
            "ref_id": 30,
            "image_id": 101,
            "split": splits[0],
            "ann_id": 2,
            "category_id": 1,
            "sent_ids": [30, 31],
            "file_name": "COCO_train2014_000000000101_30.jpg",
            "sentences": [sentence(30, "THE LADY ON THE RIGHT"), sentence(31, "right woman")],
        },
        {
            "ref_id": 31,
            "image_id": 102,
            "split": splits[1],
            "ann_id": 4,
            "category_id": 18,
            "sent_ids": [32],
            "file_name": "COCO_val2014_000000000102_31.jpg",
            "sentences": [sentence(32, "dog")],
        },
    ]


def make_refer_style(root: Path, folder: str, split_by: str, refs: list[dict]) -> Path:
    """``root/<folder>/{refs(<split_by>).p, instances.json}`` and ``root/images/train2014``."""
    write_instances(root / folder)
    with open(root / folder / f"refs({split_by}).p", "wb") as f:
        pickle.dump(refs, f)
    write_images(root / "images" / "train2014")
    return root
