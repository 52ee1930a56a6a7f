"""torch.compile(fullgraph=True) and torch.export see the custom op as one node."""

import pytest
import torch

from refseg.kernels import implementation
from refseg.modeling.deformable_attention import MultiScaleDeformableAttention
from tests.msda._msda_inputs import level_tensors

pytestmark = pytest.mark.skipif(implementation("cpu") != "compiled", reason=implementation("cpu"))

SHAPES = [(6, 4), (3, 5)]


def _module_and_inputs():
    attn = MultiScaleDeformableAttention(embed_dim=16, num_heads=2, num_levels=2, num_points=2).eval()
    ss, lsi, seq = level_tensors(SHAPES)
    query, value = torch.randn(2, 7, 16), torch.randn(2, seq, 16)
    ref = torch.rand(2, 7, 2, 2)
    return attn, (query, ref, value, ss, lsi)


def test_compile_fullgraph_matches_eager():
    attn, inputs = _module_and_inputs()
    expected = attn(*inputs)
    compiled = torch.compile(attn, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*inputs), expected)
    # gradients flow through the compiled graph (backward op)
    query = inputs[0].clone().requires_grad_()
    compiled(query, *inputs[1:]).sum().backward()
    query_eager = inputs[0].clone().requires_grad_()
    attn(query_eager, *inputs[1:]).sum().backward()
    torch.testing.assert_close(query.grad, query_eager.grad)


def test_export_contains_the_custom_op():
    attn, inputs = _module_and_inputs()
    program = torch.export.export(attn, inputs)
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "refseg.ms_deform_attn_forward.default" in targets
    torch.testing.assert_close(program.module()(*inputs), attn(*inputs))
