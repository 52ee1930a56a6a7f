"""Load a dataset of the refseg row schema from a folder, a file or the Hub, every split, images left encoded.

One function for the example scripts and for users: the folder that ``refseg data prepare`` writes (parquet
shards and a README listing the splits, ``docs/data.md``), another folder or file of parquet, a
``save_to_disk`` folder (of a ``DatasetDict``, or of one ``Dataset``) or a Hub id. The image column stays
encoded, so that refseg's image loader (``refseg.data.images.load_row_image``: allowed formats, pixel cap,
EXIF orientation) decodes every image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import datasets

from .images import without_image_decoding

__all__ = ["load_referring_dataset"]


def _parquet_files_by_split(path: Path, splits: Sequence[str]) -> dict[str, list[str]]:
    """For each of ``splits``, the parquet files under ``path`` with the split's name in the file or folder name."""
    files = {}
    for split in splits:
        found = sorted(str(f) for f in path.rglob("*.parquet") if split in f.stem or split in f.parent.name)
        if found:
            files[split] = found
    return files


def load_referring_dataset(
    source: str | os.PathLike,
    *,
    split_name: str | None = None,
    splits: Sequence[str] | None = None,
    hub: bool = False,
) -> datasets.DatasetDict:
    """Every split of the dataset at ``source``, with the image column not decoded.

    Args:
        source: a folder written by ``refseg data prepare`` (or any folder ``datasets.load_dataset`` reads, such
            as a Hub snapshot), a folder or file of parquet shards, a ``save_to_disk`` folder, or, with ``hub``,
            a Hub dataset id.
        split_name: the name of a dataset that has one split only (a single parquet file, a ``save_to_disk``
            folder of one ``Dataset``) when it does not carry its own (``Dataset.split``); default: the file's or
            folder's name.
        splits: for a folder of parquet files without a README that lists its splits, the splits to read: the
            files of a split are those with its name in their file or folder name. Without ``splits`` such a
            folder is read by ``datasets.load_dataset``, which names splits by its own patterns.
        hub: ``source`` is a Hub id (``datasets.load_dataset(source)``).

    Raises:
        FileNotFoundError: if ``source`` does not exist (and ``hub`` is off).
        ValueError: if ``source`` is neither parquet nor a ``save_to_disk`` folder.
    """
    if hub:
        return without_image_decoding(datasets.load_dataset(str(source)))
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if (path / "dataset_dict.json").is_file():
        loaded = datasets.load_from_disk(str(path))
    elif (path / "dataset_info.json").is_file():  # save_to_disk of one Dataset
        loaded = datasets.load_from_disk(str(path))
    elif path.is_file():
        loaded = datasets.load_dataset("parquet", data_files=str(path), split="train")
        loaded = datasets.DatasetDict({split_name or path.stem: loaded})
    elif splits is not None and not (path / "README.md").is_file():
        files = _parquet_files_by_split(path, splits)
        if not files:
            raise ValueError(f"{path} has no parquet file of the splits {', '.join(splits)}")
        loaded = datasets.load_dataset("parquet", data_files=files)
    elif any(path.rglob("*.parquet")):
        loaded = datasets.load_dataset(str(path))
    else:
        raise ValueError(f"{path} is neither a parquet file/folder nor a save_to_disk folder")
    if isinstance(loaded, datasets.Dataset):
        own = str(loaded.split) if loaded.split is not None else None
        loaded = datasets.DatasetDict({own or split_name or path.name: loaded})
    return without_image_decoding(loaded)
