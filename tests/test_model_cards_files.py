"""model_cards/: the InstAlign demo card is the bundled one; InstanceVG cards carry the paper's numbers (issue 24)."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import refseg

CARDS = Path(__file__).resolve().parents[1] / "model_cards"


def test_instalign_demo_card_is_the_bundled_card():
    bundled = Path(refseg.demo_model_path()) / "README.md"
    assert (CARDS / "instalign-demo.md").read_text() == bundled.read_text()


@pytest.mark.parametrize("name", ["grefcoco", "refzom", "rrefcoco", "b-refcoco", "l-refcoco"])
def test_instancevg_cards_have_a_license_link_and_the_papers_numbers(name):
    data = ModelCard.load(CARDS / f"instancevg-{name}.md").data.to_dict()
    assert data["license"] == "other" and data["license_link"].startswith(
        "https://github.com/Dmmm1997/InstanceVG/"
    )
    results = data["model-index"][0]["results"]
    assert results and all("Table" in r["source"]["name"] for r in results)
    assert all(m["verified"] is False and 0 < m["value"] <= 100 for r in results for m in r["metrics"])


def test_grefcoco_card_reports_table_3_and_table_6():
    data = ModelCard.load(CARDS / "instancevg-grefcoco.md").data.to_dict()
    values = {
        (r["dataset"]["split"], m["type"], r["task"]["type"]): m["value"]
        for r in data["model-index"][0]["results"]
        for m in r["metrics"]
    }
    assert values[("val", "giou", "image-segmentation")] == 73.36
    assert values[("testB", "n-acc", "image-segmentation")] == 65.18
    assert values[("testA", "f1", "object-detection")] == 70.2


def test_no_card_reports_a_zero_gres_score():
    for path in CARDS.glob("*.md"):
        index = ModelCard.load(path).data.to_dict().get("model-index") or []
        for result in (r for entry in index for r in entry["results"]):
            for metric in result["metrics"]:
                if metric["type"] in ("giou", "ciou"):
                    assert metric["value"] > 0, f"{path.name} reports {metric['name']} {metric['value']}"


def _body_after_title(text: str) -> str:
    """What follows the card's first heading (after the YAML front matter)."""
    body = text.split("\n---\n", 1)[1]
    return body.split("\n# ", 1)[1].split("\n", 1)[1]


@pytest.mark.parametrize("path", sorted(CARDS.glob("*.md")), ids=lambda p: p.name)
def test_every_card_says_at_the_top_that_import_refseg_registers_the_model(path):
    first_paragraph = _body_after_title(path.read_text()).strip().split("\n\n")[0]
    assert "import refseg" in first_paragraph and "registers" in first_paragraph, path.name


def test_generated_cards_say_it_too():
    from refseg.hub import model_card

    first_paragraph = (
        _body_after_title(str(model_card("me/m", model_type="instalign"))).strip().split("\n\n")[0]
    )
    assert "import refseg" in first_paragraph and "registers" in first_paragraph


@pytest.mark.parametrize("name", ["swin-base", "swin-tiny", "r50"])
def test_rela_cards_are_mit_and_carry_the_reported_val_numbers(name):
    """ReLA README, gRefCOCO val cIoU / gIoU: R-50 39.53 / 38.62, Swin-T 57.73 / 56.86, Swin-B 62.42 / 63.60."""
    data = ModelCard.load(CARDS / f"rela-{name}.md").data.to_dict()
    assert data["license"] == "mit" and data["library_name"] == "refseg"
    values = {
        (r["dataset"]["split"], m["type"]): m["value"]
        for r in data["model-index"][0]["results"]
        for m in r["metrics"]
    }
    expected = {"swin-base": (62.42, 63.60), "swin-tiny": (57.73, 56.86), "r50": (39.53, 38.62)}[name]
    assert (values[("val", "ciou")], values[("val", "giou")]) == expected
    results = data["model-index"][0]["results"]
    assert all(m["verified"] is False for r in results for m in r["metrics"])
    assert all("not measured by refseg" in r["source"]["name"] for r in results)
    text = (CARDS / f"rela-{name}.md").read_text()
    checkpoint = {
        "swin-base": "gres_swin_base.pth",
        "swin-tiny": "gres_swin_tiny.pth",
        "r50": "gres_r50.pth",
    }[name]
    assert f'RelaConfig.preset("{name}")' in text and f"refseg convert rela {checkpoint}" in text


def test_rela_swin_base_card_has_the_papers_three_splits():
    """The paper's Swin-B row: val 63.60 / 62.42 / 56.37, testA 70.03 / 69.26 / 59.02, testB 61.02 / 59.88 / 58.40."""
    data = ModelCard.load(CARDS / "rela-swin-base.md").data.to_dict()
    rows = {
        r["dataset"]["split"]: tuple(m["value"] for m in r["metrics"])
        for r in data["model-index"][0]["results"]
    }
    assert rows == {
        "val": (63.60, 62.42, 56.37),
        "testA": (70.03, 69.26, 59.02),
        "testB": (61.02, 59.88, 58.40),
    }
