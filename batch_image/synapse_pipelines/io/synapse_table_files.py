"""The synapse table's files: ``synapses.csv`` and its ``synapses.csv.json`` metadata.

Owns :func:`write_synapse_table` and :func:`read_synapse_table`: a plain CSV (header row,
no index; floats with 17 significant digits, so a round trip is exact) with the integer
and boolean columns read back with their dtypes, and the table's ``attrs`` (voxel size and
unit, origin, window rule) in a small companion JSON. The table itself is computed by
:mod:`synapse_pipelines.science.features` (pure: arrays in, a DataFrame out); the results
folder that holds these files is :mod:`synapse_pipelines.io.outputs`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from synapse_pipelines.science.features import BBOX_COLUMNS, FeatureInputError

_DTYPES = {
    "id": "uint64",
    "volume_voxels": "int64",
    "window_voxels": "int64",
    "window_clipped": "bool",
    **{c: "int64" for c in BBOX_COLUMNS},
}


def write_synapse_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the table as a plain CSV (header row, no index) plus ``<path>.json`` metadata.

    The CSV stays plain so that spreadsheet tools, R and ``pandas.read_csv`` read it as is;
    the metadata (voxel size and unit, origin, window rule) goes in a small companion JSON
    and is also copied into the results manifest by :mod:`synapse_pipelines.io.outputs`.
    Floats are written with 17 significant digits, so a round trip is exact.
    """
    path = Path(path)
    table.to_csv(path, index=False, float_format="%.17g", lineterminator="\n")
    meta_path = path.with_name(path.name + ".json")
    meta_path.write_text(json.dumps(dict(table.attrs), indent=2, sort_keys=True) + "\n")
    return path


def read_synapse_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_synapse_table` (metadata into ``attrs`` if present)."""
    path = Path(path)
    if not path.is_file():
        raise FeatureInputError(
            f"no synapse table at {path}",
            field="synapses.csv",
            hint="pass the synapses.csv of a results folder",
        )
    try:
        head = pd.read_csv(path, nrows=0)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FeatureInputError(
            f"{path} is not a readable CSV ({exc})", field="synapses.csv"
        ) from exc
    dtypes = {c: t for c, t in _DTYPES.items() if c in head.columns}
    table = pd.read_csv(path, dtype=dtypes)
    meta_path = path.with_name(path.name + ".json")
    if meta_path.is_file():
        table.attrs.update(json.loads(meta_path.read_text()))
    return table
