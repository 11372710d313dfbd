"""The central pipeline's deploy client, ci/deploy.py, without a VM: what it refuses before
connecting, what it hands ssh, the frames on ssh's stdin, the messages of each exit code.

The client runs as the deploy job runs it: `python3 -m ci.deploy` with the runner's Python, in
a workspace holding what the job's sparse checkout writes. Against a real sshd and the real
deploy program it runs in test_deploy_e2e.py and, inside the rendered job, test_central_deploy.py.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import subprocess
from pathlib import Path

import pytest

from ci import config, deploy
from components.environment import names
from components.workflows import central
from tests.central_support import deploy_checkout, settings_of
from tests.harness import workflow
from tests.harness.workflow import RUNNER_PYTHON

COMPOSE = "deploy/compose.production.yml"
TOKEN = "ghs_registry_token_for_tests"
SETTINGS = config.Deploy(lock_wait_seconds=120, wait_timeout_seconds=90, keep_releases=4)
"""Deploy settings other than the program's defaults, so the data file's own values show."""


def data_file(deploy_settings: config.Deploy = SETTINGS) -> str:
    shipped = config.loads(central.data_file(central.CentralArgs.from_settings(settings_of("production"))))
    return config.dumps(dataclasses.replace(shipped, deploy=deploy_settings))


def workspace(tmp_path: Path, data: str | None = None, compose: str = "services: {}\n") -> Path:
    root = tmp_path / "workspace"
    root.mkdir()
    deploy_checkout(root, {central.DATA_PATH: data or data_file(), COMPOSE: compose})
    return root


def inputs(**changes: str) -> dict[str, str]:
    values = {
        "VM_HOST": "203.0.113.7",
        "SSH_PRIVATE_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\nkey\n-----END OPENSSH PRIVATE KEY-----",
        "SSH_KNOWN_HOSTS": "203.0.113.7 ssh-ed25519 AAAA",
        "DEPLOY_IMAGES": "web=ghcr.io/o/web:1",
        "DEPLOY_COMPOSE_FILE": COMPOSE,
    }
    return values | changes


def run(root: Path, env: dict[str, str], path: Path | None = None) -> subprocess.CompletedProcess:
    """`python3 -m ci.deploy` in the workspace; PATH holds no ssh unless `path` brings one."""
    bin_dir = path or root.parent / "empty-bin"
    bin_dir.mkdir(exist_ok=True)
    guard = root.parent / "guard"
    result = subprocess.run(
        [RUNNER_PYTHON, "-m", "ci.deploy"],
        env=workflow.guarded_client_env({"PATH": str(bin_dir), "HOME": str(root.parent), **env}, guard),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    workflow.assert_guarded(guard)
    return result


def test_the_job_binds_the_variables_the_client_reads() -> None:
    """The deploy job binds each deploy secret to its base name, which the client reads."""
    bound = (deploy.HOST, deploy.PRIVATE_KEY, deploy.KNOWN_HOSTS, deploy.OCI_CREDENTIAL, deploy.APP_SECRETS)
    assert bound == names.SECRETS
    assert names.SECRETS == ("VM_HOST", "SSH_PRIVATE_KEY", "SSH_KNOWN_HOSTS", "OCI_DEPLOY_CREDENTIAL", "APP_SECRETS")
    document = central.document(central.CentralArgs.from_settings(settings_of("production")))
    [step] = [s for s in document["jobs"]["deploy"]["steps"] if s.get("run") == "exec python3 -m ci.deploy"]
    assert set(step["env"]) == {
        "VM_HOST",
        "SSH_PRIVATE_KEY",
        "SSH_KNOWN_HOSTS",
        "OCI_DEPLOY_CREDENTIAL",
        "APP_SECRETS",
        "DEPLOY_OCI",
        "DEPLOY_IMAGES",
        "DEPLOY_COMPOSE_FILE",
        "DEPLOY_REGISTRY",
        "DEPLOY_REGISTRY_USER",
        "DEPLOY_REGISTRY_TOKEN",
    }
    assert step["env"]["DEPLOY_REGISTRY_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert step["env"]["DEPLOY_OCI"] == (
        "${{ needs.resolve.outputs.environment == 'dev' && vars.DEPLOY_OCI_DEV"
        " || needs.resolve.outputs.environment == 'staging' && vars.DEPLOY_OCI_STAGING"
        " || needs.resolve.outputs.environment == 'production' && vars.DEPLOY_OCI_PRODUCTION || '' }}"
    )
    assert (step["shell"], step["if"]) == ("bash", "steps.newest.outputs.superseded == ''")


def test_a_bad_image_list_stops_the_client_before_any_connection(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    cases = {
        "auth-service=ghcr.io/o/a:1;id": "not an image reference: ghcr.io/o/a:1;id",
        "Auth=ghcr.io/o/a:1": "not <component>=<image>: Auth=ghcr.io/o/a:1",
        "auth-service": "not <component>=<image>: auth-service",
        "a=ghcr.io/o/a:1 a=ghcr.io/o/a:2": "component a given twice",
        "a=ghcr.io/o/a:" + "x" * 600: "not an image reference: ghcr.io/o/a:",
        "": "DEPLOY_IMAGES names no <component>=<image>",
        " \n\t": "DEPLOY_IMAGES names no <component>=<image>",
    }
    for images, message in cases.items():
        result = run(root, inputs(DEPLOY_IMAGES=images))
        assert result.returncode == 2, (images, result.stdout, result.stderr)
        assert f"::error title=Deploy::{message}" in result.stdout
        assert result.stderr == ""


def test_pairs_are_split_on_any_whitespace_and_kept_in_order() -> None:
    assert deploy.pairs("b=ghcr.io/o/b:1\n a=ghcr.io/o/a@sha256:" + "0" * 64) == (
        "b=ghcr.io/o/b:1",
        "a=ghcr.io/o/a@sha256:" + "0" * 64,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VM_HOST", "", "VM_HOST is empty: check the deploy secrets of this environment"),
        ("VM_HOST", "-oProxyCommand=id", "VM_HOST is not a host name or an IP address"),
        ("VM_HOST", "host name", "VM_HOST is not a host name or an IP address"),
        ("SSH_PRIVATE_KEY", "", "SSH_PRIVATE_KEY is empty: check the deploy secrets"),
        ("SSH_KNOWN_HOSTS", "", "SSH_KNOWN_HOSTS is empty: check the deploy secrets"),
        ("DEPLOY_SSH_PORT", "22;id", "DEPLOY_SSH_PORT is not a port"),
        ("DEPLOY_SSH_PORT", "0", "DEPLOY_SSH_PORT is not a port"),
        ("DEPLOY_SSH_PORT", "70000", "DEPLOY_SSH_PORT is not a port"),
        ("DEPLOY_SSH_USER", "Deploy User", "DEPLOY_SSH_USER is not a user name"),
        ("DEPLOY_COMPOSE_FILE", "/nonexistent/compose.yaml", "compose file /nonexistent/compose.yaml not found"),
        ("DEPLOY_COMPOSE_FILE", "", "compose file  not found"),
        ("DEPLOY_COMPOSE_FILE", "deploy", "compose file deploy not found"),
    ],
)
def test_missing_or_malformed_inputs_are_named(tmp_path: Path, name: str, value: str, message: str) -> None:
    result = run(workspace(tmp_path), inputs(**{name: value}))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"::error title=Deploy::{message}" in result.stdout


@pytest.mark.parametrize(
    ("size", "message"),
    [(0, "compose file is 0 bytes; 1 to 262144 accepted"), (256 * 1024 + 1, "compose file is 262145 bytes;")],
)
def test_a_compose_file_the_program_would_refuse_is_refused(tmp_path: Path, size: int, message: str) -> None:
    result = run(workspace(tmp_path, compose="x" * size), inputs())
    assert result.returncode == 2
    assert f"::error title=Deploy::{message}" in result.stdout


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ((-1, 90, 4), "deploy.lock_wait_seconds is -1; expected a whole number of seconds from 0 to 3600"),
        ((3601, 90, 4), "deploy.lock_wait_seconds is 3601; expected"),
        ((120, 9, 4), "deploy.wait_timeout_seconds is 9; expected a whole number of seconds from 10 to 3600"),
        ((120, 3601, 4), "deploy.wait_timeout_seconds is 3601; expected"),
        ((120, 90, 1), "deploy.keep_releases is 1; expected a whole number of releases from 2 to 50"),
        ((120, 90, 51), "deploy.keep_releases is 51; expected"),
    ],
)
def test_deploy_settings_outside_the_program_bounds_are_refused(tmp_path: Path, settings: tuple, message: str) -> None:
    result = run(workspace(tmp_path, data_file(config.Deploy(*settings))), inputs())
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"::error title=Deploy::.github/dreamscape/central.json: {message}" in result.stdout


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text.replace('"wait_timeout_seconds": 90', '"wait_timeout_seconds": "90"'), "has the wrong type"),
        (lambda text: text.replace('"keep_releases": 4', '"keep_releases": true'), "has the wrong type"),
        (lambda text: text.replace('"schema": 1', '"schema": 2'), "is not schema 1: run pulumi up"),
    ],
)
def test_a_data_file_the_client_does_not_understand_is_refused(tmp_path: Path, edit, message: str) -> None:
    text = edit(data_file())
    assert text != data_file()
    result = run(workspace(tmp_path, text), inputs())
    assert result.returncode == 2
    assert "::error title=Deploy::.github/dreamscape/central.json" in result.stdout and message in result.stdout


def test_a_missing_data_file_is_refused(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    (root / central.DATA_PATH).unlink()
    result = run(root, inputs())
    assert result.returncode == 2
    assert "::error title=Deploy::.github/dreamscape/central.json is missing: run pulumi up" in result.stdout


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEPLOY_REGISTRY", "https://ghcr.io", "DEPLOY_REGISTRY is not a registry host"),
        ("DEPLOY_REGISTRY", "", "DEPLOY_REGISTRY is not a registry host"),
        ("DEPLOY_REGISTRY_USER", "acme corp", "DEPLOY_REGISTRY_USER is not a user name"),
    ],
)
def test_a_bad_registry_login_is_refused_without_showing_the_token(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    login = {"DEPLOY_REGISTRY": "ghcr.io", "DEPLOY_REGISTRY_USER": "acme", "DEPLOY_REGISTRY_TOKEN": TOKEN}
    result = run(workspace(tmp_path), inputs(**(login | {name: value})))
    assert result.returncode == 2
    assert f"::error title=Deploy::{message}" in result.stdout
    assert TOKEN not in result.stdout + result.stderr


def request(**changes) -> deploy.Request:
    values = {
        "host": "203.0.113.7",
        "user": "deploy",
        "port": 22,
        "private_key": "PRIVATE KEY TEXT",
        "known_hosts": "203.0.113.7 ssh-ed25519 AAAA",
        "options": ("--lock-wait", "120", "--wait-timeout", "90", "--keep", "4"),
        "pairs": ("web=ghcr.io/o/web:1",),
        "compose": b"services: {}\n",
        "login": None,
    }
    return deploy.Request(**(values | changes))


def test_the_checked_request_carries_the_data_file_settings_and_the_defaults(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    checked = deploy.request(inputs(DEPLOY_COMPOSE_FILE=str(root / COMPOSE)), root)
    assert checked == request(host="203.0.113.7", private_key=inputs()["SSH_PRIVATE_KEY"])
    local = deploy.request(inputs(DEPLOY_COMPOSE_FILE=str(root / COMPOSE), DEPLOY_SSH_PORT="2222"), root)
    assert (local.user, local.port) == ("deploy", 2222)


def test_ssh_trusts_the_pinned_host_key_only_and_offers_the_ci_key_only() -> None:
    login = deploy.Login("ghcr.io", "acme", TOKEN)
    argv = deploy.ssh_command(request(login=login), Path("/w/key"), Path("/w/known_hosts"))
    assert argv[:4] == ["ssh", "-F", "none", "-T"]
    options = [argv[i + 1] for i, word in enumerate(argv) if word == "-o"]
    assert options == [
        "IdentitiesOnly=yes",
        "IdentityAgent=none",
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "UserKnownHostsFile=/w/known_hosts",
        "GlobalKnownHostsFile=/dev/null",
        "UpdateHostKeys=no",
        "CheckHostIP=no",
        "ConnectTimeout=20",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=4",
    ]
    assert argv[argv.index("-i") + 1] == "/w/key" and argv[argv.index("-p") + 1] == "22"
    assert argv[argv.index("--") :] == [
        "--",
        "203.0.113.7",
        "deploy",
        *("--lock-wait", "120", "--wait-timeout", "90", "--keep", "4"),
        "web=ghcr.io/o/web:1",
    ]
    assert not any(secret in word for word in argv for secret in (TOKEN, "PRIVATE KEY TEXT"))


def test_the_frames_on_stdin_count_bytes() -> None:
    """As the program reads them: the token's length in bytes, then the compose file's."""
    assert deploy.stdin(request(compose=b"ab\n")) == b"compose 3\nab\n"
    login = deploy.Login("ghcr.io", "acme", "t\u00f6ken")
    assert deploy.stdin(request(compose=b"ab\n", login=login)) == b"login ghcr.io acme 6\nt\xc3\xb6kencompose 3\nab\n"


def test_the_key_directory_is_private_and_removed_even_on_failure(tmp_path: Path) -> None:
    seen: list[Path] = []
    with pytest.raises(RuntimeError), deploy.private_files(request(), str(tmp_path)) as (key, known_hosts):
        seen += [key.parent]
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(key.stat().st_mode) == stat.S_IMODE(known_hosts.stat().st_mode) == 0o600
        assert key.read_text() == "PRIVATE KEY TEXT\n"
        assert known_hosts.read_text() == "203.0.113.7 ssh-ed25519 AAAA\n"
        raise RuntimeError("ssh went wrong")
    assert seen and not seen[0].exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "passes", "message"),
    [
        (0, True, "deployed: the new release runs and is healthy"),
        (3, True, "no change: that exact release is already running and healthy; nothing done"),
        (1, False, "error: the program failed unexpectedly (misconfigured VM, full disk, a bug); read its stderr"),
        (2, False, "bad input: command, image reference, stdin or compose file refused; nothing changed"),
        (4, False, "lock timeout: another deploy held the lock for longer than the wait; nothing changed"),
        (
            5,
            False,
            "rolled back: the new release failed; the release that ran before runs, keeps the traffic and is healthy",
        ),
        (
            6,
            False,
            "rollback failed: the new release failed and no healthy release could be restored: the environment is down",
        ),
        (
            255,
            False,
            "ssh failed before the deploy program answered: the VM is unreachable, its host key does not match "
            "SSH_KNOWN_HOSTS, or it refused the key in SSH_PRIVATE_KEY",
        ),
        (42, False, "unexpected exit code 42 from the deploy"),
    ],
)
def test_every_exit_code_has_its_message(code: int, passes: bool, message: str) -> None:
    assert deploy.outcome(code) == (passes, message)


FAKE_SSH = """#!/bin/sh
# Records what the client handed ssh, then fails as ssh does when it cannot connect.
env > "$RECORD.env"
printf '%s\\n' "$@" > "$RECORD.argv"
cat > "$RECORD.stdin"
echo "ssh: connect to host 203.0.113.7 port 22: Connection refused" >&2
exit 255
"""


def recording_ssh(tmp_path: Path) -> tuple[Path, Path]:
    """A directory with FAKE_SSH as `ssh`, and the stem of the files it records to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    return bin_dir, tmp_path / "ssh"


