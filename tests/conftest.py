"""Shared pytest configuration.

Fixtures of each concern live in ``tests/fixtures/<concern>.py`` and are loaded here as
plugins, so concerns do not edit each other's files.
"""

pytest_plugins = [
    "fixtures.boss_server",
    "fixtures.browser",
    "fixtures.aws",
]
