"""Tools a test needs from the machine (Chromium, PostgreSQL, nginx, redis-server...).

Set ``HOLDFAST_REQUIRE_ALL=1`` (CI does) to turn a missing tool into a failure instead of
a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REQUIRE_ALL = os.environ.get("HOLDFAST_REQUIRE_ALL") == "1"


def require_tool(path_or_name: str, why: str) -> str:
    """The tool's path; a skip when missing, or a failure under HOLDFAST_REQUIRE_ALL=1."""
    found = shutil.which(path_or_name) or (path_or_name if Path(path_or_name).exists() else None)
    if found:
        return found
    message = f"{path_or_name} is not installed ({why})"
    if REQUIRE_ALL:
        pytest.fail(message + "; HOLDFAST_REQUIRE_ALL=1 requires it")
    pytest.skip(message)
