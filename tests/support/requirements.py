"""What a test needs from the machine, and the one rule for when it is missing.

Locally a test may skip when a tool is missing (say so, and move on). Under CI (``CI=true``)
it never skips: a missing tool is a broken machine or a broken ``.ci/run``, and a skipped test
would hide exactly that, so it fails loudly instead.

    from support.requirements import need, require

    node = need("node")                        # the path of the tool
    require(os.geteuid() == 0, "giving a folder to another user needs root")
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(message: str) -> NoReturn:
    """Skips the test locally; fails it under CI."""
    if in_ci():
        pytest.fail(f"CI=true and {message}: install it in .ci/run (tests never skip in CI)",
                    pytrace=False)
    pytest.skip(message)


def require(condition: object, message: str) -> None:
    """``missing(message)`` unless ``condition`` holds."""
    if not condition:
        missing(message)


def need(tool: str, hint: str = "") -> str:
    """The full path of ``tool`` on PATH; a missing tool skips locally and fails under CI."""
    path = shutil.which(tool)
    if path is None:
        missing(f"{tool} is not on PATH" + (f" ({hint})" if hint else ""))
    return path
