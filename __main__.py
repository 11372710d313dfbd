"""Composition root: settings, then one component per concern, then the stack outputs."""

import pulumi
import pulumi_github as github

from components import settings as settings_module
from components import wiring
from components.environment import compose
from components.workflows import central

settings = settings_module.load()

# Every stack writes to GitHub under githubOwner; the token comes from GITHUB_TOKEN.
github_provider = github.Provider("github", owner=settings.github_owner)

workflow_files: list[str] = []
if settings.owns_wiring and settings.dispatch_token is not None:
    shared_wiring = wiring.SharedWiring(
        "wiring",
        wiring.SharedWiringArgs(
            owner=settings.github_owner,
            infra_repository=settings.infra_repository,
            source_repositories=settings.source_repositories,
            dispatch_token=settings.dispatch_token,
            dispatch_token_scope=settings.dispatch_token_scope,
            commit=settings.commit,
            infra_files={central.PATH: central.render(central.CentralArgs.from_settings(settings))},
        ),
        opts=pulumi.ResourceOptions(providers=[github_provider]),
    )
    workflow_files = shared_wiring.workflow_files
    pulumi.export("githubTokenNeeds", list(shared_wiring.required_token_permissions))

# The environment's compose file, next to the central pipeline that deploys with it.
compose_file = None
if compose.has_services(settings.source_repositories):
    compose_file = compose.ComposeFile(
        "compose",
        compose.ComposeFileArgs(
            owner=settings.github_owner,
            infra_repository=settings.infra_repository,
            environment=settings.environment,
            source_repositories=settings.source_repositories,
            commit=settings.commit,
        ),
        opts=pulumi.ResourceOptions(providers=[github_provider]),
    )

pulumi.export("environment", settings.environment)
pulumi.export("ownsWiring", settings.owns_wiring)
pulumi.export("workflowFiles", workflow_files)
pulumi.export("composeFile", compose_file.location if compose_file else None)
