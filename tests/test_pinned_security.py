"""What must never change without someone deciding it, pinned as literals: never read back
from the module that produces it, so a wrong entry in a table is a failing test, not a golden
diff that `make golden` would accept.

- each central job's permissions, the secrets it may read, and its trust tier's consequences;
- the forced-command line of the deploy key;
- the ports each environment's network opens;
- the defaults that guard security and cost, with the key removed from every file.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from components import settings as settings_module
from tests.conftest import ROOT, plan_with

CENTRAL = ROOT / "tests/golden/production/dreamscape-infra@main/.github/workflows/central-dispatch.yml"
NSG_RULE = "oci:Core/networkSecurityGroupSecurityRule:NetworkSecurityGroupSecurityRule"

PERMISSIONS = {
    "resolve": {},
    "build-test": {},
    "security-scan": {"contents": "read"},
    "publish": {"contents": "read", "packages": "write"},
    "deploy": {"contents": "read", "id-token": "write", "packages": "read"},
    "report": {"contents": "read"},
}
DEPLOY_SECRETS = {
    f"{name}_{env}"
    for name in ("VM_HOST", "SSH_PRIVATE_KEY", "SSH_KNOWN_HOSTS", "OCI_DEPLOY_CREDENTIAL", "APP_SECRETS")
    for env in ("DEV", "STAGING", "PRODUCTION")
}
SECRETS = {
    "resolve": {"PIPELINE_TOKEN"},
    "build-test": set(),
    "security-scan": set(),
    "publish": {"GITHUB_TOKEN"},
    "deploy": DEPLOY_SECRETS | {"GITHUB_TOKEN", "PIPELINE_TOKEN"},
    "report": {"PIPELINE_TOKEN"},
}


def central() -> dict[str, Any]:
    return yaml.safe_load(CENTRAL.read_text())


def test_the_workflow_grants_nothing_and_each_job_exactly_its_permissions() -> None:
    document = central()
    assert document["permissions"] == {}
    assert {name: job.get("permissions") for name, job in document["jobs"].items()} == PERMISSIONS


def test_each_job_reads_exactly_its_secrets() -> None:
    found = {
        name: set(re.findall(r"secrets\.([A-Z0-9_]+)", yaml.safe_dump(job))) for name, job in central()["jobs"].items()
    }
    assert found == SECRETS


def test_the_job_that_runs_source_code_holds_no_secret_no_token_no_cache() -> None:
    build = central()["jobs"]["build-test"]
    text = yaml.safe_dump(build)
    assert build["permissions"] == {}
    assert "secrets." not in text and "github.token" not in text
    # It may read the build cache (--cache-from) and embed cache metadata in its own image
    # (inline); only the gate tier writes a cache others read.
    assert "actions/cache" not in text
    assert set(re.findall(r"--cache-to ([a-z=]+)", text)) == {"type=inline"}
    assert "environment" not in build


def test_only_the_deploy_job_runs_in_the_environment_and_one_at_a_time() -> None:
    jobs = central()["jobs"]
    assert [name for name, job in jobs.items() if "environment" in job] == ["deploy"]
    assert jobs["deploy"]["concurrency"] == {
        "group": "central-deploy-${{ needs.resolve.outputs.environment }}",
        "cancel-in-progress": False,
        "queue": "max",
    }


@pytest.mark.parametrize("env", ["dev", "staging", "production"])
def test_the_deploy_key_is_forced_into_the_deploy_program(env: str) -> None:
    user_data = yaml.safe_load((ROOT / f"tests/golden/{env}/oci/{env}-vm-instance/user-data.yaml").read_text())
    [deploy] = [u for u in user_data["users"] if isinstance(u, dict) and u["name"] == "deploy"]
    [line] = deploy["ssh_authorized_keys"]
    assert re.fullmatch(
        rf'restrict,command="/usr/local/sbin/dreamscape-deploy" ssh-ed25519 [A-Za-z0-9+/]+=* dreamscape-ci-{env}', line
    ), line
    assert deploy["lock_passwd"] is True


def ingress(plan) -> set[tuple[int | None, str]]:
    rules = [r.inputs for r in plan.of_type(NSG_RULE) if r.inputs["direction"] == "INGRESS"]
    return {
        (
            (r.get("tcpOptions") or {}).get("destinationPortRange", {}).get("min"),
            "anywhere" if r["source"] == "0.0.0.0/0" else ("/32" if r["source"].endswith("/32") else r["sourceType"]),
        )
        for r in rules
    }


def test_a_vm_opens_the_web_to_anyone_and_ssh_to_the_bastion_only(plan_of) -> None:
    for stack in ("dev", "staging", "production"):
        assert ingress(plan_of(stack)) == {(80, "anywhere"), (443, "anywhere"), (22, "/32")}, stack


# --- defaults, with the key removed from every file ----------------------------------------------


def oci_without(stack: str, *keys: str) -> dict[str, Any]:
    oci = dict(settings_module.merged_plain_config(stack)["oci"])
    for key in keys:
        oci.pop(key, None)
    return oci


def test_by_default_ssh_is_open_to_no_address_and_the_bastion_session_is_short() -> None:
    plan = plan_with(
        "staging", oci=oci_without("staging", "sshAllowedCidrs", "bastionClientCidrs", "bastionSessionTtlSeconds")
    )
    assert ingress(plan) == {(80, "anywhere"), (443, "anywhere"), (22, "/32")}
    [bastion] = plan.of_type("oci:Bastion/bastion:Bastion")
    assert bastion.inputs["maxSessionTtlInSeconds"] == 1800


def test_by_default_a_paid_shape_is_refused() -> None:
    paid = {**oci_without("staging"), "shape": "VM.Standard.E4.Flex", "ocpus": 1, "memoryGbs": 8}
    with pytest.raises(settings_module.ConfigError, match="allowPaidShapes"):
        plan_with("staging", oci=paid, allowPaidShapes=None)


def test_by_default_the_target_is_a_vm_and_the_boot_volume_has_no_backups() -> None:
    plan = plan_with("staging", oci=oci_without("staging", "target", "bootVolumeBackups"))
    assert plan.outputs["target"] == "vm"
    assert plan.of_type("oci:Core/instance:Instance")
    assert not plan.of_type("oci:Core/volumeBackupPolicy:VolumeBackupPolicy")


def test_by_default_the_wiring_is_guarded(plan_of) -> None:
    defaults = ("infraRuleset", "actionsSettings", "dispatchTokenScope", "fileDelivery", "deploySecretLayout")
    plan = plan_with("production", **dict.fromkeys(defaults))
    types = {r.type for r in plan.resources}
    assert "github:index/repositoryRuleset:RepositoryRuleset" in types
    assert "github:index/actionsRepositoryPermissions:ActionsRepositoryPermissions" in types
    secrets = {r.inputs["secretName"] for r in plan.of_type("github:index/actionsSecret:ActionsSecret")}
    assert "DISPATCH_TOKEN" in secrets and "VM_HOST_PRODUCTION" in secrets
    assert not plan.of_type("github:index/actionsOrganizationSecret:ActionsOrganizationSecret")
    assert not plan.of_type("github:index/repositoryPullRequest:RepositoryPullRequest")


def test_by_default_production_needs_reviewers() -> None:
    with pytest.raises(settings_module.ConfigError, match=r"protection\.reviewers: production is reviewed by default"):
        plan_with("production", protection=None)
