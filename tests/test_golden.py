"""Generated files match their golden copies under tests/golden/ (regenerate: `make golden`)."""

from __future__ import annotations

import difflib
from pathlib import Path

from tests.conftest import golden_dir
from tools import golden


def files_under(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_rendered_files_match_golden_copies(tmp_path: Path) -> None:
    golden.render_all(tmp_path)
    rendered, committed = files_under(tmp_path), files_under(golden_dir())
    assert sorted(rendered) == sorted(committed), "generated file set changed: run `make golden` and review the diff"
    for name, text in rendered.items():
        if text != committed[name]:
            diff = "".join(difflib.unified_diff(committed[name].splitlines(True), text.splitlines(True), name, name))
            raise AssertionError(f"{name} drifted from its golden copy; run `make golden` and review:\n{diff[:4000]}")
