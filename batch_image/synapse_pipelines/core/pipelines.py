"""Pipeline registry: detectors are plug-ins found through Python entry points.

A pipeline is one module plus one registration. Register it in your distribution's
``pyproject.toml``::

    [project.entry-points."synapse_pipelines.pipelines"]
    my-detector = "my_package.my_module:MyDetector"

The target is a class (instantiated with no arguments) or an instance that satisfies
:class:`Pipeline`:

- ``name: str`` -- the registered name (the request's ``pipeline`` field);
- ``description: str`` -- one line for ``--help`` and the report;
- ``parameters: Mapping[str, ParameterSpec]`` -- every accepted parameter, with its type,
  default (for ``nomads-unsupervised``: the original's values) and bounds;
- ``run(channels, presynaptic, postsynaptic, *, voxel_size=None, **params) -> DetectionResult``
  -- ``channels`` maps channel names to ZYX arrays (never written to); ``voxel_size`` is the
  (z, y, x) voxel size in **nanometers**, or ``None`` when unknown (a detector that works in
  physical units then uses its documented default voxel size and records it in the result's
  ``parameters`` as ``voxel_size_nm``, with ``voxel_size_assumed``; one that works in voxels
  may ignore it); ``params`` have already been
  checked by :func:`validate_parameters` (``run`` validates again, so direct calls are safe
  too);
- optionally ``check_volume(shape, *, voxel_size=None, **params) -> None`` -- raise
  :class:`~synapse_pipelines.core.errors.DetectionError` where ``run`` would refuse a volume
  of that shape and voxel size whatever its values, so a job fails before reading BOSS.
- optionally ``operating_point: Mapping[str, float]`` -- the parameters that set how much
  evidence a detection needs, with their values at level 1 (the defaults): level ``L``
  sets each to ``L`` times that value (:func:`operating_point_parameters`), so one number
  moves the detector between fewer, surer detections and more, dimmer ones. ``tune``
  sweeps it against a user's annotations.

Lookup: :func:`available_pipelines` lists names from the entry-point metadata only -- it
imports neither the targets nor numpy, so request validation can use it in a Lambda.
:func:`get_pipeline` imports the one target asked for and raises
:class:`~synapse_pipelines.core.errors.PipelineNotFoundError` listing the available names.
:func:`validate_parameters` fills defaults and raises
:class:`~synapse_pipelines.core.errors.RequestValidationError` naming every bad parameter.

The shipped pipelines (declared in this project's ``pyproject.toml``):
``paired-puncta`` is :class:`synapse_pipelines.science.paired_puncta.PairedPuncta` (PAIRS:
paired synapsin / PSD-95 puncta, sizes in nm from ``voxel_size``), and
``nomads-unsupervised`` is :class:`synapse_pipelines.science.nomads_plugin.NomadsUnsupervised`
(the original NOMADS recipe, in voxels). :data:`DEFAULT_PIPELINE` (``paired-puncta``, the
detector that works on real data) is what a request or the CLI runs when none is named.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from synapse_pipelines.core.errors import (
    DetectionError,
    PipelineNotFoundError,
    RequestValidationError,
)

if TYPE_CHECKING:  # numpy stays out of the import path of available_pipelines()
    import numpy as np

    from synapse_pipelines.core.request import SynapseRequest  # it imports this module

__all__ = [
    "ENTRY_POINT_GROUP",
    "DetectionResult",
    "ParameterSpec",
    "Pipeline",
    "available_pipelines",
    "channel_pair",
    "checked_parameters",
    "get_pipeline",
    "operating_point_parameters",
    "validate_parameters",
]

ENTRY_POINT_GROUP = "synapse_pipelines.pipelines"
#: The pipeline a request (``core.request``) and the CLI run when none is named: PAIRS.
DEFAULT_PIPELINE = "paired-puncta"


@dataclass(frozen=True)
class DetectionResult:
    """What a detector returns.

    ``labels``: uint32 (uint64 if ever needed) ZYX, 0 = background, synapses ``1..n`` in
    raster order (NOMADS: of each synapse's first voxel; paired-puncta: of each synapse's
    seed voxel). ``mask``: uint8 0/255 (the original's output). ``threshold``: the
    detector's threshold in its own units, always finite (NOMADS: z-scored covariance;
    paired-puncta: the evidence level a seed must reach). ``parameters``: the parameters
    used plus what the detector derived from the data (NOMADS: the integer
    ``threshold_numerator`` and channel statistics; paired-puncta: per-section thresholds,
    noise and Otsu levels, voxel radii), JSON-serialisable. ``timings``: seconds per step.
    ``explanation``: ``None`` when synapses were found; when ``n_synapses == 0`` on a
    non-empty volume, a plain sentence saying what was found and the likely cause (a
    detector that cannot tell leaves it ``None``).
    """

    labels: np.ndarray
    mask: np.ndarray
    threshold: float
    n_synapses: int
    parameters: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    #: Why nothing was found, in plain words (None when synapses were found): a result of
    #: zero synapses on a non-empty volume is never silent.
    explanation: str | None = None


@dataclass(frozen=True)
class ParameterSpec:
    """One pipeline parameter: its type, default and accepted range (inclusive)."""

    type: type[int] | type[float]
    default: int | float
    description: str
    minimum: int | float | None = None
    maximum: int | float | None = None
    odd: bool = False  # window sizes must be odd so the window has a centre voxel

    def check(self, name: str, value: Any) -> tuple[int | float | None, str | None]:
        """Return (coerced value, None) or (None, message naming the fix)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"must be a number ({self.type.__name__}), got {value!r}"
        if self.type is int:
            if isinstance(value, float) and not value.is_integer():
                return None, f"must be an integer, got {value!r}"
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                return None, f"must be finite, got {value!r}"
        if self.minimum is not None and value < self.minimum:
            return None, f"must be >= {self.minimum}, got {value!r}"
        if self.maximum is not None and value > self.maximum:
            return None, f"must be <= {self.maximum}, got {value!r}"
        if self.odd and int(value) % 2 == 0:
            return None, f"must be odd (the window needs a centre voxel), got {value!r}"
        return value, None


