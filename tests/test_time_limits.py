"""Every time limit the deploy enforces, reached: a client that never closes stdin, an instance
that never becomes ACTIVE, a load balancer change that never ends. Each is made small or its
clock fake, so none of them waits for real."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from ci import instances
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
    assert "did not end in time (300s a change, 300s for all of a deploy's changes)" in out
    # The backup backend could not go while its change was under way: said, and left to the next deploy.
    assert "::warning title=Deploy::clean-up incomplete, the next deploy finishes it" in out


def test_the_limits_are_the_documented_ones() -> None:
    assert (instances.CREATE_WAIT_SECONDS, instances.BACKEND_WAIT_SECONDS, instances.SWITCH_SECONDS) == (600, 300, 300)
