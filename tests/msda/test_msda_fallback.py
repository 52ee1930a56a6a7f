"""Reference fallback (disabled kernels, failed build) and input validation of the public function."""

import warnings

import pytest
import torch

from refseg.kernels import (
    build,
    multi_scale_deformable_attention,
    ops,
    reference_multi_scale_deformable_attention,
)
from tests.msda._msda_inputs import make_inputs

SHAPES = [(6, 4), (3, 5), (1, 1)]


@pytest.fixture
def fresh_state(monkeypatch):
    saved = dict(ops._STATE)
    ops._STATE.update({"cpu": None, "warned": False})
    yield monkeypatch
    ops._STATE.clear()
    ops._STATE.update(saved)


def _warnings_of(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [w for w in caught if "refseg" in str(w.message)]


def test_disabled_by_environment_warns_once_and_is_correct(fresh_state):
    fresh_state.setenv("REFSEG_DISABLE_KERNELS", "1")
    inputs = make_inputs(SHAPES)
    assert ops.implementation("cpu") == "reference: disabled by REFSEG_DISABLE_KERNELS"
    out, first = _warnings_of(lambda: multi_scale_deformable_attention(*inputs))
    _, second = _warnings_of(lambda: multi_scale_deformable_attention(*inputs))
    assert len(first) == 1 and "REFSEG_DISABLE_KERNELS" in str(first[0].message)
    assert second == []
    torch.testing.assert_close(out, reference_multi_scale_deformable_attention(*inputs))


def test_simulated_build_failure_falls_back(fresh_state):
    def broken_build(*args, **kwargs):
        raise build.KernelBuildError("compiler failed (1): c++ ...\nfatal error: simulated")

    fresh_state.delenv("REFSEG_DISABLE_KERNELS", raising=False)
    fresh_state.setattr(build, "build", broken_build)
    inputs = make_inputs(SHAPES, dtype=torch.float64)
    assert "simulated" in ops.implementation("cpu")
    out, caught = _warnings_of(lambda: multi_scale_deformable_attention(*inputs))
    _, again = _warnings_of(lambda: multi_scale_deformable_attention(*inputs))
    assert len(caught) == 1 and "simulated" in str(caught[0].message) and again == []
    torch.testing.assert_close(out, reference_multi_scale_deformable_attention(*inputs))


def test_stale_lock_times_out_instead_of_hanging(tmp_path):
    import fcntl
    import os

    path = tmp_path / "build.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held by a "live" builder
    try:
        with pytest.raises(build.KernelBuildError, match="timed out"):
            with build._FileLock(path, timeout=0.3):
                pass
    finally:
        os.close(fd)  # like a killed process: the OS drops the lock
    with build._FileLock(path, timeout=0.3):  # a lock file left behind does not block
        pass


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda x: (x[0].long(), *x[1:]), ValueError, "value must be float32"),
        (lambda x: (x[0][:, :-1], *x[1:]), ValueError, "S=39 positions but spatial_shapes sum to 40"),
        (lambda x: (x[0], x[1].int(), *x[2:]), ValueError, "int64"),
        (lambda x: (x[0][0], *x[1:]), ValueError, "value must be 4-D"),
        (lambda x: (*x[:3], x[3][..., 0], x[4]), ValueError, "sampling_locations must be 6-D"),
        (lambda x: (*x[:4], x[4][..., :-1]), ValueError, "attention_weights must have shape"),
        (lambda x: (x[0], x[1][:2], *x[2:]), ValueError, "spatial_shapes must be"),
    ],
)
def test_bad_inputs_raise_value_errors(mutate, error, match):
    inputs = mutate(make_inputs(SHAPES))
    with pytest.raises(error, match=match):
        multi_scale_deformable_attention(*inputs)


def test_batch_must_divide_im2col_step():
    inputs = make_inputs(SHAPES, batch=3)
    with pytest.raises(ValueError, match=r"batch \(3\) must be divisible by im2col_step \(2\)"):
        multi_scale_deformable_attention(*inputs, im2col_step=2)
    assert multi_scale_deformable_attention(*inputs, im2col_step=3).shape == (3, 5, 16)


def test_op_itself_rejects_bad_inputs_with_runtime_error():
    if ops.implementation("cpu") != "compiled":
        pytest.skip(ops.implementation("cpu"))
    value, ss, lsi, loc, attn = make_inputs(SHAPES)
    with pytest.raises(RuntimeError, match="value has S=40 but spatial_shapes sum to 41"):
        torch.ops.refseg.ms_deform_attn_forward(
            value, ss + torch.tensor([[0, 0], [0, 0], [1, 0]]), lsi, loc, attn, 64
        )
    with pytest.raises(RuntimeError, match="must have value's dtype"):
        torch.ops.refseg.ms_deform_attn_forward(value, ss, lsi, loc.double(), attn, 64)
    with pytest.raises(RuntimeError, match="level_start_index"):
        torch.ops.refseg.ms_deform_attn_forward(value, ss, lsi + 1, loc, attn, 64)


def test_failed_build_is_remembered_and_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REFSEG_KERNELS_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    with pytest.raises(build.KernelBuildError, match="compiler failed"):
        build.build(verbose=False)
    assert (build.build_dir() / build.FAILED_MARKER).is_file()
    with pytest.raises(build.KernelBuildError, match="earlier attempt"):
        build.build(verbose=False, retry_failed=False)  # lazy path: no second compiler run
    from refseg_cli import main

    assert main(["kernels", "build"]) == 1
    assert '"ok": false' in capsys.readouterr().out


def test_kernels_info_command(capsys):
    import json

    from refseg_cli import main

    assert main(["kernels", "info"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cpu"] == ops.implementation("cpu")
    assert report["cuda"].startswith("reference: ") or report["cuda"] == "compiled"
    assert report["torch"] == torch.__version__
