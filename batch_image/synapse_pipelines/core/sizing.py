"""The size and mode policy: how large a request may be and how its Detect runs.

One definition, numpy-free (ValidateRequest's Lambda decides the Detect mode without the
science stack):

* which pipelines can run blockwise (:data:`BLOCKWISE_PIPELINES`, :func:`has_blockwise`);
* the voxel caps of a request: one job's (:func:`single_job_voxel_limit`) and a blockwise
  request's (:func:`blockwise_voxel_limit`), chosen per pipeline by :func:`request_voxel_cap`
  (``parse_request`` applies it);
* the memory estimate of one Detect job (:func:`detect_memory_mib`) and the choice among
  :data:`DETECT_MODES` (:func:`choose_detect_mode`) from the deployed job sizes;
* the blockwise settings read from the environment (``SYNAPSE_BLOCKWISE_*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from synapse_pipelines.core.errors import RequestValidationError, SynapsePipelinesError
from synapse_pipelines.core.geometry import Box

# -- which pipelines run blockwise ------------------------------------------------------------

#: Pipelines with a blockwise implementation (a kernel the blockwise passes run, which
#: reproduces the pipeline's single-job answer exactly). The kernels themselves are in
#: ``workflow.blockwise_job.BLOCKWISE_KERNELS`` (a test keeps the two in step).
BLOCKWISE_PIPELINES: frozenset[str] = frozenset({"nomads-unsupervised", "paired-puncta"})


def has_blockwise(pipeline: str) -> bool:
    """Whether the pipeline can run blockwise (a Distributed Map over blocks)."""
    return pipeline in BLOCKWISE_PIPELINES


# -- request size caps -------------------------------------------------------------------------

#: Default ceiling on the voxels one detection job may take (1 Gvoxel: about 30 GB of memory
#: for 13 uint8 channels plus the detector's working set). Override per deployment with the
#: environment variable ``SYNAPSE_PIPELINES_MAX_VOXELS`` or ``parse_request``'s ``max_voxels``.
DEFAULT_MAX_VOXELS = 1_000_000_000
MAX_VOXELS_ENV = "SYNAPSE_PIPELINES_MAX_VOXELS"

#: Ceiling on requests a pipeline with a blockwise implementation may make (10 teravoxels:
#: ~2,000 blocks of 512^3 per teravoxel, still a small manifest). It only guards against a
#: mistyped range; raise it with ``SYNAPSE_PIPELINES_MAX_BLOCKWISE_VOXELS``.
DEFAULT_MAX_BLOCKWISE_VOXELS = 10_000_000_000_000
MAX_BLOCKWISE_VOXELS_ENV = "SYNAPSE_PIPELINES_MAX_BLOCKWISE_VOXELS"


def _limit_from_env(environ: Mapping[str, str], name: str, default: int) -> int | None:
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SynapsePipelinesError(
            f"{raw!r} is not a whole number", field=name, hint=f"set it to e.g. {default}"
        ) from None
    return value if value > 0 else None


def single_job_voxel_limit(environ: Mapping[str, str]) -> int | None:
    """Most voxels one Detect job may take (``None``: no limit)."""
    return _limit_from_env(environ, MAX_VOXELS_ENV, DEFAULT_MAX_VOXELS)


def blockwise_voxel_limit(environ: Mapping[str, str]) -> int | None:
    """Most voxels a blockwise request may take (``None``: no limit)."""
    return _limit_from_env(environ, MAX_BLOCKWISE_VOXELS_ENV, DEFAULT_MAX_BLOCKWISE_VOXELS)


@dataclass(frozen=True)
class VoxelCap:
    """The voxel cap that applies to a request, and how to explain and raise it."""

    limit: int | None  # None: no cap
    what: str  # "... more than <what> (<limit>)"
    knob: str  # what raises it


def request_voxel_cap(pipeline: str, environ: Mapping[str, str]) -> VoxelCap:
    """A pipeline that runs blockwise cuts larger boxes into blocks, so only the blockwise
    cap applies to it; any other pipeline is capped at what one job may take."""
    if has_blockwise(pipeline):
        return VoxelCap(
            blockwise_voxel_limit(environ), "a blockwise request may take", MAX_BLOCKWISE_VOXELS_ENV
        )
    return VoxelCap(
        single_job_voxel_limit(environ),
        f"one job may take (pipeline {pipeline!r} does not run blockwise)",
        MAX_VOXELS_ENV,
    )


# -- the Detect mode ---------------------------------------------------------------------------

#: How a request's Detect runs: one job on the standard queue, one on the large-memory queue,
#: or blockwise (Distributed Maps over blocks). The ASL's ``ChooseDetectMode`` routes on it.
DetectMode = Literal["standard", "large", "blockwise"]
DETECT_MODES: tuple[DetectMode, ...] = ("standard", "large", "blockwise")

#: Environment of ValidateRequest: the memory of the deployed Detect jobs (MiB).
ENV_DETECT_MEMORY_MIB = "DETECT_MEMORY_MIB"  # the standard Detect job
ENV_LARGE_DETECT_MEMORY_MIB = "LARGE_DETECT_MEMORY_MIB"  # the large Detect job

#: Working-set estimate of one Detect job per voxel of the box beyond the pulled channels
#: (the two float32 z-scores, the float32 covariance map, the labels, the table's windows),
#: with headroom. :func:`choose_detect_mode` uses :func:`detect_memory_mib` to pick the
#: standard or the large-memory queue, or to refuse a box no job can hold.
DETECT_WORKING_BYTES_PER_VOXEL = 24
#: Memory the container keeps for the interpreter and libraries.
DETECT_BASE_MIB = 1024


def detect_memory_mib(voxel_count: int, channel_bytes_per_voxel: int) -> int:
    """Estimated peak memory of one Detect job: every pulled channel plus the working set."""
    total = voxel_count * (channel_bytes_per_voxel + DETECT_WORKING_BYTES_PER_VOXEL)
    return DETECT_BASE_MIB + -(-total // (1024 * 1024))


class SizedRequest(Protocol):
    """What the mode choice reads of a request (``core.request.SynapseRequest`` has it)."""

    @property
    def pipeline(self) -> str: ...

    @property
    def box(self) -> Box: ...

    @property
    def voxel_count(self) -> int: ...


def choose_detect_mode(
    request: SizedRequest, bytes_per_voxel: int, environ: Mapping[str, str]
) -> DetectMode:
    """``standard`` or ``large`` from the estimated Detect memory and the deployed job sizes;
    ``blockwise`` (Distributed Map over blocks) when no single job can take the box (by memory;
    where no job sizes are known, above ``SYNAPSE_PIPELINES_MAX_VOXELS``), or when the
    deployment asks for it at this size (``SYNAPSE_BLOCKWISE_MIN_VOXELS``).

    A box no job can take, of a pipeline without a blockwise implementation, is a
    :class:`RequestValidationError` naming the sizes."""
    blockwise_ok = has_blockwise(request.pipeline)
    if blockwise_ok and wants_blockwise(request.voxel_count, environ):
        return "blockwise"
    need = detect_memory_mib(request.voxel_count, bytes_per_voxel)
    standard = int(environ.get(ENV_DETECT_MEMORY_MIB, "0") or 0)
    large = int(environ.get(ENV_LARGE_DETECT_MEMORY_MIB, "0") or 0)
    if not standard:
        # job sizes unknown (local runs): one job up to the voxel limit, then blockwise
        single_limit = single_job_voxel_limit(environ)
        over = single_limit is not None and request.voxel_count > single_limit
        return "blockwise" if blockwise_ok and over else "standard"
    if need <= standard:
        return "standard"
    if large and need <= large:
        return "large"
    if blockwise_ok:
        return "blockwise"
    raise RequestValidationError(
        [
            (
                "z_range/y_range/x_range",
                f"the box {request.box} ({request.voxel_count:,} voxels) needs about "
                f"{need / 1024:.1f} GiB in one Detect job, more than the largest job of this "
                f"deployment ({max(standard, large) / 1024:.1f} GiB); request a smaller box or "
                "raise largeJobMemoryMiB in the CDK context",
            )
        ]
    )


# -- blockwise settings (environment of ValidateRequest and the block jobs) --------------------

ENV_BLOCK_SHAPE = "SYNAPSE_BLOCKWISE_BLOCK_SHAPE"  # "z,y,x"; default from the job memory
ENV_ALIGNMENT = "SYNAPSE_BLOCKWISE_ALIGNMENT"  # "z,y,x"; default the BOSS cuboid
ENV_JOB_MEMORY_MIB = "SYNAPSE_BLOCKWISE_JOB_MEMORY_MIB"  # one block job, for the shape
ENV_MIN_VOXELS = "SYNAPSE_BLOCKWISE_MIN_VOXELS"  # blockwise from this size on
ENV_BLOCKS_PER_ITEM = "SYNAPSE_BLOCKWISE_BLOCKS_PER_ITEM"  # blocks per Distributed Map item


def wants_blockwise(voxel_count: int, environ: Mapping[str, str]) -> bool:
    """True when the deployment asks for blockwise Detect at this request size."""
    text = environ.get(ENV_MIN_VOXELS)
    return bool(text) and voxel_count >= int(text)  # type: ignore[arg-type]
