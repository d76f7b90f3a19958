"""synapse-pipelines: NOMADS synapse detection on BOSS volumes, on AWS or on one machine."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("synapse-pipelines")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
