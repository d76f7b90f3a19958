"""Blockwise detection: plan blocks, run reducible passes per block, stitch, identical to one job.

Modules: :mod:`.plan` (blocks aligned to BOSS cuboids, the Distributed Map manifest),
:mod:`.stitch` (26-connected labelling across block borders, global sizes and ids),
:mod:`.store` (per-block outputs with checksums: resumable, idempotent), :mod:`.sources`
(reading boxes of the two channels), :mod:`.passes` (the per-block passes and reductions),
:mod:`.finalize` (result arrays as Zarr chunks and the synapse table from per-block
partials), :mod:`.runner` (all passes on one machine), :mod:`.nomads` (NOMADS primitives as
a blockwise kernel; ``blockwise_detect`` = ``detection.detect`` block by block), :mod:`.pairs`
(PAIRS as a seeded kernel; ``blockwise_paired_puncta`` = ``detect_paired_puncta``).
See ``docs/scale.md`` for the design.
"""

from __future__ import annotations

import importlib
from typing import Any

# Submodules load on first use: ``blockwise.config`` must stay importable without numpy
# (ValidateRequest's Lambda reads it), so this package imports nothing eagerly.
_EXPORTS: dict[str, str] = {
    "Kernel": "kernel_protocol",
    "SeededKernel": "kernel_protocol",
    "BlockPlan": "plan",
    "PlanningError": "plan",
    "choose_block_shape": "plan",
    "manifest_items": "plan",
    "manifest_json": "plan",
    "plan_request": "plan",
    "ResultArrays": "finalize",
    "TableSpec": "finalize",
    "BlockwiseResult": "runner",
    "array_sink": "runner",
    "run_blockwise": "runner",
    "ArraySource": "sources",
    "VolumeSource": "sources",
    "open_file_source": "sources",
    "BlockLabels": "stitch",
    "label_block": "stitch",
    "stitch": "stitch",
    "LocalStore": "store",
    "MemoryStore": "store",
    "S3Store": "store",
    "open_store": "store",
    "blockwise_detect": "nomads",
    "NomadsKernel": "nomads",
    "blockwise_paired_puncta": "pairs",
    "PairsKernel": "pairs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
