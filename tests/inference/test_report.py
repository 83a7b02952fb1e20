"""``autoseg report`` of a trained synthetic model: self-contained, rendered by headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autoseg.cli import main
from tests.report.chromium import find_chromium, render


@pytest.fixture(scope="module")
def report(trained: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    root = trained["root"]
    paths = [f"paths.preprocessed={root / 'pre'}", f"paths.results={root / 'results'}"]
    compare = ["--compare", str(trained["results"]), "--compare-configuration", "2d"]
    assert main(["report", str(trained["raw"]), "-o", str(out), *paths, *compare]) == 0
    return out


def test_report_holds_every_section_and_no_external_resource(report: Path, trained: dict[str, Path]) -> None:
    html, md = report.read_text(), report.with_suffix(".md").read_text()
    for section in (
        "Cross-validation",
        "Model selection",
        "Training",
        "Dataset fingerprint",
        "Plan",
        "Environment",
    ):
        assert f">{section}" in html and f"## {section}" in md
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", html), "the page must not fetch anything"
    assert "<script" not in html
    assert "target spacing" in md and "axis order" in md  # the plan's --explain reasons
    assert "Wilcoxon p" in md  # --compare: 3d_fullres of this run against its 2d
    cases = sorted(p.name.split(".")[0] for p in (trained["raw"] / "labelsTr").glob("*.nii.gz"))
    table = md.split("worst first")[1].split("## ")[0]
    assert sorted(re.findall(r"^\| (case_\d+) \|", table, re.M)) == cases
    dice = [float(v) for v in re.findall(r"^\| case_\d+ \| [-\d]+ \| ([\d.]+) \|", table, re.M)]
    assert dice == sorted(dice)  # worst first
    for mean, low, high in re.findall(r"([\d.]+) \[([\d.]+), ([\d.]+)\]", md):
        assert float(low) <= float(mean) <= float(high)
    assert "autoseg git commit" in md and "resolved config hash" in md


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium on PATH (make chromium installs Debian's; CI installs it)")
    page = render(report, tmp_path, binary)
    assert page.images >= 8  # histograms, curves per fold, Dice strips, overlay thumbnails
    assert page.loaded == page.images, f"{page.images - page.loaded} image(s) did not load"
    assert page.errors == []
    assert [line for line in page.console if "error" in line.lower()] == []
    assert page.screenshot.is_file() and page.screenshot.read_bytes()[:4] == b"\x89PNG"
    assert page.screenshot.stat().st_size > 10_000  # something was drawn