def test_ssh_gets_no_secret_in_its_environment_and_a_failure_is_summarised(tmp_path: Path) -> None:
    """An `ssh` on PATH that records its environment and stdin (the real one runs in test_deploy_e2e.py)."""
    root = workspace(tmp_path)
    bin_dir, record = recording_ssh(tmp_path)
    summary = tmp_path / "summary.md"
    login = {"DEPLOY_REGISTRY": "ghcr.io", "DEPLOY_REGISTRY_USER": "acme", "DEPLOY_REGISTRY_TOKEN": TOKEN}
    env = inputs(**login) | {"RECORD": str(record), "GITHUB_STEP_SUMMARY": str(summary)}
    env |= {"PATH": f"{bin_dir}:/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path)}
    result = run(root, env, bin_dir)
    assert result.returncode == 255, (result.stdout, result.stderr)
    assert "::error title=Deploy::ssh failed before the deploy program answered" in result.stdout
    assert "Connection refused" in result.stderr
    assert summary.read_text() == "### Deploy: no answer from the VM (exit 255)\n"
    environment = record.with_suffix(".env").read_text()
    for name in ("SSH_PRIVATE_KEY", "SSH_KNOWN_HOSTS", "DEPLOY_REGISTRY_TOKEN"):
        assert f"{name}=" not in environment
    assert TOKEN not in environment + record.with_suffix(".argv").read_text() + result.stdout + result.stderr
    assert record.with_suffix(".stdin").read_bytes().startswith(f"login ghcr.io acme {len(TOKEN)}\n{TOKEN}".encode())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("dreamscape-deploy-")], "the key's directory is gone"


