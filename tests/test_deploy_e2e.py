"""The deploy end to end: a real sshd on 127.0.0.1, the CI key's authorized_keys line exactly as
cloud-init renders it, the real program, and a strict docker stand-in (tests/harness/).

Locally these skip with the reason when sshd or another prerequisite is missing; under
CI=true they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components.environment import deploy_program
from components.workflows import deploy_step, emit
from tests import conftest
from tests.harness import sshd
from tests.harness.sshd import DeployServer

pytestmark = pytest.mark.e2e

SHA1, SHA2, SHA3 = ("1" * 40, "2" * 40, "3" * 40)


def image(component: str, tag: str) -> str:
    return f"ghcr.io/dreamscape/{component}:{tag}"


V1 = {"auth-service": image("auth-service", SHA1), "gateway": image("gateway", SHA1)}

COMPOSE = yaml.safe_dump(
    {
        "services": {
            name: {
                "image": f"${{{deploy_program.image_variable(name)}:?{name} has no image yet}}",
                "restart": "unless-stopped",
                "healthcheck": {"test": ["CMD", "true"], "interval": "5s"},
            }
            for name in ("auth-service", "gateway")
        }
    },
    sort_keys=False,
)


@pytest.fixture(scope="session")
def deploy_server() -> Iterator[DeployServer]:
    conftest.require_tool("sshd", "openssh-server")
    problems = sshd.missing_prerequisites()
    if problems:
        message = "; ".join(problems)
        if conftest.IN_CI:
            pytest.fail(message + " - CI=true requires it")
        pytest.skip(message)
    server = DeployServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(deploy_server: DeployServer) -> DeployServer:
    deploy_server.reset()
    return deploy_server


def text(result: subprocess.CompletedProcess) -> tuple[str, str]:
    return result.stdout.decode(), result.stderr.decode()


CHECKS = ["compose config", "compose config"]
"""A deploy's checks: the file's services without interpolation, then the interpolated model."""
DEPLOY_CALLS = [*CHECKS, "compose pull", "compose up"]


def subcommands(calls: list[dict]) -> list[str]:
    """`compose config`, `compose pull`, `login`... for each recorded docker call."""
    names = []
    for call in calls:
        argv = call["argv"]
        if argv[0] == "compose":
            names.append("compose " + next(a for a in argv if a in ("config", "pull", "up", "ps")))
        else:
            names.append(argv[2] if argv[0] == "--config" else argv[0])
    return names


def release_of(call: dict) -> str:
    return Path(call["argv"][call["argv"].index("--project-directory") + 1]).name


def deployed(server: DeployServer, pairs=V1) -> str:
    result = server.deploy(pairs, COMPOSE)
    assert result.returncode == 0, text(result)
    return server.state()["current"]


# --- deploys ------------------------------------------------------------------------------------


def test_deploy_pulls_and_starts_the_release_with_health_checks(server: DeployServer) -> None:
    result = server.deploy(V1, COMPOSE)
    stdout, stderr = text(result)
    assert result.returncode == 0, (stdout, stderr)

    release = server.state()["current"]
    assert re.fullmatch(r"000001-[0-9a-f]{12}", release)
    directory = server.state_dir / "releases" / release
    assert (directory / "compose.received.yaml").read_text() == COMPOSE
    assert (directory / ".env").read_text() == (
        f"AUTH_SERVICE_IMAGE={V1['auth-service']}\nGATEWAY_IMAGE={V1['gateway']}\n"
    )
    model = json.loads((directory / "compose.yaml").read_text())
    assert {name: service["image"] for name, service in model["services"].items()} == V1
    assert model["services"]["gateway"]["healthcheck"] == {"test": ["CMD", "true"], "interval": "5s"}

    calls = server.calls()
    assert subcommands(calls) == DEPLOY_CALLS

    def base(file: str) -> list[str]:
        return [
            "compose", "--project-name", "dreamscape", "--project-directory", str(directory),
            "--file", str(directory / file), "--env-file", str(directory / ".env"),
        ]  # fmt: skip

    assert calls[0]["argv"] == [*base("compose.received.yaml"), "config", "--format", "json", "--no-interpolate"]
    assert calls[1]["argv"] == [*base("compose.received.yaml"), "config", "--format", "json"]
    assert calls[2]["argv"] == [*base("compose.yaml"), "pull"]
    assert calls[3]["argv"] == [
        *base("compose.yaml"),
        "up",
        "--detach",
        "--wait",
        "--wait-timeout",
        str(sshd.WAIT_TIMEOUT),
        "--remove-orphans",
    ]
    assert {c["uid"] for c in calls} == {server.uid}, "docker runs as the deploy user"
    assert all(c["stdin"] is None for c in calls)

    assert server.running() == {name: (ref, "healthy") for name, ref in V1.items()}
    assert stdout.startswith("### dreamscape-deploy on ")
    assert ": deployed\n" in stdout
    assert f"| `auth-service` | `{V1['auth-service']}` |" in stdout
    assert f"Release `{release}` runs and is healthy." in stdout
    assert "Not deployed yet" not in stdout

    (line,) = server.syslog()
    assert re.search(r"dreamscape-deploy\[\d+\]: result=deployed release=" + release, line), line
    assert "client=127.0.0.1" in line


def test_deploying_the_running_release_again_changes_nothing(server: DeployServer) -> None:
    release = deployed(server)
    calls = len(server.calls())
    server.syslog()

    again = server.deploy(V1, COMPOSE)
    assert again.returncode == deploy_program.EXIT["NO_CHANGE"], text(again)
    assert len(server.calls()) == calls, "no docker call for a release that already runs"
    assert f"Release `{release}` is already running and healthy." in text(again)[0]
    assert "result=no-change" in server.syslog()[0]

    changed = server.deploy(V1, COMPOSE.replace("5s", "6s"))
    assert changed.returncode == 0, "a new compose file is a new release, even with the same images"


def test_a_partial_deploy_keeps_the_other_components_images(server: DeployServer) -> None:
    first = deployed(server)
    second = deployed(server, {"auth-service": image("auth-service", SHA2)})

    assert server.state() | {"updated": None} == {
        "current": second,
        "previous": first,
        "healthy": True,
        "updated": None,
    }
    assert server.running() == {
        "auth-service": (image("auth-service", SHA2), "healthy"),
        "gateway": (V1["gateway"], "healthy"),
    }


def release_files(server: DeployServer) -> tuple[dict, dict]:
    """The current release's record and the compose model it runs."""
    directory = server.state_dir / "releases" / server.state()["current"]
    return (
        json.loads((directory / "release.json").read_text()),
        json.loads((directory / "compose.yaml").read_text()),
    )


