"""The deploy client through an OCI Bastion hop, end to end, without a cloud.

What is real: the client (`python3 -m ci.deploy` on the runner's Python), `ssh`, two sshd on
127.0.0.1 — the bastion's, whose one account can only open the forward each session's key
allows (tests/harness/sshd.py, `BastionServer`), and the VM's, with the CI key forced into the
deploy program — and the Docker engine behind the VM's. What stands in: OCI's Bastion API, the
identity domain's token exchange and the runner's OIDC endpoint (tests/harness/oci_api.py),
which check every request against the OCI SDK's models and signatures and admit, as the IAM
policy does, sessions on this environment's bastion to this VM's address and port only. A
session that becomes ACTIVE authorizes its key on the bastion's sshd for its target; deleting
it takes the key away, as OCI does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci import config, deploy, oci
from components.environment import deploy_program
from components.workflows import central
from tests import bastion_support
from tests import test_deploy_e2e as deploy_e2e
from tests.bastion_support import BASTION, CI_USER, CLIENT_SECRET, GONE, OTHER_BASTION, SERVICE_USER, Cloud
from tests.central_support import deploy_checkout, settings_of
from tests.harness import sshd, workflow
from tests.harness.oci_api import BastionSpec
from tests.harness.sshd import BastionServer, DeployServer
from tests.harness.workflow import RUNNER_PYTHON
from tests.test_deploy_e2e import (
    COMPOSE_PATH,
    SHA3,
    ArgvWatcher,
    compose_file,
    data_file,
    healthy,
    image,
    pairs_text,
    publish,
    steps,
    text,
    v1,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def vm(docker_engine) -> Iterator[DeployServer]:
    with DeployServer(docker_engine, user="dsbhop") as server:
        yield server


@pytest.fixture
def cloud(vm: DeployServer, bastion: BastionServer, request: pytest.FixtureRequest) -> Iterator[Cloud]:
    with bastion_support.cloud(vm.port, bastion, getattr(request, "param", None)) as cloud:
        yield cloud


@pytest.fixture
def server(vm: DeployServer) -> DeployServer:
    vm.reset()
    publish(vm, v1(vm))
    return vm


def client_env(
    server: DeployServer,
    cloud: Cloud,
    tmp_path: Path,
    images: str,
    *,
    auth: str = oci.WORKLOAD_IDENTITY,
    known_hosts: str | None = None,
    **changes: str,
) -> dict[str, str]:
    env = deploy_e2e.client_env(server, tmp_path, images, known_hosts) | {
        "GITHUB_RUN_ID": "4242",
        "GITHUB_RUN_ATTEMPT": "1",
        "DEPLOY_OCI": cloud.access(auth),
        "OCI_DEPLOY_CREDENTIAL": cloud.credential(auth),
        **cloud.endpoints(),
        "DREAMSCAPE_RETRY_BASE_SECONDS": "0",
    }
    if auth == oci.WORKLOAD_IDENTITY:
        env["ACTIONS_ID_TOKEN_REQUEST_URL"] = cloud.api.oidc_request_url
        env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = cloud.issuer.request_token
    return env | changes


def workspace(server: DeployServer, tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    if not root.exists():
        root.mkdir()
        deploy_checkout(root, {central.DATA_PATH: data_file(), COMPOSE_PATH: compose_file(server)})
    return root


def run_client(server: DeployServer, tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, str]:
    guard = tmp_path / "guard"
    result = subprocess.run(
        [RUNNER_PYTHON, "-m", "ci.deploy"],
        env=workflow.guarded_client_env(env, guard),
        capture_output=True,
        timeout=180,
        check=False,
        cwd=workspace(server, tmp_path),
    )
    workflow.assert_guarded(guard)
    summary = Path(env["GITHUB_STEP_SUMMARY"])
    return result, summary.read_text() if summary.exists() else ""


def accepted(log: str, user: str) -> int:
    return log.count(f"Accepted publickey for {user} ")


def test_the_client_deploys_through_the_bastion_hop(
    server: DeployServer, bastion: BastionServer, cloud: Cloud, tmp_path: Path
) -> None:
    vm_before, bastion_before = (
        accepted(server.log_path.read_text(), server.user),
        accepted(bastion.log(), bastion.user),
    )
    env = client_env(server, cloud, tmp_path, pairs_text(v1(server)))
    with ArgvWatcher(os.getuid()) as watcher:
        result, summary = run_client(server, tmp_path, env)
    stdout, stderr = text(result)
    assert result.returncode == 0, (stdout, stderr, cloud.api.requests)
    assert "deployed: the new release runs and is healthy" in stdout
    assert ": deployed" in summary
    assert steps(result) == ["pull", "up"]
    assert server.running() == healthy(v1(server))

    # One session, on this environment's bastion, to the VM's address and SSH port, made for
    # a key of this run, and deleted once the deploy answered.
    [session] = cloud.api.sessions.values()
    assert (session.bastion_id, session.target) == (BASTION, ("127.0.0.1", server.port))
    assert session.state in GONE
    assert session.display_name == "dreamscape-deploy-4242-1"
    assert session.ttl == deploy.session_ttl(config.loads(data_file()).deploy)
    assert f"Bastion session {session.id} to 127.0.0.1:{server.port}" in stdout
    assert f"Bastion session {session.id} deleted" in stdout
    assert [r.route for r in cloud.api.requests][:4] == ["id-token", "token-exchange", "create-session", "get-session"]
    assert cloud.api.requests[-1].route == "delete-session"
    assert {r.principal for r in cloud.api.requests if r.route.endswith("-session")} == {SERVICE_USER}

    # Both hops authenticated: the session's key on the bastion, the CI key on the VM.
    assert accepted(bastion.log(), bastion.user) == bastion_before + 1
    assert accepted(server.log_path.read_text(), server.user) == vm_before + 1
    assert not list((tmp_path / "runner-temp").iterdir()), "the keys' directory is gone"

    # No secret of the run on a command line or in a URL: the client secret, the UPST, the keys.
    [upst] = cloud.api.tokens
    secrets = (CLIENT_SECRET, upst, cloud.issuer.request_token, "PRIVATE KEY")
    assert any("ProxyCommand=" in argv for argv in watcher.seen), "the watcher saw ssh"
    assert not [argv for argv in watcher.seen if any(s in argv for s in secrets)]
    assert not [r.target for r in cloud.api.requests if any(s in r.target for s in secrets)]
    assert not [s for s in secrets if s in stdout + stderr + summary]


def test_the_api_key_mode_deploys_through_the_bastion_hop(
    server: DeployServer, bastion: BastionServer, cloud: Cloud, tmp_path: Path
) -> None:
    env = client_env(server, cloud, tmp_path, pairs_text(v1(server)), auth=oci.API_KEY)
    result, _ = run_client(server, tmp_path, env)
    assert result.returncode == 0, (text(result), cloud.api.requests)
    assert {r.route for r in cloud.api.requests} == {"create-session", "get-session", "delete-session"}
    assert {r.principal for r in cloud.api.requests} == {CI_USER}
    assert cloud.sessions_left() == []
    assert server.running() == healthy(v1(server))


def test_a_wrong_host_key_behind_the_bastion_fails_the_deploy(
    server: DeployServer, bastion: BastionServer, cloud: Cloud, tmp_path: Path
) -> None:
    """The bastion hop succeeds; the VM behind it shows another host key than the pinned one."""
    other = sshd.keygen(tmp_path / "other_host_key")
    vm_before, bastion_before = (
        accepted(server.log_path.read_text(), server.user),
        accepted(bastion.log(), bastion.user),
    )
    wrong = f"[127.0.0.1]:{server.port} {other}"
    env = client_env(server, cloud, tmp_path, pairs_text(v1(server)), known_hosts=wrong)
    result, summary = run_client(server, tmp_path, env)
    stdout, stderr = text(result)
    assert result.returncode == 255, (stdout, stderr)
    assert "Host key verification failed" in stderr
    assert "### Deploy: no answer from the VM (exit 255)" in summary
    assert accepted(bastion.log(), bastion.user) == bastion_before + 1, "the bastion hop was made"
    assert accepted(server.log_path.read_text(), server.user) == vm_before, "the CI key was never offered to the VM"
    assert server.containers() == []
    assert cloud.sessions_left() == []


@pytest.fixture
def impostor_bastion(vm: DeployServer, bastion: BastionServer, tmp_path: Path) -> Iterator[Cloud]:
    """OCI names another host key for the bastion than the one its SSH endpoint shows."""
    host_key = sshd.keygen(tmp_path / "bastion_host_key")
    with bastion_support.cloud(vm.port, bastion, BastionSpec(user_name=bastion.user, host_key=host_key)) as cloud:
        yield cloud


def test_a_bastion_showing_another_host_key_than_oci_names_gets_nothing(
    server: DeployServer, bastion: BastionServer, impostor_bastion: Cloud, tmp_path: Path
) -> None:
    bastion_before = accepted(bastion.log(), bastion.user)
    env = client_env(server, impostor_bastion, tmp_path, pairs_text(v1(server)))
    result, _ = run_client(server, tmp_path, env)
    stdout, stderr = text(result)
    assert result.returncode == 255, (stdout, stderr)
    assert "Host key verification failed" in stderr
    assert accepted(bastion.log(), bastion.user) == bastion_before, "the session's key was never offered"
    assert impostor_bastion.sessions_left() == []


def test_a_deploy_that_rolls_back_still_deletes_its_session(
    server: DeployServer, bastion: BastionServer, cloud: Cloud, tmp_path: Path
) -> None:
    assert run_client(server, tmp_path, client_env(server, cloud, tmp_path, pairs_text(v1(server))))[0].returncode == 0
    bad = publish(server, {"gateway": image(server, "gateway", SHA3)}, "crash")
    result, _ = run_client(server, tmp_path, client_env(server, cloud, tmp_path, pairs_text(bad)))
    assert result.returncode == deploy_program.EXIT["ROLLED_BACK"], text(result)
    assert len(cloud.api.sessions) == 2 and cloud.sessions_left() == []
    assert server.running() == healthy(v1(server))


def test_a_cancelled_deploy_deletes_its_session(
    server: DeployServer, bastion: BastionServer, cloud: Cloud, tmp_path: Path
) -> None:
    """GitHub cancels a job with SIGINT (then SIGTERM) to the step's shell; the step `exec`s the
    client, so the client gets it and deletes its session on the way out."""
    assert run_client(server, tmp_path, client_env(server, cloud, tmp_path, pairs_text(v1(server))))[0].returncode == 0
    vm_before = accepted(server.log_path.read_text(), server.user)
    slow = publish(server, {"gateway": image(server, "gateway", SHA3)}, "slow-20")
    env = client_env(server, cloud, tmp_path, pairs_text(slow))
    [step] = [
        s
        for s in central.document(central.CentralArgs.from_settings(settings_of("production")))["jobs"]["deploy"][
            "steps"
        ]
        if s.get("run", "").endswith("-m ci.deploy")
    ]
    script = tmp_path / "step.sh"
    script.write_text(step["run"] + "\n")
    env["PATH"] = f"{Path(RUNNER_PYTHON).parent}:{env['PATH']}"
    guard = tmp_path / "guard-cancelled"
    env = workflow.guarded_client_env(env, guard)
    process = subprocess.Popen(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        env=env,
        cwd=workspace(server, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Under way: the VM accepted the CI key through the tunnel, and the new release is
        # starting (it takes 20 s to become healthy).
        deadline = time.monotonic() + 60
        while accepted(server.log_path.read_text(), server.user) == vm_before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2)
        assert process.poll() is None, process.communicate()
        assert [s.state for s in cloud.api.sessions.values()][-1] == "ACTIVE"
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGINT
    workflow.assert_guarded(guard)
    session = list(cloud.api.sessions.values())[-1]
    assert session.state in GONE
    assert f"Bastion session {session.id} deleted" in stdout.decode()
    assert not list((tmp_path / "runner-temp").iterdir()), "the keys' directory is gone"
    # On the VM the program, its client gone, finishes on its own: the slow release misses the
    # health wait and the one before runs again. Nothing of this test outlives it.
    assert server.wait_idle(), "the deploy program finished"
    assert server.running() == healthy(v1(server))


def test_a_refused_credential_stops_before_any_session_or_connection(
    server: DeployServer, bastion: BastionServer, cloud: Cloud, tmp_path: Path
) -> None:
    connections = bastion.log().count("Connection from")
    env = client_env(server, cloud, tmp_path, pairs_text(v1(server)), OCI_DEPLOY_CREDENTIAL="not-the-secret")
    result, _ = run_client(server, tmp_path, env)
    stdout, _ = text(result)
    assert result.returncode == deploy.NO_BASTION_SESSION
    assert "::error title=Deploy::no bastion session: OCI token exchange: HTTP 401 invalid_client" in stdout
    assert cloud.api.sessions == {}
    assert bastion.log().count("Connection from") == connections


def test_a_bastion_the_policy_does_not_allow_is_refused(
    server: DeployServer, bastion: BastionServer, cloud: Cloud, tmp_path: Path
) -> None:
    env = client_env(server, cloud, tmp_path, pairs_text(v1(server)))
    env["DEPLOY_OCI"] = cloud.access(bastion_id=OTHER_BASTION)
    result, _ = run_client(server, tmp_path, env)
    assert result.returncode == deploy.NO_BASTION_SESSION
    assert "Create the bastion session: HTTP 404 NotAuthorizedOrNotFound" in text(result)[0]
    assert cloud.api.sessions == {}


@pytest.mark.parametrize("cloud", [BastionSpec(outcome="FAILED")], indirect=True)
def test_a_session_that_fails_to_open_is_reported_and_deleted(
    server: DeployServer, bastion: BastionServer, cloud: Cloud, tmp_path: Path
) -> None:
    connections = bastion.log().count("Connection from")
    result, _ = run_client(server, tmp_path, client_env(server, cloud, tmp_path, pairs_text(v1(server))))
    assert result.returncode == deploy.NO_BASTION_SESSION
    assert "no bastion session: the bastion session is FAILED, not ACTIVE" in text(result)[0]
    assert [r.route for r in cloud.api.requests][-1] == "delete-session"
    assert bastion.log().count("Connection from") == connections


def test_the_bastion_account_only_forwards_to_the_sessions_target(
    server: DeployServer, bastion: BastionServer, tmp_path: Path
) -> None:
    """What a session's key can do on the bastion: the one forward, no command, no other target."""
    key = tmp_path / "session_key"
    public = sshd.keygen(key)
    known = tmp_path / "bastion_known_hosts"
    known.write_text(f"[127.0.0.1]:{bastion.port} {bastion.host_key}\n")
    base = [
        "ssh", "-F", "none", "-p", str(bastion.port), "-l", bastion.user, "-i", str(key),
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known}", "-o", "ConnectTimeout=10",
    ]  # fmt: skip

    def forward(port: int) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*base, "-W", f"127.0.0.1:{port}", "127.0.0.1"], input=b"", capture_output=True, timeout=30, check=False
        )

    bastion.authorize(public, "127.0.0.1", server.port)
    try:
        allowed = forward(server.port)
        assert allowed.stdout.startswith(b"SSH-2.0-"), allowed.stderr  # the VM's sshd answered through the tunnel
        refused = forward(bastion.port)
        assert refused.stdout == b"" and b"administratively prohibited" in refused.stderr
        shell = subprocess.run([*base, "127.0.0.1", "id"], capture_output=True, timeout=30, check=False)
        assert b"uid=" not in shell.stdout
    finally:
        bastion.revoke(public)
    after = forward(server.port)
    assert after.returncode == 255 and b"Permission denied" in after.stderr
