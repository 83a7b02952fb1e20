"""QC pictures: overlay PNGs (windows, colours, aspect, 2D, empty masks), the CV Dice plot, the CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import numpy as np
import pytest

from autoseg.commands import overlay as overlay_cmd
from autoseg.io.images import Geometry, write_image
from autoseg.visualize.overlay import (
    Window,
    blend_panel,
    central_indices,
    dice_per_class,
    foreground_mean,
    label_color,
    overlay_figure,
    overlay_png,
    parse_window,
    plot_cv_dice,
    spread_axial_indices,
    window_bounds,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def ball_case(shape=(12, 64, 64), centre=(6, 32, 32), radius=(3, 12, 12), labels=2):
    """A CT-like volume (air -1000, body 40 HU) and a ball split in ``labels`` halves along x."""
    zz, yy, xx = np.indices(shape)
    d = sum(((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), centre, radius, strict=True))
    mask = np.zeros(shape, dtype=np.uint8)
    mask[d <= 1] = 1
    if labels > 1:
        mask[(d <= 1) & (xx >= centre[2])] = 2
    image = np.full(shape, -1000.0, dtype=np.float32)
    image[:, 4:-4, 4:-4] = 40.0
    image[mask > 0] = 80.0
    return image, mask


def assert_png(path: Path, min_side: int = 200, max_side: int = 4000) -> np.ndarray:
    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert min_side <= pixels.shape[0] <= max_side and min_side <= pixels.shape[1] <= max_side
    assert pixels[..., :3].std() > 0.05  # not a blank canvas
    return pixels


def rendered_rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float) / 255


def pixel_of(fig, ax, row: float, col: float, shape: tuple[int, int], origin_upper: bool) -> tuple[int, int]:
    """Canvas (row, col) of the centre of slice pixel (row, col) drawn in ``ax`` (image fills the axes)."""
    box = ax.get_window_extent()
    height = fig.canvas.get_width_height()[1]
    x = box.x0 + (col + 0.5) / shape[1] * box.width
    frac = (row + 0.5) / shape[0]
    y_from_bottom = box.y1 - frac * box.height if origin_upper else box.y0 + frac * box.height
    return int(round(height - y_from_bottom)), int(round(x))


# --- windows -------------------------------------------------------------------------------------


def test_soft_tissue_window_maps_minus_160_to_black_and_240_to_white():
    win = window_bounds(np.zeros(4), "soft-tissue")
    assert (win.low, win.high) == (-160.0, 240.0)
    rgb = blend_panel(np.array([[-160.0, 240.0, 40.0, -1000.0, 3000.0]]), np.zeros((1, 5), int), win)
    np.testing.assert_allclose(rgb[0, :, 0], [0.0, 1.0, 0.5, 0.0, 1.0])


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("bone", -500.0, 1300.0), ("lung", -1350.0, 150.0), ("brain", 0.0, 80.0)],
)
def test_ct_presets_are_width_and_level(name, low, high):
    win = window_bounds(np.zeros(3), name)
    assert (win.low, win.high) == (low, high)


def test_auto_window_is_soft_tissue_for_ct_and_percentiles_for_mr():
    hu = np.linspace(-1024, 2000, 1000)
    assert window_bounds(hu, "auto").name.startswith("soft-tissue")  # looks like HU
    assert window_bounds(np.linspace(0, 500, 100), "auto", modality="ct").name.startswith("soft-tissue")
    assert window_bounds(hu, "auto", modality="mr").name.startswith("percentiles")
    assert window_bounds(np.linspace(0, 500, 100), "auto").name.startswith("percentiles")


def test_percentile_window_ignores_the_background_and_outliers():
    rng = np.random.default_rng(0)
    image = np.zeros(100_000)
    image[:50_000] = rng.uniform(100, 200, 50_000)
    image[0] = 10_000  # one bright outlier
    win = window_bounds(image, "percentile")
    assert 100 <= win.low < 102 and 198 < win.high <= 200


def test_explicit_window_and_bad_windows():
    assert window_bounds(np.zeros(2), (-5.0, 5.0)) == Window(-5.0, 5.0, "[-5, 5]")
    assert parse_window("-160,240") == (-160.0, 240.0) and parse_window("lung") == "lung"
    with pytest.raises(ValueError, match="low must be below high"):
        window_bounds(np.zeros(2), (5.0, 5.0))
    with pytest.raises(ValueError, match="'liver' is not one of soft-tissue"):
        window_bounds(np.zeros(2), "liver")
    with pytest.raises(ValueError, match="LOW,HIGH"):
        parse_window("a,b")
    with pytest.raises(ValueError, match="modality 'pet'"):
        window_bounds(np.zeros(2), modality="pet")


# --- colours and slices --------------------------------------------------------------------------


def test_blend_panel_colours_the_mask_and_leaves_the_rest_grey():
    image = np.linspace(0, 1, 36).reshape(6, 6)
    mask = np.zeros((6, 6), dtype=int)
    mask[1:3, 1:3] = 1
    mask[4, 4] = 2
    rgb = blend_panel(image, mask, Window(0.0, 1.0, "unit"), alpha=0.4)
    outside = rgb[mask == 0]
    np.testing.assert_allclose(outside[:, 0], outside[:, 1])
    np.testing.assert_allclose(outside[:, 0], outside[:, 2])
    for label in (1, 2):
        grey = image[mask == label][:, None]
        expected = 0.6 * grey + 0.4 * np.asarray(label_color(label))[None]
        np.testing.assert_allclose(rgb[mask == label], expected)
    assert label_color(1) != label_color(2)


def test_central_indices_fall_on_foreground_even_for_two_separate_structures():
    mask = np.zeros((9, 20, 20), dtype=int)
    mask[4, 5:8, 2:5] = 1
    mask[4, 5:8, 15:18] = 2  # the centre of mass x=10 lies between the two
    z, y, x = central_indices(mask)
    assert z == 4 and 5 <= y < 8 and mask[:, :, x].any()
    assert central_indices(np.zeros((4, 6, 8), int)) == (2, 3, 4)


def test_spread_axial_slices_cover_the_foreground_extent():
    mask = np.zeros((40, 4, 4), dtype=int)
    mask[10:31] = 1
    picks = spread_axial_indices(mask, 3)
    assert picks == [15, 20, 25]
    assert all(mask[k].any() for k in picks)


# --- the overlay figure ---------------------------------------------------------------------------


def test_overlay_png_is_a_valid_png(tmp_path):
    image, mask = ball_case()
    out = overlay_png(
        image, mask, (4.0, 0.8, 0.8), tmp_path / "qc" / "case.png", label_names={1: "a", 2: "b"}
    )
    assert out == tmp_path / "qc" / "case.png"
    assert_png(out)
    assert [p.name for p in out.parent.iterdir()] == ["case.png"]  # no temporary file left


def test_overlay_colour_appears_where_the_mask_is(tmp_path):
    image = np.full((5, 40, 40), 40.0, dtype=np.float32)  # mid-grey in the soft-tissue window
    mask = np.zeros(image.shape, dtype=np.uint8)
    mask[:, 10:30, 10:30] = 1
    fig = overlay_figure(image, mask, (1.0, 1.0, 1.0), window="soft-tissue", num_slices=0)
    axial = fig.axes[0]
    assert axial.get_title().startswith("axial")
    rgb = rendered_rgb(fig)
    inside = rgb[pixel_of(fig, axial, 20, 20, (40, 40), origin_upper=True)]
    outside = rgb[pixel_of(fig, axial, 3, 3, (40, 40), origin_upper=True)]
    np.testing.assert_allclose(outside, [0.5, 0.5, 0.5], atol=0.02)
    np.testing.assert_allclose(inside, 0.6 * 0.5 + 0.4 * np.asarray(label_color(1)), atol=0.02)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_anisotropic_spacing_is_drawn_to_scale():
    image, mask = ball_case(shape=(12, 64, 64))
    fig = overlay_figure(image, mask, (4.0, 0.8, 0.8), num_slices=0)
    axes = {ax.get_title().split()[0]: ax for ax in fig.axes if ax.get_title()}
    assert axes["axial"].get_aspect() == pytest.approx(1.0)
    assert axes["coronal"].get_aspect() == pytest.approx(5.0)
    assert axes["sagittal"].get_aspect() == pytest.approx(5.0)
    fig.canvas.draw()
    for plane, (height_mm, width_mm) in {
        "axial": (64 * 0.8, 64 * 0.8),
        "coronal": (12 * 4.0, 64 * 0.8),
    }.items():
        box = axes[plane].get_window_extent()
        assert box.height / box.width == pytest.approx(height_mm / width_mm, rel=0.03), plane
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_empty_mask_still_draws_the_central_slices(tmp_path):
    image, _ = ball_case()
    fig = overlay_figure(image, np.zeros(image.shape, np.uint8), (1.0, 1.0, 1.0))
    assert "no foreground" in fig._suptitle.get_text()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[:3] == ["axial z=6", "coronal y=32", "sagittal x=32"]
    import matplotlib.pyplot as plt

    plt.close(fig)
    assert_png(overlay_png(image, np.zeros(image.shape, np.uint8), (1, 1, 1), tmp_path / "empty.png"))


def test_2d_images_get_one_axial_panel(tmp_path):
    image, mask = ball_case(shape=(1, 48, 64), centre=(0, 24, 32), radius=(1, 10, 10))
    fig = overlay_figure(image, mask, (1.0, 0.5, 1.0))
    drawn = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in drawn] == ["axial z=0"]
    assert drawn[0].get_aspect() == pytest.approx(0.5)
    import matplotlib.pyplot as plt

    plt.close(fig)
    assert_png(overlay_png(image[0], mask[0], (0.5, 1.0), tmp_path / "2d.png"), min_side=100)


def test_overlay_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match=r"image shape \(4, 5, 6\) differs from mask shape \(4, 5, 7\)"):
        overlay_png(np.zeros((4, 5, 6)), np.zeros((4, 5, 7), int), (1, 1, 1), "unused.png")


# --- the CV Dice plot ---------------------------------------------------------------------------


def evaluation_summary() -> dict:
    cases = [
        {"case": f"c{i}", "metrics": {"liver": {"dice": 0.9 + 0.01 * i}, "tumour": {"dice": d}}}
        for i, d in enumerate([0.5, None, 0.7, 0.6])
    ]
    return {"cases": cases, "mean": {"liver": {"dice": 0.915}, "tumour": {"dice": 0.6}}}


def test_dice_per_class_skips_empty_vs_empty():
    per_class = dice_per_class(evaluation_summary())
    assert per_class == {"liver": pytest.approx([0.9, 0.91, 0.92, 0.93]), "tumour": [0.5, 0.7, 0.6]}
    assert foreground_mean(evaluation_summary(), per_class) == pytest.approx((0.915 + 0.6) / 2)
    flat = {"cases": [{"case": "a", "dice": {"x": 0.8, "y": None}}], "mean": {"x": 0.8, "y": None}}
    assert dice_per_class(flat) == {"x": [0.8], "y": []}
    assert foreground_mean(flat, dice_per_class(flat)) == pytest.approx(0.8)
    assert foreground_mean({**flat, "foreground_mean": 0.42}, {}) == pytest.approx(0.42)


def test_plot_cv_dice_writes_a_png(tmp_path):
    out = plot_cv_dice(evaluation_summary(), tmp_path / "cv_dice.png")
    assert_png(out)
    with pytest.raises(ValueError, match="no cases"):
        plot_cv_dice({"cases": []}, tmp_path / "none.png")


# --- the command --------------------------------------------------------------------------------


def run_overlay(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    overlay_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["overlay", *argv])
    return args.func(args)


def write_case(
    folder: Path, image: np.ndarray, mask: np.ndarray, spacing=(4.0, 0.8, 0.8)
) -> tuple[Path, Path]:
    geom = Geometry(image.shape, spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    mask_geom = Geometry(mask.shape, spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    return (
        write_image(image, geom, folder / "case_0000.nii.gz"),
        write_image(mask, mask_geom, folder / "case.nii.gz"),
    )


def test_cli_writes_the_png_and_prints_its_path(tmp_path, capsys):
    image, mask = ball_case()
    img, seg = write_case(tmp_path, image, mask)
    (tmp_path / "dataset.json").write_text(
        '{"channel_names": {"0": "CT"}, "labels": {"background": 0, "left": 1, "right": 2}}'
    )
    out = tmp_path / "qc.png"
    argv = [str(img), str(seg), "-o", str(out), "--labels", str(tmp_path / "dataset.json")]
    assert run_overlay([*argv, "--window=-200,300"]) == 0  # "=": LOW is negative
    assert capsys.readouterr().out.strip() == str(out)
    assert_png(out)


def test_cli_names_both_files_when_shapes_differ(tmp_path):
    image, mask = ball_case()
    img, seg = write_case(tmp_path, image, mask[:, :, :60])
    with pytest.raises(ValueError) as err:
        run_overlay([str(img), str(seg), "-o", str(tmp_path / "x.png")])
    message = str(err.value)
    assert str(img) in message and str(seg) in message
    assert "(12, 64, 64)" in message and "(12, 64, 60)" in message
    assert not (tmp_path / "x.png").exists()


def test_cli_missing_file_and_bad_labels(tmp_path):
    image, mask = ball_case()
    img, seg = write_case(tmp_path, image, mask)
    with pytest.raises(FileNotFoundError, match=r"nope\.nii\.gz: no such mask file"):
        run_overlay([str(img), str(tmp_path / "nope.nii.gz"), "-o", str(tmp_path / "x.png")])
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    with pytest.raises(ValueError, match=r"bad\.json: not a dataset\.json"):
        run_overlay(
            [str(img), str(seg), "-o", str(tmp_path / "x.png"), "--labels", str(tmp_path / "bad.json")]
        )


def test_cli_through_autoseg_main(tmp_path, capsys):
    from autoseg.commands import COMMAND_MODULES

    if "autoseg.commands.overlay" not in COMMAND_MODULES:
        pytest.skip("autoseg.commands.overlay is not yet listed in autoseg.commands.COMMAND_MODULES")
    from autoseg.cli import main

    image, mask = ball_case()
    img, seg = write_case(tmp_path, image, mask[:, :, :60])
    assert main(["overlay", str(img), str(seg), "-o", str(tmp_path / "x.png")]) == 1
    assert "(12, 64, 60)" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_hippocampus_overlay(hippocampus_raw, tmp_path, capsys):
    image = sorted((hippocampus_raw / "imagesTr").glob("*_0000.nii.gz"))[0]
    mask = hippocampus_raw / "labelsTr" / image.name.replace("_0000.nii.gz", ".nii.gz")
    out = tmp_path / "hippo.png"
    argv = [str(image), str(mask), "-o", str(out), "--labels", str(hippocampus_raw / "dataset.json")]
    assert run_overlay(argv) == 0
    assert_png(out)
