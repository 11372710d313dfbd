"""The deploy program's refusals that its end-to-end tests reach only through sshd (where
coverage cannot follow, `make refusals`), reached in-process: the same functions, called as
the program calls them, each refusing with BAD_INPUT's message."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import pytest

from components.environment import deploy_program

PROGRAM = deploy_program.load_program()
IMAGE = "registry.example.com/web:1"


def call_main(environ: dict[str, str], stdin, stdout: io.StringIO) -> int:
    """The program's `main` in this process, which it treats as its own: its umask (027) and
    its SIGHUP and SIGALRM handlers are put back after, or files the deploy harness writes
    later in this worker would be unreadable to the throwaway deploy user."""
    umask = os.umask(0o022)
    os.umask(umask)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGALRM)}
    try:
        return PROGRAM.main(environ, stdin=stdin, stdout=stdout, stderr=io.StringIO())
    finally:
        os.umask(umask)
        for number, handler in handlers.items():
            signal.signal(number, handler)


@pytest.fixture
def settings(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    return PROGRAM.load_settings({"DREAMSCAPE_DEPLOY_STATE_DIR": str(state)})


@pytest.fixture
def release(tmp_path: Path):
    path = tmp_path / "state" / "releases" / "000001-abcdef012345"
    path.mkdir(parents=True)
    return PROGRAM.Release(path, {"slot": "blue"})


def test_a_component_the_compose_file_does_not_run_is_refused() -> None:
    with pytest.raises(PROGRAM.BadInputError, match="component web is not a service of the compose file"):
        PROGRAM.check_model({"services": {"api": {"image": IMAGE}}}, (("web", IMAGE),))
    with pytest.raises(
        PROGRAM.BadInputError, match=r"service web runs image 'nginx', not .*: its image must be \$\{WEB_IMAGE\}"
    ):
        PROGRAM.check_model({"services": {"web": {"image": "nginx"}}}, (("web", IMAGE),))


@pytest.mark.parametrize("names", ["postgres", ["postgres", "redis"]])
def test_accessories_must_name_services_of_the_file(settings, names) -> None:
    model = {"services": {"postgres": {"image": IMAGE}}, PROGRAM.ACCESSORIES_EXTENSION: names}
    with pytest.raises(PROGRAM.BadInputError, match="x-dreamscape-accessories is a list of the file's services"):
        PROGRAM.accessories_of(settings, model)


def test_a_secret_the_deploy_did_not_send_is_refused(release) -> None:
    model = {"secrets": {"JWT_SIGNING_KEY": {"file": str(release.path / "secrets" / "JWT_SIGNING_KEY")}}}
    with pytest.raises(PROGRAM.BadInputError, match="secret JWT_SIGNING_KEY was not sent"):
        PROGRAM.check_secrets(model, release)


@pytest.mark.parametrize(
    ("docker", "message"),
    [
        ('echo "services.web Additional property bogus is not allowed" >&2; exit 15', "docker compose config refused"),
        ("echo 'not json'", "docker compose config did not print a JSON model"),
        ("echo '{\"services\": []}'", "the compose file defines no services"),
    ],
)
def test_what_docker_compose_config_refuses_is_refused(tmp_path, settings, release, docker, message) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f"#!/bin/sh\n{docker}\n")
    (bin_dir / "docker").chmod(0o755)
    with pytest.raises(PROGRAM.BadInputError, match=message):
        PROGRAM.compose_model(settings, release, {"PATH": str(bin_dir)})


def test_a_deploy_without_a_compose_file_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "first-boot").write_text("complete\n")
    environ = {
        "DREAMSCAPE_DEPLOY_STATE_DIR": str(state),
        "DREAMSCAPE_DEPLOY_FIRST_BOOT": str(tmp_path / "first-boot"),
        "DREAMSCAPE_DEPLOY_LOG_SOCKET": str(tmp_path / "no-log"),
        "SSH_ORIGINAL_COMMAND": f"deploy web={IMAGE}",
        "PATH": os.defpath,
    }
    out = io.StringIO()
    code = call_main(environ, io.BytesIO(b""), out)
    assert code == deploy_program.EXIT["BAD_INPUT"]
    assert "deploy needs the compose file on stdin" in out.getvalue()


def test_a_rollback_with_no_release_before_is_refused(settings, monkeypatch) -> None:
    # The edge answers (its own tests run the real Caddy); there is no release at all yet.
    monkeypatch.setattr(PROGRAM.Edge, "in_flight", lambda self, sites: None)
    with pytest.raises(PROGRAM.BadInputError, match="no previous release to roll back to"):
        PROGRAM.do_rollback(settings, PROGRAM.Frames(), {}, PROGRAM.Console(io.StringIO()))
