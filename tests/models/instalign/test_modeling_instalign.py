import pytest
import torch

from refseg.models.instalign.configuration_instalign import InstAlignConfig
from refseg.models.instalign.modeling_instalign import (
    InstAlignForReferringSegmentation,
    InstAlignModel,
    InstAlignOutput,
)

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models run fastest on one thread


def make_inputs(batch: int = 2, size: int = 64, length: int = 7):
    generator = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(batch, 3, size, size, generator=generator)
    input_ids = torch.randint(3, 100, (batch, length), generator=generator)
    input_ids[:, 0] = 0
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[-1, length - 2 :] = 0
    return pixel_values, input_ids, attention_mask


def make_labels(batch: int = 2, size: int = 64):
    first = torch.zeros(2, size, size)
    first[0, : size // 3, : size // 3] = 1.0
    first[1, size // 2 :, size // 2 :] = 1.0
    labels = [first] + [torch.zeros(0, size, size) for _ in range(batch - 1)]  # the others are no-target
    return labels


@pytest.fixture(scope="module")
def tiny_config():
    return InstAlignConfig.preset("tiny")


def test_output_shapes(tiny_config):
    model = InstAlignForReferringSegmentation(tiny_config).eval()
    pixel_values, input_ids, attention_mask = make_inputs()
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask)
    assert isinstance(out, InstAlignOutput) and out.loss is None and out.loss_dict is None
    n, c = tiny_config.num_queries, tiny_config.hidden_dim
    assert out.pred_masks.shape == (2, n, 16, 16)
    assert out.pred_scores.shape == (2, n)
    assert out.semantic_mask_logits.shape == (2, 16, 16)
    assert out.no_target_logits.shape == (2,)
    assert out.text_features.shape == (2, 7, c)
    assert out.phrase_relevance.shape == (2, n, 7)
    torch.testing.assert_close(out.phrase_relevance.sum(-1), torch.ones(2, n))
    assert torch.all(out.phrase_relevance[1, :, 5:] == 0)  # padding tokens get no relevance
    assert out.aux_outputs is None  # inference skips the intermediate full-size masks
    with torch.no_grad():
        with_aux = model(pixel_values, input_ids, attention_mask, output_aux_outputs=True)
    assert len(with_aux.aux_outputs) == tiny_config.num_blocks  # learned queries + blocks 1..K-1
    assert with_aux.aux_outputs[0]["pred_masks"].shape == (2, n, 16, 16)
    assert with_aux.aux_outputs[0]["semantic_mask_logits"].shape == (2, 16, 16)
    # masked attention driven by masks computed on resized V_4 gives the same result (bilinear is linear)
    for name in ("pred_masks", "pred_scores", "semantic_mask_logits", "no_target_logits"):
        torch.testing.assert_close(getattr(with_aux, name), getattr(out, name), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        as_tuple = model(pixel_values, input_ids, attention_mask, return_dict=False)
    assert isinstance(
        as_tuple, tuple
    )  # the shared fields first (ReferringSegmentationOutput), then InstAlign's
    torch.testing.assert_close(as_tuple[0], out.semantic_mask_logits)
    torch.testing.assert_close(as_tuple[2], out.pred_masks)


def test_base_model_outputs(tiny_config):
    model = InstAlignModel(tiny_config).eval()
    pixel_values, input_ids, attention_mask = make_inputs(batch=1)
    with torch.no_grad():
        out = model(pixel_values, input_ids, attention_mask)
    assert out.mask_features.shape == (1, tiny_config.mask_dim, 16, 16)
    assert out.queries.shape == (1, tiny_config.num_queries, tiny_config.hidden_dim)
    assert len(out.intermediate_predictions) == tiny_config.num_blocks + 1


def test_loss_has_every_term_of_eq_13(tiny_config):
    """The merged, instance, no-target, auxiliary, mask and phrase terms (finiteness and gradients: the shared
    model tester)."""
    model = InstAlignForReferringSegmentation(tiny_config)
    out = model(*make_inputs(), mask_labels=make_labels())
    expected = {"loss_merged", "loss_inst", "loss_nt", "loss_aux", "loss_mask", "loss_phrase"}
    assert expected <= set(out.loss_dict)


@pytest.mark.parametrize(
    "overrides",
    [
        {"instance_supervision": "none"},
        {"instance_supervision": "standard"},
        {"aggregation": "threshold", "aggregation_threshold": 0.3},
        {"aggregation": "aia"},
        {"no_target_input": "global"},
        {"no_target_input": "sentence"},
        {"no_target_input": "mean_queries"},
        {"num_queries": 3},
        {"masked_attention": False, "deep_supervision": False},
        {"transformer_decoder": "mask2former"},
    ],
)
def test_table3_switches_build_and_run(overrides):
    config = InstAlignConfig.preset("tiny", **overrides)
    model = InstAlignForReferringSegmentation(config)
    out = model(*make_inputs(), mask_labels=make_labels())
    assert torch.isfinite(out.loss)
    assert out.pred_scores.shape == (2, config.num_queries)
    out.loss.backward()
    if config.instance_supervision == "none":
        assert "loss_inst" not in out.loss_dict
    if config.instance_supervision == "standard":
        assert out.loss_dict["loss_phrase"].item() == 0.0
    if not config.deep_supervision:
        assert out.loss_dict["loss_aux"].item() == 0.0
    expected_in = {"global_and_sentence": 64, "global": 32, "sentence": 32, "mean_queries": 32}
    assert model.no_target_predictor.mlp.layers[0].in_features == expected_in[config.no_target_input]


@pytest.mark.parametrize("decoder", ["phrase_object", "mask2former"])
def test_table3e_mask2former_decoder_has_no_text_guidance(decoder):
    """Table 3e: without Object-Text Cross Attention the queries, masks and scores ignore the sentence."""
    torch.manual_seed(0)
    model = InstAlignForReferringSegmentation(
        InstAlignConfig.preset("tiny", transformer_decoder=decoder)
    ).eval()
    pixel_values, input_ids, attention_mask = make_inputs()
    other_ids = input_ids.clone()
    other_ids[:, 1:] = torch.flip(input_ids[:, 1:], dims=[1]) % 97 + 3
    with torch.no_grad():
        a = model(pixel_values, input_ids, attention_mask)
        b = model(pixel_values, other_ids, attention_mask)
    blocks = model.model.phrase_object_transformer.blocks
    if decoder == "mask2former":
        assert all(block.object_text_attention is None for block in blocks)
        torch.testing.assert_close(a.pred_scores, b.pred_scores, rtol=0, atol=0)
        torch.testing.assert_close(a.pred_masks, b.pred_masks, rtol=0, atol=0)
    else:
        assert all(block.object_text_attention is not None for block in blocks)
        assert not torch.allclose(a.pred_scores, b.pred_scores)
    assert not torch.allclose(a.no_target_logits, b.no_target_logits)  # T_sen reaches eq. 11 either way


def test_invalid_inputs_raise_value_error(tiny_config):
    model = InstAlignForReferringSegmentation(tiny_config)
    pixel_values, input_ids, attention_mask = make_inputs()
    with pytest.raises(ValueError, match=r"pixel_values must be a \(B, 3, H, W\) tensor"):
        model(pixel_values[0], input_ids, attention_mask)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(pixel_values[..., :60, :60], input_ids, attention_mask)
    with pytest.raises(ValueError, match="input_ids has batch size 1 but pixel_values has 2"):
        model(pixel_values, input_ids[:1], attention_mask[:1])
    with pytest.raises(ValueError, match="attention_mask"):
        model(pixel_values, input_ids, attention_mask[:, :3])
    with pytest.raises(ValueError, match="mask_labels must be a list of 2 tensors"):
        model(pixel_values, input_ids, attention_mask, mask_labels=make_labels()[:1])
    with pytest.raises(ValueError, match=r"mask_labels\[1\] must be a \(n, 64, 64\) tensor"):
        model(pixel_values, input_ids, attention_mask, mask_labels=[make_labels()[0], torch.zeros(1, 32, 32)])


def test_tiny_overfit_on_two_samples(tiny_config):
    torch.manual_seed(0)
    model = InstAlignForReferringSegmentation(tiny_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs, labels = make_inputs(), make_labels()
    losses = []
    for _ in range(40):
        out = model(*inputs, mask_labels=labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    with torch.no_grad():
        out = model(*inputs)
    merged = out.semantic_mask_logits.sigmoid() > 0.5
    target = torch.nn.functional.avg_pool2d(labels[0].amax(0)[None, None], 4)[0, 0] > 0.5
    iou = (merged[0] & target).sum() / (merged[0] | target).sum()
    assert iou > 0.5
    assert out.no_target_logits[1] > out.no_target_logits[0]  # sample 1 is the no-target one


def test_head_model_loads_base_model_weights(tiny_config, tmp_path):
    base = InstAlignModel(tiny_config)
    base.save_pretrained(tmp_path)
    head = InstAlignForReferringSegmentation.from_pretrained(tmp_path)  # base_model_prefix = "model"
    for key, value in base.state_dict().items():
        assert torch.equal(head.model.state_dict()[key], value), key


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config):
    model = InstAlignForReferringSegmentation(tiny_config).train()
    inputs, labels = make_inputs(), make_labels()
    torch.manual_seed(3)  # same dropout masks (RoBERTa's hidden dropout is 0.1) in both runs
    model(*inputs, mask_labels=labels).loss.backward()
    reference = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert all(block.gradient_checkpointing for block in model.model.phrase_object_transformer.blocks)
    torch.manual_seed(3)
    model(*inputs, mask_labels=labels).loss.backward()
    for name, grad in reference.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-5)


def test_image_indices_share_one_encoded_image_between_expressions():
    """Encoding an image once for several expressions gives the outputs, loss and gradients of repeating it.

    Dense attention: the masked attention thresholds mask logits at 0, where float summation-order noise
    (backbone batches of 2 vs 3 images) could flip a pixel and make the comparison flaky."""
    torch.manual_seed(0)
    model = InstAlignForReferringSegmentation(InstAlignConfig.preset("tiny", masked_attention=False))
    pixel_values, input_ids, attention_mask = make_inputs(batch=3)
    images = pixel_values[:2]
    image_indices = torch.tensor([1, 0, 1])
    labels = make_labels(batch=3)

    torch.manual_seed(1)  # same text-encoder dropout masks in both passes
    shared = model(images, input_ids, attention_mask, mask_labels=labels, image_indices=image_indices)
    shared.loss.backward()
    shared_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    torch.manual_seed(1)
    repeated = model(images[image_indices], input_ids, attention_mask, mask_labels=labels)
    repeated.loss.backward()
    repeated_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]

    # equal up to float summation order (the backbone runs on batches of 2 vs 3 images)
    torch.testing.assert_close(shared.pred_masks, repeated.pred_masks, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(shared.no_target_logits, repeated.no_target_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(shared.loss, repeated.loss, rtol=1e-5, atol=1e-5)
    assert len(shared_grads) == len(repeated_grads)
    for a, b in zip(shared_grads, repeated_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_image_indices_errors_name_the_problem(tiny_config):
    model = InstAlignForReferringSegmentation(tiny_config)
    pixel_values, input_ids, attention_mask = make_inputs(batch=3)
    with pytest.raises(
        ValueError, match="input_ids has batch size 3 but pixel_values has 2; pass image_indices"
    ):
        model(pixel_values[:2], input_ids, attention_mask)
    with pytest.raises(ValueError, match="image_indices has 2 entries but input_ids has 3 expressions"):
        model(pixel_values[:2], input_ids, attention_mask, image_indices=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"image_indices must lie in \[0, 2\) for 2 image\(s\)"):
        model(pixel_values[:2], input_ids, attention_mask, image_indices=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="image_indices must be a 1-D integer tensor"):
        model(pixel_values[:2], input_ids, attention_mask, image_indices=torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="mask_labels must be a list of 3 tensors"):
        model(
            pixel_values[:2],
            input_ids,
            attention_mask,
            mask_labels=make_labels(batch=2),
            image_indices=torch.tensor([0, 1, 1]),
        )
