"""Safe reading of outside weight files: every failure is one ValueError naming the file."""

from __future__ import annotations

import argparse
import io
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from refseg.modeling.pretrained import read_weights_file


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


@pytest.mark.parametrize(
    ("stored", "entry"),
    [
        ("bare", None),
        ("state_dict", "state_dict"),  # InstanceVG's training script
        ("model", "model"),  # BEiT-3 pretraining files, detectron2 (ReLA)
        ("module", "module"),  # DeepSpeed
    ],
)
def test_read_state_dict_finds_the_state_dict_and_strips_module_prefixes(tmp_path, stored, entry):
    from refseg.modeling.pretrained import read_state_dict

    weights = {"module.a.weight": torch.ones(2), "b.bias": torch.zeros(3), "c.module.d": torch.ones(1)}
    checkpoint = weights if entry is None else {entry: weights, "epoch": 3, "optimizer": {"state": {}}}
    torch.save(checkpoint, tmp_path / "w.pth")
    state = read_state_dict(tmp_path / "w.pth")
    assert sorted(state) == ["a.weight", "b.bias", "c.module.d"]  # only the leading DDP prefix goes
    assert torch.equal(state["a.weight"], torch.ones(2))


def test_read_state_dict_prefers_state_dict_over_model_entry(tmp_path):
    from refseg.modeling.pretrained import read_state_dict

    torch.save({"state_dict": {"x": torch.ones(1)}, "model": {"y": torch.ones(1)}}, tmp_path / "w.pth")
    assert list(read_state_dict(tmp_path / "w.pth")) == ["x"]
    assert list(read_state_dict(tmp_path / "w.pth", entries=("model",))) == ["y"]


def test_read_state_dict_refuses_what_is_not_a_state_dict(tmp_path):
    from refseg.modeling.pretrained import read_state_dict

    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth does not contain a state dict \(got list\)"):
        read_state_dict(tmp_path / "list.pth")
    torch.save({"model": {"w": torch.ones(1), "step": 3}}, tmp_path / "mixed.pth")
    with pytest.raises(ValueError, match=r"mixed\.pth: the state dict holds non-tensor values"):
        read_state_dict(tmp_path / "mixed.pth", what="ReLA checkpoint")


def test_outside_weights_are_read_only_through_the_shared_reader():
    """No module of refseg outside ``modeling/pretrained`` calls ``torch.load`` or safetensors' ``load_file``
    on an outside file (the model-folder checks read refseg's own files, on the meta device)."""
    import ast
    from pathlib import Path

    import refseg

    root = Path(refseg.__file__).parent
    allowed = {"modeling/pretrained/files.py", "modeling/loading_checks.py"}
    callers = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
                owner = (
                    node.func.value.id
                    if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                    else None
                )
                if (owner, name) == ("torch", "load") or name == "load_file":
                    callers.append(path.relative_to(root).as_posix())
    assert set(callers) <= allowed, sorted(set(callers) - allowed)
    assert "modeling/pretrained/files.py" in callers  # the check sees the reader itself
