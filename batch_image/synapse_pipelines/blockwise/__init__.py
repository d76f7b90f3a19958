"""Blockwise NOMADS: plan blocks, run reducible passes per block, stitch, identical to one job.

Modules: :mod:`.plan` (blocks aligned to BOSS cuboids, the Distributed Map manifest),
:mod:`.stitch` (26-connected labelling across block borders, global sizes and ids),
:mod:`.store` (per-block outputs with checksums: resumable, idempotent), :mod:`.sources`
(reading boxes of the two channels), :mod:`.passes` (the per-block passes and reductions),
:mod:`.runner` (all passes on one machine), :mod:`.nomads` (NOMADS primitives as a blockwise
kernel; ``blockwise_detect`` = ``detection.detect`` block by block).
See ``docs/scale.md`` for the design.
"""

from synapse_pipelines.blockwise.plan import (
    BlockPlan,
    PlanningError,
    choose_block_shape,
    manifest_items,
    manifest_json,
    plan_request,
)
from synapse_pipelines.blockwise.runner import BlockwiseResult, array_sink, run_blockwise
from synapse_pipelines.blockwise.sources import ArraySource, VolumeSource, open_file_source
from synapse_pipelines.blockwise.stitch import BlockLabels, label_block, stitch
from synapse_pipelines.blockwise.store import LocalStore, MemoryStore, S3Store, open_store

__all__ = [
    "ArraySource",
    "BlockLabels",
    "BlockPlan",
    "BlockwiseResult",
    "LocalStore",
    "MemoryStore",
    "PlanningError",
    "S3Store",
    "VolumeSource",
    "array_sink",
    "choose_block_shape",
    "label_block",
    "manifest_items",
    "manifest_json",
    "open_file_source",
    "open_store",
    "plan_request",
    "run_blockwise",
    "stitch",
]
