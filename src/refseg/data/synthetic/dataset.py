"""``datasets`` builders for synthetic referring scenes in the common row schema (``docs/data.md``, "Row schema").

Image ``k`` of a stream is drawn from its own seed sequence ``(seed, crc32(split), k)``, so a dataset is
deterministic for a seed, a shorter dataset is a prefix of a longer one, and the splits of
``synthetic_scene_splits`` (streams "train", "validation", "test") never share a scene generator.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import zlib
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np

from ..masks import encode_mask, mask_to_bbox
from ..schema import referring_features
from .expressions import check_kind_weights, sample_expressions
from .scene import Scene, sample_scene
from .shapes import SHAPES

CATEGORIES: dict[int, str] = {i + 1: s for i, s in enumerate(SHAPES)}  # category_id -> shape name
MAX_OBJECTS = 100  # ann_id = image_id * MAX_OBJECTS + object index
# fewer scenes than this are generated in a second or two: no "Generating ... split" progress bar for them
PROGRESS_BAR_MIN_IMAGES = 200


def _code_version() -> str:
    """Hash of this package's sources: part of the cache fingerprint, so edits never serve stale rows."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def scene_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    """Generator of image ``index`` in ``split``; stream 0 draws the scene, stream 1 the sentences."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(split.encode()), index, stream]))


def scene_rows(
    scene: Scene,
    image_id: int,
    sentences_per_image: int,
    rng: np.random.Generator,
    kind_weights: dict[str, float] | None = None,
    include_kind: bool = True,
) -> list[dict]:
    """The dataset rows (one per sampled expression) of one scene."""
    buffer = io.BytesIO()
    scene.render().save(buffer, format="PNG")
    image = {"bytes": buffer.getvalue(), "path": None}
    instances = []
    for k, (obj, mask) in enumerate(zip(scene.objects, scene.visible_masks(), strict=True)):
        instances.append(
            {
                "ann_id": image_id * MAX_OBJECTS + k,
                "category_id": SHAPES.index(obj.shape) + 1,
                "bbox": mask_to_bbox(mask),
                "segmentation": encode_mask(mask),
            }
        )
    rows = []
    for j, ref in enumerate(sample_expressions(scene, sentences_per_image, rng, kind_weights)):
        sent_id = image_id * sentences_per_image + j
        row = {
            "image": image,
            "image_id": image_id,
            "ref_id": sent_id,
            "sent_id": sent_id,
            "sentence": ref.sentence,
            "no_target": not ref.targets,
            "instances": [instances[i] for i in sorted(ref.targets)],
        }
        if include_kind:
            row["kind"] = ref.kind
        rows.append(row)
    return rows


def _generate(
    num_images: int,
    seed: int,
    split: str,
    start_id: int,
    image_size: int,
    sentences_per_image: int,
    kind_weights: dict[str, float] | None,
    scene_kwargs: dict,
    include_kind: bool,
    code_version: str,
) -> Iterator[dict]:
    del code_version  # only part of the cache fingerprint
    for k in range(num_images):
        scene = sample_scene(scene_rng(seed, split, k, 0), image_size=image_size, **scene_kwargs)
        yield from scene_rows(
            scene, start_id + k, sentences_per_image, scene_rng(seed, split, k, 1), kind_weights, include_kind
        )


def synthetic_features(include_kind: bool = True) -> datasets.Features:
    """The row features of synthetic scenes: the common schema, plus the sentence ``kind`` if asked."""
    return referring_features({"kind": datasets.Value("string")} if include_kind else None)


def synthetic_scenes(
    num_images: int,
    seed: int = 0,
    image_size: int = 256,
    sentences_per_image: int = 3,
    *,
    split: str = "train",
    start_id: int = 0,
    kind_weights: dict[str, float] | None = None,
    num_objects: tuple[int, int] = (3, 6),
    min_visible: float = 0.6,
    texture: bool = True,
    include_kind: bool = True,
    cache_dir: str | None = None,
    keep_in_memory: bool = False,
    progress: bool | None = None,
) -> datasets.Dataset:
    """Synthetic referring scenes as a ``datasets.Dataset`` in the refseg row schema (``docs/data.md``).

    ``num_images`` scenes of 3-6 shapes, ``sentences_per_image`` distinct expressions each (kinds drawn
    from ``kind_weights``, default single 0.5 / multi 0.3 / no_target 0.2); ``image_id`` runs from
    ``start_id``; ``ref_id == sent_id == image_id * sentences_per_image + j``. The extra string column
    ``kind`` ("single" / "multi" / "no_target") is added unless ``include_kind=False``.

    ``progress``: show ``datasets``' "Generating ... split" progress bar; ``None`` (default) shows it only
    for ``PROGRESS_BAR_MIN_IMAGES`` (200) scenes or more, so that a few scenes (``refseg demo``, the web
    app's example button) print nothing. ``False`` never shows it; neither changes the global setting
    (``datasets.disable_progress_bars()`` still silences every bar).
    """
    if num_images < 0 or sentences_per_image < 1:
        raise ValueError(
            f"num_images must be >= 0 and sentences_per_image >= 1, got {num_images} and {sentences_per_image}"
        )
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    check_kind_weights(kind_weights)
    gen_kwargs = {
        "num_images": int(num_images),
        "seed": int(seed),
        "split": str(split),
        "start_id": int(start_id),
        "image_size": int(image_size),
        "sentences_per_image": int(sentences_per_image),
        "kind_weights": kind_weights,
        "scene_kwargs": {"num_objects": tuple(num_objects), "min_visible": min_visible, "texture": texture},
        "include_kind": include_kind,
        "code_version": _code_version(),
    }
    features = synthetic_features(include_kind)
    if num_images == 0:
        return datasets.Dataset.from_dict({k: [] for k in features}, features=features)
    if progress is None:
        progress = num_images >= PROGRESS_BAR_MIN_IMAGES
    with contextlib.nullcontext() if progress else _no_progress_bars():
        return datasets.Dataset.from_generator(
            _generate,
            features=features,
            gen_kwargs=gen_kwargs,
            cache_dir=cache_dir,
            keep_in_memory=keep_in_memory,
            split=datasets.Split(split) if split in ("train", "validation", "test") else datasets.Split.TRAIN,
        )


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence ``datasets``' progress bars inside the block; restore the previous setting after it."""
    if datasets.are_progress_bars_disabled():
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


def synthetic_scene_splits(
    train: int = 1000,
    validation: int = 200,
    test: int = 200,
    seed: int = 0,
    image_size: int = 256,
    **kwargs,
) -> datasets.DatasetDict:
    """train / validation / test ``synthetic_scenes`` from disjoint seed streams, with disjoint ids.

    Other keyword arguments (``sentences_per_image``, ``kind_weights``, ...) go to ``synthetic_scenes``.
    """
    for name in ("split", "start_id"):
        if name in kwargs:
            raise ValueError(
                f"synthetic_scene_splits sets {name!r} itself; pass it to synthetic_scenes instead"
            )
    out, start = {}, 0
    for name, count in (("train", train), ("validation", validation), ("test", test)):
        out[name] = synthetic_scenes(count, seed, image_size, split=name, start_id=start, **kwargs)
        start += count
    return datasets.DatasetDict(out)
