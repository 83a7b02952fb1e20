"""Worker counts that would not fit in memory are lowered, with a log line; estimates follow the shapes."""

from __future__ import annotations

import logging

import pytest

from autoseg.preprocessing.workers import (
    WORKER_OVERHEAD_BYTES,
    available_memory_bytes,
    case_memory_bytes,
    workers_that_fit,
)

GIB = 2**30


def test_case_estimate_grows_with_resampling_and_channels() -> None:
    native = case_memory_bytes((100, 200, 200), (90, 180, 180), (1.0, 1.0, 1.0), None, 1)
    upsampled = case_memory_bytes((100, 200, 200), (90, 180, 180), (2.0, 1.0, 1.0), (1.0, 1.0, 1.0), 1)
    two_channels = case_memory_bytes((100, 200, 200), (90, 180, 180), (1.0, 1.0, 1.0), None, 2)
    assert upsampled > native and two_channels > native
    # the native float32 image and int16-sized label are in it
    assert native >= 6 * 100 * 200 * 200


def test_too_many_workers_are_lowered_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        fit = workers_that_fit(8, [1 * GIB, 3 * GIB], "preprocess 3d_fullres", available=10 * GIB)
    per_worker = 3 * GIB + WORKER_OVERHEAD_BYTES
    assert fit == int(0.8 * 10 * GIB) // per_worker == 2
    assert "preprocess 3d_fullres: 8 workers" in caplog.text and "using 2 worker(s)" in caplog.text


def test_workers_that_fit_are_kept_and_at_least_one_remains(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert workers_that_fit(2, [100 * 2**20], "fingerprint", available=10 * GIB) == 2
    assert caplog.text == ""
    assert workers_that_fit(4, [50 * GIB], "preprocess", available=GIB) == 1
    assert workers_that_fit(1, [50 * GIB], "preprocess", available=GIB) == 1  # nothing to lower


def test_available_memory_is_read() -> None:
    available = available_memory_bytes()
    assert available is not None and available > 0
