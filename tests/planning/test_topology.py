from __future__ import annotations

import math

import pytest

from autoseg.planning.memory import NetworkShape, estimate_feature_map_elements
from autoseg.planning.topology import derive_topology, features_per_stage, pad_to_multiple


def test_isotropic_patch_pools_every_axis_until_the_minimum_edge():
    topo = derive_topology((1.0, 1.0, 1.0), (40, 56, 40))
    assert topo.num_stages == 4
    assert topo.pools_per_axis == (3, 3, 3)
    assert topo.strides[0] == (1, 1, 1)
    assert all(k == (3, 3, 3) for k in topo.kernel_sizes)
    # the bottleneck edge is at least the minimum edge of 4
    assert all(p / 2**n >= 4 for p, n in zip(topo.patch_size, topo.pools_per_axis, strict=True))


def test_anisotropic_axis_gets_kernel_one_and_no_pooling_first():
    topo = derive_topology((5.0, 0.7, 0.7), (20, 256, 256))
    assert topo.kernel_sizes[0] == (1, 3, 3)
    assert topo.strides[1] == (1, 2, 2)
    assert topo.strides[2] == (1, 2, 2)
    # once in-plane spacing has grown to within 2x of 5 mm, the coarse axis is pooled and convolved too
    assert topo.pools_per_axis[0] >= 1
    assert topo.kernel_sizes[-1] == (3, 3, 3)


@pytest.mark.parametrize(
    ("spacing", "patch"),
    [((1.0, 1.0, 1.0), (37, 51, 33)), ((3.0, 0.8, 0.8), (30, 190, 170)), ((1.0, 1.0), (50, 35))],
)
def test_patch_is_padded_to_the_pooling_divisor(spacing, patch):
    topo = derive_topology(spacing, patch)
    assert all(p % d == 0 for p, d in zip(topo.patch_size, topo.divisible_by, strict=True))
    assert all(p >= q for p, q in zip(topo.patch_size, patch, strict=True))
    assert topo.divisible_by == tuple(2**n for n in topo.pools_per_axis)


def test_pad_and_features():
    assert pad_to_multiple((40, 50), (8, 16)) == (40, 64)
    assert features_per_stage(7, 32, 320) == (32, 64, 128, 256, 320, 320, 320)


def test_memory_estimate_grows_with_patch_and_counts_every_output():
    small = derive_topology((1.0, 1.0, 1.0), (32, 32, 32))
    large = derive_topology((1.0, 1.0, 1.0), (64, 64, 64))

    def net(topo, kind="plain"):
        n = topo.num_stages
        return NetworkShape(kind, features_per_stage(n, 32, 320), (2,) * n, (2,) * (n - 1), 3)

    assert estimate_feature_map_elements(large, net(large)) > estimate_feature_map_elements(small, net(small))
    # a hand count for a 2-stage plain U-Net on 8^3: encoder 2x32x8^3 + 2x64x4^3;
    # decoder at 8^3: 2 convs x32 + transposed conv x32 + head x3
    topo = derive_topology((1.0, 1.0, 1.0), (8, 8, 8), min_edge=4)
    assert topo.num_stages == 2
    expected = 2 * 32 * 512 + 2 * 64 * 64 + (2 * 32 + 32 + 3) * 512
    assert estimate_feature_map_elements(topo, NetworkShape("plain", (32, 64), (2, 2), (2,), 3)) == expected
    # the residual encoder adds a stem and a projection in blocks that change shape
    resenc = estimate_feature_map_elements(topo, NetworkShape("resenc", (32, 64), (1, 1), (1,), 3))
    assert resenc == 32 * 512 + 2 * 32 * 512 + 3 * 64 * 64 + (32 + 32 + 3) * 512
    assert math.isfinite(resenc)
