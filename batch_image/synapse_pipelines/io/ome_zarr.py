"""OME-Zarr (NGFF 0.5, Zarr v3) multiscale volumes: written whole or region by region, read
by region.

Owns :class:`OmeZarrSpec` (one z, y, x image or label volume: level-0 shape, chunks, the
absolute voxel offset of its first voxel, voxel size, pyramid depth), its metadata objects
(the group's ``zarr.json``, whose ``attributes.ome`` hold ``version`` and ``multiscales``,
and each level's array ``<level>/zarr.json``), the encoding of a region into the chunk
objects of every level (:meth:`OmeZarrSpec.encode_region`: a blockwise job encodes its own
block and puts the objects wherever its results go), :func:`write_ome_zarr` (a whole volume
into a local folder) and :class:`OmeZarrReader` (a region of one level through any
``key -> bytes`` getter: a folder or an S3 prefix).

Format: Zarr v3 (NGFF 0.5 is defined on Zarr v3), a regular chunk grid, the default chunk
key encoding (``<level>/c/<z>/<y>/<x>``), codecs ``bytes`` (little endian) then ``blosc``
(LZ4, byte shuffle), fill value 0, dimension names ``z, y, x``; every chunk inside the array
written (also all-zero ones, so a viewer never asks for a missing object). Level ``k`` is
2**k coarser in y and x, z is kept (:mod:`synapse_pipelines.science.pyramid`: mean for
images, nearest for labels). Each level's ``coordinateTransformations`` holds its physical
scale and the translation of the offset, so Neuroglancer (``zarr3://``), napari and
webKnossos place it in the experiment's frame. Label volumes also carry
``attributes.ome["image-label"]``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np

from synapse_pipelines.science.pyramid import Kind, downsample_region, level_extent, pyramid_depth

NGFF_VERSION = "0.5"
ZARR_FORMAT = 3
#: The metadata object of every Zarr v3 group and array.
ZARR_JSON = "zarr.json"

#: BOSS voxel units -> NGFF (UDUNITS-2) axis units.
NGFF_UNITS: dict[str, str] = {
    "nanometers": "nanometer",
    "micrometers": "micrometer",
    "millimeters": "millimeter",
    "centimeters": "centimeter",
    "meters": "meter",
}

#: Default level-0 chunk (z, y, x): whole sections of 256 x 256, at most 16 deep.
DEFAULT_CHUNKS = (16, 256, 256)

#: The Zarr v3 ``blosc`` codec's configuration (``typesize`` is added per data type).
_BLOSC = {"cname": "lz4", "clevel": 5, "shuffle": "shuffle", "blocksize": 0}
#: Zarr v3 ``blosc`` shuffle names -> numcodecs' Blosc constants.
_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
#: Zarr v3 bytes-to-bytes codecs (through numcodecs): blosc encodes our chunks; the reader
#: decodes all three.
_COMPRESSORS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    # typesize: the chunk's item size, which byte shuffle needs when encoding raw bytes
    "blosc": lambda c: numcodecs.Blosc(
        cname=c.get("cname", "lz4"),
        clevel=int(c.get("clevel", 5)),
        shuffle=_SHUFFLE[c.get("shuffle", "noshuffle")],
        blocksize=int(c.get("blocksize", 0)),
        typesize=int(c.get("typesize", 1)),
    ),
    "zstd": lambda c: numcodecs.Zstd(level=int(c.get("level", 0))),
    "gzip": lambda c: numcodecs.GZip(level=int(c.get("level", 5))),
}

#: ``key -> bytes`` of an object under the volume's root, or None when it does not exist
Getter = Callable[[str], bytes | None]


def default_chunks(shape: Sequence[int]) -> tuple[int, int, int]:
    """:data:`DEFAULT_CHUNKS`, no larger than the volume (at least 1 per axis)."""
    return tuple(  # type: ignore[return-value]
        max(1, min(int(c), int(s))) for c, s in zip(DEFAULT_CHUNKS, shape, strict=True)
    )


@dataclass(frozen=True)
class OmeZarrSpec:
    """One multiscale z, y, x volume: what its metadata says and how its chunks are cut."""

    name: str
    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]
    dtype: str
    voxel_size: tuple[float, float, float]
    voxel_unit: str = "nanometers"
    offset: tuple[int, int, int] = (0, 0, 0)
    kind: Kind = "image"
    levels: int = 0  # 0: as many as pyramid_depth allows
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))
        object.__setattr__(self, "chunks", tuple(int(v) for v in self.chunks))
        object.__setattr__(self, "offset", tuple(int(v) for v in self.offset))
        object.__setattr__(self, "voxel_size", tuple(float(v) for v in self.voxel_size))
        # chunks are little endian (the ``bytes`` codec), whatever the input's byte order
        object.__setattr__(self, "dtype", np.dtype(self.dtype).newbyteorder("<").str)
        if self.levels <= 0:
            object.__setattr__(self, "levels", pyramid_depth(self.shape, self.chunks))

    @classmethod
    def for_volume(
        cls,
        name: str,
        shape: Sequence[int],
        dtype: Any,
        *,
        voxel_size: Sequence[float],
        voxel_unit: str = "nanometers",
        offset: Sequence[int] = (0, 0, 0),
        kind: Kind = "image",
        chunks: Sequence[int] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> OmeZarrSpec:
        return cls(
            name=name,
            shape=tuple(shape),  # type: ignore[arg-type]
            chunks=tuple(chunks) if chunks is not None else default_chunks(shape),  # type: ignore[arg-type]
            dtype=np.dtype(dtype).str,
            voxel_size=tuple(voxel_size),  # type: ignore[arg-type]
            voxel_unit=voxel_unit,
            offset=tuple(offset),  # type: ignore[arg-type]
            kind=kind,
            attributes=dict(attributes or {}),
        )

    def factor(self, level: int) -> tuple[int, int, int]:
        return (1, 2**level, 2**level)

    def level_shape(self, level: int) -> tuple[int, int, int]:
        f = self.factor(level)
        return tuple(-(-s // k) for s, k in zip(self.shape, f, strict=True))  # type: ignore[return-value]

    def level_chunks(self, level: int) -> tuple[int, int, int]:
        f = self.factor(level)
        return tuple(max(1, c // k) for c, k in zip(self.chunks, f, strict=True))  # type: ignore[return-value]

    # -- metadata ------------------------------------------------------------------------
    def group_attributes(self) -> dict[str, Any]:
        """The group's ``attributes``: NGFF 0.5 under ``ome``, ours under ``synapse_pipelines``."""
        unit = NGFF_UNITS.get(self.voxel_unit)
        axes = [{"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in "zyx"]
        datasets = []
        for level in range(self.levels):
            scale = [v * k for v, k in zip(self.voxel_size, self.factor(level), strict=True)]
            translation = [o * v for o, v in zip(self.offset, self.voxel_size, strict=True)]
            datasets.append(
                {
                    "path": str(level),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": scale},
                        {"type": "translation", "translation": translation},
                    ],
                }
            )
        ome: dict[str, Any] = {
            "version": NGFF_VERSION,
            "multiscales": [
                {
                    "name": self.name,
                    "axes": axes,
                    "datasets": datasets,
                    "type": "mean" if self.kind == "image" else "nearest",
                    "metadata": {"downsample": "2x2 in y and x per level, z kept"},
                }
            ],
        }
        if self.kind == "labels":
            ome["image-label"] = {}  # NGFF 0.5: no version of its own (the ome one applies)
        return {
            "ome": ome,
            "synapse_pipelines": {
                "offset_voxels": list(self.offset),
                "voxel_size": list(self.voxel_size),
                "voxel_unit": self.voxel_unit,
                "kind": self.kind,
                **dict(self.attributes),
            },
        }

    def codecs(self) -> list[dict[str, Any]]:
        """The arrays' Zarr v3 codec chain: ``bytes`` (little endian), then ``blosc``."""
        typesize = np.dtype(self.dtype).itemsize
        return [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "blosc", "configuration": {**_BLOSC, "typesize": typesize}},
        ]

    def array_metadata(self, level: int) -> dict[str, Any]:
        """The ``zarr.json`` of one level's array."""
        return {
            "zarr_format": ZARR_FORMAT,
            "node_type": "array",
            "shape": list(self.level_shape(level)),
            "data_type": np.dtype(self.dtype).name,
            "chunk_grid": {
                "name": "regular",
                "configuration": {"chunk_shape": list(self.level_chunks(level))},
            },
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0,
            "codecs": self.codecs(),
            "attributes": {},
            "dimension_names": ["z", "y", "x"],
        }

    def metadata_objects(self) -> dict[str, bytes]:
        """The group's ``zarr.json`` and every level's ``<level>/zarr.json`` (keys under the
        root)."""
        group = {
            "zarr_format": ZARR_FORMAT,
            "node_type": "group",
            "attributes": self.group_attributes(),
        }
        objects = {ZARR_JSON: _json(group)}
        for level in range(self.levels):
            objects[f"{level}/{ZARR_JSON}"] = _json(self.array_metadata(level))
        return objects

    # -- chunks --------------------------------------------------------------------------
    def encode_region(
        self, data: np.ndarray, start: Sequence[int] = (0, 0, 0)
    ) -> Iterator[tuple[str, bytes]]:
        """The chunk objects of every level that the region ``data`` (z, y, x, level 0, at
        array index ``start``) touches, as (key, bytes).

        A chunk only partly covered by the region is written with zeros elsewhere: the
        region must be the only writer of the chunks it touches (the whole volume, or one
        block of a plan whose blocks follow a chunk grid that is a multiple of this one).
        """
        data = np.asarray(data, dtype=np.dtype(self.dtype))
        for level in range(self.levels):
            # the reader's view of this level's zarr.json: one definition of keys and codecs
            array = ArrayLayout.parse(self.array_metadata(level))
            region, (y0, x0) = downsample_region(data, start[1:], level, self.kind)
            lo = (int(start[0]), y0, x0)
            hi = tuple(min(a + s, n) for a, s, n in zip(lo, region.shape, array.shape, strict=True))
            chunks = array.chunks
            grids = [range(a // c, -(-b // c)) for a, b, c in zip(lo, hi, chunks, strict=True)]
            for index in product(*grids):
                c0 = [i * c for i, c in zip(index, chunks, strict=True)]
                buf = np.zeros(chunks, dtype=region.dtype)
                src, dst = [], []
                for a, b, c, cs in zip(lo, hi, c0, chunks, strict=True):
                    s0, s1 = max(a, c), min(b, c + cs)
                    src.append(slice(s0 - a, s1 - a))
                    dst.append(slice(s0 - c, s1 - c))
                buf[tuple(dst)] = region[tuple(src)]
                yield f"{level}/{array.key(index)}", array.encode(buf)


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()


def write_ome_zarr(
    folder: str | Path, spec: OmeZarrSpec, data: np.ndarray, *, overwrite: bool = True
) -> Path:
    """Write a whole volume (level 0 = ``data``) and its pyramid into ``folder``.

    An existing folder is replaced when ``overwrite`` (chunks of an older, larger volume
    must not survive); the metadata is written last, so a reader never sees a volume
    without its chunks.
    """
    folder = Path(folder)
    if tuple(np.shape(data)) != spec.shape:
        raise ValueError(f"{spec.name}: data shape {np.shape(data)} is not {spec.shape}")
    if folder.exists():
        if not overwrite:
            raise FileExistsError(folder)
        shutil.rmtree(folder)
    for key, payload in spec.encode_region(data):
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    for key, payload in spec.metadata_objects().items():
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    return folder


def folder_getter(folder: str | Path) -> Getter:
    """A :data:`Getter` over a local folder."""
    root = Path(folder)

    def get(key: str) -> bytes | None:
        path = root / key
        return path.read_bytes() if path.is_file() else None

    return get


@dataclass(frozen=True)
class ArrayLayout:
    """What reading one Zarr v3 array's chunks takes, from its ``zarr.json``: a regular
    grid, the ``default`` or ``v2`` chunk key encoding, ``bytes`` then at most one of
    ``blosc``, ``zstd``, ``gzip`` (no sharding, no transpose)."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    fill_value: float
    prefix: str  # "c/" (default encoding) or "" (v2 encoding)
    separator: str
    compressor: Any  # a numcodecs codec, or None

    @classmethod
    def parse(cls, meta: Mapping[str, Any]) -> ArrayLayout:
        if meta.get("zarr_format") != ZARR_FORMAT or meta.get("node_type") != "array":
            raise ValueError("not a Zarr v3 array")
        grid = meta["chunk_grid"]
        if grid["name"] != "regular":
            raise ValueError(f"chunk grid {grid['name']!r} is not supported")
        encoding = meta.get("chunk_key_encoding", {"name": "default"})
        default = encoding["name"] == "default"
        separator = encoding.get("configuration", {}).get("separator", "/" if default else ".")
        codecs = list(meta["codecs"])
        first = codecs.pop(0)
        if first["name"] != "bytes":
            raise ValueError(f"codec {first['name']!r} is not supported (only bytes first)")
        endian = first.get("configuration", {}).get("endian", "little")
        dtype = np.dtype(meta["data_type"]).newbyteorder("<" if endian == "little" else ">")
        if len(codecs) > 1 or any(c["name"] not in _COMPRESSORS for c in codecs):
            raise ValueError(f"codecs {[c['name'] for c in codecs]} are not supported")
        compressor = (
            _COMPRESSORS[codecs[0]["name"]](codecs[0].get("configuration", {})) if codecs else None
        )
        return cls(
            shape=tuple(int(v) for v in meta["shape"]),
            chunks=tuple(int(v) for v in grid["configuration"]["chunk_shape"]),
            dtype=dtype,
            fill_value=float(meta.get("fill_value") or 0),
            prefix="c/" if default else "",
            separator=separator,
            compressor=compressor,
        )

    def key(self, index: Sequence[int]) -> str:
        """A chunk's key under the array."""
        return self.prefix + self.separator.join(str(i) for i in index)

    def encode(self, chunk: np.ndarray) -> bytes:
        """One whole chunk's object (its bytes in this array's byte order, compressed)."""
        data = np.ascontiguousarray(chunk, dtype=self.dtype).tobytes()
        return bytes(self.compressor.encode(data)) if self.compressor is not None else data

    def decode(self, raw: bytes) -> np.ndarray:
        decoded = self.compressor.decode(raw) if self.compressor is not None else raw
        return np.frombuffer(decoded, dtype=self.dtype).reshape(self.chunks)


class OmeZarrReader:
    """Regions of a volume written by this module (or any NGFF 0.5 z, y, x image whose
    arrays :class:`ArrayLayout` reads), through a :data:`Getter`; reads only the chunks a
    region touches."""

    def __init__(self, get: Getter):
        self._get = get
        raw = get(ZARR_JSON)
        if raw is None:
            raise FileNotFoundError("no zarr.json: not an OME-Zarr (NGFF 0.5) volume")
        group = json.loads(raw)
        if group.get("zarr_format") != ZARR_FORMAT or group.get("node_type") != "group":
            raise ValueError("zarr.json is not a Zarr v3 group")
        self.attrs: dict[str, Any] = group.get("attributes", {})
        if "multiscales" not in self.attrs.get("ome", {}):
            raise ValueError("zarr.json has no attributes.ome.multiscales: not OME-Zarr 0.5")
        multiscale = self.attrs["ome"]["multiscales"][0]
        self.paths = [d["path"] for d in multiscale["datasets"]]
        self._arrays: dict[int, ArrayLayout] = {}

    @classmethod
    def open(cls, folder: str | Path) -> OmeZarrReader:
        return cls(folder_getter(folder))

    @property
    def offset(self) -> tuple[int, int, int]:
        own = self.attrs.get("synapse_pipelines", {})
        return tuple(int(v) for v in own.get("offset_voxels", (0, 0, 0)))  # type: ignore[return-value]

    def layout(self, level: int = 0) -> ArrayLayout:
        if level not in self._arrays:
            raw = self._get(f"{self.paths[level]}/{ZARR_JSON}")
            if raw is None:
                raise FileNotFoundError(f"level {level} has no zarr.json")
            self._arrays[level] = ArrayLayout.parse(json.loads(raw))
        return self._arrays[level]

    def shape(self, level: int = 0) -> tuple[int, int, int]:
        return self.layout(level).shape  # type: ignore[return-value]

    def read(self, start: Sequence[int], stop: Sequence[int], level: int = 0) -> np.ndarray:
        """Array indices ``[start, stop)`` of ``level``, always of shape ``stop - start``:
        zeros outside the array, the fill value where a chunk is missing."""
        array = self.layout(level)
        shape, chunks = array.shape, array.chunks
        origin = [int(a) for a in start]
        out = np.zeros(
            [max(0, int(b) - a) for a, b in zip(origin, stop, strict=True)],
            dtype=array.dtype.newbyteorder("="),
        )
        lo = [max(0, a) for a in origin]
        hi = [min(int(b), n) for b, n in zip(stop, shape, strict=True)]
        if any(b <= a for a, b in zip(lo, hi, strict=True)):
            return out
        grids = [range(a // c, -(-b // c)) for a, b, c in zip(lo, hi, chunks, strict=True)]
        for index in product(*grids):
            src, dst = [], []
            for i, a, b, c, o in zip(index, lo, hi, chunks, origin, strict=True):
                c0 = i * c
                s0, s1 = max(a, c0), min(b, c0 + c)
                src.append(slice(s0 - c0, s1 - c0))
                dst.append(slice(s0 - o, s1 - o))
            raw = self._get(f"{self.paths[level]}/{array.key(index)}")
            if raw is None:
                out[tuple(dst)] = array.fill_value
                continue
            out[tuple(dst)] = array.decode(raw)[tuple(src)]
        return out

    def read_absolute(self, start: Sequence[int], stop: Sequence[int]) -> np.ndarray:
        """Level 0 over absolute voxel coordinates (the experiment's frame)."""
        off = self.offset
        return self.read(
            [a - o for a, o in zip(start, off, strict=True)],
            [b - o for b, o in zip(stop, off, strict=True)],
        )


def level_region(start: int, stop: int, level: int) -> tuple[int, int]:
    """Level-0 ``[start, stop)`` along y or x -> the same span at ``level``."""
    return level_extent(start, stop, 2**level)
