"""ci/plan.py on its own: the build plan resolve hands to the build-test matrix.

The module runs as the resolve job runs it (`python3 -m ci.plan` in a workspace that holds the
data file and the source tree); its matrix entries then drive build-test in test_central.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ci import config, plan
from components.workflows import central
from tests.central_support import settings_of
from tests.conftest import ROOT
from tests.harness.workflow import RUNNER_PYTHON

REPOSITORIES = [
    {
        "name": "dreamscape-services",
        "kind": "services",
        "deployable": True,
        "build": "make",
        "test": "make check",
        "components": [
            {"name": "auth-service", "port": 3001, "healthPath": "/health"},
            {"name": "user-service", "port": 3002, "healthPath": "/health"},
        ],
    },
    {"name": "dreamscape-tests", "kind": "tests", "build": "true", "test": "true", "components": [{"name": "e2e"}]},
]
SERVICES = "DREAMSCAPE-AI/dreamscape-services"


def workspace(tmp_path: Path, tree: dict[str, str], **settings) -> Path:
    """A resolve workspace: the data file of these settings, and the source at `source/`."""
    chosen = settings_of("production", sourceRepositories=REPOSITORIES, **settings)
    data = tmp_path / central.DATA_PATH
    data.parent.mkdir(parents=True)
    data.write_text(central.data_file(central.CentralArgs.from_settings(chosen)))
    for name, content in tree.items():
        path = tmp_path / plan.SOURCE_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return tmp_path


def run_plan(root: Path, repository: str, components: list[str], deploy: bool, **variables: str):
    """`python3 -m ci.plan` as resolve's step runs it; returns (exit code, outputs, stdout)."""
    output = root / "output"
    output.touch()
    env = {
        "PYTHONPATH": str(ROOT),
        "GITHUB_OUTPUT": str(output),
        "SOURCE_REPO": repository,
        "ENVIRONMENT": "production",
        "DEPLOY": "true" if deploy else "false",
        "COMPONENTS_JSON": json.dumps(components),
        **variables,
    }
    result = subprocess.run(
        [RUNNER_PYTHON, "-m", "ci.plan"], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return result.returncode, outputs, result.stdout + result.stderr


BOTH = {"auth-service/Dockerfile": "FROM scratch\n", "user-service/Dockerfile": "FROM scratch\n"}


def test_a_deploying_run_builds_every_component_for_the_environment_platform(tmp_path) -> None:
    root = workspace(tmp_path, BOTH)
    code, outputs, log = run_plan(
        root, SERVICES, ["user-service", "auth-service"], True, DEPLOY_PLATFORM_PRODUCTION="linux/arm64"
    )
    assert code == 0, log
    assert outputs["platform"] == "linux/arm64"
    entries = json.loads(outputs["builds"])["include"]
    assert [e["component"] for e in entries] == ["user-service", "auth-service"]
    assert entries[0] == {
        "component": "user-service",
        "build": "make",
        "test": "make check",
        "image": "true",
        "platform": "linux/arm64",
        "arch": "ARM64",
        "runs-on": central.RUNNER,
        "cache": "ghcr.io/dreamscape-ai/cache/user-service:production",
        "problem": "",
    }


def test_an_arm64_build_runs_on_the_configured_arm_runner(tmp_path) -> None:
    root = workspace(tmp_path, BOTH, armRunnerLabel="ubuntu-24.04-arm")
    arm = run_plan(root, SERVICES, ["auth-service"], True, DEPLOY_PLATFORM_PRODUCTION="linux/arm64")
    amd = run_plan(root, SERVICES, ["auth-service"], True, DEPLOY_PLATFORM_PRODUCTION="linux/amd64")
    native = run_plan(root, SERVICES, ["auth-service"], False, DEPLOY_PLATFORM_PRODUCTION="linux/arm64")
    runners = [json.loads(outputs["builds"])["include"][0]["runs-on"] for _, outputs, _ in (arm, amd, native)]
    assert runners == ["ubuntu-24.04-arm", central.RUNNER, central.RUNNER]
    assert native[1]["platform"] == ""


@pytest.mark.parametrize("value", [None, "", "linux/riscv64", "linux/arm64 "])
def test_a_deploying_run_needs_the_platform_variable(tmp_path, value) -> None:
    root = workspace(tmp_path, BOTH)
    variables = {} if value is None else {"DEPLOY_PLATFORM_PRODUCTION": value}
    code, outputs, log = run_plan(root, SERVICES, ["auth-service"], True, **variables)
    assert code == 1
    assert outputs == {}
    assert (
        "::error title=Build plan::the infra repository variable DEPLOY_PLATFORM_PRODUCTION is missing or not"
        " linux/amd64 or linux/arm64: pulumi up on the production stack sets it"
    ) in log


def test_what_the_source_lacks_becomes_that_component_problem(tmp_path) -> None:
    root = workspace(tmp_path, {"auth-service/index.js": "\n", "README.md": "\n"})
    code, outputs, log = run_plan(root, SERVICES, ["auth-service", "user-service"], False)
    assert code == 0, log
    problems = {e["component"]: e["problem"] for e in json.loads(outputs["builds"])["include"]}
    assert problems == {
        "auth-service": "auth-service/Dockerfile is missing: each component of a deployable repository builds an image",
        "user-service": "the source repository has no folder user-service: a component is a top-level folder",
    }


def test_a_repository_that_does_not_deploy_builds_no_image_and_needs_no_dockerfile(tmp_path) -> None:
    root = workspace(tmp_path, {"e2e/spec.js": "\n"})
    code, outputs, log = run_plan(root, "dreamscape-ai/DREAMSCAPE-TESTS", ["e2e"], True)
    assert code == 0, log
    [entry] = json.loads(outputs["builds"])["include"]
    assert (entry["image"], entry["platform"], entry["cache"], entry["problem"]) == ("false", "", "", "")
    assert outputs["platform"] == ""


def test_a_missing_data_file_stops_the_plan_naming_what_to_run(tmp_path) -> None:
    code, _, log = run_plan(tmp_path, SERVICES, ["auth-service"], False)
    assert code == 1
    assert f"::error title=Build plan::{config.PATH} is missing: run pulumi up on the wiring stack" in log
