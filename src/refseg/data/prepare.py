"""Prepare a benchmark: convert the official files and write parquet shards (+ stats) per split.

Output layout: ``<output>/data/<split>-<i>-of-<n>.parquet`` (images embedded as bytes), a README.md whose
YAML lists the splits, and ``stats.json`` with the counts of what was read and dropped. Both
``datasets.load_dataset(output)`` and ``load_dataset("parquet", data_dir=output)`` read it back.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from functools import partial
from pathlib import Path

import datasets
from datasets.arrow_writer import ParquetWriter
from tqdm.auto import tqdm

from .grefcoco import build_grefcoco
from .refcoco import build_refcoco
from .refzom import build_refzom
from .rrefcoco import build_rrefcoco
from .validate import RefsegDataError, as_split_name

logger = logging.getLogger(__name__)

BUILDERS = {
    "grefcoco": build_grefcoco,
    "refzom": build_refzom,
    "rrefcoco": partial(build_rrefcoco, variant="rrefcoco"),
    "rrefcoco+": partial(build_rrefcoco, variant="rrefcoco+"),
    "rrefcocog": partial(build_rrefcoco, variant="rrefcocog"),
    "refcoco": partial(build_refcoco, variant="refcoco"),
    "refcoco+": partial(build_refcoco, variant="refcoco+"),
    "refcocog": partial(build_refcoco, variant="refcocog"),
}


def build_benchmark(name: str, root, image_dir=None, split_by=None, num_proc=None, cache_dir=None):
    """``(DatasetDict, stats)`` for one of ``BUILDERS`` (e.g. ``"grefcoco"``, ``"refcocog"``)."""
    if name not in BUILDERS:
        raise RefsegDataError(f"unknown dataset {name!r}; choose from {sorted(BUILDERS)}")
    kwargs = {"image_dir": image_dir, "num_proc": num_proc, "cache_dir": cache_dir}
    if split_by is not None:
        kwargs["split_by"] = split_by
    return BUILDERS[name](root, **kwargs)


def write_parquet(
    dataset: datasets.DatasetDict,
    output,
    rows_per_shard: int = 2000,
    batch_size: int = 100,
    progress: bool = True,
) -> dict[str, list[str]]:
    """Write each split as parquet shards with the image files embedded; returns the written paths.

    Split names must be letters, digits and ``_`` (they become file names); ``rows_per_shard`` and
    ``batch_size`` must be positive.
    """
    for name, value in (("rows_per_shard", rows_per_shard), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise RefsegDataError(f"{name} must be a positive integer, got {value!r}")
    for split in dataset:
        as_split_name(split, "write_parquet")
    data_dir = Path(output) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for split in dataset:  # shards of an earlier run would otherwise be read back too
        for stale in data_dir.glob(f"{split}-*.parquet"):
            stale.unlink()
    written: dict[str, list[str]] = {}
    bar = tqdm(
        total=sum(len(d) for d in dataset.values()), desc="writing parquet", unit="row", disable=not progress
    )
    for split, ds in dataset.items():
        n = max(1, math.ceil(len(ds) / rows_per_shard))
        written[split] = []
        for i in range(n):
            shard = ds.shard(num_shards=n, index=i, contiguous=True)
            path = data_dir / f"{split}-{i:05d}-of-{n:05d}.parquet"
            writer = ParquetWriter(path=str(path), features=ds.features, embed_local_files=True)
            for table in shard.with_format("arrow").iter(batch_size=batch_size):
                writer.write_table(table)
                bar.update(table.num_rows)
            writer.finalize()
            written[split].append(str(path))
    bar.close()
    card = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in dataset:
        card += [f"  - split: {split}", f"    path: data/{split}-*.parquet"]
    card += [
        "---",
        "",
        "Prepared with `refseg data prepare`; see stats.json for what was read and dropped.",
        "",
    ]
    (Path(output) / "README.md").write_text("\n".join(card))
    return written


def prepare_dataset(
    name: str,
    root,
    output,
    image_dir=None,
    split_by: str | None = None,
    num_proc: int | None = None,
    push_to_hub: str | None = None,
    rows_per_shard: int = 2000,
    progress: bool = True,
) -> dict:
    """Convert ``name`` from ``root``, write parquet + ``stats.json`` to ``output``, optionally push; returns stats."""
    if name not in BUILDERS:
        raise RefsegDataError(f"unknown dataset {name!r}; choose from {sorted(BUILDERS)}")
    if num_proc is not None and (isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1):
        raise RefsegDataError(f"num_proc must be a positive integer, got {num_proc!r}")
    if isinstance(rows_per_shard, bool) or not isinstance(rows_per_shard, int) or rows_per_shard < 1:
        raise RefsegDataError(f"rows_per_shard must be a positive integer, got {rows_per_shard!r}")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise RefsegDataError(f"output {output} exists and is not a folder")
    output.mkdir(parents=True, exist_ok=True)
    bars_were_enabled = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    cache_dir = tempfile.mkdtemp(prefix=".refseg-cache-", dir=output)
    try:
        dataset, stats = build_benchmark(name, root, image_dir, split_by, num_proc, cache_dir)
        stats["num_rows"] = {split: len(ds) for split, ds in dataset.items()}
        (output / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        logger.info("prepared %s: %s", name, json.dumps(stats["total"]))
        stats["files"] = write_parquet(dataset, output, rows_per_shard=rows_per_shard, progress=progress)
        if push_to_hub:
            dataset.push_to_hub(push_to_hub)
            stats["pushed_to"] = push_to_hub
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
        if bars_were_enabled:
            datasets.enable_progress_bars()
    return stats
