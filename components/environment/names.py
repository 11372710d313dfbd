"""What each environment stack publishes in the infra repository, by name, for the pipeline to read.

The environment's GitHub side writes these; the central pipeline reads them. Both take the
names from here, so the two cannot drift apart.
"""

from __future__ import annotations

LAYOUTS = ("repository", "environment")
"""`repository`: secrets of the infra repository, one set per environment (every GitHub plan);
`environment`: secrets of GitHub environment `<env>`, visible only to jobs that run in it."""

SECRETS = ("VM_HOST", "SSH_PRIVATE_KEY", "SSH_KNOWN_HOSTS", "OCI_DEPLOY_CREDENTIAL", "APP_SECRETS")
"""VM_HOST is the VM's private address (the deploy reaches it through the environment's bastion);
OCI_DEPLOY_CREDENTIAL is what the deploy job signs its OCI calls with: the OAuth client secret of
the workload identity federation, or the CI user's API private key (see `oci_variable`);
APP_SECRETS is the environment's secrets for its containers, `{NAME: value}` as JSON
(components/environment/app_secrets.py), which the deploy sends to the VM on stdin."""


CONTAINER_SECRETS = ("OCI_DEPLOY_CREDENTIAL", "APP_SECRETS")
"""The deploy secrets of an environment on container instances: no VM, no SSH, no host key."""


def secret_names(environment: str, layout: str) -> dict[str, str]:
    """Each deploy secret's name in the chosen layout."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown deploy secret layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    suffix = f"_{environment.upper()}" if layout == "repository" else ""
    return {name: name + suffix for name in SECRETS}


def platform_variable(environment: str) -> str:
    """The repository variable holding the environment's Docker platform (`linux/arm64`)."""
    return f"DEPLOY_PLATFORM_{environment.upper()}"


def url_variable(environment: str) -> str:
    """The repository variable holding the environment's URL."""
    return f"DEPLOY_URL_{environment.upper()}"


def oci_variable(environment: str) -> str:
    """The repository variable holding, as one JSON object, how the deploy job reaches the
    environment's bastion: `region`, `bastionId`, `auth` (`workloadIdentity`: `domainUrl`,
    `clientId`; `apiKey`: `tenancy`, `user`, `fingerprint`). Nothing in it is secret."""
    return f"DEPLOY_OCI_{environment.upper()}"
