"""How the central pipeline's deploy job authenticates to OCI for one environment, and what it
may do there.

Each run the deploy job opens a port-forwarding session on the environment's bastion to the
VM's private address and port 22, reads it until it is active, SSHes through it and deletes it
(ci/oci.py). Its OCI identity comes from one of two modes (`ociDeployAuth`):

- `workloadIdentity` (the default): no long-lived OCI key exists. In the environment's identity
  domain, a service user (no password, no console, no keys of its own); an OAuth confidential
  application whose client credentials authenticate the token exchange and grant nothing else;
  and an identity propagation trust for GitHub's token issuer. The trust accepts a GitHub OIDC
  token only when its audience is the domain and its subject is the infra repository's job
  running in GitHub environment `<env>`, and then issues a session token (UPST, an hour at
  most) as the service user. The client secret (`OCI_DEPLOY_CREDENTIAL`) buys nothing alone:
  the exchange also needs that job's own token.
- `apiKey` (the fallback, for tenancies that cannot use the exchange): a dedicated CI user
  allowed API keys and nothing else, with one RSA key pair made by the program; its private
  key is the credential, valid until someone deletes the key.

Either way the user is alone in its group, and one policy grants that group what a session
needs on this bastion, to this VM's SSH port, and nothing else (`deploy_policy`).

An identity domain takes one trust per token issuer, so with workload identity each
environment has an identity domain of its own (settings checks it across the stack files).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_oci as oci
import pulumi_tls as tls

import ci.oci

WORKLOAD_IDENTITY = ci.oci.WORKLOAD_IDENTITY
API_KEY = ci.oci.API_KEY

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_JWKS = "https://token.actions.githubusercontent.com/.well-known/jwks"
"""GitHub's OIDC issuer and its signing keys (https://token.actions.githubusercontent.com/.well-known/openid-configuration)."""

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
USER_EXTENSION_SCHEMA = "urn:ietf:params:scim:schemas:oracle:idcs:extension:user:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
APP_SCHEMA = "urn:ietf:params:scim:schemas:oracle:idcs:App"
TRUST_SCHEMA = "urn:ietf:params:scim:schemas:oracle:idcs:IdentityPropagationTrust"
CONFIDENTIAL_APP_TEMPLATE = "CustomWebAppTemplateId"
"""The identity domain's template for a confidential application (an OAuth client with a secret)."""

SSH_PORT = 22
API_KEY_BITS = 2048
"""OCI takes RSA API signing keys in PEM, 2048 bits or more."""


@dataclass(frozen=True)
class DeployAccessArgs:
    environment: str
    mode: str
    """`workloadIdentity` or `apiKey`."""
    compartment_id: str
    """Where the bastion and the VM live; the policy is attached there."""
    region: str
    """Where the deploy job calls the Bastion API."""
    bastion_id: pulumi.Input[str] | None = None
    instance_id: pulumi.Input[str] | None = None
    vm_private_ip: pulumi.Input[str] | None = None
    """The one address sessions may forward to (port 22)."""
    release: pulumi.Input[Mapping[str, Any]] | None = None
    """Container instances instead of a VM: where a release goes and the load balancer it joins
    (container_platform.release_variable); None for a VM."""
    identity_domain_url: str | None = None
    """workloadIdentity: the domain of the service user, the OAuth client and the trust."""
    subjects: Sequence[str] = ()
    """workloadIdentity: each GitHub OIDC `sub` the trust maps onto the service user
    (`deploy_job_subjects`); nothing else is accepted."""
    ci_user_email: str | None = None
    """apiKey: the CI user's e-mail address (identity domains require one)."""
    freeform_tags: Mapping[str, str] = field(default_factory=dict)


def deploy_job_subjects(full_name: str, repo_id: int, owner_id: int | None, environment: str) -> tuple[str, ...]:
    """The `sub` claim GitHub gives a job of `full_name` (`OWNER/NAME`, spelt as GitHub reports it)
    that runs in GitHub environment `environment`, in GitHub's default subject format.

    GitHub writes names as the account and repository spell them, and the trust compares them as
    written. Repositories created or renamed since mid-2026 (and any that opted in) get the
    immutable format, each name followed by `@` and its numeric id, so that a recycled name never
    matches; both forms are listed when the owner's id is known. A customized subject template is
    not supported.
    """
    owner, _, name = full_name.partition("/")
    subjects = [f"repo:{owner}/{name}:environment:{environment}"]
    if owner_id is not None:
        subjects.append(f"repo:{owner}@{owner_id}/{name}@{repo_id}:environment:{environment}")
    return tuple(subjects)


def trust_rule(subject: str) -> str:
    """An impersonation rule matching exactly one subject."""
    return f"sub eq {subject}"


def location(compartment_id: str) -> str:
    """A policy's location clause: the root compartment is `tenancy`, any other one by OCID."""
    return "tenancy" if compartment_id.startswith("ocid1.tenancy.") else f"compartment id {compartment_id}"


