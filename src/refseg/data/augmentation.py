"""Presence and plurality augmentation (Kim, Lee and Kwak, section 3.3).

A batch transform over decoded samples (dicts with ``image`` (PIL or uint8 array), ``sentence``,
``instances`` (COCO RLE per instance, as in the dataset rows) and ``no_target``). From the batch's
single-target samples B~ it makes:

* synthetic no-target samples: each sample of B~ is, with probability ``tau_no``, given the sentence
  of another sample of B~ (never one showing the same ``image_id``) and loses its instances;
* one synthetic multi-target sample: each remaining sample of B~ is selected independently with
  probability ``tau_multi`` (visited in random order, at most 4); if at least two are selected their
  images go into random cells of a 2x2 grid, their instance masks and boxes are moved with them, and
  their sentences are joined with "and" in grid (row-major) order. The mosaic replaces the first
  selected sample, preserving the batch size. A single selected sample makes no mosaic, since it would
  not be multi-target.

Every output sample carries the plurality labels of section 3.4: ``num_targets`` (number of
instances) and ``plural`` (``num_targets > 1``), plus ``augmentation`` ("", "no_target", "mosaic").
Cells are ``cell_size`` squares (images resized to fit, keeping aspect, masks nearest) or, by
default, the largest height and width of the selected images with every image pasted unscaled at its
cell's top-left corner (masks move exactly, the rest of a cell is black).

The batch is the list it is given. In a ``collate_fn``, as in ``examples/train.py``, that is one process's
batch (``per_device_train_batch_size``), not the paper's global batch of 48 over two GPUs (section 4.2);
``docs/models/presence_plurality.md`` says what that changes.

Use it on decoded rows before the processor, e.g. in a ``DataLoader`` ``collate_fn``::

    augment = PresencePluralityAugmentation(tau_no=0.05, tau_multi=0.05, seed=0)
    def collate(rows):
        rows = augment(rows)
        return processor(images=[r["image"] for r in rows], text=[r["sentence"] for r in rows],
                         instances=[r["instances"] for r in rows])
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .masks import decode_rle, encode_mask, rle_size

_REQUIRED = ("image", "sentence", "instances", "no_target")


def plurality_labels(sample: dict) -> dict:
    """``num_targets`` and ``plural`` of a sample (section 3.4: free from the instance annotations)."""
    n = 0 if sample["no_target"] else len(sample["instances"])
    return {"num_targets": n, "plural": n > 1}


def _as_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3) or a grey (H, W) array, got shape {arr.shape}")
    return arr.astype(np.uint8, copy=False)


class PresencePluralityAugmentation:
    """Synthetic no-target and 2x2 multi-target samples from a batch (Kim, Lee and Kwak, section 3.3).

    Args:
        tau_no: probability that a single-target sample becomes a no-target sample (paper: 0.05).
        tau_multi: probability that a single-target sample is selected for the mosaic (paper: 0.05).
        seed: seed of the private random generator (same seed and batches give the same output).
        cell_size: side of the square grid cells in pixels (images resized to fit); None pastes unscaled.
        max_tiles: at most this many samples per mosaic (4 for a 2x2 grid).
    """

    def __init__(
        self,
        tau_no: float = 0.05,
        tau_multi: float = 0.05,
        seed: int | None = None,
        cell_size: int | None = None,
        max_tiles: int = 4,
    ):
        for name, value in (("tau_no", tau_no), ("tau_multi", tau_multi)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        if not 2 <= max_tiles <= 4:
            raise ValueError(f"max_tiles must be 2, 3 or 4 (a 2x2 grid), got {max_tiles}")
        if cell_size is not None and cell_size < 1:
            raise ValueError(f"cell_size must be a positive number of pixels, got {cell_size}")
        self.tau_no, self.tau_multi, self.cell_size, self.max_tiles = tau_no, tau_multi, cell_size, max_tiles
        self.rng = random.Random(seed)

    def __call__(self, samples: Sequence[dict]) -> list[dict]:
        for i, s in enumerate(samples):
            missing = [k for k in _REQUIRED if k not in s]
            if missing:
                raise ValueError(f"sample {i} lacks {missing}; expected keys {list(_REQUIRED)}")
        out = [{**s, **plurality_labels(s), "augmentation": ""} for s in samples]
        singles = [i for i, s in enumerate(samples) if not s["no_target"] and len(s["instances"]) == 1]
        converted = self._no_target(samples, out, singles)
        remaining = [i for i in singles if i not in converted]
        self.rng.shuffle(remaining)
        chosen = []
        for i in remaining:
            if len(chosen) == self.max_tiles:
                break
            if self.rng.random() < self.tau_multi:
                chosen.append(i)
        if len(chosen) >= 2:
            cells = self.rng.sample(range(4), len(chosen))
            out[chosen[0]] = self.mosaic(samples[chosen[0]], [samples[i] for i in chosen], cells)
        return out

    def _no_target(self, samples, out, singles) -> set[int]:
        """Section 3.3 "Generating Synthetic No-Target Samples": swap in another sample's sentence."""
        converted = set()
        for i in singles:
            if self.rng.random() >= self.tau_no:
                continue
            donors = [j for j in singles if j != i and not _same_image(samples[i], samples[j])]
            if not donors:
                continue
            j = self.rng.choice(donors)
            sample = {**samples[i], "sentence": samples[j]["sentence"], "instances": [], "no_target": True}
            sample.update(num_targets=0, plural=False, augmentation="no_target")
            if "exist" in sample:
                sample["exist"] = False
            if "source" in sample:
                sample["source"] = "zero"
            out[i] = sample
            converted.add(i)
        return converted

    def mosaic(self, base: dict, parts: Sequence[dict], cells: Sequence[int]) -> dict:
        """2x2 grid of ``parts`` placed in ``cells`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)."""
        images = [_as_array(p["image"]) for p in parts]
        scales = [1.0] * len(parts)
        if self.cell_size is None:
            ch, cw = max(a.shape[0] for a in images), max(a.shape[1] for a in images)
        else:
            ch = cw = self.cell_size
            scales = [min(ch / a.shape[0], cw / a.shape[1]) for a in images]
        canvas = np.zeros((2 * ch, 2 * cw, 3), dtype=np.uint8)
        instances, sentences = [], []
        for k in sorted(range(len(parts)), key=lambda k: cells[k]):  # grid order
            part, arr, s = parts[k], images[k], scales[k]
            oy, ox = (cells[k] // 2) * ch, (cells[k] % 2) * cw
            h, w = max(1, round(arr.shape[0] * s)), max(1, round(arr.shape[1] * s))
            if (h, w) != arr.shape[:2]:
                arr = np.asarray(Image.fromarray(arr).resize((w, h), Image.BILINEAR))
            canvas[oy : oy + h, ox : ox + w] = arr
            for inst in part["instances"]:
                claimed = rle_size(inst["segmentation"], "instance mask")
                if claimed != images[k].shape[:2]:  # before decoding: the claimed size allocates nothing
                    raise ValueError(
                        f"instance mask {claimed} does not match its image {images[k].shape[:2]}"
                    )
                mask = decode_rle(inst["segmentation"], claimed)
                if (h, w) != mask.shape:
                    mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))
                full = np.zeros(canvas.shape[:2], dtype=bool)
                full[oy : oy + h, ox : ox + w] = mask
                x, y, bw, bh = (float(v) for v in inst["bbox"])
                instances.append(
                    {
                        **inst,
                        "bbox": [x * s + ox, y * s + oy, bw * s, bh * s],
                        "segmentation": encode_mask(full),
                    }
                )
            sentences.append(part["sentence"])
        image = Image.fromarray(canvas) if isinstance(base["image"], Image.Image) else canvas
        sample = {**base, "image": image, "sentence": " and ".join(sentences), "instances": instances}
        sample.update(
            no_target=False, num_targets=len(instances), plural=len(instances) > 1, augmentation="mosaic"
        )
        for key in ("image_id", "ref_id", "sent_id"):
            if key in sample:
                sample[key] = -1  # synthetic: belongs to no original image/ref/sentence
        if "exist" in sample:
            sample["exist"] = True
        if "source" in sample:
            sample["source"] = "many"
        return sample


def _same_image(a: dict, b: dict) -> bool:
    if a["image"] is b["image"]:
        return True
    return "image_id" in a and "image_id" in b and a["image_id"] == b["image_id"] and a["image_id"] != -1
