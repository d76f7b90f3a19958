"""Synapse table: geometry, the original's windowed feature, means, CSV round trip."""

from __future__ import annotations

import functools
import itertools
import operator

import numpy as np
import pandas as pd
import pytest

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.io.synapse_table_files import read_synapse_table, write_synapse_table
from synapse_pipelines.science.features import (
    BASE_COLUMNS,
    assemble_table,
    feature_columns,
    object_sums,
    synapse_table,
    table_channels,
)
from synapse_pipelines.science.window_features import (
    WINDOW_FULL_VOXELS,
    slice_sums,
    window_raw_sums,
    window_zscore_sums,
)


def _hand_volume() -> np.ndarray:
    lab = np.zeros((8, 30, 30), dtype=np.uint32)
    lab[3:5, 10:13, 14:16] = 5  # 2*3*2 = 12 voxels, centroid (3.5, 11, 14.5)
    lab[0, 0:2, 0:1] = 2  # 2 voxels in the corner: window clipped
    lab[6, 20, 20] = 9  # single voxel
    lab[6, 21, 20] = 9  # L-shape with the one above: 3 voxels
    lab[7, 21, 20] = 9
    return lab


def _brute_window_sum(vol: np.ndarray, c: tuple[int, int, int]) -> tuple[float, int]:
    """The original feature by explicit loops, with clipping at the border."""
    zs = np.zeros(vol.shape)
    for k in range(vol.shape[0]):
        s = vol[k].astype(float)
        sd = s.std()
        zs[k] = (s - s.mean()) / sd if sd > 0 else 0.0
    total, n = 0.0, 0
    for z in range(c[0] - 2, c[0] + 2):
        for y in range(c[1] - 5, c[1] + 5):
            for x in range(c[2] - 5, c[2] + 5):
                if 0 <= z < vol.shape[0] and 0 <= y < vol.shape[1] and 0 <= x < vol.shape[2]:
                    total += zs[z, y, x]
                    n += 1
    return total, n


def test_geometry_matches_hand_computation() -> None:
    lab = _hand_volume()
    t = synapse_table(lab, {}, voxel_size=(50.0, 2.0, 3.0), origin=(100, 1000, 2000))
    assert list(t.columns) == list(BASE_COLUMNS)
    assert t["id"].tolist() == [2, 5, 9]
    r5 = t.set_index("id").loc[5]
    assert (r5.centroid_z, r5.centroid_y, r5.centroid_x) == (103.5, 1011.0, 2014.5)
    assert r5.centroid_z_physical == pytest.approx(103.5 * 50)
    assert r5.centroid_x_physical == pytest.approx(2014.5 * 3)
    assert r5.volume_voxels == 12
    assert r5.volume_physical == pytest.approx(12 * 50 * 2 * 3)
    assert (r5.bbox_z0, r5.bbox_y0, r5.bbox_x0, r5.bbox_z1, r5.bbox_y1, r5.bbox_x1) == (
        103,
        1010,
        2014,
        105,
        1013,
        2016,
    )
    r9 = t.set_index("id").loc[9]
    assert r9.volume_voxels == 3
    assert r9.centroid_z == pytest.approx(100 + 19 / 3)
    assert r9.centroid_y == pytest.approx(1000 + 62 / 3)
    r2 = t.set_index("id").loc[2]
    assert bool(r2.window_clipped) and r2.window_voxels < WINDOW_FULL_VOXELS
    assert not bool(r5.window_clipped) and r5.window_voxels == WINDOW_FULL_VOXELS


def test_window_sums_match_brute_force_and_means() -> None:
    rng = np.random.default_rng(3)
    lab = _hand_volume()
    chans = {
        "Synapsin647": rng.integers(0, 256, lab.shape).astype(np.uint8),
        "PSD95_488": rng.integers(0, 4000, lab.shape).astype(np.uint16),
        "float_chan": rng.normal(5, 2, lab.shape),
    }
    chans["PSD95_488"][2] = 77  # a flat slice z-scores to 0, not NaN
    t = synapse_table(lab, chans, voxel_size=(1, 1, 1))
    assert table_channels(t) == list(chans)
    assert feature_columns(t) == [f"{c}_window_zsum" for c in chans] + [f"{c}_mean" for c in chans]
    assert np.isfinite(t[feature_columns(t)].to_numpy()).all()
    for _, row in t.iterrows():
        anchor = tuple(int(np.floor(row[f"centroid_{a}"])) for a in "zyx")
        mask = lab == row["id"]
        for name, vol in chans.items():
            expected, n = _brute_window_sum(vol, anchor)
            assert row[f"{name}_window_zsum"] == pytest.approx(expected, rel=1e-9, abs=1e-9)
            assert row["window_voxels"] == n
            assert row[f"{name}_mean"] == pytest.approx(vol[mask].astype(float).mean())


