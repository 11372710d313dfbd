"""The environment's GitHub side: the `<env>` environment, deploy secrets in both layouts, variables."""

from __future__ import annotations

import json
import subprocess

import pytest

from components.environment import names
from components.settings import ConfigError
from tests.conftest import require_tool
from tools import offline

STACKS = ["dev", "staging", "production"]
SECRET = "github:index/actionsSecret:ActionsSecret"
ENV_SECRET = "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret"
VARIABLE = "github:index/actionsVariable:ActionsVariable"
ENVIRONMENT = "github:index/repositoryEnvironment:RepositoryEnvironment"
POLICY = "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy"


def _wiring(resource: offline.Registered) -> bool:
    """Registered by the shared wiring (its DISPATCH_TOKEN secrets), not by the environment."""
    return "::dreamscape:wiring:" in resource.urn


def _own(plan: offline.Plan, type_: str) -> list[offline.Registered]:
    return [r for r in plan.of_type(type_) if not _wiring(r)]


def expected_values(plan: offline.Plan, stack: str) -> dict[str, str]:
    """What each deploy secret must hold, read from the resources that produce it: the deploy
    reaches the VM through its bastion, at its private address."""
    host = plan.of_type("oci:Core/instance:Instance")[0].outputs["privateIp"]
    host_public = offline._unwrap(plan.named(f"{stack}-keys-host").outputs["publicKeyOpenssh"])
    return {
        "VM_HOST": host,
        "SSH_PRIVATE_KEY": offline._unwrap(plan.named(f"{stack}-keys-ci").outputs["privateKeyOpenssh"]),
        "SSH_KNOWN_HOSTS": f"{host} ssh-ed25519 {host_public.split()[1]}\n",
        "OCI_DEPLOY_CREDENTIAL": offline._unwrap(plan.named(f"{stack}-deploy-access-client").outputs["clientSecret"]),
        # The shipped config's two generated secrets, each its own random password.
        "APP_SECRETS": json.dumps(
            {
                name: offline._unwrap(plan.named(f"{stack}-secret-{name.lower().replace('_', '-')}").outputs["result"])
                for name in ("JWT_SIGNING_KEY", "POSTGRES_PASSWORD")
            },
            sort_keys=True,
        ),
    }


DEPLOY_SECRETS = ("VM_HOST", "SSH_PRIVATE_KEY", "SSH_KNOWN_HOSTS", "OCI_DEPLOY_CREDENTIAL", "APP_SECRETS")


@pytest.mark.parametrize("stack", STACKS)
def test_repository_layout_writes_the_seeds_secret_names(stack, plan_of) -> None:
    plan = plan_of(stack)
    secrets = {r.plain("secretName"): r for r in _own(plan, SECRET)}
    suffix = stack.upper()
    assert sorted(secrets) == sorted(f"{name}_{suffix}" for name in DEPLOY_SECRETS)
    for name, value in expected_values(plan, stack).items():
        secret = secrets[f"{name}_{suffix}"]
        assert secret.plain("repository") == "dreamscape-infra"
        assert offline.is_secret(secret.inputs["value"]), name
        assert secret.plain("value") == value, name
    assert _own(plan, ENV_SECRET) == []


@pytest.mark.parametrize("stack", STACKS)
def test_environment_layout_writes_environment_secrets(stack, run_with) -> None:
    plan = run_with(stack, deploySecretLayout="environment")
    secrets = {r.plain("secretName"): r for r in _own(plan, ENV_SECRET)}
    assert sorted(secrets) == ["APP_SECRETS", "OCI_DEPLOY_CREDENTIAL", "SSH_KNOWN_HOSTS", "SSH_PRIVATE_KEY", "VM_HOST"]
    for name, value in expected_values(plan, stack).items():
        assert secrets[name].plain("environment") == stack
        assert secrets[name].plain("repository") == "dreamscape-infra"
        assert offline.is_secret(secrets[name].inputs["value"])
        assert secrets[name].plain("value") == value
    # The environment exists before its secrets are written.
    environment = _own(plan, ENVIRONMENT)[0]
    assert all(environment.urn in s.options["dependsOn"] for s in secrets.values())
    assert _own(plan, SECRET) == []


