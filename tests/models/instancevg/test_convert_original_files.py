"""Checkpoints as the original's training script writes them convert; payloads in such files are refused.

The files hold optimizer (Adam/AMSGrad) and scheduler states, the epoch's metrics (numpy scalars) and
sometimes the fp16 loss-scaler state, in torch's zip or legacy format: they must be read without running
anything from them, and everything but numpy scalars, dtypes, tensors and plain containers stays refused.
"""

import os
import pickle

import numpy as np
import pytest
import torch

from refseg.modeling.pretrained import read_weights_file
from refseg.models.instancevg import InstanceVGConfig, InstanceVGForReferringSegmentation
from refseg.models.instancevg.convert_instancevg import (
    convert_checkpoint,
    load_original_state_dict,
    state_dict_to_original,
)
from refseg_cli import main
from tests.models.instancevg.original_checkpoints import BRANCHES, SCHEDULERS, save_original_checkpoint


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    config = InstanceVGConfig.preset("tiny")
    model = InstanceVGForReferringSegmentation(config).eval()
    return model, state_dict_to_original(model.state_dict(), config.num_queries, config.decoder_layers)


def _assert_plain_line(message: str) -> None:
    assert "\n" not in message and "\x1b" not in message, repr(message)
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message, message


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("branch", BRANCHES)
def test_training_checkpoints_of_every_branch_convert(reference, tmp_path, branch, legacy):
    model, original = reference
    path = save_original_checkpoint(
        tmp_path / "latest.pth",
        original,
        branch,
        legacy=legacy,
        ddp=branch != "RRefCOCO",
        amp=branch == "GRefCOCO",
    )
    converted = convert_checkpoint(path, tmp_path / "out", preset="tiny")
    for key, value in model.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    assert (tmp_path / "out" / "model.safetensors").is_file()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_numpy_metrics_are_read_as_numbers(reference, tmp_path, legacy):
    _, original = reference
    path = save_original_checkpoint(tmp_path / "segm_best.pth", original, "GRefCOCO", legacy=legacy, amp=True)
    checkpoint = read_weights_file(path)
    assert type(checkpoint["F1score"]) is np.float64 and checkpoint["F1score"] == 61.25
    assert checkpoint["best_cIoU"] == 62.5 and checkpoint["epoch"] == 1
    assert checkpoint["optimizer"]["param_groups"][0]["amsgrad"] is True
    assert set(checkpoint["optimizer"]["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert checkpoint["scheduler"]["lr_lambdas"] == [None, None, None]
    assert checkpoint["amp"]["loss_scaler0"]["loss_scale"] == 65536.0


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("branch", ["GRefCOCO", "RefZOM"])
def test_files_written_with_numpy_1_names_convert(reference, tmp_path, branch, legacy):
    _, original = reference
    path = save_original_checkpoint(
        tmp_path / "det_best.pth", original, branch, legacy=legacy, numpy1_names=True
    )
    assert b"numpy.core.multiarray" in path.read_bytes() and b"numpy._core" not in path.read_bytes()
    state_dict = load_original_state_dict(path)
    assert set(state_dict) == set(original)
    assert read_weights_file(path)["mIoU" if branch == "RefZOM" else "gIoU"] > 0


def test_cli_converts_a_training_checkpoint(reference, tmp_path, capsys, beit3_spm):
    _, original = reference
    path = save_original_checkpoint(tmp_path / "latest.pth", original, "RefZOM", legacy=True, ddp=True)
    code = main(
        ["convert", "instancevg", str(path), "--output", str(tmp_path / "out"), "--preset", "tiny"]
        + ["--tokenizer", str(beit3_spm)]
    )
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "tokenizer.json").is_file() or (
        tmp_path / "out" / "tokenizer_config.json"
    ).is_file()


class _SystemCall:
    """A pickle payload: unpickling it would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _ReadsAFile:
    """A payload through a numpy function other than the scalar reconstructor."""

    def __reduce__(self):
        return np.fromfile, ("/etc/hostname",)


class _ObjectScalar:
    """numpy's scalar reconstructor asked for an object-dtype scalar."""

    def __reduce__(self):
        return np.float64(0).__reduce__()[0], (np.dtype("O"), ["not", "a", "number"])


def _payload_checkpoint(original, payload):
    return {"state_dict": dict(original), "epoch": 3, "F1score": np.float64(1.0), "extra": payload}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_shell_command_in_a_checkpoint_is_refused_and_not_run(reference, tmp_path, legacy):
    _, original = reference
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save(
        _payload_checkpoint(original, _SystemCall(marker)), path, _use_new_zipfile_serialization=not legacy
    )
    with pytest.raises(
        ValueError, match=r"evil\.pth cannot be loaded.*system.*not loaded for safety"
    ) as info:
        load_original_state_dict(path)
    _assert_plain_line(str(info.value))
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "payload, name",
    [
        (_ReadsAFile(), r"numpy\.fromfile"),
        (np.array([1.0, 2.0]), r"numpy\.(_core|core)\.multiarray\._reconstruct"),  # an array is not a scalar
        (_ObjectScalar(), r"not loaded for safety|not a plain number"),
    ],
    ids=["numpy-function", "numpy-array", "object-scalar"],
)
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_numpy_globals_other_than_numeric_scalars_are_refused(reference, tmp_path, payload, name, legacy):
    _, original = reference
    path = tmp_path / "numpy.pth"
    torch.save(_payload_checkpoint(original, payload), path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ValueError, match=name) as info:
        read_weights_file(path)
    _assert_plain_line(str(info.value))


