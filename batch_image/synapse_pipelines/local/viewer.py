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
import neuroglancer.server
import neuroglancer.static_file_server
import tornado.web

from synapse_pipelines.io.neuroglancer_state import (
    ViewerLayout,
    neuroglancer_state,
    viewer_layout,
)


class _NoFavicon(tornado.web.RequestHandler):
    """``/favicon.ico`` answered with 204: a browser asks every page's server for one, and
    Neuroglancer's server has none, so each page load logged a 404 console error."""

    def get(self) -> None:
        self.set_status(204)


def _serve_no_favicon() -> None:
    # Neuroglancer's server (started by the Viewer) has no icon route; before any page
    # loads, add one to its tornado application (a list append, no request in flight yet).
    server = neuroglancer.server.global_server
    if server is not None and not getattr(server, "_synapse_pipelines_favicon", False):
        server.app.add_handlers(r".*", [(r"/favicon\.ico", _NoFavicon)])
        server._synapse_pipelines_favicon = True


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
        _serve_no_favicon()

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
