"""The check every construct makes against the workflow wiring (``synapse_pipelines.workflow
.wiring``): each name the wiring declares (a task's environment variables, the ASL's
substitutions) gets a value, so a new name cannot deploy unset."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def require_values(
    owner: str, kind: str, declared: Iterable[str], values: Mapping[str, object]
) -> None:
    """Raise ValueError naming ``owner`` and every ``declared`` name missing from ``values``."""
    missing = [name for name in declared if name not in values]
    if missing:
        raise ValueError(f"{owner}: no value for {kind} {missing}")