APP_VALUE = "app-secret-value-0b1c2d3e4f5a6b7c"


def test_the_containers_secrets_go_last_on_stdin_as_the_program_reads_them() -> None:
    payload = deploy.app_secrets('{"POSTGRES_PASSWORD": "p\\u00e4ss", "JWT_SIGNING_KEY": "k"}')
    assert payload == b'{"JWT_SIGNING_KEY": "k", "POSTGRES_PASSWORD": "p\\u00e4ss"}'
    data = deploy.stdin(request(compose=b"ab\n", secrets=payload))
    assert data == b"compose 3\nab\nsecrets " + str(len(payload)).encode() + b"\n" + payload
    assert deploy.app_secrets("") == deploy.app_secrets("{}") == b"", "no secrets: no frame"
    assert deploy.stdin(request(compose=b"ab\n")) == b"compose 3\nab\n"


@pytest.mark.parametrize(
    "value",
    [
        "not json " + APP_VALUE,
        f'["{APP_VALUE}"]',
        f'{{"lower_case": "{APP_VALUE}"}}',
        '{"EMPTY": ""}',
        f'{{"NUMBER": 1, "X": "{APP_VALUE}"}}',
    ],
)
def test_app_secrets_the_program_would_refuse_are_refused_without_showing_them(tmp_path: Path, value: str) -> None:
    result = run(workspace(tmp_path), inputs(APP_SECRETS=value))
    assert result.returncode == 2
    assert "::error title=Deploy::APP_SECRETS is not one JSON object of NAME: value" in result.stdout
    assert APP_VALUE not in result.stdout + result.stderr


