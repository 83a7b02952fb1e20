"""The planner against nnU-Net v2's published plans, and its rules as properties."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from autoseg.commands.config import compose
from autoseg.planning.plans import build_plans, parse_plan_overrides
from autoseg.planning.presets import PlannerConfig, available_presets
from autoseg.planning.spacing import target_spacing, transpose_axes
from tests.planning.helpers import make_fingerprint

HIPPOCAMPUS = ([1.0, 1.0, 1.0], [36, 50, 35])
LUNG = ([1.245, 0.785, 0.785], [252, 512, 512])


def preset(name: str, **changes) -> PlannerConfig:
    data = OmegaConf.to_container(compose([f"planner={name}"]).planner, resolve=True)
    data.update(changes)
    return PlannerConfig.from_mapping(data)


def summary(plans, name):
    c = plans["configurations"][name]
    return tuple(c["patch_size"]), c["batch_size"], c["architecture"]["n_stages"]


# Plans nnU-Net v2 makes for these fingerprints (reference/nnunet-v2-facts.md §3).
@pytest.mark.parametrize(
    ("preset_name", "data", "cases", "config", "expected"),
    [
        ("default", HIPPOCAMPUS, 260, "3d_fullres", ((40, 56, 40), 9, 4)),
        ("default", HIPPOCAMPUS, 260, "2d", ((56, 40), 366, 4)),
        ("default", HIPPOCAMPUS, 100, "3d_fullres", ((40, 56, 40), 4, 4)),
        ("resenc-m", HIPPOCAMPUS, 260, "3d_fullres", ((40, 56, 40), 58, 4)),
        ("default", LUNG, 63, "3d_fullres", ((80, 192, 160), 2, 6)),
        ("default", LUNG, 63, "2d", ((512, 512), 12, 8)),
        ("default", LUNG, 63, "3d_lowres", ((80, 192, 160), 2, 6)),
    ],
)
def test_matches_nnunet_reference_plans(preset_name, data, cases, config, expected):
    plans, _ = build_plans(
        make_fingerprint(*data, cases, num_labels=3 if data is HIPPOCAMPUS else 2), preset(preset_name)
    )
    assert summary(plans, config) == expected


@pytest.mark.parametrize(("name", "patch"), [("resenc-l", (112, 256, 256)), ("resenc-xl", (128, 320, 320))])
def test_resenc_presets_grow_the_lung_patch(name, patch):
    plans, _ = build_plans(make_fingerprint(*LUNG, 63, num_labels=2), preset(name))
    assert tuple(plans["configurations"]["3d_fullres"]["patch_size"]) == patch


def test_lung_lowres_spacing_and_median():
    plans, _ = build_plans(make_fingerprint(*LUNG, 63, num_labels=2), preset("default"))
    lowres = plans["configurations"]["3d_lowres"]
    assert lowres["spacing"] == pytest.approx([2.386, 1.504, 1.504], abs=2e-3)
    assert lowres["median_image_size_in_voxels"] == [132, 267, 267]
    assert plans["configurations"]["3d_fullres"]["batch_dice"] is True
    assert lowres["batch_dice"] is False


def test_anisotropic_dataset_coarse_axis_first_kernel_one_no_early_pooling():
    # thick slices along the last array axis: (0.7, 0.7, 5) mm in (z, y, x) order
    fp = make_fingerprint([0.7, 0.7, 5.0], [300, 300, 40], 20, channel="T2")
    plans, explain = build_plans(fp, preset("default"))
    assert plans["transpose_forward"][0] == 2
    assert sorted(plans["transpose_forward"]) == [0, 1, 2]
    assert [plans["transpose_forward"][i] for i in plans["transpose_backward"]] == [0, 1, 2]
    full = plans["configurations"]["3d_fullres"]
    assert full["spacing"][0] == max(full["spacing"])
    arch = full["architecture"]
    assert arch["kernel_sizes"][0][0] == 1 and arch["kernel_sizes"][0][1:] == [3, 3]
    assert arch["strides"][1][0] == 1 and arch["strides"][1][1:] == [2, 2]
    assert any("axis order [2, 0, 1]" in line for line in explain.lines)


def test_anisotropy_rule_takes_the_10th_percentile_of_the_coarse_axis():
    spacings = [[s, 0.7, 0.7] for s in (4.0, 5.0, 5.0, 5.0, 6.0, 5.0, 4.5, 5.0, 5.0, 5.0)]
    shapes = [[30, 400, 400]] * 10
    decision = target_spacing(spacings, shapes)
    assert decision.spacing[0] == pytest.approx(4.45)  # 10th percentile, not the median 5.0
    assert "anisotropy rule" in decision.rule
    # anisotropic spacing but many slices: the median stays
    assert target_spacing(spacings, [[300, 400, 400]] * 10).spacing[0] == pytest.approx(5.0)


def test_large_volumes_get_a_lowres_configuration():
    fp = make_fingerprint([1.0, 1.0, 1.0], [300, 400, 400], 30, channel="CT")
    plans, explain = build_plans(fp, preset("default"))
    assert "3d_lowres" in plans["configurations"]
    full, low = plans["configurations"]["3d_fullres"], plans["configurations"]["3d_lowres"]
    assert all(lo > fu for lo, fu in zip(low["spacing"], full["spacing"], strict=True))
    coverage = math.prod(low["patch_size"]) / math.prod(low["median_image_size_in_voxels"])
    assert coverage >= 0.25
    assert plans["configurations"]["3d_cascade_fullres"]["previous_stage"] == "3d_lowres"
    assert any(line.startswith("[3d_lowres]") for line in explain.lines)


def test_small_volumes_get_no_lowres():
    plans, explain = build_plans(make_fingerprint(*HIPPOCAMPUS, 100, channel="MRI"), preset("default"))
    assert "3d_lowres" not in plans["configurations"]
    assert any("not needed" in line for line in explain.lines)


def test_memory_model_shrinks_and_grows_the_patch_with_gpu_memory():
    fp = make_fingerprint([1.0, 0.8, 0.8], [200, 400, 400], 40)
    voxels = {}
    for gb in (4, 8, 24):
        plans, _ = build_plans(fp, preset("default", gpu_memory_gb=gb))
        c = plans["configurations"]["3d_fullres"]
        voxels[gb] = math.prod(c["patch_size"])
        assert c["memory"]["estimate_feature_map_elements"] * 2 / 2 <= c["memory"]["budget"]
    assert voxels[4] < voxels[8] < voxels[24]


def test_normalization_ct_vs_zscore_and_mask_rule():
    plans, _ = build_plans(
        make_fingerprint(*HIPPOCAMPUS, 20, channel="CT", relative_size=0.5), preset("default")
    )
    full = plans["configurations"]["3d_fullres"]
    assert full["normalization_schemes"] == ["ct"] and full["use_mask_for_norm"] == [False]
    plans, _ = build_plans(
        make_fingerprint(*HIPPOCAMPUS, 20, channel="FLAIR", relative_size=0.5), preset("default")
    )
    full = plans["configurations"]["3d_fullres"]
    assert full["normalization_schemes"] == ["zscore"] and full["use_mask_for_norm"] == [True]
    plans, _ = build_plans(
        make_fingerprint(*HIPPOCAMPUS, 20, channel="T1", relative_size=0.9), preset("default")
    )
    assert plans["configurations"]["3d_fullres"]["use_mask_for_norm"] == [False]


def test_overrides_are_applied_rederived_and_recorded():
    fp = make_fingerprint(*HIPPOCAMPUS, 100, channel="MRI")
    overrides = ["3d_fullres.patch_size=[30,50,30]", "3d_fullres.batch_size=7", "2d.batch_dice=false"]
    plans, explain = build_plans(fp, preset("default"), overrides)
    full = plans["configurations"]["3d_fullres"]
    # the patch is padded to the divisor of the topology derived for it (no broken divisibility)
    assert full["patch_size"] == [32, 56, 32]
    assert all(p % 2 ** (len(full["architecture"]["strides"]) - 1) == 0 for p in full["patch_size"])
    assert full["batch_size"] == 7
    assert plans["configurations"]["2d"]["batch_dice"] is False
    assert plans["overrides"] == overrides
    assert any("given on the command line" in line for line in explain.lines)


def test_target_spacing_override_replans():
    fp = make_fingerprint(*HIPPOCAMPUS, 100, channel="MRI")
    plans, _ = build_plans(fp, preset("default"), ["3d_fullres.spacing=[2.0,2.0,2.0]"])
    full = plans["configurations"]["3d_fullres"]
    assert full["spacing"] == [2.0, 2.0, 2.0]
    assert full["median_image_size_in_voxels"] == [18, 25, 18]


def test_bad_overrides_are_all_reported():
    with pytest.raises(ValueError) as err:
        parse_plan_overrides(["3d_fullres.patch_sise=[1,2,3]", "4d.batch_size=2", "nonsense"])
    text = str(err.value)
    assert "patch_sise" in text and "did you mean 'patch_size'" in text
    assert "4d" in text and "nonsense" in text


@pytest.mark.parametrize("name", available_presets())
def test_every_preset_plans_a_dataset(name):
    cfg = preset(name)
    assert cfg.name == name
    plans, _ = build_plans(make_fingerprint(*HIPPOCAMPUS, 50, channel="MRI"), cfg)
    full = plans["configurations"]["3d_fullres"]
    assert full["batch_size"] >= cfg.min_batch_size
    assert full["architecture"]["network"] == cfg.network
    assert full["memory"]["estimate_feature_map_elements"] <= full["memory"]["budget"]


def test_planning_is_deterministic():
    fp = make_fingerprint([[1.0, 0.9, 0.9], [1.2, 0.8, 0.8], [1.1, 0.7, 0.7]], [[100, 200, 210]] * 3, 3)
    assert build_plans(fp, preset("default"))[0] == build_plans(fp, preset("default"))[0]


def test_transpose_axes_inverse():
    forward, backward = transpose_axes((0.8, 3.0, 0.8))
    assert forward == [1, 0, 2]
    assert [forward[b] for b in backward] == [0, 1, 2]


def test_unknown_preset_key_names_the_nearest():
    with pytest.raises(ValueError, match="gpu_memory_gb"):
        PlannerConfig.from_mapping({"gpu_memory": 8})
