"""The deploy job's OCI identity per environment: both modes' resources, the trust, the policy,
the credential and the variable the deploy client reads."""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

import pulumi_oci as oci
import pulumi_tls as tls
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from pulumi.runtime import mocks as pulumi_mocks

import ci.oci
from components import settings
from components.environment import deploy_access
from components.settings import ConfigError
from tests.conftest import copy_project, only, plan_with
from tests.test_plan import plan_cli
from tools import offline

STACKS = ["dev", "staging", "production"]
COMPONENT = "dreamscape:environment:DeployAccess"
DOMAINS_USER = "oci:Identity/domainsUser:DomainsUser"
DOMAINS_GROUP = "oci:Identity/domainsGroup:DomainsGroup"
DOMAINS_APP = "oci:Identity/domainsApp:DomainsApp"
TRUST = "oci:Identity/domainsIdentityPropagationTrust:DomainsIdentityPropagationTrust"
USER = "oci:Identity/user:User"
GROUP = "oci:Identity/group:Group"
MEMBERSHIP = "oci:Identity/userGroupMembership:UserGroupMembership"
CAPABILITIES = "oci:Identity/userCapabilitiesManagement:UserCapabilitiesManagement"
API_KEY = "oci:Identity/apiKey:ApiKey"
POLICY = "oci:Identity/policy:Policy"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SECRET = "github:index/actionsSecret:ActionsSecret"
VARIABLE = "github:index/actionsVariable:ActionsVariable"

ARGS = {
    DOMAINS_USER: oci.identity.DomainsUserArgs,
    DOMAINS_GROUP: oci.identity.DomainsGroupArgs,
    DOMAINS_APP: oci.identity.DomainsAppArgs,
    TRUST: oci.identity.DomainsIdentityPropagationTrustArgs,
    USER: oci.identity.UserArgs,
    GROUP: oci.identity.GroupArgs,
    MEMBERSHIP: oci.identity.UserGroupMembershipArgs,
    CAPABILITIES: oci.identity.UserCapabilitiesManagementArgs,
    API_KEY: oci.identity.ApiKeyArgs,
    POLICY: oci.identity.PolicyArgs,
    PRIVATE_KEY: tls.PrivateKeyArgs,
}
"""The SDK's input type of each resource the component registers."""
NESTED = {
    (DOMAINS_USER, "name"): oci.identity.DomainsUserNameArgs,
    (DOMAINS_USER, "urnietfparamsscimschemasoracleidcsextensionuserUser"): (
        oci.identity.DomainsUserUrnietfparamsscimschemasoracleidcsextensionuserUserArgs
    ),
    (DOMAINS_GROUP, "members"): oci.identity.DomainsGroupMemberArgs,
    (DOMAINS_APP, "basedOnTemplate"): oci.identity.DomainsAppBasedOnTemplateArgs,
    (TRUST, "impersonationServiceUsers"): oci.identity.DomainsIdentityPropagationTrustImpersonationServiceUserArgs,
}


def wire_names(args_type: type) -> set[str]:
    """The input names the SDK sends for a type (its getters' wire names)."""
    return {
        prop.fget._pulumi_name  # type: ignore[union-attr]
        for prop in vars(args_type).values()
        if isinstance(prop, property) and hasattr(prop.fget, "_pulumi_name")
    }


def required_names(args_type: type) -> set[str]:
    """Inputs the SDK's type requires, as wire names."""
    required = [p.name for p in inspect.signature(args_type.__init__).parameters.values() if p.default is p.empty]
    by_python = {name: prop.fget._pulumi_name for name, prop in vars(args_type).items() if isinstance(prop, property)}
    return {by_python[name] for name in required if name in by_python}


def check_against_sdk(resource: offline.Registered) -> None:
    """Every input is one the pulumi-oci (or pulumi-tls) type has, nested objects included, and
    every input the type requires is there."""
    args_type = ARGS[resource.type]
    inputs = {k: v for k, v in resource.inputs.items() if not k.startswith("__")}
    assert set(inputs) <= wire_names(args_type), (resource.name, set(inputs) - wire_names(args_type))
    assert required_names(args_type) <= set(inputs), (resource.name, required_names(args_type) - set(inputs))
    for (type_, key), nested in NESTED.items():
        if type_ == resource.type and key in inputs:
            values = resource.plain(key)
            for value in values if isinstance(values, list) else [values]:
                assert set(value) <= wire_names(nested), (resource.name, key, set(value) - wire_names(nested))
                assert required_names(nested) <= set(value), (resource.name, key)


