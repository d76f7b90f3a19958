"""PAIRS (paired puncta) exactness: the compiled numba kernels give the numpy/scipy
reference's labels, masks and parameters bit for bit (several dtypes, one plane, noise,
anisotropic voxels, the size filter), their histogram counts are exact, and the three block
primitives over uneven tilings (clipped or edge-padded reads, every hand-off through JSON)
give the labels of one job over the whole volume.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
from fixtures.paired_puncta_scenes import (
    CASES,
    VOX,
    layout as _layout,
    scene as _scene,
    tiles as _tiles,
)

from synapse_pipelines.core.geometry import Box
from synapse_pipelines.science import (
    paired_puncta as pp,
    paired_puncta_geometry,
    paired_puncta_kernels as kernels,
    paired_puncta_reference as reference,
    paired_puncta_seed_kernels as seed_kernels,
)
from synapse_pipelines.science.paired_puncta import (
    SectionHistograms,
    SectionThresholds,
    block_histograms,
    block_labels,
    block_seeds,
    detect_paired_puncta,
    geometry,
    halo,
    number_seeds,
    section_thresholds,
)
from synapse_pipelines.science.paired_puncta_thresholds import HIST_ROWS

# --------------------------------------------------------------------------- numba = reference


def _reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "compiled", lambda: False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_kernels_equal_the_reference(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pre, post = CASES[case]()
    fast = detect_paired_puncta(pre, post, voxel_size=VOX)
    _reference(monkeypatch)
    slow = detect_paired_puncta(pre, post, voxel_size=VOX)
    np.testing.assert_array_equal(fast.labels, slow.labels)
    np.testing.assert_array_equal(fast.mask, slow.mask)
    assert fast.parameters == slow.parameters
    assert fast.explanation == slow.explanation
    assert (fast.n_synapses > 0) == (case != "noise")


def test_compiled_equals_reference_on_anisotropic_voxels_and_filters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vox = (50.0, 80.0, 120.0)  # every axis different: orders 6, 2, 0; widths 13, 9
    pairs, pre_only, post_only = _layout((7, 48, 48), cells=4, seed=15)
    pre, post = _scene(
        (10, 60, 40), pairs=pairs, pre_only=pre_only, post_only=post_only, voxel=vox, seed=15
    )
    params = {"min_volume_um3": 0.003, "seed_radius_nm": 100.0, "assignment_level": 0.3}
    fast = detect_paired_puncta(pre, post, voxel_size=vox, **params)
    _reference(monkeypatch)
    slow = detect_paired_puncta(pre, post, voxel_size=vox, **params)
    assert fast.parameters["smoothing_orders"] == [6, 2, 0]
    np.testing.assert_array_equal(fast.labels, slow.labels)
    assert fast.n_synapses == slow.n_synapses > 0


def _support_scene(n_support: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """E with a weak maximum (0.8) whose ellipsoid holds ``n_support`` foreground voxels
    (itself included), a strong isolated maximum (1.5) and nothing else."""
    g = geometry((9, 15, 15), VOX)
    rz, ry, rx = g.assignment_radii
    offsets = [
        (dz, dy, dx)
        for dz in range(-rz, rz + 1)
        for dy in range(-ry, ry + 1)
        for dx in range(-rx, rx + 1)
        if (dz * VOX[0]) ** 2 + (dy * VOX[1]) ** 2 + (dx * VOX[2]) ** 2 <= 250.0**2
    ]
    offsets.sort(key=lambda o: (sum((a * v) ** 2 for a, v in zip(o, VOX, strict=True)), o))
    e = np.zeros((9, 15, 15), np.float32)
    weak = (4, 5, 5)
    for dz, dy, dx in offsets[:n_support]:
        e[weak[0] + dz, weak[1] + dy, weak[2] + dx] = 0.6
    e[weak] = 0.8
    e[1, 12, 12] = 1.5
    return e, weak


@pytest.mark.parametrize("compiled", [True, False])
def test_a_weak_maximum_is_a_seed_only_with_its_support(compiled: bool) -> None:
    """12 voxels of support (0.0084 um^3 at 70 x 100 x 100 nm) make a weak seed, 11 do
    not; a strong maximum needs none. Both the kernels (candidate list, and the scan when
    the list overflowed) and the reference give the same seeds."""
    g = geometry((9, 15, 15), VOX)
    assert g.support_voxels == 12
    for n_support, kept in ((12, True), (11, False)):
        e, weak = _support_scene(n_support)
        want = {(1, 12, 12), weak} if kept else {(1, 12, 12)}
        level = np.float32(g.weak_level)
        if compiled:
            core = ((0, 9), (0, 15), (0, 15))
            cand = np.flatnonzero(e >= level).astype(np.int64)
            for n_cand in (len(cand), -1):
                lin = seed_kernels.seeds(
                    e, cand.copy(), n_cand, g.seed_radii, level, core, g.weak_seeds
                )
                assert {tuple(map(int, np.unravel_index(i, e.shape))) for i in lin} == want
        else:
            every = (slice(0, 9), slice(0, 15), slice(0, 15))
            found = reference.find_seeds(e, g.seed_radii, level, every, g.weak_seeds)
            assert {tuple(map(int, s)) for s in found} == want


@pytest.mark.parametrize(
    ("shape", "vox", "support"),
    [
        ((9, 15, 15), VOX, 12),  # 0.0084 um^3 / 0.0007 um^3
        ((2, 15, 15), VOX, 12),  # a thin stack is a stack: the ellipsoid is clipped instead
        ((1, 15, 15), VOX, 8),  # 12 / 1.665 (order 2 in z: FWHM sqrt(2 ln 2 x 2))
        ((1, 15, 15), (50.0, 80.0, 80.0), 10),  # 26.25 / 2.884 (order 6 at 50 nm)
        ((1, 15, 15), (200.0, 100.0, 100.0), 5),  # no z smoothing at 200 nm: 4.2 / 1
        ((1, 1, 15), VOX, 5),  # a line: 12 / 1.665 / 1.665 (y too)
    ],
)
def test_the_support_on_one_plane_is_the_stacks_over_the_smoothing_width(
    shape: tuple[int, int, int], vox: tuple[float, float, float], support: int
) -> None:
    assert geometry(shape, vox).support_voxels == support
    assert geometry(shape, vox, weak_seed_support_um3=0.0).support_voxels == 0


def test_the_kernels_histogram_counts_are_exact() -> None:
    from synapse_pipelines.science.histogram_bins import bin_index

    edges = np.concatenate([(1 << np.arange(1, 62)) - 1, 1 << np.arange(62)])
    v = np.concatenate([np.arange(-(1 << 13), 1 << 13), edges, -edges])
    hist = np.zeros((kernels.SUBS, 2 * pp.N_BINS), np.int64)
    kernels._count(v, 0, len(v), 1, hist, kernels._bin_lut(), np.zeros(len(v), np.int64))
    expected = np.zeros(2 * pp.N_BINS, np.int64)
    np.add.at(expected, bin_index(v[v >= 0]), 1)
    np.add.at(expected, pp.N_BINS + bin_index(-v[v < 0]), 1)
    np.testing.assert_array_equal(hist.sum(axis=0), expected)


# --------------------------------------------------------------------------- blockwise


def _blockwise(
    pre: np.ndarray, post: np.ndarray, cuts: Sequence[Sequence[int]], vox=VOX, pad: bool = False
) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The three passes, with every hand-off through JSON as a Distributed Map would."""
    g = geometry(pre.shape, vox)
    volume = Box.from_shape(pre.shape)

    def read(box: Box, name: str) -> tuple[np.ndarray, np.ndarray, Box]:
        h = g.halo[name]
        if pad:  # an edge-padded read past the border is accepted too
            grown = box.grow(h)
            clipped = box.grow(h, within=volume)
            pads = [
                (c0 - g0, g1 - c1)
                for c0, c1, g0, g1 in zip(
                    clipped.start, clipped.stop, grown.start, grown.stop, strict=True
                )
            ]
            return (
                np.pad(pre[clipped.slices()], pads, mode="edge"),
                np.pad(post[clipped.slices()], pads, mode="edge"),
                grown,
            )
        r = box.grow(h, within=volume)
        return pre[r.slices()], post[r.slices()], r

    hist = SectionHistograms.empty()
    for box in _tiles(pre.shape, cuts):
        a, b, r = read(box, "histograms")
        part = block_histograms(a, b, box, r, g)
        hist = hist + SectionHistograms.from_dict(json.loads(json.dumps(part.to_dict())))
    thr = section_thresholds(hist, g)
    thr = SectionThresholds.from_dict(json.loads(json.dumps(thr.to_dict())))
    parts = []
    for box in _tiles(pre.shape, cuts):
        a, b, r = read(box, "seeds")
        parts.append(np.array(json.loads(json.dumps(block_seeds(a, b, box, r, thr, g).tolist()))))
    seeds = number_seeds(parts[::-1])  # any gathering order
    labels = np.zeros(pre.shape, np.uint32)
    for box in _tiles(pre.shape, cuts):
        a, b, r = read(box, "labels")
        labels[box.slices()] = block_labels(a, b, box, r, thr, g, seeds)
    return labels


