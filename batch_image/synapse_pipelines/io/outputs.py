"""The results folder: what the detect step writes into it, and the manifest.

Owns :func:`write_results` / :func:`write_table_results` (the detect step's artefacts),
:func:`check_results_folder`, the empty-result explanation, and the manifest
(:func:`write_manifest`, :func:`update_manifest`, :func:`add_files`,
:func:`verify_manifest`: checksums of every file, software versions, secrets scrubbed).

Layout of ``<results_key>/`` (the same names locally, in S3 and in links)::

    predictions.ome.tif   0/255 uint8 mask, zlib-compressed OME-TIFF, physical voxel sizes
    synapse_ids.ome.tif   uint32 synapse ids (0 = background), same format
    predictions.ome.zarr, synapse_ids.ome.zarr, raw/<channel>.ome.zarr
                          the same volumes and the raw cutout as multiscale OME-Zarr
                          (io.viewable_volumes; what `synapse-pipelines view` shows)
    synapses.csv          the synapse table (science.features), + synapses.csv.json
    manifest.json         request (no secrets), results key, versions, parameters, timings,
                          counts, sha256 + size of every other file
    report.html, clustering.json, links.csv   added later by the report / publish steps

Why OME-TIFF (see docs/outputs.md): one self-describing file per volume, served as is by
one presigned S3 URL and opened directly by Fiji, napari and tifffile; OME-Zarr is a tree
of many objects (no single URL, needs a Zarr-aware reader); pickle is neither portable
nor safe to load. The OME schema has no uint64 pixel type, so ids are stored as uint32
(a volume with more than 4 294 967 295 synapses is refused with a clear error).

The volume files themselves (write, read, OME metadata) are
:mod:`synapse_pipelines.io.ome_tiff`'s. Everything written here goes through its
:func:`~synapse_pipelines.io.ome_tiff.atomic_write` (temporary file + rename), so a reader
never sees half a file, and nothing is overwritten unless asked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import re
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# the artefact names are core.artefacts'; they stay importable here as outputs.REPORT etc.
# because the CLI and the docs (docs/outputs.md) name them so
from synapse_pipelines.core.artefacts import (
    ARTEFACTS as ARTEFACTS,
    CLUSTERING as CLUSTERING,
    LINKS as LINKS,
    MANIFEST as MANIFEST,
    PREDICTIONS as PREDICTIONS,
    PREDICTIONS_OME_ZARR as PREDICTIONS_OME_ZARR,
    PREDICTIONS_ZARR as PREDICTIONS_ZARR,
    RAW_FOLDER as RAW_FOLDER,
    REPORT as REPORT,
    SYNAPSE_IDS as SYNAPSE_IDS,
    SYNAPSE_IDS_OME_ZARR as SYNAPSE_IDS_OME_ZARR,
    SYNAPSE_IDS_ZARR as SYNAPSE_IDS_ZARR,
    SYNAPSES_CSV as SYNAPSES_CSV,
    SYNAPSES_META as SYNAPSES_META,
)
from synapse_pipelines.io.ome_tiff import OutputError, atomic_write, write_volume
from synapse_pipelines.io.staging import check_creatable, staged_folder
from synapse_pipelines.io.synapse_table_files import write_synapse_table
from synapse_pipelines.io.viewable_volumes import write_viewable_volumes

MANIFEST_SCHEMA = "synapse-pipelines/manifest/1"

#: Packages whose versions the manifest records.
SOFTWARE = (
    "synapse-pipelines",
    "numpy",
    "scipy",
    "pandas",
    "tifffile",
    "zarr",
    "scikit-learn",
    "plotly",
    "intern",
    "pydantic",
)

_CHUNK = 1 << 20


# -- manifest -----------------------------------------------------------------------------


def file_digest(path: str | Path) -> dict[str, Any]:
    """sha256 and size of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return {"sha256": h.hexdigest(), "bytes": size}


