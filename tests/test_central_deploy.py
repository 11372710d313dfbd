"""The central pipeline's `deploy` job end to end: the rendered job, a real sshd, the real deploy
program, a real Docker Engine.

The job is the one the production stack writes; the compose file is the one it writes for
production. What differs on a test machine is only where the VM and the registry are: the
SSH user and port of the local sshd (tests/harness/sshd.py) replace `deploy` and 22 in the
step's `env:`, the registry on 127.0.0.1 that wants a login (tests/harness/engine.py)
replaces ghcr.io, and the gateway publishes on 127.0.0.1 instead of the VM's port 80.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from ci import deploy_gate
from components.environment import compose
from components.settings import SourceRepository
from components.workflows import central
from tests import bastion_support
from tests.bastion_support import Cloud
from tests.central_support import (
    DISPATCH_TOKEN,
    RETRY_ENV,
    Artifacts,
    central_document,
    dispatch_github,
    rendered_file,
    settings_of,
    sha_of,
    stand_in,
)
from tests.harness import engine, sshd
from tests.harness.engine import Engine
from tests.harness.sshd import BastionServer, DeployServer
from tests.harness.workflow import Context, JobResult, run_job

pytestmark = pytest.mark.e2e

STACK = "production"
SETTINGS = settings_of(STACK)


@pytest.fixture(scope="module")
def vm(docker_engine: Engine) -> Iterator[DeployServer]:
    # Its own throwaway user and compose project, so it can share the session with the deploy tests.
    with DeployServer(docker_engine, user="dscentral") as server:
        yield server


@pytest.fixture
def cloud(vm: DeployServer, bastion: BastionServer) -> Iterator[Cloud]:
    """The environment's bastion, in front of the VM, and OCI's APIs (tests/bastion_support.py)."""
    with bastion_support.cloud(vm.port, bastion) as cloud:
        yield cloud


@pytest.fixture
def server(vm: DeployServer) -> DeployServer:
    vm.reset()
    return vm


@pytest.fixture(scope="module")
def compose_text(plan_of, vm: DeployServer) -> str:
    return vm.stand_in_accessories(vm.local(rendered_file(plan_of(STACK), compose.path(STACK))[1]))


def registry_path(server: DeployServer) -> str:
    """Where the run's images are: the test registry that wants a login, under the owner's name."""
    return f"{server.engine.auth_registry.host}/{SETTINGS.github_owner.lower()}"


def ssh_step_of(document: dict[str, Any]) -> dict[str, Any]:
    [step] = [s for s in document["jobs"]["deploy"]["steps"] if s.get("run") == "exec python3 -m ci.deploy"]
    return step


def data_of(plan) -> str:
    """The data file the stack writes beside the workflow (ci/config.py reads it)."""
    return rendered_file(plan, central.DATA_PATH)[1]


def on_local_vm(document: dict[str, Any], server: DeployServer, cloud: Cloud) -> dict[str, Any]:
    local = copy.deepcopy(document)
    registry = server.engine.auth_registry
    ssh_step_of(local)["env"] |= {
        "DEPLOY_SSH_USER": server.user,
        "DEPLOY_SSH_PORT": str(server.port),
        "DEPLOY_REGISTRY": registry.host,
        "DEPLOY_REGISTRY_USER": registry.user,
        **cloud.endpoints(),
    }
    return local


def run_deploy(
    document: dict[str, Any],
    server: DeployServer,
    compose_text: str,
    repository: SourceRepository,
    components: list[str],
    sha: str,
    data: str,
    *,
    cloud: Cloud,
) -> JobResult:
    """The deploy job of a run for `repository`'s `components` at `sha`, resolved for production,
    with `data` as the data file in the infra repository. It goes through the environment's
    bastion (`cloud`), as the stack's variables tell it, and leaves no session behind."""
    artifacts = Artifacts(infra={compose.path(STACK): compose_text, central.DATA_PATH: data})
    outputs = {
        "environment": STACK,
        "deploy": "true",
        "components": json.dumps(components),
        "source_repo": f"{SETTINGS.github_owner}/{repository.name}",
        "ref": "refs/heads/main",
        "sha": sha,
    }
    published = " ".join(f"{c}={image(server, c, sha)}" for c in components)
    sessions_before = len(cloud.api.requests_for("create-session", 200))
    with stand_in(SETTINGS) as api:
        api.branch_heads[(outputs["source_repo"].lower(), "main")] = sha  # the newest commit of main
        github = dispatch_github(SETTINGS, api, f"{repository.kind}-changed", {})
        github["token"] = server.engine.auth_registry.password  # the job's own token pulls the images
        context = Context(
            github=github,
            secrets={
                central.TOKEN: DISPATCH_TOKEN,
                "VM_HOST_PRODUCTION": "127.0.0.1",
                "SSH_PRIVATE_KEY_PRODUCTION": server.ci_key.path.read_text(),
                "SSH_KNOWN_HOSTS_PRODUCTION": server.known_hosts_line,
                "OCI_DEPLOY_CREDENTIAL_PRODUCTION": cloud.credential(),
                "APP_SECRETS_PRODUCTION": json.dumps(server.secrets_for(compose_text)),
                # Another environment's secrets are there too, and must not be used.
                "VM_HOST_STAGING": "192.0.2.1",
                "SSH_PRIVATE_KEY_STAGING": "not this key",
                "SSH_KNOWN_HOSTS_STAGING": "not this line",
                "OCI_DEPLOY_CREDENTIAL_STAGING": "not this secret",
                "APP_SECRETS_STAGING": json.dumps({"JWT_SIGNING_KEY": "not these secrets"}),
            },
            vars={
                "DEPLOY_OCI_PRODUCTION": cloud.access(),
                "DEPLOY_OCI_STAGING": cloud.access(bastion_id=bastion_support.OTHER_BASTION),
            },
            id_token=(cloud.api.oidc_request_url, cloud.issuer.request_token),
            needs={
                "resolve": {"result": "success", "outputs": outputs},
                "build-test": {"result": "success", "outputs": {}},
                "security-scan": {"result": "success", "outputs": {}},
                "publish": {"result": "success", "outputs": {"images": published}},
            },
        )
        result = run_job(
            on_local_vm(document, server, cloud), "deploy", context, extra_env=RETRY_ENV, uses=artifacts.table()
        )
    [checkout] = artifacts.called("actions/checkout")
    created = cloud.api.requests_for("create-session", 200)[sessions_before:]
    assert len(created) == 1 and {r.principal for r in created} == {bastion_support.SERVICE_USER}
    assert cloud.sessions_left() == [], "the job deleted its bastion session"
    assert checkout["sparse-checkout"].split("\n")[-1] == f"/{compose.DIRECTORY}/"
    return result


