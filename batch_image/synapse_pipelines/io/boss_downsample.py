"""BOSS's downsample service: build a channel's resolution hierarchy so it is viewable at
every zoom. intern 1.4.2 has no call for it; this module speaks it over intern's own session.

The service, as jhuapl-boss/boss defines it (``django/boss/urls.py``, ``bossspatialdb/
urls_downsample.py``, ``views.Downsample``, ``downsample.py``)::

    GET    /v1/downsample/<collection>/<experiment>/<channel>/[?iso=true]   200, status JSON
    POST   /v1/downsample/<collection>/<experiment>/<channel>/              201, queued
    DELETE /v1/downsample/<collection>/<experiment>/<channel>/              204, cancelled

The GET body is ``{"status": "NOT_DOWNSAMPLED" | "QUEUED" | "IN_PROGRESS" | "DOWNSAMPLED" |
"FAILED", "num_hierarchy_levels": n, "voxel_size": {"0": [x, y, z], ...}, "extent":
{"0": [x, y, z], ...}, "cuboid_size": {"0": [512, 512, 16], ...}}``. A POST on a channel that
is QUEUED, IN_PROGRESS or (for a non-admin) DOWNSAMPLED, and a DELETE on one that is neither
QUEUED nor IN_PROGRESS, are refused with 409, code 2006 (INVALID_STATE). BOSS builds
resolutions ``base_resolution + 1 .. num_hierarchy_levels - 1`` (the experiment's setting; the
downsample does not change it) and sets DOWNSAMPLED back to NOT_DOWNSAMPLED on any cutout
write.

API (``conn`` is any :class:`~synapse_pipelines.io.boss_transport.BossConnection`, e.g. a
``BossClient``: the same per-thread session, retries, token handling and error mapping)::

    downsample_status(conn, collection, experiment, channel, *, iso=False) -> DownsampleStatus
    start_downsample(conn, collection, experiment, channel) -> None
    cancel_downsample(conn, collection, experiment, channel) -> None
    wait_for_downsample(conn, collection, experiment, channel, *, timeout, poll=2.0)
        -> DownsampleStatus          # the first status not QUEUED/IN_PROGRESS, or the last
    request_downsampling(conn, collection, experiment, channels, *, wait_seconds=0.0)
        -> dict                      # JSON-safe report for a step's output and the manifest
    require_level(conn, collection, experiment, channels, resolution) -> None
        # BossError(field="resolution") unless every channel is DOWNSAMPLED (level > 0)

Errors: :class:`DownsampleNotSupported` when the server has no such endpoint (404 or 405 on
the URL while the channel exists), :class:`DownsampleRefused` (409) with BOSS's message; the
rest as every BOSS call (:class:`~synapse_pipelines.core.errors.BossError` naming the
resource), and a 200 whose body is not JSON (a web page or proxy, not BOSS) a BossError
quoting the start of the body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from intern.remote.boss import BossRemote
from intern.resource.boss.resource import ChannelResource

from synapse_pipelines.core.errors import BossError
from synapse_pipelines.io.boss_transport import BossConnection

log = logging.getLogger(__name__)

NOT_DOWNSAMPLED = "NOT_DOWNSAMPLED"
QUEUED = "QUEUED"
IN_PROGRESS = "IN_PROGRESS"
DOWNSAMPLED = "DOWNSAMPLED"
FAILED = "FAILED"
#: The channel statuses BOSS's ``Channel.DownsampleStatus`` defines.
STATUSES = (NOT_DOWNSAMPLED, QUEUED, IN_PROGRESS, DOWNSAMPLED, FAILED)
RUNNING = (QUEUED, IN_PROGRESS)

#: Outcomes of :func:`request_downsampling`, per channel and overall.
STARTED = "started"  # BOSS accepted the request (the status says how far it got)
FINISHED = "downsampled"  # started here and finished within the wait
ALREADY_DOWNSAMPLED = "already_downsampled"  # nothing written since the last downsample
ALREADY_RUNNING = "already_running"  # queued or running before this request
NOT_NEEDED = "not_needed"  # the experiment has one resolution level
NOT_SUPPORTED = "not_supported"  # this BOSS has no downsample service
OUTCOME_FAILED = "failed"


class DownsampleNotSupported(BossError):
    """The BOSS host has no downsample endpoint (404/405 on the URL itself)."""


class DownsampleRefused(BossError):
    """BOSS refused the request in the channel's current state (409, INVALID_STATE)."""


