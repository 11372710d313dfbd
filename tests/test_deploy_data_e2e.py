"""What a component gets besides its image, end to end: its variables and its volumes, on the
real engine behind the real sshd, deploy program and edge (tests/harness/).

The compose file is the tests' own (tests/test_deploy_e2e.py) with auth-service's environment
and volumes as components/environment/compose.py renders them for a component with `env` and
`volumes`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import yaml

from components.environment import compose, deploy_program
from components.settings import Component
from tests.harness import engine
from tests.harness.engine import Engine
from tests.harness.sshd import DeployServer
from tests.test_deploy_e2e import SHA2, SHA3, compose_file, image, publish, text, v1

pytestmark = pytest.mark.e2e

AUTH = Component(
    "auth-service",
    3001,
    "/health",
    env=(("GREETING", "costs $5, not ${HOME}"), ("LOG_LEVEL", "debug")),
    volumes=(("data", "/data"),),
)


@pytest.fixture(scope="module")
def data_server(docker_engine: Engine) -> Iterator[DeployServer]:
    with DeployServer(docker_engine, user="dsdata") as server:
        yield server
    engine.docker("volume", "rm", "--force", volume_name(server))


@pytest.fixture
def server(data_server: DeployServer) -> DeployServer:
    data_server.reset()
    engine.docker("volume", "rm", "--force", volume_name(data_server))
    publish(data_server, v1(data_server))
    return data_server


def volume_name(server: DeployServer) -> str:
    """What the program names auth-service's volume: one for both slots."""
    return f"{server.project}_{AUTH.volume('data')}"


def with_data(server: DeployServer) -> str:
    rendered = compose.service(AUTH)
    document = yaml.safe_load(compose_file(server, start_period="8s"))
    document["services"]["auth-service"]["environment"] = rendered["environment"]
    document["services"]["auth-service"]["volumes"] = rendered["volumes"]
    document["volumes"] = {AUTH.volume("data"): {}}
    return yaml.safe_dump(document, sort_keys=False)


def in_auth_service(server: DeployServer, *command: str) -> str:
    [container] = [c["ID"] for c in server.containers() if c["Service"] == "auth-service"]
    return engine.docker("exec", container, *command)


def deploy(server: DeployServer, pairs: dict[str, str]) -> subprocess.CompletedProcess:
    return server.deploy(pairs, with_data(server), timeout=300)


def test_a_components_variables_reach_its_container_as_written(server: DeployServer) -> None:
    assert deploy(server, v1(server)).returncode == 0
    environment = in_auth_service(server, "sh", "-c", 'printf "%s|%s|%s" "$GREETING" "$LOG_LEVEL" "$PORT"')
    assert environment == "costs $5, not ${HOME}|debug|3001"


def test_data_in_a_volume_outlives_deploys_rollbacks_and_failed_releases(server: DeployServer) -> None:
    assert deploy(server, v1(server)).returncode == 0
    in_auth_service(server, "sh", "-c", "echo written-by-v1 > /data/file")

    second = publish(server, {"auth-service": image(server, "auth-service", SHA2)}, "slow-1")
    assert deploy(server, second).returncode == 0
    assert server.edge.live() == "green", "the new release runs in the other slot"
    assert in_auth_service(server, "cat", "/data/file") == "written-by-v1\n"
    in_auth_service(server, "sh", "-c", "echo written-by-v2 > /data/file")

    rollback = server.ssh("rollback", timeout=300)
    assert rollback.returncode == 0, text(rollback)
    assert in_auth_service(server, "cat", "/data/file") == "written-by-v2\n"

    broken = publish(server, {"auth-service": image(server, "auth-service", SHA3)}, "crash")
    failed = deploy(server, broken)
    assert failed.returncode == deploy_program.EXIT["ROLLED_BACK"], text(failed)
    assert in_auth_service(server, "cat", "/data/file") == "written-by-v2\n"

    volumes = engine.docker("volume", "ls", "--quiet", "--filter", f"name={server.project}").split()
    assert volumes == [volume_name(server)], "one volume, shared by both slots, never removed"
