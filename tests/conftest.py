"""Shared pytest configuration.

Fixtures of each concern live in ``tests/fixtures/<concern>.py`` and are loaded here as
plugins, so concerns do not edit each other's files.
"""

import pytest

pytest_plugins = [
    "fixtures.boss_server",
    "fixtures.browser",
    "fixtures.aws",
    "fixtures.workflow_steps",
    "fixtures.cli_science",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files holding a slow test run first (each keeps its order): the suite runs one
    file per worker (pytest-xdist, ``--dist loadfile``), and a long file handed out last
    keeps one worker busy while the others sit idle."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