def image(server: DeployServer, component: str, sha: str) -> str:
    return f"{registry_path(server)}/{component}:{sha}"


def built(server: DeployServer, components: list[str], sha: str, variant: str = "healthy") -> str:
    """The run's images, pushed to the test registry as its build job would; returns the sha."""
    for component in components:
        server.engine.publish(image(server, component, sha), variant)
    return sha


def repository(name: str) -> SourceRepository:
    [found] = [r for r in SETTINGS.source_repositories if r.name == name]
    return found


SERVICES = repository("dreamscape-services")
FRONTEND = repository("dreamscape-frontend")
DEPLOYABLE = [c.name for r in SETTINGS.source_repositories if r.deployable for c in r.components]


def names(repository: SourceRepository) -> list[str]:
    return [c.name for c in repository.components]


def running_images(server: DeployServer, components: list[str], sha: str) -> dict[str, tuple[str, str]]:
    return {c: (image(server, c, sha), "healthy") for c in components}


def wait_timeouts(result: JobResult) -> list[str]:
    """The `--wait-timeout` of each `docker compose up` the VM ran, from its progress in the job log."""
    return re.findall(r"^\$ docker compose .* up --detach --wait --wait-timeout (\d+) ", result.log, re.M)


def logged_in_only_on_stdin(server: DeployServer, result: JobResult) -> bool:
    """The VM logged in to the registry with the job's token, which the job never showed."""
    token = server.engine.auth_registry.password
    return "login --username dreamscape-ci --password-stdin" in result.log and token not in result.log + result.summary