@pytest.mark.parametrize(
    "content",
    [os.urandom(4096), bytes(64), pickle.dumps({"a": 1}, protocol=0)],
    ids=["random-bytes", "zero-bytes", "protocol-0-pickle"],
)
def test_unreadable_files_get_one_plain_line_without_unsafe_advice(tmp_path, capsys, content):
    path = tmp_path / "random.pth"
    path.write_bytes(content)
    code = main(["convert", "instancevg", str(path), "--output", str(tmp_path / "out"), "--preset", "tiny"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "random.pth" in err
    _assert_plain_line(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_unsafe_class_message_is_plain_in_both_formats(tmp_path, capsys, legacy):
    import argparse

    path = tmp_path / "args.pth"
    torch.save(
        {"state_dict": {}, "args": argparse.Namespace(lr=1.0)},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    code = main(["convert", "instancevg", str(path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "argparse.Namespace" in err and "not loaded for safety" in err
    _assert_plain_line(err)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_every_numeric_numpy_scalar_type_is_read(tmp_path, legacy):
    values = {
        "f64": np.float64(0.1),
        "f32": np.float32(1.5),
        "f16": np.float16(2.5),
        "i64": np.int64(-7),
        "u8": np.uint8(200),
        "bool": np.bool_(True),
        "c128": np.complex128(1 + 2j),
        "big_endian": np.frombuffer(np.array([3.25], dtype=">f8").tobytes(), dtype=">f8")[0],
    }
    torch.save({"metrics": values}, tmp_path / "m.pth", _use_new_zipfile_serialization=not legacy)
    loaded = read_weights_file(tmp_path / "m.pth")["metrics"]
    for key, value in values.items():
        assert loaded[key] == value and loaded[key].dtype == value.dtype, key


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_of_the_original_is_read(reference, tmp_path, scheduler):
    _, original = reference
    path = save_original_checkpoint(
        tmp_path / "s.pth", original, "GRefCOCO", legacy=True, scheduler=scheduler
    )
    state = read_weights_file(path)["scheduler"]
    assert state["last_epoch"] == 2 and len(state["base_lrs"]) == 3
    assert set(load_original_state_dict(path)) == set(original)
