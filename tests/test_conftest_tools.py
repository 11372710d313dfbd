"""`require_tool`: a missing system tool skips locally and fails under CI=true."""

from __future__ import annotations

import pytest

from tests import conftest


def test_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match=r"no-such-tool-x not installed \(Debian package pkg-x"):
        conftest.require_tool("no-such-tool-x", "pkg-x")


def test_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true requires it"):
        conftest.require_tool("no-such-tool-x", "pkg-x")


def test_present_tool_is_found() -> None:
    assert conftest.require_tool("bash", "bash").endswith("/bash")
