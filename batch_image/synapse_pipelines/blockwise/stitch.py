"""Blockwise 26-connected labelling, border stitching, global sizes and renumbering.

Each block labels its mask over the block *extended by one voxel on its high faces*
(``[start, stop + 1)`` clipped to the volume). Why that is enough for 26-connectivity:
two 26-adjacent voxels ``u`` and ``v`` differ by at most one along every axis, so both lie
in the extended region of the block that owns their component-wise minimum — across a face,
an edge or a corner alike. That block gives both the same local label; every voxel of the
one-voxel shell it does not own is also on a *low face* of the block that does own it, so
joining "shell records" (voxel index, local label) of each block with the "low-face
records" of its neighbours links all local labels of one global component. The links form a
graph whose connected components (``scipy.sparse.csgraph``) are the global objects.

Global sizes are the sums of the owned-voxel counts; objects keep their voxels when the size
is larger than ``min_size``, as the single-job filter does. Kept objects are numbered 1..n
by their first voxel in C (raster) order, which is the order a full-volume
``scipy.ndimage.label`` assigns, so the blockwise ids equal the single-job ids whenever the
single job also numbers by raster order.

A seeded detector (PAIRS) gives every label the key of its seed (:attr:`BlockLabels.keys`):
its synapses need not be connected, so the stitch also joins every label of one key across
all blocks, and numbers the objects in raster order of their seeds, as PAIRS numbers them.

All arrays here are plain NumPy; nothing reads or writes files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from synapse_pipelines.core.geometry import Box

#: 26-connectivity: faces, edges and corners.
STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


#: ``label(mask) -> (labels, n)``: 26-connected labels numbered in raster order of the
#: first voxel (scipy's ``ndimage.label`` order; the detector's compiled labelling too).
LabelFunction = Callable[[np.ndarray], tuple[np.ndarray, int]]


def scipy_label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    labels, n = ndimage.label(mask, structure=STRUCTURE_26)
    return labels, int(n)


@dataclass
class BlockLabels:
    """What the labelling pass keeps of one block (see the module docstring).

    Labels are stored sparsely — foreground is a small fraction of a block — so the pass
    writes a few kilobytes per block, not four bytes per voxel.
    """

    #: Block shape (z, y, x).
    shape: np.ndarray
    #: Raster indices (within the block) of the labelled owned voxels, ascending.
    index: np.ndarray
    #: Their local labels, 1..n.
    labels: np.ndarray
    #: Owned-voxel count of local label ``i`` at index ``i - 1``.
    sizes: np.ndarray
    #: Smallest raster index (in the request box) of an owned voxel of each local label.
    first: np.ndarray
    #: Raster indices and local labels of labelled shell voxels owned by other blocks.
    shell_index: np.ndarray
    shell_label: np.ndarray
    #: Raster indices and local labels of labelled owned voxels on the low faces.
    face_index: np.ndarray
    face_label: np.ndarray
    #: Per local label, over its owned voxels, in request-box coordinates (z, y, x): the
    #: coordinate sums and inclusive bounding box (empty labels: 0, +max, -1), so the
    #: stitch reduces every object's geometry (centroid, box) without reading voxels again.
    coord_sums: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray
    #: Seeded detectors (PAIRS): per local label, the raster index (request box) of the
    #: seed it belongs to. Labels of one seed are one object wherever they lie, connected
    #: or not, and objects are numbered by seed (``first`` holds the key). Empty: labels
    #: are 26-connected components, joined across borders only.
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    #: the fields a reduce needs (kilobytes); ``index`` and ``labels`` are the voxel data
    VOXEL_FIELDS = ("shape", "index", "labels")

    @property
    def n_labels(self) -> int:
        return int(self.sizes.size)

    def dense(self, table: np.ndarray | None = None) -> np.ndarray:
        """The block's labels as an array (through ``table`` if given: local -> global)."""
        return dense_labels(self.voxel_arrays(), table)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def voxel_arrays(self) -> dict[str, np.ndarray]:
        """The owned voxels' labels (what the finalize pass turns into ids)."""
        return {k: getattr(self, k) for k in self.VOXEL_FIELDS}

    def border_arrays(self) -> dict[str, np.ndarray]:
        """Everything the stitch reduce reads: sizes, first voxels, geometry, borders."""
        return {
            k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("index", "labels")
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> BlockLabels:
        return cls(**{k: np.asarray(arrays[k]) for k in cls.__dataclass_fields__ if k in arrays})


def dense_labels(voxels: Mapping[str, np.ndarray], table: np.ndarray | None = None) -> np.ndarray:
    """A block's labels as an array from its sparse ``shape``/``index``/``labels`` (what
    :meth:`BlockLabels.voxel_arrays` keeps), through ``table`` if given (local -> global)."""
    values = voxels["labels"] if table is None else table[voxels["labels"]]
    out = np.zeros(tuple(int(v) for v in voxels["shape"]), dtype=values.dtype)
    out.reshape(-1)[voxels["index"]] = values
    return out


def extended_box(block: Box, volume: Box) -> Box:
    """The block grown by one voxel on its high faces, clipped to the volume."""
    stop = tuple(min(b + 1, v) for b, v in zip(block.stop, volume.stop, strict=True))
    return Box(block.start, stop)  # type: ignore[arg-type]


def shell_slabs(block: Box, ext: Box) -> list[tuple[int, tuple[slice, slice, slice]]]:
    """The extended box minus the block, as up to three disjoint slabs (axis, slices
    relative to ``ext.start``): the high z slab, then y, then x."""
    slabs = []
    for axis in range(3):
        if ext.stop[axis] == block.stop[axis]:
            continue  # the block touches the volume's high border here
        lo = [0, 0, 0]
        hi = list(ext.shape)
        lo[axis] = block.shape[axis]
        for other in range(axis):  # slabs of earlier axes already took the overlap
            hi[other] = block.shape[other]
        slabs.append((axis, tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))))
    return slabs  # type: ignore[return-value]