def test_window_is_the_originals_asymmetric_slice() -> None:
    # a single bright voxel; the window [c-2:c+2] x [c-5:c+5]^2 includes offset -2 and
    # +1 in z, -5 and +4 in y/x, but not +2 / +5
    vol = np.zeros((10, 20, 20), dtype=np.uint8)
    lab = np.zeros_like(vol, dtype=np.uint8)
    lab[5, 10, 10] = 1
    t_in = []
    for dz, dy, dx in [(-2, 0, 0), (1, 0, 0), (0, -5, 0), (0, 4, 4)]:
        v = vol.copy()
        v[5 + dz, 10 + dy, 10 + dx] = 200
        t_in.append(synapse_table(lab, {"c": v}, voxel_size=(1, 1, 1))["c_window_zsum"][0])
    t_out = []
    for dz, dy, dx in [(2, 0, 0), (-3, 0, 0), (0, 5, 0), (0, 0, -6)]:
        v = vol.copy()
        v[5 + dz, 10 + dy, 10 + dx] = 200
        t_out.append(synapse_table(lab, {"c": v}, voxel_size=(1, 1, 1))["c_window_zsum"][0])
    # inside the window the bright voxel adds (200 - mean)/std > 0 on top of the slice's
    # negative background; outside, only the slice's constant-zero background (flat -> 0)
    # or the background of a non-flat slice contributes
    assert min(t_in) > 15
    assert max(t_out) < 0.01


def test_empty_labels_and_uint64_ids() -> None:
    t = synapse_table(
        np.zeros((3, 4, 5), np.uint8), {"a": np.ones((3, 4, 5))}, voxel_size=(1, 1, 1)
    )
    assert len(t) == 0 and "a_window_zsum" in t.columns
    lab = np.zeros((3, 4, 5), np.uint64)
    lab[1, 1, 1] = 2**63 + 5  # collman-style annotation ids may be huge
    t = synapse_table(lab, {}, voxel_size=(1, 1, 1))
    assert t["id"].tolist() == [2**63 + 5]


@pytest.mark.parametrize(
    ("labels", "channels", "field"),
    [
        (np.zeros((4, 5)), {}, "labels"),
        (np.zeros((2, 4, 5), dtype=bool), {}, "labels"),
        (np.zeros((2, 4, 5), dtype=np.float32), {}, "labels"),
        (np.zeros((2, 4, 5), dtype=np.int8) - 1, {}, "labels"),
        (np.zeros((2, 4, 5), dtype=np.uint8), {"psd": np.zeros((2, 4, 6))}, "channels[psd]"),
    ],
)
def test_bad_inputs_name_the_field(labels, channels, field) -> None:
    with pytest.raises(SynapsePipelinesError) as info:
        synapse_table(labels, channels, voxel_size=(1, 1, 1))
    assert info.value.field == field


def test_bad_voxel_size() -> None:
    with pytest.raises(SynapsePipelinesError, match="voxel_size"):
        synapse_table(np.zeros((2, 2, 2), np.uint8), {}, voxel_size=(1, 0, 1))


def test_csv_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    lab = _hand_volume().astype(np.uint64)
    t = synapse_table(
        lab,
        {"Synapsin647": rng.random(lab.shape), "PSD95_488": rng.random(lab.shape)},
        voxel_size=(70.0, 2.24, 2.24),
        origin=(3, 4, 5),
    )
    path = write_synapse_table(t, tmp_path / "synapses.csv")
    plain = pd.read_csv(path)  # a plain CSV any tool reads
    assert list(plain.columns) == list(t.columns)
    back = read_synapse_table(path)
    pd.testing.assert_frame_equal(back, t)
    assert back.attrs["voxel_size"] == [70.0, 2.24, 2.24]
    assert back.attrs["channels"] == ["Synapsin647", "PSD95_488"]


