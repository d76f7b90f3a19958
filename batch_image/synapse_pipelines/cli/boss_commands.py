"""``synapse-pipelines boss ...``: the local BOSS-compatible server and small admin commands.

- ``boss serve --data-dir DIR --port N [--token T] [--host 127.0.0.1]``: run the server.
- ``boss load``: create an experiment from local volumes or the synthetic generator.
- ``boss ls [COLLECTION [EXPERIMENT]]``: list collections, experiments, channels.
- ``boss cutout COLLECTION EXPERIMENT --z-range --y-range --x-range --out FILE``: a region
  of the image channels as one OME-TIFF with its voxel size and global origin, for
  ``detect``, ``tune`` and ``evaluate`` on a region someone annotated.

The token comes from ``--token`` or the ``BOSS_TOKEN`` environment variable; it is never
printed. ``serve`` without a token generates one and stores it in ``DIR/token`` (mode 600).
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.geometry import Box, parse_zyx, voxel_size_text
from synapse_pipelines.io.ome_tiff import OutputError, write_volume
from synapse_pipelines.io.volumes import load_channels, parse_named_path, read_volume_file
from synapse_pipelines.science.synthetic import make_experiment

boss_app = typer.Typer(
    name="boss",
    help="Local BOSS-compatible server and BOSS admin commands.",
    no_args_is_help=True,
)

TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="BOSS_TOKEN",
        help="BOSS API token (default: $BOSS_TOKEN). Never printed.",
        show_default=False,
    ),
]
HostOption = Annotated[
    str, typer.Option("--host", help="BOSS host[:port], or http(s)://host[:port].")
]


def _split_host(host: str, protocol: str | None) -> tuple[str, str]:
    if "://" in host:
        scheme, _, rest = host.partition("://")
        return rest.rstrip("/"), scheme
    return host, protocol or ("http" if host.startswith(("127.", "localhost")) else "https")


def _need_token(token: str | None) -> str:
    if not token:
        raise SynapsePipelinesError(
            "no BOSS token", field="--token", hint="pass --token or set BOSS_TOKEN"
        )
    return token


@boss_app.command("serve")
def serve(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where metadata and voxels are stored.")
    ],
    port: Annotated[int, typer.Option("--port", help="TCP port (0 picks a free one).")] = 8700,
    token: TokenOption = None,
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind; keep 127.0.0.1 unless needed.")
    ] = "127.0.0.1",
    threads: Annotated[int, typer.Option("--threads", help="Worker threads.")] = 8,
    quiet: Annotated[bool, typer.Option("--quiet", help="No access log on stderr.")] = False,
) -> None:
    """Run the local BOSS-compatible server (intern's v1 API) until Ctrl-C."""
    # local/* is imported when the command runs: it needs waitress, of the [local] extra, and
    # the Batch image (which loads this module too) installs none
    from synapse_pipelines.local.boss_process import LocalBossServer, ready_message

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # waitress's own INFO lines ("Serving on ...") duplicate ours
    logging.getLogger("waitress").setLevel(logging.WARNING)

    data_dir.mkdir(parents=True, exist_ok=True)
    if not token:
        token_file = data_dir / "token"
        if token_file.exists():
            token = token_file.read_text().strip()
        else:
            token = secrets.token_urlsafe(24)
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(token + "\n")
        typer.echo(f"no --token/BOSS_TOKEN given: using the token stored in {token_file}", err=True)

    server = LocalBossServer(
        data_dir, token, port=port, bind=host, threads=threads, access_log=True
    )
    typer.echo(ready_message(data_dir, server.url), err=True)
    server.serve_forever()


@boss_app.command("load")
def load(
    collection: Annotated[str, typer.Option("--collection", help="Collection to create/use.")],
    experiment: Annotated[str, typer.Option("--experiment", help="Experiment to create.")],
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(help="Volume files (TIFF/OME-TIFF, .npy, .zarr); 3-D = one channel."),
    ] = None,
    channel: Annotated[
        list[str] | None, typer.Option("--channel", help="NAME=PATH, repeatable.")
    ] = None,
    annotation: Annotated[
        list[str] | None,
        typer.Option("--annotation", help="NAME=PATH of a label volume (uint64 annotation)."),
    ] = None,
    synthetic: Annotated[
        str | None,
        typer.Option(
            "--synthetic", help="Load the seeded synthetic experiment of shape z,y,x instead."
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --synthetic.")] = 0,
    voxel_size: Annotated[
        str | None, typer.Option("--voxel-size", help="z,y,x (default: from the files, or 1).")
    ] = None,
    voxel_unit: Annotated[str | None, typer.Option("--voxel-unit")] = None,
    host: HostOption = "127.0.0.1:8700",
    protocol: Annotated[str | None, typer.Option("--protocol", help="http or https.")] = None,
    token: TokenOption = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace channels that already exist in the experiment (refused without it).",
        ),
    ] = False,
) -> None:
    """Create COLLECTION/EXPERIMENT from local volumes or the synthetic generator, or add
    channels to an existing experiment (volumes of its frame's shape)."""
    # intern takes ~0.5 s to import: only the commands that talk to BOSS load it
    from synapse_pipelines.io.boss_client import BossClient

    # local/* is imported when the command runs: the Batch image loads this module too
    from synapse_pipelines.local.boss_loading import load_experiment

    annotations: dict[str, np.ndarray] = {}
    if synthetic:
        exp = make_experiment(parse_zyx(synthetic, field="--synthetic"), seed=seed)
        volumes = {k: np.asarray(v) for k, v in exp.channels.items()}
        annotations["annotation"] = np.asarray(exp.annotation)
        size, unit = tuple(exp.voxel_size), exp.voxel_unit
    else:
        if not inputs and not channel:
            raise SynapsePipelinesError(
                "nothing to load",
                field="INPUT",
                hint="give volume files, --channel NAME=PATH, or --synthetic z,y,x",
            )
        chans = load_channels(inputs or [], channel or [])
        volumes = {k: np.asarray(v) for k, v in chans.channels.items()}
        size, unit = chans.voxel_size or (1.0, 1.0, 1.0), chans.voxel_unit or "nanometers"
        for text in annotation or []:
            name, path = parse_named_path(text, option="--annotation")
            annotations[name] = np.asarray(read_volume_file(path, option="--annotation").data)
    if voxel_size:
        size = parse_zyx(voxel_size, field="--voxel-size", kind=float)
    if voxel_unit:
        unit = voxel_unit
    bare_host, proto = _split_host(host, protocol)
    client = BossClient(bare_host, proto, _need_token(token))
    report = load_experiment(
        client,
        collection,
        experiment,
        volumes,
        annotations=annotations,
        voxel_size=size,  # type: ignore[arg-type]
        voxel_unit=unit,
        overwrite=overwrite,
    )
    frame, box = report.frame, report.box
    names = ", ".join(
        f"{name} (replaced)" if name in report.replaced else name
        for name in [*volumes, *annotations]
    )
    typer.echo(
        f"loaded {collection}/{experiment}: wrote {box} ({' x '.join(map(str, box.shape))} "
        f"voxels) of frame {frame.extent}, voxel {frame.voxel_size} {frame.voxel_unit}: {names}"
    )