@runtime_checkable
class Pipeline(Protocol):
    """What a registered detector provides (see the module docstring)."""

    name: str
    description: str
    parameters: Mapping[str, ParameterSpec]

    def run(
        self,
        channels: Mapping[str, np.ndarray],
        presynaptic: str,
        postsynaptic: str,
        *,
        voxel_size: tuple[float, float, float] | None = None,
        **params: int | float,
    ) -> DetectionResult:
        """Detect synapses; ``voxel_size`` is (z, y, x) in nanometers (``None``: unknown)."""
        ...


def _entry_points() -> dict[str, EntryPoint]:
    """Registered entry points by name; the same registration seen twice counts once."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        previous = found.get(ep.name)
        if previous is not None and previous.value != ep.value:
            raise PipelineNotFoundError(
                f"pipeline {ep.name!r} is registered twice, as {previous.value!r} and {ep.value!r}",
                field="pipeline",
                hint="uninstall one of the distributions that registers it",
            )
        found[ep.name] = ep
    return found


def available_pipelines() -> list[str]:
    """Sorted names of every registered pipeline (imports no pipeline code)."""
    return sorted(_entry_points())


def get_pipeline(name: str) -> Pipeline:
    """The pipeline registered as ``name``, ready to ``run``."""
    eps = _entry_points()
    if name not in eps:
        names = ", ".join(sorted(eps)) or "(none: is synapse-pipelines installed?)"
        raise PipelineNotFoundError(
            f"unknown pipeline {name!r}; available pipelines: {names}",
            field="pipeline",
            hint="use one of the available names, or register yours under the entry-point "
            f"group {ENTRY_POINT_GROUP!r}",
        )
    try:
        target = eps[name].load()
        pipeline = target() if isinstance(target, type) else target
    except Exception as exc:  # a broken plug-in install is an environment problem
        raise PipelineNotFoundError(
            f"pipeline {name!r} ({eps[name].value}) failed to load: {type(exc).__name__}: {exc}",
            field="pipeline",
            hint="reinstall the distribution that provides it, or choose another pipeline",
        ) from exc
    if not isinstance(pipeline, Pipeline):
        raise PipelineNotFoundError(
            f"pipeline {name!r} ({eps[name].value}) does not provide name, description, "
            "parameters and run()",
            field="pipeline",
            hint="implement the synapse_pipelines.core.pipelines.Pipeline protocol",
        )
    return pipeline


def validate_parameters(
    pipeline: Pipeline, params: Mapping[str, Any] | None = None
) -> dict[str, int | float]:
    """``params`` checked against ``pipeline.parameters``, with defaults filled in.

    Raises :class:`RequestValidationError` listing every unknown or bad parameter (field
    ``pipeline_parameters.<name>``).
    """
    params = dict(params or {})
    problems: list[tuple[str, str]] = []
    resolved: dict[str, int | float] = {}
    for key in params:
        if key not in pipeline.parameters:
            known = ", ".join(sorted(pipeline.parameters)) or "none"
            problems.append(
                (
                    f"pipeline_parameters.{key}",
                    f"unknown parameter for pipeline {pipeline.name!r}; accepted: {known}",
                )
            )
    for key, spec in pipeline.parameters.items():
        if key not in params:
            resolved[key] = spec.default
            continue
        value, message = spec.check(key, params[key])
        if message is not None:
            problems.append((f"pipeline_parameters.{key}", message))
        else:
            resolved[key] = value  # type: ignore[assignment]
    if problems:
        raise RequestValidationError(problems)
    return resolved


def operating_point_parameters(pipeline: Pipeline, level: float) -> dict[str, float] | None:
    """The parameters of ``pipeline``'s operating point at ``level`` (1: its defaults), or
    ``None`` when the pipeline declares no operating point."""
    base = getattr(pipeline, "operating_point", None)
    if not base:
        return None
    return {name: float(level) * float(value) for name, value in base.items()}


def checked_parameters(request: SynapseRequest) -> dict[str, int | float]:
    """The request's pipeline parameters checked by the pipeline, defaults filled in: the
    one check ValidateRequest runs, and ``estimate`` / ``submit`` (also ``--dry-run``) before it.

    A pipeline is a plug-in, loaded by its entry point, and loading it imports its science
    stack; where that is not installed (the Lambda layer) the load fails on the import and
    the check is left to Detect, which runs it again anyway. Any other load failure is the
    broken install it reports.
    """
    try:
        pipeline = get_pipeline(request.pipeline)
    except PipelineNotFoundError as exc:
        if not isinstance(exc.__cause__, ImportError):
            raise
        return dict(request.pipeline_parameters)
    return validate_parameters(pipeline, request.pipeline_parameters)


def channel_pair(
    channels: Mapping[str, Any], presynaptic: str, postsynaptic: str
) -> tuple[Any, Any]:
    """The presynaptic and postsynaptic arrays a pipeline's ``run`` was given, or a
    :class:`DetectionError` naming the role whose channel is missing (shared by every
    pipeline, so each refuses the same way)."""
    for role, name in (("presynaptic", presynaptic), ("postsynaptic", postsynaptic)):
        if name not in channels:
            raise DetectionError(
                f"channel {name!r} is not among the channels given ({', '.join(sorted(channels))})",
                field=role,
                hint="pass the name of one of the pulled channels",
            )
    return channels[presynaptic], channels[postsynaptic]