@pytest.mark.parametrize(
    ("stack", "platform"), [("dev", "linux/amd64"), ("staging", "linux/arm64"), ("production", "linux/arm64")]
)
def test_variables_describe_the_environment(stack, platform, plan_of) -> None:
    plan = plan_of(stack)
    variables = {r.plain("variableName"): r.plain("value") for r in _own(plan, VARIABLE)}
    host = plan.outputs["host"]
    access = json.loads(variables.pop(f"DEPLOY_OCI_{stack.upper()}"))
    assert variables == {f"DEPLOY_PLATFORM_{stack.upper()}": platform, f"DEPLOY_URL_{stack.upper()}": f"http://{host}"}
    # What the deploy job reads about the bastion (its content per mode: test_environment_deploy_access.py).
    assert (access["auth"], access["bastionId"]) == ("workloadIdentity", plan.outputs["bastionId"])


def test_platform_follows_a_changed_shape(run_with, stack_config) -> None:
    oci = {**stack_config("dev")["oci"], "shape": "VM.Standard.A1.Flex", "ocpus": 1, "memoryGbs": 6}
    plan = run_with("dev", oci=oci, allowPaidShapes=True)  # a third A1 OCPU is past the free allowance
    variables = {r.plain("variableName"): r.plain("value") for r in _own(plan, VARIABLE)}
    assert variables["DEPLOY_PLATFORM_DEV"] == "linux/arm64"


@pytest.mark.parametrize("stack", STACKS)
def test_only_the_infra_default_branch_may_deploy(stack, plan_of, run_with) -> None:
    """A repository_dispatch run is on the infra repository's default branch, whatever the source
    branch; the source branch is resolve's to check. Any other infra branch is kept out."""
    plan = plan_of(stack)
    (environment,) = _own(plan, ENVIRONMENT)
    assert environment.plain("environment") == stack
    assert environment.plain("repository") == "dreamscape-infra"
    assert environment.plain("deploymentBranchPolicy") == {"protectedBranches": False, "customBranchPolicies": True}
    (policy,) = _own(plan, POLICY)
    assert (policy.plain("environment"), policy.plain("branchPattern")) == (stack, "main")
    # It follows the repository's default branch, as GitHub reports it.
    mocks = offline.OfflineMocks()
    answer = mocks.call_answers["github:index/getRepository:getRepository"]
    mocks.call_answers["github:index/getRepository:getRepository"] = lambda a: {**answer(a), "defaultBranch": "trunk"}
    (policy,) = _own(run_with(stack, mocks=mocks), POLICY)
    assert policy.plain("branchPattern") == "trunk"


@pytest.mark.parametrize("stack", STACKS)
def test_production_alone_is_reviewed_by_default(stack, plan_of) -> None:
    mocks = offline.OfflineMocks()
    (environment,) = plan_of(stack).of_type(ENVIRONMENT)
    if stack == "production":
        team = int(mocks.call_answers["github:index/getTeam:getTeam"]({"slug": "release-managers"})["id"])
        assert environment.plain("reviewers") == [{"users": [], "teams": [team]}]
    else:
        assert environment.plain("reviewers") is None
    assert environment.plain("waitTimer") == 0


def test_production_without_reviewers_is_refused_unless_waived(run_with) -> None:
    with pytest.raises(ConfigError, match=r"protection\.reviewers: production is reviewed by default"):
        run_with("production", protection={"reviewers": []})
    (environment,) = _own(run_with("production", protection={"waiveReviewers": True}), ENVIRONMENT)
    assert environment.plain("reviewers") is None
    with pytest.raises(ConfigError, match=r"protection\.waiveReviewers: true, with reviewers named"):
        run_with("production", protection={"reviewers": ["alice"], "waiveReviewers": True})


def test_reviewers_are_resolved_to_numeric_ids(run_with) -> None:
    mocks = offline.OfflineMocks()
    plan = run_with(
        "production", mocks=mocks, protection={"reviewers": ["alice", "DREAMSCAPE-AI/ops-team"], "waitTimer": 15}
    )
    (environment,) = _own(plan, ENVIRONMENT)
    users = [args for token, args in mocks.calls if token == "github:index/getUser:getUser"]
    teams = [args for token, args in mocks.calls if token == "github:index/getTeam:getTeam"]
    # The owner is looked up too: the deploy job's OIDC subject names its id (preflight.account_id).
    assert sorted(u["username"] for u in users) == ["DREAMSCAPE-AI", "alice"]
    # The other team looked up is repositoryRules' release managers (Pulumi.yaml), for the rulesets.
    assert sorted(t["slug"] for t in teams) == ["ops-team", "release-managers"]
    alice = int(mocks.call_answers["github:index/getUser:getUser"]({"username": "alice"})["id"])
    ops = int(mocks.call_answers["github:index/getTeam:getTeam"]({"slug": "ops-team"})["id"])
    assert environment.plain("reviewers") == [{"users": [alice], "teams": [ops]}]
    assert environment.plain("waitTimer") == 15


