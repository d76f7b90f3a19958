"""The benchmarks' re-expression of the peer method (Simhal et al. 2017's probabilistic
query, ``benchmarks/peer_probabilistic_query.py``): each step as the paper defines it, and
the query's behaviour on scenes whose answer is known. Its agreement with the published
at_example detections is measured by ``bench_real_data.py`` (docs/real_data.md), which
this suite cannot read."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from fixtures.benchmark_modules import load_benchmark
from fixtures.paired_puncta_scenes import scene


@pytest.fixture(scope="module")
def peer() -> ModuleType:
    return load_benchmark("peer_probabilistic_query")


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """6 x 64 x 64 at 70 x 100 x 100 nm: a synapse (synapsin at (2, 20, 20) voxels, PSD-95
    1.5 voxels further in x), a lone synapsin punctum at (2, 20, 46) and a lone PSD-95 one
    at (2, 44, 44), on a background of 20 grey levels with read noise."""
    return scene(
        (6, 64, 64),
        pairs=[(140.0, 2000.0, 2000.0)],
        pre_only=[(140.0, 2000.0, 4600.0)],
        post_only=[(140.0, 4400.0, 4400.0)],
    )


def test_a_synapse_is_found_once_and_lone_puncta_not_at_all(peer: ModuleType) -> None:
    pre, post = _scene()
    found = peer.peer_detections(pre, post)
    assert len(found) == 1
    assert np.abs(found[0, 1:] - (20.0, 20.75)).max() < 2.0


def test_a_section_gain_cancels_because_each_section_is_z_scored(peer: ModuleType) -> None:
    pre, _ = _scene()
    brighter = pre.astype(np.float64)
    brighter[1] = 1.7 * brighter[1] + 30  # one section brighter, on an offset
    p0 = peer.foreground_probability(pre)
    p1 = peer.foreground_probability(brighter)
    np.testing.assert_allclose(p1, p0, atol=1e-9)


def test_the_geometric_box_covers_the_voxel_and_the_next_row_and_column(peer: ModuleType) -> None:
    p = np.ones((1, 6, 6))
    p[0, 3, 3] = 0.0625
    box = peer.geometric_box_mean(p, 2)
    touched = np.argwhere(box[0] < 1 - 1e-12)
    assert sorted(map(tuple, touched)) == [(2, 2), (2, 3), (3, 2), (3, 3)]
    assert box[0, 2, 2] == pytest.approx(0.0625**0.25)


def test_synapsin_is_searched_three_blocks_wide_and_one_section_deep(peer: ModuleType) -> None:
    p = np.zeros((4, 16, 16))
    p[0, 8:10, 2:4] = 1.0  # one 2 x 2 block of synapsin (rows 8-9, columns 2-3) in section 0
    best = peer.best_block_mean(p, 2)
    # row r sees the blocks of rows (r - 2, r - 1), (r, r + 1) and (r + 2, r + 3)
    assert best[0, 10, 2] == best[0, 8, 2] == best[0, 6, 2] == 1.0
    assert best[0, 7, 2] == best[0, 11, 2] == 0.5  # no block lines up: half of one is seen
    assert best[0, 4, 2] == best[0, 12, 2] == 0.0  # rows 8-9 beyond r - 2 .. r + 3
    assert best[1, 8, 2] == 1.0  # one section away: searched
    assert best[2, 8, 2] == 0.0  # two sections away: not


def test_sections_that_disagree_are_penalised_and_one_plane_is_not(peer: ModuleType) -> None:
    p = np.array([[[0.9]], [[0.9]], [[0.1]]])
    factor = peer.section_span_factor(p, 2)
    assert factor[0, 0, 0] == 1.0  # like its successor
    assert factor[1, 0, 0] == pytest.approx(np.exp(-0.64))  # unlike its successor
    assert factor[2, 0, 0] == pytest.approx(np.exp(-0.64))  # the last: its predecessor
    assert np.all(peer.section_span_factor(p[:1], 2) == 1.0)


def test_a_single_plane_is_detected(peer: ModuleType) -> None:
    pre, post = _scene()
    found = peer.peer_detections(pre[2:3], post[2:3])
    assert len(found) == 1


def test_mismatched_volumes_are_refused(peer: ModuleType) -> None:
    pre, post = _scene()
    with pytest.raises(ValueError, match="one shape"):
        peer.peer_detections(pre, post[:3])
