"""Safe reading of outside weight files: every failure is one ValueError naming the file."""

from __future__ import annotations

import argparse
import io
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from refseg.modeling.checkpoint_files import read_weights_file


def test_reads_torch_save_and_safetensors_files(tmp_path):
    weights = {"a.weight": torch.arange(6.0).view(2, 3), "b": torch.tensor([1, 2])}
    torch.save({"model": weights}, tmp_path / "w.pth")
    loaded = read_weights_file(tmp_path / "w.pth")
    assert set(loaded) == {"model"} and all(torch.equal(loaded["model"][k], v) for k, v in weights.items())
    save_file(weights, str(tmp_path / "w.safetensors"))
    loaded = read_weights_file(tmp_path / "w.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in weights.items())


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"BEiT-3 checkpoint not found: .*nope\.pth"):
        read_weights_file(tmp_path / "nope.pth", what="BEiT-3 checkpoint")


def test_pickled_objects_are_refused_for_safety(tmp_path):
    path = tmp_path / "with_args.pth"
    torch.save({"model": {}, "args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(
        ValueError, match=r"with_args\.pth cannot be loaded with torch\.load\(weights_only=True\)"
    ):
        read_weights_file(path)
    with pytest.raises(ValueError, match="not loaded for safety"):
        read_weights_file(path)


@pytest.mark.parametrize(
    "content",
    [
        b"hello world, not a checkpoint at all",  # torch's legacy reader fails with a bare KeyError
        b"PK\x03\x04 truncated zip",  # a zip header and nothing after it
        b"",  # empty file
    ],
)
def test_garbage_and_truncated_files_are_named_as_unreadable(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"bad\.pth"):
        read_weights_file(path, what="ReLA checkpoint")


def test_truncated_real_checkpoint_is_named(tmp_path):
    buffer = io.BytesIO()
    torch.save({"w": torch.randn(64, 64)}, buffer)
    data = buffer.getvalue()
    assert zipfile.is_zipfile(io.BytesIO(data))
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot read .*cut\.pth as a InstanceVG checkpoint"):
        read_weights_file(path, what="InstanceVG checkpoint")


def test_bad_safetensors_file_is_named(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(
        ValueError, match=r"cannot read .*bad\.safetensors as a checkpoint \(a safetensors file\)"
    ):
        read_weights_file(path)