def test_a_fresh_environment_starts_with_the_components_it_is_given(server: DeployServer) -> None:
    first = server.deploy({"auth-service": V1["auth-service"]}, COMPOSE)
    stdout, stderr = text(first)
    assert first.returncode == 0, (stdout, stderr)
    assert server.running() == {"auth-service": (V1["auth-service"], "healthy")}
    assert server.world()["images"] == [V1["auth-service"]], "nothing else pulled, no placeholder either"
    record, model = release_files(server)
    assert record["not_deployed"] == ["gateway"]
    assert list(model["services"]) == ["auth-service"]
    assert "Not deployed yet (no image here so far, so not part of this release): `gateway`." in stdout
    assert "left out, never deployed here: gateway" in stderr
    assert "- not deployed yet: `gateway`" in text(server.ssh("status"))[0]

    second = server.deploy({"gateway": V1["gateway"]}, COMPOSE)
    assert second.returncode == 0, text(second)
    assert server.running() == {name: (ref, "healthy") for name, ref in V1.items()}
    record, model = release_files(server)
    assert record["not_deployed"] == [] and list(model["services"]) == ["auth-service", "gateway"]
    assert "Not deployed yet" not in text(second)[0]
    assert "- not deployed yet: none" in text(server.ssh("status"))[0]

    third = server.deploy({"auth-service": image("auth-service", SHA2)}, COMPOSE)
    assert third.returncode == 0, text(third)
    assert server.running() == {
        "auth-service": (image("auth-service", SHA2), "healthy"),
        "gateway": (V1["gateway"], "healthy"),
    }


def test_rolling_back_a_first_deploy_of_a_component_removes_it(server: DeployServer) -> None:
    first = deployed(server, {"auth-service": V1["auth-service"]})
    deployed(server, {"gateway": V1["gateway"]})
    result = server.ssh("rollback")
    assert result.returncode == 0, text(result)
    assert server.state()["current"] == first
    assert server.running() == {"auth-service": (V1["auth-service"], "healthy")}, "exactly the previous release"
    assert "Not deployed yet (no image here so far, so not part of this release): `gateway`." in text(result)[0]
    assert "- not deployed yet: `gateway`" in text(server.ssh("status"))[0]


def test_a_failed_first_deploy_of_a_component_restores_the_release_without_it(server: DeployServer) -> None:
    first = deployed(server, {"auth-service": V1["auth-service"]})
    server.control(unhealthy=[V1["gateway"]])
    result = server.deploy({"gateway": V1["gateway"]}, COMPOSE)
    assert result.returncode == deploy_program.EXIT["ROLLED_BACK"], text(result)
    assert server.state()["current"] == first
    assert server.running() == {"auth-service": (V1["auth-service"], "healthy")}


