"""InstAlign's ``forward`` refuses unknown keyword arguments and sentences longer than its text positions."""

import pytest
import torch

from refseg.models.instalign import InstAlignConfig, InstAlignForReferringSegmentation


@pytest.fixture(scope="module")
def model():
    return InstAlignForReferringSegmentation(InstAlignConfig.preset("tiny")).eval()


def _inputs(length: int = 5):
    return {"pixel_values": torch.zeros(1, 3, 64, 64), "input_ids": torch.ones(1, length, dtype=torch.long)}


def test_labels_instead_of_mask_labels_is_a_type_error(model):
    with pytest.raises(TypeError, match=r"'labels' \(did you mean 'mask_labels'\?\)"):
        model(**_inputs(), labels=[torch.zeros(1, 64, 64)])


def test_the_base_model_rejects_unknown_kwargs_too(model):
    with pytest.raises(TypeError, match="InstAlignModel.forward\\(\\) got unexpected keyword argument"):
        model.model(**_inputs(), output_attentions=True)


def test_input_ids_longer_than_the_text_positions_are_refused(model):
    limit = model.config.text_config.max_position_embeddings - model.config.text_config.pad_token_id - 1
    with pytest.raises(ValueError, match=f"the length of input_ids {limit + 1} is beyond the {limit} token"):
        model(**_inputs(limit + 1))
