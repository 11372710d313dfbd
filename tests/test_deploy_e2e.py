"""The deploy end to end: a real sshd on 127.0.0.1, the CI key's authorized_keys line exactly as
cloud-init renders it, the real program, and a real Docker Engine with Compose v2, pulling
busybox images from registries on 127.0.0.1 (tests/harness/).

Every scenario the engine can play runs on it: releases that are healthy, unhealthy, crash
looping, slow to answer or missing from the registry, a registry that wants a login, a stack
stopped or broken by hand. What the program ran is read from its own progress on stderr
(`$ docker compose ... pull`, `... up`), what runs from `docker compose ps`.

Locally these skip with the reason when sshd, the engine or another prerequisite is
missing; under CI=true they fail instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import itertools
import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ci import config
from components.environment import compose, deploy_program
from components.workflows import central
from tests.central_support import deploy_checkout, rendered_file, settings_of
from tests.harness import engine, sshd, workflow
from tests.harness.engine import Engine
from tests.harness.sshd import DeployServer
from tests.harness.workflow import RUNNER_PYTHON

pytestmark = pytest.mark.e2e

SHA1, SHA2, SHA3 = ("1" * 40, "2" * 40, "3" * 40)
PORTS = {"auth-service": 3001, "gateway": 8080}
FAST_HEALTH = {"interval": "1s", "timeout": "2s", "retries": 1, "start_period": "2s", "start_interval": "200ms"}
"""Short health timings, so an unhealthy release is seen within seconds (production's are in
components/environment/compose.py; the golden file's own test below runs those)."""


def compose_file(server: DeployServer, **health: str) -> str:
    """The tests' environment: two services as production renders them (image variable, restart
    policy, health check with the production command), auth-service published on 127.0.0.1."""
    services = {}
    for name, port in PORTS.items():
        check = compose.health_test(port, "/health")
        services[name] = {
            "image": f"${{{deploy_program.image_variable(name)}:?{name} has no image yet}}",
            "restart": "unless-stopped",
            "environment": {"PORT": str(port)},
            "healthcheck": {"test": check, **FAST_HEALTH, **health},
            "volumes": [compose.probe_mount()],
        }
    services["auth-service"]["ports"] = [f"127.0.0.1:{server.http_port}:{PORTS['auth-service']}"]
    return yaml.safe_dump({"services": services}, sort_keys=False)


def image(server: DeployServer, component: str, tag: str) -> str:
    return server.engine.registry.image(f"dreamscape/{component}", tag)


def v1(server: DeployServer) -> dict[str, str]:
    return {name: image(server, name, SHA1) for name in PORTS}


def publish(server: DeployServer, pairs: dict[str, str], variant: str = "healthy") -> dict[str, str]:
    for reference in pairs.values():
        server.engine.publish(reference, variant)
    return pairs


@pytest.fixture(scope="session")
def deploy_server(docker_engine: Engine) -> Iterator[DeployServer]:
    with DeployServer(docker_engine) as server:
        yield server


@pytest.fixture
def server(deploy_server: DeployServer) -> DeployServer:
    """A fresh VM and engine for each test, with the first release's images in the registry."""
    deploy_server.reset()
    publish(deploy_server, v1(deploy_server))
    return deploy_server


def text(result: subprocess.CompletedProcess) -> tuple[str, str]:
    return result.stdout.decode(), result.stderr.decode()


def ran(result: subprocess.CompletedProcess) -> list[list[str]]:
    """The docker commands the program ran and printed (`$ docker ...`): login, pull, up."""
    return [line[2:].split(" ") for line in text(result)[1].splitlines() if line.startswith("$ docker ")]


def steps(result: subprocess.CompletedProcess) -> list[str]:
    """`login`, `pull`, `up`, `down` for each docker command the program printed."""
    return [next(w for w in argv if w in ("login", "pull", "up", "down")) for argv in ran(result)]


def pulled(result: subprocess.CompletedProcess) -> list[list[str]]:
    """The services each `compose pull` named."""
    return [argv[argv.index("pull") + 1 :] for argv in ran(result) if "pull" in argv]


def release_of(argv: list[str]) -> str:
    return Path(argv[argv.index("--project-directory") + 1]).name


def healthy(pairs: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {name: (ref, "healthy") for name, ref in pairs.items()}


def container_ids(server: DeployServer) -> dict[str, str]:
    return {c["Service"]: c["ID"] for c in server.containers()}


def deployed(server: DeployServer, pairs: dict[str, str] | None = None, compose: str | None = None, **kwargs) -> str:
    result = server.deploy(pairs or v1(server), compose or compose_file(server), **kwargs)
    assert result.returncode == 0, text(result)
    return server.state()["current"]


def answer(server: DeployServer) -> str:
    """What the published port answers (the image variant's name on `/`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/", timeout=5) as response:
        return response.read().decode().strip()


# --- deploys ------------------------------------------------------------------------------------


def test_deploy_pulls_and_starts_the_release_with_health_checks(server: DeployServer) -> None:
    compose_text = compose_file(server)
    result = server.deploy(v1(server), compose_text)
    stdout, stderr = text(result)
    assert result.returncode == 0, (stdout, stderr)

    release = server.state()["current"]
    assert re.fullmatch(r"000001-[0-9a-f]{12}", release)
    directory = server.state_dir / "releases" / release
    assert (directory / "compose.received.yaml").read_text() == compose_text
    assert (directory / ".env").read_text() == (
        f"AUTH_SERVICE_IMAGE={v1(server)['auth-service']}\nGATEWAY_IMAGE={v1(server)['gateway']}\n"
    )
    model = json.loads((directory / "compose.yaml").read_text())
    assert {name: service["image"] for name, service in model["services"].items()} == v1(server)

    base = [
        "docker", "compose", "--project-name", f"{server.project}-blue", "--project-directory", str(directory),
        "--file", str(directory / "compose.yaml"), "--env-file", str(directory / ".env"),
    ]  # fmt: skip
    assert ran(result) == [
        [*base, "pull", "auth-service", "gateway"],
        [*base, "up", "--detach", "--wait", "--wait-timeout", str(sshd.WAIT_TIMEOUT), "--remove-orphans"],
    ]
    assert server.running() == healthy(v1(server))
    assert answer(server) == "healthy", "the published port reaches the release"
    assert stdout.startswith("### dreamscape-deploy on ")
    assert ": deployed\n" in stdout
    assert f"| `auth-service` | `{v1(server)['auth-service']}` |" in stdout
    assert f"Release `{release}` runs and is healthy in the blue slot." in stdout
    assert "Not deployed yet" not in stdout
    # The container publishes on the blue slot's loopback port only; the edge listens on the published one.
    assert model["services"]["auth-service"]["ports"] == [
        {"mode": "ingress", "host_ip": "127.0.0.1", "target": PORTS["auth-service"], "protocol": "tcp",
         "published": str(server.edge.slot_ports)},
    ]  # fmt: skip
    assert server.edge.live() == "blue"

    (line,) = server.syslog()
    assert re.search(r"dreamscape-deploy\[\d+\]: result=deployed release=" + release, line), line
    assert "client=127.0.0.1" in line


def test_an_image_without_any_http_client_deploys_healthy(server: DeployServer) -> None:
    """The health check runs the VM's busybox, mounted into the container: the image needs nothing
    but to serve HTTP on its port."""
    pairs = {c: image(server, c, "bare") for c in PORTS}
    for component, reference in pairs.items():
        server.engine.publish(reference, f"bare-{PORTS[component]}")
    bare = server.engine.build("bare-8080").local
    for client in ("/bin/sh", "/bin/wget", "/usr/bin/wget", "/usr/bin/curl", "/usr/bin/node", "/bin/busybox"):
        with pytest.raises(RuntimeError, match="exited 127"):
            engine.docker("run", "--rm", "--entrypoint", client, bare, "--help")
    result = server.deploy(pairs, compose_file(server))
    assert result.returncode == 0, text(result)
    assert server.running() == {c: (ref, "healthy") for c, ref in pairs.items()}
    assert answer(server) == "bare"


def test_a_service_in_another_services_network_namespace_is_seen_running_as_deployed(server: DeployServer) -> None:
    """Compose labels a `network_mode: service:<name>` container with a hash of the resolved
    `container:<id>`, never the one `config --hash` prints: the same release again is still
    NO_CHANGE, not restarted."""
    document = yaml.safe_load(compose_file(server))
    sidecar = dict(document["services"]["gateway"])
    sidecar["image"] = f"${{{deploy_program.image_variable('sidecar')}:?sidecar has no image yet}}"
    sidecar["network_mode"] = "service:auth-service"
    sidecar["environment"] = {"PORT": "9090"}
    sidecar["healthcheck"] = {**sidecar["healthcheck"], "test": compose.health_test(9090, "/health")}
    document["services"]["sidecar"] = sidecar
    text_ = yaml.safe_dump(document, sort_keys=False)
    pairs = publish(server, {**v1(server), "sidecar": image(server, "sidecar", SHA1)})
    assert server.deploy(pairs, text_).returncode == 0
    before = container_ids(server)
    again = server.deploy(pairs, text_)
    assert again.returncode == deploy_program.EXIT["NO_CHANGE"], text(again)
    assert container_ids(server) == before


def test_nothing_is_deployed_before_the_first_boot_says_complete(server: DeployServer) -> None:
    """Until cloud-init's last line, Docker or the edge may be missing: deploy and rollback refuse,
    changing nothing, and `status` tells how far the VM is."""
    server.first_boot.unlink()
    waiting = server.deploy(v1(server), compose_file(server))
    assert waiting.returncode == deploy_program.EXIT["ERROR"], text(waiting)
    assert "The VM's first boot is still running: nothing was changed." in text(waiting)[0]
    assert server.state() == {} and server.containers("blue") == []
    assert "- first boot: still running" in server.ssh("status").stdout.decode()
    assert "result=not-ready first-boot=running" in " ".join(server.syslog())

    server.first_boot.write_text("FAILED (exit 100)\n")
    failed = server.ssh("rollback")
    assert failed.returncode == deploy_program.EXIT["ERROR"]
    assert "ended FAILED (exit 100), see /var/log/cloud-init-output.log" in text(failed)[0]

    server.first_boot.write_text("complete\n")
    deployed(server)
    assert "- first boot: complete" in server.ssh("status").stdout.decode()


def test_deploying_the_running_release_again_changes_nothing(server: DeployServer) -> None:
    release = deployed(server)
    before = container_ids(server)
    server.syslog()

    again = server.deploy(v1(server), compose_file(server))
    assert again.returncode == deploy_program.EXIT["NO_CHANGE"], text(again)
    assert ran(again) == [], "nothing pulled or started for a release docker shows running and healthy"
    assert container_ids(server) == before
    assert f"Release `{release}` is already running and healthy." in text(again)[0]
    assert "result=no-change" in server.syslog()[0]

    changed = server.deploy(v1(server), compose_file(server, interval="2s"))
    assert changed.returncode == 0, "a new compose file is a new release, even with the same images"
    assert pulled(changed) == [], "the images did not change: nothing is pulled"


@pytest.mark.parametrize("by_hand", ["stop", "down"])
def test_a_stack_stopped_by_hand_is_started_again_by_the_same_deploy(server: DeployServer, by_hand: str) -> None:
    release = deployed(server)
    engine.docker("compose", "--project-name", f"{server.project}-{server.edge.live()}", by_hand)
    assert all(state != "healthy" for _, state in server.running().values())

    status = text(server.ssh("status"))[0]
    assert "- healthy: no (auth-service " in status, status

    again = server.deploy(v1(server), compose_file(server))
    stdout, stderr = text(again)
    assert again.returncode == deploy_program.EXIT["DEPLOYED"], (stdout, stderr)
    assert ": started again" in stdout
    assert f"Release `{release}` was not running as deployed (docker showed: auth-service " in stdout
    assert server.running() == healthy(v1(server))
    assert server.state()["current"] == release and server.state()["healthy"] is True
    assert answer(server) == "healthy"
    assert "- healthy: yes" in text(server.ssh("status"))[0]
    assert "result=started-again release=" + release in server.syslog()[-1]


def test_a_container_gone_unhealthy_is_recreated_by_the_same_deploy(server: DeployServer) -> None:
    release = deployed(server)
    before = container_ids(server)
    engine.docker("exec", before["gateway"], "rm", "/www/health")
    deadline = time.monotonic() + 20
    while server.running()["gateway"][1] != "unhealthy":
        assert time.monotonic() < deadline, "docker never saw the gateway unhealthy"
        time.sleep(0.2)

    again = server.deploy(v1(server), compose_file(server))
    stdout, stderr = text(again)
    assert again.returncode == deploy_program.EXIT["DEPLOYED"], (stdout, stderr)
    assert "(docker showed: gateway unhealthy)" in stdout
    assert ran(again)[-1][-4:] == ["--remove-orphans", "--force-recreate", "--no-deps", "gateway"]
    after = container_ids(server)
    assert after["gateway"] != before["gateway"] and after["auth-service"] == before["auth-service"]
    assert server.running() == healthy(v1(server))
    assert server.state()["current"] == release


def test_a_partial_deploy_pulls_only_what_changes_and_keeps_the_other_images(server: DeployServer) -> None:
    first = deployed(server)
    new = publish(server, {"auth-service": image(server, "auth-service", SHA2)})
    # The registry's retention clean-up removed the gateway image that still runs.
    server.engine.delete(v1(server)["gateway"])

    result = server.deploy(new, compose_file(server))
    assert result.returncode == 0, text(result)
    assert pulled(result) == [["auth-service"]]
    second = server.state()["current"]
    assert server.state() | {"updated": None} == {
        "current": second,
        "previous": first,
        "healthy": True,
        "updated": None,
    }
    assert server.running() == healthy({**v1(server), **new})


def release_files(server: DeployServer) -> tuple[dict, dict]:
    """The current release's record and the compose model it runs."""
    directory = server.state_dir / "releases" / server.state()["current"]
    return (
        json.loads((directory / "release.json").read_text()),
        json.loads((directory / "compose.yaml").read_text()),
    )


def local_images(server: DeployServer) -> list[str]:
    listed = engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    return sorted(name for name in listed if name.startswith(server.engine.registry.host + "/"))


def test_a_fresh_environment_starts_with_the_components_it_is_given(server: DeployServer) -> None:
    auth = {"auth-service": v1(server)["auth-service"]}
    first = server.deploy(auth, compose_file(server))
    stdout, stderr = text(first)
    assert first.returncode == 0, (stdout, stderr)
    assert server.running() == healthy(auth)
    assert local_images(server) == [auth["auth-service"]], "nothing else pulled, no placeholder either"
    record, model = release_files(server)
    assert record["not_deployed"] == ["gateway"]
    assert list(model["services"]) == ["auth-service"]
    assert "Not deployed yet (no image here so far, so not part of this release): `gateway`." in stdout
    assert "left out, never deployed here: gateway" in stderr
    assert "- not deployed yet: `gateway`" in text(server.ssh("status"))[0]

    second = server.deploy({"gateway": v1(server)["gateway"]}, compose_file(server))
    assert second.returncode == 0, text(second)
    assert pulled(second) == [["gateway"]]
    assert server.running() == healthy(v1(server))
    record, model = release_files(server)
    assert record["not_deployed"] == [] and list(model["services"]) == ["auth-service", "gateway"]
    assert "Not deployed yet" not in text(second)[0]
    assert "- not deployed yet: none" in text(server.ssh("status"))[0]

    new = publish(server, {"auth-service": image(server, "auth-service", SHA2)})
    third = server.deploy(new, compose_file(server))
    assert third.returncode == 0, text(third)
    assert server.running() == healthy({**v1(server), **new})


def test_rolling_back_a_first_deploy_of_a_component_removes_it(server: DeployServer) -> None:
    auth = {"auth-service": v1(server)["auth-service"]}
    first = deployed(server, auth)
    deployed(server, {"gateway": v1(server)["gateway"]})
    result = server.ssh("rollback")
    assert result.returncode == 0, text(result)
    assert server.state()["current"] == first
    assert server.running() == healthy(auth), "exactly the previous release"
    assert "Not deployed yet (no image here so far, so not part of this release): `gateway`." in text(result)[0]
    assert "- not deployed yet: `gateway`" in text(server.ssh("status"))[0]


def test_a_failed_first_deploy_of_a_component_restores_the_release_without_it(server: DeployServer) -> None:
    auth = {"auth-service": v1(server)["auth-service"]}
    first = deployed(server, auth)
    bad = publish(server, {"gateway": image(server, "gateway", SHA2)}, "unhealthy")
    result = server.deploy(bad, compose_file(server))
    assert result.returncode == deploy_program.EXIT["ROLLED_BACK"], text(result)
    assert server.state()["current"] == first
    assert server.running() == healthy(auth)


def depending(server: DeployServer, gateway_extra: str) -> str:
    """The tests' compose file, with something added to the gateway service."""
    return compose_file(server).replace("  gateway:\n", "  gateway:\n" + gateway_extra, 1)


@pytest.mark.parametrize(
    "extra",
    [
        "    depends_on: [auth-service]\n",
        "    depends_on:\n      auth-service: {condition: service_healthy}\n",
        "    links: [auth-service]\n",
        "    network_mode: service:auth-service\n",
    ],
    ids=["depends-on", "healthy", "links", "network-mode"],
)
def test_a_service_that_needs_a_component_never_deployed_is_refused(server: DeployServer, extra: str) -> None:
    compose_text = depending(server, extra)
    result = server.deploy({"gateway": v1(server)["gateway"]}, compose_text)
    stdout, stderr = text(result)
    assert result.returncode == deploy_program.EXIT["BAD_INPUT"], (stdout, stderr)
    message = (
        "service gateway depends on auth-service, which this environment has never deployed: "
        "deploy auth-service first, or in the same deploy as gateway"
    )
    assert message in stderr and message in stdout
    assert ran(result) == [], "nothing pulled, nothing started"
    assert list((server.state_dir / "releases").iterdir()) == [], "a refused release is not kept"

    together = server.deploy(v1(server), compose_text)
    assert together.returncode == 0, text(together)
    assert server.running() == healthy(v1(server))


def test_an_optional_dependency_on_a_component_never_deployed_is_dropped(server: DeployServer) -> None:
    compose_text = depending(
        server, "    depends_on:\n      auth-service: {condition: service_started, required: false}\n"
    )
    result = server.deploy({"gateway": v1(server)["gateway"]}, compose_text)
    assert result.returncode == 0, text(result)
    assert server.running() == healthy({"gateway": v1(server)["gateway"]})
    assert "depends_on" not in release_files(server)[1]["services"]["gateway"]

    deployed_too = server.deploy({"auth-service": v1(server)["auth-service"]}, compose_text)
    assert deployed_too.returncode == 0, text(deployed_too)
    assert release_files(server)[1]["services"]["gateway"]["depends_on"] == {
        "auth-service": {"condition": "service_started", "required": False}
    }


def test_what_only_a_left_out_component_uses_is_left_out_with_it(server: DeployServer) -> None:
    document = yaml.safe_load(compose_file(server))
    auth, gateway = document["services"]["auth-service"], document["services"]["gateway"]
    auth |= {"volumes": [*auth["volumes"], "auth-data:/data"], "networks": ["back", "shared"]}
    gateway |= {"volumes": [*gateway["volumes"], "cache:/cache"], "networks": ["shared"]}
    document |= {"volumes": {"auth-data": {}, "cache": {}}, "networks": {"back": {}, "shared": {}}}
    result = server.deploy({"gateway": v1(server)["gateway"]}, yaml.safe_dump(document))
    assert result.returncode == 0, text(result)
    model = release_files(server)[1]
    assert (list(model["services"]), list(model["volumes"]), list(model["networks"])) == (
        ["gateway"],
        ["cache"],
        ["shared"],
    )
    volumes = engine.docker("volume", "ls", "--format", "{{.Name}}").split()
    assert f"{server.project}_cache" in volumes and f"{server.project}_auth-data" not in volumes


# --- failures and rollback ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["unhealthy", "crash"], ids=["unhealthy", "crash-loop"])
def test_a_failing_release_rolls_back_to_the_one_before(server: DeployServer, variant: str) -> None:
    first = deployed(server)
    server.syslog()
    bad = publish(server, {"auth-service": image(server, "auth-service", SHA2)}, variant)

    result = server.deploy(bad, compose_file(server))
    stdout, stderr = text(result)
    assert result.returncode == deploy_program.EXIT["ROLLED_BACK"], (stdout, stderr)
    assert steps(result) == ["pull", "up", "down", "up"]
    failed = release_of(ran(result)[1])
    assert ran(result)[2][3] == f"{server.project}-green", "the failed release's slot is removed"
    assert release_of(ran(result)[3]) == first and "--wait" in ran(result)[3], "the running release is checked"
    assert server.edge.live() == "blue" and server.idle_slot_containers() == []
    assert server.running() == healthy(v1(server))
    assert server.state()["current"] == first and server.state()["healthy"] is True
    assert answer(server) == "healthy"
    assert ": failed, rolled back" in stdout
    assert f"release `{failed}` failed at `docker compose up`; release `{first}` runs again" in stdout
    assert f"container {server.project}-green-auth-service-1 is unhealthy" in stdout
    assert re.search(rf"result=rolled-back release={failed} step=compose-up restore={first}", server.syslog()[0])


def test_an_image_missing_from_the_registry_rolls_back_without_starting_the_new_release(
    server: DeployServer,
) -> None:
    first = deployed(server)
    before = container_ids(server)
    missing = image(server, "gateway", "never-pushed")

    result = server.deploy({"gateway": missing}, compose_file(server))
    stdout, stderr = text(result)
    assert result.returncode == deploy_program.EXIT["ROLLED_BACK"], (stdout, stderr)
    assert steps(result) == ["pull", "up"]
    assert release_of(ran(result)[1]) == first
    assert container_ids(server) == before, "the running release was never stopped"
    assert "failed at `docker compose pull`" in stdout
    assert "manifest unknown" in stdout


def test_a_release_that_stays_starting_past_the_wait_timeout_rolls_back(server: DeployServer) -> None:
    slow_health = {"start_period": "60s"}  # still "starting" when the wait ends, not yet unhealthy
    result = server.deploy(v1(server), compose_file(server, **slow_health))
    assert result.returncode == 0, text(result)
    first = server.state()["current"]
    slow = publish(server, {"auth-service": image(server, "auth-service", SHA2)}, "slow-60")
    began = time.monotonic()
    result = server.deploy(slow, compose_file(server, **slow_health))
    waited = time.monotonic() - began
    assert result.returncode == deploy_program.EXIT["ROLLED_BACK"], text(result)
    assert sshd.WAIT_TIMEOUT <= waited < sshd.WAIT_TIMEOUT + 20
    # Compose says so itself, or (it has exited 0 with the container still starting) the
    # program's own look at Docker after the wait does.
    said = text(result)[0]
    assert f"application not healthy after {sshd.WAIT_TIMEOUT}s" in said or (
        "docker shows after the wait: auth-service starting" in said
    ), said
    assert server.state()["current"] == first
    assert server.running() == healthy(v1(server))


def test_when_the_old_release_fails_too_the_deploy_says_the_environment_is_down(server: DeployServer) -> None:
    deployed(server)
    # The running release was removed by hand and its image is gone from the registry and from
    # the engine's store (a clean-up on both sides): restoring it needs the image again, and
    # cannot get it.
    engine.docker("compose", "--project-name", f"{server.project}-{server.edge.live()}", "down")
    old = v1(server)["auth-service"]
    server.engine.delete(old)
    engine.docker("rmi", "--force", old)
    new = publish(server, {"auth-service": image(server, "auth-service", SHA2)}, "unhealthy")

    result = server.deploy(new, compose_file(server))
    assert result.returncode == deploy_program.EXIT["ROLLBACK_FAILED"], text(result)
    assert "failed too: the environment is down" in text(result)[0]
    assert server.state()["healthy"] is False
    assert "- healthy: no (auth-service " in text(server.ssh("status"))[0]

    publish(server, {"auth-service": old})
    retry = server.deploy(v1(server), compose_file(server))
    assert retry.returncode == 0, "a release docker does not show healthy is started again, not skipped as running"
    assert server.running() == healthy(v1(server))


def wait_for_lock_holder(server: DeployServer) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        lock = server.state_dir / "lock"
        if lock.exists() and lock.read_text():
            return lock.read_text()
        time.sleep(0.02)
    raise AssertionError("the first deploy never took the lock")


def test_a_deploy_whose_client_goes_away_still_finishes_its_rollback(server: DeployServer) -> None:
    first = deployed(server)
    server.syslog()
    bad = publish(server, {"auth-service": image(server, "auth-service", SHA2)}, "unhealthy")
    client = server.start_deploy(bad, compose_file(server, start_period="3s"))
    wait_for_lock_holder(server)
    time.sleep(1.5)  # into `docker compose up`, which sees it unhealthy after about 4 s
    client.kill()  # a cancelled pipeline job: the connection drops mid-deploy
    client.communicate(timeout=10)

    deadline = time.monotonic() + 60
    logged: list[str] = []
    while not logged:  # the log line is the program's last act
        assert time.monotonic() < deadline, "the deploy never finished"
        time.sleep(0.1)
        logged = server.syslog()
    assert "result=rolled-back" in logged[0]
    assert server.state()["current"] == first and server.state()["healthy"] is True
    assert server.running() == healthy(v1(server))


def test_a_fresh_environment_whose_first_release_is_unhealthy_has_nothing_to_restore(server: DeployServer) -> None:
    publish(server, v1(server), "unhealthy")
    result = server.deploy(v1(server), compose_file(server))
    assert result.returncode == deploy_program.EXIT["ROLLBACK_FAILED"], text(result)
    assert "no earlier release exists to restore" in text(result)[0]
    assert steps(result) == ["pull", "up", "down"], "the failed release is removed"
    assert server.containers("blue") == [] and server.containers("green") == []
    assert server.state()["healthy"] is False and server.state()["current"] is None


def test_rollback_brings_back_the_previous_release(server: DeployServer) -> None:
    refused = server.ssh("rollback")
    assert refused.returncode == deploy_program.EXIT["BAD_INPUT"]
    assert "no previous release to roll back to" in text(refused)[1]

    first = deployed(server)
    second = deployed(server, publish(server, {"gateway": image(server, "gateway", SHA2)}))
    result = server.ssh("rollback")
    assert result.returncode == 0, text(result)
    assert server.state() | {"updated": None} == {
        "current": first,
        "previous": second,
        "healthy": True,
        "updated": None,
    }
    assert server.running() == healthy(v1(server))
    assert ": rolled back" in text(result)[0]

    status = server.ssh("status")
    assert status.returncode == 0
    assert f"- current: `{first}`" in text(status)[0]
    assert "- healthy: yes" in text(status)[0]
    assert server.edge.live() == "blue" and server.idle_slot_containers() == []
    [row] = [line for line in text(status)[0].splitlines() if line.startswith(f"{server.project}-blue-gateway-1 ")]
    assert v1(server)["gateway"] in row and "(healthy)" in row


def test_old_releases_are_pruned_to_the_configured_number(server: DeployServer) -> None:
    deployed(server)
    for n in range(sshd.KEEP + 1):
        deployed(server, publish(server, {"gateway": image(server, "gateway", f"v{n}")}))
    kept = sorted(p.name for p in (server.state_dir / "releases").iterdir())
    assert len(kept) == sshd.KEEP
    assert kept[-1] == server.state()["current"] and kept[-2] == server.state()["previous"]
    assert kept[0].startswith("000003-")


# --- settings carried by the request ------------------------------------------------------------


def wait_timeouts(result: subprocess.CompletedProcess) -> list[str]:
    return [argv[argv.index("--wait-timeout") + 1] for argv in ran(result) if "up" in argv]


def test_a_deploy_with_keep_2_leaves_exactly_2_releases(server: DeployServer) -> None:
    assert sshd.KEEP > 2, "sshd's fallback must keep more, or this proves nothing"
    deployed(server)
    for n in range(3):
        pairs = publish(server, {"gateway": image(server, "gateway", f"k{n}")})
        result = server.deploy(pairs, compose_file(server), flags=("--keep", "2"))
        assert result.returncode == 0, text(result)
    kept = sorted(p.name for p in (server.state_dir / "releases").iterdir())
    assert kept == sorted([server.state()["previous"], server.state()["current"]])
    assert kept[0].startswith("000003-") and kept[1].startswith("000004-")
    assert "command='deploy --keep 2 gateway=" in server.syslog()[-1], "the system log shows the settings used"


def test_the_wait_timeout_in_the_request_reaches_compose_up(server: DeployServer) -> None:
    assert sshd.WAIT_TIMEOUT not in (11, 12, 13), "sshd's fallback must differ from the values sent"
    first = server.deploy(v1(server), compose_file(server), flags=("--wait-timeout", "11"))
    assert first.returncode == 0, text(first)
    assert wait_timeouts(first) == ["11"]

    bad = publish(server, {"gateway": image(server, "gateway", SHA2)}, "crash")
    failed = server.deploy(bad, compose_file(server), flags=("--wait-timeout", "12", "--lock-wait", "0"))
    assert failed.returncode == deploy_program.EXIT["ROLLED_BACK"], text(failed)
    assert wait_timeouts(failed) == ["12", "12"], "the restore waits as long"

    deployed(server, publish(server, {"gateway": image(server, "gateway", SHA3)}))
    rollback = server.ssh("rollback", "--wait-timeout", "13")
    assert rollback.returncode == 0, text(rollback)
    assert wait_timeouts(rollback) == ["13"]
    assert server.running() == healthy(v1(server))


def test_the_shortest_health_wait_is_enough_for_the_production_compose_file(server: DeployServer, plan_of) -> None:
    """The golden production file (four services, production's health timings): a healthy
    release and the restore of one both pass with `--wait-timeout 10`, the lowest accepted."""
    shortest = str(deploy_program.WAIT_TIMEOUT.low)
    production = server.stand_in_accessories(
        server.local(rendered_file(plan_of("production"), compose.path("production"))[1])
    )
    document = yaml.safe_load(production)
    accessories = document[deploy_program.ACCESSORIES_EXTENSION]
    services = [name for name in document["services"] if name not in accessories]
    pairs = publish(server, {name: image(server, name, SHA1) for name in services})
    secrets = server.secrets_for(production)

    result = server.deploy(pairs, production, flags=("--wait-timeout", shortest), secrets=secrets)
    assert result.returncode == 0, text(result)
    assert server.running() == healthy(pairs)
    assert answer(server) == "healthy", "the gateway's published port answers"

    bad = publish(server, {"gateway": image(server, "gateway", SHA2)}, "crash")
    failed = server.deploy(bad, production, flags=("--wait-timeout", shortest), secrets=secrets)
    assert failed.returncode == deploy_program.EXIT["ROLLED_BACK"], text(failed)
    assert wait_timeouts(failed) == [shortest] * 3, "the accessories, the new release, the one restored"
    assert server.running() == healthy(pairs)


def state_files(server: DeployServer) -> dict[str, bytes]:
    return {str(p.relative_to(server.state_dir)): p.read_bytes() for p in server.state_dir.rglob("*") if p.is_file()}


def test_bad_settings_in_the_request_are_refused_and_change_nothing(server: DeployServer) -> None:
    deployed(server)
    deployed(server, publish(server, {"gateway": image(server, "gateway", SHA2)}))
    before, containers = state_files(server), container_ids(server)
    server.syslog()
    pairs = [f"{c}={i}" for c, i in {"gateway": image(server, "gateway", SHA3)}.items()]
    refused = {
        ("deploy", "--keep", "1", *pairs): "--keep '1': expected a whole number of releases from 2 to 50",
        ("deploy", "--keep", "51", *pairs): "--keep '51': expected a whole number of releases from 2 to 50",
        ("deploy", "--wait-timeout", "9", *pairs): "--wait-timeout '9': expected a whole number of seconds from 10",
        ("deploy", "--lock-wait", "3601", *pairs): "--lock-wait '3601': expected a whole number of seconds from 0",
        ("deploy", "--lock-wait", "-5", *pairs): "--lock-wait '-5': expected",
        ("deploy", "--keep", "05", *pairs): "--keep '05': expected",
        ("deploy", "--keep", "two", *pairs): "--keep 'two': expected",
        ("deploy", "--keep=3", *pairs): "deploy takes no option '--keep=3'",
        ("deploy", "--keep", "3", "--keep", "4", *pairs): "option --keep given twice",
        ("deploy", *pairs, "--keep", "3"): "option --keep after a <component>=<image> pair: options come first",
        ("rollback", "--keep", "3"): "rollback takes no option '--keep'",
        ("rollback", "--wait-timeout", "3601"): "--wait-timeout '3601': expected",
        ("status", "--lock-wait", "1"): "status takes no arguments",
    }
    for command, message in refused.items():
        result = server.ssh(*command, stdin=sshd.frames(compose_file(server).encode()))
        stdout, stderr = text(result)
        assert result.returncode == deploy_program.EXIT["BAD_INPUT"], (command, stdout, stderr)
        assert f"dreamscape-deploy: refused: {message}" in stderr, (command, stderr)
        assert ": refused\n" in stdout
        assert ran(result) == []
        assert "result=refused" in server.syslog()[0]
    assert state_files(server) == before, "no file in the state directory changed"
    assert container_ids(server) == containers


# --- the registry token -------------------------------------------------------------------------


class ArgvWatcher(engine.Every):
    """Every command line of the deploy user's processes while a deploy runs (`ps` shows them
    to every user of the VM), sampled from /proc every 5 ms."""

    def __init__(self, uid: int) -> None:
        super().__init__(0.005, self._sample)
        self.uid = uid
        self.seen: set[str] = set()

    def _sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid == self.uid:
                        argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                        self.seen.add(argv.decode("utf-8", "replace"))


def test_the_registry_token_travels_on_stdin_and_is_not_kept(server: DeployServer) -> None:
    registry = server.engine.auth_registry
    token = registry.password
    pairs = {name: registry.image(f"dreamscape/{name}", SHA1) for name in PORTS}
    publish(server, pairs)

    without = server.deploy(pairs, compose_file(server))
    assert without.returncode == deploy_program.EXIT["ROLLBACK_FAILED"], "the registry wants the token"
    assert "no basic auth credentials" in text(without)[0]

    with ArgvWatcher(server.uid) as watcher:
        result = server.deploy(pairs, compose_file(server), login=(registry.host, registry.user, token))
    assert result.returncode == 0, text(result)
    assert server.running() == healthy(pairs)
    (login,) = [argv for argv in ran(result) if "login" in argv]
    assert login[1] == "--config" and Path(login[2]).parent == server.state_dir
    assert login[3:] == ["login", "--username", registry.user, "--password-stdin", registry.host]
    assert steps(result) == ["login", "pull", "up"]
    assert any("--password-stdin" in argv for argv in watcher.seen), "the watcher saw docker login run"
    assert not [argv for argv in watcher.seen if token in argv], "the token is on no command line"

    assert not Path(login[2]).exists(), "the throwaway docker config is removed"
    assert not (server.home / ".docker" / "config.json").exists()
    everywhere = [
        *text(result),
        *server.syslog(),
        server.log_path.read_text(),
        *(p.read_bytes().decode("utf-8", "replace") for p in server.state_dir.rglob("*") if p.is_file()),
        *(p.read_bytes().decode("utf-8", "replace") for p in server.home.rglob("*") if p.is_file()),
    ]
    assert not [t for t in everywhere if token in t], "the token appears nowhere but on docker login's stdin"

    wrong = server.deploy(
        {"gateway": publish(server, {"gateway": registry.image("dreamscape/gateway", SHA2)})["gateway"]},
        compose_file(server),
        login=(registry.host, registry.user, "ghs_" + "0" * 40),
    )
    assert wrong.returncode == deploy_program.EXIT["ROLLED_BACK"], text(wrong)
    assert "failed at `docker login`" in text(wrong)[0]
    assert server.running() == healthy(pairs)


def test_every_docker_command_the_program_runs_is_checked_for_the_requests_secrets(server: DeployServer) -> None:
    """The harness puts a guard first on the program's PATH: each deploy's registry token and
    secret values are refused on docker's command line (any process on the VM can read it).
    Shown here with a value docker's arguments do carry, the compose project's name."""
    assert server.deploy(v1(server), compose_file(server)).returncode == 0
    server.guard(server.project)
    try:
        status = server.ssh("status")
    finally:
        server.guard()
    assert "harness: a secret of the run is on docker's command line" in text(status)[0] + text(status)[1]
    assert server.ssh("status").returncode == 0


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "deploy Auth-Service=ghcr.io/dreamscape/auth-service:1",
        "deploy auth-service=ghcr.io/dreamscape/auth-service:1;id",
        "deploy auth-service=$(id)",
        "deploy auth-service=`id`",
        "deploy auth-service=ghcr.io/d/a:1 auth-service=ghcr.io/d/a:1",
        "deploy auth-service=auth-service:latest",
        "deploy auth-service=ghcr.io/dreamscape/auth-service:1 gateway",
        "deploy",
        "status --verbose",
    ],
)
def test_a_malformed_command_is_refused_before_any_docker_call(server: DeployServer, command: str) -> None:
    result = server.ssh(command, stdin=sshd.frames(compose_file(server).encode()))
    stdout, stderr = text(result)
    assert result.returncode == deploy_program.EXIT["BAD_INPUT"], (stdout, stderr)
    assert "dreamscape-deploy: refused: " in stderr
    assert ": refused\n" in stdout
    assert ran(result) == [] and server.containers() == []
    assert "uid=" not in stdout + stderr
    assert "result=refused" in server.syslog()[0]


