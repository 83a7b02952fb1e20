"""Image I/O keeps the array, its dtype and the full geometry through a write and a read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoseg.io.images import (
    Geometry,
    ImageReadError,
    file_ending,
    read_geometry,
    read_image,
    write_image,
)


def _rotation(degrees_z: float, degrees_x: float) -> tuple[float, ...]:
    a, b = np.deg2rad(degrees_z), np.deg2rad(degrees_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return tuple((rz @ rx).ravel().tolist())


GEOMETRY = Geometry(
    shape=(5, 7, 9),
    spacing=(3.0, 0.75, 0.5),  # (z, y, x), anisotropic
    origin=(-120.5, 33.25, 7.0),  # (x, y, z)
    direction=_rotation(30.0, -15.0),
)


def _assert_same_geometry(found: Geometry, expected: Geometry) -> None:
    assert found.shape == expected.shape
    np.testing.assert_allclose(found.spacing, expected.spacing, rtol=1e-6)
    np.testing.assert_allclose(found.origin, expected.origin, atol=1e-4)
    np.testing.assert_allclose(found.direction, expected.direction, atol=1e-5)


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
def test_round_trip_keeps_array_dtype_and_geometry(tmp_path: Path, ending: str, dtype: type) -> None:
    array: np.ndarray = (np.arange(np.prod(GEOMETRY.shape)) % 200).reshape(GEOMETRY.shape).astype(dtype)
    path = write_image(array, GEOMETRY, tmp_path / "sub" / f"image{ending}")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == [f"image{ending}"]  # no temp left
    read, geom = read_image(path)
    assert read.dtype == array.dtype
    np.testing.assert_array_equal(read, array)
    _assert_same_geometry(geom, GEOMETRY)
    header, components = read_geometry(path)
    assert components == 1
    _assert_same_geometry(header, GEOMETRY)


def test_round_trip_2d(tmp_path: Path) -> None:
    geom = Geometry(shape=(6, 4), spacing=(0.5, 0.25), origin=(1.0, -2.0), direction=(0.0, 1.0, 1.0, 0.0))
    array = np.arange(24, dtype=np.int16).reshape(6, 4)
    read, found = read_image(write_image(array, geom, tmp_path / "slice.nii.gz"))
    np.testing.assert_array_equal(read, array)
    _assert_same_geometry(found, geom)


def test_geometry_json_round_trip() -> None:
    assert Geometry.from_json(GEOMETRY.to_json()) == GEOMETRY
    assert GEOMETRY.ndim == 3


def test_write_rejects_a_shape_that_differs_from_the_geometry(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"array shape \(5, 7, 8\) differs from geometry shape \(5, 7, 9\)"):
        write_image(np.zeros((5, 7, 8), np.float32), GEOMETRY, tmp_path / "x.nii.gz")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("reader", [read_image, read_geometry])
def test_unreadable_files_raise_image_read_error_naming_the_file(tmp_path: Path, reader) -> None:
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"\x00\x01 not an image " * 20)
    for path in (garbage, tmp_path / "missing.nii.gz"):
        with pytest.raises(ImageReadError, match=path.name):
            reader(path)


@pytest.mark.parametrize(
    ("name", "ending"),
    [
        ("a_0000.nii.gz", ".nii.gz"),
        ("A.NII", ".nii"),
        ("b.gipl.gz", ".gipl.gz"),
        ("c.mha", ".mha"),
        ("d.png", ".png"),
    ],
)
def test_file_ending(name: str, ending: str) -> None:
    assert file_ending(name) == ending
