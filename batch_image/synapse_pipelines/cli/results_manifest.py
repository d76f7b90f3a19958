"""The manifest beside a results table, read the way the CLI's views of finished results
(``report``, ``evaluate``) read it: what it records adds to their output (a title, why a
result is empty, the detector's warnings), so a table without one, or a damaged one, only
costs those additions, never the command.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synapse_pipelines.core.artefacts import MANIFEST

__all__ = ["manifest_beside", "recorded_warnings"]


def manifest_beside(table: Path) -> dict[str, Any]:
    """The results folder's manifest beside ``table``; empty when there is none (a table on
    its own) or it is damaged."""
    manifest = table.parent / MANIFEST
    if not manifest.is_file():
        return {}
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_warnings(manifest: Mapping[str, Any]) -> list[str]:
    """The detector's warnings a manifest records (e.g. sections that do not line up)."""
    warnings = manifest.get("warnings")
    return [w for w in warnings if isinstance(w, str)] if isinstance(warnings, list) else []