@dataclass(frozen=True)
class DownsampleStatus:
    """BOSS's answer to GET /downsample: the channel's status and its resolution levels."""

    status: str
    num_hierarchy_levels: int
    voxel_size: dict[int, tuple[float, float, float]]  # level -> (x, y, z), as BOSS gives
    extent: dict[int, tuple[int, int, int]]  # level -> (x, y, z)
    cuboid_size: dict[int, tuple[int, int, int]]

    @property
    def running(self) -> bool:
        return self.status in RUNNING

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DownsampleStatus:
        def levels(key: str, kind: type) -> dict[int, Any]:
            return {int(r): tuple(kind(v) for v in dims) for r, dims in data.get(key, {}).items()}

        return cls(
            status=str(data["status"]).upper(),
            num_hierarchy_levels=int(data["num_hierarchy_levels"]),
            voxel_size=levels("voxel_size", float),
            extent=levels("extent", int),
            cuboid_size=levels("cuboid_size", int),
        )


def _send(method: str, url_tail: str, query: str = "") -> Callable[[BossRemote], Any]:
    """A request on intern's project service (its URL prefix, API version, token header and
    session); raises requests.HTTPError on a status other than 2xx, like intern does."""

    def fn(remote: BossRemote) -> Any:
        service = remote.project_service
        impl = service.service
        url = f"{service.url_prefix}/{impl.version}/downsample/{url_tail}/{query}"
        headers = impl.get_headers("application/json", service.auth)
        req = requests.Request(method, url, headers=headers)
        resp = service.session.send(
            service.session.prepare_request(req), **service.session_send_opts
        )
        if not 200 <= resp.status_code < 300:
            raise requests.HTTPError(
                f"{method} downsample failed with HTTP {resp.status_code}",
                request=req,
                response=resp,
            )
        if resp.status_code != 200 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            # e.g. a proxy's or a web app's HTML page: not BOSS's downsample service
            raise BossError(
                f"{service.url_prefix} answered {method} /{impl.version}/downsample/{url_tail}/ "
                f"with HTTP 200 and a body that is not JSON "
                f"({resp.headers.get('Content-Type') or 'no content type'}): "
                f"{resp.text[:120]!r}",
                hint="check that boss_host names the BOSS API host, not a web page or proxy",
            ) from None

    return fn


def _downsample_call(
    conn: BossConnection,
    what: str,
    method: str,
    collection: str,
    experiment: str,
    channel: str,
    query: str = "",
) -> Any:
    name = f"{collection}/{experiment}/{channel}"
    try:
        return conn._call(what, name, _send(method, name, query))
    except BossError as err:
        if err.status == 409:
            raise DownsampleRefused(str(err), status=409) from None
        if err.status == 405:
            raise _not_supported(conn, err) from None
        if err.status != 404:
            raise
    # a 404: the channel (or its experiment/collection) is missing, or the URL is unknown;
    # probing the channel through the project service tells which (and names what is missing)
    conn._project_call(
        "get channel",
        collection,
        experiment,
        channel,
        lambda r: r.get_project(ChannelResource(channel, collection, experiment)),
    )
    raise _not_supported(conn, None)


