"""Local volume files in, named channel arrays out (the CLI's input edge).

Readers: TIFF (incl. OME-TIFF and ImageJ hyperstacks, single- or multi-channel), NumPy
``.npy`` (memory-mapped) and Zarr (an array, a group with one array per channel, or an
OME-Zarr image). Every array comes back z, y, x (one channel) or c, z, y, x. Metadata are
taken from the file when it has them: channel names (OME ``Channel/@Name``, OME-Zarr
``omero.channels[].label``, a Zarr group's array names, Zarr attrs ``channel_names``),
voxel size and unit (OME ``PhysicalSize*``, ImageJ ``spacing`` + resolution, Zarr attrs
``voxel_size``/``voxel_unit`` or OME-Zarr ``scale``), and origin (our OME description).

Every problem is a :class:`VolumeInputError` naming the CLI option at fault and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.geometry import normalise_unit
from synapse_pipelines.io.ome_tiff import read_volume

TIFF_SUFFIXES = (".tif", ".tiff")
NPY_SUFFIXES = (".npy",)
SUPPORTED = "TIFF (.tif/.tiff, incl. OME-TIFF), NumPy (.npy) or Zarr (.zarr)"
#: How to give several channels, for the errors about files laid out otherwise.
CHANNEL_LAYOUTS = (
    "give one file per channel (z, y, x, as INPUT or -c NAME=PATH), or one channels-first "
    "c, z, y, x file (.npy, Zarr, or an OME-TIFF / ImageJ hyperstack with a C axis; "
    "numpy.moveaxis(data, -1, 0) puts a last channel axis first)"
)
#: A last axis this short after a long one holds colour samples or channels, not x.
_SAMPLE_AXIS_MAX = 4


class VolumeInputError(SynapsePipelinesError):
    """A local volume file is missing, unreadable or does not fit the others."""

    error_type = "VolumeInputError"


@dataclass
class VolumeFile:
    """One file's array (z,y,x or c,z,y,x) and what its metadata said."""

    data: Any  # numpy array or memmap
    channel_names: list[str] | None = None
    voxel_size: tuple[float, float, float] | None = None
    voxel_unit: str | None = None
    origin: tuple[int, int, int] | None = None


@dataclass
class ChannelSet:
    """Named z, y, x channels of one experiment, all the same shape."""

    channels: dict[str, np.ndarray]
    voxel_size: tuple[float, float, float] | None = None
    voxel_unit: str | None = None
    origin: tuple[int, int, int] | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return next(iter(self.channels.values())).shape if self.channels else ()


def volume_stem(path: Path) -> str:
    """File name without volume suffixes: ``Synapsin647.ome.tif`` -> ``Synapsin647``."""
    name = path.name.rstrip("/")
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".npy", ".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    if name.endswith(NPY_SUFFIXES):
        return "npy"
    if name.endswith(".zarr") or (path.is_dir() and (path / "zarr.json").exists()):
        return "zarr"
    if path.is_dir() and ((path / ".zarray").exists() or (path / ".zgroup").exists()):
        return "zarr"
    return "unknown"


def _read_tiff(path: Path, option: str) -> VolumeFile:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            ij = tif.imagej_metadata
            page = tif.pages[0]
            xres = page.tags.get("XResolution")
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise VolumeInputError(
            f"{path} is not a readable TIFF ({exc})",
            field=option,
            hint=f"pass a {SUPPORTED} volume",
        ) from exc
    vol = read_volume(path)  # OME metadata (voxel size, names, origin) when present
    data = vol.data
    names = list(vol.channel_names) if vol.channel_names else None
    voxel_size = vol.voxel_size
    unit = vol.voxel_unit
    # put the channel axis first, drop singleton time / sample axes
    axes = axes.upper()
    if "S" in axes and data.shape[axes.index("S")] > 1:  # RGB(A): colours are not channels
        raise VolumeInputError(
            f"{path} is an RGB image ({data.shape[axes.index('S')]} colour samples per "
            f"pixel, shape {tuple(data.shape)}); a volume is z, y, x or c, z, y, x",
            field=option,
            hint=f"{CHANNEL_LAYOUTS}; Fiji: Image > Color > Split Channels",
        )
    for ax in "TS":
        if ax in axes and data.shape[axes.index(ax)] == 1:
            data = np.take(data, 0, axis=axes.index(ax))
            axes = axes.replace(ax, "")
    if "C" in axes and axes.index("C") != 0:
        data = np.moveaxis(data, axes.index("C"), 0)
        axes = "C" + axes.replace("C", "")
    if "C" in axes and "Z" not in axes and data.ndim == 3:
        # one plane of several channels: TIFF readers drop the singleton z (CYX)
        data = data[:, None]
        axes = "CZ" + axes[1:]
    if ij and voxel_size is None and "spacing" in ij and xres is not None:
        num, den = xres.value
        if num:
            xy = den / num
            voxel_size = (float(ij["spacing"]), xy, xy)
            unit = normalise_unit(ij.get("unit"))
    return VolumeFile(
        data=data,
        channel_names=names,
        voxel_size=voxel_size,
        voxel_unit=unit,
        origin=vol.origin if vol.attributes else None,
    )