def bad_compose_inputs() -> list:
    good = yaml.safe_dump({"services": {"auth-service": {"image": "${AUTH_SERVICE_IMAGE:?none}"}}})
    return [
        pytest.param(b"", "deploy needs the compose file on stdin", id="no-frame"),
        pytest.param(good.encode(), "unexpected stdin frame 'services:'", id="unframed"),
        pytest.param(sshd.frames(b"x" * (deploy_program.MAX_COMPOSE_BYTES + 1)), "at most 262144", id="too-big"),
        pytest.param(sshd.frames(good.encode())[:-3], "stdin ended inside the compose frame", id="cut-short"),
        pytest.param(
            sshd.frames(good.replace("services:", "services:\n  gateway:\n    ports: yes\n").encode()),
            "services.gateway.ports must be a list",
            id="schema",
        ),
        pytest.param(sshd.frames(b"services: [\n"), "yaml:", id="not-yaml"),
        pytest.param(
            sshd.frames(good.replace("${AUTH_SERVICE_IMAGE:?none}", "ghcr.io/o/x:1").encode()),
            "service auth-service runs image 'ghcr.io/o/x:1', not ",
            id="image-not-from-variable",
        ),
        pytest.param(
            sshd.frames(b"services:\n  web:\n    image: ${WEB_IMAGE:-ghcr.io/o/web:1}\n"),
            "component auth-service is not a service of the compose file",
            id="not-a-service",
        ),
    ]


