"""``synapse-pipelines view RESULTS_DIR``: the results in a local Neuroglancer.

Parses options, starts :class:`~synapse_pipelines.local.viewer.LocalViewer` (the
``neuroglancer`` package of the [local] extra), prints its URL and what it shows, and keeps
serving until interrupted (or for ``--seconds``).
"""

from __future__ import annotations

import time
import webbrowser
from pathlib import Path

import typer

from synapse_pipelines.cli.terminal_output import out_console, summary_table


def view(
    results: Path = typer.Argument(
        ...,
        help="Results folder of `detect`, `demo` or `run --local` (it holds manifest.json).",
        exists=True,
        file_okay=False,
    ),
    bind: str = typer.Option(
        "127.0.0.1", "--bind", help="Address the viewer and the data server listen on."
    ),
    open_browser: bool = typer.Option(
        False, "--open", help="Also open the viewer in this machine's web browser."
    ),
    seconds: float | None = typer.Option(
        None, "--seconds", min=0, help="Stop after this many seconds (default: serve until Ctrl+C)."
    ),
) -> None:
    """Open the results in a local Neuroglancer (works offline) and print its URL."""
    # local/* is imported when the command runs: neuroglancer is of the [local] extra, and
    # the Batch image (which loads this module too) does not install it
    from synapse_pipelines.local.viewer import LocalViewer

    viewer = LocalViewer(results, bind_address=bind)
    layout = viewer.layout
    shown = [i.name for i in layout.images if i.visible]
    hidden = [i.name for i in layout.images if not i.visible]
    centre = ",".join(f"{v:.2f}" for v in layout.centre)  # synapses.csv's coordinates
    rows = [
        ("viewer", viewer.url),
        ("data", viewer.data_url),
        ("shown", ", ".join(shown) or "-"),
        ("hidden", ", ".join(hidden) or "-"),
        ("synapses", f"{layout.n_synapses} (segmentation layer 'synapse ids')"),
        (
            "centred on",
            f"synapse {layout.centre_synapse} at z,y,x {centre}"
            if layout.centre_synapse is not None
            else f"the box centre z,y,x {centre}",
        ),
        *[("note", note) for note in layout.notes],
    ]
    out_console().print(summary_table("synapse-pipelines view", rows))
    typer.echo(viewer.url)  # alone on its line: scripts read it
    if open_browser:
        webbrowser.open(viewer.url)
    try:
        if seconds is not None:
            time.sleep(seconds)
        else:
            typer.echo("serving; press Ctrl+C to stop", err=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()


def register(app: typer.Typer) -> None:
    """Add ``view`` to the root app."""
    app.command("view")(view)
