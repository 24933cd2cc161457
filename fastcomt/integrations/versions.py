"""Version pins of the peers the adapters reach into: their private attributes change between
releases, so an untested release fails at import with the range we test, not mid-training."""

from __future__ import annotations

from importlib import metadata

from packaging.version import Version


def check_peer_version(package: str, minimum: str, below: str) -> str:
    """Returns the installed version of ``package``; ImportError when missing or outside [minimum, below)."""
    try:
        installed = metadata.version(package)
    except metadata.PackageNotFoundError as error:
        raise ImportError(
            f"{package}: expected {package}>={minimum},<{below} installed (pip install 'fastcomt[{package}]'), got none"
        ) from error
    if not Version(minimum) <= Version(installed) < Version(below):
        raise ImportError(
            f"{package}: expected {package}>={minimum},<{below} (the versions fastcomt's adapter is tested "
            f"against), got {installed}"
        )
    return installed