def _not_supported(conn: BossConnection, err: BossError | None) -> DownsampleNotSupported:
    code = f"HTTP {err.status}" if err is not None else "HTTP 404"
    return DownsampleNotSupported(
        f"the downsample service is not supported by this BOSS ({conn.url} answered {code} "
        "on /v1/downsample/)",
        status=err.status if err is not None else 404,
        hint="the data is published at resolution 0; downsample it on a BOSS that has the "
        "service to view it zoomed out",
    )


def downsample_status(
    conn: BossConnection, collection: str, experiment: str, channel: str, *, iso: bool = False
) -> DownsampleStatus:
    """The channel's downsample status and resolution levels (GET)."""
    data = _downsample_call(
        conn,
        "get downsample status of",
        "GET",
        collection,
        experiment,
        channel,
        "?iso=true" if iso else "",
    )
    try:
        return DownsampleStatus.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BossError(
            f"{conn.url} answered the downsample status of {collection}/{experiment}/{channel} "
            f"with an unexpected body: {str(data)[:200]}"
        ) from None


def require_level(
    conn: BossConnection,
    collection: str,
    experiment: str,
    channels: Sequence[str],
    resolution: int,
) -> None:
    """Before reading ``channels`` at ``resolution`` > 0: each must be DOWNSAMPLED, or BOSS
    would serve that level's empty cuboids as zeros (a silent empty result). A server
    without the service is trusted to refuse a level it lacks at the cutout."""
    if resolution == 0:
        return
    for channel in channels:
        try:
            status = downsample_status(conn, collection, experiment, channel)
        except DownsampleNotSupported:
            return
        if status.status != DOWNSAMPLED:
            raise BossError(
                f"channel {collection}/{experiment}/{channel} is {status.status}: its "
                f"resolution {resolution} has not been built, so reading it would give zeros",
                field="resolution",
                hint="have BOSS downsample the channel first (POST /v1/downsample/"
                f"{collection}/{experiment}/{channel}/, or the BOSS console), or use resolution 0",
            )


def start_downsample(conn: BossConnection, collection: str, experiment: str, channel: str) -> None:
    """Queue the channel for downsampling (POST; BOSS answers 201)."""
    _downsample_call(conn, "start downsampling of", "POST", collection, experiment, channel)


def cancel_downsample(conn: BossConnection, collection: str, experiment: str, channel: str) -> None:
    """Cancel a queued or running downsample (DELETE; BOSS answers 204)."""
    _downsample_call(conn, "cancel downsampling of", "DELETE", collection, experiment, channel)


