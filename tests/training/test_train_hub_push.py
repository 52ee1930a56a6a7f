"""examples/train.py --push_to_hub: no token in any written or uploaded file, no temporary folder uploaded.

The Hub is a fake ``HfApi`` that records what ``upload_folder`` would send (with huggingface_hub's own
pattern filter), so nothing touches the network.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import filter_repo_objects

import refseg.hub
from refseg.hub import model_card, push_to_hub, redact_argv, redact_mapping, redact_secrets

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "train.py"
TOKEN = "hf_FAKEfakeFAKE0123456789"


class FakeHfApi:
    """Records ``create_repo`` / ``upload_folder`` calls; ``uploaded`` maps each sent path to its bytes."""

    calls: list[dict] = []

    def __init__(self, token: str | None = None):
        self.token = token

    def create_repo(self, repo_id: str, private=None, exist_ok=False, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(
        self, *, repo_id, folder_path, commit_message, allow_patterns=None, ignore_patterns=None
    ):
        folder = Path(folder_path)
        names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        kept = filter_repo_objects(
            names,
            allow_patterns=allow_patterns,
            ignore_patterns=[*(ignore_patterns or []), *DEFAULT_IGNORE_PATTERNS],
        )
        FakeHfApi.calls.append({"repo_id": repo_id, "uploaded": {n: (folder / n).read_bytes() for n in kept}})
        return type("CommitInfo", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()


def _load_train_script():
    spec = importlib.util.spec_from_file_location("refseg_train_script_hub", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_hub(monkeypatch) -> type[FakeHfApi]:
    FakeHfApi.calls = []
    monkeypatch.setattr(refseg.hub, "HfApi", FakeHfApi)
    return FakeHfApi


def test_training_push_writes_and_uploads_no_token_and_no_temporary_folder(tmp_path, fake_hub):
    out = tmp_path / "run"
    leftover = out / ".tmp-step_6"  # what a save killed half-way leaves behind
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half written")
    (out / ".tmp-old-step_2").mkdir()
    (out / ".tmp-old-step_2" / "optimizer.bin").write_bytes(b"old")
    argv = ["--config_preset", "tiny", "--per_device_train_batch_size", "2", "--train_images", "2"]
    argv += ["--val_images", "2", "--max_train_steps", "2", "--checkpointing_steps", "1", "--skip_eval"]
    argv += ["--output_dir", str(out), "--push_to_hub", "--hub_model_id", "me/tiny", "--hub_token", TOKEN]
    _load_train_script().main(argv)

    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and not [str(p) for p in written if TOKEN.encode() in p.read_bytes()]
    [call] = fake_hub.calls
    uploaded = call["uploaded"]
    assert {"config.json", "model.safetensors", "README.md", "training_args.json"} <= set(uploaded)
    assert not [name for name, data in uploaded.items() if TOKEN.encode() in data]
    assert not [name for name in uploaded if name.startswith((".", "step_")) or "/." in name]
    card = uploaded["README.md"].decode()
    assert "--hub_token '<redacted>'" in card or "--hub_token <redacted>" in card


def test_push_refuses_a_folder_whose_files_hold_the_token(tmp_path, fake_hub):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "README.md").write_text("card")
    (tmp_path / "notes.txt").write_text(f"token {TOKEN}")
    with pytest.raises(ValueError, match="token is written in notes.txt"):
        push_to_hub(tmp_path, "me/m", token=TOKEN)
    assert fake_hub.calls == []


def test_redaction_of_command_lines_cards_and_argument_dicts():
    argv = ["train.py", "--hub_token", TOKEN, "--token=abc", "--tokenizer_name_or_path", "tok", "x" + TOKEN]
    assert redact_argv(argv) == [
        "train.py",
        "--hub_token",
        "<redacted>",
        "--token=<redacted>",
        "--tokenizer_name_or_path",
        "tok",
        "x<redacted>",
    ]
    assert TOKEN not in redact_secrets(f"train.py --hub_token {TOKEN} --password 'a b'")
    assert redact_mapping({"hub_token": TOKEN, "tokenizer_name_or_path": "t"}) == {
        "tokenizer_name_or_path": "t"
    }
    card = str(model_card("me/m", model_type="instalign", training_command=f"train.py --hub_token {TOKEN}"))
    assert TOKEN not in card and "--hub_token <redacted>" in card