@pytest.mark.parametrize(("stdin", "message"), bad_compose_inputs())
def test_bad_compose_input_is_refused(server: DeployServer, stdin: bytes, message: str) -> None:
    result = server.ssh("deploy", f"auth-service={v1(server)['auth-service']}", stdin=stdin)
    assert result.returncode == deploy_program.EXIT["BAD_INPUT"], text(result)
    assert message in text(result)[1]
    assert ran(result) == [], "nothing pulled, nothing started"
    assert server.containers() == []
    assert not (server.state_dir / "releases").exists() or not list((server.state_dir / "releases").iterdir())


# --- the lock ---------------------------------------------------------------------------------------


SLOW_START = {"start_period": "30s"}
"""Health timings under which a `slow-<s>` release stays "starting" until it answers."""


def test_a_second_deploy_waits_for_the_first_then_proceeds(server: DeployServer) -> None:
    slow = publish(server, v1(server), "slow-2")
    gateway = publish(server, {"gateway": image(server, "gateway", SHA2)})
    first = server.start_deploy(slow, compose_file(server, **SLOW_START))
    try:
        wait_for_lock_holder(server)
        second = server.deploy(gateway, compose_file(server, **SLOW_START), flags=("--lock-wait", "60"))
    finally:
        first_out, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, (first_out, first_err)
    assert second.returncode == 0, text(second)
    assert re.search(r"waiting up to \d+ s for the lock held by pid \d+ \(deploy auth-service=", text(second)[1])
    first_release, second_release = sorted(p.name for p in (server.state_dir / "releases").iterdir())
    assert server.state()["previous"] == first_release and server.state()["current"] == second_release
    assert server.running() == healthy({**v1(server), **gateway})


