"""refseg.modeling.beit3.init_beit3_encoder: an InstanceVG model's BEiT-3 encoder starts from a BEiT-3 pretraining file."""

import pytest
import torch
from safetensors.torch import save_file

from refseg.modeling.beit3 import init_beit3_encoder
from refseg.modeling.beit3.pretrained import beit3_state_dict_to_original, interpolate_image_positions
from refseg.models.instalign import InstAlignConfig, InstAlignForReferringSegmentation
from refseg.models.instancevg import InstanceVGConfig, InstanceVGForReferringSegmentation


def pretraining_checkpoint(encoder, grid: int) -> dict:
    """Random weights in BEiT-3's pretraining layout: {"model": {"beit3.<original key>": tensor, ...}}."""
    generator = torch.Generator().manual_seed(1)
    state = {k: torch.randn(v.shape, generator=generator) for k, v in encoder.state_dict().items()}
    state["image_position_embedding.weight"] = torch.randn(3 + grid * grid, encoder.config.hidden_size)
    model = beit3_state_dict_to_original(state, prefix="beit3.")
    model["beit3.vision_embed.mask_token"] = torch.zeros(1, 1, encoder.config.hidden_size)
    return {"model": model}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return InstanceVGForReferringSegmentation(InstanceVGConfig.preset("tiny"))


def test_torch_save_checkpoint_is_loaded_with_interpolated_positions(model, tmp_path):
    checkpoint = pretraining_checkpoint(model.model.encoder, grid=4)  # pretrained at 32x32, model at 64x64
    path = tmp_path / "beit3_tiny.pth"
    torch.save(checkpoint, path)
    head_before = model.class_head.weight.clone()
    report = init_beit3_encoder(model, path)
    assert report.interpolated_positions == (4, 8)
    weights = checkpoint["model"]
    encoder = model.model.encoder
    assert torch.equal(
        encoder.layers[1].attention.query.text.weight,
        weights["beit3.encoder.layers.1.self_attn.q_proj.B.weight"],
    )
    assert torch.equal(encoder.patch_embedding.weight, weights["beit3.vision_embed.proj.weight"])
    assert torch.equal(
        encoder.image_position_embedding.weight,
        interpolate_image_positions(weights["beit3.encoder.embed_positions.A.weight"], 8),
    )
    assert torch.equal(model.class_head.weight, head_before)  # only the encoder is touched


def test_safetensors_checkpoint_at_the_model_resolution(model, tmp_path):
    weights = pretraining_checkpoint(model.model.encoder, grid=8)["model"]
    path = tmp_path / "beit3.safetensors"
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    report = init_beit3_encoder(model, path)
    assert report.interpolated_positions is None
    assert torch.equal(model.model.encoder.text_embedding.weight, weights["beit3.text_embed.weight"])


def test_wrong_model_type_bad_file_and_other_vocabulary_are_clear_errors(model, tmp_path):
    instalign = InstAlignForReferringSegmentation(InstAlignConfig.preset("tiny"))
    path = tmp_path / "beit3.pth"
    torch.save(pretraining_checkpoint(model.model.encoder, grid=8), path)
    with pytest.raises(ValueError, match="model type instancevg.*'instalign' has 0"):
        init_beit3_encoder(instalign, path)
    with pytest.raises(FileNotFoundError, match="not found"):
        init_beit3_encoder(model, tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")  # refused by the safe unpickler
    with pytest.raises(
        ValueError,
        match=r"cannot read \S*garbage.pth as a BEiT-3 checkpoint: it is neither a torch.save file nor a "
        r"safetensors file",
    ):
        init_beit3_encoder(model, garbage)
    garbage.write_bytes(b"hello world garbage")  # not a pickle at all
    with pytest.raises(ValueError, match="cannot read .*garbage.pth as a BEiT-3 checkpoint"):
        init_beit3_encoder(model, garbage)
    (tmp_path / "garbage.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="as a BEiT-3 checkpoint"):
        init_beit3_encoder(model, tmp_path / "garbage.safetensors")
    other_vocab = InstanceVGForReferringSegmentation(
        InstanceVGConfig.preset("tiny", text_config={"vocab_size": 77})
    )
    with pytest.raises(ValueError, match="(?s)text_embedding.weight.*BEiT-3's XLM-R sentencepiece tokenizer"):
        init_beit3_encoder(other_vocab, path)
