"""Is every refusal reached by a test? Each `raise ConfigError(...)` (and `_fail(...)`) of
components/settings.py and each `raise BadInputError(...)` of the deploy program, under coverage.

    make refusals        # runs the tests that exercise them, then lists any refusal none reached

The tests run under `coverage` with subprocess measurement on (`patch = subprocess`), so the
offline plan's CLI, run by tests/test_plan.py's bad-config cases, counts too. The deploy
program's end-to-end tests run it as another user through sshd, which coverage cannot follow:
its refusals count when an in-process test reaches them (tests/test_deploy_program.py and
tests/test_time_limits.py call it directly). Exit 0 when every refusal was reached, 1 otherwise.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    ROOT / "components/settings.py": ("ConfigError", "_fail"),
    ROOT / "components/environment/deploy/dreamscape_deploy.py": ("BadInputError",),
}
TESTS = (
    "tests/test_settings.py",
    "tests/test_settings_artifacts.py",
    "tests/test_actions_settings.py",
    "tests/test_app_secrets.py",
    "tests/test_container_platform.py",
    "tests/test_environment_shapes.py",
    "tests/test_init.py",
    "tests/test_pinned_security.py",
    "tests/test_plan.py",
    "tests/test_settings_refusals.py",
    "tests/test_deploy_program.py",
    "tests/test_deploy_program_refusals.py",
    "tests/test_time_limits.py",
)


def refusals(path: Path, names: tuple[str, ...]) -> dict[int, str]:
    """Line -> the first line of the message, for each `raise <name>(...)` in the file."""
    text = path.read_text()
    found = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in names:
                found[node.lineno] = ast.get_source_segment(text, node.exc).split("\n")[0][:110]
    return found


def main() -> int:
    from coverage import Coverage

    with tempfile.TemporaryDirectory(prefix="refusals-") as work:
        rc = Path(work) / "coveragerc"
        rc.write_text(
            "[run]\n"
            f"data_file = {work}/.coverage\n"
            "parallel = true\n"
            "patch = subprocess\n"
            f"include =\n    {chr(10).join('    ' + str(p) for p in SOURCES).strip()}\n"
        )
        tests = subprocess.run(
            [sys.executable, "-m", "coverage", "run", f"--rcfile={rc}", "-m", "pytest", "-q", "-p", "no:xdist",
             "-p", "no:cacheprovider", *TESTS],
            cwd=ROOT,
            env={**__import__("os").environ, "COVERAGE_RCFILE": str(rc)},
            check=False,
        )  # fmt: skip
        if tests.returncode != 0:
            print("refusals: the tests failed; fix them first", file=sys.stderr)
            return 2
        coverage = Coverage(data_file=f"{work}/.coverage", config_file=str(rc))
        coverage.combine()
        data = coverage.get_data()
        unreached = []
        total = 0
        for path, names in SOURCES.items():
            executed = set(data.lines(str(path)) or ())
            found = refusals(path, names)
            total += len(found)
            unreached += [
                f"{path.relative_to(ROOT)}:{line}: {text}" for line, text in found.items() if line not in executed
            ]
    print(f"{total - len(unreached)} of {total} refusals reached by a test")
    for line in sorted(unreached):
        print(f"  never reached: {line}")
    return 1 if unreached else 0


if __name__ == "__main__":
    sys.exit(main())
