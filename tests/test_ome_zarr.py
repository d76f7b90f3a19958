"""OME-Zarr outputs (NGFF 0.4, multiscale): what a single job and a blockwise run write is
readable by zarr with valid NGFF metadata, holds the same voxels as the OME-TIFFs / the
input channels, and a blockwise run's volumes (written block by block) equal a whole-volume
write at every pyramid level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from synapse_pipelines.blockwise.finalize import TableSpec
from synapse_pipelines.blockwise.nomads import NomadsKernel
from synapse_pipelines.blockwise.plan import plan_request
from synapse_pipelines.blockwise.runner import run_blockwise
from synapse_pipelines.blockwise.sources import ArraySource
from synapse_pipelines.blockwise.store import LocalStore
from synapse_pipelines.core.artefacts import (
    PREDICTIONS_OME_ZARR,
    SYNAPSE_IDS_OME_ZARR,
    SYNAPSE_IDS_ZARR,
    raw_channel_path,
)
from synapse_pipelines.core.geometry import Box
from synapse_pipelines.io import outputs
from synapse_pipelines.io.ome_zarr import OmeZarrReader, OmeZarrSpec, write_ome_zarr
from synapse_pipelines.science import detection, features, synthetic
from synapse_pipelines.science.pyramid import downsample_region, pyramid_depth


def _ngff(group: zarr.Group) -> dict:
    attrs = dict(group.attrs)
    (ms,) = attrs["multiscales"]
    assert ms["version"] == "0.4"
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    return ms


def test_pyramid_levels_means_images_and_keeps_label_values() -> None:
    assert pyramid_depth((4, 100, 100)) == 1  # 50 < 64
    assert pyramid_depth((4, 512, 300)) == 4
    assert pyramid_depth((4, 4096, 4096), chunks=(4, 96, 96)) == 6  # 96 = 32 * 3
    assert pyramid_depth((4, 4096, 4096), chunks=(4, 12, 12)) == 3  # 12 = 4 * 3
    image = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    down, start = downsample_region(image, (0, 0), 1, "image")
    assert start == (0, 0) and down.shape == (2, 2, 2)
    assert down[0, 0, 0] == round(np.mean([0, 1, 4, 5]))
    labels = np.array([[[0, 7, 7], [9, 9, 0], [3, 0, 0]]], dtype=np.uint32)
    down, _ = downsample_region(labels, (0, 0), 1, "labels")
    assert set(np.unique(down)) <= set(np.unique(labels))
    # a region starting on an odd voxel lands on the level's floor and is padded at the front
    down, start = downsample_region(labels, (1, 1), 1, "labels")
    assert start == (0, 0) and down.shape == (1, 2, 2)


def test_written_volume_is_valid_ngff_and_reads_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 255, (3, 200, 150), dtype=np.uint8)
    spec = OmeZarrSpec.for_volume(
        "raw", data.shape, data.dtype, voxel_size=(70, 100, 100), offset=(2, 10, 20)
    )
    write_ome_zarr(tmp_path / "raw.ome.zarr", spec, data)
    group = zarr.open_group(tmp_path / "raw.ome.zarr", mode="r", zarr_format=2)
    ms = _ngff(group)
    assert [a.get("unit") for a in ms["axes"]] == ["nanometer"] * 3
    assert len(ms["datasets"]) == spec.levels == 2
    first, second = (d["coordinateTransformations"] for d in ms["datasets"])
    assert first[0]["scale"] == [70, 100, 100] and second[0]["scale"] == [70, 200, 200]
    assert first[1]["translation"] == [140, 1000, 2000]
    np.testing.assert_array_equal(group["0"][:], data)
    assert group["1"].shape == (3, 100, 75)
    reader = OmeZarrReader.open(tmp_path / "raw.ome.zarr")
    np.testing.assert_array_equal(reader.read_absolute((2, 10, 20), (5, 210, 170)), data)
    padded = reader.read((-1, -2, -2), (1, 3, 3))
    assert padded.shape == (2, 5, 5) and padded[0].max() == 0


def test_single_job_results_hold_viewable_volumes(tmp_path: Path) -> None:
    exp = synthetic.make_experiment((6, 80, 90), seed=3, n_synapses=30, profile="sparse")
    ch = exp.channels
    result = detection.detect(ch[exp.presynaptic], ch[exp.postsynaptic])
    table = features.synapse_table(result.labels, ch, voxel_size=exp.voxel_size)
    manifest = outputs.write_results(
        tmp_path,
        mask=result.mask,
        labels=result.labels,
        table=table,
        voxel_size=exp.voxel_size,
        origin=(1, 2, 3),
        raw=ch,
    )
    section = manifest["ome_zarr"]
    assert section["offset_voxels"] == [1, 2, 3]
    assert set(section["raw"]) == set(ch)
    ids = zarr.open_group(tmp_path / SYNAPSE_IDS_OME_ZARR, mode="r", zarr_format=2)
    assert dict(ids.attrs)["image-label"]["version"] == "0.4"
    np.testing.assert_array_equal(ids["0"][:], result.labels)
    pred = zarr.open_group(tmp_path / PREDICTIONS_OME_ZARR, mode="r", zarr_format=2)
    np.testing.assert_array_equal(pred["0"][:] > 0, result.mask > 0)
    for name, volume in ch.items():
        raw = zarr.open_group(tmp_path / raw_channel_path(name), mode="r", zarr_format=2)
        np.testing.assert_array_equal(raw["0"][:], volume)
        assert _ngff(raw)["datasets"][0]["coordinateTransformations"][0]["scale"] == list(
            exp.voxel_size
        )
    assert outputs.verify_manifest(tmp_path) == []


@pytest.mark.parametrize("origin", [(0, 0, 0), (3, 70, 45)])
def test_blockwise_volumes_equal_a_whole_volume_write(tmp_path: Path, origin: tuple) -> None:
    shape = (10, 150, 140)
    exp = synthetic.make_experiment(shape, seed=7, n_synapses=40, profile="sparse")
    ch = exp.channels
    box = Box(origin, tuple(o + s for o, s in zip(origin, shape, strict=True)))  # type: ignore[arg-type]
    plan = plan_request(box, block_shape=(4, 64, 64), alignment=(1, 1, 1))
    reads: list[Box] = []

    def read(block: Box) -> dict[str, np.ndarray]:
        reads.append(block)
        return {name: vol[block.slices(box.start)] for name, vol in ch.items()}

    results = tmp_path / "results"
    spec = TableSpec(
        results=LocalStore(results),
        results_id=str(results),
        read_channels=read,
        channel_names=list(ch),
        voxel_size=exp.voxel_size,
        voxel_unit=exp.voxel_unit,
    )
    source = ArraySource(ch[exp.presynaptic], ch[exp.postsynaptic], origin=origin)
    run_blockwise(source, plan, tmp_path / "work", kernel=NomadsKernel(), table=spec)
    assert all(r.size <= 4 * 64 * 64 for r in reads)  # never more than one block
    ids_v3 = zarr.open_array(results / SYNAPSE_IDS_ZARR, mode="r")[box.slices()]
    offset = tuple((o // b) * b for o, b in zip(origin, plan.block_shape, strict=True))
    inner = tuple(slice(o - f, o - f + s) for o, f, s in zip(origin, offset, shape, strict=True))
    for root, whole, kind in [
        (SYNAPSE_IDS_OME_ZARR, ids_v3, "labels"),
        *[(raw_channel_path(n), v, "image") for n, v in ch.items()],
    ]:
        group = zarr.open_group(results / root, mode="r", zarr_format=2)
        ms = _ngff(group)
        assert len(ms["datasets"]) >= 2, "a pyramid"
        full = np.zeros(
            tuple(o + s - f for o, s, f in zip(origin, shape, offset, strict=True)),
            dtype=whole.dtype,
        )
        full[inner] = whole
        np.testing.assert_array_equal(group["0"][:], full)
        # the blocks' levels equal the whole volume's pyramid (inside the box)
        reference = OmeZarrSpec.for_volume(
            "ref",
            full.shape,
            full.dtype,
            voxel_size=exp.voxel_size,
            offset=offset,
            kind=kind,
            chunks=group["0"].chunks,
        )
        write_ome_zarr(tmp_path / "ref", reference, full)
        ref = zarr.open_group(tmp_path / "ref", mode="r", zarr_format=2)
        for level in range(1, len(ms["datasets"])):
            a, b = np.asarray(group[str(level)][:]), np.asarray(ref[str(level)][:])
            f = 2**level
            ys = -(-(origin[1] - offset[1]) // f)
            xs = -(-(origin[2] - offset[2]) // f)
            np.testing.assert_array_equal(a[:, ys:, xs:], b[:, ys:, xs:])