def software_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the results, plus Python."""
    versions = {"python": platform.python_version()}
    for dist in SOFTWARE:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


_SECRET_KEYS = re.compile(r"^(token|password|secret_value|aws_secret_access_key)$", re.I)


def _scrub(obj: Any) -> Any:
    """Drop keys that can only hold a secret (a defence in depth: public_dict has none)."""
    if isinstance(obj, Mapping):
        return {str(k): _scrub(v) for k, v in obj.items() if not _SECRET_KEYS.match(str(k))}
    if isinstance(obj, list | tuple):
        return [_scrub(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _listed_files(folder: Path) -> dict[str, dict[str, Any]]:
    files = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        hidden = any(part.startswith(".") for part in p.relative_to(folder).parts)
        if p.is_file() and rel != MANIFEST and not hidden:  # hidden: temporary, staging
            files[rel] = file_digest(p)
    return files


def check_complete_results(folder: str | Path, *, option: str = "results folder") -> None:
    """Refuse a folder holding results but no manifest (written last): a run was cut off."""
    folder = Path(folder)
    if folder.is_dir() and not (folder / MANIFEST).is_file() and existing_results(folder):
        raise OutputError(
            f"no {MANIFEST} in {folder}: not a complete results folder (an interrupted run?)",
            field=option,
            hint="run detect into it again with --overwrite, or into a new --out",
        )


def read_manifest(folder: str | Path) -> dict[str, Any]:
    check_complete_results(folder)
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise OutputError(
            f"no {MANIFEST} in {folder}",
            field="results folder",
            hint="pass a folder written by `synapse-pipelines detect` or the detect step",
        )
    return json.loads(path.read_text())


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> Path:
    """(Re)write ``manifest.json`` with the checksums of every file now in ``folder``.

    Files the manifest already lists but that are not in ``folder`` keep their entries:
    later steps work on a partial download (the report step fetches synapses.csv and the
    manifest, not the volumes), and the volumes stay where they were, unchanged.
    """
    folder = Path(folder)
    data = _scrub(dict(manifest))
    data["schema"] = MANIFEST_SCHEMA
    files = {k: v for k, v in dict(manifest.get("files") or {}).items() if isinstance(v, Mapping)}
    files.update(_listed_files(folder))
    data["files"] = dict(sorted(files.items()))
    data["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
    path = folder / MANIFEST
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")
    return path


def update_manifest(folder: str | Path, **sections: Any) -> dict[str, Any]:
    """Merge ``sections`` into the manifest (dicts are merged one level deep), re-hash files."""
    manifest = read_manifest(folder)
    for key, value in sections.items():
        if isinstance(value, Mapping) and isinstance(manifest.get(key), Mapping):
            manifest[key] = {**manifest[key], **value}
        else:
            manifest[key] = value
    write_manifest(folder, manifest)
    return read_manifest(folder)


def add_files(
    folder: str | Path,
    files: Mapping[str, bytes | str | Path],
    *,
    overwrite: bool = False,
    **sections: Any,
) -> dict[str, Any]:
    """Add files (name -> bytes, text, or a path to copy) to a results folder, then re-hash.

    Used by the report step (report.html, clustering.json) and the publish steps
    (links.csv). ``sections`` are merged into the manifest at the same time (e.g.
    ``timings={"report": 3.2}``). Existing files are kept unless ``overwrite``.
    """
    folder = Path(folder)
    read_manifest(folder)  # fail early, before writing anything, if this is no results folder
    for name, content in files.items():
        target = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts or name == MANIFEST:
            raise OutputError(f"refusing to write {name!r} into {folder}", field="files")
        with atomic_write(target, overwrite=overwrite) as tmp:
            if isinstance(content, bytes):
                tmp.write_bytes(content)
            elif isinstance(content, Path):
                tmp.write_bytes(content.read_bytes())
            else:
                tmp.write_text(content)
    return update_manifest(folder, **sections)


def verify_manifest(folder: str | Path) -> list[str]:
    """Problems found re-checking every listed file (empty list = all match)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    problems = []
    for name, expected in manifest.get("files", {}).items():
        p = folder / name
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif file_digest(p) != {k: expected[k] for k in ("sha256", "bytes")}:
            problems.append(f"{name}: checksum or size differs")
    return problems


# -- the detect step's results ------------------------------------------------------------


#: What marks a folder as holding results (of a single job or a blockwise run).
RESULT_MARKERS = (
    PREDICTIONS,
    SYNAPSE_IDS,
    PREDICTIONS_ZARR,
    SYNAPSE_IDS_ZARR,
    SYNAPSES_CSV,
    MANIFEST,
)


