"""``synapse-pipelines view``: a local Neuroglancer over a results folder, offline.

Owns :class:`LocalViewer`: a CORS static file server over the results folder (the
OME-Zarr volumes are read by the browser as ``zarr3://`` sources) and the Neuroglancer
viewer server of the ``neuroglancer`` package (it ships the built client, so nothing is
fetched from the internet), set to :func:`~synapse_pipelines.io.neuroglancer_state.
neuroglancer_state`. Both listen on ``bind_address`` (127.0.0.1 by default) on free ports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import neuroglancer
import neuroglancer.static_file_server

from synapse_pipelines.io.neuroglancer_state import (
    ViewerLayout,
    neuroglancer_state,
    viewer_layout,
)


class LocalViewer:
    """A running viewer of one results folder (stop it with :meth:`stop` or ``with``)."""

    def __init__(self, folder: str | Path, *, bind_address: str = "127.0.0.1"):
        self.layout: ViewerLayout = viewer_layout(folder)
        self._files = neuroglancer.static_file_server.StaticFileServer(
            static_dir=str(Path(folder).resolve()), bind_address=bind_address, daemon=True
        )
        neuroglancer.set_server_bind_address(bind_address)
        self.viewer = neuroglancer.Viewer()
        self.state: dict[str, Any] = neuroglancer_state(self.layout, self._files.url)
        self.viewer.set_state(self.state)

    @property
    def url(self) -> str:
        """The viewer's address (open it in a browser on this machine)."""
        return str(self.viewer.get_viewer_url())

    @property
    def data_url(self) -> str:
        """Where the results folder is served (``zarr3://<data_url>/<volume>``)."""
        return str(self._files.url)

    def stop(self) -> None:
        self._files.stop()
        neuroglancer.stop()

    def __enter__(self) -> LocalViewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
