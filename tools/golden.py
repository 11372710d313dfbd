"""Regenerate tests/golden/: every file each stack's offline plan renders.

    make golden

tests/test_golden.py renders again and fails on any difference, so a change to a generated
workflow, compose file or cloud-init shows up in review as a diff of these files.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import offline, plan

STACKS = ("dev", "staging", "production")
GOLDEN = offline.ROOT / "tests" / "golden"


def render_all(directory: Path) -> None:
    for stack in STACKS:
        plan.render(offline.run(stack), directory / stack)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        render_all(Path(tmp))
        shutil.rmtree(GOLDEN, ignore_errors=True)
        shutil.copytree(tmp, GOLDEN)
    count = sum(1 for p in GOLDEN.rglob("*") if p.is_file())
    print(f"wrote {count} golden files under {GOLDEN.relative_to(offline.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
