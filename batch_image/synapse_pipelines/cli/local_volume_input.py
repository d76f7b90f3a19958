"""The volume options ``detect`` and ``tune`` share: files, channels, voxel size, pipeline.

Both commands read local volume files the same way, pick the synapsin / PSD-95 pair by the
request's channel rules (``core.channel_selection``) and resolve the voxel size the detector
measures in. Parsing the options (:func:`parse_volume_options`, :func:`resolve_pipeline`)
runs before any file is read, so a typo fails at once; :func:`read_local_volumes` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from synapse_pipelines.core import pipelines
from synapse_pipelines.core.channel_selection import ChannelSelection, select_channels
from synapse_pipelines.core.errors import ChannelSelectionError, RequestValidationError
from synapse_pipelines.core.geometry import (
    PLAUSIBLE_VOXEL_NM,
    implausible_voxel_size,
    normalise_unit,
    parse_zyx,
    voxel_size_nanometers,
)
from synapse_pipelines.io.volumes import (
    ChannelSet,
    VolumeInputError,
    integer_intensities,
    load_channels,
)

# -- the options, declared once for every command that reads local volumes
ChannelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--channel",
        "-c",
        help="A channel as NAME=PATH (a 3-D TIFF, .npy or Zarr). Repeat for more.",
        show_default=False,
    ),
]
ChannelNamesOption = Annotated[
    str | None,
    typer.Option(help="Names of a multi-channel INPUT's channels, in order, comma separated."),
]
PresynapticOption = Annotated[
    str | None,
    typer.Option(help="Presynaptic channel (default: the one whose name contains 'synapsin')."),
]
PostsynapticOption = Annotated[
    str | None,
    typer.Option(help="Postsynaptic channel (default: the one whose name contains 'psd')."),
]
VoxelSizeOption = Annotated[
    str | None,
    typer.Option(help="Voxel size z,y,x (default: from the file's metadata, else 1,1,1)."),
]
VoxelUnitOption = Annotated[
    str | None,
    typer.Option(
        help="Unit of the voxel size: nanometers, micrometers or millimeters (default: "
        "the file's unit when the size comes from the file, else nanometers)."
    ),
]
OriginOption = Annotated[
    str | None,
    typer.Option(help="Global z,y,x voxel of the volume's first voxel (default: 0,0,0)."),
]
ResolutionOption = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Detect at resolution level K: the channels averaged over 2**K x 2**K pixels "
        "in-plane, as BOSS's level K (default: the input's grid, or the first coarser one "
        "the pipeline runs at). Labels come back on the input's voxels.",
    ),
]


@dataclass(frozen=True)
class _ChannelChoice:
    """The two fields of a request that :func:`.channel_selection.select_channels` reads."""

    presynaptic_channel: str | None
    postsynaptic_channel: str | None


@dataclass(frozen=True)
class VolumeOptions:
    """The parsed options, before any file is read."""

    channel_names: list[str] | None
    voxel_size: tuple[float, float, float] | None  # --voxel-size, as given
    voxel_unit: str | None  # --voxel-unit, normalised
    origin: tuple[int, int, int] | None
    presynaptic_channel: str | None
    postsynaptic_channel: str | None


@dataclass(frozen=True)
class LocalVolumes:
    """The files read, the pair chosen and the voxel size resolved."""

    channels: ChannelSet
    selection: ChannelSelection
    voxel_size: tuple[float, float, float]  # in ``voxel_unit``
    voxel_unit: str  # "pixel" when neither the files nor the options give a size
    voxel_size_nm: tuple[float, float, float] | None  # None: no physical size known
    origin: tuple[int, int, int]
    #: a sentence when the voxel size looks like a unit mistake (said before the run)
    unit_warning: str | None
    #: the voxel size came from neither the files nor --voxel-size
    voxel_size_missing: bool
    #: channels read into grey levels from other number types (io.volumes.integer_intensities)
    conversions: tuple[str, ...] = ()


def _as_flags(text: str | None) -> str | None:
    """A channel-selection message with the request's field names as the CLI's options."""
    if text is None:
        return None
    for name in ("presynaptic_channel", "postsynaptic_channel"):
        text = text.replace(name, "--" + name.replace("_", "-"))
    return text


def parse_params(items: Sequence[str]) -> dict[str, int | float]:
    """``-p KEY=NUMBER`` options as a dict (a bad item names --param and the form)."""
    params: dict[str, int | float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            number: int | float = int(value)
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
        if not sep or not key.strip() or not np.isfinite(number):
            raise VolumeInputError(
                f"expected KEY=NUMBER, got {item!r}",
                field="--param",
                hint="write e.g. --param seed_level=1.2 (detect --help lists the parameters)",
            )
        params[key.strip()] = number
    return params


def resolve_pipeline(name: str, params: dict[str, int | float]) -> tuple[Any, dict]:
    """The registered pipeline and its checked parameters (defaults filled in)."""

    pipeline = pipelines.get_pipeline(name)
    try:
        return pipeline, pipelines.validate_parameters(pipeline, params)
    except RequestValidationError as exc:
        listing = "; ".join(
            f"{f.removeprefix('pipeline_parameters.')}: {m}" for f, m in exc.problems
        )
        raise VolumeInputError(
            f"bad parameter for pipeline {name!r}: {listing}",
            field="--param",
            hint="detect --help lists every pipeline's parameters",
        ) from exc


def parse_voxel_unit(text: str | None) -> str | None:
    """``--voxel-unit`` normalised (``nm`` -> ``nanometers``), None when not given."""
    if text is None:
        return None
    unit = normalise_unit(text)
    if unit is None:
        raise VolumeInputError(
            f"unknown unit {text!r}",
            field="--voxel-unit",
            hint="use nanometers, micrometers or millimeters",
        )
    return unit


def parse_volume_options(
    *,
    channel_names: str | None,
    voxel_size: str | None,
    voxel_unit: str | None,
    origin: str | None,
    presynaptic_channel: str | None,
    postsynaptic_channel: str | None,
) -> VolumeOptions:
    """Check the options' syntax and units (a sub-nanometre --voxel-size is refused)."""
    names = [n.strip() for n in channel_names.split(",")] if channel_names else None
    vs = parse_zyx(voxel_size, field="--voxel-size", kind=float) if voxel_size else None
    org = parse_zyx(origin, field="--origin", allow_zero=True) if origin else None
    unit_opt = parse_voxel_unit(voxel_unit)
    if vs is not None:
        refuse_sub_nanometre_voxels(vs, unit_opt or "nanometers", source=None)
    return VolumeOptions(
        channel_names=names,
        voxel_size=vs,  # type: ignore[arg-type]
        voxel_unit=unit_opt,
        origin=org,  # type: ignore[arg-type]
        presynaptic_channel=presynaptic_channel,
        postsynaptic_channel=postsynaptic_channel,
    )


