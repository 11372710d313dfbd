"""Gapless deploys, end to end: steady traffic through the VM's edge proxy (Debian's Caddy, as
the VM runs it) while releases replace each other on the real Docker engine, behind the real
sshd and deploy program (tests/harness/).

Each test sends a GET every 20 ms on new connections, another every 20 ms on one keep-alive
connection, and one-second requests from four clients (tests/harness/traffic.py), and then
counts what failed: a refused or reset connection, a timeout or any status but 200. The goal
and the assertion are the same: none.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from components.environment import deploy_program
from tests.harness import engine
from tests.harness.engine import Engine
from tests.harness.sshd import DeployServer
from tests.harness.traffic import Traffic
from tests.test_deploy_e2e import SHA2, SHA3, compose_file, image, publish, text, v1

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gapless_server(docker_engine: Engine) -> Iterator[DeployServer]:
    with DeployServer(docker_engine, user="dsgapless") as server:
        yield server


@pytest.fixture
def server(gapless_server: DeployServer) -> DeployServer:
    gapless_server.reset()
    publish(gapless_server, v1(gapless_server))
    return gapless_server


def traffic(server: DeployServer) -> Traffic:
    return Traffic("127.0.0.1", server.http_port)


SLOW_START = {"start_period": "8s"}
"""Time a starting release may take before a failed probe counts (production gives 30 s)."""


def deploy(server: DeployServer, pairs: dict[str, str]) -> subprocess.CompletedProcess:
    return server.deploy(pairs, compose_file(server, **SLOW_START), timeout=300)


def settled(load: Traffic, seconds: float = 1.0) -> None:
    """Let the traffic run a little longer, so what follows the move is measured too."""
    time.sleep(seconds)


def test_a_deploy_moves_traffic_to_a_slow_starting_release_without_a_failed_request(server: DeployServer) -> None:
    assert deploy(server, v1(server)).returncode == 0
    old_containers = {c["Name"] for c in server.containers()}
    # Answers only after 3 s: with the container replaced in place, 3 s of refused connections.
    slow = publish(server, {"auth-service": image(server, "auth-service", SHA2)}, "slow-3")

    with traffic(server) as load:
        settled(load)
        began = time.monotonic()
        result = deploy(server, slow)
        settled(load)

    assert result.returncode == deploy_program.EXIT["DEPLOYED"], text(result)
    assert load.failed() == [], load.summary()
    assert len(load.of("fresh")) > 100 and len(load.of("kept")) > 100 and len(load.of("slow")) > 10, load.summary()
    for kind in ("fresh", "kept", "slow"):
        assert load.bodies(kind) == ["healthy", "slow-3"], (kind, load.bodies(kind))
    switched = min(t for t in (load.first("slow-3", kind) for kind in ("fresh", "kept")) if t is not None)
    assert switched > began + 3, "the new release took traffic only once it answered"
    drained = [a for a in load.of("slow") if a.body == "healthy" and a.ended > switched]
    assert drained, "requests in flight on the old release when traffic moved were answered by it"

    assert server.edge.live() == "green" and server.idle_slot_containers() == [], "the old slot is stopped"
    assert not old_containers & {c["Name"] for c in server.containers()}
    networks = {
        c["Service"]: set(json.loads(engine.docker("inspect", c["ID"]))[0]["NetworkSettings"]["Networks"])
        for c in server.containers()
    }
    assert networks == {name: {f"{server.project}-green_default"} for name in networks}, (
        "a release's components share their slot's network only: a name resolves within the release"
    )


def test_a_rollback_moves_traffic_back_without_a_failed_request(server: DeployServer) -> None:
    assert deploy(server, v1(server)).returncode == 0
    second = publish(server, {"auth-service": image(server, "auth-service", SHA2)}, "slow-1")
    assert deploy(server, second).returncode == 0

    with traffic(server) as load:
        settled(load)
        result = server.ssh("rollback", "--wait-timeout", "30", timeout=300)
        settled(load)

    assert result.returncode == 0, text(result)
    assert load.failed() == [], load.summary()
    assert load.bodies("fresh") == ["slow-1", "healthy"] and load.bodies("kept") == ["slow-1", "healthy"]
    assert server.edge.live() == "blue" and server.idle_slot_containers() == []


@pytest.mark.parametrize("variant", ["unhealthy", "crash"])
def test_a_release_that_never_becomes_healthy_never_receives_a_request(server: DeployServer, variant: str) -> None:
    assert deploy(server, v1(server)).returncode == 0
    # Its `/` would answer 404 (unhealthy) or refuse (crash): any request it got would fail.
    bad = publish(server, {"auth-service": image(server, "auth-service", SHA3)}, variant)

    with traffic(server) as load:
        settled(load)
        result = deploy(server, bad)
        settled(load)

    assert result.returncode == deploy_program.EXIT["ROLLED_BACK"], text(result)
    assert load.failed() == [], load.summary()
    assert {a.body for a in load.answers} == {"healthy"}, "every request was answered by the running release"
    assert server.edge.live() == "blue" and server.idle_slot_containers() == []


def test_the_edge_serves_the_live_release_again_after_a_restart(server: DeployServer) -> None:
    assert deploy(server, v1(server)).returncode == 0
    second = publish(server, {"auth-service": image(server, "auth-service", SHA2)}, "slow-1")
    assert deploy(server, second).returncode == 0

    server.edge.restart()  # a reboot: Caddy reads the configuration the last deploy wrote

    with traffic(server) as load:
        settled(load)
    assert load.failed() == [], load.summary()
    assert load.bodies() == ["slow-1"]
    status = text(server.ssh("status"))[0]
    assert "- edge sends traffic to: the green slot" in status and "- healthy: yes" in status


def test_deploying_the_same_published_ports_leaves_the_edge_configuration_alone(server: DeployServer) -> None:
    """A reload would close every idle keep-alive connection: a deploy must not cause one."""
    assert deploy(server, v1(server)).returncode == 0
    caddyfile = server.edge.directory / deploy_program.CADDYFILE
    written = caddyfile.stat().st_mtime_ns, caddyfile.read_text()
    log_size = server.edge.log_path.stat().st_size

    second = publish(server, {"gateway": image(server, "gateway", SHA2)})
    assert deploy(server, second).returncode == 0

    assert (caddyfile.stat().st_mtime_ns, caddyfile.read_text()) == written
    new_log = server.edge.log_path.read_text()[log_size:]
    assert "config is unchanged" in new_log and "load complete" in new_log
    assert "stopping current admin endpoint" not in new_log and '"msg":"servers shutting down' not in new_log


def container_of(server: DeployServer, slot: str, service: str) -> str | None:
    found = [c["ID"] for c in server.containers(slot) if c["Service"] == service and c["State"] == "running"]
    return found[0] if found else None


def test_components_reach_the_components_of_their_own_release_by_service_name(server: DeployServer) -> None:
    """While two releases run side by side, a name resolves within each one's slot: the old
    gateway reaches the old auth-service, the new gateway the new one."""
    assert deploy(server, v1(server)).returncode == 0
    late = publish(server, {"auth-service": image(server, "auth-service", SHA2)}, "slow-30")  # answers after 30 s
    running = server.start_deploy(late, compose_file(server, **SLOW_START), flags=("--wait-timeout", "20"))
    try:
        deadline = time.monotonic() + 30
        while container_of(server, "green", "gateway") is None:
            assert time.monotonic() < deadline and running.poll() is None, "the new release never started"
            time.sleep(0.2)

        def resolved(slot: str) -> str:
            """What `auth-service` resolves to in the slot's gateway (busybox nslookup asks
            Docker's embedded DNS, as any resolver in the container would)."""
            gateway = container_of(server, slot, "gateway")
            assert gateway is not None
            answer = engine.docker("exec", gateway, "nslookup", "auth-service")
            return answer.split("Name:", 1)[1]

        def address(slot: str) -> str:
            own = json.loads(engine.docker("inspect", container_of(server, slot, "auth-service") or ""))[0]
            (found,) = [n["IPAddress"] for n in own["NetworkSettings"]["Networks"].values()]
            return found

        deadline = time.monotonic() + 30
        while container_of(server, "green", "auth-service") is None:
            assert time.monotonic() < deadline and running.poll() is None, "the new auth-service never started"
            time.sleep(0.2)
        blue, green = address("blue"), address("green")
        assert blue != green
        assert f"Address: {blue}" in resolved("blue") and green not in resolved("blue")
        assert f"Address: {green}" in resolved("green") and blue not in resolved("green")
    finally:
        stdout, stderr = running.communicate(timeout=120)
    assert running.returncode == deploy_program.EXIT["ROLLED_BACK"], (stdout.decode(), stderr.decode())
