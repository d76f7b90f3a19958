"""Where blockwise passes keep their per-block outputs: a local folder or an S3 prefix.

Every per-block output is written first and then *recorded*: a small JSON completion record
``<pass>/<block>.done.json`` holding the CRC-32 and length of each output object and the
fingerprint of the inputs it was computed from (plan geometry, parameters, data source,
upstream global values). A block is skipped on a re-run only when its record exists, names
the same inputs, and every output still has the recorded length and checksum — so a run
killed half-way through writing (an output without a record, a truncated or altered
object) is redone, and a finished block is never recomputed. Local writes go to a
temporary file renamed into place; S3 ``PutObject``
is atomic per object.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from synapse_pipelines.core.errors import SynapsePipelinesError
from synapse_pipelines.io.s3_objects import object_exists, s3_client

#: bytes-like pieces of one object, written back to back (no concatenated copy locally)
Buffer = bytes | bytearray | memoryview


def _parts(data: Buffer | Sequence[Buffer]) -> list[Buffer]:
    return [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)


class Store(Protocol):
    """Minimal object store: bytes under string keys."""

    def put(self, key: str, data: bytes | Sequence[Buffer]) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def location(self, key: str) -> str: ...


class LocalStore:
    """A folder; keys are relative paths."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        parts = Path(key).parts
        if not parts or Path(key).is_absolute() or ".." in parts:
            raise ValueError(f"key {key!r} escapes the store root")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: Buffer | Sequence[Buffer]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-" + path.name)
        try:
            with os.fdopen(fd, "wb") as fh:
                for part in _parts(data):
                    fh.write(part)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def location(self, key: str) -> str:
        return str(self._path(key))


class MemoryStore:
    """A dict: for tests and small in-memory runs (holds every block output)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, data: Buffer | Sequence[Buffer]) -> None:
        self.objects[key] = b"".join(bytes(p) for p in _parts(data))

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def exists(self, key: str) -> bool:
        return key in self.objects

    def location(self, key: str) -> str:
        return f"memory:{key}"


class S3Store:
    """An S3 prefix (``s3://bucket/prefix``); the client comes from
    :func:`~synapse_pipelines.io.s3_objects.s3_client` by default."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = s3_client(client)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: Buffer | Sequence[Buffer]) -> None:
        body = b"".join(bytes(p) for p in _parts(data))
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def exists(self, key: str) -> bool:
        return object_exists(self.client, self.bucket, self._key(key))

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


def open_store(location: str | Path, *, s3_client: Any = None) -> Store:
    """``s3://bucket/prefix`` -> :class:`S3Store`; anything else is a local folder."""
    text = str(location)
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        if not bucket:
            raise SynapsePipelinesError(
                f"{text!r} names no bucket", field="workdir", hint="use s3://bucket/prefix"
            )
        return S3Store(bucket, prefix, client=s3_client)
    return LocalStore(text)


# -- encoding ----------------------------------------------------------------------------
def checksum(data: Buffer | Sequence[Buffer]) -> dict[str, Any]:
    """CRC-32 and length of an object (CRC-32: one of S3's own object checksums; ~4 GB/s,
    so recording it costs far less than the pass that produced the data)."""
    crc = 0
    size = 0
    for part in _parts(data):
        crc = zlib.crc32(part, crc)
        size += memoryview(part).nbytes
    return {"crc32": f"{crc:08x}", "bytes": size}


def encode_array(array: np.ndarray) -> list[Buffer]:
    """One array as ``.npy`` bytes: the header and the array's own memory (no copy)."""
    array = np.ascontiguousarray(array)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(array))
    return [head.getvalue(), memoryview(array).cast("B")]


def decode_array(data: Buffer) -> np.ndarray:
    """An array from ``.npy`` bytes, without copying the data (read-only for ``bytes``)."""
    stream = io.BytesIO(memoryview(data)[:4096])  # header is at most a few hundred bytes
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    count = int(np.prod(shape))
    array = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())
    return array.reshape(shape, order="F" if fortran else "C")


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Small arrays as one uncompressed ``.npz``."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def decode_arrays(data: Buffer) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def encode_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


# -- completion records ------------------------------------------------------------------
def record_key(pass_name: str, block: int | str) -> str:
    return f"{pass_name}/{block}.done.json"


def output_key(pass_name: str, block: int | str, name: str) -> str:
    return f"{pass_name}/{block}.{name}"


def write_outputs(
    store: Store,
    pass_name: str,
    block: int | str,
    outputs: Mapping[str, Buffer | Sequence[Buffer]],
    *,
    inputs: str,
) -> dict[str, Any]:
    """Write a block's outputs, then its completion record (last, so it proves the rest)."""
    sums = {}
    for name, data in outputs.items():
        store.put(output_key(pass_name, block, name), data)
        sums[name] = checksum(data)
    record = {"pass": pass_name, "block": block, "inputs": inputs, "outputs": sums}
    store.put(record_key(pass_name, block), encode_json(record))
    return record


def completed(
    store: Store,
    pass_name: str,
    block: int | str,
    *,
    inputs: str,
    names: Sequence[str] | None = None,
    verify: bool = True,
) -> dict[str, bytes] | None:
    """The block's outputs when its record exists, matches ``inputs`` and the checksums
    hold; otherwise ``None`` (the block must be (re)computed). ``names`` restricts what is
    read (a reduce needs only the small outputs); ``verify=False`` checks lengths only (a
    later pass reading outputs the skip check of this run already verified)."""
    key = record_key(pass_name, block)
    if not store.exists(key):
        return None
    try:
        record = json.loads(store.get(key))
    except ValueError:
        return None
    if record.get("inputs") != inputs:
        return None
    out = {}
    recorded = record.get("outputs", {})
    if names is not None and not set(names) <= set(recorded):
        return None
    for name, digest in recorded.items():
        if names is not None and name not in names:
            continue
        okey = output_key(pass_name, block, name)
        if not store.exists(okey):
            return None
        data = store.get(okey)
        if len(data) != digest.get("bytes"):
            return None
        if verify and checksum(data) != digest:
            return None
        out[name] = data
    return out


def fingerprint(*parts: Any) -> str:
    """Short stable digest of JSON-serialisable inputs."""
    return hashlib.sha256(encode_json(list(parts))).hexdigest()[:24]
