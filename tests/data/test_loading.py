"""refseg.data.load_referring_dataset: every source the example scripts accept, one function."""

import datasets
import pytest

import refseg
from refseg.data import load_referring_dataset, prepare_dataset
from tests.data import refer_fixtures as rf


@pytest.fixture(scope="module")
def scenes():
    return refseg.data.synthetic_scenes(num_images=2, seed=0, image_size=32)


def _encoded(ds: datasets.Dataset) -> bool:
    return ds.features["image"].decode is False


def test_a_prepared_folder_gives_its_splits_with_encoded_images(tmp_path):
    prepare_dataset("grefcoco", rf.make_grefcoco(tmp_path / "src"), tmp_path / "prepared", progress=False)
    dd = load_referring_dataset(tmp_path / "prepared")
    assert set(dd) == {"train", "val", "testA", "testB"} and all(_encoded(ds) for ds in dd.values())
    # a README lists the splits: names to look for in file names are not needed
    assert set(load_referring_dataset(tmp_path / "prepared", splits=("train", "val"))) == set(dd)


def test_save_to_disk_folders_of_a_dict_and_of_one_dataset(tmp_path, scenes):
    datasets.DatasetDict({"train": scenes, "validation": scenes}).save_to_disk(str(tmp_path / "dict"))
    dd = load_referring_dataset(tmp_path / "dict")
    assert set(dd) == {"train", "validation"} and len(dd["train"]) == len(scenes) and _encoded(dd["train"])
    unnamed = datasets.Dataset.from_dict(scenes.to_dict(), features=scenes.features)
    unnamed.save_to_disk(str(tmp_path / "one"))
    assert list(load_referring_dataset(tmp_path / "one")) == ["one"]  # the folder's name
    assert list(load_referring_dataset(tmp_path / "one", split_name="train")) == ["train"]
    named = datasets.Dataset.from_dict(scenes.to_dict(), features=scenes.features, split="val")
    named.save_to_disk(str(tmp_path / "named"))
    assert list(load_referring_dataset(tmp_path / "named", split_name="train")) == [
        "val"
    ]  # its own name wins


def test_parquet_files_and_folders(tmp_path, scenes):
    (tmp_path / "flat").mkdir()
    scenes.to_parquet(str(tmp_path / "flat" / "my_train_part.parquet"))
    scenes.select([0]).to_parquet(str(tmp_path / "flat" / "my_val_part.parquet"))
    dd = load_referring_dataset(tmp_path / "flat", splits=("train", "val"))
    assert {k: len(v) for k, v in dd.items()} == {"train": len(scenes), "val": 1} and _encoded(dd["val"])
    single = load_referring_dataset(tmp_path / "flat" / "my_val_part.parquet", split_name="train")
    assert {k: len(v) for k, v in single.items()} == {"train": 1}
    with pytest.raises(ValueError, match="has no parquet file of the splits test"):
        load_referring_dataset(tmp_path / "flat", splits=("test",))


def test_missing_and_foreign_sources_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        load_referring_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a parquet file/folder nor a save_to_disk folder"):
        load_referring_dataset(tmp_path / "empty")
