"""``refseg data prepare <dataset> --root DIR --output DIR``: benchmark files to parquet in the refseg schema.

With ``--push-to-hub ORG/NAME`` (and ``--token``, ``--private``) the prepared folder is uploaded to a Hub
dataset repository in one commit: the parquet shards, ``stats.json`` and a dataset card (``README.md``:
the splits as ``configs``, row counts, what was dropped, how to load it). The token is never written.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

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
    prep.add_argument("dataset", choices=DATASETS, help="which benchmark to prepare")
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
        "--push-to-hub",
        default=None,
        metavar="ORG/NAME",
        help="also upload the parquet shards, stats.json and a dataset card to this Hub dataset repository",
    )
    prep.add_argument(
        "--token", default=None, help="Hub token for --push-to-hub (default: your saved login or HF_TOKEN)"
    )
    prep.add_argument(
        "--private", action="store_true", help="create the --push-to-hub repository as a private one"
    )
    prep.add_argument("--num-proc", type=positive_int, default=None, help="processes generating rows")
    prep.add_argument(
        "--rows-per-shard",
        type=positive_int,
        default=2000,
        help="rows per parquet shard (default 2000)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``refseg data prepare``; bad input raises ``RefsegDataError`` (a ``ValueError``) or
    ``FileNotFoundError`` with a one-line message naming the file and field."""
    from refseg.data.prepare import prepare_dataset
    from refseg.data.validate import RefsegDataError

    if (args.token or args.private) and not args.push_to_hub:
        raise RefsegDataError("--token and --private apply to --push-to-hub, which was not given")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stats = prepare_dataset(
        args.dataset,
        args.root,
        args.output,
        image_dir=args.image_dir,
        split_by=args.split_by,
        num_proc=args.num_proc,
        rows_per_shard=args.rows_per_shard,
    )
    if args.push_to_hub:
        url = push_prepared(args.output, args.push_to_hub, stats, token=args.token, private=args.private)
        logging.getLogger(__name__).info("pushed to %s", url)
    print(json.dumps({"num_rows": stats["num_rows"], "dropped_and_counts": stats["total"]}, indent=2))
    return 0


UPLOAD_PATTERNS = ["data/*.parquet", "README.md", "stats.json"]


def dataset_card(stats: dict, repo_id: str) -> str:
    """The Hub dataset card of a prepared benchmark: ``configs`` (one per split), tags and a summary."""
    name, rows = stats.get("dataset", "refseg dataset"), stats.get("num_rows", {})
    lines = ["---", f"pretty_name: {name} (refseg schema)", "task_categories:", "- image-segmentation"]
    lines += [
        "tags:",
        "- refseg",
        "- referring-expression-segmentation",
        "configs:",
        "- config_name: default",
    ]
    lines += ["  data_files:"]
    for split in rows:
        lines += [f"  - split: {split}", f"    path: data/{split}-*.parquet"]
    lines += ["---", "", f"# {name} in the refseg schema", ""]
    lines += [
        f"The `{name}` annotations converted by `refseg data prepare {name}` to one row per expression (image "
        'embedded, instances as COCO RLE; see refseg\'s docs/data.md, "Row schema"). The images and '
        "annotations keep the licence of the original dataset.",
        "",
        "| split | rows |",
        "|---|---|",
        *(f"| {split} | {count} |" for split, count in rows.items()),
        "",
        "What was read and dropped (`stats.json`): "
        + ", ".join(f"{k} {v}" for k, v in stats.get("total", {}).items())
        + ".",
        "",
        "```python",
        "import datasets",
        "",
        f'ds = datasets.load_dataset("{repo_id}")',
        "```",
        "",
    ]
    return "\n".join(lines)


def push_prepared(
    output, repo_id: str, stats: dict, *, token: str | None = None, private: bool = False
) -> str:
    """Upload a prepared folder (parquet shards, ``stats.json``, a dataset card) in one commit; returns its URL."""
    from huggingface_hub import HfApi

    output = Path(output)
    (output / "README.md").write_text(dataset_card(stats, repo_id))
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True).repo_id
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(output),
        allow_patterns=UPLOAD_PATTERNS,
        commit_message=f"refseg data prepare {stats.get('dataset', '')}".strip(),
    )
    stats["pushed_to"] = repo_id
    return str(getattr(info, "commit_url", info))