BLOCK_CASES = {
    "uint8": (CASES["uint8"], [[(3, 5), (13, 40), (21, 22, 50)], [(4,), (32,), ()]]),
    "uint16": (CASES["uint16"], [[(1, 2, 4), (17,), (9, 30)], [(), (20,), (28,)]]),
    "one plane": (CASES["one plane"], [[(), (5, 19, 33), (24,)], [(), (), (1, 47)]]),
    "dim pairs": (CASES["dim pairs"], [[(2, 5), (13, 33), (30, 41)], [(6,), (), (20,)]]),
    # the noise guard binds: pixel differences and strong levels per section over tiles
    "noisy pairs": (CASES["noisy pairs"], [[(1, 4), (17, 40), (29, 30)], [(3,), (), (7, 33)]]),
}


@pytest.mark.parametrize("case", sorted(BLOCK_CASES))
def test_block_primitives_over_uneven_tilings_equal_one_job(case: str) -> None:
    make, tilings = BLOCK_CASES[case]
    pre, post = make()
    expected = detect_paired_puncta(pre, post, voxel_size=VOX).labels
    assert expected.any()
    for cuts in tilings:
        np.testing.assert_array_equal(_blockwise(pre, post, cuts), expected)
    np.testing.assert_array_equal(_blockwise(pre, post, tilings[0], pad=True), expected)


