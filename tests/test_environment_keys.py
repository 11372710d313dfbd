"""The environment's SSH keys: generated per stack, parented, secret, and never printed."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.environment import keys
from tests.conftest import ROOT
from tools import offline

STACKS = ["dev", "staging", "production"]
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"


def private_key_bodies(plan: offline.Plan) -> dict[str, list[str]]:
    """Each generated key's private base64 lines, minus the header line every ed25519 key shares."""
    found = {}
    for r in plan.of_type(PRIVATE_KEY):
        text = offline._unwrap(r.outputs["privateKeyOpenssh"])
        lines = [line for line in text.splitlines() if line and not line.startswith("-----")]
        assert base64.b64decode(lines[0]).startswith(b"openssh-key-v1\0")
        found[r.name] = [*lines[1:], offline._unwrap(r.outputs["privateKeyPem"]).splitlines()[1]]
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_two_ed25519_keys_parented_under_the_keys_component(stack, plan_of) -> None:
    plan = plan_of(stack)
    component = plan.named(f"{stack}-keys")
    assert component.type == "dreamscape:environment:Keys"
    generated = plan.of_type(PRIVATE_KEY)
    assert sorted(r.name for r in generated) == [f"{stack}-keys-ci", f"{stack}-keys-host"]
    for r in generated:
        assert r.parent == component.urn
        assert r.plain("algorithm") == "ED25519"


@pytest.mark.parametrize("stack", STACKS)
def test_private_keys_are_secret_outputs(stack, plan_of) -> None:
    for r in plan_of(stack).of_type(PRIVATE_KEY):
        assert {"privateKeyOpenssh", "privateKeyPem"} <= set(r.options["additionalSecretOutputs"])
        assert offline.is_secret(r.outputs["privateKeyOpenssh"])
        assert not offline.is_secret(r.outputs["publicKeyOpenssh"])


def test_each_stack_has_its_own_keys(plan_of) -> None:
    publics = [
        offline._unwrap(r.outputs["publicKeyOpenssh"]) for stack in STACKS for r in plan_of(stack).of_type(PRIVATE_KEY)
    ]
    assert len(set(publics)) == 6


LISTED = (
    "dreamscape:environment:Network",
    "oci:Core/vcn:Vcn",
    "oci:Core/subnet:Subnet",
    "oci:Core/networkSecurityGroup:NetworkSecurityGroup",
    "oci:Core/instance:Instance",
    "oci:Core/publicIp:PublicIp",
    PRIVATE_KEY,
)


@pytest.mark.parametrize("stack", STACKS)
def test_plan_lists_the_environment_and_never_prints_private_keys(stack, plan_of, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "plan.py"), "--stack", stack, "--json", str(tmp_path / "plan.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for type_ in LISTED:
        assert f"{type_}  {stack}-" in result.stdout, type_
    for secret in ("VM_HOST", "SSH_PRIVATE_KEY", "SSH_KNOWN_HOSTS", "OCI_DEPLOY_CREDENTIAL"):
        assert f"secretName: {secret}_{stack.upper()}" in result.stdout
    printed = result.stdout + result.stderr + (tmp_path / "plan.json").read_text()
    bodies = private_key_bodies(plan_of(stack))
    assert len(bodies) == 2
    for name, lines in bodies.items():
        for line in lines:
            assert line not in printed, f"{name}'s private key is in the plan output"
    data = json.loads((tmp_path / "plan.json").read_text())
    instance = next(r for r in data["resources"] if r["type"] == "oci:Core/instance:Instance")
    assert instance["inputs"]["metadata"] == offline.SECRET


@pytest.mark.parametrize("stack", STACKS)
def test_the_ci_private_key_never_reaches_the_vm(stack, plan_of, tmp_path: Path) -> None:
    from tools import plan as plan_tool

    plan = plan_of(stack)
    written = plan_tool.render(plan, tmp_path)
    user_data = next(p for p in written if p.name == "user-data.yaml").read_text()
    bodies = private_key_bodies(plan)
    assert all(line not in user_data for line in bodies[f"{stack}-keys-ci"])
    # The host key is meant to be there: the VM must present the pinned key.
    assert all(line in user_data for line in bodies[f"{stack}-keys-host"][:-1])


def test_known_hosts_line() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWrFFjudVT4wKnQmE3q58rpyGn5NHHAEAOrVcQDoVrU\n"
    assert keys.known_hosts_line("198.51.100.7", key) == (
        "198.51.100.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWrFFjudVT4wKnQmE3q58rpyGn5NHHAEAOrVcQDoVrU"
    )
    with pytest.raises(ValueError, match="OpenSSH format"):
        keys.known_hosts_line("198.51.100.7", base64.b64encode(b"x").decode())
    with pytest.raises(ValueError, match="host name or address"):
        keys.known_hosts_line("198.51.100.7 evil", key)


@pytest.mark.parametrize("stack", STACKS)
def test_host_key_fingerprint_output_matches_the_host_key(stack, plan_of) -> None:
    import hashlib

    plan = plan_of(stack)
    host = plan.named(f"{stack}-keys-host")
    blob = base64.b64decode(offline._unwrap(host.outputs["publicKeyOpenssh"]).split()[1])
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert plan.outputs["hostKeyFingerprint"] == expected
