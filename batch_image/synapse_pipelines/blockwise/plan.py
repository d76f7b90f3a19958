"""Planning: split a requested box into BOSS-aligned blocks and describe them for a Map state.

A :class:`BlockPlan` is a pure value: the requested box, a block shape (a multiple of the
alignment, BOSS cuboids of 16 x 512 x 512 in production) and the halo the detector needs.
Everything else — the block list, each block's grid position and neighbours — is derived
from those numbers, so the plan itself stays a few hundred bytes and every worker can
rebuild it from ``plan.json``.

The Distributed Map reads its items from the block *manifest* (a JSON array in S3, one
small object per block: index and ranges, ~80 bytes), never from the state: see
:func:`manifest_items` and ``docs/scale.md`` for the Step Functions limits this respects.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.geometry import AXES, CUBOID_SHAPE, Box, iter_aligned_blocks

Shape3 = tuple[int, int, int]

#: The detector's 3x3x3 window needs one voxel of context on every side of a block.
DEFAULT_HALO: Shape3 = (1, 1, 1)

#: Peak bytes per voxel of the detector's working set (two float32 z-scored channels, the
#: float32 covariance map, window sums and labels). Issue 2 caps the detector at 16 B/voxel;
#: the planner uses that ceiling unless told otherwise.
DEFAULT_BYTES_PER_VOXEL = 16

#: Memory of one detection job when nothing else is said (a Fargate task of 16 GiB).
DEFAULT_JOB_MEMORY_BYTES = 16 * 2**30

#: Share of a job's memory the detector's working set may take: the rest is the Python
#: runtime, raw uint8 channels, compressed I/O buffers and the BOSS client's chunking.
MEMORY_FRACTION = 0.6

#: Plan/manifest format version, bumped when the layout of the stored files changes.
PLAN_VERSION = 1

Mode = Literal["auto", "single", "blockwise"]


class PlanningError(SynapsePipelinesError):
    """The request cannot be planned with the given block shape or job memory."""

    error_type = "PlanningError"


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def padded_voxels(block_shape: Sequence[int], halo: Sequence[int]) -> int:
    """Voxels a worker holds for one block: the block, its halo on both sides, plus the
    one-voxel shell on the high faces that the labelling pass overlaps with its neighbours."""
    return math.prod(s + 2 * h + 1 for s, h in zip(block_shape, halo, strict=True))


def choose_block_shape(
    box: Box,
    *,
    memory_bytes: int = DEFAULT_JOB_MEMORY_BYTES,
    bytes_per_voxel: float = DEFAULT_BYTES_PER_VOXEL,
    alignment: Shape3 = CUBOID_SHAPE,
    halo: Shape3 = DEFAULT_HALO,
) -> Shape3:
    """The largest aligned block shape whose padded working set fits the job's memory.

    Starts from one alignment unit and repeatedly doubles the axis that is currently the
    shortest in voxels (ties: z first), never beyond the request's own extent rounded up to
    the alignment. Near-cubic blocks minimise the halo overhead (re-read voxels) per voxel;
    thin requests (a few dozen z slices) stop growing in z early and grow in x/y instead.
    """
    budget = memory_bytes * MEMORY_FRACTION
    shape = list(alignment)
    if padded_voxels(shape, halo) * bytes_per_voxel > budget:
        raise PlanningError(
            f"one aligned block {tuple(alignment)} with its halo needs "
            f"{padded_voxels(shape, halo) * bytes_per_voxel / 2**30:.2f} GiB, more than "
            f"{MEMORY_FRACTION:.0%} of the job memory ({memory_bytes / 2**30:.2f} GiB)",
            field="job_memory",
            hint="give the detection job more memory",
        )
    limit = [_round_up(max(n, 1), a) for n, a in zip(box.shape, alignment, strict=True)]
    while True:
        grown = False
        for axis in sorted(range(3), key=lambda a: (shape[a], a)):
            if shape[axis] >= limit[axis]:
                continue
            trial = list(shape)
            trial[axis] = min(shape[axis] * 2, limit[axis])
            if padded_voxels(trial, halo) * bytes_per_voxel <= budget:
                shape = trial
                grown = True
                break
        if not grown:
            return tuple(shape)  # type: ignore[return-value]


@dataclass(frozen=True)
class BlockPlan:
    """How one request is cut into blocks (see the module docstring)."""

    box: Box
    block_shape: Shape3
    alignment: Shape3 = CUBOID_SHAPE
    halo: Shape3 = DEFAULT_HALO
    mode: Literal["single", "blockwise"] = "blockwise"
    memory_bytes: int = DEFAULT_JOB_MEMORY_BYTES
    bytes_per_voxel: float = DEFAULT_BYTES_PER_VOXEL
    _edges: tuple[tuple[tuple[int, int], ...], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        for name in ("block_shape", "alignment", "halo"):
            value = tuple(int(v) for v in getattr(self, name))
            if len(value) != 3:
                raise PlanningError(f"{name} needs three values (z, y, x), got {value}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "bytes_per_voxel", float(self.bytes_per_voxel))
        object.__setattr__(self, "memory_bytes", int(self.memory_bytes))
        for axis, b, a in zip(AXES, self.block_shape, self.alignment, strict=True):
            if a <= 0 or b <= 0 or b % a:
                raise PlanningError(
                    f"block size along {axis} ({b}) is not a positive multiple of the "
                    f"alignment ({a})",
                    field="block_shape",
                    hint=f"use a multiple of {tuple(self.alignment)} (BOSS cuboids)",
                )
        if any(h < 0 for h in self.halo):
            raise PlanningError(f"halo {self.halo} must not be negative", field="halo")
        if self.box.is_empty():
            raise PlanningError(f"the requested box {self.box} is empty", field="box")
        edges = []
        for lo, hi, b in zip(self.box.start, self.box.stop, self.block_shape, strict=True):
            cuts = [lo, *range((lo // b + 1) * b, hi, b), hi]
            edges.append(tuple(itertools.pairwise(cuts)))
        object.__setattr__(self, "_edges", tuple(edges))

    # -- the block grid ------------------------------------------------------------------
    @property
    def grid_shape(self) -> Shape3:
        """Blocks along z, y, x."""
        return tuple(len(e) for e in self._edges)  # type: ignore[return-value]

    @property
    def n_blocks(self) -> int:
        return math.prod(self.grid_shape)

    def grid_position(self, index: int) -> Shape3:
        if not 0 <= index < self.n_blocks:
            raise PlanningError(f"block index {index} is outside 0..{self.n_blocks - 1}")
        _, ny, nx = self.grid_shape
        return (index // (ny * nx), (index // nx) % ny, index % nx)

    def block_index(self, position: Sequence[int]) -> int:
        _, ny, nx = self.grid_shape
        iz, iy, ix = position
        return (iz * ny + iy) * nx + ix

    def block(self, index: int) -> Box:
        """The block (owned voxels, no halo) with this index; C order, z slowest."""
        pos = self.grid_position(index)
        ranges = [self._edges[a][pos[a]] for a in range(3)]
        return Box.from_ranges(*ranges)

    def blocks(self) -> Iterator[Box]:
        for i in range(self.n_blocks):
            yield self.block(i)

    def upper_neighbours(self, index: int) -> list[int]:
        """Indices of the (up to 7) blocks at +0/+1 grid steps on every axis, excluding
        ``index`` itself: the blocks the one-voxel high shell of this block reaches into."""
        pos = self.grid_position(index)
        out = []
        for dz in (0, 1):
            for dy in (0, 1):
                for dx in (0, 1):
                    if dz == dy == dx == 0:
                        continue
                    q = (pos[0] + dz, pos[1] + dy, pos[2] + dx)
                    if all(c < n for c, n in zip(q, self.grid_shape, strict=True)):
                        out.append(self.block_index(q))
        return out

    def largest_block(self) -> Shape3:
        return tuple(max(b - a for a, b in e) for e in self._edges)  # type: ignore[return-value]

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "mode": self.mode,
            "box": {ax: list(r) for ax, r in zip(AXES, self.box.ranges, strict=True)},
            "block_shape": list(self.block_shape),
            "alignment": list(self.alignment),
            "halo": list(self.halo),
            "grid_shape": list(self.grid_shape),
            "n_blocks": self.n_blocks,
            "memory_bytes": self.memory_bytes,
            "bytes_per_voxel": self.bytes_per_voxel,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockPlan:
        if data.get("version") != PLAN_VERSION:
            raise PlanningError(
                f"plan version {data.get('version')!r} is not {PLAN_VERSION}",
                field="plan.json",
                hint="re-plan the request with this version of synapse-pipelines",
            )
        box = Box.from_ranges(*(tuple(data["box"][ax]) for ax in AXES))
        return cls(
            box=box,
            block_shape=tuple(data["block_shape"]),
            alignment=tuple(data["alignment"]),
            halo=tuple(data["halo"]),
            mode=data["mode"],
            memory_bytes=int(data["memory_bytes"]),
            bytes_per_voxel=float(data["bytes_per_voxel"]),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> BlockPlan:
        return cls.from_dict(json.loads(text))

    def fingerprint(self) -> str:
        """Identity of the cutting: outputs of another plan are never reused."""
        keep = ("version", "mode", "box", "block_shape", "alignment", "halo")
        geometry = {k: v for k, v in self.to_dict().items() if k in keep}
        return hashlib.sha256(json.dumps(geometry, sort_keys=True).encode()).hexdigest()[:16]


def manifest_item(plan: BlockPlan, index: int) -> dict[str, Any]:
    """One Distributed Map item: the block index and its owned ranges (~80 bytes)."""
    box = plan.block(index)
    item: dict[str, Any] = {"block": index}
    for ax, r in zip(AXES, box.ranges, strict=True):
        item[ax] = list(r)
    return item


def manifest_items(plan: BlockPlan, blocks_per_item: int = 1) -> Iterator[dict[str, Any]]:
    """One item per block, or per run of ``blocks_per_item`` consecutive blocks
    (``{"block": "i0-i1"}``, half-open): one job then handles several small blocks, which
    amortises a container's start-up (Distributed Map's ItemBatcher does the same, but
    moto rejects it)."""
    if blocks_per_item < 1:
        raise PlanningError(
            f"blocks per item must be at least 1, got {blocks_per_item}",
            field="blocks_per_item",
        )
    if blocks_per_item == 1:
        for i in range(plan.n_blocks):
            yield manifest_item(plan, i)
        return
    for i0 in range(0, plan.n_blocks, blocks_per_item):
        yield {"block": f"{i0}-{min(i0 + blocks_per_item, plan.n_blocks)}"}


def parse_block_range(text: str | int, n_blocks: int) -> range:
    """``"17"`` -> block 17; ``"16-24"`` -> blocks 16..23 (a grouped manifest item)."""
    value = str(text).strip()
    try:
        if "-" in value:
            a, b = (int(v) for v in value.split("-", 1))
        else:
            a = int(value)
            b = a + 1
    except ValueError:
        raise PlanningError(
            f"block {value!r} is neither an index nor a range i0-i1",
            field="--block",
            hint="pass the manifest item's block value",
        ) from None
    if not 0 <= a < b <= n_blocks:
        raise PlanningError(
            f"block {value!r} is outside 0..{n_blocks - 1}",
            field="--block",
            hint="pass the manifest item's block value",
        )
    return range(a, b)


def manifest_json(plan: BlockPlan, blocks_per_item: int = 1) -> bytes:
    """The manifest as one compact JSON array (``ItemReader`` ``InputType: JSON``)."""
    parts = (json.dumps(it, separators=(",", ":")) for it in manifest_items(plan, blocks_per_item))
    return ("[" + ",".join(parts) + "]").encode()


def plan_request(
    box: Box,
    *,
    mode: Mode = "auto",
    block_shape: Shape3 | None = None,
    memory_bytes: int = DEFAULT_JOB_MEMORY_BYTES,
    bytes_per_voxel: float = DEFAULT_BYTES_PER_VOXEL,
    alignment: Shape3 = CUBOID_SHAPE,
    halo: Shape3 = DEFAULT_HALO,
) -> BlockPlan:
    """Plan a request: one job when it fits one job's memory, otherwise aligned blocks.

    ``block_shape`` overrides the automatic choice (and implies ``blockwise`` under
    ``auto``); ``mode`` forces one job or blocks. A single-job plan is a plan with one
    block covering the whole box, so every consumer handles both the same way.
    """
    if mode not in ("auto", "single", "blockwise"):
        raise PlanningError(
            f"unknown mode {mode!r}", field="mode", hint="use auto, single or blockwise"
        )
    if box.is_empty():
        raise PlanningError(f"the requested box {box} is empty", field="box")
    fits_one_job = (
        padded_voxels(box.shape, halo) * bytes_per_voxel <= memory_bytes * MEMORY_FRACTION
    )
    if mode == "single" or (mode == "auto" and block_shape is None and fits_one_job):
        whole = tuple(_round_up(hi, a) for hi, a in zip(box.stop, alignment, strict=True))
        return BlockPlan(
            box=box,
            block_shape=whole,  # type: ignore[arg-type]
            alignment=alignment,
            halo=halo,
            mode="single",
            memory_bytes=memory_bytes,
            bytes_per_voxel=bytes_per_voxel,
        )
    if block_shape is None:
        block_shape = choose_block_shape(
            box,
            memory_bytes=memory_bytes,
            bytes_per_voxel=bytes_per_voxel,
            alignment=alignment,
            halo=halo,
        )
    plan = BlockPlan(
        box=box,
        block_shape=block_shape,
        alignment=alignment,
        halo=halo,
        mode="blockwise",
        memory_bytes=memory_bytes,
        bytes_per_voxel=bytes_per_voxel,
    )
    return plan


def iter_plan_blocks(plan: BlockPlan) -> Iterator[Box]:
    """The same blocks via geometry's grid (kept as the one definition of alignment)."""
    return iter_aligned_blocks(plan.box, plan.block_shape, plan.alignment)
