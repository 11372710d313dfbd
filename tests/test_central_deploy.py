"""The central pipeline's `deploy` job end to end: the rendered job, a real sshd, the real deploy program.

The job is the one the production stack writes; the compose file is the one it writes for
production. What differs on a test machine is only where the VM is: the SSH user and port
of the local sshd (tests/harness/sshd.py) replace `deploy` and 22 in the step's `env:`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.environment import compose, deploy_program
from components.workflows import central
from tests import conftest
from tests.central_support import central_document, dispatch_github, rendered_file, settings_of, sha_of, stand_in
from tests.harness import sshd
from tests.harness.sshd import DeployServer
from tests.harness.workflow import Context, JobResult, run_job

pytestmark = pytest.mark.e2e

STACK = "production"
SETTINGS = settings_of(STACK)
JOB_TOKEN = "ghs_job_token"
"""The job's own GITHUB_TOKEN in the harness's github context; the VM pulls with it."""


class _PipelineDeployServer(DeployServer):
    """The deploy tests' server under its own throwaway user, so both can run in one session."""

    def __init__(self) -> None:
        super().__init__()
        self.user = self.user.replace("dsdeploy", "dscentral")


@pytest.fixture(scope="module")
def vm() -> Iterator[DeployServer]:
    conftest.require_tool("sshd", "openssh-server")
    problems = sshd.missing_prerequisites()
    if problems:
        if conftest.IN_CI:
            pytest.fail("; ".join(problems) + " - CI=true requires it")
        pytest.skip("; ".join(problems))
    server = _PipelineDeployServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(vm: DeployServer) -> DeployServer:
    vm.reset()
    vm.control(registry_tokens={"ghcr.io": JOB_TOKEN})
    return vm


@pytest.fixture(scope="module")
def compose_text(plan_of) -> str:
    return rendered_file(plan_of(STACK), compose.path(STACK))[1]


def on_local_sshd(document: dict[str, Any], server: DeployServer) -> dict[str, Any]:
    local = copy.deepcopy(document)
    [ssh_step] = [s for s in local["jobs"]["deploy"]["steps"] if "DEPLOY_SSH_PORT" in s.get("env", {})]
    ssh_step["env"] |= {"DEPLOY_SSH_USER": server.user, "DEPLOY_SSH_PORT": str(server.port)}
    return local


def run_deploy(
    document: dict[str, Any], server: DeployServer, compose_text: str, components: list[str], sha: str
) -> JobResult:
    checkouts = []

    def checkout(step, with_, env) -> dict[str, str]:
        checkouts.append(with_)
        target = Path(env["GITHUB_WORKSPACE"]) / compose.path(STACK)
        target.parent.mkdir(parents=True)
        target.write_text(compose_text)
        return {}

    outputs = {
        "environment": STACK,
        "deploy": "true",
        "components": json.dumps(components),
        "source_repo": "DREAMSCAPE-AI/dreamscape-services",
        "ref": "refs/heads/main",
        "sha": sha,
    }
    with stand_in(SETTINGS) as api:
        context = Context(
            github=dispatch_github(SETTINGS, api, "services-changed", {}),
            secrets={
                "VM_HOST_PRODUCTION": "127.0.0.1",
                "SSH_PRIVATE_KEY_PRODUCTION": server.ci_key.path.read_text(),
                "SSH_KNOWN_HOSTS_PRODUCTION": server.known_hosts_line,
                # Another environment's secrets are there too, and must not be used.
                "VM_HOST_STAGING": "192.0.2.1",
                "SSH_PRIVATE_KEY_STAGING": "not this key",
                "SSH_KNOWN_HOSTS_STAGING": "not this line",
            },
            needs={
                "resolve": {"result": "success", "outputs": outputs},
                "build-test": {"result": "success", "outputs": {}},
                "security-scan": {"result": "success", "outputs": {}},
            },
        )
        result = run_job(on_local_sshd(document, server), "deploy", context, uses={"actions/checkout": checkout})
    assert checkouts == [{"sparse-checkout": compose.DIRECTORY, "persist-credentials": False}]
    return result