def wait_for_downsample(
    conn: BossConnection,
    collection: str,
    experiment: str,
    channel: str,
    *,
    timeout: float,
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> DownsampleStatus:
    """Poll until the channel is no longer QUEUED or IN_PROGRESS, at most ``timeout``
    seconds; returns the last status (still running when the time ran out)."""
    deadline = clock() + timeout
    while True:
        status = downsample_status(conn, collection, experiment, channel)
        remaining = deadline - clock()
        if not status.running or remaining <= 0:
            return status
        conn.sleep(min(poll, remaining))


def request_downsampling(
    conn: BossConnection,
    collection: str,
    experiment: str,
    channels: Sequence[str],
    *,
    wait_seconds: float = 0.0,
    poll: float = 2.0,
) -> dict[str, Any]:
    """Start BOSS's downsampling of ``channels`` and report what happened, never raising:
    the pushed data stays as it is whatever the service answers. The report (JSON-safe)::

        {"outcome": <overall>, "boss_url", "collection", "experiment",
         "num_hierarchy_levels": n | None, "wait_seconds",
         "channels": {name: {"outcome", "status", "message"}}}

    Per channel: ``started`` (accepted; ``status`` is what BOSS said after the start or the
    wait), ``downsampled`` (finished within ``wait_seconds``), ``already_downsampled``,
    ``already_running``, ``not_needed`` (one resolution level), ``not_supported`` or
    ``failed`` (with BOSS's reason). Overall: ``failed`` if any channel failed, else the
    channels' common outcome, else ``mixed``.
    """
    results: dict[str, dict[str, Any]] = {}
    levels: int | None = None
    supported = True
    for name in channels:
        if not supported:  # the first channel found the service missing: so is it for this one
            results[name] = dict(results[channels[0]])
            continue
        before: DownsampleStatus | None = None
        try:
            before = downsample_status(conn, collection, experiment, name)
            levels = before.num_hierarchy_levels
            entry = _downsample_one(conn, collection, experiment, name, before, wait_seconds, poll)
        except DownsampleNotSupported as err:
            supported = False
            entry = {"outcome": NOT_SUPPORTED, "status": None, "message": str(err)}
        except Exception as exc:
            if not isinstance(exc, BossError):  # a bug must not fail a run whose data is out
                log.exception("downsample request for %s failed", name)
            message = str(exc) if isinstance(exc, BossError) else f"{type(exc).__name__}: {exc}"
            status = before.status if before is not None else None
            entry = {"outcome": OUTCOME_FAILED, "status": status, "message": message}
        results[name] = entry
    outcomes = {e["outcome"] for e in results.values()}
    if OUTCOME_FAILED in outcomes:
        overall = OUTCOME_FAILED
    elif len(outcomes) == 1:
        overall = outcomes.pop()
    else:
        overall = "mixed" if outcomes else NOT_NEEDED
    return {
        "outcome": overall,
        "boss_url": conn.url,
        "collection": collection,
        "experiment": experiment,
        "num_hierarchy_levels": levels,
        "wait_seconds": wait_seconds,
        "channels": results,
    }


def _downsample_one(
    conn: BossConnection,
    collection: str,
    experiment: str,
    channel: str,
    before: DownsampleStatus,
    wait_seconds: float,
    poll: float,
) -> dict[str, Any]:
    """Start one channel whose status is ``before``; its report entry."""
    where = f"{collection}/{experiment}/{channel}"
    if before.num_hierarchy_levels <= 1:
        message = (
            f"experiment {collection}/{experiment} has one resolution level "
            "(num_hierarchy_levels 1): BOSS builds no lower resolutions"
        )
        return {"outcome": NOT_NEEDED, "status": before.status, "message": message}
    if before.running:
        message = f"{where} was already {before.status} before this request"
        return {"outcome": ALREADY_RUNNING, "status": before.status, "message": message}
    if before.status == DOWNSAMPLED:
        message = f"{where} is already downsampled (nothing was written since)"
        return {"outcome": ALREADY_DOWNSAMPLED, "status": before.status, "message": message}
    try:
        start_downsample(conn, collection, experiment, channel)
    except DownsampleRefused as err:
        # another request got in between (or a retried POST of ours had been accepted)
        now = downsample_status(conn, collection, experiment, channel)
        outcome = ALREADY_RUNNING if now.running else OUTCOME_FAILED
        if now.status == DOWNSAMPLED:
            outcome = ALREADY_DOWNSAMPLED
        return {"outcome": outcome, "status": now.status, "message": str(err)}
    if wait_seconds > 0:
        after = wait_for_downsample(
            conn, collection, experiment, channel, timeout=wait_seconds, poll=poll
        )
    else:
        after = downsample_status(conn, collection, experiment, channel)
    levels = f"resolutions 1..{after.num_hierarchy_levels - 1}"
    if after.status == DOWNSAMPLED:
        return {"outcome": FINISHED, "status": after.status, "message": f"built {levels}"}
    if after.status == FAILED:
        message = f"BOSS reported FAILED while downsampling {where} (see the BOSS logs)"
        return {"outcome": OUTCOME_FAILED, "status": after.status, "message": message}
    if after.status == NOT_DOWNSAMPLED:
        message = f"the downsample of {where} was cancelled, or the channel written since"
        return {"outcome": OUTCOME_FAILED, "status": after.status, "message": message}
    message = f"BOSS is building {levels} ({after.status})"
    return {"outcome": STARTED, "status": after.status, "message": message}
