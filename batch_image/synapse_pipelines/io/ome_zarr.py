"""OME-Zarr (NGFF 0.4) multiscale volumes: written whole or region by region, read by region.

Owns :class:`OmeZarrSpec` (one z, y, x image or label volume: level-0 shape, chunks, the
absolute voxel offset of its first voxel, voxel size, pyramid depth), its metadata objects
(``.zgroup``, ``.zattrs`` with ``multiscales``, ``<level>/.zarray`` and an empty
``<level>/.zattrs``), the encoding of a
region into the chunk objects of every level (:meth:`OmeZarrSpec.encode_region`: a blockwise
job encodes its own block and puts the objects wherever its results go),
:func:`write_ome_zarr` (a whole volume into a local folder) and :class:`OmeZarrReader`
(a region of one level through any ``key -> bytes`` getter: a folder or an S3 prefix).

Format: Zarr v2 (NGFF 0.4 is defined on Zarr v2), ``/`` chunk keys, Blosc-LZ4 chunks,
fill value 0, every chunk inside the array written (also all-zero ones, so a viewer never
asks for a missing object). Level ``k`` is 2**k coarser in y and x, z is kept
(:mod:`synapse_pipelines.science.pyramid`: mean for images, nearest for labels). Each level's
``coordinateTransformations`` holds its physical scale and the translation of the offset,
so Neuroglancer (``zarr://``), napari and webKnossos place it in the experiment's frame.
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

NGFF_VERSION = "0.4"

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

_COMPRESSOR = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}

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
        object.__setattr__(self, "dtype", np.dtype(self.dtype).str)
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
    def zattrs(self) -> dict[str, Any]:
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
        attrs: dict[str, Any] = {
            "multiscales": [
                {
                    "version": NGFF_VERSION,
                    "name": self.name,
                    "axes": axes,
                    "datasets": datasets,
                    "type": "mean" if self.kind == "image" else "nearest",
                    "metadata": {"downsample": "2x2 in y and x per level, z kept"},
                }
            ],
            "synapse_pipelines": {
                "offset_voxels": list(self.offset),
                "voxel_size": list(self.voxel_size),
                "voxel_unit": self.voxel_unit,
                "kind": self.kind,
                **dict(self.attributes),
            },
        }
        if self.kind == "labels":
            attrs["image-label"] = {"version": NGFF_VERSION}
        return attrs

    def zarray(self, level: int) -> dict[str, Any]:
        return {
            "zarr_format": 2,
            "shape": list(self.level_shape(level)),
            "chunks": list(self.level_chunks(level)),
            "dtype": self.dtype,
            "compressor": _COMPRESSOR,
            "fill_value": 0,
            "filters": None,
            "order": "C",
            "dimension_separator": "/",
        }

    def metadata_objects(self) -> dict[str, bytes]:
        """``.zgroup``, ``.zattrs`` and every level's ``.zarray`` (keys under the root)."""
        objects = {
            ".zgroup": _json({"zarr_format": 2}),
            ".zattrs": _json(self.zattrs()),
        }
        for level in range(self.levels):
            objects[f"{level}/.zarray"] = _json(self.zarray(level))
            # empty, but present: readers (Neuroglancer) ask for it, and a 404 is noise
            objects[f"{level}/.zattrs"] = _json({})
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
        codec = numcodecs.get_codec(_COMPRESSOR)
        for level in range(self.levels):
            region, (y0, x0) = downsample_region(data, start[1:], level, self.kind)
            lo = (int(start[0]), y0, x0)
            shape = self.level_shape(level)
            hi = tuple(min(a + s, n) for a, s, n in zip(lo, region.shape, shape, strict=True))
            chunks = self.level_chunks(level)
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
                key = f"{level}/" + "/".join(str(i) for i in index)
                yield key, codec.encode(buf)


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


class OmeZarrReader:
    """Regions of a volume written by this module (or any NGFF 0.4 z, y, x Zarr v2 image
    with ``/`` keys), through a :data:`Getter`; reads only the chunks a region touches."""

    def __init__(self, get: Getter):
        self._get = get
        attrs = get(".zattrs")
        if attrs is None:
            raise FileNotFoundError("no .zattrs: not an OME-Zarr volume")
        self.attrs: dict[str, Any] = json.loads(attrs)
        multiscale = self.attrs["multiscales"][0]
        self.paths = [d["path"] for d in multiscale["datasets"]]
        self._arrays: dict[int, dict[str, Any]] = {}

    @classmethod
    def open(cls, folder: str | Path) -> OmeZarrReader:
        return cls(folder_getter(folder))

    @property
    def offset(self) -> tuple[int, int, int]:
        own = self.attrs.get("synapse_pipelines", {})
        return tuple(int(v) for v in own.get("offset_voxels", (0, 0, 0)))  # type: ignore[return-value]

    def array_meta(self, level: int = 0) -> dict[str, Any]:
        if level not in self._arrays:
            raw = self._get(f"{self.paths[level]}/.zarray")
            if raw is None:
                raise FileNotFoundError(f"level {level} has no .zarray")
            self._arrays[level] = json.loads(raw)
        return self._arrays[level]

    def shape(self, level: int = 0) -> tuple[int, int, int]:
        return tuple(self.array_meta(level)["shape"])  # type: ignore[return-value]

    def read(self, start: Sequence[int], stop: Sequence[int], level: int = 0) -> np.ndarray:
        """Array indices ``[start, stop)`` of ``level``, always of shape ``stop - start``:
        zeros outside the array and where a chunk is missing."""
        meta = self.array_meta(level)
        shape, chunks = meta["shape"], meta["chunks"]
        origin = [int(a) for a in start]
        out = np.zeros(
            [max(0, int(b) - a) for a, b in zip(origin, stop, strict=True)],
            dtype=np.dtype(meta["dtype"]),
        )
        lo = [max(0, a) for a in origin]
        hi = [min(int(b), n) for b, n in zip(stop, shape, strict=True)]
        if any(b <= a for a, b in zip(lo, hi, strict=True)):
            return out
        codec = numcodecs.get_codec(meta["compressor"]) if meta["compressor"] else None
        sep = meta.get("dimension_separator", ".")
        grids = [range(a // c, -(-b // c)) for a, b, c in zip(lo, hi, chunks, strict=True)]
        for index in product(*grids):
            raw = self._get(f"{self.paths[level]}/" + sep.join(str(i) for i in index))
            if raw is None:
                continue
            decoded = codec.decode(raw) if codec else raw
            block = np.frombuffer(decoded, dtype=out.dtype).reshape(chunks)
            src, dst = [], []
            for i, a, b, c, o in zip(index, lo, hi, chunks, origin, strict=True):
                c0 = i * c
                s0, s1 = max(a, c0), min(b, c0 + c)
                src.append(slice(s0 - c0, s1 - c0))
                dst.append(slice(s0 - o, s1 - o))
            out[tuple(dst)] = block[tuple(src)]
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