def depending(gateway_extra: str) -> str:
    """COMPOSE, with something added to the gateway service."""
    return COMPOSE.replace("gateway:\n", "gateway:\n" + gateway_extra, 1)


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
    compose = depending(extra)
    result = server.deploy({"gateway": V1["gateway"]}, compose)
    stdout, stderr = text(result)
    assert result.returncode == deploy_program.EXIT["BAD_INPUT"], (stdout, stderr)
    message = (
        "service gateway depends on auth-service, which this environment has never deployed: "
        "deploy auth-service first, or in the same deploy as gateway"
    )
    assert message in stderr and message in stdout
    assert subcommands(server.calls()) == CHECKS, "nothing pulled, nothing started"
    assert list((server.state_dir / "releases").iterdir()) == [], "a refused release is not kept"

    together = server.deploy(V1, compose)
    assert together.returncode == 0, text(together)
    assert server.running() == {name: (ref, "healthy") for name, ref in V1.items()}


def test_an_optional_dependency_on_a_component_never_deployed_is_dropped(server: DeployServer) -> None:
    compose = depending("    depends_on:\n      auth-service: {condition: service_started, required: false}\n")
    result = server.deploy({"gateway": V1["gateway"]}, compose)
    assert result.returncode == 0, text(result)
    assert server.running() == {"gateway": (V1["gateway"], "healthy")}
    assert "depends_on" not in release_files(server)[1]["services"]["gateway"]

    deployed_too = server.deploy({"auth-service": V1["auth-service"]}, compose)
    assert deployed_too.returncode == 0, text(deployed_too)
    assert release_files(server)[1]["services"]["gateway"]["depends_on"] == {
        "auth-service": {"condition": "service_started", "required": False}
    }


def test_what_only_a_left_out_component_uses_is_left_out_with_it(server: DeployServer) -> None:
    compose = yaml.safe_load(COMPOSE)
    compose["services"]["auth-service"] |= {"volumes": ["auth-data:/data"], "networks": ["back", "shared"]}
    compose["services"]["gateway"] |= {"volumes": ["cache:/cache"], "networks": ["shared"]}
    compose |= {"volumes": {"auth-data": {}, "cache": {}}, "networks": {"back": {}, "shared": {}}}
    result = server.deploy({"gateway": V1["gateway"]}, yaml.safe_dump(compose))
    assert result.returncode == 0, text(result)
    model = release_files(server)[1]
    assert (list(model["services"]), list(model["volumes"]), list(model["networks"])) == (
        ["gateway"],
        ["cache"],
        ["shared"],
    )


def test_an_unhealthy_release_rolls_back_to_the_one_before(server: DeployServer) -> None:
    first = deployed(server)
    before = len(server.calls())
    server.syslog()
    bad = image("auth-service", SHA2)
    server.control(unhealthy=[bad])

    result = server.deploy({"auth-service": bad}, COMPOSE)
    stdout, stderr = text(result)
    assert result.returncode == deploy_program.EXIT["ROLLED_BACK"], (stdout, stderr)

    calls = server.calls()[before:]
    assert subcommands(calls) == [*DEPLOY_CALLS, "compose up"]
    failed = release_of(calls[3])
    assert calls[3]["rc"] != 0 and release_of(calls[4]) == first and calls[4]["rc"] == 0
    assert "--wait" in calls[4]["argv"], "the restored release is waited for too"
    assert server.running() == {name: (ref, "healthy") for name, ref in V1.items()}
    assert server.state()["current"] == first and server.state()["healthy"] is True
    assert ": failed, rolled back" in stdout
    assert f"release `{failed}` failed at `docker compose up`; release `{first}` runs again" in stdout
    assert "container dreamscape-auth-service-1 is unhealthy" in stdout
    assert re.search(rf"result=rolled-back release={failed} step=compose-up restore={first}", server.syslog()[0])


def test_a_failed_pull_rolls_back_without_starting_the_new_release(server: DeployServer) -> None:
    first = deployed(server)
    before = len(server.calls())
    missing = image("gateway", SHA2)
    server.control(pull_fail=[missing])

    result = server.deploy({"gateway": missing}, COMPOSE)
    assert result.returncode == deploy_program.EXIT["ROLLED_BACK"], text(result)
    calls = server.calls()[before:]
    assert subcommands(calls) == DEPLOY_CALLS
    assert calls[2]["rc"] != 0 and release_of(calls[3]) == first
    assert server.running() == {name: (ref, "healthy") for name, ref in V1.items()}
    assert "failed at `docker compose pull`" in text(result)[0]
    assert f"manifest for {missing} not found" in text(result)[0]


def test_a_release_that_stays_starting_past_the_wait_timeout_rolls_back(server: DeployServer) -> None:
    first = deployed(server)
    slow = image("auth-service", SHA2)
    server.control(slow={slow: sshd.WAIT_TIMEOUT * 3})
    began = time.monotonic()
    result = server.deploy({"auth-service": slow}, COMPOSE)
    assert result.returncode == deploy_program.EXIT["ROLLED_BACK"], text(result)
    assert time.monotonic() - began < sshd.WAIT_TIMEOUT + 5
    assert "context deadline exceeded" in text(result)[0]
    assert server.state()["current"] == first


