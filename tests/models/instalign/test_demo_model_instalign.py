"""The InstAlign demo model shipped with the package loads completely and gives its recorded outputs.

The pinned values were computed once with this model on the seeded synthetic scene below (CPU, float32); a
change of architecture, weight layout, initialisation-on-load, pre-processing or tokenisation moves them.
"""

import torch
from transformers import AutoProcessor

import refseg
from refseg import InstAlignForReferringSegmentation

SENTENCES = ["the small blue ring and the large shape", "all blue shapes", "all green rings"]
NO_TARGET_LOGITS = [-3.769123, -2.918904, 3.251625]
SCORES = [  # pred_scores[:, :4]
    [-4.151706, 2.370987, -4.031306, -1.820534],
    [-3.849763, 4.375665, -3.769898, -1.575720],
    [-7.086806, 0.106997, -7.780017, -6.280251],
]
SEMANTIC = [  # semantic_mask_logits[:, 20, 16:22]
    [4.019966, 4.297093, 1.355886, -9.025499, -14.915991, -16.065821],
    [4.270091, 3.889045, 3.523573, -9.830267, -20.127457, -23.175253],
    [-11.944548, -11.837949, -9.698006, -17.721966, -24.422398, -27.030758],
]
MASKS = [[3.104705, 3.085707, 3.110653, 3.149240], [-17.217173, -17.422626, -17.501789, -17.480911]]


def test_demo_model_loads_every_weight_and_reproduces_pinned_outputs():
    path = refseg.demo_model_path()
    model, info = InstAlignForReferringSegmentation.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert not model.training
    processor = AutoProcessor.from_pretrained(path)
    rows = refseg.data.synthetic_scenes(num_images=1, seed=0, image_size=160)
    assert list(rows["sentence"]) == SENTENCES, "the synthetic scene generator changed: recompute the pins"
    batch = processor(
        images=[row["image"] for row in rows],
        text=list(rows["sentence"]),
        padding="max_length",
        max_length=32,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            out = model(**batch)
    finally:
        torch.set_num_threads(threads)
    tolerance = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.no_target_logits, torch.tensor(NO_TARGET_LOGITS), **tolerance)
    torch.testing.assert_close(out.pred_scores[:, :4], torch.tensor(SCORES), **tolerance)
    torch.testing.assert_close(out.semantic_mask_logits[:, 20, 16:22], torch.tensor(SEMANTIC), **tolerance)
    torch.testing.assert_close(out.pred_masks[0, :2, 10, 10:14], torch.tensor(MASKS), **tolerance)
    # and the decisions are right on this scene: the third sentence refers to nothing
    assert (out.no_target_logits > 0).tolist() == list(rows["no_target"]) == [False, False, True]
