"""The environment as the infra repository's pipeline sees it.

- the GitHub environment `<env>` the deploy job runs in: only runs on the infra repository's
  default branch may deploy (every `repository_dispatch` run is on that branch, whatever the
  source branch was, and `resolve` has already checked the source branch against the rules),
  so a workflow edited on another infra branch cannot reach the environment; its reviewers
  and wait timer come from `protection`;
- the deploy secrets, in one of two layouts: `repository` (the seed's names,
  `VM_HOST_<ENV>`, `SSH_PRIVATE_KEY_<ENV>`, `SSH_KNOWN_HOSTS_<ENV>`,
  `OCI_DEPLOY_CREDENTIAL_<ENV>`, `APP_SECRETS_<ENV>`, any GitHub plan) or `environment` (the same without the
  suffix, secrets of environment `<env>`, readable only by jobs that run in it). The host is
  the VM's private address, reached through the environment's bastion, and the known-hosts
  line pins the host key under it;
- repository variables the pipeline reads about this environment: `DEPLOY_PLATFORM_<ENV>`
  (the Docker platform its images are built for), `DEPLOY_URL_<ENV>` and `DEPLOY_OCI_<ENV>`
  (how the deploy job reaches the bastion, nothing secret).

It knows nothing of OCI: the host, keys, credential and variable values arrive as inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_github as github

from components.environment import keys, names


@dataclass(frozen=True)
class GithubSideArgs:
    environment: str
    repository: str
    """The infra repository's name (the provider's owner is the organization)."""
    deploy_branch: str
    """The infra repository's default branch: the only one whose runs may deploy."""
    layout: str
    host: pulumi.Input[str] | None
    """The address the deploy job's SSH reaches the VM at (its private address, through the
    bastion); None with container instances (then no SSH secret at all)."""
    ci_private_key_openssh: pulumi.Input[str] | None
    """Secret."""
    host_public_key_openssh: pulumi.Input[str] | None
    platform: str
    url: pulumi.Input[str]
    oci_credential: pulumi.Input[str]
    """Secret: what the deploy job signs its OCI calls with (`OCI_DEPLOY_CREDENTIAL`)."""
    oci_access: pulumi.Input[str]
    """`DEPLOY_OCI_<ENV>`'s JSON: the region, the bastion and the deploy identity, nothing secret."""
    app_secrets: pulumi.Input[str] = "{}"
    """Secret: the environment's secrets for its containers as one JSON object (`APP_SECRETS`)."""
    reviewers: Sequence[str] = ()
    """User logins and `org/team` slugs."""
    wait_timer: int = 0


def required_token_permissions(layout: str, reviewers: Sequence[str]) -> tuple[str, ...]:
    """What the credential `pulumi up` runs the GitHub provider with needs, for this side."""
    secrets = "Environments, Secrets" if layout == "environment" else "Secrets"
    needs = [
        "repo (classic) / Administration: read and write (fine-grained): the environment and its branch policy",
        f"repo (classic) / {secrets}: read and write (fine-grained): the deploy secrets",
        "repo (classic) / Variables: read and write (fine-grained): DEPLOY_PLATFORM_<ENV>, DEPLOY_URL_<ENV>, "
        "DEPLOY_OCI_<ENV>",
        "repo (classic) / Contents: read and write (fine-grained): the environment's compose file",
    ]
    if any("/" in r for r in reviewers):
        needs.append("read:org (classic) / organization Members: read (fine-grained): team reviewers")
    return tuple(needs)


class GithubSide(pulumi.ComponentResource):
    environment_name: pulumi.Output[str]

    def __init__(self, name: str, args: GithubSideArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dreamscape:environment:GithubSide", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)

        users = [r for r in args.reviewers if "/" not in r]
        teams = [r.split("/", 1)[1] for r in args.reviewers if "/" in r]
        reviewers = None
        if users or teams:
            reviewers = [
                {
                    "users": [github.get_user_output(username=u, opts=invoke).id.apply(int) for u in users],
                    "teams": [github.get_team_output(slug=t, opts=invoke).id.apply(int) for t in teams],
                }
            ]
        environment = github.RepositoryEnvironment(
            f"{name}-environment",
            repository=args.repository,
            environment=args.environment,
            wait_timer=args.wait_timer,
            reviewers=reviewers,
            # Only the branches named by custom policies below may deploy.
            deployment_branch_policy={"protected_branches": False, "custom_branch_policies": True},
            opts=child,
        )
        self.deploy_branch = args.deploy_branch
        github.RepositoryEnvironmentDeploymentPolicy(
            f"{name}-branch-policy",
            repository=args.repository,
            environment=environment.environment,
            branch_pattern=self.deploy_branch,
            opts=child,
        )

        values = {
            "OCI_DEPLOY_CREDENTIAL": pulumi.Output.secret(args.oci_credential),
            "APP_SECRETS": pulumi.Output.secret(args.app_secrets),
        }
        if args.host is not None:
            host = pulumi.Output.from_input(args.host)
            values |= {
                "VM_HOST": host,
                "SSH_PRIVATE_KEY": pulumi.Output.secret(args.ci_private_key_openssh),
                "SSH_KNOWN_HOSTS": pulumi.Output.all(host, args.host_public_key_openssh).apply(
                    lambda v: keys.known_hosts_line(v[0], v[1]) + "\n"
                ),
            }
        for secret, secret_name in names.secret_names(args.environment, args.layout).items():
            if secret not in values:
                continue
            suffix = secret.lower().replace("_", "-")
            if args.layout == "repository":
                github.ActionsSecret(
                    f"{name}-{suffix}",
                    repository=args.repository,
                    secret_name=secret_name,
                    value=values[secret],
                    opts=child,
                )
            else:
                github.ActionsEnvironmentSecret(
                    f"{name}-{suffix}",
                    repository=args.repository,
                    environment=environment.environment,
                    secret_name=secret_name,
                    value=values[secret],
                    opts=child,
                )

        variables = {
            "platform": (names.platform_variable(args.environment), args.platform),
            "url": (names.url_variable(args.environment), args.url),
            "oci": (names.oci_variable(args.environment), args.oci_access),
        }
        for suffix, (variable_name, value) in variables.items():
            github.ActionsVariable(
                f"{name}-{suffix}", repository=args.repository, variable_name=variable_name, value=value, opts=child
            )

        self.required_token_permissions = required_token_permissions(args.layout, args.reviewers)
        self.environment_name = environment.environment
        self.register_outputs({"environment": self.environment_name})