@pytest.mark.parametrize(
    ("reviewers", "message"),
    [
        (["someone-else/ops"], r"protection\.reviewers\[0\]: team 'someone-else/ops' is not a team of githubOwner"),
        ([f"user{i}" for i in range(7)], r"protection\.reviewers: GitHub accepts at most 6 reviewers, got 7"),
    ],
)
def test_bad_reviewers_are_refused(reviewers, message, run_with) -> None:
    with pytest.raises(ConfigError, match=message):
        run_with("production", protection={"reviewers": reviewers})


@pytest.mark.parametrize("stack", STACKS)
def test_github_side_resources_are_children_of_its_component_and_use_the_owners_provider(stack, plan_of) -> None:
    plan = plan_of(stack)
    component = plan.named(f"{stack}-github")
    assert component.type == "dreamscape:environment:GithubSide"
    github_types = {SECRET, ENV_SECRET, VARIABLE, ENVIRONMENT, POLICY}
    assert all(r.parent == component.urn for r in plan.resources if r.type in github_types and not _wiring(r))
    (provider,) = plan.of_type("pulumi:providers:github")
    assert provider.plain("owner") == "DREAMSCAPE-AI"


def test_secret_names_per_layout() -> None:
    assert names.secret_names("staging", "repository") == {
        "VM_HOST": "VM_HOST_STAGING",
        "SSH_PRIVATE_KEY": "SSH_PRIVATE_KEY_STAGING",
        "SSH_KNOWN_HOSTS": "SSH_KNOWN_HOSTS_STAGING",
        "OCI_DEPLOY_CREDENTIAL": "OCI_DEPLOY_CREDENTIAL_STAGING",
        "APP_SECRETS": "APP_SECRETS_STAGING",
    }
    assert names.oci_variable("staging") == "DEPLOY_OCI_STAGING"
    assert names.secret_names("staging", "environment") == {n: n for n in names.SECRETS}
    with pytest.raises(ValueError, match="unknown deploy secret layout"):
        names.secret_names("staging", "organization")


def test_known_hosts_secret_pins_the_host_key_the_vm_is_given(plan_of, tmp_path) -> None:
    """ssh-keygen finds the host in the secret's line, with the key of the private key cloud-init installs."""
    tool = require_tool("ssh-keygen", "openssh-client")
    plan = plan_of("production")
    host = plan.outputs["privateIp"]
    secret = next(r for r in _own(plan, SECRET) if r.plain("secretName") == "SSH_KNOWN_HOSTS_PRODUCTION")
    (tmp_path / "known_hosts").write_text(secret.plain("value"))
    host_key = tmp_path / "host_key"
    host_key.write_text(offline._unwrap(plan.named("production-keys-host").outputs["privateKeyOpenssh"]))
    host_key.chmod(0o600)

    def run(*args: str) -> str:
        result = subprocess.run([tool, *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return result.stdout

    found = run("-F", host, "-f", str(tmp_path / "known_hosts"))
    derived = run("-y", "-f", str(host_key)).split()
    assert f"{host} {derived[0]} {derived[1]}" in found.splitlines()
    (tmp_path / "derived.pub").write_text(" ".join(derived[:2]) + "\n")
    fingerprint = run("-l", "-E", "sha256", "-f", str(tmp_path / "derived.pub")).split()[1]
    assert fingerprint == plan.outputs["hostKeyFingerprint"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_names_the_token_permissions_its_environment_needs(stack, plan_of, run_with) -> None:
    needs = plan_of(stack).outputs["githubTokenNeeds"]
    text = " ".join(needs)
    for permission in ("Administration", "Secrets", "Variables", "Contents"):
        assert f"{permission}" in text, permission
    assert "Environments" not in text
    # Production's shipped reviewers are a team, which the credential must be able to read.
    assert ("read:org" in text) == (stack == "production")
    teams = run_with(stack, deploySecretLayout="environment", protection={"reviewers": ["DREAMSCAPE-AI/ops"]})
    text = " ".join(teams.outputs["githubTokenNeeds"])
    assert "Environments, Secrets: read and write" in text
    assert "read:org (classic)" in text