def test_app_secrets_reach_ssh_on_stdin_only(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    bin_dir, record = recording_ssh(tmp_path)
    env = inputs(APP_SECRETS=json.dumps({"JWT_SIGNING_KEY": APP_VALUE}))
    env |= {"RECORD": str(record), "PATH": f"{bin_dir}:/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path)}
    result = run(root, env, bin_dir)
    assert result.returncode == 255
    shown = record.with_suffix(".env").read_text() + record.with_suffix(".argv").read_text()
    assert APP_VALUE not in shown + result.stdout + result.stderr
    assert "APP_SECRETS=" not in record.with_suffix(".env").read_text()
    assert record.with_suffix(".stdin").read_bytes().endswith(f'{{"JWT_SIGNING_KEY": "{APP_VALUE}"}}'.encode())


def test_app_secrets_are_at_most_64_kib_as_sent() -> None:
    """The client checks the frame the program will read: 65536 bytes pass, 65537 are refused
    before any connection."""
    overhead = len(json.dumps({"K": ""}, sort_keys=True))
    fits = json.dumps({"K": "v" * (65536 - overhead)})
    assert len(deploy.app_secrets(fits)) == 65536
    over = json.dumps({"K": "v" * (65537 - overhead)})
    with pytest.raises(deploy.InputError, match="APP_SECRETS is 65537 bytes; at most 65536"):
        deploy.app_secrets(over)
