"""The local BOSS server's voxels: one Zarr v3 array per channel, striped per-cuboid locks.

Owns :class:`BossStore`, the whole of what a server keeps under its data directory: the data
model (inherited from :class:`~synapse_pipelines.local.boss_metadata.BossMetadata`) and the
voxels. Each channel is ``<data_dir>/volumes/<uid>.zarr``, shaped (T, Z, Y, X) over the
coordinate frame, chunked by BOSS's 16x512x512 cuboids (one time sample each), blosc LZ4 with
byte shuffle, empty chunks not stored. Chunks are read and written directly in Zarr's layout
(``c/t/z/y/x``, write-then-rename) because zarr-python's own path cost about three times more
CPU per cuboid; ``zarr.open_array`` reads every channel. Untouched chunks cost nothing, so
frames larger than memory or disk are fine, and data survives restarts.

Concurrency: every read or write holds the striped locks of the cuboids it touches, taken in
sorted order (no deadlock), so the read-modify-write of a partially covered cuboid is atomic.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import blosc
import numpy as np
import zarr
from zarr.codecs import BloscCodec

from synapse_pipelines.local.boss_metadata import BossMetadata, ChannelVolume

#: BOSS cuboid, (z, y, x); the chunk shape of every stored channel (with t = 1).
CUBOID = (16, 512, 512)
#: Chunk of the stored (T, Z, Y, X) arrays: one cuboid of one time sample.
CHUNK = (1, *CUBOID)
_LOCK_STRIPES = 1024


class BossStore(BossMetadata):
    """The data model and the voxels on disk of one local BOSS server."""

    def __init__(self, data_dir: str | os.PathLike[str], *, creator: str = "local-boss"):
        super().__init__(data_dir, creator=creator)
        (self.data_dir / "volumes").mkdir(exist_ok=True)
        self._chunk_locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._arrays: dict[str, bool] = {}  # uids whose zarr.json exists
        self._arrays_lock = threading.Lock()

    def delete_channel(self, c: str, e: str, ch: str) -> str:
        """Delete the channel and its voxels; return its uid."""
        uid = super().delete_channel(c, e, ch)
        self._remove_array(uid)
        self.drop_levels(uid)
        return uid

    def _remove_array(self, uid: str) -> None:
        with self._arrays_lock:
            self._arrays.pop(uid, None)
        path = self._volume_path(uid)
        if path.exists():
            # rename first so a half-finished delete never leaves a readable partial volume
            trash = path.with_name(f"{path.name}.deleted-{secrets.token_hex(4)}")
            os.replace(path, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def drop_levels(self, uid: str) -> None:
        """Remove the channel's downsampled resolutions (arrays ``<uid>.r<N>.zarr``)."""
        for path in (self.data_dir / "volumes").glob(f"{uid}.r*.zarr"):
            self._remove_array(path.name[: -len(".zarr")])

    def has_chunks(self, vol: ChannelVolume, region: tuple[slice, ...]) -> bool:
        """Whether any cuboid of ``region`` (array indices) has been written."""
        return any(self._chunk_file(vol, key).exists() for key in self._chunk_keys(region))

    def _volume_path(self, uid: str) -> Path:
        return self.data_dir / "volumes" / f"{uid}.zarr"

    def _ensure_array(self, vol: ChannelVolume) -> Path:
        """Create the channel's Zarr array metadata on first write; return its folder.

        Only ``zarr.json`` is written through zarr: chunks are read and written directly
        below (zarr's own path costs ~3x more CPU per cuboid), in exactly zarr's layout and
        codec (``c/t/z/y/x``, blosc frames), so ``zarr.open_array(<data_dir>/volumes/<uid>
        .zarr)`` reads every channel.
        """
        path = self._volume_path(vol.uid)
        with self._arrays_lock:
            if vol.uid not in self._arrays and not (path / "zarr.json").exists():
                zarr.create_array(
                    store=str(path),
                    shape=vol.shape,
                    chunks=CHUNK,
                    dtype=vol.dtype,
                    fill_value=0,
                    # lz4 + byte shuffle: fast both ways; sparse masks shrink ~50x
                    compressors=BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"),
                    config={"write_empty_chunks": False},
                )
            self._arrays[vol.uid] = True
        return path

    def _chunk_file(self, vol: ChannelVolume, key: tuple[int, ...]) -> Path:
        return self._volume_path(vol.uid).joinpath("c", *(str(k) for k in key))

    def _load_chunk(self, vol: ChannelVolume, key: tuple[int, ...]) -> np.ndarray | None:
        try:
            raw = self._chunk_file(vol, key).read_bytes()
        except FileNotFoundError:
            return None
        return np.frombuffer(blosc.decompress(raw), dtype=vol.dtype).reshape(CHUNK)

    def _store_chunk(self, vol: ChannelVolume, key: tuple[int, ...], chunk: np.ndarray) -> None:
        path = self._chunk_file(vol, key)
        if not chunk.any():  # zarr's write_empty_chunks=False: absent means all fill (0)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        raw = blosc.compress(
            np.ascontiguousarray(chunk), typesize=vol.dtype.itemsize, clevel=1,
            shuffle=blosc.SHUFFLE, cname="lz4",
        )  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        # write-then-rename: a reader never sees half a chunk, a crash never leaves one
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, path)

    @staticmethod
    def _chunk_keys(region: tuple[slice, ...]) -> Iterator[tuple[int, ...]]:
        ranges = [
            range(sl.start // n, (sl.stop - 1) // n + 1)
            for sl, n in zip(region, CHUNK, strict=True)
        ]
        return itertools.product(*ranges)  # type: ignore[return-value]

    @staticmethod
    def _overlap(
        key: tuple[int, ...], region: tuple[slice, ...]
    ) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """(slices in the chunk, slices in the region's array) of their intersection."""
        in_chunk, in_region = [], []
        for k, n, sl in zip(key, CHUNK, region, strict=True):
            lo, hi = max(sl.start, k * n), min(sl.stop, (k + 1) * n)
            in_chunk.append(slice(lo - k * n, hi - k * n))
            in_region.append(slice(lo - sl.start, hi - sl.start))
        return tuple(in_chunk), tuple(in_region)

    @contextlib.contextmanager
    def _locked(self, vol: ChannelVolume, region: tuple[slice, ...]) -> Iterator[None]:
        stripes = {hash((vol.uid, *key)) % _LOCK_STRIPES for key in self._chunk_keys(region)}
        locks = [self._chunk_locks[i] for i in sorted(stripes)]
        for lock in locks:
            lock.acquire()
        try:
            yield
        finally:
            for lock in reversed(locks):
                lock.release()

    def read(self, vol: ChannelVolume, region: tuple[slice, ...]) -> np.ndarray:
        """Read a (T, Z, Y, X) region given in array indices."""
        out = np.zeros(tuple(s.stop - s.start for s in region), dtype=vol.dtype)
        if vol.uid not in self._arrays and not self._volume_path(vol.uid).exists():
            return out
        with self._locked(vol, region):
            for key in self._chunk_keys(region):
                chunk = self._load_chunk(vol, key)
                if chunk is not None:
                    in_chunk, in_region = self._overlap(key, region)
                    out[in_region] = chunk[in_chunk]
        return out

    def write(self, vol: ChannelVolume, region: tuple[slice, ...], data: np.ndarray | int) -> None:
        """Write ``data`` (shaped like ``region``, or a scalar) to a (T, Z, Y, X) region."""
        self._ensure_array(vol)
        scalar = not isinstance(data, np.ndarray)
        with self._locked(vol, region):
            for key in self._chunk_keys(region):
                in_chunk, in_region = self._overlap(key, region)
                covered = all(
                    sl.start == 0 and (sl.stop == n or k * n + sl.stop == lim)
                    for k, n, sl, lim in zip(key, CHUNK, in_chunk, vol.shape, strict=True)
                )
                if covered and not scalar and data[in_region].shape == CHUNK:  # type: ignore[index]
                    # an interior cuboid replaced whole: encode the caller's slab directly
                    self._store_chunk(vol, key, data[in_region])  # type: ignore[index]
                    continue
                old = None if covered else self._load_chunk(vol, key)
                # (a loaded chunk is a read-only frombuffer view: copy it)
                chunk = np.zeros(CHUNK, dtype=vol.dtype) if old is None else old.copy()
                chunk[in_chunk] = data if scalar else data[in_region]  # type: ignore[index]
                self._store_chunk(vol, key, chunk)

    def stored_chunks(self, vol: ChannelVolume) -> Iterator[tuple[slice, ...]]:
        """Regions of the cuboids that have been written (for id searches)."""
        path = self._volume_path(vol.uid) / "c"
        if not path.exists():
            return
        for file in path.rglob("*"):
            if file.is_file() and not file.name.startswith("."):
                t, z, y, x = (int(p) for p in file.relative_to(path).parts)
                starts = (t, z * CUBOID[0], y * CUBOID[1], x * CUBOID[2])
                yield tuple(
                    slice(s, min(s + n, lim))
                    for s, n, lim in zip(starts, (1, *CUBOID), vol.shape, strict=True)
                )