def test_three_deploys_at_once_run_one_after_the_other(server: DeployServer) -> None:
    deployed(server, compose=compose_file(server, **SLOW_START))
    changes = [
        publish(server, {"auth-service": image(server, "auth-service", SHA2)}, "slow-1"),
        publish(server, {"gateway": image(server, "gateway", SHA2)}, "slow-1"),
        publish(server, {"auth-service": image(server, "auth-service", SHA3)}, "slow-1"),
    ]
    flags = ("--lock-wait", "60", "--keep", "5")
    clients = [server.start_deploy(pairs, compose_file(server, **SLOW_START), flags=flags) for pairs in changes]
    results = [client.communicate(timeout=120) for client in clients]
    assert [client.returncode for client in clients] == [0, 0, 0], results
    releases = [json.loads((p / "release.json").read_text()) for p in sorted((server.state_dir / "releases").iterdir())]
    assert len(releases) == 4
    deployed_order = [release["deployed"] for release in releases[1:]]
    assert sorted(deployed_order, key=str) == sorted(changes, key=str), "each deploy made one release"
    # Each release carries over what the one before it deployed: no deploy saw a stale state.
    for before, after in itertools.pairwise(releases):
        expected = before["images"] | {deploy_program.image_variable(c): i for c, i in after["deployed"].items()}
        assert after["images"] == expected
    final = releases[-1]["images"]
    assert server.running() == healthy({name: final[deploy_program.image_variable(name)] for name in PORTS})
    waited = [err.decode() for _, err in results if b"waiting up to 60 s for the lock held by pid" in err]
    assert len(waited) >= 2, "at least two of them waited for another"


