"""Each figure builds on the tiny budget into non-empty PNG/PDF files of the expected pixel
size, re-renders from its cached data, and the command line drives it."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maml_depth.paper_figures import FIGURES, build_figure


def png_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the PNG header (signature + IHDR chunk)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


@pytest.mark.parametrize("number", sorted(FIGURES))
def test_png_and_pdf_written_with_expected_size(built: dict[int, Any], number: int) -> None:
    import matplotlib.image as mpimg

    r = built[number]
    png = next(p for p in r.paths if p.suffix == ".png")
    pdf = next(p for p in r.paths if p.suffix == ".pdf")
    assert png.name == f"{FIGURES[number].name}.png"
    assert png.stat().st_size > 10_000 and pdf.stat().st_size > 5_000
    expected = FIGURES[number].pixel_size()
    assert png_size(png) == expected
    img = mpimg.imread(png)
    assert img.shape[:2] == (expected[1], expected[0])
    assert float(np.std(img[..., :3])) > 0.05  # not a blank canvas
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert not r.cached


@pytest.mark.parametrize("number", sorted(FIGURES))
def test_data_finite_and_captioned(built: dict[int, Any], number: int) -> None:
    r = built[number]
    assert r.data.arrays, "no data arrays"
    for key, v in r.data.arrays.items():
        if np.issubdtype(v.dtype, np.floating) and key.startswith("theory_"):
            assert np.isfinite(v).all(), key
    assert r.caption and "not available" not in r.caption
    assert r.data.meta["budget"] == "tiny"


def test_rerender_from_cache_is_fast_and_identical(built: dict[int, Any],
                                                   figure_dirs: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    _, cache = figure_dirs
    for number in (2, 4):
        t0 = time.perf_counter()
        again = build_figure(number, "tiny", tmp_path, cache_dir=cache)
        assert again.cached
        assert time.perf_counter() - t0 < 30
        first = built[number].data
        assert sorted(again.data.arrays) == sorted(first.arrays)
        for k, v in first.arrays.items():
            np.testing.assert_array_equal(again.data.arrays[k], v)
        assert png_size(again.paths[0]) == FIGURES[number].pixel_size()


def test_command_line_builds_from_cache_and_writes_gallery(
        built: dict[int, Any], figure_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    from maml_depth.cli import main

    _, cache = figure_dirs
    out = tmp_path / "gallery"
    readme = tmp_path / "README.md"
    rc = main(["figures", "--only", "2,fig4", "--budget", "tiny", "--out", str(out),
               "--cache", str(cache), "--readme", str(readme), "--no-progress"])
    assert rc == 0
    for name in ("fig2_training_curves", "fig4_preconditioner_spectrum"):
        assert (out / f"{name}.png").stat().st_size > 0
        assert (out / f"{name}.pdf").stat().st_size > 0
    text = readme.read_text()
    assert "(gallery/fig2_training_curves.png)" in text
    assert "(gallery/fig4_preconditioner_spectrum.pdf)" in text
    assert "Figure 1" not in text


@pytest.mark.parametrize("only", ["7", "1,x", ","])
def test_command_line_rejects_bad_only(only: str, capsys: pytest.CaptureFixture[str]) -> None:
    from maml_depth.cli import main

    assert main(["figures", "--only", only, "--budget", "tiny", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("maml-depth figures: error:") and "\n" not in err


def test_command_line_rejects_bad_budget(capsys: pytest.CaptureFixture[str]) -> None:
    from maml_depth.cli import main

    assert main(["figures", "--budget", "huge", "--no-progress"]) == 2
    assert "budget must be one of" in capsys.readouterr().err


def test_command_line_lists_figures(capsys: pytest.CaptureFixture[str]) -> None:
    from maml_depth.cli import main

    assert main(["figures", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(spec.name in out for spec in FIGURES.values())
