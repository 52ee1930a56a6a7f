"""``refseg demo --image-size`` outside what synthetic scenes support is a one-line error, not the default."""

from __future__ import annotations

import pytest

from refseg_cli import main


@pytest.mark.parametrize("size", ["0", "-5", "8", "100000"])
def test_image_sizes_out_of_range_are_refused_before_loading(size: str, tmp_path, capsys) -> None:
    argv = [
        "demo",
        "--image-size",
        size,
        "--model",
        str(tmp_path / "no_model"),
        "--output",
        str(tmp_path / "o.png"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--image-size must be between 32 and 2048 pixels, got {size}" in err, err
    assert not (tmp_path / "o.png").exists()
