"""The CI rule: a missing tool skips a test locally and fails it under CI=true."""

from __future__ import annotations

import pytest

from support.requirements import need, require

MISSING = "gossipy-no-such-tool"


@pytest.mark.parametrize("ci", ["", "false"])
def test_missing_tool_skips_locally(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        need(MISSING)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=f"CI=true and {MISSING}"):
        need(MISSING, "hint")
    with pytest.raises(pytest.fail.Exception, match="no engine"):
        require(False, "no engine")


def test_present_tool_is_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert need("sh").endswith("/sh")
    require(True, "never said")