def own(plan: offline.Plan, stack: str) -> list[offline.Registered]:
    component = plan.named(f"{stack}-deploy-access")
    assert component.type == COMPONENT
    return plan.children_of(component)


def domain_of(stack: str) -> str:
    return settings.merged_plain_config(stack)["oci"]["identityDomainUrl"]


def infra_ids(mocks: offline.OfflineMocks | None = None) -> tuple[int, int]:
    """The owner's and the infra repository's numeric ids, as the offline engine's GitHub answers them."""
    mocks = mocks or offline.OfflineMocks()
    owner = int(mocks.call_answers["github:index/getUser:getUser"]({"username": "DREAMSCAPE-AI"})["id"])
    repo = mocks.call_answers["github:index/getRepository:getRepository"](
        {"fullName": "DREAMSCAPE-AI/dreamscape-infra"}
    )
    return owner, int(repo["repoId"])


# --- workload identity (the default) -------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_workload_identity_registers_a_service_user_its_group_a_client_a_trust_and_a_policy(stack, plan_of) -> None:
    plan = plan_of(stack)
    children = own(plan, stack)
    assert sorted(r.type for r in children) == sorted([DOMAINS_USER, DOMAINS_GROUP, DOMAINS_APP, TRUST, POLICY])
    for resource in children:
        check_against_sdk(resource)
    assert plan.of_type(USER) == plan.of_type(API_KEY) == []
    url = domain_of(stack)
    user = only(plan, DOMAINS_USER)
    assert user.plain("idcsEndpoint") == url
    assert user.plain("schemas") == [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:oracle:idcs:extension:user:User",
    ]
    assert user.plain("userName") == f"dreamscape-deploy-{stack}"
    assert user.plain("urnietfparamsscimschemasoracleidcsextensionuserUser") == {"serviceUser": True}
    assert "password" not in user.inputs and "emails" not in user.inputs
    group = only(plan, DOMAINS_GROUP)
    assert group.plain("idcsEndpoint") == url
    assert group.plain("displayName") == f"dreamscape-deploy-{stack}"
    assert group.plain("members") == [{"type": "User", "value": user.id}]
    client = only(plan, DOMAINS_APP)
    assert {key: client.plain(key) for key in ("idcsEndpoint", "basedOnTemplate", "clientType", "isOauthClient")} == {
        "idcsEndpoint": url,
        "basedOnTemplate": {"value": "CustomWebAppTemplateId"},
        "clientType": "confidential",
        "isOauthClient": True,
    }
    assert client.plain("allowedGrants") == ["client_credentials"]
    assert client.plain("active") is True
    assert client.plain("schemas") == ["urn:ietf:params:scim:schemas:oracle:idcs:App"]
    # Nothing of the domain's own admin scopes: the client authenticates the exchange and that is all.
    assert "allowedScopes" not in client.inputs and "grantedAppRoles" not in client.inputs
    # The identity domain adds schema URNs on read: without this, every drift check would differ.
    for resource in (user, group, client, only(plan, TRUST)):
        assert resource.options["ignoreChanges"] == ["schemas"], resource.name


@pytest.mark.parametrize("stack", STACKS)
def test_the_trust_admits_only_the_infra_repositorys_deploy_job_of_its_environment(stack, plan_of) -> None:
    plan = plan_of(stack)
    trust, user, client = only(plan, TRUST), only(plan, DOMAINS_USER), only(plan, DOMAINS_APP)
    url = domain_of(stack)
    assert {
        key: trust.plain(key)
        for key in ("issuer", "publicKeyEndpoint", "type", "subjectType", "allowImpersonation", "active")
    } == {
        "issuer": "https://token.actions.githubusercontent.com",
        "publicKeyEndpoint": "https://token.actions.githubusercontent.com/.well-known/jwks",
        "type": "JWT",
        "subjectType": "User",
        "allowImpersonation": True,
        "active": True,
    }
    assert trust.plain("schemas") == ["urn:ietf:params:scim:schemas:oracle:idcs:IdentityPropagationTrust"]
    assert trust.plain("idcsEndpoint") == url
    # Tied to this environment's OAuth client (its name is its client id), and to tokens minted for
    # this domain: ci/oci.py asks GitHub for the domain's URL as the audience.
    assert trust.plain("oauthClients") == [client.outputs["name"]]
    assert (trust.plain("clientClaimName"), trust.plain("clientClaimValues")) == ("aud", [url])
    owner_id, repo_id = infra_ids()
    assert trust.plain("impersonationServiceUsers") == [
        {"rule": f"sub eq repo:DREAMSCAPE-AI/dreamscape-infra:environment:{stack}", "value": user.id},
        {
            "rule": f"sub eq repo:DREAMSCAPE-AI@{owner_id}/dreamscape-infra@{repo_id}:environment:{stack}",
            "value": user.id,
        },
    ]


