"""S3 objects: the one S3 client factory and the object helpers every S3 user shares.

:func:`s3_client` is where every S3 client of the package comes from (the workflow steps, the
blockwise store); the helpers read and write JSON objects (:func:`update_json`: a
read-modify-write that concurrent writers cannot undo), test for an object, and move a
local folder to and from an S3 prefix with checksums and content types. Light (boto3 only,
no numpy), so the Lambda handlers use it too.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from synapse_pipelines.core.errors import aws_error_code

#: Error codes of a HEAD or GET on a key that does not exist.
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
#: Error codes of a conditional write that lost to another writer.
CONFLICT_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})

#: Content types of the files a results folder holds (anything else: octet-stream).
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".tif": "image/tiff",
}


def s3_client(client: Any | None = None, *, session: Any | None = None) -> Any:
    """``client`` when given (tests, the local runtime), else a new S3 client of ``session``
    (a boto3 session; default: boto3's) signing with SigV4: presigned URLs then last up to
    7 days (SigV2 ones are not accepted by newer regions), and uploads carry SHA-256
    checksums."""
    if client is not None:
        return client
    # start-up time: boto3 takes ~0.5 s to import, and most callers pass their own client
    import boto3
    from botocore.config import Config  # part of boto3: the same reason

    return (session or boto3).client("s3", config=Config(signature_version="s3v4"))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix, "application/octet-stream")


def put_json(s3: Any, bucket: str, key: str, data: Any) -> None:
    body = json.dumps(data, indent=2, sort_keys=False, default=str).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def get_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def update_json(
    s3: Any, bucket: str, key: str, change: Callable[[Any], Any], *, attempts: int = 10
) -> Any:
    """Read-modify-write of a JSON object that several writers update at once (PublishToS3
    and PublishToBoss both complete manifest.json): ``change(data)`` returns the new data,
    written only if the object is still the one read (``If-Match`` on its ETag); on a
    conflict it is read and changed again. Returns what was written."""
    for attempt in range(attempts):
        got = s3.get_object(Bucket=bucket, Key=key)
        data = change(json.loads(got["Body"].read()))
        body = json.dumps(data, indent=2, sort_keys=False, default=str).encode()
        try:
            s3.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType="application/json",
                IfMatch=got["ETag"],
            )  # fmt: skip
            return data
        except Exception as exc:
            if aws_error_code(exc) not in CONFLICT_CODES or attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0, 0.05 * 2**attempt))  # another writer got in first
    raise AssertionError("unreachable")


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    """Whether ``key`` exists; any error other than "not found" propagates."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if aws_error_code(exc) in NOT_FOUND_CODES:
            return False
        raise
    return True


def _object_key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}"


def upload_folder(
    s3: Any, folder: Path, bucket: str, prefix: str, names: Sequence[str] | None = None
) -> dict[str, str]:
    """Upload the files of ``folder`` (or only ``names``) to ``<prefix>/<relative path>``;
    return relative path -> sha256.

    The sha256 travels as object metadata, so a manifest can be checked against S3 without
    downloading (and S3 verifies its own SHA-256 checksum of the upload).
    """
    uploaded = {}
    paths = [folder / n for n in names] if names else sorted(p for p in folder.rglob("*"))
    for path in paths:
        if not path.is_file():
            continue
        name = path.relative_to(folder).as_posix()
        digest = sha256_file(path)
        extra = {
            "Metadata": {"sha256": digest},
            "ContentType": content_type(path),
            "ChecksumAlgorithm": "SHA256",
        }
        s3.upload_file(str(path), bucket, _object_key(prefix, name), ExtraArgs=extra)
        uploaded[name] = digest
    return uploaded


def download_files(s3: Any, bucket: str, prefix: str, names: Sequence[str], folder: Path) -> None:
    """Download ``<prefix>/<name>`` of every name into ``folder/<name>``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        s3.download_file(bucket, _object_key(prefix, name), str(folder / name))
