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

All arrays here are plain NumPy; nothing reads or writes files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from synapse_pipelines.geometry import Box

#: 26-connectivity: faces, edges and corners.
STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


@dataclass
class BlockLabels:
    """What the labelling pass keeps of one block (see the module docstring)."""

    #: Local labels (0 = background, 1..n) of the owned voxels.
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

    @property
    def n_labels(self) -> int:
        return int(self.sizes.size)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "labels": self.labels,
            "sizes": self.sizes,
            "first": self.first,
            "shell_index": self.shell_index,
            "shell_label": self.shell_label,
            "face_index": self.face_index,
            "face_label": self.face_label,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> BlockLabels:
        return cls(**{k: np.asarray(arrays[k]) for k in cls.__dataclass_fields__})


def extended_box(block: Box, volume: Box) -> Box:
    """The block grown by one voxel on its high faces, clipped to the volume."""
    stop = tuple(min(b + 1, v) for b, v in zip(block.stop, volume.stop, strict=True))
    return Box(block.start, stop)  # type: ignore[arg-type]


def _raster_index(coords: Sequence[np.ndarray], volume: Box) -> np.ndarray:
    """Raster (C-order) indices in ``volume`` of voxels given by absolute coordinates."""
    _, ny, nx = volume.shape
    z = coords[0].astype(np.int64) - volume.start[0]
    y = coords[1].astype(np.int64) - volume.start[1]
    x = coords[2].astype(np.int64) - volume.start[2]
    return (z * ny + y) * nx + x


def label_block(mask_ext: np.ndarray, block: Box, volume: Box) -> BlockLabels:
    """Label one block from the mask of its extended box (:func:`extended_box`)."""
    ext = extended_box(block, volume)
    if mask_ext.shape != ext.shape:
        raise ValueError(f"mask shape {mask_ext.shape} is not the extended box {ext.shape}")
    raw, n_raw = ndimage.label(mask_ext, structure=STRUCTURE_26)
    owned = raw[block.slices(ext.start)]
    # labels present in the owned voxels become 1..n in raster order of their first owned
    # voxel; labels seen only in the shell become n+1..m (size 0): they still carry
    # connectivity between two other blocks (u and v both in the shell, e.g. across an edge)
    flat = owned.ravel()
    nz = np.flatnonzero(flat)
    present, first_pos = np.unique(flat[nz], return_index=True)
    order = np.argsort(nz[first_pos], kind="stable")
    lut = np.zeros(n_raw + 1, dtype=np.uint32)
    lut[present[order]] = np.arange(1, present.size + 1, dtype=np.uint32)
    shell_only = np.setdiff1d(np.arange(1, n_raw + 1), present, assume_unique=True)
    lut[shell_only] = np.arange(present.size + 1, n_raw + 1, dtype=np.uint32)
    labels = lut[owned]
    sizes = np.bincount(labels.ravel(), minlength=n_raw + 1)[1:].astype(np.int64)
    first_local = np.unravel_index(nz[first_pos][order], owned.shape)
    first = np.full(n_raw, np.iinfo(np.int64).max, dtype=np.int64)
    first[: present.size] = _raster_index(
        [c + s for c, s in zip(first_local, block.start, strict=True)], volume
    )

    # shell: labelled extended voxels outside the owned block
    relabelled = lut[raw]
    shell_mask = relabelled > 0
    shell_mask[block.slices(ext.start)] = False
    sc = np.nonzero(shell_mask)
    shell_label = relabelled[sc]
    shell_index = _raster_index([c + s for c, s in zip(sc, ext.start, strict=True)], volume)

    # low faces: owned voxels another block's shell can reach
    face_idx: list[np.ndarray] = []
    face_lab: list[np.ndarray] = []
    for axis in range(3):
        if block.start[axis] == volume.start[axis] or labels.shape[axis] == 0:
            continue
        plane = np.take(labels, 0, axis=axis)
        pc = list(np.nonzero(plane))
        lab = plane[tuple(pc)]
        pc.insert(axis, np.zeros_like(pc[0]))
        face_idx.append(
            _raster_index([c + s for c, s in zip(pc, block.start, strict=True)], volume)
        )
        face_lab.append(lab)
    if face_idx:
        fi = np.concatenate(face_idx)
        fl = np.concatenate(face_lab)
        fi, keep = np.unique(fi, return_index=True)
        fl = fl[keep]
    else:
        fi = np.zeros(0, np.int64)
        fl = np.zeros(0, np.uint32)
    return BlockLabels(
        labels=labels,
        sizes=sizes,
        first=first.astype(np.int64),
        shell_index=shell_index.astype(np.int64),
        shell_label=shell_label.astype(np.uint32),
        face_index=fi.astype(np.int64),
        face_label=fl.astype(np.uint32),
    )


@dataclass
class GlobalLabels:
    """The reduce's answer: per block, a lookup table local label -> global id (0 = dropped)."""

    tables: list[np.ndarray]
    n_objects: int
    #: Global object sizes (voxels) of the kept objects, id ``i`` at index ``i - 1``.
    sizes: np.ndarray


def stitch(
    blocks: Sequence[BlockLabels] | Sequence[Mapping[str, np.ndarray]],
    *,
    min_size: int,
) -> GlobalLabels:
    """Union the per-block labels into global objects, filter by size, number them.

    ``blocks`` holds, for every block of the plan (in plan order), at least ``sizes``,
    ``first``, ``shell_index``, ``shell_label``, ``face_index`` and ``face_label`` — the
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
    if n_nodes == 0:
        return GlobalLabels(
            tables=[np.zeros(1, np.uint32) for _ in blocks],
            n_objects=0,
            sizes=np.zeros(0, np.int64),
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
    return GlobalLabels(tables=tables, n_objects=int(kept.size), sizes=comp_size[kept])


def reference_labels(mask: np.ndarray, *, min_size: int) -> np.ndarray:
    """Single-volume reference: 26-connected labels, size > min_size, raster-ordered ids."""
    raw, n = ndimage.label(mask, structure=STRUCTURE_26)
    size = np.bincount(raw.ravel(), minlength=n + 1)
    keep = size > min_size
    keep[0] = False
    lut = np.zeros(n + 1, dtype=np.uint32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return lut[raw]