@boss_app.command("ls")
def ls(
    collection: Annotated[str | None, typer.Argument(help="List its experiments.")] = None,
    experiment: Annotated[str | None, typer.Argument(help="List its channels and frame.")] = None,
    host: HostOption = "127.0.0.1:8700",
    protocol: Annotated[str | None, typer.Option("--protocol", help="http or https.")] = None,
    token: TokenOption = None,
) -> None:
    """List collections, a collection's experiments, or an experiment's channels."""
    # intern takes ~0.5 s to import: only the commands that talk to BOSS load it
    from synapse_pipelines.io.boss_client import BossClient

    bare_host, proto = _split_host(host, protocol)
    client = BossClient(bare_host, proto, _need_token(token))
    if collection is None:
        for name in client.list_collections():
            typer.echo(name)
    elif experiment is None:
        for name in client.list_experiments(collection):
            typer.echo(name)
    else:
        method, frames = client.resolution_levels(collection, experiment)
        frame = frames[0]
        typer.echo(
            f"# frame {frame.name}: {frame.extent}, voxel (z,y,x) {frame.voxel_size} "
            f"{frame.voxel_unit}"
        )
        # what a request's `resolution` may name, and the ranges it counts at each level
        for level, at in enumerate(frames[1:], start=1):
            shown = voxel_size_text(at.voxel_size)
            typer.echo(f"# resolution {level} ({method}): {at.extent}, voxel {shown}")
        typer.echo("# channel\tdatatype\ttype\tdownsample status (levels above 0)")
        for name in client.list_channels(collection, experiment):
            info = client.channel(collection, experiment, name)
            status = _status(client, collection, experiment, name)
            typer.echo(f"{name}\t{info.datatype}\t{info.type}\t{status}")


#: A cutout is a region to annotate, tune or inspect, held in memory whole: beyond this the
#: region is an experiment, which runs as a request (blockwise) instead.
CUTOUT_MAX_BYTES = 4 * 2**30


def _voxel_range(text: str, option: str) -> tuple[int, int]:
    start, sep, stop = text.partition(":")
    try:
        pair = (int(start), int(stop))
    except ValueError:
        pair = (0, -1)
    if not sep or pair[0] < 0 or pair[1] <= pair[0]:
        raise SynapsePipelinesError(
            f"expected START:STOP voxels with 0 <= START < STOP, got {text!r}",
            field=option,
            hint=f"e.g. {option} 0:256 (STOP excluded, as in BOSS cutouts)",
        )
    return pair