def test_when_the_old_release_fails_too_the_deploy_says_the_environment_is_down(server: DeployServer) -> None:
    deployed(server)
    new = image("auth-service", SHA2)
    server.control(unhealthy=[new, V1["auth-service"]])

    result = server.deploy({"auth-service": new}, COMPOSE)
    assert result.returncode == deploy_program.EXIT["ROLLBACK_FAILED"], text(result)
    assert "failed too: the environment is down" in text(result)[0]
    assert server.state()["healthy"] is False

    server.control()
    retry = server.deploy(V1, COMPOSE)
    assert retry.returncode == 0, "an unhealthy current release is deployed again, not skipped as running"


def test_a_deploy_whose_client_goes_away_still_finishes_its_rollback(server: DeployServer) -> None:
    first = deployed(server)
    server.syslog()
    bad = image("auth-service", SHA2)
    server.control(unhealthy=[bad], slow={bad: 2})
    client = server.start_deploy({"auth-service": bad}, COMPOSE)
    wait_for_lock_holder(server)
    time.sleep(1)  # into `docker compose up`, which takes 2 s
    client.kill()  # a cancelled pipeline job: the connection drops mid-deploy
    client.communicate(timeout=10)

    deadline = time.monotonic() + 30
    logged: list[str] = []
    while not logged:  # the log line is the program's last act
        assert time.monotonic() < deadline, "the deploy never finished"
        time.sleep(0.1)
        logged = server.syslog()
    assert "result=rolled-back" in logged[0]
    assert server.state()["current"] == first and server.state()["healthy"] is True
    assert server.running() == {name: (ref, "healthy") for name, ref in V1.items()}


def test_a_failing_first_deploy_has_nothing_to_restore(server: DeployServer) -> None:
    server.control(unhealthy=[V1["gateway"]])
    result = server.deploy(V1, COMPOSE)
    assert result.returncode == deploy_program.EXIT["ROLLBACK_FAILED"], text(result)
    assert "no earlier release exists to restore" in text(result)[0]
    assert subcommands(server.calls()) == DEPLOY_CALLS


def test_rollback_brings_back_the_previous_release(server: DeployServer) -> None:
    refused = server.ssh("rollback")
    assert refused.returncode == deploy_program.EXIT["BAD_INPUT"]
    assert "no previous release to roll back to" in text(refused)[1]

    first = deployed(server)
    second = deployed(server, {"gateway": image("gateway", SHA2)})
    result = server.ssh("rollback")
    assert result.returncode == 0, text(result)
    assert server.state() | {"updated": None} == {
        "current": first,
        "previous": second,
        "healthy": True,
        "updated": None,
    }
    assert server.running() == {name: (ref, "healthy") for name, ref in V1.items()}
    assert ": rolled back" in text(result)[0]

    status = server.ssh("status")
    assert status.returncode == 0
    assert f"- current: `{first}`" in text(status)[0]
    assert f"dreamscape-gateway-1\t{V1['gateway']}\tgateway\tUp (healthy)" in text(status)[0]


def test_old_releases_are_pruned_to_the_configured_number(server: DeployServer) -> None:
    deployed(server)
    for n in range(sshd.KEEP + 1):
        deployed(server, {"gateway": image("gateway", f"v{n}")})
    kept = sorted(p.name for p in (server.state_dir / "releases").iterdir())
    assert len(kept) == sshd.KEEP
    assert kept[-1] == server.state()["current"] and kept[-2] == server.state()["previous"]
    assert kept[0].startswith("000003-")


# --- settings carried by the request ------------------------------------------------------------


def up_calls(server: DeployServer) -> list[list[str]]:
    return [c["argv"] for c in server.calls() if c["argv"][0] == "compose" and "up" in c["argv"]]


def wait_timeout_of(argv: list[str]) -> str:
    return argv[argv.index("--wait-timeout") + 1]


def test_a_deploy_with_keep_2_leaves_exactly_2_releases(server: DeployServer) -> None:
    assert sshd.KEEP > 2, "sshd's fallback must keep more, or this proves nothing"
    deployed(server)
    for n in range(3):
        result = server.deploy({"gateway": image("gateway", f"k{n}")}, COMPOSE, flags=("--keep", "2"))
        assert result.returncode == 0, text(result)
    kept = sorted(p.name for p in (server.state_dir / "releases").iterdir())
    assert kept == sorted([server.state()["previous"], server.state()["current"]])
    assert kept[0].startswith("000003-") and kept[1].startswith("000004-")
    assert "command='deploy --keep 2 gateway=" in server.syslog()[-1], "the system log shows the settings used"


