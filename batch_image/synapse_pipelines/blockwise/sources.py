"""Where blockwise passes read the two channels from, one box at a time.

A source knows the extent of the volume (the request box, in absolute voxel coordinates)
and returns the presynaptic and postsynaptic arrays of any sub-box. Memory stays bounded
by the box read, never by the volume: NumPy memmaps, Zarr arrays and TIFF files opened
through ``tifffile``'s Zarr store all read lazily; BOSS is read through ``boss.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import tifffile
import zarr

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.core.geometry import Box


class VolumeSource(Protocol):
    #: The volume's extent (the request box), absolute voxel coordinates z, y, x.
    box: Box

    def read(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """Presynaptic and postsynaptic channel of ``box`` (inside :attr:`box`)."""
        ...


def _check_inside(outer: Box, box: Box) -> None:
    if not outer.contains(box):
        raise ValueError(f"box {box} is outside the volume {outer}")


class ArraySource:
    """Two array-likes (NumPy arrays, memmaps, Zarr arrays) of equal shape."""

    def __init__(self, pre: Any, post: Any, *, origin: tuple[int, int, int] = (0, 0, 0)):
        if tuple(pre.shape) != tuple(post.shape) or len(pre.shape) != 3:
            raise SynapsePipelinesError(
                f"channel shapes differ or are not 3-D: {tuple(pre.shape)} vs {tuple(post.shape)}",
                field="volume",
                hint="give two 3-D channels (z, y, x) of the same shape",
            )
        self.pre = pre
        self.post = post
        stop = tuple(o + s for o, s in zip(origin, pre.shape, strict=True))
        self.box = Box(origin, stop)  # type: ignore[arg-type]

    def read(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        _check_inside(self.box, box)
        sl = box.slices(self.box.start)
        return np.asarray(self.pre[sl]), np.asarray(self.post[sl])


class NpyFile:
    """A ``.npy`` file sliced through a memory map opened for each read only.

    A long-lived map would keep every page it ever touched in the process's resident set,
    so reading a whole volume block by block would look (and count) like loading it all.
    """

    def __init__(self, path: Path):
        self.path = path
        probe = np.load(path, mmap_mode="r")
        self.shape = probe.shape
        self.dtype = probe.dtype
        del probe

    def __getitem__(self, index: Any) -> np.ndarray:
        mapped = np.load(self.path, mmap_mode="r")
        try:
            return np.array(mapped[index])
        finally:
            del mapped


def _open_lazy(path: Path) -> Any:
    suffix = "".join(path.suffixes).lower()
    if suffix.endswith(".npy"):
        return NpyFile(path)
    if suffix.endswith((".tif", ".tiff")):
        return zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    if path.is_dir() or suffix.endswith(".zarr"):
        return zarr.open(str(path), mode="r")
    raise SynapsePipelinesError(
        f"cannot read {path.name!r} lazily",
        field="volume",
        hint="use a .npy, .tif/.tiff or .zarr file per channel",
    )


def open_file_source(pre: str | Path, post: str | Path) -> ArraySource:
    """Two per-channel files (.npy, .tif/.tiff, .zarr), opened without loading them."""
    return ArraySource(_open_lazy(Path(pre)), _open_lazy(Path(post)))


class CallableSource:
    """Any ``read(box) -> (pre, post)`` function, e.g. a BOSS cutout reader."""

    def __init__(self, box: Box, read: Callable[[Box], tuple[np.ndarray, np.ndarray]]):
        self.box = box
        self._read = read

    def read(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        _check_inside(self.box, box)
        return self._read(box)
