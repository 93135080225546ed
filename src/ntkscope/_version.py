"""The package version (single source: the installed distribution's metadata)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ntkscope")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