def test_the_wait_timeout_in_the_request_reaches_compose_up(server: DeployServer) -> None:
    assert sshd.WAIT_TIMEOUT not in (11, 12, 13), "sshd's fallback must differ from the values sent"
    first = server.deploy(V1, COMPOSE, flags=("--wait-timeout", "11"))
    assert first.returncode == 0, text(first)
    assert [wait_timeout_of(argv) for argv in up_calls(server)] == ["11"]

    bad = image("gateway", SHA2)
    server.control(unhealthy=[bad])
    failed = server.deploy({"gateway": bad}, COMPOSE, flags=("--wait-timeout", "12", "--lock-wait", "0"))
    assert failed.returncode == deploy_program.EXIT["ROLLED_BACK"], text(failed)
    assert [wait_timeout_of(argv) for argv in up_calls(server)] == ["11", "12", "12"], "the restore waits as long"

    server.control()
    deployed(server, {"gateway": image("gateway", SHA3)})
    rollback = server.ssh("rollback", "--wait-timeout", "13")
    assert rollback.returncode == 0, text(rollback)
    assert [wait_timeout_of(argv) for argv in up_calls(server)][-2:] == [str(sshd.WAIT_TIMEOUT), "13"]
    assert server.running() == {name: (ref, "healthy") for name, ref in V1.items()}


def state_files(server: DeployServer) -> dict[str, bytes]:
    return {str(p.relative_to(server.state_dir)): p.read_bytes() for p in server.state_dir.rglob("*") if p.is_file()}


def test_bad_settings_in_the_request_are_refused_and_change_nothing(server: DeployServer) -> None:
    deployed(server)
    deployed(server, {"gateway": image("gateway", SHA2)})
    before, calls, running = state_files(server), len(server.calls()), server.running()
    server.syslog()
    pairs = [f"{c}={i}" for c, i in {"gateway": image("gateway", SHA3)}.items()]
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
        result = server.ssh(*command, stdin=sshd.frames(COMPOSE.encode()))
        stdout, stderr = text(result)
        assert result.returncode == deploy_program.EXIT["BAD_INPUT"], (command, stdout, stderr)
        assert f"dreamscape-deploy: refused: {message}" in stderr, (command, stderr)
        assert ": refused\n" in stdout
        assert "result=refused" in server.syslog()[0]
    assert len(server.calls()) == calls, "no docker call"
    assert state_files(server) == before, "no file in the state directory changed"
    assert server.running() == running


# --- the registry token -------------------------------------------------------------------------


def test_the_registry_token_travels_on_stdin_and_is_not_kept(server: DeployServer) -> None:
    token = "ghs_" + "T0k3n" * 8
    server.control(registry_tokens={"ghcr.io": token})

    without = server.deploy(V1, COMPOSE)
    assert without.returncode == deploy_program.EXIT["ROLLBACK_FAILED"], "the stand-in registry wants the token"
    assert "unauthorized" in text(without)[0]

    result = server.deploy(V1, COMPOSE, login=("ghcr.io", "dreamscape-ci", token))
    assert result.returncode == 0, text(result)
    (login,) = [c for c in server.calls() if "login" in c["argv"]]
    assert login["argv"][0] == "--config"
    assert login["argv"][2:] == ["login", "--username", "dreamscape-ci", "--password-stdin", "ghcr.io"]
    assert login["stdin"] == token + "\n"
    auth_dir = login["argv"][1]
    assert Path(auth_dir).parent == server.state_dir
    later = server.calls()[server.calls().index(login) + 1 :]
    assert subcommands(later) == ["compose pull", "compose up"]
    assert all(c["env"].get("DOCKER_CONFIG") == auth_dir for c in later)

    assert not Path(auth_dir).exists(), "the throwaway docker config is removed"
    assert not (server.home / ".docker").exists()
    everywhere = [
        *(" ".join(c["argv"]) for c in server.calls()),
        *text(result),
        *server.syslog(),
        server.log_path.read_text(),
        *(p.read_text() for p in server.state_dir.rglob("*") if p.is_file()),
    ]
    assert not [t for t in everywhere if token in t], "the token appears nowhere but on docker login's stdin"


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        f"deploy Auth-Service={V1['auth-service']}",
        f"deploy auth-service={V1['auth-service']};id",
        "deploy auth-service=$(id)",
        "deploy auth-service=`id`",
        f"deploy auth-service={V1['auth-service']} auth-service={V1['auth-service']}",
        "deploy auth-service=auth-service:latest",
        f"deploy auth-service={V1['auth-service']} gateway",
        "deploy",
        "status --verbose",
    ],
)
def test_a_malformed_command_is_refused_before_any_docker_call(server: DeployServer, command: str) -> None:
    result = server.ssh(command, stdin=sshd.frames(COMPOSE.encode()))
    stdout, stderr = text(result)
    assert result.returncode == deploy_program.EXIT["BAD_INPUT"], (stdout, stderr)
    assert "dreamscape-deploy: refused: " in stderr
    assert ": refused\n" in stdout
    assert server.calls() == []
    assert "uid=" not in stdout + stderr
    assert "result=refused" in server.syslog()[0]


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        pytest.param(b"", "deploy needs the compose file on stdin", id="no-frame"),
        pytest.param(COMPOSE.encode(), "unexpected stdin frame 'services:'", id="unframed"),
        pytest.param(sshd.frames(b"x" * (deploy_program.MAX_COMPOSE_BYTES + 1)), "at most 262144", id="too-big"),
        pytest.param(sshd.frames(COMPOSE.encode())[:-3], "stdin ended inside the compose frame", id="cut-short"),
        pytest.param(
            sshd.frames(COMPOSE.replace("restart: unless-stopped", "restart: unless-stopped\n    ports: yes").encode()),
            "'ports' were unexpected",
            id="schema",
        ),
        pytest.param(sshd.frames(b"services: [\n"), "yaml:", id="not-yaml"),
        pytest.param(
            sshd.frames(
                COMPOSE.replace("${AUTH_SERVICE_IMAGE:?auth-service has no image yet}", "ghcr.io/o/x:1").encode()
            ),
            "service auth-service runs image 'ghcr.io/o/x:1', not ghcr.io/dreamscape/auth-service:1111",
            id="image-not-from-variable",
        ),
        pytest.param(
            sshd.frames(b"services:\n  web:\n    image: ${WEB_IMAGE:-ghcr.io/o/web:1}\n"),
            "component auth-service is not a service of the compose file",
            id="not-a-service",
        ),
    ],
)
def test_bad_compose_input_is_refused(server: DeployServer, stdin: bytes, message: str) -> None:
    result = server.ssh("deploy", *(f"{c}={i}" for c, i in V1.items()), stdin=stdin)
    assert result.returncode == deploy_program.EXIT["BAD_INPUT"], text(result)
    assert message in text(result)[1]
    assert set(subcommands(server.calls())) <= {"compose config"}, "nothing pulled, nothing started"
    assert server.running() == {}
    assert not (server.state_dir / "releases").exists() or not list((server.state_dir / "releases").iterdir())