def read_local_volumes(
    options: VolumeOptions, inputs: Sequence[Path], channel: Sequence[str]
) -> LocalVolumes:
    """Read the files, choose the presynaptic / postsynaptic pair, resolve the voxel size."""
    chans = load_channels(list(inputs), list(channel), channel_names=options.channel_names)
    conversions = []
    for name, data in list(chans.channels.items()):
        chans.channels[name], note = integer_intensities(name, data)
        conversions += [note] if note else []
    try:
        selection = select_channels(
            list(chans.channels),
            _ChannelChoice(options.presynaptic_channel, options.postsynaptic_channel),
            source="the input",
        )
    except ChannelSelectionError as exc:  # the request's field names, as this CLI's flags
        raise ChannelSelectionError(
            _as_flags(exc.message), field=_as_flags(exc.field), hint=_as_flags(exc.hint)
        ) from exc
    vs = options.voxel_size
    voxel = vs or chans.voxel_size or (1.0, 1.0, 1.0)
    missing = vs is None and chans.voxel_size is None
    unit = (
        options.voxel_unit
        or (chans.voxel_unit if vs is None else None)
        or ("pixel" if missing else "nanometers")
    )
    if vs is None and chans.voxel_size is not None:
        refuse_sub_nanometre_voxels(voxel, unit, source=first_source(chans.sources))
    voxel_nm = voxel_size_nanometers(voxel, unit)
    return LocalVolumes(
        channels=chans,
        selection=selection,
        voxel_size=tuple(voxel),  # type: ignore[arg-type]
        voxel_unit=unit,
        voxel_size_nm=voxel_nm,
        origin=options.origin or chans.origin or (0, 0, 0),
        unit_warning=implausible_voxel_size(voxel_nm),
        voxel_size_missing=missing,
        conversions=tuple(conversions),
    )


def refuse_sub_nanometre_voxels(
    voxel: Sequence[float], unit: str | None, *, source: str | None
) -> None:
    """Refuse a voxel edge below :data:`PLAUSIBLE_VOXEL_NM`'s 1 nm (no light microscope
    samples that finely): almost always micrometres read as nanometres, which would
    otherwise fail deep in a detector (a smoothing sigma of thousands of voxels)."""
    nm = voxel_size_nanometers(tuple(voxel), unit)  # type: ignore[arg-type]
    low = PLAUSIBLE_VOXEL_NM[0]
    if nm is None or min(nm) >= low:
        return
    shown = f"{','.join(f'{v:g}' for v in voxel)} {unit}"
    where = f"the voxel size {source} records" if source else "--voxel-size"
    if source is not None:
        hint = "override it: pass --voxel-size z,y,x with --voxel-unit (e.g. 70,100,100 nm)"
    elif unit == "nanometers":
        hint = "these look like micrometres: add --voxel-unit um (or give 70,100,100 in nm)"
    else:
        hint = "check --voxel-size and --voxel-unit (e.g. 70,100,100 nanometers)"
    raise VolumeInputError(
        f"{where} ({shown} z,y,x) has an edge below {low:g} nm, finer than any microscope",
        field="--voxel-size",
        hint=hint,
    )


def first_source(sources: dict[str, str]) -> str:
    """The file the channel set's metadata came from (the first one), without ``[i]``."""
    return next(iter(sources.values()), "the input").split("[")[0]
