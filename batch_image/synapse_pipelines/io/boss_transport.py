"""How one request reaches BOSS: intern's session per thread, retries, errors that help.

Owns :class:`BossConnection` (the base of :class:`~synapse_pipelines.io.boss_client.BossClient`):

- one intern ``BossRemote`` per thread (``requests.Session`` is not guaranteed thread-safe),
  with the request timeout set on both of intern's services;
- retries: 429/5xx, timeouts, refused and dropped connections are retried ``max_retries``
  times with exponential backoff (``backoff * 2**n`` capped at ``max_backoff``) and full
  jitter; every request the client sends is idempotent. 4xx are not retried;
- failures become :class:`~synapse_pipelines.core.errors.BossError`: 401 says BOSS did not
  accept the token, 403 that the token lacks permission on the resource, 404 names which
  of collection / experiment / channel is missing (found by probing), 5xx say how many
  attempts failed. Messages carry BOSS's own
  ``message`` scrubbed of the token and are raised ``from None``, so no intern exception
  (which holds the prepared request and its headers) is chained;
- the lean cutout requests :func:`get_cutout` and :func:`post_cutout`: intern's own request
  builder, auth and session, minus the costs that dominated the profile.

The token lives in a name-mangled attribute: never in ``repr()``, a log line or a message.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import blosc
import numpy as np
import requests
from intern.remote.boss import BossRemote
from intern.resource.boss.resource import ChannelResource, CollectionResource, ExperimentResource
from intern.service.boss.v1.volume import CacheMode

from synapse_pipelines.core.errors import BossError
from synapse_pipelines.core.geometry import Box

log = logging.getLogger(__name__)

T = TypeVar("T")

#: HTTP statuses worth retrying: BOSS (or a proxy in front of it) is busy or failing.
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class BossConnection:
    """One BOSS host and token: per-thread sessions, retries, and errors naming the resource."""

    def __init__(
        self,
        host: str,
        protocol: str,
        token: str,
        *,
        max_retries: int = 5,
        timeout: float = 120.0,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
    ):
        if protocol not in ("http", "https"):
            raise BossError(
                f"protocol must be 'http' or 'https', not {protocol!r}", field="boss_protocol"
            )
        if not token:
            raise BossError(
                "no BOSS token was given",
                field="token",
                hint="set BOSS_TOKEN or the request's token_secret",
            )
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.host = host
        self.protocol = protocol
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.__token = token
        self._local = threading.local()
        #: called with the delay before each retry sleep; tests use it to count retries
        self.sleep: Callable[[float], None] = time.sleep

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}"

    def _remote(self) -> BossRemote:
        """This thread's BossRemote (requests.Session is not guaranteed thread-safe)."""
        remote = getattr(self._local, "remote", None)
        if remote is None:
            remote = BossRemote(
                {"protocol": self.protocol, "host": self.host, "token": self.__token}
            )
            opts = {"timeout": self.timeout}
            for service in (remote.project_service, remote.volume_service):
                service.session_send_opts = dict(opts)
            self._local.remote = remote
        return remote

    def _scrub(self, text: str) -> str:
        return text.replace(self.__token, "***") if self.__token else text

    def _call(self, what: str, resource: str, fn: Callable[[BossRemote], T]) -> T:
        """Run ``fn`` with retries; map failures to BossError naming ``resource``."""
        attempt = 0
        while True:
            try:
                return fn(self._remote())
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in RETRY_STATUS and attempt < self.max_retries:
                    self._pause(attempt, what, resource, f"HTTP {status}")
                    attempt += 1
                    continue
                raise self._http_error(what, resource, status, exc) from None
            except requests.exceptions.SSLError:
                # a certificate problem does not heal by retrying
                raise BossError(
                    f"TLS handshake with {self.url} failed for {what} {resource}",
                    field="boss_host",
                    hint="check the host name and protocol (http for the local server)",
                ) from None
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                # the server or network dropped us; every request here is idempotent
                # (GET, PUT to_black, POST of a whole region), so retrying is safe
                if attempt < self.max_retries:
                    self._pause(attempt, what, resource, type(exc).__name__)
                    attempt += 1
                    self._local.remote = None  # fresh session: the old socket may be dead
                    continue
                raise BossError(
                    f"{what} {resource} on {self.url} failed after {attempt + 1} attempts: "
                    f"{type(exc).__name__}",
                    hint="check that BOSS is reachable and retry later",
                ) from None
            except requests.RequestException as exc:  # malformed URL and the like
                raise BossError(
                    f"cannot send {what} {resource} to {self.url}: {type(exc).__name__}",
                    field="boss_host",
                    hint="give host[:port] without a path, and protocol http or https",
                ) from None

    def _pause(self, attempt: int, what: str, resource: str, reason: str) -> None:
        # exponential backoff with full jitter: spreads the retries of concurrent pieces
        delay = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
        log.warning(
            "BOSS %s %s: %s; retry %d/%d in %.2fs",
            what,
            resource,
            reason,
            attempt + 1,
            self.max_retries,
            delay,
        )
        self.sleep(delay)

    def _http_error(
        self, what: str, resource: str, status: int | None, exc: requests.HTTPError
    ) -> BossError:
        detail = ""
        if exc.response is not None:
            try:
                detail = str(exc.response.json().get("message", ""))
            except ValueError:
                detail = exc.response.text[:200]
        detail = self._scrub(detail)
        suffix = f" (BOSS said: {detail})" if detail else ""
        if status == 401:
            return BossError(
                f"BOSS at {self.url} did not accept the token "
                f"(HTTP 401 on {what} {resource}){suffix}",
                status=status,
                field="token",
                hint="check the token (BOSS_TOKEN or the request's token_secret): BOSS does "
                "not know it, it expired, or it is another BOSS's",
            )
        if status == 403:
            return BossError(
                f"the token lacks permission on {resource} at {self.url} "
                f"(HTTP 403 on {what} {resource}){suffix}",
                status=status,
                field="token",
                hint="use a token with read access to the input and write access to the output",
            )
        if status == 404:
            return BossError(f"{resource} was not found on {self.url}{suffix}", status=404)
        if status == 413:
            return BossError(
                f"{what} {resource}: BOSS refused the request as too large{suffix}",
                status=413,
                hint="use a smaller piece_shape",
            )
        if status is not None and status >= 500:
            return BossError(
                f"{what} {resource} failed on {self.url} with HTTP {status} after "
                f"{self.max_retries + 1} attempts{suffix}",
                status=status,
                hint="BOSS is failing; retry later",
            )
        return BossError(f"{what} {resource} failed with HTTP {status}{suffix}", status=status)

    def _missing_resource(
        self, collection: str, experiment: str | None, channel: str | None
    ) -> str:
        """Which of collection / experiment / channel is missing, for a 404's message."""
        probes: list[tuple[str, Any]] = [
            (f"collection {collection!r}", CollectionResource(collection))
        ]
        if experiment is not None:
            probes.append(
                (
                    f"experiment {experiment!r} in collection {collection!r}",
                    ExperimentResource(experiment, collection),
                )
            )
        if channel is not None and experiment is not None:
            probes.append(
                (
                    f"channel {channel!r} in {collection}/{experiment}",
                    ChannelResource(channel, collection, experiment),
                )
            )
        for label, resource in probes:
            try:
                self._remote().get_project(resource)
            except requests.HTTPError as exc:
                if exc.response is not None and exc.response.status_code == 404:
                    return label
                break
            except requests.RequestException:
                break
        return label if channel is None else f"{collection}/{experiment}/{channel}"

    def _project_call(
        self,
        what: str,
        collection: str,
        experiment: str | None,
        channel: str | None,
        fn: Callable[[BossRemote], T],
    ) -> T:
        """:meth:`_call` on a collection / experiment / channel; a 404 names the missing one."""
        name = "/".join(p for p in (collection, experiment, channel) if p is not None)
        try:
            return self._call(what, name, fn)
        except BossError as err:
            if err.status == 404:
                missing = self._missing_resource(collection, experiment, channel)
                raise BossError(
                    f"{missing} does not exist on {self.url}",
                    status=404,
                    field="collection" if missing.startswith("collection") else None,
                    hint="check the names (they are case-sensitive) with "
                    "`synapse-pipelines boss ls`",
                ) from None
            raise


