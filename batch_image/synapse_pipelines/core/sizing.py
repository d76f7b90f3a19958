"""Blockwise settings read from the environment: light (no numpy), so ValidateRequest's
Lambda can decide the Detect mode without importing the science stack."""

from __future__ import annotations

from collections.abc import Mapping

ENV_BLOCK_SHAPE = "SYNAPSE_BLOCKWISE_BLOCK_SHAPE"
ENV_ALIGNMENT = "SYNAPSE_BLOCKWISE_ALIGNMENT"
ENV_JOB_MEMORY_MIB = "SYNAPSE_BLOCKWISE_JOB_MEMORY_MIB"
ENV_MIN_VOXELS = "SYNAPSE_BLOCKWISE_MIN_VOXELS"
ENV_BLOCKS_PER_ITEM = "SYNAPSE_BLOCKWISE_BLOCKS_PER_ITEM"

#: the pipeline the blockwise passes reproduce exactly
BLOCKWISE_PIPELINE = "nomads-unsupervised"


def wants_blockwise(voxel_count: int, environ: Mapping[str, str]) -> bool:
    """True when the deployment asks for blockwise Detect at this request size."""
    text = environ.get(ENV_MIN_VOXELS)
    return bool(text) and voxel_count >= int(text)  # type: ignore[arg-type]