def test_a_deploy_that_waits_too_long_names_the_lock_holder(server: DeployServer) -> None:
    slow = publish(server, v1(server), f"slow-{sshd.LOCK_WAIT + 3}")
    first = server.start_deploy(slow, compose_file(server, **SLOW_START))
    try:
        holder = wait_for_lock_holder(server)
        status = server.ssh("status")
        began = time.monotonic()
        second = server.deploy(publish(server, {"gateway": image(server, "gateway", SHA2)}), compose_file(server))
        waited = time.monotonic() - began
    finally:
        first_out, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, (first_out, first_err)
    assert second.returncode == deploy_program.EXIT["LOCK_TIMEOUT"], text(second)
    assert sshd.LOCK_WAIT <= waited < sshd.LOCK_WAIT + 3
    stderr = text(second)[1]
    pid = re.search(r'"pid": (\d+)', holder).group(1)
    assert f"another deploy holds the lock: pid {pid} (deploy auth-service={v1(server)['auth-service']}" in stderr
    assert re.search(r"from 127\.0\.0\.1 since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stderr), stderr
    assert ran(second) == [], "the second deploy ran no docker"
    assert f"- deploy in progress: pid {pid} (deploy auth-service=" in text(status)[0], "status does not wait"


def test_a_lock_wait_given_in_the_request_bounds_the_wait(server: DeployServer) -> None:
    longer = sshd.LOCK_WAIT + 2
    slow = publish(server, v1(server), f"slow-{longer + 4}")
    gateway = publish(server, {"gateway": image(server, "gateway", SHA2)})
    first = server.start_deploy(slow, compose_file(server, **SLOW_START))
    try:
        holder = wait_for_lock_holder(server)
        began = time.monotonic()
        at_once = server.deploy(gateway, compose_file(server), flags=("--lock-wait", "0"))
        waited_at_once = time.monotonic() - began
        began = time.monotonic()
        second = server.deploy(gateway, compose_file(server), flags=("--lock-wait", str(longer)))
        waited = time.monotonic() - began
    finally:
        first_out, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, (first_out, first_err)
    pid = re.search(r'"pid": (\d+)', holder).group(1)
    for result, seconds in ((at_once, 0), (second, longer)):
        assert result.returncode == deploy_program.EXIT["LOCK_TIMEOUT"], text(result)
        stderr = text(result)[1]
        assert f"gave up after {seconds} s: another deploy holds the lock: pid {pid} (deploy auth-service=" in stderr
        assert ran(result) == [], "neither waiting deploy ran docker"
    assert waited_at_once < sshd.LOCK_WAIT, "lock wait 0 does not wait for sshd's fallback"
    assert longer <= waited < longer + 3, "the request's lock wait, not sshd's fallback"


@contextlib.contextmanager
def lock_held(server: DeployServer) -> Iterator[None]:
    """The deploy lock held by an operator (`flock` on the same file), so a request waits."""
    path = server.state_dir / "lock"
    with open(path, "a+") as handle:
        os.chown(path, server.uid, server.gid)
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def programs(server: DeployServer) -> dict[int, Path]:
    """The deploy program's processes (pid -> /proc entry)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == server.uid and b"dreamscape-deploy" in (entry / "cmdline").read_bytes():
                    found[int(entry.name)] = entry
    return found


def program_environment(server: DeployServer, command: str, deadline: float = 10) -> tuple[int, dict[str, str]]:
    """The pid and environment of the deploy program running `command`, from /proc."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for pid, entry in programs(server).items():
            with contextlib.suppress(OSError):
                pairs = (entry / "environ").read_bytes().split(b"\0")
                environment = dict(p.decode().split("=", 1) for p in pairs if b"=" in p)
                if environment.get("SSH_ORIGINAL_COMMAND") == command:
                    return pid, environment
        time.sleep(0.02)
    raise AssertionError("the deploy program never showed up waiting for the lock")


WAITING = "rollback --lock-wait 20"
"""What the requests whose environment is read ask: it waits for the lock the test holds."""


def environment_of_a_waiting_deploy(
    server: DeployServer, key: sshd.Key, options: tuple[str, ...], env: dict | None = None
) -> dict[str, str]:
    deadline = time.monotonic() + 10
    while programs(server):  # an earlier request may still be finishing
        assert time.monotonic() < deadline, "an earlier deploy program never ended"
        time.sleep(0.02)
    with lock_held(server):
        client = subprocess.Popen(
            [*server.ssh_args(key), *options, "127.0.0.1", *WAITING.split(" ")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            pid, environment = program_environment(server, WAITING)
        finally:
            client.kill()
            client.communicate(timeout=10)
    # Once the lock is free the program takes it and ends (there is no release to roll back to).
    deadline = time.monotonic() + 10
    while pid in programs(server):
        assert time.monotonic() < deadline, "the deploy program did not end once the lock was free"
        time.sleep(0.02)
    return environment


# --- what the CI key cannot do ----------------------------------------------------------------------


FORCED = "Starting session: forced-command (key-option) '/usr/local/sbin/dreamscape-deploy'"


@pytest.mark.parametrize("command", ["id", "bash", "bash -i", "sh -c id", "/bin/sh", "exec id", "deploy; id"])
def test_the_ci_key_runs_the_deploy_program_whatever_command_is_asked(server: DeployServer, command: str) -> None:
    forced_before = server.log_path.read_text().count(FORCED)
    result = server.ssh(command)
    stdout, stderr = text(result)
    assert result.returncode == deploy_program.EXIT["BAD_INPUT"]
    assert "uid=" not in stdout + stderr
    assert "dreamscape-deploy: refused: " in stderr
    assert server.log_path.read_text().count(FORCED) == forced_before + 1
    assert ran(result) == []


def test_no_command_and_no_shell(server: DeployServer) -> None:
    result = server.ssh()
    assert result.returncode == deploy_program.EXIT["BAD_INPUT"]
    assert "refused: no command given" in text(result)[1]


@pytest.mark.parametrize(
    ("protocol", "forced"),
    [((), "/usr/lib/openssh/sftp-server"), (("-O",), "scp -t copied")],
    ids=["sftp", "legacy-scp"],
)
def test_scp_is_refused(server: DeployServer, tmp_path: Path, protocol: tuple[str, ...], forced: str) -> None:
    source = tmp_path / "payload"
    source.write_text("not for the VM")
    forced_before = server.log_path.read_text().count(FORCED)
    options = ["-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
    destination = f"{server.user}@127.0.0.1:copied"
    result = subprocess.run(
        ["scp", *protocol, "-P", str(server.port), "-i", str(server.ci_key.path), *options, str(source), destination],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert not (server.home / "copied").exists()
    assert server.log_path.read_text().count(FORCED) == forced_before + 1
    (line,) = server.syslog()
    assert "result=refused reason=unknown command" in line and f"command={forced!r}" in line, line


class Listener:
    """A TCP server that records whether anything reached it."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(3)
        self.port = self.socket.getsockname()[1]

    def reached(self) -> bool:
        try:
            connection, _ = self.socket.accept()
        except TimeoutError:
            return False
        connection.close()
        return True


def local_forward_reaches(server: DeployServer, key: sshd.Key) -> tuple[bool, str]:
    target = Listener()
    local = sshd.free_port()
    process = subprocess.Popen(
        [*server.ssh_args(key), "-N", "-L", f"{local}:127.0.0.1:{target.port}", "127.0.0.1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", local), timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "ssh -L never listened"
                time.sleep(0.05)
        with client:
            client.sendall(b"hello")
            reached = target.reached()
        time.sleep(0.2)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
        target.socket.close()
    return reached, stderr.decode()


def test_port_forwarding_is_refused(server: DeployServer) -> None:
    reached, stderr = local_forward_reaches(server, server.ci_key)
    assert not reached
    assert "administratively prohibited" in stderr
    control_reached, _ = local_forward_reaches(server, server.control_key)
    assert control_reached, "without `restrict` the same forward works: the refusal is restrict's"

    remote = subprocess.run(
        [*server.ssh_args(), "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9", "127.0.0.1"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert remote.returncode == 255
    assert "remote port forwarding failed" in remote.stderr.decode()


def test_agent_forwarding_is_refused(server: DeployServer, tmp_path: Path) -> None:
    agent_socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_socket)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not agent_socket.exists():
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(agent_socket)}
        ci = environment_of_a_waiting_deploy(server, server.ci_key, ("-A",), env)
        control = environment_of_a_waiting_deploy(server, server.control_key, ("-A",), env)
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    assert "SSH_AUTH_SOCK" not in ci and "SSH_CLIENT" in ci
    assert "SSH_AUTH_SOCK" in control, "without `restrict` the agent reaches the program and its children"


def test_a_terminal_is_refused(server: DeployServer) -> None:
    # -tt: with no local terminal a single -t requests no PTY at all.
    ci = server.ssh("status", options=("-tt",))
    assert ci.returncode == 255
    assert "PTY allocation request failed" in text(ci)[1]

    control = environment_of_a_waiting_deploy(server, server.control_key, ("-tt",))
    assert "SSH_TTY" in control, "without `restrict` the session gets a terminal"


# --- the pipeline's deploy client (ci/deploy.py) ---------------------------------------------------


CLIENT_SETTINGS = config.Deploy(lock_wait_seconds=1, wait_timeout_seconds=12, keep_releases=2)
"""The data file's deploy settings: none equal to sshd's fallbacks, so the ones used show which won."""
COMPOSE_PATH = compose.path("production")


def data_file(settings: config.Deploy = CLIENT_SETTINGS) -> str:
    shipped = config.loads(central.data_file(central.CentralArgs.from_settings(settings_of("production"))))
    return config.dumps(dataclasses.replace(shipped, deploy=settings))


def client_env(server: DeployServer, tmp_path: Path, images: str, known_hosts: str | None = None) -> dict[str, str]:
    """The deploy step's environment on a runner: its temporary directory, the deploy secrets of
    the local VM, the images and the compose file."""
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TMPDIR": str(runner_temp),
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "VM_HOST": "127.0.0.1",
        "SSH_PRIVATE_KEY": server.ci_key.path.read_text(),
        "SSH_KNOWN_HOSTS": known_hosts or server.known_hosts_line,
        "DEPLOY_IMAGES": images,
        "DEPLOY_COMPOSE_FILE": COMPOSE_PATH,
        "DEPLOY_SSH_USER": server.user,
        "DEPLOY_SSH_PORT": str(server.port),
    }


def run_client(
    server: DeployServer,
    tmp_path: Path,
    images: str,
    known_hosts: str | None = None,
    login: dict[str, str] | None = None,
    data: str | None = None,
) -> tuple[subprocess.CompletedProcess, str]:
    """`python3 -m ci.deploy` as the deploy job runs it: the runner's Python, in a workspace holding
    what the job's sparse checkout writes (the data file, the compose file), with the step's inputs."""
    workspace = tmp_path / "workspace"
    if not workspace.exists():
        workspace.mkdir()
        generated = {central.DATA_PATH: data or data_file(), COMPOSE_PATH: compose_file(server)}
        deploy_checkout(workspace, generated)
    guard = tmp_path / "guard"
    env = workflow.guarded_client_env(client_env(server, tmp_path, images, known_hosts) | (login or {}), guard)
    summary = Path(env["GITHUB_STEP_SUMMARY"])
    summary.unlink(missing_ok=True)
    result = subprocess.run(
        [RUNNER_PYTHON, "-m", "ci.deploy"], env=env, capture_output=True, timeout=120, check=False, cwd=workspace
    )
    workflow.assert_guarded(guard)
    return result, summary.read_text() if summary.exists() else ""


def pairs_text(pairs: dict[str, str]) -> str:
    return "\n".join(f"{c}={i}" for c, i in pairs.items())


def test_the_deploy_client_deploys_end_to_end(server: DeployServer, tmp_path: Path) -> None:
    result, summary = run_client(server, tmp_path, pairs_text(v1(server)))
    stdout, stderr = text(result)
    assert result.returncode == 0, (stdout, stderr)
    assert "deployed: the new release runs and is healthy" in stdout
    assert summary.startswith("### dreamscape-deploy on ") and ": deployed" in summary
    assert steps(result) == ["pull", "up"]
    assert wait_timeouts(result) == [str(CLIENT_SETTINGS.wait_timeout_seconds)]
    assert "command='deploy --lock-wait 1 --wait-timeout 12 --keep 2 auth-service=" in server.syslog()[0]
    assert server.running() == healthy(v1(server))
    assert not list((tmp_path / "runner-temp").iterdir()), "the key's directory is gone"

    again, _ = run_client(server, tmp_path, pairs_text(v1(server)))
    assert again.returncode == 0
    assert "no change: that exact release is already running" in text(again)[0]


def test_the_deploy_client_reports_a_rollback_as_a_failure(server: DeployServer, tmp_path: Path) -> None:
    assert run_client(server, tmp_path, pairs_text(v1(server)))[0].returncode == 0
    bad = publish(server, {"gateway": image(server, "gateway", SHA3)}, "crash")
    result, summary = run_client(server, tmp_path, pairs_text(bad))
    assert result.returncode == deploy_program.EXIT["ROLLED_BACK"]
    assert "::error title=Deploy::rolled back: the new release failed" in text(result)[0]
    assert ": failed, rolled back" in summary
    assert server.running() == healthy(v1(server))


def test_the_deploy_client_logs_in_with_a_token_on_stdin(server: DeployServer, tmp_path: Path) -> None:
    registry = server.engine.auth_registry
    pairs = publish(server, {name: registry.image(f"dreamscape/{name}", SHA2) for name in PORTS})
    login = {
        "DEPLOY_REGISTRY": registry.host,
        "DEPLOY_REGISTRY_USER": registry.user,
        "DEPLOY_REGISTRY_TOKEN": registry.password,
    }
    # The VM's processes, and the client's own (ssh runs as this test's user).
    with ArgvWatcher(server.uid) as watcher, ArgvWatcher(os.getuid()) as client:
        result, summary = run_client(server, tmp_path, pairs_text(pairs), login=login)
    assert result.returncode == 0, text(result)
    assert steps(result) == ["login", "pull", "up"]
    assert server.running() == healthy(pairs)
    assert any(" deploy --lock-wait 1 " in argv for argv in client.seen), "the watcher saw the client's ssh"
    assert registry.password not in "".join(text(result)) + summary + "".join(watcher.seen | client.seen)


def test_a_wrong_known_hosts_line_fails_before_anything_is_sent(server: DeployServer, tmp_path: Path) -> None:
    wrong = f"[127.0.0.1]:{server.port} {sshd.keygen(tmp_path / 'other_host_key')}"
    accepted_before = server.log_path.read_text().count("Accepted publickey")

    result, summary = run_client(server, tmp_path, pairs_text(v1(server)), known_hosts=wrong)
    stdout, stderr = text(result)
    assert result.returncode == 255, (stdout, stderr)
    assert "Host key verification failed" in stderr
    assert "::error title=Deploy::ssh failed before the deploy program answered" in stdout
    assert "### Deploy: no answer from the VM (exit 255)" in summary
    assert server.containers() == []
    assert server.log_path.read_text().count("Accepted publickey") == accepted_before, "the key was never offered"
    assert not list((tmp_path / "runner-temp").iterdir()), "the key's directory is gone"


def test_the_deploy_client_refuses_a_bad_image_list_without_connecting(server: DeployServer, tmp_path: Path) -> None:
    connections = server.log_path.read_text().count("Connection from")
    result, _ = run_client(server, tmp_path, "auth-service=ghcr.io/o/a:1;id")
    assert result.returncode == 2
    assert "::error title=Deploy::not an image reference: ghcr.io/o/a:1;id" in text(result)[0]
    assert server.log_path.read_text().count("Connection from") == connections


def test_deploy_settings_outside_the_program_bounds_are_refused_without_connecting(
    server: DeployServer, tmp_path: Path
) -> None:
    """A data file the program would refuse stops the client: nothing reaches the VM."""
    connections = server.log_path.read_text().count("Connection from")
    out_of_bounds = config.Deploy(lock_wait_seconds=1, wait_timeout_seconds=12, keep_releases=1)
    result, summary = run_client(server, tmp_path, pairs_text(v1(server)), data=data_file(out_of_bounds))
    assert result.returncode == 2, text(result)
    assert (
        "::error title=Deploy::.github/dreamscape/central.json: deploy.keep_releases is 1;"
        " expected a whole number of releases from 2 to 50"
    ) in text(result)[0]
    assert summary == ""
    assert server.log_path.read_text().count("Connection from") == connections
    assert server.syslog() == [] and server.containers() == []