def existing_results(folder: str | Path) -> list[str]:
    """The :data:`RESULT_MARKERS` already in ``folder`` (empty: it holds no results)."""
    return [n for n in RESULT_MARKERS if (Path(folder) / n).exists()]


def check_results_folder(folder: str | Path, *, overwrite: bool, option: str = "out") -> None:
    """Fail early (before any work) if ``folder`` cannot take new results.

    A file in the way, a folder that cannot be created, or results already there while
    ``overwrite`` is false.
    """
    folder = Path(folder)
    check_creatable(folder, option=option, folder=True)
    if not overwrite:
        existing = existing_results(folder)
        if existing:
            raise OutputError(
                f"{folder} already holds results ({', '.join(existing)})",
                field=option,
                hint="choose another output folder, or pass --overwrite to replace them",
            )


#: Everything a run writes into its results folder (files and stores), so a replacement
#: leaves nothing of the run before it (a blockwise run's Zarr stores, an old report).
RESULT_ARTEFACTS = (
    *ARTEFACTS,
    SYNAPSES_META,
    PREDICTIONS_ZARR,
    SYNAPSE_IDS_ZARR,
    PREDICTIONS_OME_ZARR,
    SYNAPSE_IDS_OME_ZARR,
    RAW_FOLDER,
)


def remove_results(folder: str | Path) -> list[str]:
    """Delete every :data:`RESULT_ARTEFACTS` entry of ``folder`` (other files stay); return
    the names removed."""
    removed = []
    for name in RESULT_ARTEFACTS:
        path = Path(folder) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def _as_uint32_ids(labels: np.ndarray) -> np.ndarray:
    """Ids as uint32 (the contract's type for synapse_ids), refusing values that do not fit."""
    labels = np.asarray(labels)
    if labels.dtype == np.uint32:
        return labels
    if not np.issubdtype(labels.dtype, np.integer):
        raise OutputError(
            f"synapse ids must be integers, got {labels.dtype}",
            field="labels",
            hint="pass the detector's label volume",
        )
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint32).max):
        raise OutputError(
            "synapse ids must lie in 0..4294967295",
            field="labels",
            hint="relabel the ids consecutively (e.g. skimage.segmentation.relabel_sequential)",
        )
    return labels.astype(np.uint32)