# --- the lock ---------------------------------------------------------------------------------------


def wait_for_lock_holder(server: DeployServer) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        lock = server.state_dir / "lock"
        if lock.exists() and lock.read_text():
            return lock.read_text()
        time.sleep(0.02)
    raise AssertionError("the first deploy never took the lock")


def test_a_second_deploy_waits_for_the_first_then_proceeds(server: DeployServer) -> None:
    server.control(slow={V1["auth-service"]: sshd.LOCK_WAIT / 2})
    first = server.start_deploy(V1, COMPOSE)
    try:
        wait_for_lock_holder(server)
        second = server.deploy({"gateway": image("gateway", SHA2)}, COMPOSE)
    finally:
        first_out, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, (first_out, first_err)
    assert second.returncode == 0, text(second)
    assert re.search(r"waiting up to \d+ s for the lock held by pid \d+ \(deploy auth-service=", text(second)[1])

    calls = server.calls()
    first_calls = [c for c in calls if release_of(c) == release_of(calls[0])]
    second_calls = [c for c in calls if release_of(c) != release_of(calls[0])]
    assert subcommands(first_calls) == subcommands(second_calls) == DEPLOY_CALLS
    assert min(c["start"] for c in second_calls) >= max(c["end"] for c in first_calls), "the deploys never overlap"
    assert server.running()["gateway"] == (image("gateway", SHA2), "healthy")


