"""User-facing errors.

Every error a person can cause (a bad request, a missing BOSS resource, a token without
permission) is a :class:`SynapsePipelinesError`: its message names the field and the fix.
The CLI prints the message and exits with status 2; the Lambda handlers turn it into a
failed task whose ``Cause`` is the same message. Anything else is a bug and keeps its
traceback.

:func:`aws_error_code` reads the error code of an AWS SDK error, for the places that turn one
into such a message (or treat "not found" / "already exists" as an answer).
"""

from __future__ import annotations

from collections.abc import Mapping


class SynapsePipelinesError(Exception):
    """An error caused by input or environment, with a message meant for the user."""

    #: Short machine-readable kind, used as the Step Functions error name.
    error_type: str = "SynapsePipelinesError"

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        self.field = field
        self.hint = hint
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        parts = []
        if self.field:
            parts.append(f"{self.field}: ")
        parts.append(self.message)
        if self.hint:  # a full stop ends the message, so the fix reads as its own sentence
            parts.append(
                f"{'' if self.message.endswith(('.', '!', '?')) else '.'} Fix: {self.hint}"
            )
        return "".join(parts)


class RequestValidationError(SynapsePipelinesError):
    """The request is malformed; ``problems`` lists every (field, message) found."""

    error_type = "RequestValidationError"

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"- {field}: {msg}" for field, msg in problems]
        super().__init__("invalid request:\n" + "\n".join(lines))

    def render(self) -> str:  # the problems already carry their fields and fixes
        return self.message


class ChannelSelectionError(SynapsePipelinesError):
    """The requested or default channels cannot be matched unambiguously."""

    error_type = "ChannelSelectionError"


class BossError(SynapsePipelinesError):
    """BOSS refused or failed a request (after retries, for transient failures)."""

    error_type = "BossError"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ):
        self.status = status
        super().__init__(message, field=field, hint=hint)


class DetectionError(SynapsePipelinesError):
    """The detector cannot run on this input (e.g. a flat channel)."""

    error_type = "DetectionError"


class PipelineNotFoundError(SynapsePipelinesError):
    """The requested pipeline name is not registered."""

    error_type = "PipelineNotFoundError"


def aws_error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (``exc.response["Error"]["Code"]``,
    e.g. ``"NoSuchKey"``), or ``None`` for any other exception.

    Duck-typed, so callers need not import botocore (the numpy-free core stays light).
    """
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, Mapping) else None
    code = error.get("Code") if isinstance(error, Mapping) else None
    return None if code is None else str(code)
