"""How the local BOSS server answers an error: BOSS's JSON shape and its error codes.

Real BOSS answers ``{"status": <http>, "code": <n>, "message": "..."}``; the storage and the
web app of the local server raise :class:`ApiError` with the same status and code, and the
app (:mod:`synapse_pipelines.local.boss_app`) turns it into that body.
"""

from __future__ import annotations

# BOSS error codes used by the local server.
INVALID_CUTOUT_ARGS = 1001
TYPE_ERROR = 1002  # BOSS's code for a resolution outside the channel's hierarchy
INVALID_REQUEST = 1004
METHOD_NOT_ALLOWED = 1005
REQUEST_TOO_LARGE = 2000
DATATYPE_MISMATCH = 2001
INVALID_STATE = 2006  # 409: e.g. a downsample of a channel already queued or in progress
INVALID_TOKEN = 3000
MISSING_PERMISSION = 3001
RESOURCE_NOT_FOUND = 4000
RESOURCE_EXISTS = 4003
RESOURCE_IN_USE = 4004
BOSS_SYSTEM_ERROR = 9001  # BOSS answers it with HTTP 400
UNHANDLED = 9002


class ApiError(Exception):
    """An HTTP error answered as BOSS does: ``{"status", "code", "message"}``."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, RESOURCE_NOT_FOUND, f"{kind} {name!r} not found")
