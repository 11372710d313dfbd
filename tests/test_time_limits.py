"""Every time limit the deploy enforces, reached: a client that never closes stdin, an instance
that never becomes ACTIVE, a load balancer change that never ends. Each is made small or its
clock fake, so none of them waits for real."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ci import instances
from ci import oci as ci_oci
from components.environment import deploy_program
from tests.test_deploy_instances import (  # noqa: F401 - fixtures
    Clock,
    deploy_once,
    deployer,
    environment,
    key,
    live,
    stand_in,
)
from tests.test_deploy_program_refusals import call_main

PROGRAM = deploy_program.load_program()


@pytest.mark.parametrize("command", ["deploy web=registry.example.com/web:1", "rollback"])
def test_a_client_that_never_closes_stdin_is_refused_when_the_alarm_rings(
    tmp_path: Path, monkeypatch, command: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "first-boot").write_text("complete\n")
    monkeypatch.setattr(PROGRAM, "STDIN_SECONDS", 1)
    environ = {
        "DREAMSCAPE_DEPLOY_STATE_DIR": str(state),
        "DREAMSCAPE_DEPLOY_FIRST_BOOT": str(tmp_path / "first-boot"),
        "DREAMSCAPE_DEPLOY_LOG_SOCKET": str(tmp_path / "no-log"),
        "SSH_ORIGINAL_COMMAND": command,
        "PATH": "/usr/bin:/bin",
    }
    read_end, write_end = os.pipe()  # the write end stays open: stdin never ends
    out = io.StringIO()
    began = time.monotonic()
    try:
        with os.fdopen(read_end, "rb") as stdin:
            code = call_main(environ, stdin, out)
    finally:
        os.close(write_end)
    assert code == deploy_program.EXIT["BAD_INPUT"]
    assert "stdin did not end within 1 s" in out.getvalue()
    assert 0.9 < time.monotonic() - began < 10
    assert not any(state.iterdir()), "nothing was staged"


def test_the_program_waits_a_minute_for_stdin() -> None:
    assert PROGRAM.STDIN_SECONDS == 60


def test_an_instance_never_active_is_given_up_after_the_create_wait(tmp_path, stand_in, deployer, key, capsys):  # noqa: F811
    api, platform = stand_in(gets_until_active=None)
    clock = Clock()
    started = clock()
    assert deploy_once(tmp_path, environment(api, deployer, key), clock) == instances.ROLLED_BACK
    waited = clock() - started
    assert instances.CREATE_WAIT_SECONDS <= waited < instances.CREATE_WAIT_SECONDS + 4 * instances.POLL_SECONDS
    assert live(platform) == []
    assert f"not ACTIVE within {instances.CREATE_WAIT_SECONDS}s" in capsys.readouterr().out


def test_a_load_balancer_change_that_never_ends_is_given_up(tmp_path, stand_in, deployer, key, capsys):  # noqa: F811
    api, platform = stand_in(lb_work_request_gets=10_000)
    clock = Clock()
    assert deploy_once(tmp_path, environment(api, deployer, key), clock) == instances.ROLLED_BACK
    assert live(platform) == []
    out = capsys.readouterr().out
    assert "did not end within the 300s a deploy's load balancer changes may take together" in out
    # The backup backend could not go while its change was under way: said, and left to the next deploy.
    assert "::warning title=Deploy::clean-up incomplete, the next deploy finishes it" in out


def test_the_limits_are_the_documented_ones() -> None:
    assert (instances.CREATE_WAIT_SECONDS, instances.SWITCH_SECONDS) == (600, 300)


# --- the deploy program's own timers -------------------------------------------------------------
#
# Each docker and tool call the program makes is bounded. A call that could only be reached by
# waiting its whole limit is run against a real process that never ends, with the limit the code
# passes recorded and a small one put in its place: the number is pinned, and what the program
# does when the limit fires is seen for real.


HANG = "exec sleep 60"
"""A tool that never ends."""


def tools(tmp_path: Path, **scripts: str) -> Path:
    """A bin directory holding each named tool: the shell script given."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name, script in scripts.items():
        (directory / name).write_text(f"#!/bin/sh\n{script}\n")
        (directory / name).chmod(0o755)
    return directory


@pytest.fixture
def bounded_runs(monkeypatch) -> list[float]:
    """The `timeout` each `subprocess.run` call asks for (the program's and ci/'s); each call
    runs with 0.3 s instead."""
    asked: list[float] = []
    run = subprocess.run

    def recorded(*args, timeout, **kwargs):
        asked.append(timeout)
        return run(*args, timeout=0.3, **kwargs)

    monkeypatch.setattr(subprocess, "run", recorded)
    return asked


def program_settings(tmp_path: Path, **environ: str):
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return PROGRAM.load_settings({"DREAMSCAPE_DEPLOY_STATE_DIR": str(state), **environ})


