"""CUDA op parity (runs only where a GPU and the CUDA extension are present)."""

import pytest
import torch

from refseg.kernels import (
    implementation,
    multi_scale_deformable_attention,
    reference_multi_scale_deformable_attention,
)
from tests.msda._msda_inputs import make_inputs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


@pytest.fixture(scope="module")
def cuda_compiled():
    reason = implementation("cuda")
    if reason != "compiled":
        pytest.skip(f"CUDA extension not available: {reason}")


@pytest.mark.parametrize(
    "dtype, tol",
    [(torch.float32, 1e-5), (torch.float64, 1e-10), (torch.bfloat16, 5e-2), (torch.float16, 1e-2)],
)
def test_cuda_matches_reference(cuda_compiled, dtype, tol):
    inputs = make_inputs(
        [(6, 4), (3, 5), (1, 1)], batch=2, queries=9, heads=2, channels=32, points=4, dtype=dtype
    )
    gpu = [t.cuda() for t in inputs]
    for t in (gpu[0], gpu[3], gpu[4]):
        t.requires_grad_()
    out = multi_scale_deformable_attention(*gpu)
    out.sum().backward()
    exact = [t.double() if t.is_floating_point() else t for t in inputs]
    for t in (exact[0], exact[3], exact[4]):
        t.requires_grad_()
    ref = reference_multi_scale_deformable_attention(*exact)
    ref.sum().backward()
    for got, want in zip(
        (out, gpu[0].grad, gpu[3].grad, gpu[4].grad), (ref, exact[0].grad, exact[3].grad, exact[4].grad)
    ):
        torch.testing.assert_close(
            got.double().cpu(), want, atol=tol * max(want.abs().max().item(), 1.0), rtol=0
        )


def test_cuda_on_second_device(cuda_compiled):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    inputs = make_inputs([(6, 4), (3, 5)], channels=32)
    out = multi_scale_deformable_attention(*[t.to("cuda:1") for t in inputs])
    torch.testing.assert_close(
        out.cpu(), reference_multi_scale_deformable_attention(*inputs), atol=1e-5, rtol=0
    )
