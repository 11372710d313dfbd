"""Secrets and accessories end to end: the real engine behind the real sshd, deploy program and
edge (tests/harness/).

The compose file is rendered by components/environment/compose.py from settings like the
shipped ones: auth-service gets a signing key and names the `postgres` accessory (so it gets
the accessory's password and joins its network); gateway gets neither. The accessory is one of
the harness's busybox images serving HTTP on 5432, so a component's request to it by name
proves the network, and its health check is the rendered one.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from components.environment import compose, deploy_program
from components.settings import Accessory, Component, SourceRepository
from tests.harness import engine
from tests.harness.engine import Engine
from tests.harness.sshd import DeployServer, frames
from tests.test_deploy_e2e import FAST_HEALTH, SHA1, SHA2, SHA3, image, publish, text, v1

pytestmark = pytest.mark.e2e

SIGNING_KEY = "jwt-signing-key-7f3a9c1e2b4d6f80a1c3e5"
PASSWORD = "postgres-password-4e6a8c0b2d4f6a8c0e2b"
ROTATED = "jwt-signing-key-rotated-99d1f2e3a4b5c6"


def accessory(server: DeployServer) -> Accessory:
    return Accessory(
        "postgres",
        image(server, "postgres", SHA1),
        env=(("PORT", "5432"),),
        secrets=("POSTGRES_PASSWORD",),
        volumes=(("data", "/var/lib/data"),),
        health_check="wget -q -O /dev/null http://127.0.0.1:5432/health",
    )


def repository() -> SourceRepository:
    return SourceRepository(
        "dreamscape-services",
        "services",
        True,
        "true",
        "true",
        (
            Component("auth-service", 3001, "/health", secrets=("JWT_SIGNING_KEY",), accessories=("postgres",)),
            Component("gateway", 8080, "/health", host_port=80),
        ),
    )


def compose_text(server: DeployServer) -> str:
    """The rendered file, with the tests' short health timings and the edge's port on 127.0.0.1."""
    document = compose.document([repository()], accessories=(accessory(server),))
    for service in document["services"].values():
        if "healthcheck" in service:
            service["healthcheck"] |= FAST_HEALTH
    return server.local(yaml.safe_dump(document, sort_keys=False))


def secrets(signing_key: str = SIGNING_KEY) -> dict[str, str]:
    return {"JWT_SIGNING_KEY": signing_key, "POSTGRES_PASSWORD": PASSWORD}


@pytest.fixture(scope="module")
def secrets_server(docker_engine: Engine) -> Iterator[DeployServer]:
    with DeployServer(docker_engine, user="dssecret") as server:
        yield server


@pytest.fixture
def server(secrets_server: DeployServer) -> DeployServer:
    secrets_server.reset()
    publish(secrets_server, {**v1(secrets_server), "postgres": accessory(secrets_server).image})
    return secrets_server


def pairs(server: DeployServer, tag: str = SHA1) -> dict[str, str]:
    return {"auth-service": image(server, "auth-service", tag), "gateway": image(server, "gateway", SHA1)}


def deploy(server: DeployServer, tag: str = SHA1, values: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return server.deploy(pairs(server, tag), compose_text(server), secrets=secrets() if values is None else values)


def container_of(server: DeployServer, service: str) -> str:
    [container] = [c["ID"] for c in server.containers() if c["Service"] == service]
    return container


def accessory_container(server: DeployServer) -> dict:
    output = engine.docker(
        "compose", "--project-name", server.accessories_project, "ps", "--all", "--format", "json"
    ).strip()
    found = json.loads(output) if output.startswith("[") else [json.loads(line) for line in output.splitlines()]
    [container] = found
    return container


def run_in(container: str, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [engine.DOCKER, "exec", container, *command], capture_output=True, text=True, timeout=60, check=check
    )


def test_each_container_reads_exactly_its_secrets_from_files(server: DeployServer) -> None:
    result = deploy(server)
    assert result.returncode == 0, text(result)
    auth, gateway = container_of(server, "auth-service"), container_of(server, "gateway")
    read = 'cat "$JWT_SIGNING_KEY_FILE"; echo; cat "$POSTGRES_PASSWORD_FILE"'
    assert run_in(auth, "sh", "-c", read).stdout.split() == [SIGNING_KEY, PASSWORD]
    assert run_in(gateway, "ls", "/run/secrets", check=False).returncode != 0, "gateway gets no secret"
    postgres = accessory_container(server)
    assert postgres["Health"] == "healthy"
    assert run_in(postgres["ID"], "cat", "/run/secrets/POSTGRES_PASSWORD").stdout == PASSWORD
    assert run_in(postgres["ID"], "ls", "/run/secrets").stdout.split() == ["POSTGRES_PASSWORD"]


def test_only_the_components_that_name_an_accessory_reach_it(server: DeployServer) -> None:
    assert deploy(server).returncode == 0
    auth, gateway = container_of(server, "auth-service"), container_of(server, "gateway")
    assert run_in(auth, "wget", "-q", "-O", "-", "http://postgres:5432/health").stdout == "ok\n"
    refused = run_in(gateway, "wget", "-q", "-T", "3", "-O", "-", "http://postgres:5432/health", check=False)
    assert refused.returncode != 0, "gateway is not on the accessory's network"


def test_no_secret_value_is_written_anywhere_but_its_files(server: DeployServer) -> None:
    result = deploy(server)
    assert result.returncode == 0, text(result)
    values = [SIGNING_KEY.encode(), PASSWORD.encode()]
    logged = result.stdout + result.stderr + "\n".join(server.syslog()).encode()
    assert not [v for v in values if v in logged], "the deploy log, summary and system log never show a value"
    holders = sorted(
        path.relative_to(server.state_dir).parts[-2:]
        for path in server.state_dir.rglob("*")
        if path.is_file() and any(v in path.read_bytes() for v in values)
    )
    assert holders == [
        ("secrets", "JWT_SIGNING_KEY"),
        ("secrets", "POSTGRES_PASSWORD"),
        ("secrets", "POSTGRES_PASSWORD"),
    ], "only the release's secret files and the accessory's copy"
    containers = [c["ID"] for c in server.containers()] + [accessory_container(server)["ID"]]
    inspected = engine.docker("inspect", *containers).encode()
    assert not [v for v in values if v in inspected], "docker inspect shows paths, never values"
    for directory in server.state_dir.rglob("secrets"):
        assert directory.stat().st_mode & 0o777 == 0o700
        assert directory.stat().st_uid == server.uid
        nobody = subprocess.run(
            ["runuser", "-u", "nobody", "--", "ls", str(directory)], capture_output=True, timeout=30, check=False
        )
        assert nobody.returncode != 0, "another user cannot even list them"


def test_a_rotated_secret_reaches_the_containers_on_the_next_deploy(server: DeployServer) -> None:
    assert deploy(server).returncode == 0
    first = server.state()["current"]
    assert deploy(server).returncode == deploy_program.EXIT["NO_CHANGE"]

    rotated = deploy(server, values=secrets(ROTATED))
    assert rotated.returncode == 0, text(rotated)
    auth = container_of(server, "auth-service")
    assert run_in(auth, "sh", "-c", 'cat "$JWT_SIGNING_KEY_FILE"').stdout == ROTATED
    assert not (server.state_dir / "releases" / first / "secrets").exists(), "the old release's files are gone"
    assert deploy(server, values=secrets(ROTATED)).returncode == deploy_program.EXIT["NO_CHANGE"]


def test_a_deploy_without_the_secrets_it_needs_changes_nothing(server: DeployServer) -> None:
    assert deploy(server).returncode == 0
    before = server.state()
    missing = deploy(server, SHA2, values={"JWT_SIGNING_KEY": SIGNING_KEY})
    assert missing.returncode == deploy_program.EXIT["BAD_INPUT"]
    assert "secret POSTGRES_PASSWORD was not sent" in text(missing)[1]
    assert server.state() == before


def test_an_accessory_is_never_recreated_by_deploys_rollbacks_or_failed_releases(server: DeployServer) -> None:
    assert deploy(server).returncode == 0
    postgres = accessory_container(server)
    run_in(postgres["ID"], "sh", "-c", "echo kept > /var/lib/data/file")

    publish(server, {"auth-service": image(server, "auth-service", SHA2)}, "slow-1")
    assert deploy(server, SHA2).returncode == 0

    # The first release's secret files went when it stopped: a rollback needs them sent again.
    refused = server.ssh("rollback", timeout=300)
    assert refused.returncode == deploy_program.EXIT["BAD_INPUT"], text(refused)
    rollback = server.ssh("rollback", stdin=frames(None, None, secrets()), timeout=300)
    assert rollback.returncode == 0, text(rollback)
    assert run_in(container_of(server, "auth-service"), "sh", "-c", 'cat "$JWT_SIGNING_KEY_FILE"').stdout == (
        SIGNING_KEY
    )

    publish(server, {"auth-service": image(server, "auth-service", SHA3)}, "crash")
    failed = deploy(server, SHA3)
    assert failed.returncode == deploy_program.EXIT["ROLLED_BACK"], text(failed)

    after = accessory_container(server)
    assert after["ID"] == postgres["ID"], "the same container throughout"
    assert after["State"] == "running" and after["Health"] == "healthy"
    assert run_in(after["ID"], "cat", "/var/lib/data/file").stdout == "kept\n"


def test_status_shows_the_accessories(server: DeployServer) -> None:
    assert deploy(server).returncode == 0
    status = server.ssh("status")
    assert status.returncode == 0
    summary = status.stdout.decode()
    assert "accessories:" in summary
    assert f"{server.accessories_project}-postgres-1" in summary
