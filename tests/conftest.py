"""Shared fixtures: offline plans of the real program, and system tools that CI must have."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tools import offline

ROOT = offline.ROOT
IN_CI = os.environ.get("CI") == "true"


def require_tool(name: str, package: str) -> str:
    """The tool's path; skips when it is missing, except under CI=true where that fails."""
    path = shutil.which(name) or (shutil.which(name, path=str(ROOT / ".venv" / "bin")))
    if path is None:
        message = f"{name} not installed (Debian package {package}; .ci/run installs it)"
        if IN_CI:
            pytest.fail(message + " - CI=true requires it")
        pytest.skip(message)
    return path


_PLANS: dict[str, offline.Plan] = {}


@pytest.fixture(scope="session")
def plan_of() -> Callable[[str], offline.Plan]:
    """The offline plan of a stack file, run once per session per stack."""

    def get(stack: str) -> offline.Plan:
        if stack not in _PLANS:
            _PLANS[stack] = offline.run(stack)
        return _PLANS[stack]

    return get


def plan_with(
    stack: str, secret: dict[str, str] | None = None, mocks: offline.OfflineMocks | None = None, **changes: Any
) -> offline.Plan:
    """The program's offline plan for a stack with config keys replaced (values as Python data;
    None removes a key) and secrets added. `mocks` replaces the offline engine's answers (its
    `created` and `calls` show what ran)."""
    config, secret_keys = offline.stack_config(stack)
    for key, value in changes.items():
        full = f"dreamscape-infra:{key}"
        if value is None:
            config.pop(full, None)
        else:
            config[full] = value if isinstance(value, str) else json.dumps(value)
    for key, value in (secret or {}).items():
        config[f"dreamscape-infra:{key}"] = value
        secret_keys.append(f"dreamscape-infra:{key}")
    return offline.run(stack, config=config, secret_keys=secret_keys, mocks=mocks)


@pytest.fixture
def run_with() -> Callable[..., offline.Plan]:
    """`plan_with`, for a test."""
    return plan_with


@pytest.fixture
def stack_config() -> Callable[[str], dict[str, Any]]:
    """A stack's merged plain config (our namespace), as Python data."""
    from components import settings

    return lambda stack: settings.merged_plain_config(stack)


def golden_dir() -> Path:
    return ROOT / "tests" / "golden"


def only(plan: offline.Plan, type_: str) -> offline.Registered:
    """The one resource of a type in a plan (fails if there are none or several)."""
    found = plan.of_type(type_)
    assert len(found) == 1, f"{len(found)} resources of type {type_}: {[r.name for r in found]}"
    return found[0]


def copy_project(destination: Path) -> Path:
    """A copy of the program and its stack files, for tests that edit a stack file."""
    names = ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.staging.yaml", "Pulumi.production.yaml", "__main__.py")
    # requirements.txt: the program renders this project's workflows, which pin the CLI it names.
    for name in (*names, "requirements.txt"):
        shutil.copy(ROOT / name, destination / name)
    for folder in ("ci", "components", "tools"):
        shutil.copytree(ROOT / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


@pytest.fixture(scope="session")
def docker_engine():
    """The real Docker engine's test registries and images (tests/harness/engine.py), for the
    deploy tests over sshd. Skips saying why when this machine lacks them; fails under CI=true."""
    from tests.harness import engine, sshd

    require_tool("sshd", "openssh-server")
    problems = sshd.missing_prerequisites()
    if problems:
        message = "; ".join(problems)
        if IN_CI:
            pytest.fail(message + " - CI=true requires it")
        pytest.skip(message)
    started = engine.Engine().start()
    try:
        for variant in engine.VARIANTS:
            started.build(variant)
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def bastion(docker_engine):
    """A real sshd playing an OCI Bastion's SSH endpoint (tests/harness/sshd.py, `BastionServer`),
    for the deploy tests that go through the bastion hop; same prerequisites as the deploy tests."""
    from tests.harness.sshd import BastionServer

    server = BastionServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which reads the marker into each test's id
def pytest_collection_modifyitems(config, items) -> None:
    """Under pytest-xdist (`make test` runs two workers), the tests on the Docker engine run in
    two groups, each in one worker, one test after the other: the deploy program's own tests,
    and the others (the pipeline's jobs, the edge, the bastion). They spend most of their time
    waiting for containers, so the two groups run side by side: each worker has an engine of
    its own (registries, images) and a share of the loopback ports, each server its own user and
    compose projects. The other tests spread over both workers once a group is done."""
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            own = item.path.name == "test_deploy_e2e.py"
            item.add_marker(pytest.mark.xdist_group("engine-deploy" if own else "engine"))