def test_a_fresh_environment_is_deployed_one_repository_at_a_time(plan_of, server, compose_text, cloud) -> None:
    """Each run deploys one repository; what was never deployed is left out until its first run."""
    document, data = central_document(plan_of(STACK)), data_of(plan_of(STACK))
    assert sorted(names(SERVICES) + names(FRONTEND)) == sorted(DEPLOYABLE)

    services_sha = built(server, names(SERVICES), sha_of("first services release"))
    result = run_deploy(document, server, compose_text, SERVICES, names(SERVICES), services_sha, data, cloud=cloud)
    assert result.status == "success", result.log
    assert server.running() == running_images(server, names(SERVICES), services_sha)
    waiting = ", ".join(f"`{c}`" for c in sorted(names(FRONTEND)))
    assert f"Not deployed yet (no image here so far, so not part of this release): {waiting}." in result.summary
    assert logged_in_only_on_stdin(server, result)
    # The containers' secrets came from production's APP_SECRETS, on stdin, and were never shown.
    [auth] = [c["ID"] for c in server.containers() if c["Service"] == "auth-service"]
    read = engine.docker("exec", auth, "sh", "-c", 'cat "$JWT_SIGNING_KEY_FILE"')
    assert read == server.secrets_for(compose_text)["JWT_SIGNING_KEY"]
    assert not [v for v in server.secrets_for(compose_text).values() if v in result.log + result.summary]

    frontend_sha = built(server, names(FRONTEND), sha_of("first frontend release"))
    result = run_deploy(document, server, compose_text, FRONTEND, names(FRONTEND), frontend_sha, data, cloud=cloud)
    assert result.status == "success", result.log
    frontend_running = running_images(server, names(FRONTEND), frontend_sha)
    assert server.running() == running_images(server, names(SERVICES), services_sha) | frontend_running
    assert "Not deployed yet" not in result.summary

    sha = built(server, names(SERVICES), sha_of("services release"))
    result = run_deploy(document, server, compose_text, SERVICES, names(SERVICES), sha, data, cloud=cloud)
    assert result.status == "success", result.log
    [ssh] = [s for s in result.steps if "DEPLOY_IMAGES" in s.env]
    assert ssh.env["DEPLOY_IMAGES"] == " ".join(f"{c}={image(server, c, sha)}" for c in names(SERVICES))  # publish's
    assert server.running() == running_images(server, names(SERVICES), sha) | frontend_running
    assert logged_in_only_on_stdin(server, result)
    assert SETTINGS.deploy.wait_timeout_seconds != sshd.WAIT_TIMEOUT
    assert wait_timeouts(result) == [str(SETTINGS.deploy.wait_timeout_seconds)], "config, not sshd's fallback"
    assert "### dreamscape-deploy on " in result.summary


def test_the_deploy_settings_of_the_config_travel_with_every_deploy(
    run_with, plan_of, server, compose_text, cloud
) -> None:
    """The stack writes them into the data file; the client reads it at the run's commit and sends them."""
    shipped_plan = plan_of(STACK)
    shipped_document = central_document(shipped_plan)
    shipped_job, shipped = shipped_document["jobs"]["deploy"], ssh_step_of(shipped_document)
    configured = SETTINGS.deploy
    assert json.loads(data_of(shipped_plan))["deploy"] == {
        "lock_wait_seconds": configured.lock_wait_seconds,
        "wait_timeout_seconds": configured.wait_timeout_seconds,
        "keep_releases": configured.keep_releases,
    }

    plan = run_with(STACK, deploy={"lockWaitSeconds": 7, "waitTimeoutSeconds": 42, "keepReleases": 2})
    document = central_document(plan)
    data = data_of(plan)
    step = ssh_step_of(document)
    assert json.loads(data)["deploy"] == {"lock_wait_seconds": 7, "wait_timeout_seconds": 42, "keep_releases": 2}
    assert step["run"] == shipped["run"] == "exec python3 -m ci.deploy"
    assert step["env"] == shipped["env"], "the step is the same; only the data file differs"
    assert "${{" not in step["run"]
    assert '"keep_releases": 2' in data
    job = document["jobs"]["deploy"]
    budget = 7 + central.PULL_ALLOWANCE_SECONDS + 2 * 42
    assert step["timeout-minutes"] * 60 > budget and job["timeout-minutes"] > step["timeout-minutes"]
    assert job["timeout-minutes"] < shipped_job["timeout-minutes"], "the job's limit follows the configured waits"

    for n in range(3):
        sha = built(server, names(SERVICES), sha_of("keep two", n))
        result = run_deploy(document, server, compose_text, SERVICES, names(SERVICES), sha, data, cloud=cloud)
        assert result.status == "success", result.log
        assert wait_timeouts(result) == ["42"]
    releases = sorted(p.name for p in (server.state_dir / "releases").iterdir())
    assert releases == sorted([server.state()["previous"], server.state()["current"]])
    logged = server.syslog()
    assert len(logged) == 3 and all("command='deploy --lock-wait 7 --wait-timeout 42 --keep 2 " in m for m in logged)


