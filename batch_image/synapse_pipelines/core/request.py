"""The detection request: one model shared by the CLI, the Lambda handlers and the container.

A request names a box of a BOSS experiment, the presynaptic and postsynaptic channels, the
pipeline (default ``paired-puncta``: PAIRS; ``nomads-unsupervised`` when named) and where
results go. It never carries a usable token into a log or a state payload: the token
lives in Secrets Manager (``token_secret``); a literal ``token`` is accepted for local runs
only, is a :class:`pydantic.SecretStr`, and is dropped by :meth:`SynapseRequest.public_dict`.

Ranges are half-open ``[start, stop)`` in voxels, like Python slices and BOSS cutouts. They
are accepted as ``"start,stop"`` strings (the original CLI's ``--z-range 0,16``), as
``"start:stop"`` or as ``[start, stop]`` lists. They count voxels of the BOSS resolution level
``resolution`` (default 0, the coordinate frame's own voxels), as BOSS cutouts at that level
do: collman15v2 stores its immunofluorescence on its EM grid, 70 x 2.24 x 2.24 nm, where
PAIRS cannot run; from level 4 (70 x 35.8 x 35.8 nm) up it can.

The results key of a request with the default detection settings is built exactly as the
original did::

    "_".join([pipeline, collection, experiment, "z", z0, z1, "y", y0, y1, "x", x0, x1])

A request that sets ``pipeline_parameters`` or names ``presynaptic_channel`` /
``postsynaptic_channel`` gets ``_settings_<digest>`` appended: the first
:data:`SETTINGS_DIGEST_LENGTH` hex digits of the SHA-256 of those settings as canonical JSON
(:attr:`SynapseRequest.detection_settings`). Results are published under the key (BOSS
channels ``<key>_...``, the S3 prefix ``<key>/``), so a run with other settings never
overwrites an earlier run's results, while the very same request again gets the same key.
A setting given explicitly counts even at its default value: the key must be the same
wherever it is computed, including the ValidateRequest Lambda, which cannot load a pipeline's
code to learn its defaults (such a request gets a key of its own: a copy, never an overwrite).

The key is then sanitised by :func:`sanitize_name` so it is always a valid BOSS channel name
and S3 prefix: characters other than ASCII letters, digits, ``_`` and ``-`` become ``_``, and a
key longer than :data:`MAX_NAME_LENGTH` is cut and suffixed with a short hash of the full key
(digest included) so two different requests never share one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from synapse_pipelines.core.errors import (
    RequestValidationError,
    SynapsePipelinesError,
)
from synapse_pipelines.core.geometry import AXES, Box
from synapse_pipelines.core.pipelines import DEFAULT_PIPELINE, available_pipelines
from synapse_pipelines.core.sizing import request_voxel_cap

#: BOSS stores names in 255-character fields; keep results keys well below so that the
#: channel ``<results_key>_<suffix>`` still fits.
MAX_NAME_LENGTH = 200

#: Hex digits of the settings digest in a results key: 40 bits, so two different settings
#: of one box never share a key in practice, and the key stays short enough to read.
SETTINGS_DIGEST_LENGTH = 10

#: Where predictions go unless the request says (the original's experiment).
DEFAULT_OUTPUT_EXPERIMENT = "nomads_predictions"

#: Deepest BOSS resolution level a request may name (2**15 coarser than level 0).
MAX_RESOLUTION = 15

#: BOSS accepts names made of ASCII letters, digits, underscores and hyphens.
_BOSS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$"
)


def sanitize_name(text: str) -> str:
    """Make ``text`` a valid BOSS name and S3 key segment (see the module docstring)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", text)
    if not cleaned:
        raise ValueError("cannot make a name from an empty string")
    if len(cleaned) > MAX_NAME_LENGTH:
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        cleaned = f"{cleaned[: MAX_NAME_LENGTH - 13]}_{digest}"
    return cleaned