def write_results(
    folder: str | Path,
    *,
    mask: np.ndarray,
    labels: np.ndarray,
    table: pd.DataFrame,
    voxel_size: Sequence[float],
    voxel_unit: str = "nanometers",
    origin: Sequence[int] = (0, 0, 0),
    results_key: str | None = None,
    request: Any | None = None,
    pipeline: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    channels: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
    counts: Mapping[str, int] | None = None,
    explanation: str | None = None,
    extra: Mapping[str, Any] | None = None,
    raw: Mapping[str, np.ndarray] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write predictions, ids, synapses.csv and manifest.json into ``folder``; return manifest.

    The volumes are written twice: OME-TIFF, and OME-Zarr with the ``raw`` channels (the
    cutout the detector read, name -> z, y, x array) so the results can be viewed alone.

    ``request``: a :class:`~synapse_pipelines.core.request.SynapseRequest` (stored through
    ``public_dict()``, so never with its token) or an already public dict. ``channels``
    records which channels were used (e.g. ``{"presynaptic": ..., "postsynaptic": ...}``).
    Refuses to replace existing results unless ``overwrite``.
    """
    folder = Path(folder)
    check_results_folder(folder, overwrite=overwrite)
    mask = np.asarray(mask)
    if mask.shape != np.shape(labels):
        raise OutputError(
            f"mask shape {mask.shape} differs from labels shape {np.shape(labels)}",
            field="labels",
        )
    ids = _as_uint32_ids(labels)  # refused before anything earlier is removed
    # written aside and put in place when complete: an interrupted run leaves no half
    # results folder, and earlier results are replaced (as a whole) only by complete ones
    with staged_folder(folder, clear=remove_results, last=MANIFEST) as staged:
        return _write_results_into(
            staged,
            mask=mask,
            ids=ids,
            raw=raw,
            voxel_size=voxel_size,
            voxel_unit=voxel_unit,
            origin=origin,
            results_key=results_key,
            request=request,
            pipeline=pipeline,
            parameters=parameters,
            channels=channels,
            timings=timings,
            counts=counts,
            explanation=explanation,
            extra=extra,
            table=table,
        )


def _write_results_into(
    folder: Path,
    *,
    mask: np.ndarray,
    ids: np.ndarray,
    raw: Mapping[str, np.ndarray] | None,
    voxel_size: Sequence[float],
    voxel_unit: str,
    origin: Sequence[int],
    extra: Mapping[str, Any] | None,
    **table_results: Any,
) -> dict[str, Any]:
    """:func:`write_results`' artefacts, into the empty (staging) ``folder``."""
    common = {"voxel_size": voxel_size, "voxel_unit": voxel_unit, "origin": origin}
    mask_u8 = np.where(mask > 0, np.uint8(255), np.uint8(0))
    write_volume(folder / PREDICTIONS, mask_u8, name="predictions", **common)
    write_volume(folder / SYNAPSE_IDS, ids, name="synapse_ids", **common)
    viewable = write_viewable_volumes(folder, mask_u8=mask_u8, ids=ids, raw=raw, **common)
    return write_table_results(
        folder,
        shape=mask.shape,
        foreground_voxels=int(np.count_nonzero(mask_u8)),
        extra={"ome_zarr": viewable, **dict(extra or {})},
        overwrite=True,  # checked by write_results, before the volumes were written
        **common,
        **table_results,
    )


#: Said when a detector found nothing and gave no reason of its own.
NO_REASON_GIVEN = (
    "no synapse was detected in this box and the detector gave no reason; check that the box "
    "covers tissue and that the presynaptic and postsynaptic channels are the right ones"
)


def empty_result_explanation(n_synapses: int, explanation: str | None) -> str | None:
    """The manifest's ``explanation``: None when synapses were found, else the detector's
    reason (or :data:`NO_REASON_GIVEN`), so a zero is never silent."""
    if n_synapses:
        return None
    return explanation or NO_REASON_GIVEN


def write_table_results(
    folder: str | Path,
    *,
    table: pd.DataFrame,
    shape: Sequence[int],
    foreground_voxels: int,
    voxel_size: Sequence[float],
    voxel_unit: str = "nanometers",
    origin: Sequence[int] = (0, 0, 0),
    arrays: Mapping[str, Any] | None = None,
    results_key: str | None = None,
    request: Any | None = None,
    pipeline: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    channels: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
    counts: Mapping[str, int] | None = None,
    explanation: str | None = None,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """synapses.csv and manifest.json (with the checksums of every file in ``folder``).

    ``explanation``: the detector's plain-words reason when it found nothing; an empty
    table is never written without one (:func:`empty_result_explanation`).

    :func:`write_results` calls it after writing the two OME-TIFF volumes; a blockwise run
    calls it directly, its volumes having been written block by block elsewhere
    (``predictions.zarr``, ``synapse_ids.zarr``), and describes them in ``arrays`` (the
    manifest's ``arrays`` section).
    """
    folder = Path(folder)
    check_results_folder(folder, overwrite=overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    write_synapse_table(table, folder / SYNAPSES_CSV)
    if request is not None and hasattr(request, "public_dict"):
        req = request.public_dict()
        results_key = results_key or request.results_key
    else:
        req = dict(request) if request is not None else None
    manifest: dict[str, Any] = {
        "results_key": results_key,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "request": req,
        "software": software_versions(),
        "pipeline": {"name": pipeline, "parameters": dict(parameters or {})},
        "volume": {
            "shape": [int(s) for s in shape],
            "origin": [int(v) for v in origin],
            "voxel_size": [float(v) for v in voxel_size],
            "voxel_unit": voxel_unit,
        },
        "channels": dict(channels or {}),
        "timings_seconds": {k: round(float(v), 4) for k, v in (timings or {}).items()},
        "counts": {
            "synapses": len(table),
            "foreground_voxels": int(foreground_voxels),
            **{k: int(v) for k, v in (counts or {}).items()},
        },
        "explanation": empty_result_explanation(len(table), explanation),
        # what the detector measured and the user should know (e.g. sections that do not
        # line up), found or not
        "warnings": [str(w) for w in (parameters or {}).get("warnings") or []],
        "synapse_table": dict(table.attrs),
        **({"arrays": dict(arrays)} if arrays is not None else {}),
        **dict(extra or {}),
    }
    write_manifest(folder, manifest)
    return read_manifest(folder)
