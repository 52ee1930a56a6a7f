"""Configs saved by earlier refseg versions still load, to the same values.

Each folder under ``tests/fixtures/configs/`` holds a ``config.json`` written with ``save_pretrained`` by the
code before the configs became declarative, and ``to_dict.json``, that config's ``to_dict()`` then.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig

import refseg  # noqa: F401  (registers the model types with AutoConfig)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "configs"
CASES = sorted(path.name for path in FIXTURES.iterdir() if path.is_dir())


def test_every_model_type_has_saved_configs():
    assert {name.rsplit("_", 1)[0] for name in CASES} == {
        "instalign",
        "instancevg",
        "metris",
        "presence_plurality",
        "rela",
    }


@pytest.mark.parametrize("case", CASES)
def test_a_config_saved_by_the_old_code_loads_to_the_same_values(case):
    config = AutoConfig.from_pretrained(FIXTURES / case)
    expected = json.loads((FIXTURES / case / "to_dict.json").read_text())
    loaded = json.loads(config.to_json_string(use_diff=False))  # the JSON view: id2label keys are strings
    loaded.pop("transformers_version", None)
    loaded["_name_or_path"] = ""  # where it was loaded from
    assert config.model_type == case.rsplit("_", 1)[0]
    assert loaded == expected