@pytest.mark.parametrize("case", ["uint8", "dim pairs", "noisy pairs"])
def test_a_sparse_histogram_lattice_is_exact(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large sections sample their histograms on every s-th row and column (s = 4 at 1024 x
    1024; the pixel-noise differences on every 16th): with both lattices made sparse on
    these small scenes (s = 3 or 4, tiles cut off the lattice) the compiled kernels, the
    reference and any tiling still agree."""
    monkeypatch.setattr(paired_puncta_geometry, "HIST_SAMPLES", 256)
    monkeypatch.setattr(paired_puncta_geometry, "NOISE_SAMPLES", 256)  # the same for noise
    make, tilings = BLOCK_CASES[case]
    pre, post = make()
    assert geometry(pre.shape, VOX).hist_stride in (3, 4)
    assert geometry(pre.shape, VOX).noise_stride in (3, 4)
    fast = detect_paired_puncta(pre, post, voxel_size=VOX)
    assert fast.n_synapses > 0 and fast.parameters["histogram_stride"] in (3, 4)
    for cuts in tilings:
        np.testing.assert_array_equal(_blockwise(pre, post, cuts), fast.labels)
    _reference(monkeypatch)
    slow = detect_paired_puncta(pre, post, voxel_size=VOX)
    np.testing.assert_array_equal(fast.labels, slow.labels)
    assert fast.parameters == slow.parameters


def test_block_evidence_of_a_tiling_is_the_evidence_of_the_volume() -> None:
    pre, post = CASES["uint16"]()
    g = geometry(pre.shape, VOX)
    volume = Box.from_shape(pre.shape)
    thr = section_thresholds(block_histograms(pre, post, volume, volume, g), g)
    whole = pp.block_evidence(pre, post, volume, volume, thr, g)
    tiled = np.zeros_like(whole)
    for box in _tiles(pre.shape, [(2,), (11, 30), (33,)]):
        r = box.grow(g.halo["labels"], within=volume)
        tiled[box.slices()] = pp.block_evidence(pre[r.slices()], post[r.slices()], box, r, thr, g)
    np.testing.assert_array_equal(tiled, whole)
    assert (whole >= 1).any()


def test_block_primitives_of_the_reference_equal_one_job(monkeypatch: pytest.MonkeyPatch) -> None:
    pre, post = CASES["uint8"]()
    expected = detect_paired_puncta(pre, post, voxel_size=VOX).labels
    _reference(monkeypatch)
    np.testing.assert_array_equal(_blockwise(pre, post, [(4,), (30,), (25, 41)]), expected)


def test_read_only_inputs_are_used_as_they_are() -> None:
    pre, post = CASES["one plane"]()
    expected = detect_paired_puncta(pre, post, voxel_size=VOX)
    for v in (pre, post):
        v.flags.writeable = False  # e.g. the synthetic experiments' channels
    got = detect_paired_puncta(pre, post, voxel_size=VOX)
    np.testing.assert_array_equal(got.labels, expected.labels)
    assert got.n_synapses == expected.n_synapses > 0


def test_halo_and_histogram_hand_offs() -> None:
    # seeds: the band-pass's context plus the seed box (2, 2, 2) or, larger in z, a weak
    # seed's support ellipsoid (assignment radius: 3 sections, 2 pixels)
    assert halo(VOX) == {"histograms": (1, 5, 5), "seeds": (4, 7, 7), "labels": (1, 5, 5)}
    assert halo(VOX, weak_seed_level=1.0)["seeds"] == (3, 7, 7)  # no weak seeds
    assert halo(VOX, (1, 512, 512))["seeds"] == (0, 7, 7)  # one plane: no z context
    a = SectionHistograms(2, np.ones((2, 2, HIST_ROWS, pp.N_BINS), np.int64))
    b = SectionHistograms(3, np.ones((3, 2, HIST_ROWS, pp.N_BINS), np.int64))
    total = a + b + SectionHistograms.empty()
    assert total.z0 == 2 and total.counts.shape[0] == 4
    assert total.counts[1].min() == 2 and total.counts[0].max() == 1
    same = SectionHistograms.from_dict(json.loads(json.dumps(total.to_dict())))
    np.testing.assert_array_equal(same.counts, total.counts)