def _read_npy(path: Path, option: str) -> VolumeFile:
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise VolumeInputError(
            f"{path} is not a readable .npy array ({exc})",
            field=option,
            hint="save it with numpy.save (no pickled objects)",
        ) from exc
    return VolumeFile(data=data)


def _zarr_meta(attrs: Mapping[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if "voxel_size" in attrs:
        meta["voxel_size"] = tuple(float(v) for v in attrs["voxel_size"])
    if "voxel_unit" in attrs:
        meta["voxel_unit"] = normalise_unit(attrs["voxel_unit"])
    if "channel_names" in attrs:
        meta["channel_names"] = [str(n) for n in attrs["channel_names"]]
    if "origin" in attrs:
        meta["origin"] = tuple(int(v) for v in attrs["origin"])
    return meta


def _read_zarr(path: Path, option: str) -> VolumeFile:
    # zarr takes ~0.5 s to import and the CLI imports this module on every start: only
    # reading a Zarr input pays for it
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises many types for a bad store
        raise VolumeInputError(
            f"{path} is not a readable Zarr array or group ({type(exc).__name__}: {exc})",
            field=option,
            hint="pass a Zarr v2/v3 array, a group of per-channel arrays, or an OME-Zarr image",
        ) from exc
    attrs = dict(node.attrs)
    meta = _zarr_meta(attrs)
    if isinstance(node, zarr.Array):
        return VolumeFile(data=np.asarray(node), **meta)
    ome = attrs.get("ome", attrs)  # OME-Zarr 0.5 nests under "ome"
    if "multiscales" in ome:
        ms = ome["multiscales"][0]
        ds = ms["datasets"][0]
        arr = np.asarray(node[ds["path"]])
        axes = [a["name"] if isinstance(a, Mapping) else a for a in ms.get("axes", [])]
        axes = [a.lower() for a in axes] or list("czyx"[-arr.ndim :])
        for ax in ("t",):
            if ax in axes and arr.shape[axes.index(ax)] == 1:
                arr = np.take(arr, 0, axis=axes.index(ax))
                axes.remove(ax)
        scale = next(
            (t["scale"] for t in ds.get("coordinateTransformations", []) if "scale" in t),
            None,
        )
        if scale is not None and all(a in axes for a in "zyx"):
            meta.setdefault("voxel_size", tuple(float(scale[axes.index(a)]) for a in "zyx"))
            units = [a.get("unit") for a in ms.get("axes", []) if isinstance(a, Mapping)]
            if any(units):
                meta.setdefault("voxel_unit", normalise_unit(next(u for u in units if u)))
        if "c" in axes:
            arr = np.moveaxis(arr, axes.index("c"), 0)
            labels = [c.get("label") for c in ome.get("omero", {}).get("channels", [])]
            if labels and all(labels):
                meta.setdefault("channel_names", [str(x) for x in labels])
        return VolumeFile(data=arr, **meta)
    keys = sorted(node.array_keys())
    if not keys:
        raise VolumeInputError(
            f"the Zarr group {path} holds no arrays", field=option, hint="pass a Zarr array"
        )
    arrays = [np.asarray(node[k]) for k in keys]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise VolumeInputError(
            f"the arrays of the Zarr group {path} differ in shape: "
            + ", ".join(f"{k}{a.shape}" for k, a in zip(keys, arrays, strict=True)),
            field=option,
            hint="put one z, y, x array per channel, all cut from the same box",
        )
    meta.setdefault("channel_names", keys)
    return VolumeFile(data=np.stack(arrays), **meta)


def read_volume_file(path: str | Path, *, option: str = "input") -> VolumeFile:
    """Read one local volume file (any supported format) without interpreting channels."""
    path = Path(path)
    if not path.exists():
        raise VolumeInputError(
            f"no such file: {path}", field=option, hint="check the path (relative to here)"
        )
    kind = _kind(path)
    if kind == "tiff":
        vf = _read_tiff(path, option)
    elif kind == "npy":
        vf = _read_npy(path, option)
    elif kind == "zarr":
        vf = _read_zarr(path, option)
    else:
        raise VolumeInputError(
            f"cannot tell the format of {path}",
            field=option,
            hint=f"pass a {SUPPORTED} file (the suffix tells the format)",
        )
    if vf.data.ndim == 2:  # one plane (y, x): a volume of one section, detected in 2-D
        vf = replace(vf, data=vf.data[np.newaxis])
    shape = tuple(vf.data.shape)
    if vf.data.ndim in (3, 4) and 1 < shape[-1] <= _SAMPLE_AXIS_MAX < shape[-2]:
        # (y, x, 3) or (z, y, x, c): read as is, x would be the colours or channels
        raise VolumeInputError(
            f"{path} looks channels-last: shape {shape} ends in an axis of {shape[-1]} "
            "(colour samples or channels, not x); a volume is z, y, x or c, z, y, x",
            field=option,
            hint=CHANNEL_LAYOUTS,
        )
    if vf.data.ndim not in (3, 4):
        raise VolumeInputError(
            f"{path} holds a {vf.data.ndim}-D array of shape {tuple(vf.data.shape)}; "
            "a volume is z, y, x (or c, z, y, x for several channels; y, x for one plane)",
            field=option,
            hint="pass a 3-D volume or one plane per channel, or a 4-D channels-first file "
            "with names",
        )
    dtype = np.dtype(vf.data.dtype)
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise VolumeInputError(
            f"{path} has unsupported data type {dtype}",
            field=option,
            # other numbers pass here: detect reads them as grey levels (integer_intensities)
            hint="pass the channel's uint8 or uint16 intensities (other integer and float "
            "data are read as grey levels; bool and complex are not intensities)",
        )
    return vf


def parse_named_path(text: str, *, option: str) -> tuple[str, Path]:
    """``NAME=PATH`` -> (name, path)."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise VolumeInputError(
            f"expected NAME=PATH, got {text!r}",
            field=option,
            hint=f"write e.g. {option} Synapsin647=synapsin.tif",
        )
    return name.strip(), Path(path.strip())


def load_channels(
    inputs: Sequence[str | Path] = (),
    named: Sequence[str] = (),
    *,
    channel_names: Sequence[str] | None = None,
) -> ChannelSet:
    """Collect named z, y, x channels from multi-channel files and ``NAME=PATH`` options.

    ``inputs``: files; a 3-D file is one channel named after the file (``PSD95_488.tif``
    -> ``PSD95_488``), a 4-D file is channels-first and its names come from the file or
    from ``channel_names`` (``--channel-names``). ``named``: ``NAME=PATH`` strings for
    3-D files. All channels must have one shape; metadata come from the first file that
    has them.
    """
    chans: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    files: list[VolumeFile] = []

    def add(name: str, data: Any, source: str, option: str) -> None:
        if name in chans:
            raise VolumeInputError(
                f"channel {name!r} is given twice ({sources[name]} and {source})",
                field=option,
                hint="give each channel once, or rename one with --channel NAME=PATH",
            )
        chans[name] = data
        sources[name] = source

    if channel_names is not None and sum(1 for _ in inputs) != 1:
        raise VolumeInputError(
            "--channel-names names the channels of one multi-channel file",
            field="--channel-names",
            hint="pass exactly one multi-channel INPUT file with --channel-names",
        )
    for raw in inputs:
        path = Path(raw)
        vf = read_volume_file(path, option="INPUT")
        files.append(vf)
        if vf.data.ndim == 3:
            name = channel_names[0] if channel_names else volume_stem(path)
            if channel_names is not None and len(channel_names) != 1:
                raise VolumeInputError(
                    f"{path} holds one channel but --channel-names lists {len(channel_names)}",
                    field="--channel-names",
                    hint="give one name per channel of the file",
                )
            add(name, vf.data, str(path), "INPUT")
            continue
        names = list(channel_names) if channel_names is not None else vf.channel_names
        if names is None:
            raise VolumeInputError(
                f"{path} holds {vf.data.shape[0]} channels but no channel names",
                field="--channel-names",
                hint="name them in order, e.g. --channel-names Synapsin647,PSD95_488,...",
            )
        if len(names) != vf.data.shape[0]:
            raise VolumeInputError(
                f"{path} holds {vf.data.shape[0]} channels but {len(names)} names were given",
                field="--channel-names",
                hint="give exactly one name per channel, in file order",
            )
        for i, name in enumerate(names):
            add(name, vf.data[i], f"{path}[{i}]", "INPUT")
    for text in named:
        name, path = parse_named_path(text, option="--channel")
        vf = read_volume_file(path, option="--channel")
        files.append(vf)
        data = vf.data
        if data.ndim == 4:
            if data.shape[0] != 1:
                raise VolumeInputError(
                    f"{path} holds {data.shape[0]} channels; --channel takes one",
                    field="--channel",
                    hint="pass a multi-channel file as INPUT (with --channel-names if needed)",
                )
            data = data[0]
        add(name, data, str(path), "--channel")
    if not chans:
        raise VolumeInputError(
            "no input volumes given",
            field="INPUT",
            hint="pass a multi-channel file or --channel NAME=PATH (at least the synapsin "
            "and PSD channels)",
        )
    shapes = {name: tuple(a.shape) for name, a in chans.items()}
    if len(set(shapes.values())) != 1:
        listing = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise VolumeInputError(
            f"the channels differ in shape: {listing}",
            field=" / ".join(o for o, given in (("INPUT", inputs), ("--channel", named)) if given),
            hint="cut every channel from the same z, y, x box",
        )
    if 0 in next(iter(shapes.values())):
        raise VolumeInputError(
            f"the volume is empty (shape {next(iter(shapes.values()))})",
            field="INPUT",
            hint="pass a volume with at least one voxel",
        )

    def first(attr: str) -> Any:
        return next((getattr(f, attr) for f in files if getattr(f, attr) is not None), None)

    return ChannelSet(
        channels=chans,
        voxel_size=first("voxel_size"),
        voxel_unit=first("voxel_unit"),
        origin=first("origin"),
        sources=sources,
    )


#: The largest grey level of the integer type other data are read into.
_UINT16_MAX = 65535


def integer_intensities(name: str, data: Any) -> tuple[np.ndarray, str | None]:
    """A channel as the detectors take it (uint8 or uint16 grey levels), and a note when it
    was converted.

    The detectors count whole grey levels (exact integer band-pass, fixed histogram bins).
    uint8 / uint16 pass unchanged. Other numbers (float from deconvolution or processing,
    signed or 32-bit integers) whose values are whole grey levels within 0..65535 are read
    as such, exactly; anything else is rescaled linearly, minimum to 0 and maximum to
    65535 (uint16). PAIRS' thresholds are statistics of each section, which a linear map
    leaves in place (an offset exactly, a gain to within a histogram bin). NaN, infinity,
    booleans and complex numbers are refused with the fix.
    """
    arr = np.asarray(data)
    if arr.dtype in (np.uint8, np.uint16):
        return arr, None
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise VolumeInputError(
            f"channel {name!r} holds {arr.dtype} values, not intensities",
            field="INPUT",
            hint="pass the channel's grey levels (uint8 or uint16; other numbers are rescaled)",
        )
    if arr.size == 0:
        return arr.astype(np.uint16), None
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise VolumeInputError(
            f"channel {name!r} holds {bad} NaN or infinite values",
            field="INPUT",
            hint="replace them (e.g. numpy.nan_to_num) or crop them out before detecting",
        )
    lo, hi = float(arr.min()), float(arr.max())
    whole = np.issubdtype(arr.dtype, np.integer) or bool(np.all(arr == np.round(arr)))
    if whole and lo >= 0 and hi <= _UINT16_MAX:
        out = arr.astype(np.uint8 if hi <= 255 else np.uint16)
        return out, f"channel {name!r}: {arr.dtype} whole grey levels read as {out.dtype}"
    scale = _UINT16_MAX / (hi - lo) if hi > lo else 0.0
    out = np.rint((arr.astype(np.float64) - lo) * scale).astype(np.uint16)
    return out, (
        f"channel {name!r}: {arr.dtype} values {lo:.6g}..{hi:.6g} rescaled linearly to "
        "0..65535 (uint16), the grey levels the detector counts"
    )