def _raster_index(coords: Sequence[np.ndarray], volume: Box) -> np.ndarray:
    """Raster (C-order) indices in ``volume`` of voxels given by absolute coordinates."""
    _, ny, nx = volume.shape
    z = coords[0].astype(np.int64) - volume.start[0]
    y = coords[1].astype(np.int64) - volume.start[1]
    x = coords[2].astype(np.int64) - volume.start[2]
    return (z * ny + y) * nx + x


def _offset(coords: Sequence[np.ndarray], origin: Sequence[int]) -> list[np.ndarray]:
    return [c.astype(np.int64) + o for c, o in zip(coords, origin, strict=True)]


def label_block(
    mask_ext: np.ndarray,
    block: Box,
    volume: Box,
    *,
    label: LabelFunction = scipy_label,
    keys: np.ndarray | None = None,
) -> BlockLabels:
    """Label one block from the mask of its extended box (:func:`extended_box`).

    ``keys``: a seeded detector's labels (``label`` returns them for the extended box,
    1..n) and ``keys[i - 1]``, the raster index in ``volume`` of label ``i``'s seed; the
    stitch then joins labels by seed and numbers objects in raster order of their seeds."""
    ext = extended_box(block, volume)
    if mask_ext.shape != ext.shape:
        raise ValueError(f"mask shape {mask_ext.shape} is not the extended box {ext.shape}")
    raw, n_raw = label(mask_ext)
    # one scan of the mask: every labelled voxel of the extended box, in raster order (the
    # block is the low corner of its extended box, so owned voxels keep their raster order)
    fg = np.flatnonzero(np.ascontiguousarray(mask_ext))
    raw_fg = raw.reshape(-1)[fg]
    ecoords = np.unravel_index(fg, ext.shape)
    is_owned = np.ones(fg.size, dtype=bool)
    for axis in range(3):
        is_owned &= ecoords[axis] < block.shape[axis]
    coords = tuple(c[is_owned] for c in ecoords)
    raw_owned = raw_fg[is_owned]
    # labels present in the owned voxels become 1..n in raster order of their first owned
    # voxel; labels seen only in the shell become n+1..m (size 0): they still carry
    # connectivity between two other blocks (u and v both in the shell, e.g. across an edge)
    present, first_pos = np.unique(raw_owned, return_index=True)
    order = np.argsort(first_pos, kind="stable")
    lut = np.zeros(n_raw + 1, dtype=np.uint32)
    lut[present[order]] = np.arange(1, present.size + 1, dtype=np.uint32)
    is_shell_only = np.ones(n_raw + 1, dtype=bool)
    is_shell_only[0] = False
    is_shell_only[present] = False
    lut[is_shell_only] = np.arange(present.size + 1, n_raw + 1, dtype=np.uint32)
    labels = lut[raw_owned]
    index = np.ravel_multi_index(coords, block.shape).astype(np.int64)
    sizes = np.bincount(labels, minlength=n_raw + 1)[1:].astype(np.int64)
    first = np.full(n_raw, np.iinfo(np.int64).max, dtype=np.int64)
    first_coords = [c[first_pos[order]] for c in coords]
    first[: present.size] = _raster_index(_offset(first_coords, block.start), volume)
    local_keys = np.zeros(0, np.int64)
    if keys is not None:
        if len(keys) != n_raw:
            raise ValueError(f"{len(keys)} keys for {n_raw} labels")
        local_keys = np.zeros(n_raw, np.int64)
        local_keys[lut[1:].astype(np.int64) - 1] = np.asarray(keys, np.int64)
        first = local_keys.copy()  # objects are numbered by their seed

    # shell: labelled extended voxels outside the owned block
    in_shell = ~is_owned
    shell_label = lut[raw_fg[in_shell]]
    shell_index = _raster_index(_offset([c[in_shell] for c in ecoords], ext.start), volume)
    # low faces: owned voxels another block's shell can reach
    on_face = np.zeros(labels.size, dtype=bool)
    for axis in range(3):
        if block.start[axis] != volume.start[axis]:
            on_face |= coords[axis] == 0
    face_coords = [c[on_face] for c in coords]
    # per-label geometry of the owned voxels, in request-box coordinates; float64 bincount
    # sums stay exact integers (< 2**53 for any block below 2**20 voxels per axis)
    box_coords = [
        c.astype(np.int64) + (b - v)
        for c, b, v in zip(coords, block.start, volume.start, strict=True)
    ]
    coord_sums = np.zeros((n_raw, 3), dtype=np.int64)
    bbox_min = np.full((n_raw, 3), np.iinfo(np.int64).max, dtype=np.int64)
    bbox_max = np.full((n_raw, 3), -1, dtype=np.int64)
    zero_based = labels.astype(np.int64) - 1
    for axis, c in enumerate(box_coords):
        coord_sums[:, axis] = np.bincount(zero_based, weights=c, minlength=n_raw).astype(np.int64)
        np.minimum.at(bbox_min[:, axis], zero_based, c)
        np.maximum.at(bbox_max[:, axis], zero_based, c)
    return BlockLabels(
        shape=np.asarray(block.shape, dtype=np.int64),
        index=index,
        labels=labels,
        sizes=sizes,
        first=first,
        shell_index=shell_index.astype(np.int64),
        shell_label=shell_label.astype(np.uint32),
        face_index=_raster_index(_offset(face_coords, block.start), volume),
        face_label=labels[on_face],
        coord_sums=coord_sums,
        bbox_min=bbox_min,
        bbox_max=bbox_max,
        keys=local_keys,
    )


