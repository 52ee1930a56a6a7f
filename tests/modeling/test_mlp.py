import torch

from refseg.modeling.mlp import MLP


def test_mlp_layers_relu_between_and_detr_parameter_names():
    mlp = MLP(3, 5, 2, num_layers=3)
    assert [name for name, _ in mlp.named_parameters()] == [
        f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")
    ]
    x = torch.randn(4, 3)
    hidden = torch.relu(mlp.layers[1](torch.relu(mlp.layers[0](x))))
    torch.testing.assert_close(mlp(x), mlp.layers[2](hidden))  # no activation after the last layer
    assert (mlp(torch.randn(64, 3)) < 0).any()


def test_single_layer_mlp_is_linear():
    mlp = MLP(3, 7, 2, num_layers=1)
    assert len(mlp.layers) == 1 and mlp.layers[0].in_features == 3 and mlp.layers[0].out_features == 2
