"""Self-describing volume files: z, y, x (or c, z, y, x) arrays as compressed OME-TIFF.

Owns :func:`write_volume` / :func:`read_volume` (physical voxel sizes in the OME ``Pixels``
element, the global origin and any attributes as JSON in the image description; uint64 ids
stored as uint32, since OME has no uint64 pixel type), :func:`atomic_write` (temporary file
+ rename: a reader never sees half a file, nothing is overwritten unless asked) and
:class:`OutputError`. The results folder that holds these files is
:mod:`synapse_pipelines.io.outputs`'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import tifffile

from synapse_pipelines.core.errors import SynapsePipelinesError

#: BOSS voxel units -> OME UnitsLength symbols.
OME_UNITS: dict[str, str] = {
    "nanometers": "nm",
    "micrometers": "µm",
    "millimeters": "mm",
    "centimeters": "cm",
    "meters": "m",
    "pixel": "pixel",
}
_FROM_OME_UNITS = {v: k for k, v in OME_UNITS.items()} | {"um": "micrometers"}

UMASK = os.umask(0)
os.umask(UMASK)  # read the process umask once (there is no getter)
_OME_DESCRIPTION_KEY = "synapse_pipelines"


class OutputError(SynapsePipelinesError):
    """The results folder or a volume file cannot be written or read as asked."""

    error_type = "OutputError"


@dataclass(frozen=True)
class Volume:
    """A volume read back from disk, with what its file said about it."""

    data: np.ndarray  # z, y, x (or c, z, y, x when channel_names is not None)
    voxel_size: tuple[float, float, float] | None
    voxel_unit: str | None
    origin: tuple[int, int, int] = (0, 0, 0)
    channel_names: tuple[str, ...] | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def atomic_write(path: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    if path.exists() and not overwrite:
        raise OutputError(
            f"{path} already exists",
            field="out",
            hint="choose another output folder, or pass --overwrite to replace its results",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp creates 0600; results are for sharing
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _ome_unit(voxel_unit: str) -> str:
    unit = OME_UNITS.get(voxel_unit, voxel_unit)
    if unit not in _FROM_OME_UNITS:
        raise OutputError(
            f"unknown voxel unit {voxel_unit!r}",
            field="voxel_unit",
            hint=f"use one of {', '.join(OME_UNITS)}",
        )
    return unit


def write_volume(
    path: str | Path,
    data: np.ndarray,
    *,
    voxel_size: Sequence[float],
    voxel_unit: str = "nanometers",
    origin: Sequence[int] = (0, 0, 0),
    channel_names: Sequence[str] | None = None,
    name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a z, y, x volume (or c, z, y, x with ``channel_names``) as compressed OME-TIFF.

    Physical voxel sizes go into the OME ``Pixels`` element (Fiji and napari show them);
    the global ``origin`` and any ``attributes`` go as JSON into the image description.
    uint64 data whose values fit are stored as uint32 (OME has no uint64 type).
    """
    path = Path(path)
    data = np.asarray(data)
    expected_ndim = 3 if channel_names is None else 4
    if data.ndim != expected_ndim:
        raise OutputError(
            f"expected a {expected_ndim}-D volume for {path.name}, got shape {data.shape}",
            field="data",
        )
    if channel_names is not None and len(channel_names) != data.shape[0]:
        raise OutputError(
            f"{len(channel_names)} channel names for {data.shape[0]} channels",
            field="channel_names",
        )
    if data.dtype in (np.uint64, np.int64):
        if data.size and (data.max() > np.iinfo(np.uint32).max or data.min() < 0):
            raise OutputError(
                f"{path.name}: ids above 4294967295 cannot be stored in OME-TIFF (no uint64)",
                field="data",
                hint="relabel the ids consecutively (e.g. skimage.segmentation.relabel_sequential)",
            )
        data = data.astype(np.uint32)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    unit = _ome_unit(voxel_unit)
    vz, vy, vx = (float(v) for v in voxel_size)
    description = {
        _OME_DESCRIPTION_KEY: {
            "origin": [int(v) for v in origin],
            "voxel_unit": voxel_unit,
            **(dict(attributes) if attributes else {}),
        }
    }
    meta: dict[str, Any] = {
        "axes": "ZYX" if channel_names is None else "CZYX",
        "PhysicalSizeZ": vz,
        "PhysicalSizeZUnit": unit,
        "PhysicalSizeY": vy,
        "PhysicalSizeYUnit": unit,
        "PhysicalSizeX": vx,
        "PhysicalSizeXUnit": unit,
        "Description": json.dumps(description, sort_keys=True),
    }
    if name:
        meta["Name"] = name
    if channel_names is not None:
        meta["Channel"] = {"Name": [str(c) for c in channel_names]}
    with atomic_write(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(
            tmp,
            data,
            ome=True,
            photometric="minisblack",  # a last axis of 3 or 4 is not RGB(A)
            compression="zlib",
            compressionargs={"level": 6},
            bigtiff=data.nbytes > 2**31,  # classic TIFF offsets stop at 4 GiB
            metadata=meta,
        )
    return path


def _ome_pixels(ome_xml: str) -> tuple[ElementTree.Element | None, ElementTree.Element | None]:
    root = ElementTree.fromstring(ome_xml)
    ns = {"ome": root.tag.split("}")[0].strip("{")} if root.tag.startswith("{") else {}
    prefix = "ome:" if ns else ""
    image = root.find(f"{prefix}Image", ns)
    pixels = image.find(f"{prefix}Pixels", ns) if image is not None else None
    return image, pixels


def read_volume(path: str | Path) -> Volume:
    """Read an OME-TIFF written by :func:`write_volume` (or any TIFF: metadata if present)."""
    path = Path(path)
    if not path.is_file():
        raise OutputError(f"no file at {path}", field="path", hint="check the path")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            data = series.asarray()
            axes = series.axes
            ome = tif.ome_metadata
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise OutputError(f"{path} is not a readable TIFF ({exc})", field="path") from exc
    voxel_size: tuple[float, float, float] | None = None
    voxel_unit: str | None = None
    origin = (0, 0, 0)
    channel_names: tuple[str, ...] | None = None
    attributes: dict[str, Any] = {}
    if ome:
        image, pixels = _ome_pixels(ome)
        if pixels is not None:
            sizes = [pixels.get(f"PhysicalSize{a}") for a in "ZYX"]
            if all(s is not None for s in sizes):
                voxel_size = tuple(float(s) for s in sizes)  # type: ignore[assignment]
                voxel_unit = _FROM_OME_UNITS.get(pixels.get("PhysicalSizeXUnit", "µm"), "µm")
            names = [c.get("Name") for c in pixels if c.tag.endswith("Channel")]
            if "C" in axes and all(names):
                channel_names = tuple(str(n) for n in names)
        desc = image.find("{*}Description") if image is not None else None
        if desc is not None and desc.text:
            with contextlib.suppress(ValueError, TypeError):
                attributes = dict(json.loads(desc.text).get(_OME_DESCRIPTION_KEY, {}))
                origin = tuple(int(v) for v in attributes.get("origin", origin))  # type: ignore[assignment]
                voxel_unit = attributes.get("voxel_unit", voxel_unit)
    return Volume(
        data=data,
        voxel_size=voxel_size,
        voxel_unit=voxel_unit,
        origin=origin,
        channel_names=channel_names,
        attributes=attributes,
    )