def test_a_deploy_that_rolls_back_fails_the_job(plan_of, server, compose_text, cloud) -> None:
    document, data = central_document(plan_of(STACK)), data_of(plan_of(STACK))
    registry = server.engine.auth_registry
    before = built(server, DEPLOYABLE, sha_of("bootstrap"))
    pairs = {c: image(server, c, before) for c in DEPLOYABLE}
    login = (registry.host, registry.user, registry.password)
    secrets = server.secrets_for(compose_text)
    assert server.deploy(pairs, compose_text, login=login, secrets=secrets).returncode == 0
    sha = built(server, ["auth-service"], sha_of("broken release"), "crash")
    result = run_deploy(document, server, compose_text, SERVICES, ["auth-service"], sha, data, cloud=cloud)
    assert result.status == "failure"
    assert "::error title=Deploy::rolled back" in result.log
    assert server.running()["auth-service"] == (image(server, "auth-service", before), "healthy")


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
    # PIPELINE_TOKEN reads the branch head only; the step that reaches the VM never holds it.
    assert central.TOKEN not in json.dumps(ssh_step)
    [newest] = [s for s in deploy["steps"] if s.get("id") == "newest"]
    assert newest["env"][central.TOKEN] == f"${{{{ secrets.{central.TOKEN} }}}}"


# --- newest wins: ci/deploy_gate.py, through the rendered job (no VM reached) and on its own ---------


def run_gate(document: dict[str, Any], head: str | None, sha: str) -> JobResult:
    """The deploy job of an automatic run at `sha` while the branch head is `head` (None: no such branch)."""
    source = f"{SETTINGS.github_owner}/{SERVICES.name}"
    outputs = {"environment": STACK, "deploy": "true", "components": '["auth-service"]', "source_repo": source}
    outputs |= {"ref": "refs/heads/main", "sha": sha}
    with stand_in(SETTINGS) as api:
        if head is not None:
            api.branch_heads[(source.lower(), "main")] = head
        context = Context(
            github=dispatch_github(SETTINGS, api, "services-changed", {}),
            secrets={central.TOKEN: DISPATCH_TOKEN},
            needs={"resolve": {"result": "success", "outputs": outputs}, "publish": {"result": "success"}},
        )
        data = central.data_file(central.CentralArgs.from_settings(SETTINGS))
        artifacts = Artifacts(infra={compose.path(STACK): "services: {}\n", central.DATA_PATH: data})
        return run_job(document, "deploy", context, extra_env=RETRY_ENV, uses=artifacts.table())


def test_a_superseded_run_reaches_no_vm_and_names_the_newer_commit(plan_of) -> None:
    document = central_document(plan_of(STACK))
    sha, newer = sha_of("older commit"), sha_of("newer commit")
    result = run_gate(document, newer, sha)
    assert result.status == "success", result.log
    assert result.outputs["superseded"] == newer
    [ssh] = [s for s in result.steps if s.name.startswith("Deploy to")]
    assert not ssh.ran
    assert f"::notice title=Superseded::main is at {newer} now, which its own run deploys" in result.log


def test_the_branch_head_unreadable_fails_the_job_before_any_deploy(plan_of) -> None:
    result = run_gate(central_document(plan_of(STACK)), None, sha_of("no branch"))
    assert result.status == "failure"
    assert (
        "::error title=Branch head::HTTP 404 (Not Found): branch main no longer exists in "
        f"{SETTINGS.github_owner}/{SERVICES.name}, or PIPELINE_TOKEN cannot read it; nothing deployed"
    ) in result.log
    assert [s.name for s in result.steps if s.ran][-1] == "Check that the commit is still the newest of its branch"


def test_the_gate_deploys_the_head_or_a_manual_choice_and_nothing_else() -> None:
    sha, head = "1" * 40, "2" * 40
    assert deploy_gate.decide(sha, sha, "main", manual=False).superseded == ""
    manual = deploy_gate.decide(sha, head, "develop", manual=True)
    assert (manual.superseded, manual.notice) == ("", "Older commit")
    assert manual.message == f"develop is at {head}; this manual run deploys {sha} on purpose."
    automatic = deploy_gate.decide(sha, head, "main", manual=False)
    assert (automatic.superseded, automatic.notice) == (head, "Superseded")
