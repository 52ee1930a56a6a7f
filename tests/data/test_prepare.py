import argparse
import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from refseg.data import decode_rle, merge_instances, prepare_dataset
from refseg_cli import data as data_command
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


class _FakeHfApi:
    """Records what ``refseg data prepare --push-to-hub`` would create and upload (no network)."""

    calls: list[tuple] = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, repo_type=None, private=None, exist_ok=False):
        _FakeHfApi.calls.append(("create_repo", repo_id, repo_type, private, self.token))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id, repo_type, folder_path, allow_patterns, commit_message):
        from huggingface_hub.utils import filter_repo_objects

        folder = Path(folder_path)
        names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        sent = {
            n: (folder / n).read_bytes() for n in filter_repo_objects(names, allow_patterns=allow_patterns)
        }
        _FakeHfApi.calls.append(("upload_folder", repo_id, repo_type, sent))
        return type("CommitInfo", (), {"commit_url": f"https://hub/datasets/{repo_id}/commit/1"})()


def test_cli_wiring_and_push_to_hub_with_token_private_card_and_stats(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    _FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeHfApi)
    root, out = make_grefcoco(tmp_path / "src"), tmp_path / "out"
    token = "hf_FAKEfakeFAKE0123456789"
    args = build_parser().parse_args(
        ["prepare", "grefcoco", "--root", str(root), "--output", str(out), "--push-to-hub", "org/grefcoco"]
        + ["--num-proc", "1", "--token", token, "--private"]
    )
    assert (args.dataset, args.push_to_hub, args.num_proc, args.split_by) == (
        "grefcoco",
        "org/grefcoco",
        1,
        None,
    )
    assert data_command.run(args) == 0
    (_, repo, repo_type, private, used_token), (_, _, upload_type, sent) = _FakeHfApi.calls
    assert (repo, repo_type, private, used_token, upload_type) == (
        "org/grefcoco",
        "dataset",
        True,
        token,
        "dataset",
    )
    assert {"README.md", "stats.json", "data/train-00000-of-00001.parquet"} <= set(sent)
    assert json.loads(sent["stats.json"])["dataset"] == "grefcoco"
    card = sent["README.md"].decode()
    assert "- split: testA" in card and "pretty_name: grefcoco" in card and "| val | 2 |" in card
    assert not [p for p in out.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    printed = json.loads(capsys.readouterr().out)
    assert (
        printed["num_rows"]["train"] == 2
        and printed["dropped_and_counts"]["instances_without_valid_segmentation"] == 1
    )
    assert sorted(datasets.load_dataset(str(out))) == ["testA", "testB", "train", "val"]  # the card's configs
    args = build_parser().parse_args(
        ["prepare", "grefcoco", "--root", str(root), "--output", str(out), "--private"]
    )
    with pytest.raises(ValueError, match="--token and --private apply to --push-to-hub"):
        data_command.run(args)


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
