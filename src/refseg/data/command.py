"""``refseg data prepare <dataset> --root DIR --output DIR``: benchmark files to parquet in the refseg schema."""

from __future__ import annotations

import argparse
import json
import logging

# the names of ``prepare.BUILDERS``, kept here so that ``refseg --help`` imports no builder
DATASETS = ("grefcoco", "refcoco", "refcoco+", "refcocog", "refzom", "rrefcoco", "rrefcoco+", "rrefcocog")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``refseg data prepare`` sub-command and its options to ``parser``."""
    sub = parser.add_subparsers(dest="data_command", required=True)
    prep = sub.add_parser("prepare", help="convert official annotation files to parquet shards")
    prep.add_argument("dataset", choices=DATASETS)
    prep.add_argument(
        "--root", required=True, help="folder holding the refs file and instances.json (or <dataset>/)"
    )
    prep.add_argument(
        "--output", required=True, help="folder to write data/<split>-*.parquet, README.md, stats.json"
    )
    prep.add_argument(
        "--image-dir", default=None, help="image folder (default: <root>/images/train2014 or trainval2014)"
    )
    prep.add_argument(
        "--split-by", default=None, choices=["unc", "google", "umd", "final"], help="refs file variant"
    )
    prep.add_argument(
        "--push-to-hub", default=None, metavar="ORG/NAME", help="also upload with DatasetDict.push_to_hub"
    )
    prep.add_argument("--num-proc", type=positive_int, default=None, help="processes generating rows")
    prep.add_argument("--rows-per-shard", type=positive_int, default=2000)


def run(args: argparse.Namespace) -> int:
    """Run ``refseg data prepare``; bad input raises ``RefsegDataError`` (a ``ValueError``) or
    ``FileNotFoundError`` with a one-line message naming the file and field."""
    from .prepare import prepare_dataset

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stats = prepare_dataset(
        args.dataset,
        args.root,
        args.output,
        image_dir=args.image_dir,
        split_by=args.split_by,
        num_proc=args.num_proc,
        push_to_hub=args.push_to_hub,
        rows_per_shard=args.rows_per_shard,
    )
    print(json.dumps({"num_rows": stats["num_rows"], "dropped_and_counts": stats["total"]}, indent=2))
    return 0