def test_a_docker_step_that_outlives_its_limit_is_killed_and_said_so() -> None:
    console = io.StringIO()
    began = time.monotonic()
    outcome = PROGRAM.run_streamed(
        ["/bin/sh", "-c", "echo pulling; exec sleep 60"], dict(os.environ), PROGRAM.Console(console), 1, "compose pull"
    )
    assert 0.9 < time.monotonic() - began < 5, "killed when its limit passed, not at its end"
    assert outcome == PROGRAM.Outcome(False, "compose pull", "pulling\n(killed after 1 s)")
    assert "pulling" in console.getvalue()


def test_a_failed_step_keeps_its_last_20_lines() -> None:
    outcome = PROGRAM.run_streamed(
        ["/bin/sh", "-c", "seq 1 25; exit 3"], dict(os.environ), PROGRAM.Console(io.StringIO()), 10, "compose up"
    )
    kept = outcome.tail.splitlines()
    assert len(kept) == 20, "the exit note is the last of them"
    assert kept == [*(str(n) for n in range(7, 26)), "(exit 3)"]


def test_each_docker_step_has_its_limit(tmp_path: Path, monkeypatch) -> None:
    """A pull takes at most the pull timeout, `up --wait` the wait timeout and 120 s for compose
    itself, the accessories' first start a pull and a wait, a slot's `down` 300 s."""
    steps: list[tuple[str, int]] = []

    def recorded(args, env, console, timeout, step):
        steps.append((step, timeout))
        return PROGRAM.Outcome(True, step, "")

    monkeypatch.setattr(PROGRAM, "run_streamed", recorded)
    settings = program_settings(tmp_path, DREAMSCAPE_DEPLOY_WAIT_TIMEOUT="37", DREAMSCAPE_DEPLOY_PULL_TIMEOUT="56")
    release = PROGRAM.Release(tmp_path / "state" / "000001", {"slot": "blue"})
    console = PROGRAM.Console(io.StringIO())
    assert PROGRAM.start(settings, release, {}, console, ["web"]).ok
    assert PROGRAM.start_accessories(settings, {"services": {"db": {"image": "postgres:17"}}}, {}, console).ok
    assert PROGRAM.slot_down(settings, "green", {}, console).ok
    assert steps == [("compose pull", 56), ("compose up", 37 + 120), ("accessories up", 37 + 56), ("compose down", 300)]


def test_a_system_log_that_does_not_answer_within_10_s_is_a_warning(tmp_path: Path, monkeypatch, bounded_runs) -> None:
    monkeypatch.setenv("PATH", f"{tools(tmp_path, logger=HANG)}:{os.environ['PATH']}")
    console = io.StringIO()
    PROGRAM.system_log(program_settings(tmp_path), PROGRAM.Console(console), "result=deployed")
    assert bounded_runs == [10]
    assert console.getvalue().startswith("warning: system log not written: Command ")
    assert "timed out after 0.3 seconds" in console.getvalue()


def test_a_registry_login_that_does_not_end_within_60_s_stops_the_deploy(
    tmp_path: Path, monkeypatch, bounded_runs
) -> None:
    environ = {"PATH": f"{tools(tmp_path, docker=HANG)}:/usr/bin:/bin"}
    login = PROGRAM.Login("ghcr.io", "dreamscape", "ghs_example")
    registry = PROGRAM.Registry(program_settings(tmp_path), login, environ, PROGRAM.Console(io.StringIO()))
    with registry, pytest.raises(subprocess.TimeoutExpired):
        registry.sign_in()
    assert not registry.directory.exists(), "the docker config with the token is gone all the same"
    assert bounded_runs == [60]


def test_a_compose_query_that_does_not_end_within_60_s_is_an_error(tmp_path: Path, bounded_runs) -> None:
    """`status` asks compose about each slot: one that hangs ends the request as an error."""
    settings = program_settings(tmp_path)
    (tmp_path / "first-boot").write_text("complete\n")
    environ = {
        "DREAMSCAPE_DEPLOY_STATE_DIR": str(settings.state_dir),
        "DREAMSCAPE_DEPLOY_FIRST_BOOT": str(tmp_path / "first-boot"),
        "DREAMSCAPE_DEPLOY_EDGE_DIR": str(tmp_path),
        "DREAMSCAPE_DEPLOY_LOG_SOCKET": str(tmp_path / "no-log"),
        "SSH_ORIGINAL_COMMAND": "status",
        "PATH": f"{tools(tmp_path, docker=HANG)}:/usr/bin:/bin",
    }
    out = io.StringIO()
    assert call_main(environ, io.BytesIO(), out) == deploy_program.EXIT["ERROR"]
    assert (
        "TimeoutExpired: Command '['docker', 'compose', '--project-name', 'dreamscape-blue', 'ps', '--all']' timed out"
        in (out.getvalue())
    )
    assert bounded_runs == [60, 10], "the compose query, then the system log line"


