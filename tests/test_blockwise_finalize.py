"""The blockwise results equal the single job's: the synapse table row for row and value for
value, the ids and mask voxel for voxel (as chunked Zarr in BOSS coordinates), with memory
bounded by one block; finalize blocks are skipped when recorded and redone when a chunk is
lost or altered."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zarr

from synapse_pipelines.blockwise import passes
from synapse_pipelines.blockwise.finalize import ResultArrays, TableSpec, ids_dtype
from synapse_pipelines.blockwise.nomads import NomadsKernel
from synapse_pipelines.blockwise.plan import plan_request
from synapse_pipelines.blockwise.runner import run_blockwise
from synapse_pipelines.blockwise.sources import ArraySource
from synapse_pipelines.blockwise.store import LocalStore
from synapse_pipelines.core.artefacts import PREDICTIONS_ZARR, SYNAPSE_IDS_ZARR
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.science import detection, features, synthetic, window_features

SHAPE = (21, 100, 110)
#: the request box does not start on the block grid, so the border blocks are uneven
ORIGIN = (5, 30, 250)
BLOCK = (8, 32, 32)


@pytest.fixture(scope="module")
def experiment() -> synthetic.SyntheticExperiment:
    return synthetic.make_experiment(SHAPE, seed=5, n_synapses=80, profile="sparse")


@pytest.fixture(scope="module")
def box() -> Box:
    return Box(ORIGIN, tuple(o + s for o, s in zip(ORIGIN, SHAPE, strict=True)))  # type: ignore[arg-type]


def channel_reader(channels: Mapping[str, np.ndarray], box: Box) -> Any:
    reads: list[Box] = []

    def read(block: Box) -> dict[str, np.ndarray]:
        reads.append(block)
        return {name: vol[block.slices(box.start)] for name, vol in channels.items()}

    read.reads = reads  # type: ignore[attr-defined]
    return read


def run(
    experiment: synthetic.SyntheticExperiment, box: Box, work: Path, results: Path
) -> tuple[Any, Any]:
    ch = experiment.channels
    plan = plan_request(box, block_shape=BLOCK, alignment=(1, 1, 1))
    reader = channel_reader(ch, box)
    spec = TableSpec(
        results=LocalStore(results),
        results_id=str(results),
        read_channels=reader,
        channel_names=list(ch),
        voxel_size=experiment.voxel_size,
        voxel_unit=experiment.voxel_unit,
    )
    source = ArraySource(ch[experiment.presynaptic], ch[experiment.postsynaptic], origin=ORIGIN)
    return run_blockwise(source, plan, work, kernel=NomadsKernel(), table=spec), reader


def test_table_ids_and_mask_equal_the_single_job(
    experiment: synthetic.SyntheticExperiment, box: Box, tmp_path: Path
) -> None:
    ch = experiment.channels
    single = detection.detect(ch[experiment.presynaptic], ch[experiment.postsynaptic])
    expected = features.synapse_table(
        single.labels,
        ch,
        voxel_size=experiment.voxel_size,
        voxel_unit=experiment.voxel_unit,
        origin=ORIGIN,
    )
    result, reader = run(experiment, box, tmp_path / "work", tmp_path / "results")
    assert result.plan.n_blocks == 4 * 5 * 5 and single.n_synapses > 20
    # objects cross block faces, edges and corners here, and windows reach across blocks
    assert result.table is not None
    pd.testing.assert_frame_equal(result.table, expected, check_exact=True)
    assert result.table.attrs == expected.attrs
    # every feature channel read exactly once per block, no halo
    assert sorted(map(str, reader.reads)) == sorted(map(str, result.plan.blocks()))

    ids = zarr.open_array(tmp_path / "results" / SYNAPSE_IDS_ZARR, mode="r")
    mask = zarr.open_array(tmp_path / "results" / PREDICTIONS_ZARR, mode="r")
    assert ids.shape == tuple(box.stop) and ids.dtype == np.uint32
    np.testing.assert_array_equal(ids[box.slices()], single.labels)
    np.testing.assert_array_equal(mask[box.slices()], single.mask)
    assert not ids[: ORIGIN[0]].any() and not mask[:, : ORIGIN[1]].any()
    attrs = ids.attrs["synapse_pipelines"]
    assert attrs["box"] == [list(box.start), list(box.stop)]


def test_finalize_skips_recorded_blocks_and_redoes_an_altered_chunk(
    experiment: synthetic.SyntheticExperiment, box: Box, tmp_path: Path
) -> None:
    work, results = tmp_path / "work", tmp_path / "results"
    first, _ = run(experiment, box, work, results)
    again, reader = run(experiment, box, work, results)
    assert again.computed["finalize"] == 0 and again.skipped["finalize"] == first.plan.n_blocks
    assert reader.reads == []
    arrays = ResultArrays(first.plan, LocalStore(results), ids_dtype(first.n_objects))
    chunk = results / arrays.chunk_key(SYNAPSE_IDS_ZARR, 7)
    before = arrays.read_block(SYNAPSE_IDS_ZARR, 7)
    chunk.write_bytes(b"not a chunk")
    third, reader = run(experiment, box, work, results)
    assert third.computed["finalize"] == 1 and reader.reads == [first.plan.block(7)]
    np.testing.assert_array_equal(arrays.read_block(SYNAPSE_IDS_ZARR, 7), before)
    pd.testing.assert_frame_equal(third.table, first.table, check_exact=True)


def test_windows_reach_every_block_they_overlap(box: Box) -> None:
    plan = plan_request(box, block_shape=BLOCK, alignment=(1, 1, 1))
    rng = np.random.default_rng(3)
    anchors = np.stack([rng.integers(0, s, 500) for s in box.shape], axis=1)
    rows = passes.window_blocks(plan, anchors)
    lo, hi, _ = window_features.window_bounds(anchors, box.shape)
    for i, block in enumerate(plan.blocks()):
        local = Box(
            tuple(a - o for a, o in zip(block.start, box.start, strict=True)),  # type: ignore[arg-type]
            tuple(b - o for b, o in zip(block.stop, box.start, strict=True)),  # type: ignore[arg-type]
        )
        overlaps = np.all((lo < np.asarray(local.stop)) & (hi > np.asarray(local.start)), axis=1)
        assert sorted(rows[i].tolist()) == np.flatnonzero(overlaps).tolist()
