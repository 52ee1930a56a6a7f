"""Box conversions, IoU and generalized IoU on hand-computed boxes."""

import pytest
import torch

from refseg.boxes import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xywh_to_xyxy,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
)


def test_conversions_round_trip():
    xyxy = torch.tensor([[0.0, 0.0, 10.0, 4.0], [2.0, 3.0, 6.0, 9.0]])
    cxcywh = box_xyxy_to_cxcywh(xyxy)
    torch.testing.assert_close(cxcywh, torch.tensor([[5.0, 2.0, 10.0, 4.0], [4.0, 6.0, 4.0, 6.0]]))
    torch.testing.assert_close(box_cxcywh_to_xyxy(cxcywh), xyxy)
    torch.testing.assert_close(box_xywh_to_xyxy(torch.tensor([[2.0, 3.0, 4.0, 6.0]])), xyxy[1:])
    torch.testing.assert_close(box_area(xyxy), torch.tensor([40.0, 24.0]))


def test_iou_and_giou_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 0.0, 30.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    iou, union = box_iou(a, b)
    # half overlap: I = 50, U = 150; disjoint: 0; identical: 1
    torch.testing.assert_close(iou, torch.tensor([[1 / 3, 0.0, 1.0]]))
    torch.testing.assert_close(union, torch.tensor([[150.0, 200.0, 100.0]]))
    giou = generalized_box_iou(a, b)
    # disjoint with a 10-wide gap: C = 30 x 10 = 300, GIoU = 0 - (300 - 200) / 300 = -1/3
    torch.testing.assert_close(giou, torch.tensor([[1 / 3, -1 / 3, 1.0]]))
    assert giou.shape == (1, 3)
    assert bool((giou <= iou + 1e-7).all())


def test_malformed_boxes_raise():
    good = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="x1 >= x0"):
        generalized_box_iou(torch.tensor([[2.0, 0.0, 1.0, 1.0]]), good)
    with pytest.raises(ValueError, match=r"boxes2 must have shape \(N, 4\)"):
        box_iou(good, torch.zeros(3))