def _canonical_number(value: int | float) -> int | float:
    """``3.0`` as ``3``, so one setting written two ways digests the same."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _whole_number(part: Any, hint: str) -> int:
    """One bound of a range: an int, an integral float or a string of digits; else a clear
    ``ValueError`` (a nested list, ``None`` or a dict must never reach ``int()``)."""
    if isinstance(part, int) and not isinstance(part, bool):
        return part
    if isinstance(part, float) and part.is_integer():
        return int(part)
    if isinstance(part, str) and re.fullmatch(r"[+-]?\d+", part.strip()):
        return int(part.strip())
    shown = repr(part) if len(repr(part)) <= 40 else f"a {type(part).__name__}"
    raise ValueError(f"{shown} is not a whole number; {hint}")


def _parse_range(value: Any) -> tuple[int, int]:
    """Turn ``"a,b"``, ``"a:b"`` or ``[a, b]`` into a validated half-open range."""
    hint = 'give it as "start,stop" or [start, stop] with whole numbers, e.g. "0,16"'
    if isinstance(value, str):
        parts: list[Any] = re.split(r"[,:]", value.strip())
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        parts = list(value)
    else:
        raise ValueError(f"expected a range, got {type(value).__name__}; {hint}")
    if len(parts) != 2:
        raise ValueError(f"expected exactly two numbers (start, stop), got {len(parts)}; {hint}")
    bounds = [_whole_number(part, hint) for part in parts]
    start, stop = bounds
    if start < 0 or stop < 0:
        raise ValueError(f"[{start}, {stop}) has a negative bound; voxel coordinates start at 0")
    if stop < start:
        raise ValueError(f"[{start}, {stop}) is reversed; swap them: [{stop}, {start})")
    if stop == start:
        raise ValueError(
            f"[{start}, {stop}) is empty; ranges are half-open, so use [{start}, {start + 1}) "
            "or wider"
        )
    return start, stop


class SynapseRequest(BaseModel):
    """One synapse-detection request. Build it with :func:`parse_request`."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    boss_host: str = Field(
        default="api.bossdb.io",
        validation_alias=AliasChoices("boss_host", "host"),
        description="BOSS API host[:port], without the scheme",
    )
    boss_protocol: Literal["http", "https"] = Field(
        default="https", validation_alias=AliasChoices("boss_protocol", "protocol")
    )
    collection: str = Field(validation_alias=AliasChoices("collection", "col"))
    experiment: str = Field(validation_alias=AliasChoices("experiment", "exp"))
    z_range: tuple[int, int] = Field(validation_alias=AliasChoices("z_range", "z-range"))
    y_range: tuple[int, int] = Field(validation_alias=AliasChoices("y_range", "y-range"))
    x_range: tuple[int, int] = Field(validation_alias=AliasChoices("x_range", "x-range"))
    presynaptic_channel: str | None = None
    postsynaptic_channel: str | None = None
    #: BOSS resolution level to read (0: the frame's own voxels; r: x and y, and z in an
    #: isotropic hierarchy, 2**r times coarser). The ranges are in that level's voxels.
    resolution: int = Field(default=0, ge=0, le=MAX_RESOLUTION)
    pipeline: str = DEFAULT_PIPELINE
    pipeline_parameters: dict[str, int | float] = Field(default_factory=dict)
    output_collection: str = "collman_nomads"
    output_experiment: str = DEFAULT_OUTPUT_EXPERIMENT
    notification_email: str | None = None
    token_secret: str | None = None
    token: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_scheme(cls, data: Any) -> Any:
        """Accept ``https://host`` in ``boss_host`` and take the protocol from it."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        key = "boss_host" if "boss_host" in data else "host" if "host" in data else None
        host = data.get(key) if key else None
        if isinstance(host, str) and "://" in host:
            scheme, _, rest = host.partition("://")
            if scheme not in ("http", "https"):
                raise ValueError(
                    f"boss_host: scheme {scheme!r} is not supported; use http or https"
                )
            given = data.get("boss_protocol", data.get("protocol"))
            if given is not None and given != scheme:
                raise ValueError(
                    f"boss_host says {scheme} but boss_protocol says {given}; drop one of them"
                )
            data[key] = rest.rstrip("/")
            data["boss_protocol"] = scheme
            data.pop("protocol", None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _output_per_level(cls, data: Any) -> Any:
        """Predictions made at resolution r > 0 live on that level's grid: unless the
        request names an output experiment, they go to ``nomads_predictions_res<r>``, whose
        frame is made for that level (the level-0 default's frame is not)."""
        if not isinstance(data, Mapping) or "output_experiment" in data:
            return data
        level = data.get("resolution", 0)
        if isinstance(level, int | str) and str(level).strip().isdigit() and int(level) > 0:
            data = {**data, "output_experiment": f"{DEFAULT_OUTPUT_EXPERIMENT}_res{int(level)}"}
        return data

    @field_validator("z_range", "y_range", "x_range", mode="before")
    @classmethod
    def _check_range(cls, value: Any) -> tuple[int, int]:
        return _parse_range(value)

    @field_validator("boss_host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        if not _HOST.match(value):
            raise ValueError(
                f"{value!r} is not a host name; give host or host:port without a path, "
                "e.g. api.bossdb.io or 127.0.0.1:8700"
            )
        return value

    @field_validator(
        "collection",
        "experiment",
        "presynaptic_channel",
        "postsynaptic_channel",
        "output_collection",
        "output_experiment",
    )
    @classmethod
    def _check_boss_name(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not _BOSS_NAME.match(value):
            bad = sorted({c for c in value if not re.match(r"[A-Za-z0-9_-]", c)})
            shown = "".join(bad) if bad else "(empty)"
            raise ValueError(
                f"{value!r} is not a valid BOSS name (characters not allowed: {shown}); "
                "use only letters, digits, '_' and '-'"
            )
        if len(value) > MAX_NAME_LENGTH:
            raise ValueError(f"name is {len(value)} characters; BOSS names are at most 200 here")
        return value

    @field_validator("pipeline")
    @classmethod
    def _check_pipeline(cls, value: str) -> str:
        known = available_pipelines()
        if value not in known:
            raise ValueError(f"unknown pipeline {value!r}; available: {', '.join(sorted(known))}")
        return value

    @field_validator("notification_email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError(f"{value!r} is not an email address, e.g. name@example.org")
        return value

    @field_validator("token_secret")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        if value is not None and not (_SECRET_ARN.match(value) or _SECRET_NAME.match(value)):
            raise ValueError(
                "not a Secrets Manager secret name or ARN; give e.g. 'synapse-pipelines/boss-token'"
            )
        return value

    @model_validator(mode="after")
    def _check_channels_differ(self) -> SynapseRequest:
        if (
            self.presynaptic_channel is not None
            and self.presynaptic_channel == self.postsynaptic_channel
        ):
            raise ValueError(
                "presynaptic_channel and postsynaptic_channel are the same channel; "
                "NOMADS correlates two different channels"
            )
        return self

    # -- derived values -------------------------------------------------------------------

    @property
    def box(self) -> Box:
        return Box.from_ranges(self.z_range, self.y_range, self.x_range)

    @property
    def voxel_count(self) -> int:
        return self.box.size

    @property
    def detection_settings(self) -> dict[str, Any]:
        """What the request sets beyond the pipeline's defaults, canonical (empty: none).

        The explicit ``pipeline_parameters`` (an integral float written as an int: the
        pipeline coerces ``3`` and ``3.0`` to the same value) and the explicitly named
        channels. Only what the request itself says: the key built from it must not depend on
        a pipeline's code or on BOSS, which the ValidateRequest Lambda cannot always reach."""
        settings: dict[str, Any] = {}
        if self.pipeline_parameters:
            settings["pipeline_parameters"] = {
                name: _canonical_number(value)
                for name, value in sorted(self.pipeline_parameters.items())
            }
        for name in ("presynaptic_channel", "postsynaptic_channel"):
            value = getattr(self, name)
            if value is not None:
                settings[name] = value
        return settings

    @property
    def settings_digest(self) -> str | None:
        """A short stable digest of :attr:`detection_settings`, or None for the defaults."""
        settings = self.detection_settings
        if not settings:
            return None
        text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:SETTINGS_DIGEST_LENGTH]

    @property
    def results_key(self) -> str:
        """Where the results go (see the module docstring): the original's key, plus
        ``_res_<r>`` for a resolution level above 0 and ``_settings_<digest>`` when the
        request changes the detection settings."""
        parts = [self.pipeline, self.collection, self.experiment]
        for axis, (start, stop) in zip(
            AXES, (self.z_range, self.y_range, self.x_range), strict=True
        ):
            parts += [axis, str(start), str(stop)]
        if self.resolution:
            parts += ["res", str(self.resolution)]  # level 0 keeps the original's key
        digest = self.settings_digest
        if digest is not None:
            parts += ["settings", digest]
        return sanitize_name("_".join(parts))

    @property
    def boss_url(self) -> str:
        return f"{self.boss_protocol}://{self.boss_host}"

    def public_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the request without the token (for state, manifest and logs)."""
        data = self.model_dump(mode="json", exclude={"token"}, exclude_none=True)
        if not data["resolution"]:
            del data["resolution"]  # level 0: the same dict (and execution name) as before it
        for axis in AXES:
            data[f"{axis}_range"] = list(data[f"{axis}_range"])
        return data

    def __repr__(self) -> str:  # pydantic's repr would show SecretStr masked; keep it short
        return f"SynapseRequest({self.results_key})"


def _friendly_location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def _friendly_message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    message = str(error.get("msg", "invalid value"))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a request field; check the spelling (see `synapse-pipelines --help`)"
    if kind == "literal_error":
        return message.replace("Input should be", "must be")
    # pydantic prefixes our ValueErrors with "Value error, "
    return re.sub(r"^(Value error|Assertion failed), ", "", message)


_DEFAULT = object()


def parse_request(
    data: Mapping[str, Any] | str | Path,
    *,
    max_voxels: int | object | None = _DEFAULT,
    environ: Mapping[str, str] | None = None,
) -> SynapseRequest:
    """Validate ``data`` (a mapping, a JSON string or a path to a JSON file) into a request.

    Every problem is collected into one :class:`RequestValidationError` whose lines name the
    field and the fix. ``max_voxels`` caps the box size (``None``: no cap). By default the cap
    is :func:`~synapse_pipelines.core.sizing.request_voxel_cap`'s: what one job may take,
    except for a pipeline that runs blockwise, whose larger boxes are cut into blocks.
    """
    env = os.environ if environ is None else environ
    mapping = _load_mapping(data)
    try:
        request = SynapseRequest.model_validate(mapping)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(error.get("loc", ()))
            # a range's inner error arrives as (field,); keep the field name only
            field = _friendly_location(loc[:1] if loc and str(loc[0]).endswith("_range") else loc)
            problems.append((field, _friendly_message(error)))
        raise RequestValidationError(problems) from None
    if max_voxels is not _DEFAULT:
        limit, what, knob = max_voxels, "allowed here", "the max_voxels argument"
    else:
        cap = request_voxel_cap(request.pipeline, env)
        limit, what, knob = cap.limit, cap.what, cap.knob
    if limit is not None and request.voxel_count > int(limit):  # type: ignore[arg-type]
        raise RequestValidationError(
            [
                (
                    "z_range/y_range/x_range",
                    f"the box {request.box} holds {request.voxel_count:,} voxels, more than "
                    f"{what} ({int(limit):,}); request a smaller box, split it, or raise "  # type: ignore[arg-type]
                    f"the limit with {knob}",
                )
            ]
        )
    return request


def _load_mapping(data: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    text: str
    if isinstance(data, Path) or (isinstance(data, str) and not data.lstrip().startswith("{")):
        path = Path(data)
        if not path.is_file():
            raise SynapsePipelinesError(
                f"no such file: {path}",
                field="request",
                hint="give the path of a JSON request file",
            )
        text = path.read_text()
        source = str(path)
    else:
        text = str(data)
        source = "request"
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SynapsePipelinesError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
            field="request",
            hint="fix the JSON syntax",
        ) from None
    if not isinstance(loaded, dict):
        raise SynapsePipelinesError(
            f"{source} holds a JSON {type(loaded).__name__}, not an object",
            field="request",
            hint='give an object like {"collection": ..., "experiment": ..., ...}',
        )
    return loaded
