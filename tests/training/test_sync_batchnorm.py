"""--sync_batchnorm: which models get synced BatchNorm, and the converted modules on one process (CPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from refseg.training.sync_batchnorm import (
    CrossProcessBatchNorm,
    convert_sync_batchnorm,
    has_batchnorm,
    resolve_sync_batchnorm,
)
from tests.training.equivalence_helpers import MODEL_TYPES, batchnorm_statistics, build_model

ROOT = Path(__file__).resolve().parents[2]


def _net() -> nn.Module:
    torch.manual_seed(0)
    nested = nn.Sequential(nn.BatchNorm2d(4, momentum=None))  # cumulative running averages
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nested)


def test_models_with_batchnorm_get_it_synced_by_default_with_several_processes():
    with_bn = {model_type: has_batchnorm(build_model(model_type)) for model_type in MODEL_TYPES}
    assert with_bn == {
        "instalign": False,
        "instancevg": True,
        "metris": True,
        "presence_plurality": False,
        "rela": False,  # the tiny preset's Swin; the r50 preset's ResNet has BatchNorm
    }
    metris = build_model("metris")
    assert resolve_sync_batchnorm("auto", metris, 2) and not resolve_sync_batchnorm("auto", metris, 1)
    assert resolve_sync_batchnorm("on", metris, 1) and not resolve_sync_batchnorm("off", metris, 8)
    assert not resolve_sync_batchnorm("on", build_model("instalign"), 8)
    with pytest.raises(ValueError, match="auto"):
        resolve_sync_batchnorm("yes", metris, 2)


@pytest.mark.parametrize("device_type", ["cpu", "mps", "cuda"])
def test_conversion_keeps_parameters_and_buffers(device_type):
    """CPU (and MPS) get refseg's CrossProcessBatchNorm; CUDA torch's SyncBatchNorm (converted here on CPU,
    the part of the GPU path that runs without one). Names, parameters and buffers stay."""
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    converted = convert_sync_batchnorm(net, device_type)
    kind = nn.SyncBatchNorm if device_type == "cuda" else CrossProcessBatchNorm
    norms = [m for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 2 and all(type(m) is kind for m in norms)
    assert norms[1].momentum is None
    assert converted.state_dict().keys() == before.keys()
    for key, value in converted.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_one_process_is_plain_batchnorm_in_training_and_evaluation():
    reference, converted = _net(), CrossProcessBatchNorm.convert(_net())
    x = torch.randn(5, 3, 6, 6)
    for _ in range(2):
        torch.testing.assert_close(converted(x), reference(x))
    torch.testing.assert_close(converted.state_dict(), reference.state_dict())
    torch.testing.assert_close(converted.eval()(x), reference.eval()(x))


def test_one_process_reference_statistics_are_batchnorms():
    """The 2-process test's reference (tests/training/test_distributed_equivalence.py) is BatchNorm's."""
    ours = batchnorm_statistics()
    generator = torch.Generator().manual_seed(3)
    inputs = torch.randn(4, 3, 5, 5, generator=generator) * 3 + 1
    norm = nn.BatchNorm2d(3).train()
    norm(inputs)
    torch.testing.assert_close(ours["running_mean"], norm.running_mean)
    torch.testing.assert_close(ours["running_var"], norm.running_var)


def test_train_py_flag_defaults_to_auto():
    spec = importlib.util.spec_from_file_location("train_example", ROOT / "examples" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base = ["--output_dir", "unused"]
    assert module.parse_args(base).sync_batchnorm == "auto"
    assert module.parse_args([*base, "--sync_batchnorm"]).sync_batchnorm == "on"
    assert module.parse_args([*base, "--sync_batchnorm", "off"]).sync_batchnorm == "off"