def deploy_policy(
    group_id: str, compartment_id: str, bastion_id: str, instance_id: str, vm_private_ip: str
) -> list[str]:
    """The deploy identity's whole policy: sessions on this bastion, port forwarding to this VM's
    SSH port only, and what OCI reads to create such a session.

    Oracle's "Bastion IAM Policies" page (https://docs.oracle.com/iaas/Content/Bastion/Reference/bastionpolicyreference.htm)
    lists what each call needs: CreateSession `use bastion`, `manage bastion-session`, `read
    instances`, `read subnets` and `read vcns`; GetSession `read bastion-session`; DeleteSession
    `use bastion` and `manage bastion-session`. `target.bastion.ocid` names the bastion of a
    session call. The session's type, address and port are the conditions of Oracle's example for
    port-forwarding sessions in "Setting Up a Bastion for Cluster Access"
    (https://docs.oracle.com/iaas/Content/ContEng/Tasks/contengsettingupbastion.htm).
    `target.instance.id` narrows reading instances to this one. Subnets and VCNs are read in the
    environment's compartment: Oracle documents no variable naming one of them.
    """
    who = f"Allow group id {group_id}"
    where = location(compartment_id)
    session = (
        f"target.bastion.ocid = '{bastion_id}', target.bastion-session.type = 'port_forwarding', "
        f"target.bastion-session.ip in ['{vm_private_ip}/32'], target.bastion-session.port = '{SSH_PORT}'"
    )
    return [
        f"{who} to use bastion in {where} where target.bastion.ocid = '{bastion_id}'",
        f"{who} to manage bastion-session in {where} where ALL {{{session}}}",
        f"{who} to read instances in {where} where target.instance.id = '{instance_id}'",
        f"{who} to read vcns in {where}",
        f"{who} to read subnets in {where}",
    ]


def container_policy(group_id: str, compartment_id: str, load_balancer_id: str) -> list[str]:
    """The deploy identity's whole policy with container instances: make and delete them in the
    environment's compartment, with a VNIC in its subnet and NSG, and change the backends of its
    load balancer.

    Oracle's "Container Instances Policy Reference" lists what CreateContainerInstance needs
    (`manage compute-container-instances` with `compute-containers`, `use vnics`, `use subnets`),
    `use network-security-groups` is what attaching an NSG to a VNIC takes, and the Load
    Balancing reference puts CreateBackend, UpdateBackend and DeleteBackend under `use
    load-balancers`, narrowed here to this one by `target.loadbalancer.id`. Container instances
    are not narrowed further: the accessories' instances, in the same compartment, are within
    reach of this identity (docs/environment.md says so).
    """
    who = f"Allow group id {group_id}"
    where = location(compartment_id)
    return [
        f"{who} to manage compute-container-family in {where}",
        f"{who} to use vnics in {where}",
        f"{who} to use subnets in {where}",
        f"{who} to use network-security-groups in {where}",
        f"{who} to use load-balancers in {where} where target.loadbalancer.id = '{load_balancer_id}'",
    ]


def access_variable(region: str, bastion_id: str, auth: Mapping[str, str]) -> str:
    """`DEPLOY_OCI_<ENV>`: one JSON object, compact with sorted keys, that ci/oci.py reads."""
    return json.dumps({"region": region, "bastionId": bastion_id, **auth}, sort_keys=True, separators=(",", ":"))


def release_access_variable(region: str, release: Mapping[str, Any], auth: Mapping[str, str]) -> str:
    """`DEPLOY_OCI_<ENV>` with container instances: the region, the release's place and the
    identity, which ci/instances.py reads."""
    return json.dumps({"region": region, **release, **auth}, sort_keys=True, separators=(",", ":"))


