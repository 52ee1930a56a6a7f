"""Model cards: front matter (library, pipeline tag, tags, model-index), body sections; push helper checks."""

import pytest
from huggingface_hub import ModelCard

from refseg.hub import model_card, push_to_hub, write_model_card

RESULTS = {
    "gIoU": 87.5,
    "cIoU": 81.25,
    "N-acc": 93.0,
    "T-acc": 99.0,
    "definition": "ReLA",
    "resolution": "160x160",
}


def test_front_matter_and_model_index(tmp_path):
    path = write_model_card(
        tmp_path,
        "someone/instalign-demo",
        model_type="instalign",
        results=RESULTS,
        training_command="accelerate launch examples/train.py --config_preset demo",
        wall_time_s=1234.0,
        datasets=["refseg/synthetic-scenes"],
        tags=["synthetic"],
    )
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert data["library_name"] == "refseg"
    assert data["pipeline_tag"] == "image-segmentation"
    assert {"refseg", "gres", "instalign", "synthetic", "referring-expression-segmentation"} <= set(
        data["tags"]
    )
    assert data["license"] == "apache-2.0"
    (entry,) = data["model-index"]
    assert entry["name"] == "instalign-demo"
    (result,) = entry["results"]
    assert result["task"]["type"] == "image-segmentation"
    assert result["dataset"]["split"] == "validation"
    metrics = {m["name"]: m["value"] for m in result["metrics"]}
    assert metrics == {"gIoU": 87.5, "cIoU": 81.25, "N-acc": 93.0, "T-acc": 99.0}
    assert {m["config"] for m in result["metrics"]} == {"160x160"}


def test_body_has_usage_command_wall_time_and_table():
    card = model_card(
        "me/m",
        model_type="instalign",
        results=RESULTS,
        training_command="python train.py --seed 1",
        wall_time_s=90,
    )
    text = str(card)
    assert 'pipeline("referring-segmentation", model="me/m")' in text
    assert "python train.py --seed 1" in text
    assert "Wall time: 90 s (1.5 min)" in text
    assert "| gIoU | 87.50 |" in text and "| cIoU | 81.25 |" in text
    assert "masks compared at 160x160" in text
    assert "| definition |" in text and "ReLA" in text


def test_card_without_results():
    text = str(model_card("me/m", model_type="instalign"))
    assert "No evaluation results yet." in text and "model-index" not in text


def test_push_to_hub_checks_the_folder_before_any_network(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        push_to_hub(tmp_path, "me/m")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="card_kwargs"):
        push_to_hub(tmp_path, "me/m")
