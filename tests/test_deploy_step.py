"""The pipeline's deploy step as data: what it reads, how it renders, what the linters say.

Its behaviour against a real sshd is in test_deploy_e2e.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.environment import deploy_program
from components.workflows import deploy_step, emit
from tests import conftest

BASH = shutil.which("bash") or "/bin/bash"
LOGIN = deploy_step.RegistryLogin("REGISTRY", "REGISTRY_USER", "REGISTRY_TOKEN")
SETTINGS = {"lock_wait_seconds": 120, "wait_timeout_seconds": 90, "keep_releases": 4}
"""Deploy settings other than the program's defaults, so the step's own values show."""
SETTINGS_ENV = {"DEPLOY_LOCK_WAIT_SECONDS": "120", "DEPLOY_WAIT_TIMEOUT_SECONDS": "90", "DEPLOY_KEEP_RELEASES": "4"}


def step(**changes) -> dict:
    arguments = {
        "host_var": "VM_HOST_PRODUCTION",
        "private_key_var": "SSH_PRIVATE_KEY_PRODUCTION",
        "known_hosts_var": "SSH_KNOWN_HOSTS_PRODUCTION",
        "images_var": "DEPLOY_IMAGES",
        "compose_file": "deploy/${{ needs.resolve.outputs.environment }}/compose.yaml",
        "env": {"DEPLOY_IMAGES": "${{ needs.build.outputs.images }}"},
        **SETTINGS,
    }
    return deploy_step.deploy_step(**(arguments | changes))


def workflow(deploy: dict) -> dict:
    return {
        "name": "Deploy",
        "on": {"workflow_dispatch": {}},
        "permissions": {},
        "concurrency": {"group": "deploy", "cancel-in-progress": False},
        "jobs": {
            "deploy": {
                "name": "Deploy",
                "runs-on": "ubuntu-24.04",
                "timeout-minutes": 30,
                "permissions": {},
                "environment": "production",
                "steps": [deploy],
            }
        },
    }


def test_values_reach_the_script_through_env_only() -> None:
    rendered = step(login=LOGIN)
    assert "${{" not in rendered["run"]
    assert rendered["env"] == {
        "VM_HOST_PRODUCTION": "${{ secrets.VM_HOST_PRODUCTION }}",
        "SSH_PRIVATE_KEY_PRODUCTION": "${{ secrets.SSH_PRIVATE_KEY_PRODUCTION }}",
        "SSH_KNOWN_HOSTS_PRODUCTION": "${{ secrets.SSH_KNOWN_HOSTS_PRODUCTION }}",
        "DEPLOY_IMAGES": "${{ needs.build.outputs.images }}",
        "DEPLOY_SSH_USER": deploy_program.DEPLOY_USER,
        "DEPLOY_SSH_PORT": "22",
        "DEPLOY_COMPOSE_FILE": "deploy/${{ needs.resolve.outputs.environment }}/compose.yaml",
        **SETTINGS_ENV,
    }
    for name in ("VM_HOST_PRODUCTION", "SSH_PRIVATE_KEY_PRODUCTION", "SSH_KNOWN_HOSTS_PRODUCTION", "DEPLOY_IMAGES"):
        assert f'"${{{name}:-}}"' in rendered["run"]
    for name in ("REGISTRY", "REGISTRY_USER", "REGISTRY_TOKEN"):
        assert f'"${{{name}:-}}"' in rendered["run"]


def test_the_environment_layout_reads_other_names() -> None:
    rendered = step(host_var="VM_HOST", private_key_var="SSH_PRIVATE_KEY", known_hosts_var="SSH_KNOWN_HOSTS")
    assert rendered["env"]["VM_HOST"] == "${{ secrets.VM_HOST }}"
    assert 'host="${VM_HOST:-}"' in rendered["run"]
    assert "PRODUCTION" not in rendered["run"]


def test_without_secrets_as_env_the_caller_binds_the_names() -> None:
    rendered = step(secrets_as_env=False, port=2222)
    assert set(rendered["env"]) == {"DEPLOY_IMAGES", "DEPLOY_SSH_USER", "DEPLOY_SSH_PORT", "DEPLOY_COMPOSE_FILE"} | set(
        SETTINGS_ENV
    )
    assert rendered["env"]["DEPLOY_SSH_PORT"] == "2222"


def test_ssh_options_pin_the_host_key_and_the_identity() -> None:
    run = step()["run"]
    for option in (
        "-o StrictHostKeyChecking=yes",
        '-o UserKnownHostsFile="$work/known_hosts"',
        "-o BatchMode=yes",
        "-o IdentitiesOnly=yes",
        "-o IdentityAgent=none",
        "-o GlobalKnownHostsFile=/dev/null",
        "-F none",
    ):
        assert option in run
    assert "umask 077" in run and run.index("umask 077") < run.index('> "$work/key"')
    assert "trap 'rm -rf -- \"$work\"' EXIT" in run


def test_every_exit_code_of_the_program_has_a_message() -> None:
    run = step()["run"]
    for exit_code in deploy_program.EXIT_CODES:
        (line,) = [line for line in run.splitlines() if line.startswith(f"  {exit_code.code}) ")]
        assert exit_code.meaning in line
        assert line.strip().startswith(f"{exit_code.code}) {'echo' if exit_code.success else 'fail'} ")
    assert "  255) fail " in run


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"host_var": "vm-host"}, "not an environment variable name"),
        ({"images_var": "X; rm -rf /"}, "not an environment variable name"),
        ({"login": deploy_step.RegistryLogin("R", "U", "$TOKEN")}, "not an environment variable name"),
        ({"user": "Deploy User"}, "not a user name"),
        ({"port": 0}, "not a TCP port"),
        ({"port": 70000}, "not a TCP port"),
        ({"keep_releases": 1}, "keep_releases: expected a whole number of releases from 2 to 50, got 1"),
        ({"keep_releases": 51}, "keep_releases: expected"),
        ({"keep_releases": True}, "keep_releases: expected"),
        ({"wait_timeout_seconds": 9}, "wait_timeout_seconds: expected a whole number of seconds from 10 to 3600"),
        ({"wait_timeout_seconds": "180"}, "wait_timeout_seconds: expected"),
        ({"lock_wait_seconds": -1}, "lock_wait_seconds: expected a whole number of seconds from 0 to 3600, got -1"),
        ({"lock_wait_seconds": 3601}, "lock_wait_seconds: expected"),
    ],
)
def test_bad_parameters_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        step(**changes)


@pytest.mark.parametrize("login", [None, LOGIN], ids=["no-login", "login"])
def test_the_script_is_shellcheck_clean(tmp_path: Path, login) -> None:
    shellcheck = conftest.require_tool("shellcheck", "shellcheck")
    script = tmp_path / "step.sh"
    script.write_text(step(login=login)["run"])
    result = subprocess.run([shellcheck, "--shell=bash", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_the_step_in_a_workflow_passes_zizmor_and_the_schema(tmp_path: Path) -> None:
    path = tmp_path / ".github" / "workflows" / "deploy.yml"
    path.parent.mkdir(parents=True)
    text = emit.dump(workflow(step(login=LOGIN)), "tests/test_deploy_step.py")
    path.write_text(text)
    assert yaml.safe_load(text)["jobs"]["deploy"]["steps"][0]["run"] == step(login=LOGIN)["run"], "YAML round trip"
    zizmor = conftest.require_tool("zizmor", "zizmor (PyPI)")
    audit = subprocess.run(
        [zizmor, "--offline", "--persona", "pedantic", "--no-progress", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    checker = conftest.require_tool("check-jsonschema", "check-jsonschema (PyPI)")
    schema = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", str(path)], capture_output=True, text=True, timeout=120
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr


def test_a_bad_image_list_stops_the_step_before_any_connection(tmp_path: Path) -> None:
    """Run with real bash; `ssh` is not even looked up (PATH holds no ssh)."""
    compose = tmp_path / "compose.yaml"
    compose.write_text("services: {}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("wc", "mktemp", "rm", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    cases = {
        "auth-service=ghcr.io/o/a:1;id": "not an image reference: ghcr.io/o/a:1;id",
        "Auth=ghcr.io/o/a:1": "not <component>=<image>: Auth=ghcr.io/o/a:1",
        "auth-service": "not <component>=<image>: auth-service",
        "a=ghcr.io/o/a:1 a=ghcr.io/o/a:2": "component a given twice",
        "": "DEPLOY_IMAGES names no <component>=<image>",
    }
    rendered = step(compose_file=str(compose))
    for images, message in cases.items():
        env = {
            "PATH": str(bin_dir),
            "VM_HOST_PRODUCTION": "203.0.113.7",
            "SSH_PRIVATE_KEY_PRODUCTION": "key",
            "SSH_KNOWN_HOSTS_PRODUCTION": "203.0.113.7 ssh-ed25519 AAAA",
            "DEPLOY_IMAGES": images,
            "DEPLOY_SSH_USER": "deploy",
            "DEPLOY_SSH_PORT": "22",
            "DEPLOY_COMPOSE_FILE": str(compose),
            **SETTINGS_ENV,
        }
        result = subprocess.run(
            [BASH, "--noprofile", "--norc", "-eo", "pipefail", "-c", rendered["run"]],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2, (images, result.stdout, result.stderr)
        assert f"::error title=Deploy::{message}" in result.stdout
        assert "ssh" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("VM_HOST_PRODUCTION", "", "VM_HOST_PRODUCTION is empty"),
        ("VM_HOST_PRODUCTION", "-oProxyCommand=id", "VM_HOST_PRODUCTION is not a host name or an IP address"),
        ("SSH_PRIVATE_KEY_PRODUCTION", "", "SSH_PRIVATE_KEY_PRODUCTION is empty"),
        ("SSH_KNOWN_HOSTS_PRODUCTION", "", "SSH_KNOWN_HOSTS_PRODUCTION is empty"),
        ("DEPLOY_SSH_PORT", "22;id", "DEPLOY_SSH_PORT is not a port"),
        ("DEPLOY_COMPOSE_FILE", "/nonexistent/compose.yaml", "compose file /nonexistent/compose.yaml not found"),
        ("DEPLOY_LOCK_WAIT_SECONDS", "", "DEPLOY_LOCK_WAIT_SECONDS is not a whole number of seconds from 0 to 3600"),
        ("DEPLOY_LOCK_WAIT_SECONDS", "3601", "DEPLOY_LOCK_WAIT_SECONDS is not"),
        ("DEPLOY_LOCK_WAIT_SECONDS", "-1", "DEPLOY_LOCK_WAIT_SECONDS is not"),
        ("DEPLOY_WAIT_TIMEOUT_SECONDS", "9", "DEPLOY_WAIT_TIMEOUT_SECONDS is not a whole number of seconds from 10 to"),
        ("DEPLOY_WAIT_TIMEOUT_SECONDS", "060", "DEPLOY_WAIT_TIMEOUT_SECONDS is not"),
        ("DEPLOY_KEEP_RELEASES", "1", "DEPLOY_KEEP_RELEASES is not a whole number of releases from 2 to 50"),
        ("DEPLOY_KEEP_RELEASES", "5 --keep 9", "DEPLOY_KEEP_RELEASES is not"),
        # Bash evaluates a variable's text in arithmetic: the pattern must stop it first.
        ("DEPLOY_KEEP_RELEASES", "a[$(touch tripped)]", "DEPLOY_KEEP_RELEASES is not"),
    ],
)
def test_missing_or_malformed_inputs_are_named(tmp_path: Path, name: str, value: str, message: str) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services: {}\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "VM_HOST_PRODUCTION": "203.0.113.7",
        "SSH_PRIVATE_KEY_PRODUCTION": "key",
        "SSH_KNOWN_HOSTS_PRODUCTION": "203.0.113.7 ssh-ed25519 AAAA",
        "DEPLOY_IMAGES": "web=ghcr.io/o/web:1",
        "DEPLOY_SSH_USER": "deploy",
        "DEPLOY_SSH_PORT": "22",
        "DEPLOY_COMPOSE_FILE": str(compose),
        **SETTINGS_ENV,
    } | {name: value}
    result = subprocess.run(
        [BASH, "--noprofile", "--norc", "-eo", "pipefail", "-c", step()["run"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"::error title=Deploy::{message}" in result.stdout
    assert not (tmp_path / "tripped").exists()
