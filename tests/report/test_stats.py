"""Bootstrap intervals, the paired Wilcoxon test and the HTML/Markdown twin document."""

from __future__ import annotations

import math

import numpy as np

from autoseg.report.document import Document
from autoseg.report.stats import bootstrap_ci, paired_wilcoxon


def test_interval_contains_the_mean_and_narrows_with_more_cases() -> None:
    rng = np.random.default_rng(0)
    population = np.clip(rng.normal(0.85, 0.08, 400), 0, 1)
    widths = []
    for n in (8, 32, 128):
        interval = bootstrap_ci(list(population[:n]))
        assert interval.n == n
        assert interval.low <= interval.mean <= interval.high
        assert math.isclose(interval.mean, float(population[:n].mean()))
        widths.append(interval.high - interval.low)
    assert widths[0] > widths[1] > widths[2] > 0
    # about 1/sqrt(n): 16x the cases, roughly a quarter of the width (sample std varies)
    assert 0.1 < widths[2] / widths[0] < 0.6


def test_interval_skips_missing_values_and_repeats_with_its_seed() -> None:
    values = [0.9, None, 0.7, float("nan"), 0.8]
    a, b = bootstrap_ci(values), bootstrap_ci(values)
    assert a == b and a.n == 3 and math.isclose(a.mean, 0.8)
    assert bootstrap_ci([]).text() == "-"
    assert bootstrap_ci([0.5]).low == bootstrap_ci([0.5]).high == 0.5


def test_paired_wilcoxon_sees_a_consistent_shift_and_not_noise() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0.6, 0.9, 20)
    shifted = a + 0.03 + rng.normal(0, 0.005, 20)
    p_shift, n = paired_wilcoxon(list(a), list(shifted))
    assert n == 20 and p_shift is not None and p_shift < 0.001
    p_noise, _ = paired_wilcoxon(list(a), list(a + rng.normal(0, 0.02, 20)))
    assert p_noise is not None and p_noise > 0.01
    assert paired_wilcoxon([0.5, None], [0.6, 0.7]) == (None, 1)


def test_document_writes_html_and_markdown_twins_and_escapes() -> None:
    doc = Document("run <1>")
    doc.heading("Cross-validation")
    doc.table(["class", "Dice"], [["a|b", "0.9"], ["<x>", ("img", "data:image/png;base64,AAAA")]])
    html, md = doc.html(), doc.markdown()
    assert "<td>&lt;x&gt;</td>" in html and "<h1>run &lt;1&gt;</h1>" in html
    assert 'src="data:image/png;base64,AAAA"' in html and "http" not in html
    assert "| a\\|b | 0.9 |" in md and "## Cross-validation" in md