def test_read_missing_table(tmp_path) -> None:
    with pytest.raises(SynapsePipelinesError, match="no synapse table"):
        read_synapse_table(tmp_path / "nope.csv")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_gather_and_sat_strategies_agree_with_brute_force(dtype) -> None:
    rng = np.random.default_rng(7)
    vol = (rng.random((7, 23, 19)) * 200).astype(dtype)
    vol[3] = 5  # flat slice
    anchors = np.stack(
        [rng.integers(0, s, 40) for s in vol.shape], axis=1
    )  # many near the borders of this tiny volume
    sat = window_zscore_sums(vol, anchors, method="sat")
    gather = window_zscore_sums(vol, anchors, method="gather")
    brute = np.array([_brute_window_sum(vol, tuple(a))[0] for a in anchors])
    np.testing.assert_allclose(sat, brute, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(gather, brute, rtol=1e-9, atol=1e-9)


def test_inputs_are_never_written() -> None:
    rng = np.random.default_rng(5)
    lab = _hand_volume()
    chans = {"a": rng.integers(0, 255, lab.shape).astype(np.uint8)}
    before = {k: v.copy() for k, v in chans.items()}
    lab_before = lab.copy()
    for arr in (lab, *chans.values()):
        arr.setflags(write=False)  # any in-place write would raise
    synapse_table(lab, chans, voxel_size=(1, 1, 1))
    np.testing.assert_array_equal(lab, lab_before)
    np.testing.assert_array_equal(chans["a"], before["a"])


def test_uint64_channel_does_not_overflow() -> None:
    lab = _hand_volume()
    big = np.full(lab.shape, 2**62, dtype=np.uint64)
    big[lab == 5] = 2**63 + 2**62  # int64 accumulation would wrap around
    t = synapse_table(lab, {"annotation": big}, voxel_size=(1, 1, 1)).set_index("id")
    assert t.loc[5, "annotation_mean"] == pytest.approx(float(2**63 + 2**62))
    assert t.loc[9, "annotation_mean"] == pytest.approx(float(2**62))
    assert np.isfinite(t["annotation_window_zsum"]).all()


def _tiling(shape, cuts):
    """Boxes (start, stop) tiling ``shape`` at the given cut positions per axis."""
    edges = [[0, *c, s] for c, s in zip(cuts, shape, strict=True)]
    for z0, z1 in itertools.pairwise(edges[0]):
        for y0, y1 in itertools.pairwise(edges[1]):
            for x0, x1 in itertools.pairwise(edges[2]):
                yield (z0, y0, x0), (z1, y1, x1)


def test_blockwise_partials_reproduce_the_table_exactly() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(21)
    shape = (9, 40, 37)
    blobs = ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.53
    labels, n = ndimage.label(blobs, structure=np.ones((3, 3, 3)))
    assert n > 10
    chans = {
        "Synapsin647": rng.integers(0, 256, shape).astype(np.uint8),
        "PSD95_488": rng.integers(0, 4096, shape).astype(np.uint16),
    }
    whole = synapse_table(labels, chans, voxel_size=(70, 100, 100), origin=(5, 6, 7))
    # uneven blocks, cut through objects and through windows in every axis
    boxes = list(_tiling(shape, [[3, 4], [11, 25], [9]]))
    parts = [
        object_sums(
            labels[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))],
            {
                k: v[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
                for k, v in chans.items()
            },
            offset=lo,
        )
        for lo, hi in boxes
    ]
    objects = functools.reduce(operator.add, parts)
    stats = {
        k: functools.reduce(
            operator.add,
            [
                slice_sums(
                    v[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))],
                    z_offset=lo[0],
                    depth=shape[0],
                )
                for lo, hi in boxes
            ],
        )
        for k, v in chans.items()
    }
    anchors = objects.anchors()
    raw = {
        k: functools.reduce(
            operator.add,
            [
                window_raw_sums(
                    v[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))], anchors, offset=lo
                )
                for lo, hi in boxes
            ],
        )
        for k, v in chans.items()
    }
    blockwise = assemble_table(
        objects, raw, stats, shape=shape, voxel_size=(70, 100, 100), origin=(5, 6, 7)
    )
    pd.testing.assert_frame_equal(blockwise, whole, check_exact=True)
    assert blockwise.attrs == whole.attrs