@boss_app.command("cutout")
def cutout(
    collection: Annotated[str, typer.Argument(help="Collection.")],
    experiment: Annotated[str, typer.Argument(help="Experiment.")],
    z_range: Annotated[str, typer.Option("--z-range", help="START:STOP sections.")],
    y_range: Annotated[str, typer.Option("--y-range", help="START:STOP rows.")],
    x_range: Annotated[str, typer.Option("--x-range", help="START:STOP columns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="OME-TIFF to write.")],
    channels: Annotated[
        str | None,
        typer.Option(
            help="Image channels, comma separated (default: every image channel), or one "
            "annotation channel alone."
        ),
    ] = None,
    resolution: Annotated[
        int, typer.Option(help="Resolution level; ranges count that level's voxels.")
    ] = 0,
    host: HostOption = "127.0.0.1:8700",
    protocol: Annotated[str | None, typer.Option("--protocol", help="http or https.")] = None,
    token: TokenOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Write a region of an experiment's image channels as one OME-TIFF (voxel size and
    global origin recorded), e.g. the crop someone annotated, for tune and evaluate; or,
    with one annotation channel as --channels, that region's labels (evaluate's --truth).

    Example:

      synapse-pipelines boss cutout collman collman15v2 --z-range 0:27 --y-range 2048:2560
      --x-range 2048:2560 --resolution 5 --channels Synapsin647,PSD95_488 -o crop.ome.tif
    """
    # intern takes ~0.5 s to import: only the commands that talk to BOSS load it
    from synapse_pipelines.io.boss_client import BossClient, image_channels

    box = Box.from_ranges(
        _voxel_range(z_range, "--z-range"),
        _voxel_range(y_range, "--y-range"),
        _voxel_range(x_range, "--x-range"),
    )
    if out.exists() and not overwrite:
        raise OutputError(
            f"{out} already exists",
            field="--out",
            hint="choose another path, or pass --overwrite to replace it",
        )
    bare_host, proto = _split_host(host, protocol)
    with BossClient(bare_host, proto, _need_token(token)) as client:
        images = image_channels(client, collection, experiment)
        names = [n.strip() for n in channels.split(",") if n.strip()] if channels else images
        every = client.list_channels(collection, experiment)
        # one annotation channel alone is a label volume (the truth of an annotated region)
        labels = len(names) == 1 and names[0] in every and names[0] not in images
        unknown = [] if labels else [n for n in names if n not in images]
        if unknown or not names:
            raise SynapsePipelinesError(
                f"not image channels of {collection}/{experiment}: "
                f"{', '.join(unknown) or '(none given)'}; its image channels: "
                f"{', '.join(images) or 'none'}",
                field="--channels",
                hint="name image channels, or one annotation channel alone (a label volume)",
            )
        frame = client.validate_box(collection, experiment, box, resolution)
        wide = np.result_type(
            *(np.dtype(client.channel(collection, experiment, n).datatype) for n in names)
        )
        size = box.size * len(names) * wide.itemsize
        if size > CUTOUT_MAX_BYTES:
            raise SynapsePipelinesError(
                f"the cutout would hold {size / 2**30:.1f} GiB ({box.shape} voxels x "
                f"{len(names)} channels), more than {CUTOUT_MAX_BYTES / 2**30:g} GiB",
                field="--x-range",
                hint="cut a smaller region (a crop to annotate or tune on), or run the whole "
                "experiment as a request (submit / run --local)",
            )
        data = client.pull_channels(collection, experiment, names, box, resolution)
    write_volume(
        out,
        data[names[0]] if labels else np.stack([data[n].astype(wide, copy=False) for n in names]),
        voxel_size=frame.voxel_size,
        voxel_unit=frame.voxel_unit,
        origin=box.start,
        channel_names=None if labels else names,
        attributes={"source": f"bossdb://{collection}/{experiment}", "resolution": resolution},
        overwrite=overwrite,
    )
    typer.echo(
        f"wrote {out}: {collection}/{experiment} {box} at resolution {resolution} "
        f"({' x '.join(map(str, box.shape))} voxels of {voxel_size_text(frame.voxel_size)} "
        f"{frame.voxel_unit}), channels {', '.join(names)}"
    )


def _status(client: Any, collection: str, experiment: str, channel: str) -> str:
    """The channel's downsample status, or "-" on a BOSS without the service."""
    # imports intern (~0.5 s): only the commands that talk to BOSS load it, as `ls` does
    from synapse_pipelines.io.boss_downsample import DownsampleNotSupported, downsample_status

    try:
        return downsample_status(client, collection, experiment, channel).status
    except DownsampleNotSupported:
        return "-"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(boss_app, name="boss")
