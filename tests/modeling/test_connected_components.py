"""Connected-component instances of a union mask (instances of models without instance queries)."""

import pytest
import torch

from refseg.modeling.connected_components import connected_component_instances


def test_components_boxes_and_scores_hand_computed():
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[0:2, 0:3] = True  # component A: 6 px, box [0, 0, 3, 2]
    mask[3:6, 5:8] = True  # component B: 9 px, box [5, 3, 8, 6]
    mask[2, 3] = True  # touches A only diagonally: 8-connected, so part of A
    probabilities = torch.full((6, 8), 0.6)
    probabilities[3:6, 5:8] = 0.9
    instances = connected_component_instances(mask, probabilities)
    assert len(instances) == 2
    first, second = instances
    assert first["box"].tolist() == [5.0, 3.0, 8.0, 6.0] and first["score"] == pytest.approx(0.9)
    assert second["box"].tolist() == [0.0, 0.0, 4.0, 3.0] and second["score"] == pytest.approx(0.6)
    assert int(second["mask"].sum()) == 7 and second["mask"][2, 3]
    assert torch.equal(first["mask"] | second["mask"], mask)


def test_empty_mask_min_area_and_default_score():
    assert connected_component_instances(torch.zeros(4, 4, dtype=torch.bool)) == []
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[0, 0] = True
    mask[2:5, 2:5] = True
    instances = connected_component_instances(mask, min_area=2)
    assert len(instances) == 1 and instances[0]["score"] == 1.0
    assert instances[0]["box"].tolist() == [2.0, 2.0, 5.0, 5.0]
