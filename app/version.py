"""This release's version: pyproject.toml's, read from the file when running from a
checkout (so it is never an older editable install's), else from the installed package's
metadata. ``holdfast --version``, the OpenAPI document, the page footer and
``holdfast_build_info`` all show it."""

from __future__ import annotations

import tomllib
from importlib import metadata

from app import paths


def _release() -> str:
    if paths.CHECKOUT is not None:
        with (paths.CHECKOUT / "pyproject.toml").open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    return metadata.version("holdfast")


__version__ = _release()