def test_a_deploy_that_waits_too_long_names_the_lock_holder(server: DeployServer) -> None:
    server.control(slow={V1["auth-service"]: sshd.LOCK_WAIT + 3})
    first = server.start_deploy(V1, COMPOSE)
    try:
        holder = wait_for_lock_holder(server)
        status = server.ssh("status")
        began = time.monotonic()
        second = server.deploy({"gateway": image("gateway", SHA2)}, COMPOSE)
        waited = time.monotonic() - began
    finally:
        first_out, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, (first_out, first_err)
    assert second.returncode == deploy_program.EXIT["LOCK_TIMEOUT"], text(second)
    assert sshd.LOCK_WAIT <= waited < sshd.LOCK_WAIT + 3
    stderr = text(second)[1]
    pid = re.search(r'"pid": (\d+)', holder).group(1)
    assert f"another deploy holds the lock: pid {pid} (deploy auth-service={V1['auth-service']}" in stderr
    assert re.search(r"from 127\.0\.0\.1 since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stderr), stderr
    deploys = [c for c in server.calls() if c["argv"][-2:] != ["ps", "--all"]]
    assert all(release_of(c) == release_of(deploys[0]) for c in deploys), "the second deploy ran no docker"
    assert f"- deploy in progress: pid {pid} (deploy auth-service=" in text(status)[0], "status does not wait"


def test_a_lock_wait_given_in_the_request_bounds_the_wait(server: DeployServer) -> None:
    longer = sshd.LOCK_WAIT + 2
    server.control(slow={V1["auth-service"]: longer + 4})
    first = server.start_deploy(V1, COMPOSE)
    try:
        holder = wait_for_lock_holder(server)
        began = time.monotonic()
        at_once = server.deploy({"gateway": image("gateway", SHA2)}, COMPOSE, flags=("--lock-wait", "0"))
        waited_at_once = time.monotonic() - began
        began = time.monotonic()
        second = server.deploy({"gateway": image("gateway", SHA2)}, COMPOSE, flags=("--lock-wait", str(longer)))
        waited = time.monotonic() - began
    finally:
        first_out, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, (first_out, first_err)
    pid = re.search(r'"pid": (\d+)', holder).group(1)
    for result, seconds in ((at_once, 0), (second, longer)):
        assert result.returncode == deploy_program.EXIT["LOCK_TIMEOUT"], text(result)
        stderr = text(result)[1]
        assert f"gave up after {seconds} s: another deploy holds the lock: pid {pid} (deploy auth-service=" in stderr
    assert waited_at_once < sshd.LOCK_WAIT, "lock wait 0 does not wait for sshd's fallback"
    assert longer <= waited < longer + 3, "the request's lock wait, not sshd's fallback"
    deploys = [c for c in server.calls() if c["argv"][-2:] != ["ps", "--all"]]
    assert all(release_of(c) == release_of(deploys[0]) for c in deploys), "neither waiting deploy ran docker"


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
    assert server.calls() == []


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
    assert server.calls() == []
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
        for key in (server.ci_key, server.control_key):
            subprocess.run(
                [*server.ssh_args(key), "-A", "127.0.0.1", "status"],
                env=env,
                capture_output=True,
                timeout=30,
                check=True,
            )
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    ci_status, control_status = server.calls()
    assert "SSH_AUTH_SOCK" not in ci_status["env"]
    assert "SSH_AUTH_SOCK" in control_status["env"], "without `restrict` the agent reaches the program's children"


def test_a_terminal_is_refused(server: DeployServer) -> None:
    # -tt: with no local terminal a single -t requests no PTY at all.
    ci = server.ssh("status", options=("-tt",))
    assert ci.returncode == 255
    assert "PTY allocation request failed" in text(ci)[1]
    assert not [c for c in server.calls() if "SSH_TTY" in c["env"]]

    control = server.ssh("status", key=server.control_key, options=("-tt",))
    assert control.returncode == 0, text(control)
    assert [c for c in server.calls() if "SSH_TTY" in c["env"]], "without `restrict` the session gets a terminal"


# --- the pipeline's deploy step -------------------------------------------------------------------


SECRETS = ("VM_HOST_E2E", "SSH_PRIVATE_KEY_E2E", "SSH_KNOWN_HOSTS_E2E")


STEP_SETTINGS = {"lock_wait_seconds": 1, "wait_timeout_seconds": 12, "keep_releases": 2}
"""The step's deploy settings: none equal to sshd's fallbacks, so the ones used show which won."""


def rendered_step(server: DeployServer, compose_file: Path, login: deploy_step.RegistryLogin | None = None) -> dict:
    """The step as the central workflow file carries it: emitted to YAML and read back."""
    step = deploy_step.deploy_step(
        host_var=SECRETS[0],
        private_key_var=SECRETS[1],
        known_hosts_var=SECRETS[2],
        images_var="DEPLOY_IMAGES",
        compose_file=str(compose_file),
        **STEP_SETTINGS,
        env={"DEPLOY_IMAGES": "${{ needs.build.outputs.images }}"},
        login=login,
        user=server.user,
        port=server.port,
    )
    workflow = {"name": "deploy", "on": {"workflow_dispatch": {}}, "permissions": {}, "jobs": {}}
    workflow["jobs"]["deploy"] = {"runs-on": "ubuntu-24.04", "timeout-minutes": 30, "steps": [step]}
    document = yaml.safe_load(emit.dump(workflow, "tests/test_deploy_e2e.py"))
    return document["jobs"]["deploy"]["steps"][0]


def run_step(step: dict, values: dict[str, str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, str]:
    """Run the step's bash as a GitHub runner does, with `${{ }}` in `env:` replaced by `values`."""
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TMPDIR": str(runner_temp),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    for name, value in step["env"].items():
        expression = re.fullmatch(r"\$\{\{ (secrets\.)?([\w.]+) \}\}", value)
        env[name] = values[expression.group(2)] if expression else value
    script = tmp_path / "step.sh"
    script.write_text(step["run"])
    assert step["shell"] == "bash"
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    summary = tmp_path / "summary.md"
    return result, summary.read_text() if summary.exists() else ""


def step_values(server: DeployServer, images: str, known_hosts: str | None = None) -> dict[str, str]:
    return {
        SECRETS[0]: "127.0.0.1",
        SECRETS[1]: server.ci_key.path.read_text(),
        SECRETS[2]: known_hosts or server.known_hosts_line,
        "needs.build.outputs.images": images,
    }


def pairs_text(pairs: dict[str, str]) -> str:
    return "\n".join(f"{c}={i}" for c, i in pairs.items())


def test_the_deploy_step_deploys_end_to_end(server: DeployServer, tmp_path: Path) -> None:
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text(COMPOSE)
    step = rendered_step(server, compose_file)
    result, summary = run_step(step, step_values(server, pairs_text(V1)), tmp_path)
    stdout, stderr = text(result)
    assert result.returncode == 0, (stdout, stderr)
    assert "deployed: the new release runs and is healthy" in stdout
    assert summary.startswith("### dreamscape-deploy on ") and ": deployed" in summary
    assert subcommands(server.calls()) == DEPLOY_CALLS
    assert [wait_timeout_of(argv) for argv in up_calls(server)] == [str(STEP_SETTINGS["wait_timeout_seconds"])]
    assert "command='deploy --lock-wait 1 --wait-timeout 12 --keep 2 auth-service=" in server.syslog()[0]
    assert server.running() == {name: (ref, "healthy") for name, ref in V1.items()}
    assert not list((tmp_path / "runner-temp").iterdir()), "the key's directory is gone"

    again, _ = run_step(step, step_values(server, pairs_text(V1)), tmp_path)
    assert again.returncode == 0
    assert "no change: that exact release is already running" in text(again)[0]


def test_the_deploy_step_reports_a_rollback_as_a_failure(server: DeployServer, tmp_path: Path) -> None:
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text(COMPOSE)
    step = rendered_step(server, compose_file)
    assert run_step(step, step_values(server, pairs_text(V1)), tmp_path)[0].returncode == 0
    bad = image("gateway", SHA3)
    server.control(unhealthy=[bad])
    result, summary = run_step(step, step_values(server, f"gateway={bad}"), tmp_path)
    assert result.returncode == deploy_program.EXIT["ROLLED_BACK"]
    assert "::error title=Deploy::rolled back: the new release failed" in text(result)[0]
    assert ": failed, rolled back" in summary


def test_the_deploy_step_logs_in_with_a_token_on_stdin(server: DeployServer, tmp_path: Path) -> None:
    token = "ghs_" + "s3cr3t" * 6
    server.control(registry_tokens={"ghcr.io": token})
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text(COMPOSE)
    login = deploy_step.RegistryLogin("REGISTRY", "REGISTRY_USER", "REGISTRY_TOKEN")
    step = rendered_step(server, compose_file, login)
    step["env"] |= {"REGISTRY": "ghcr.io", "REGISTRY_USER": "dreamscape-ci", "REGISTRY_TOKEN": "${{ github.token }}"}
    result, summary = run_step(step, step_values(server, pairs_text(V1)) | {"github.token": token}, tmp_path)
    assert result.returncode == 0, text(result)
    (login_call,) = [c for c in server.calls() if "login" in c["argv"]]
    assert login_call["stdin"] == token + "\n"
    assert token not in "".join(text(result)) + summary


def test_a_wrong_known_hosts_line_fails_before_anything_is_sent(server: DeployServer, tmp_path: Path) -> None:
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30)
    algorithm, key = other.with_suffix(".pub").read_text().split()[:2]
    wrong = f"[127.0.0.1]:{server.port} {algorithm} {key}"
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text(COMPOSE)
    accepted_before = server.log_path.read_text().count("Accepted publickey")

    result, summary = run_step(
        rendered_step(server, compose_file), step_values(server, pairs_text(V1), wrong), tmp_path
    )
    stdout, stderr = text(result)
    assert result.returncode == 255, (stdout, stderr)
    assert "Host key verification failed" in stderr
    assert "::error title=Deploy::ssh failed before the deploy program answered" in stdout
    assert "### Deploy: no answer from the VM (exit 255)" in summary
    assert server.calls() == []
    assert server.log_path.read_text().count("Accepted publickey") == accepted_before, "the key was never offered"


def test_the_deploy_step_refuses_a_bad_image_list_without_connecting(server: DeployServer, tmp_path: Path) -> None:
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text(COMPOSE)
    connections = server.log_path.read_text().count("Connection from")
    result, _ = run_step(
        rendered_step(server, compose_file), step_values(server, "auth-service=ghcr.io/o/a:1;id"), tmp_path
    )
    assert result.returncode == 2
    assert "::error title=Deploy::not an image reference: ghcr.io/o/a:1;id" in text(result)[0]
    assert server.log_path.read_text().count("Connection from") == connections