def image(component: str, sha: str) -> str:
    return f"{SETTINGS.registry}/{component}:{sha}"


DEPLOYABLE = [c.name for r in SETTINGS.source_repositories if r.deployable for c in r.components]


def test_a_services_run_deploys_its_images_next_to_the_running_frontend(plan_of, server, compose_text) -> None:
    document = central_document(plan_of(STACK))
    before = sha_of("bootstrap")
    # The environment already runs every component (an earlier release).
    first = server.deploy(
        {c: image(c, before) for c in DEPLOYABLE}, compose_text, login=("ghcr.io", "DREAMSCAPE-AI", JOB_TOKEN)
    )
    assert first.returncode == 0, first.stderr
    sha = sha_of("services release")
    result = run_deploy(document, server, compose_text, ["auth-service", "user-service"], sha)
    assert result.status == "success", result.log
    assert result.step("images").outputs["pairs"] == (
        f"auth-service={image('auth-service', sha)} user-service={image('user-service', sha)}"
    )
    assert server.running() == {
        "auth-service": (image("auth-service", sha), "healthy"),
        "user-service": (image("user-service", sha), "healthy"),
        "web-client": (image("web-client", before), "healthy"),
        "gateway": (image("gateway", before), "healthy"),
    }
    logins = [c for c in server.calls() if "login" in c["argv"]]
    assert logins[-1]["stdin"] == JOB_TOKEN + "\n"
    assert "### dreamscape-deploy on " in result.summary
    assert JOB_TOKEN not in result.log + result.summary


def test_a_deploy_that_rolls_back_fails_the_job(plan_of, server, compose_text) -> None:
    document = central_document(plan_of(STACK))
    before = sha_of("bootstrap")
    assert (
        server.deploy(
            {c: image(c, before) for c in DEPLOYABLE}, compose_text, login=("ghcr.io", "DREAMSCAPE-AI", JOB_TOKEN)
        ).returncode
        == 0
    )
    sha = sha_of("broken release")
    server.control(registry_tokens={"ghcr.io": JOB_TOKEN}, unhealthy=[image("auth-service", sha)])
    result = run_deploy(document, server, compose_text, ["auth-service"], sha)
    assert result.status == "failure"
    assert "::error title=Deploy::rolled back" in result.log
    assert server.running()["auth-service"] == (image("auth-service", before), "healthy")


def test_a_fresh_environment_needs_every_component_in_its_first_deploy(plan_of, server, compose_text) -> None:
    """Until every component has run once, compose cannot start the file (see docs/central.md)."""
    document = central_document(plan_of(STACK))
    result = run_deploy(document, server, compose_text, ["auth-service", "user-service"], sha_of("fresh"))
    assert result.status == "failure"
    assert result.steps[-1].exit_code == deploy_program.EXIT["BAD_INPUT"]
    assert "web-client has no image yet" in result.log
    assert server.running() == {}


def test_the_job_uses_the_deploy_secrets_of_its_own_environment_only(plan_of) -> None:
    deploy = central_document(plan_of(STACK))["jobs"]["deploy"]
    [ssh_step] = [s for s in deploy["steps"] if "VM_HOST" in s.get("env", {})]
    for name in ("VM_HOST", "SSH_PRIVATE_KEY", "SSH_KNOWN_HOSTS"):
        assert ssh_step["env"][name] == (
            f"${{{{ needs.resolve.outputs.environment == 'dev' && secrets.{name}_DEV"
            f" || needs.resolve.outputs.environment == 'staging' && secrets.{name}_STAGING"
            f" || needs.resolve.outputs.environment == 'production' && secrets.{name}_PRODUCTION || '' }}}}"
        )
    assert ssh_step["env"]["DEPLOY_COMPOSE_FILE"] == "deploy/compose.${{ needs.resolve.outputs.environment }}.yml"
    assert central.TOKEN not in json.dumps(deploy)
