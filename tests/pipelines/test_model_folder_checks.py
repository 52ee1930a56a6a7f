"""Model folders that would allocate without bound, run with random layers or crash in Rust are refused first.

Each broken folder is a copy of a tiny model with one file edited; none of these tests allocates more than
the tiny model (the checks run before the model is built).
"""

from __future__ import annotations

import json
import resource
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoProcessor, pipeline

import refseg  # noqa: F401  (registers the Auto classes and the task)
from refseg.modeling.loading_checks import IncompleteCheckpointError, MissingWeightsWarning, ModelLoadingError
from refseg.pipelines.loading import load_referring_segmentation_model
from tests.processing_helpers import save_tiny_instalign


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_instalign(tmp_path_factory.mktemp("tiny_folder"))


def _copy(model_dir: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(model_dir, target)
    return target


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def memory_cap():
    """Cap the address space 2 GiB above what the process uses, so a regression fails instead of swapping."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + 2 * 2**30, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


LOADERS = {
    "AutoModel": lambda path: AutoModel.from_pretrained(path),
    "pipeline": lambda path: pipeline("referring-segmentation", model=str(path)),
    "strict loader": load_referring_segmentation_model,
}


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("num_queries", [10**7, 10**9])
def test_absurd_config_sizes_are_refused_before_building(
    model_dir, tmp_path, memory_cap, loader, num_queries
):
    folder = _copy(model_dir, tmp_path, "huge")
    _edit_json(folder / "config.json", lambda c: c.update(num_queries=num_queries))
    with pytest.raises(IncompleteCheckpointError, match=f"num_queries = {num_queries} is larger than the"):
        LOADERS[loader](folder)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_config_sizes_that_contradict_the_weights_name_the_field(model_dir, tmp_path, loader):
    folder = _copy(model_dir, tmp_path, "more_queries")
    _edit_json(folder / "config.json", lambda c: c.update(num_queries=1000))
    with pytest.raises(
        IncompleteCheckpointError,
        match=r"query_features\.weight: checkpoint \(8, 32\), config builds \(1000, 32\).*num_queries = 1000",
    ):
        LOADERS[loader](folder)


@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_truncated_weight_file_is_named(model_dir, tmp_path, loader):
    folder = _copy(model_dir, tmp_path, "truncated")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadingError, match=f"cannot read {weights}: the file is truncated"):
        LOADERS[loader](folder)


def test_a_processor_size_of_a_million_pixels_is_refused(model_dir, tmp_path, memory_cap, monkeypatch):
    folder = _copy(model_dir, tmp_path, "big_processor")
    _edit_json(
        folder / "processor_config.json",
        lambda c: c["image_processor"].update(size={"height": 10**6, "width": 10**6}),
    )
    for load in (AutoProcessor.from_pretrained, lambda p: pipeline("referring-segmentation", model=str(p))):
        with pytest.raises(ValueError, match="size height 1000000 is above refseg's limit of 4096 pixels"):
            load(folder)
    monkeypatch.setenv("REFSEG_MAX_INPUT_SIDE", str(10**6))  # the documented way to allow more
    assert AutoProcessor.from_pretrained(folder).image_processor.size["height"] == 10**6


def test_a_tokenizer_file_that_makes_the_tokenizers_library_panic_is_named(model_dir, tmp_path):
    folder = _copy(model_dir, tmp_path, "panicking_tokenizer")
    _edit_json(
        folder / "tokenizer.json",
        lambda t: t.update(normalizer={"type": "Precompiled", "precompiled_charsmap": "AAAA"}),
    )
    message = f"cannot load the tokenizer {folder / 'tokenizer.json'}: the tokenizers library panicked"
    for load in (
        load_referring_segmentation_model,
        lambda p: pipeline("referring-segmentation", model=str(p)),
    ):
        with pytest.raises(ModelLoadingError, match=message):
            load(folder)


def test_a_tokenizer_panic_on_a_sentence_becomes_a_value_error(model_dir):
    processor = AutoProcessor.from_pretrained(model_dir)

    class PanicException(BaseException):  # what pyo3 raises for a Rust panic
        pass

    class Panicking:
        name_or_path = str(model_dir)

        def __call__(self, *args, **kwargs):
            raise PanicException("NormalizedString bad split")

    processor.tokenizer = Panicking()
    with pytest.raises(ValueError, match=f"the tokenizer of {model_dir} panicked .*bad split"):
        processor(images=torch.zeros(3, 8, 8), text="the red circle")


def test_auto_model_warns_loudly_about_missing_weights(model_dir, tmp_path):
    folder = _copy(model_dir, tmp_path, "half")
    weights = load_file(folder / "model.safetensors")
    kept = dict(sorted(weights.items())[::2])
    save_file(kept, folder / "model.safetensors")
    missing = len(weights) - len(kept)
    with pytest.warns(
        MissingWeightsWarning, match=f"{missing} of {len(weights)} weights are missing .* RANDOM"
    ):
        AutoModel.from_pretrained(folder)
    with pytest.raises(IncompleteCheckpointError, match=f"{missing} missing weight"):
        load_referring_segmentation_model(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingWeightsWarning)
        AutoModel.from_pretrained(model_dir)  # a complete folder loads silently


def test_a_torch_bin_folder_is_checked_too(model_dir, tmp_path, memory_cap):
    folder = _copy(model_dir, tmp_path, "bin")
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    _edit_json(folder / "config.json", lambda c: c.update(num_queries=10**9))
    with pytest.raises(IncompleteCheckpointError, match="num_queries = 1000000000 is larger than the"):
        AutoModel.from_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ModelLoadingError, match=f"cannot read {folder / 'pytorch_model.bin'}"):
        AutoModel.from_pretrained(folder)


def _hub_cache(model_dir: Path, root: Path, repo: str) -> Path:
    """A Hugging Face cache holding ``repo`` (as a download would leave it), for offline loading."""
    snapshot = root / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    shutil.copytree(model_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    return snapshot


def test_hub_models_are_checked_before_building_too(model_dir, tmp_path, memory_cap):
    cache = tmp_path / "hub"
    snapshot = _hub_cache(model_dir, cache, "owner/huge")
    _edit_json(snapshot / "config.json", lambda c: c.update(num_queries=10**7))
    hub = {"cache_dir": str(cache), "local_files_only": True}
    with pytest.raises(IncompleteCheckpointError, match="num_queries = 10000000 is larger than the"):
        AutoModel.from_pretrained("owner/huge", **hub)
    with pytest.raises(IncompleteCheckpointError, match="num_queries = 10000000 is larger than the"):
        load_referring_segmentation_model("owner/huge", **hub)
    _hub_cache(model_dir, cache, "owner/fine")
    assert load_referring_segmentation_model("owner/fine", **hub).config.num_queries == 8


def test_a_hub_model_with_a_panicking_tokenizer_is_named(model_dir, tmp_path):
    cache = tmp_path / "hub"
    snapshot = _hub_cache(model_dir, cache, "owner/panics")
    _edit_json(
        snapshot / "tokenizer.json",
        lambda t: t.update(normalizer={"type": "Precompiled", "precompiled_charsmap": "AAAA"}),
    )
    with pytest.raises(ModelLoadingError, match="tokenizer.json: the tokenizers library panicked"):
        load_referring_segmentation_model("owner/panics", cache_dir=str(cache), local_files_only=True)