def test_the_subject_is_spelt_as_github_spells_the_repository(run_with) -> None:
    """GitHub writes the owner and repository in the subject as they are named, not as the config
    happens to spell them; the trust compares the text."""
    mocks = offline.OfflineMocks()
    answer = mocks.call_answers["github:index/getRepository:getRepository"]
    mocks.call_answers["github:index/getRepository:getRepository"] = lambda a: {
        **answer(a),
        **({"fullName": "Dreamscape-AI/Dreamscape-Infra"} if a["fullName"].endswith("/dreamscape-infra") else {}),
    }
    plan = run_with("staging", mocks=mocks)
    rules = [r["rule"] for r in only(plan, TRUST).plain("impersonationServiceUsers")]
    owner_id, repo_id = infra_ids(mocks)
    assert rules == [
        "sub eq repo:Dreamscape-AI/Dreamscape-Infra:environment:staging",
        f"sub eq repo:Dreamscape-AI@{owner_id}/Dreamscape-Infra@{repo_id}:environment:staging",
    ]


def test_deploy_job_subjects() -> None:
    assert deploy_access.deploy_job_subjects("octo-org/octo-repo", 456789, 123456, "production") == (
        "repo:octo-org/octo-repo:environment:production",
        "repo:octo-org@123456/octo-repo@456789:environment:production",
    )
    assert deploy_access.deploy_job_subjects("octo-org/octo-repo", 456789, None, "dev") == (
        "repo:octo-org/octo-repo:environment:dev",
    )


