import argparse
import json

import datasets
import numpy as np
import pytest

from refseg.data import command as data_command
from refseg.data import decode_rle, merge_instances, prepare_dataset
from tests.data.refer_fixtures import MASK_1, MASK_2, make_grefcoco, make_refzom


def build_parser():
    """The ``refseg data`` parser as the CLI builds it (cli.py calls ``add_arguments`` on its sub-parser)."""
    parser = argparse.ArgumentParser(prog="refseg data")
    data_command.add_arguments(parser)
    return parser


def test_prepare_round_trip_parquet(tmp_path):
    root, out = make_grefcoco(tmp_path / "src"), tmp_path / "out"
    stats = prepare_dataset("grefcoco", root, out, rows_per_shard=1, progress=False)
    assert stats["num_rows"] == {"train": 2, "val": 2, "testA": 1, "testB": 1}
    assert sorted(p.name for p in (out / "data").iterdir())[:2] == [
        "testA-00000-of-00001.parquet",
        "testB-00000-of-00001.parquet",
    ]
    assert len(stats["files"]["train"]) == 2  # one row per shard
    saved = json.loads((out / "stats.json").read_text())
    assert saved["total"]["crowd_annotations_skipped"] == 1 and saved["num_rows"]["val"] == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".refseg-cache")]
    prepare_dataset(
        "grefcoco", root, out, progress=False
    )  # re-run: earlier shards are replaced, not mixed in
    assert sorted(p.name for p in (out / "data").glob("train-*")) == ["train-00000-of-00001.parquet"]
    assert datasets.is_progress_bar_enabled()
    for loaded in (datasets.load_dataset(str(out)), datasets.load_dataset("parquet", data_dir=str(out))):
        assert sorted(loaded) == ["testA", "testB", "train", "val"]
        row = loaded["train"][0]
        assert row["image"].size == (30, 20) and row["sentence"] == "two people"  # image bytes embedded
        assert np.array_equal(merge_instances(row["instances"], 20, 30), MASK_1 | MASK_2)
        assert loaded["val"][0]["no_target"] is True and loaded["val"]["ref_id"] == [1, 2]
    assert isinstance(loaded["train"].features["image"], datasets.Image)


def test_prepare_survives_moving_the_sources(tmp_path):
    root, out = make_refzom(tmp_path / "src"), tmp_path / "out"
    prepare_dataset("refzom", root, out, num_proc=2, progress=False)
    for p in sorted((root / "images" / "trainval2014").iterdir()):
        p.unlink()
    loaded = datasets.load_dataset(str(out))
    assert loaded["test"]["source"] == ["zero", "zero", "one"]
    assert np.array_equal(decode_rle(loaded["train"][0]["instances"][0]["segmentation"]), MASK_1)
    assert loaded["test"][2]["image"].size == (16, 16)


def test_cli_wiring_and_push_to_hub(tmp_path, monkeypatch, capsys):
    pushed = []
    monkeypatch.setattr(
        datasets.DatasetDict,
        "push_to_hub",
        lambda self, repo_id, **kw: pushed.append((repo_id, sorted(self))),
    )
    root, out = make_grefcoco(tmp_path / "src"), tmp_path / "out"
    args = build_parser().parse_args(
        [
            "prepare",
            "grefcoco",
            "--root",
            str(root),
            "--output",
            str(out),
            "--push-to-hub",
            "org/grefcoco",
            "--num-proc",
            "1",
        ]
    )
    assert (args.dataset, args.push_to_hub, args.num_proc, args.split_by) == (
        "grefcoco",
        "org/grefcoco",
        1,
        None,
    )
    assert data_command.run(args) == 0
    assert pushed == [("org/grefcoco", ["testA", "testB", "train", "val"])]
    printed = json.loads(capsys.readouterr().out)
    assert (
        printed["num_rows"]["train"] == 2
        and printed["dropped_and_counts"]["instances_without_valid_segmentation"] == 1
    )


def test_cli_rejects_unknown_dataset_and_bad_split_by():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", "refclef", "--root", "r", "--output", "o"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", "refcoco", "--root", "r", "--output", "o", "--split-by", "xyz"])


def test_prepare_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'coco'"):
        prepare_dataset("coco", tmp_path, tmp_path / "o", progress=False)


def test_cli_dataset_names_match_the_builders():
    from refseg.data import BUILDERS

    assert sorted(data_command.DATASETS) == sorted(BUILDERS)
