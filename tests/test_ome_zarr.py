"""OME-Zarr outputs (NGFF 0.5 on Zarr v3, multiscale): what a single job and a blockwise run
write is readable by zarr 3 with valid NGFF 0.5 metadata (``zarr.json`` per group and array,
``c/<z>/<y>/<x>`` chunk keys, ``bytes`` + ``blosc`` codecs), holds the same voxels as the
OME-TIFFs / the input channels at every level, and a blockwise run's volumes (written block
by block) equal a whole-volume write at every pyramid level. Our reader also reads arrays
zarr itself wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models import open_ome_zarr
from ome_zarr_models.v05.image import Image as NgffImage
from ome_zarr_models.v05.image_label import ImageLabel as NgffImageLabel

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


def _open(path: Path) -> zarr.Group:
    return zarr.open_group(path, mode="r", zarr_format=3)


def _ngff(group: zarr.Group) -> dict:
    """The NGFF 0.5 multiscale of a group (``attributes.ome``, no per-multiscale version)."""
    ome = dict(group.attrs)["ome"]
    assert ome["version"] == "0.5"
    (ms,) = ome["multiscales"]
    assert "version" not in ms
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
    group = _open(tmp_path / "raw.ome.zarr")
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


def test_zarr3_objects_and_every_level_read_back_by_zarr(tmp_path: Path) -> None:
    """The objects on disk are Zarr v3 (no v2 metadata anywhere), every chunk is written
    (also all-zero ones), and zarr 3 reads every level identical to our reader and to the
    pyramid, big-endian input included (stored little endian)."""
    rng = np.random.default_rng(4)
    ids = np.zeros((5, 260, 140), dtype=">u4")
    ids[1:3, 20:90, 10:60] = rng.integers(1, 2**31, (2, 70, 50))
    spec = OmeZarrSpec.for_volume(
        "ids", ids.shape, ids.dtype, voxel_size=(70, 100, 100), kind="labels", chunks=(2, 64, 64)
    )
    root = write_ome_zarr(tmp_path / "ids.ome.zarr", spec, ids)
    names = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert not {n for n in names if n.rsplit("/", 1)[-1].startswith(".z")}, "v2 metadata"
    group_meta = json.loads((root / "zarr.json").read_text())
    assert (group_meta["zarr_format"], group_meta["node_type"]) == (3, "group")
    assert set(group_meta["attributes"]) == {"ome", "synapse_pipelines"}
    reader = OmeZarrReader.open(root)
    group = _open(root)
    assert len(_ngff(group)["datasets"]) == spec.levels == 3
    for level in range(spec.levels):
        meta = json.loads((root / str(level) / "zarr.json").read_text())
        assert meta["node_type"] == "array" and meta["data_type"] == "uint32"
        assert meta["chunk_grid"] == {
            "name": "regular",
            "configuration": {"chunk_shape": list(spec.level_chunks(level))},
        }
        assert meta["chunk_key_encoding"] == {
            "name": "default",
            "configuration": {"separator": "/"},
        }
        assert meta["codecs"] == [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {
                "name": "blosc",
                "configuration": {
                    "cname": "lz4",
                    "clevel": 5,
                    "shuffle": "shuffle",
                    "blocksize": 0,
                    "typesize": 4,
                },
            },
        ]
        assert meta["fill_value"] == 0 and meta["dimension_names"] == ["z", "y", "x"]
        shape, chunk = spec.level_shape(level), spec.level_chunks(level)
        grid = [-(-n // c) for n, c in zip(shape, chunk, strict=True)]
        chunks = {n for n in names if n.startswith(f"{level}/c/")}
        assert len(chunks) == int(np.prod(grid)), "every chunk, all-zero ones too"
        expected, _ = downsample_region(ids.astype("<u4"), (0, 0), level, "labels")
        expected = expected[:, : spec.level_shape(level)[1], : spec.level_shape(level)[2]]
        array = group[str(level)]
        assert array.shape == spec.level_shape(level)
        np.testing.assert_array_equal(array[:], expected)
        np.testing.assert_array_equal(reader.read((0, 0, 0), array.shape, level), expected)


@pytest.mark.parametrize(
    ("compressors", "encoding"),
    [
        (zarr.codecs.ZstdCodec(level=3), {"name": "default", "separator": "/"}),
        (None, {"name": "v2", "separator": "."}),
    ],
)
def test_reader_reads_an_ngff_volume_zarr_wrote(
    tmp_path: Path, compressors: object, encoding: dict
) -> None:
    data = np.arange(3 * 40 * 50, dtype=np.uint16).reshape(3, 40, 50)
    group = zarr.open_group(tmp_path / "v.ome.zarr", mode="w", zarr_format=3)
    array = group.create_array(
        "0",
        shape=data.shape,
        chunks=(2, 16, 16),
        dtype=data.dtype,
        compressors=compressors,
        chunk_key_encoding=encoding,
        fill_value=7,
    )
    array[:, :, :30] = data[:, :, :30]  # the chunks beyond x = 32 are never written
    axes = [{"name": a, "type": "space"} for a in "zyx"]
    scale = [{"type": "scale", "scale": [1, 1, 1]}]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": scale}]}
        ],
    }
    expected = np.full(data.shape, 7, dtype=data.dtype)
    expected[:, :, :30] = data[:, :, :30]
    got = OmeZarrReader.open(tmp_path / "v.ome.zarr").read((0, 0, 0), data.shape)
    np.testing.assert_array_equal(got, expected)


def test_reader_rejects_a_v2_volume(tmp_path: Path) -> None:
    group = zarr.open_group(tmp_path / "old.ome.zarr", mode="w", zarr_format=2)
    group.attrs["multiscales"] = [{"version": "0.4", "datasets": [{"path": "0"}]}]
    with pytest.raises(FileNotFoundError, match=r"NGFF 0\.5"):
        OmeZarrReader.open(tmp_path / "old.ome.zarr")


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
    ids = _open(tmp_path / SYNAPSE_IDS_OME_ZARR)
    assert dict(ids.attrs)["ome"]["image-label"] == {}  # NGFF 0.5: versioned by ome.version
    assert _ngff(ids)["type"] == "nearest"
    np.testing.assert_array_equal(ids["0"][:], result.labels)
    pred = _open(tmp_path / PREDICTIONS_OME_ZARR)
    np.testing.assert_array_equal(pred["0"][:] > 0, result.mask > 0)
    for name, volume in ch.items():
        raw = _open(tmp_path / raw_channel_path(name))
        np.testing.assert_array_equal(raw["0"][:], volume)
        assert _ngff(raw)["datasets"][0]["coordinateTransformations"][0]["scale"] == list(
            exp.voxel_size
        )
    assert outputs.verify_manifest(tmp_path) == []


def test_every_volume_validates_against_the_ngff_05_models(tmp_path: Path) -> None:
    """ome-zarr-models (pydantic models of the NGFF specification, by the OME-Zarr
    community) opens each group of a results folder as what it is: the ids and the
    predictions as NGFF 0.5 image-labels, every raw channel as an NGFF 0.5 image."""
    exp = synthetic.make_experiment((4, 70, 64), seed=5, n_synapses=12, profile="sparse")
    ch = exp.channels
    result = detection.detect(ch[exp.presynaptic], ch[exp.postsynaptic])
    table = features.synapse_table(result.labels, ch, voxel_size=exp.voxel_size)
    outputs.write_results(
        tmp_path, mask=result.mask, labels=result.labels, table=table,
        voxel_size=exp.voxel_size, origin=(0, 5, 7), raw=ch,
    )  # fmt: skip
    for path in (SYNAPSE_IDS_OME_ZARR, PREDICTIONS_OME_ZARR):
        assert isinstance(open_ome_zarr(_open(tmp_path / path)), NgffImageLabel), path
    for name in ch:
        assert isinstance(open_ome_zarr(_open(tmp_path / raw_channel_path(name))), NgffImage)


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
        group = _open(results / root)
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
        ref = _open(tmp_path / "ref")
        for level in range(1, len(ms["datasets"])):
            a, b = np.asarray(group[str(level)][:]), np.asarray(ref[str(level)][:])
            f = 2**level
            ys = -(-(origin[1] - offset[1]) // f)
            xs = -(-(origin[2] - offset[2]) // f)
            np.testing.assert_array_equal(a[:, ys:, xs:], b[:, ys:, xs:])