def expected_policy(group: str, compartment: str, bastion: str, instance: str, ip: str) -> list[str]:
    """The deploy policy, written out: sessions on this bastion to this VM's SSH port; reading this
    instance, and the subnets and VCNs a session's creation reads."""
    where = "tenancy" if compartment.startswith("ocid1.tenancy.") else f"compartment id {compartment}"
    return [
        f"Allow group id {group} to use bastion in {where} where target.bastion.ocid = '{bastion}'",
        f"Allow group id {group} to manage bastion-session in {where} where ALL {{"
        f"target.bastion.ocid = '{bastion}', target.bastion-session.type = 'port_forwarding', "
        f"target.bastion-session.ip in ['{ip}/32'], target.bastion-session.port = '22'}}",
        f"Allow group id {group} to read instances in {where} where target.instance.id = '{instance}'",
        f"Allow group id {group} to read vcns in {where}",
        f"Allow group id {group} to read subnets in {where}",
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_the_policy_allows_sessions_on_this_bastion_to_this_vm_and_nothing_else(stack, plan_of) -> None:
    plan = plan_of(stack)
    policy = only(plan, POLICY)
    compartment = settings.merged_plain_config(stack)["oci"]["compartmentId"]
    assert policy.plain("compartmentId") == compartment
    assert policy.plain("name") == f"dreamscape-deploy-{stack}"
    instance = only(plan, "oci:Core/instance:Instance")
    statements = expected_policy(
        only(plan, DOMAINS_GROUP).outputs["ocid"],
        compartment,
        only(plan, "oci:Bastion/bastion:Bastion").id,
        instance.id,
        instance.outputs["privateIp"],
    )
    assert policy.plain("statements") == statements
    # The plan and the stack outputs show it as registered.
    assert plan.outputs["deployPolicy"] == statements
    assert plan.outputs["privateIp"] == instance.outputs["privateIp"] == f"10.{STACKS.index(stack) + 1}0.1.2"


def test_a_policy_in_the_root_compartment_says_tenancy(run_with, stack_config) -> None:
    tenancy = "ocid1.tenancy.oc1..aaaaaaaadreamscape"
    plan = run_with("dev", oci={**stack_config("dev")["oci"], "compartmentId": tenancy})
    statements = only(plan, POLICY).plain("statements")
    assert all(" in tenancy" in s and "compartment" not in s for s in statements)
    assert statements[0].endswith(f"in tenancy where target.bastion.ocid = '{plan.outputs['bastionId']}'")


@pytest.mark.parametrize("stack", STACKS)
def test_the_credential_is_the_clients_secret_and_stays_secret(stack, plan_of) -> None:
    plan = plan_of(stack)
    client = only(plan, DOMAINS_APP)
    assert "clientSecret" in client.options["additionalSecretOutputs"]
    assert offline.is_secret(client.outputs["clientSecret"])
    (secret,) = [r for r in plan.of_type(SECRET) if r.plain("secretName") == f"OCI_DEPLOY_CREDENTIAL_{stack.upper()}"]
    assert offline.is_secret(secret.inputs["value"])
    assert secret.plain("value") == offline._unwrap(client.outputs["clientSecret"])
    for name, value in plan.outputs.items():
        assert secret.plain("value") not in json.dumps(value), name


@pytest.mark.parametrize("stack", STACKS)
def test_the_variable_names_the_region_the_bastion_and_the_token_exchange(stack, plan_of) -> None:
    plan = plan_of(stack)
    (variable,) = [r for r in plan.of_type(VARIABLE) if r.plain("variableName") == f"DEPLOY_OCI_{stack.upper()}"]
    assert not offline.is_secret(variable.inputs["value"])
    expected = {
        "auth": "workloadIdentity",
        "bastionId": plan.outputs["bastionId"],
        "clientId": only(plan, DOMAINS_APP).outputs["name"],
        "domainUrl": domain_of(stack),
        "region": "eu-frankfurt-1",
    }
    # One JSON object, compact, keys sorted.
    assert variable.plain("value") == json.dumps(expected, sort_keys=True, separators=(",", ":"))
    access = ci.oci.access(variable.plain("value"), "DEPLOY_OCI")  # what the deploy client reads
    assert (access.auth, access.domain_url, access.client_id) == (
        "workloadIdentity",
        domain_of(stack),
        expected["clientId"],
    )


# --- the API key fallback --------------------------------------------------------------------


def api_key_stack(config: dict[str, Any], stack: str) -> dict[str, Any]:
    oci_ = {k: v for k, v in config["oci"].items() if k != "identityDomainUrl"}
    return {**config, "ociDeployAuth": "apiKey", "oci": {**oci_, "ciUserEmail": f"ci-{stack}@dreamscape.example"}}


@pytest.fixture
def api_key_plan(monkeypatch):
    """The program's plan of a stack in apiKey mode, its sibling stacks switched too."""
    real = settings.sibling_stacks

    def siblings(stack: str, project_dir: Path = settings.PROJECT_DIR) -> dict[str, dict[str, Any]]:
        return {name: api_key_stack(raw, name) for name, raw in real(stack, project_dir).items()}

    monkeypatch.setattr(settings, "sibling_stacks", siblings)

    def plan(stack: str, mocks: offline.OfflineMocks | None = None) -> offline.Plan:
        config = api_key_stack(settings.merged_plain_config(stack), stack)
        return plan_with(stack, mocks=mocks, ociDeployAuth="apiKey", oci=config["oci"])

    return plan


@pytest.mark.parametrize("stack", STACKS)
def test_api_key_mode_registers_a_ci_user_allowed_api_keys_only_its_group_a_key_and_the_policy(
    stack, api_key_plan
) -> None:
    plan = api_key_plan(stack)
    children = own(plan, stack)
    assert sorted(r.type for r in children) == sorted(
        [USER, CAPABILITIES, GROUP, MEMBERSHIP, PRIVATE_KEY, API_KEY, POLICY]
    )
    for resource in children:
        check_against_sdk(resource)
    assert plan.of_type(TRUST) == plan.of_type(DOMAINS_USER) == plan.of_type(DOMAINS_APP) == []
    user, group = only(plan, USER), only(plan, GROUP)
    assert (user.plain("name"), user.plain("email")) == (f"dreamscape-deploy-{stack}", f"ci-{stack}@dreamscape.example")
    # Users and groups live in the tenancy, which the provider fills in from its credential.
    assert "compartmentId" not in user.inputs and "compartmentId" not in group.inputs
    assert group.plain("name") == f"dreamscape-deploy-{stack}"
    capabilities = only(plan, CAPABILITIES)
    assert {k: capabilities.plain(k) for k in capabilities.inputs if not k.startswith("__")} == {
        "userId": user.id,
        "canUseApiKeys": True,
        "canUseAuthTokens": False,
        "canUseConsolePassword": False,
        "canUseCustomerSecretKeys": False,
        "canUseSmtpCredentials": False,
    }
    membership = only(plan, MEMBERSHIP)
    assert (membership.plain("userId"), membership.plain("groupId")) == (user.id, group.id)
    key = next(r for r in plan.of_type(PRIVATE_KEY) if r.name == f"{stack}-deploy-access-key")
    assert (key.plain("algorithm"), key.plain("rsaBits")) == ("RSA", 2048)
    api_key = only(plan, API_KEY)
    assert api_key.plain("userId") == user.id
    assert api_key.plain("keyValue") == key.outputs["publicKeyPem"]
    instance = only(plan, "oci:Core/instance:Instance")
    compartment = settings.merged_plain_config(stack)["oci"]["compartmentId"]
    assert only(plan, POLICY).plain("statements") == expected_policy(
        group.id, compartment, plan.outputs["bastionId"], instance.id, instance.outputs["privateIp"]
    )


@pytest.mark.parametrize("stack", ["dev", "production"])
def test_api_key_credential_and_variable_sign_as_the_ci_user(stack, api_key_plan) -> None:
    """The secret is the key's private half, the variable names the user, its tenancy and the
    fingerprint OCI computed of the uploaded half: with them the client's key id is complete."""
    plan = api_key_plan(stack)
    key = next(r for r in plan.of_type(PRIVATE_KEY) if r.name == f"{stack}-deploy-access-key")
    (secret,) = [r for r in plan.of_type(SECRET) if r.plain("secretName") == f"OCI_DEPLOY_CREDENTIAL_{stack.upper()}"]
    assert offline.is_secret(secret.inputs["value"])
    pem = secret.plain("value")
    assert pem == offline._unwrap(key.outputs["privateKeyPemPkcs8"])
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    private = serialization.load_pem_private_key(pem.encode(), password=None)
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    fingerprint = ":".join(f"{b:02x}" for b in hashlib.md5(der, usedforsecurity=False).digest())
    user = only(plan, USER)
    (variable,) = [r for r in plan.of_type(VARIABLE) if r.plain("variableName") == f"DEPLOY_OCI_{stack.upper()}"]
    expected = {
        "auth": "apiKey",
        "bastionId": plan.outputs["bastionId"],
        "fingerprint": fingerprint,
        "region": "eu-frankfurt-1",
        "tenancy": user.outputs["compartmentId"],
        "user": user.id,
    }
    assert variable.plain("value") == json.dumps(expected, sort_keys=True, separators=(",", ":"))
    assert only(plan, API_KEY).outputs["fingerprint"] == fingerprint
    assert user.outputs["compartmentId"].startswith("ocid1.tenancy.")
    access = ci.oci.access(variable.plain("value"), "DEPLOY_OCI")
    assert (access.auth, access.tenancy, access.user, access.fingerprint) == (
        "apiKey",
        expected["tenancy"],
        user.id,
        fingerprint,
    )


def test_api_key_mode_needs_the_ci_users_address(api_key_plan) -> None:
    """Identity domains refuse a user without a primary address unless told otherwise."""
    with pytest.raises(ConfigError, match=r"oci\.ciUserEmail: required with ociDeployAuth: apiKey"):
        oci_ = {k: v for k, v in settings.merged_plain_config("dev")["oci"].items() if k != "identityDomainUrl"}
        plan_with("dev", ociDeployAuth="apiKey", oci=oci_)


# --- the plan shows the policy, never a credential ---------------------------------------------


def test_the_plan_prints_each_statement_and_no_credential(tmp_path: Path, plan_of) -> None:
    (tmp_path / "project").mkdir()
    project = copy_project(tmp_path / "project")
    for stack in STACKS:
        path = project / f"Pulumi.{stack}.yaml"
        doc = yaml.safe_load(path.read_text())
        oci_ = doc["config"]["dreamscape-infra:oci"]
        del oci_["identityDomainUrl"]
        oci_["ciUserEmail"] = f"ci-{stack}@dreamscape.example"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    pulumi_yaml = project / "Pulumi.yaml"
    pulumi_yaml.write_text(pulumi_yaml.read_text().replace("ociDeployAuth: workloadIdentity", "ociDeployAuth: apiKey"))
    results = {
        "apiKey": plan_cli("--stack", "staging", "--json", str(tmp_path / "api.json"), cwd=project),
        "workloadIdentity": plan_cli("--stack", "staging", "--json", str(tmp_path / "wif.json")),
    }
    for mode, result in results.items():
        assert result.returncode == 0, (mode, result.stderr)
        printed = result.stdout.split("What the deploy job's OCI identity may do:\n", 1)[1]
        policy = printed.split("\n\nOCI usage", 1)[0].splitlines()
        assert policy[0].startswith("Policy dreamscape-deploy-staging (staging-deploy-access-policy), in ocid1.")
        statements = [line.strip() for line in policy[1:6]]
        assert [s.split(" to ", 1)[1].split(" in ", 1)[0] for s in statements] == [
            "use bastion",
            "manage bastion-session",
            "read instances",
            "read vcns",
            "read subnets",
        ]
        assert policy[6].startswith('DEPLOY_OCI_STAGING: {"auth":"' + mode + '",')
    # Neither credential appears anywhere the plan writes.
    wif = plan_of("staging")
    client_secret = offline._unwrap(only(wif, DOMAINS_APP).outputs["clientSecret"])
    api_plan_key = offline._throwaway_rsa("staging-deploy-access-key", 2048)["privateKeyPemPkcs8"]
    key_lines = [line for line in api_plan_key.splitlines() if not line.startswith("-----")]
    for mode, result in results.items():
        text = result.stdout + result.stderr + (tmp_path / ("api.json" if mode == "apiKey" else "wif.json")).read_text()
        assert client_secret not in text
        assert not any(line in text for line in key_lines), mode


# --- the offline engine refuses what OCI refuses ------------------------------------------------


def answer(answers: offline.IdentityAnswers, typ: str, resource: str, **inputs: Any) -> dict[str, Any]:
    """One registration as the engine hands it to the stand-in; the outputs recorded as the engine does."""
    outputs = {**inputs, **answers.resource_answers()[typ](pulumi_mocks.MockResourceArgs(typ, resource, inputs))}
    answers.mocks.created[outputs["id"]] = outputs
    return outputs


def test_a_domain_takes_one_trust_per_issuer() -> None:
    """Why each environment has an identity domain of its own: a second trust for GitHub's issuer is refused."""
    answers = offline.OfflineMocks().oci.identity
    url = "https://idcs-shared.identity.oraclecloud.com"
    for env in ("staging", "production"):
        user = answer(
            answers,
            DOMAINS_USER,
            f"{env}-user",
            idcsEndpoint=url,
            schemas=[deploy_access.USER_SCHEMA],
            userName=env,
            emails=[{"value": f"{env}@example.com", "primary": True}],
        )
        client = answer(
            answers,
            DOMAINS_APP,
            f"{env}-client",
            idcsEndpoint=url,
            schemas=[deploy_access.APP_SCHEMA],
            basedOnTemplate={"value": "CustomWebAppTemplateId"},
        )
        trust = {
            "idcsEndpoint": url,
            "schemas": [deploy_access.TRUST_SCHEMA],
            "name": f"github-{env}",
            "type": "JWT",
            "issuer": deploy_access.GITHUB_ISSUER,
            "oauthClients": [client["name"]],
            "allowImpersonation": True,
            "impersonationServiceUsers": [{"rule": f"sub eq repo:o/r:environment:{env}", "value": user["id"]}],
        }
        if env == "staging":
            answer(answers, TRUST, f"{env}-trust", **trust)
            # The same trust in another domain is another domain's business.
            other = "https://idcs-other.identity.oraclecloud.com"
            with pytest.raises(ValueError, match=r"oauthClients must name client ids of the domain's applications"):
                answer(answers, TRUST, "elsewhere", **{**trust, "idcsEndpoint": other})
        else:
            with pytest.raises(
                ValueError, match=r"409 a trust for issuer https://token\.actions\.githubusercontent\.com"
            ):
                answer(answers, TRUST, f"{env}-trust", **trust)


def test_a_classic_user_without_an_address_is_refused() -> None:
    """Identity domains require a primary e-mail address by default, from the classic API too."""
    answers = offline.OfflineMocks().oci.identity
    with pytest.raises(ValueError, match=r"The primary email must be specified"):
        answer(answers, USER, "ci", name="ci", description="CI user")
    assert answer(answers, USER, "ci", name="ci", description="CI user", email="ci@example.com")["compartmentId"] == (
        offline.IdentityAnswers.TENANCY
    )