def test_an_edge_admin_socket_that_does_not_answer_within_30_s_is_an_edge_error(tmp_path: Path, monkeypatch) -> None:
    asked: list[float] = []
    connection = PROGRAM._UnixConnection

    class Recorded(connection):
        def __init__(self, path: str, timeout: float) -> None:
            asked.append(timeout)
            super().__init__(path, 0.3)

    monkeypatch.setattr(PROGRAM, "_UnixConnection", Recorded)
    admin = tmp_path / "admin.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(admin))
        silent.listen()  # accepts (the kernel does) and never answers
        settings = program_settings(tmp_path, DREAMSCAPE_DEPLOY_EDGE_ADMIN=str(admin))
        with pytest.raises(PROGRAM.EdgeError, match=f"the edge proxy's admin socket {admin}: timed out"):
            PROGRAM.Edge(settings, PROGRAM.Console(io.StringIO())).in_flight([20000])
    assert asked == [30]


class FakeTime:
    """The program's `time`, with a clock that moves only when the program sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(("settles_after", "left", "waited"), [(None, 2, 9), (4.0, 0, 4.0)])
def test_a_release_drains_for_at_most_the_drain_timeout(
    tmp_path: Path, monkeypatch, settles_after: float | None, left: int, waited: float
) -> None:
    """The old release keeps its open requests until they end or the drain timeout (9 s here)
    passes, counted after the first settling pause."""
    clock = FakeTime()
    monkeypatch.setattr(PROGRAM, "time", clock)
    settings = program_settings(tmp_path, DREAMSCAPE_DEPLOY_DRAIN_TIMEOUT="9")
    edge = PROGRAM.Edge(settings, PROGRAM.Console(io.StringIO()))
    began = clock.now + PROGRAM.DRAIN_SETTLE_SECONDS
    monkeypatch.setattr(
        edge, "in_flight", lambda ports: 0 if settles_after is not None and clock.now - began >= settles_after else 2
    )
    assert edge.drain([20000]) == left
    assert clock.now - began == pytest.approx(waited, abs=0.05)


def test_an_openssl_or_ssh_keygen_that_does_not_end_within_60_s_is_an_oci_error(bounded_runs) -> None:
    with pytest.raises(ci_oci.OciError, match=r"^sleep could not run: TimeoutExpired$"):
        ci_oci.tool("sleep", "60")
    assert bounded_runs == [60]


# --- what the program writes about a request, bounded in size ------------------------------------


def test_the_lock_and_the_system_log_keep_300_and_600_characters_of_a_command_and_900_of_its_result(
    tmp_path: Path, monkeypatch
) -> None:
    """A command may be 8192 bytes; the lock file the next client reads (4096 bytes) names it by
    its first 300 characters, the system log line by its first 600 and the result's first 900."""
    logger = 'for a in "$@"; do printf "%s\\n" "$a"; done > "$LOGGED"'
    monkeypatch.setenv("PATH", f"{tools(tmp_path, logger=logger)}:{os.environ['PATH']}")
    monkeypatch.setenv("LOGGED", str(tmp_path / "logged"))
    held: list[str | None] = []

    def deploy(settings, command, frames, environ, console):
        held.append(PROGRAM.lock_holder(settings))
        return PROGRAM.Report(PROGRAM.Exit.DEPLOYED, "deployed", [], "result=deployed " + "r" * 1000)

    monkeypatch.setattr(PROGRAM, "do_deploy", deploy)
    command = "deploy " + " ".join(f"c{n:02d}=ghcr.io/dreamscape/c{n:02d}:{'1' * 100}" for n in range(60))
    settings = program_settings(tmp_path)
    (tmp_path / "first-boot").write_text("complete\n")
    environ = {
        "DREAMSCAPE_DEPLOY_STATE_DIR": str(settings.state_dir),
        "DREAMSCAPE_DEPLOY_FIRST_BOOT": str(tmp_path / "first-boot"),
        "SSH_ORIGINAL_COMMAND": command,
        "SSH_CLIENT": "203.0.113.9 50000 22",
    }
    compose = b"services: {}\n"
    stdin = io.BytesIO(b"compose %d\n" % len(compose) + compose)
    assert call_main(environ, stdin, io.StringIO()) == deploy_program.EXIT["DEPLOYED"]
    assert len(command) > 6000
    [holder] = held
    assert holder is not None and f"({command[:300]}) from 203.0.113.9 since " in holder
    assert f"({command[:301]})" not in holder
    message = (tmp_path / "logged").read_text().splitlines()[-1]
    assert message.startswith("result=deployed " + "r" * (900 - 16) + f" command={command[:600]!r} client=203.0.113.9 ")