class DeployAccess(pulumi.ComponentResource):
    credential: pulumi.Output[str]
    """Secret: `OCI_DEPLOY_CREDENTIAL`, the OAuth client secret or the CI user's private key (PKCS#8 PEM)."""
    variable: pulumi.Output[str]
    """`DEPLOY_OCI_<ENV>`: nothing secret in it."""
    policy_statements: pulumi.Output[list[str]]

    def __init__(self, name: str, args: DeployAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dreamscape:environment:DeployAccess", name, None, opts)
        display = f"dreamscape-deploy-{args.environment}"
        purpose = f"the {args.environment} deploy job of the central pipeline"

        if args.mode == WORKLOAD_IDENTITY:
            group_id, credential, auth = self._workload_identity(name, display, purpose, args)
        elif args.mode == API_KEY:
            group_id, credential, auth = self._api_key(name, display, purpose, args)
        else:
            raise ValueError(f"unknown OCI deploy auth mode {args.mode!r}")

        if args.release is not None:
            release = pulumi.Output.from_input(args.release)
            statements = pulumi.Output.all(group_id, release).apply(
                lambda v: container_policy(v[0], args.compartment_id, v[1]["loadBalancerId"])
            )
            description = f"Container instances and load balancer backends for {purpose}"
            self.variable = pulumi.Output.all(release, auth).apply(lambda v: release_access_variable(args.region, *v))
        else:
            statements = pulumi.Output.all(group_id, args.bastion_id, args.instance_id, args.vm_private_ip).apply(
                lambda v: deploy_policy(v[0], args.compartment_id, v[1], v[2], v[3])
            )
            description = f"Bastion sessions to the VM for {purpose}"
            self.variable = pulumi.Output.all(args.bastion_id, auth).apply(lambda v: access_variable(args.region, *v))
        oci.identity.Policy(
            f"{name}-policy",
            compartment_id=args.compartment_id,
            name=display,
            description=description,
            statements=statements,
            freeform_tags=dict(args.freeform_tags),
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.credential = pulumi.Output.secret(credential)
        self.policy_statements = statements
        self.register_outputs({"variable": self.variable, "policyStatements": self.policy_statements})

    def _workload_identity(
        self, name: str, display: str, purpose: str, args: DeployAccessArgs
    ) -> tuple[pulumi.Output[str], pulumi.Output[str], pulumi.Output[dict[str, str]]]:
        url = args.identity_domain_url
        if not url or not args.subjects:
            raise ValueError("workload identity needs the identity domain's URL and the deploy job's subjects")
        # The identity domain adds schema URNs of its own to what it returns: without this the
        # list as sent would differ from every refresh, and the nightly drift check would fail.
        child = pulumi.ResourceOptions(parent=self, ignore_changes=["schemas"])
        user = oci.identity.DomainsUser(
            f"{name}-service-user",
            idcs_endpoint=url,
            schemas=[USER_SCHEMA, USER_EXTENSION_SCHEMA],
            user_name=display,
            display_name=display,
            name={"family_name": display},
            description=f"Service user: {purpose}",
            urnietfparamsscimschemasoracleidcsextensionuser_user={"service_user": True},
            opts=child,
        )
        group = oci.identity.DomainsGroup(
            f"{name}-group",
            idcs_endpoint=url,
            schemas=[GROUP_SCHEMA],
            display_name=display,
            members=[{"type": "User", "value": user.id}],
            opts=child,
        )
        client = oci.identity.DomainsApp(
            f"{name}-client",
            idcs_endpoint=url,
            schemas=[APP_SCHEMA],
            based_on_template={"value": CONFIDENTIAL_APP_TEMPLATE},
            display_name=display,
            description=f"Token exchange client: {purpose}",
            active=True,
            is_oauth_client=True,
            client_type="confidential",
            allowed_grants=["client_credentials"],
            # The domain refuses to delete an active application; this deletes it anyway (after
            # the trust naming it is gone) instead of failing a destroy or a replacement.
            force_delete=True,
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(additional_secret_outputs=["clientSecret"])
            ),
        )
        oci.identity.DomainsIdentityPropagationTrust(
            f"{name}-trust",
            idcs_endpoint=url,
            schemas=[TRUST_SCHEMA],
            name=f"dreamscape-github-deploy-{args.environment}",
            description=f"GitHub tokens of {purpose}",
            type="JWT",
            issuer=GITHUB_ISSUER,
            public_key_endpoint=GITHUB_JWKS,
            # ci/oci.py asks GitHub for a token whose audience is this domain.
            client_claim_name="aud",
            client_claim_values=[url],
            oauth_clients=[client.name],
            subject_type="User",
            allow_impersonation=True,
            impersonation_service_users=[{"rule": trust_rule(s), "value": user.id} for s in args.subjects],
            active=True,
            opts=child,
        )
        auth = client.name.apply(lambda client_id: {"auth": WORKLOAD_IDENTITY, "domainUrl": url, "clientId": client_id})
        return group.ocid, client.client_secret, auth

    def _api_key(
        self, name: str, display: str, purpose: str, args: DeployAccessArgs
    ) -> tuple[pulumi.Output[str], pulumi.Output[str], pulumi.Output[dict[str, str]]]:
        if not args.ci_user_email:
            raise ValueError("an API key's CI user needs an e-mail address")
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.freeform_tags)
        # No compartment: users and groups live in the tenancy, which the provider fills in.
        user = oci.identity.User(
            f"{name}-user",
            name=display,
            description=f"CI user: {purpose}",
            email=args.ci_user_email,
            freeform_tags=tags,
            opts=child,
        )
        oci.identity.UserCapabilitiesManagement(
            f"{name}-capabilities",
            user_id=user.id,
            can_use_api_keys=True,
            can_use_auth_tokens=False,
            can_use_console_password=False,
            can_use_customer_secret_keys=False,
            can_use_smtp_credentials=False,
            opts=child,
        )
        group = oci.identity.Group(
            f"{name}-group", name=display, description=f"CI user's group: {purpose}", freeform_tags=tags, opts=child
        )
        oci.identity.UserGroupMembership(f"{name}-membership", group_id=group.id, user_id=user.id, opts=child)
        key = tls.PrivateKey(f"{name}-key", algorithm="RSA", rsa_bits=API_KEY_BITS, opts=child)
        api_key = oci.identity.ApiKey(f"{name}-api-key", user_id=user.id, key_value=key.public_key_pem, opts=child)
        auth = pulumi.Output.all(user.compartment_id, user.id, api_key.fingerprint).apply(
            lambda v: {"auth": API_KEY, "tenancy": v[0], "user": v[1], "fingerprint": v[2]}
        )
        return group.id, key.private_key_pem_pkcs8, auth