def _key_links(keys: Sequence[np.ndarray], offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining the nodes (all blocks' labels) that share a seed key."""
    node = np.concatenate(
        [offsets[i] + np.arange(len(k), dtype=np.int64) for i, k in enumerate(keys)] or [[]]
    ).astype(np.int64)
    key = np.concatenate([np.asarray(k, np.int64) for k in keys] or [[]]).astype(np.int64)
    order = np.argsort(key, kind="stable")
    key, node = key[order], node[order]
    same = key[1:] == key[:-1]
    return node[:-1][same], node[1:][same]


@dataclass
class GlobalLabels:
    """The reduce's answer: per block, a lookup table local label -> global id (0 = dropped)."""

    tables: list[np.ndarray]
    n_objects: int
    #: Global object sizes (voxels) of the kept objects, id ``i`` at index ``i - 1``.
    sizes: np.ndarray
    #: Coordinate sums and inclusive bounding boxes of the kept objects (request-box
    #: coordinates, id ``i`` at row ``i - 1``).
    coord_sums: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray
    #: Components before the size filter, and the largest one's size (an empty result's
    #: explanation says whether anything was found at all).
    n_components: int = 0
    largest: int = 0


def stitch(
    blocks: Sequence[BlockLabels] | Sequence[Mapping[str, np.ndarray]],
    *,
    min_size: int,
) -> GlobalLabels:
    """Union the per-block labels into global objects, filter by size, number them.

    ``blocks`` holds, for every block of the plan (in plan order), at least ``sizes``,
    ``first``, ``shell_index``, ``shell_label``, ``face_index``, ``face_label``,
    ``coord_sums``, ``bbox_min`` and ``bbox_max`` (:meth:`BlockLabels.border_arrays`) — the
    ``labels`` array itself is not needed, so a reduce job never holds voxel data.
    """
    get = (
        (lambda b, k: getattr(b, k))
        if blocks and isinstance(blocks[0], BlockLabels)
        else (lambda b, k: b[k])
    )
    counts = np.array([len(get(b, "sizes")) for b in blocks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    n_nodes = int(offsets[-1])
    sizes = np.concatenate([np.asarray(get(b, "sizes"), np.int64) for b in blocks] or [[]])
    first = np.concatenate([np.asarray(get(b, "first"), np.int64) for b in blocks] or [[]])

    # low-face records of all blocks: raster index -> node
    f_idx = [np.asarray(get(b, "face_index"), np.int64) for b in blocks]
    f_node = [
        offsets[i] + np.asarray(get(b, "face_label"), np.int64) - 1 for i, b in enumerate(blocks)
    ]
    face_index = np.concatenate(f_idx) if f_idx else np.zeros(0, np.int64)
    face_node = np.concatenate(f_node) if f_node else np.zeros(0, np.int64)
    order = np.argsort(face_index, kind="stable")
    face_index, face_node = face_index[order], face_node[order]

    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    for i, b in enumerate(blocks):
        s_idx = np.asarray(get(b, "shell_index"), np.int64)
        if s_idx.size == 0:
            continue
        s_node = offsets[i] + np.asarray(get(b, "shell_label"), np.int64) - 1
        pos = np.searchsorted(face_index, s_idx)
        ok = pos < face_index.size
        ok[ok] = face_index[pos[ok]] == s_idx[ok]
        if not ok.all():
            # a labelled shell voxel must be labelled by its owner too (same mask values):
            # anything else means the passes disagree, and the answer would be wrong
            raise RuntimeError(
                f"block {i}: {int((~ok).sum())} shell voxels have no owner label; the "
                "covariance of overlapping voxels differs between blocks"
            )
        src.append(s_node)
        dst.append(face_node[pos])
    keyed = [np.asarray(_get_keys(b), np.int64) for b in blocks]
    if any(len(k) for k in keyed):  # a seeded detector: one object per seed
        a_, b2 = _key_links(keyed, offsets)
        src.append(a_)
        dst.append(b2)
    if n_nodes == 0:
        return GlobalLabels(
            tables=[np.zeros(1, np.uint32) for _ in blocks],
            n_objects=0,
            sizes=np.zeros(0, np.int64),
            coord_sums=np.zeros((0, 3), np.int64),
            bbox_min=np.zeros((0, 3), np.int64),
            bbox_max=np.zeros((0, 3), np.int64),
        )
    if src:
        a = np.concatenate(src)
        b_ = np.concatenate(dst)
    else:
        a = b_ = np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b_)), shape=(n_nodes, n_nodes)).tocsr()
    n_comp, comp = connected_components(graph, directed=False)
    comp_size = np.bincount(comp, weights=sizes, minlength=n_comp).astype(np.int64)
    comp_first = np.full(n_comp, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(comp_first, comp, first)
    kept = np.flatnonzero(comp_size > min_size)
    kept = kept[np.argsort(comp_first[kept], kind="stable")]
    dtype = np.uint32 if kept.size < 2**32 - 1 else np.uint64
    comp_id = np.zeros(n_comp, dtype=dtype)
    comp_id[kept] = np.arange(1, kept.size + 1, dtype=dtype)
    node_id = comp_id[comp]
    tables = [
        np.concatenate([[0], node_id[offsets[i] : offsets[i + 1]]]).astype(dtype)
        for i in range(len(blocks))
    ]
    sums = np.zeros((n_comp, 3), dtype=np.int64)
    bmin = np.full((n_comp, 3), np.iinfo(np.int64).max, dtype=np.int64)
    bmax = np.full((n_comp, 3), -1, dtype=np.int64)
    node_sums = np.concatenate([np.asarray(get(b, "coord_sums"), np.int64) for b in blocks])
    node_min = np.concatenate([np.asarray(get(b, "bbox_min"), np.int64) for b in blocks])
    node_max = np.concatenate([np.asarray(get(b, "bbox_max"), np.int64) for b in blocks])
    for axis in range(3):
        np.add.at(sums[:, axis], comp, node_sums[:, axis])
        np.minimum.at(bmin[:, axis], comp, node_min[:, axis])
        np.maximum.at(bmax[:, axis], comp, node_max[:, axis])
    return GlobalLabels(
        tables=tables,
        n_objects=int(kept.size),
        sizes=comp_size[kept],
        coord_sums=sums[kept],
        bbox_min=bmin[kept],
        bbox_max=bmax[kept],
        n_components=int(n_comp),
        largest=int(comp_size.max(initial=0)),
    )


def _get_keys(block: BlockLabels | Mapping[str, np.ndarray]) -> np.ndarray:
    if isinstance(block, BlockLabels):
        return block.keys
    return block.get("keys", np.zeros(0, np.int64))


def reference_labels(mask: np.ndarray, *, min_size: int) -> np.ndarray:
    """Single-volume reference: 26-connected labels, size > min_size, raster-ordered ids."""
    raw, n = ndimage.label(mask, structure=STRUCTURE_26)
    size = np.bincount(raw.ravel(), minlength=n + 1)
    keep = size > min_size
    keep[0] = False
    lut = np.zeros(n + 1, dtype=np.uint32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return lut[raw]
