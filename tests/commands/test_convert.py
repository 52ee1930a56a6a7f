"""``refseg convert ... --push-to-hub ORG/NAME [--private]``: the folder is written, carded and uploaded.

``HfApi`` is replaced by a recorder (no network): the tests check which repository and folder are used
and that a failed upload is one clear error line.
"""

import httpx
import pytest
import torch
from huggingface_hub.errors import HfHubHTTPError

import refseg.hub
from refseg.models.instancevg import InstanceVGConfig, InstanceVGForReferringSegmentation
from refseg.models.instancevg.convert_instancevg import state_dict_to_original
from refseg_cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = InstanceVGConfig.preset("tiny")
    model = InstanceVGForReferringSegmentation(config)
    original = state_dict_to_original(model.state_dict(), config.num_queries, config.decoder_layers)
    path = tmp_path_factory.mktemp("ckpt") / "InstanceVG-tiny.pth"
    torch.save({"state_dict": original}, path)
    return path


class RecordingApi:
    """Stands in for ``huggingface_hub.HfApi``: records the calls, optionally fails the upload."""

    calls: list = []
    fail_upload: Exception | None = None

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, commit_message=None, ignore_patterns=None, **kwargs):
        from pathlib import Path

        files = sorted(p.name for p in Path(folder_path).iterdir())
        self.calls.append(("upload_folder", repo_id, folder_path, commit_message, files))
        if self.fail_upload is not None:
            raise self.fail_upload
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


@pytest.fixture
def api(monkeypatch):
    RecordingApi.calls = []
    RecordingApi.fail_upload = None
    monkeypatch.setattr(refseg.hub, "HfApi", RecordingApi)
    return RecordingApi


def _convert(checkpoint, output, *extra):
    return main(
        ["convert", "instancevg", str(checkpoint), "--output", str(output), "--preset", "tiny", *extra]
    )


def test_push_to_hub_creates_the_repo_and_uploads_the_converted_folder(checkpoint, tmp_path, api, capsys):
    out = tmp_path / "ivg"
    assert _convert(checkpoint, out, "--push-to-hub", "my-org/instancevg-tiny", "--private") == 0
    assert "uploaded" in capsys.readouterr().out
    assert api.calls[0] == (
        "init",
        None,
    )  # the token comes from HF_TOKEN / the login, as huggingface_hub reads it
    assert api.calls[1] == ("create_repo", "my-org/instancevg-tiny", True, True)
    kind, repo_id, folder, message, files = api.calls[2]
    assert (kind, repo_id, folder) == ("upload_folder", "my-org/instancevg-tiny", str(out))
    assert message == "Convert InstanceVG-tiny.pth with refseg"
    assert {"config.json", "model.safetensors", "README.md", "preprocessor_config.json"} <= set(files)
    card = (out / "README.md").read_text()
    assert "library_name: refseg" in card and "InstanceVG-tiny.pth" in card and "instancevg" in card


def test_public_push_uses_the_default_visibility_and_the_underscore_spelling(checkpoint, tmp_path, api):
    assert _convert(checkpoint, tmp_path / "ivg", "--push_to_hub", "me/ivg") == 0
    assert api.calls[1] == ("create_repo", "me/ivg", None, True)


def test_a_failed_upload_is_one_clear_error_and_keeps_the_folder(checkpoint, tmp_path, api, capsys):
    request = httpx.Request("POST", "https://huggingface.co/api/repos/create")
    api.fail_upload = HfHubHTTPError(
        "401 Client Error: Unauthorized", response=httpx.Response(401, request=request)
    )
    out = tmp_path / "ivg"
    assert _convert(checkpoint, out, "--push-to-hub", "my-org/ivg") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # no progress bars
    assert len(errors) == 1
    err = errors[0]
    assert err.startswith(f"refseg convert: error: wrote {out}, but uploading it to my-org/ivg failed: 401")
    assert "hf auth login" in err and "HF_TOKEN" in err
    assert (out / "model.safetensors").is_file()


def test_bad_repo_id_and_private_without_push_fail_before_converting(checkpoint, tmp_path, api, capsys):
    assert _convert(checkpoint, tmp_path / "a", "--push-to-hub", "my org/ivg") == 1
    assert "--push-to-hub 'my org/ivg'" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert _convert(checkpoint, tmp_path / "b", "--private") == 1
    assert "--private needs --push-to-hub" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert api.calls == []