def get_cutout(
    remote: BossRemote, chan: ChannelResource, piece: Box, resolution: int = 0
) -> np.ndarray:
    """GET one piece (voxels of resolution level ``resolution``) through intern's volume
    service (its URL, headers, session).

    Same request as ``remote.get_cutout(..., parallel=False)``, but the body is read in one
    call: requests' ``.content`` (which intern uses) reads in 10 KiB steps, which cost more
    CPU than everything else on an 8 MiB incompressible piece.
    """
    (z0, y0, x0), (z1, y1, x1) = piece.start, piece.stop
    service = remote.volume_service
    req = service.service.get_cutout_request(
        chan, "GET", "application/blosc", service.url_prefix, service.auth,
        resolution, [x0, x1], [y0, y1], [z0, z1], None, access_mode=CacheMode.no_cache,
    )  # fmt: skip
    prep = service.session.prepare_request(req)
    prep.headers["Accept"] = "application/blosc"
    resp = service.session.send(prep, stream=True, **service.session_send_opts)
    try:
        if resp.status_code != 200:
            _ = resp.content  # keep the error body for the message
            raise requests.HTTPError(
                f"Get cutout failed on {chan.name}, got HTTP response: ({resp.status_code})",
                request=req,
                response=resp,
            )
        raw = resp.raw.read()
    finally:
        resp.close()
    dtype = np.dtype(chan.datatype)
    data = np.frombuffer(blosc.decompress(raw), dtype=dtype)
    if data.size != piece.size:
        raise BossError(
            f"BOSS returned {data.size} voxels for {piece} of {chan.name} ({piece.size} expected)"
        )
    return data.reshape(piece.shape)


def post_cutout(remote: BossRemote, chan: ChannelResource, piece: Box, block: np.ndarray) -> None:
    """POST one piece through intern's volume service (its URL, headers, session).

    Same request as ``remote.create_cutout`` minus two costs that dominated the push
    profile: a full ``np.sum`` of the block (intern's all-zero test; ours is ``any()``) and
    blosc at its default level 9 with typesize = bit width. LZ4 at level 1 with byte
    shuffle is several times faster and BOSS decompresses any blosc frame.
    """
    (z0, y0, x0), (z1, y1, x1) = piece.start, piece.stop
    service = remote.volume_service
    body = blosc.compress(
        block.tobytes() if not block.flags.c_contiguous else block,
        typesize=block.dtype.itemsize,
        clevel=1,
        shuffle=blosc.SHUFFLE,
        cname="lz4",
    )
    req = service.service.get_cutout_request(
        chan, "POST", "application/blosc", service.url_prefix, service.auth,
        0, [x0, x1], [y0, y1], [z0, z1], None, numpyVolume=body,
    )  # fmt: skip
    resp = service.session.send(service.session.prepare_request(req), **service.session_send_opts)
    if resp.status_code != 201:
        raise requests.HTTPError(
            f"Create cutout failed on {chan.name}, got HTTP response: ({resp.status_code})",
            request=req,
            response=resp,
        )
