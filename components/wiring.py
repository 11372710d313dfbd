"""The shared wiring: what connects the source repositories to the central pipeline.

Registered by exactly one stack (`wiringStack`). For each source repository, a child
component named after it (so its URNs do not move when the list is reordered) writes the
trigger workflow on every long-lived branch (a push runs the workflow file from its own tree),
with that repository's central repository, event type and components rendered into it.
`DISPATCH_TOKEN`, which may only start the pipeline, goes either into each source repository
(`repository` scope) or into one organization secret limited to them (`organization` scope);
`PIPELINE_TOKEN`, which reads the sources and posts their statuses, goes into the infra
repository alone (components/workflows/credentials.py). With `githubAuth: app` the two Apps'
private keys take their places, under their own secret names, and the workflows mint a token
per run. With `repositoryRules`, each source repository also gets its review ruleset, and a
deployable one its production-branch ruleset (components/repository_rules.py); with
`actionsSettings` (the default) every wired repository, the infra repository included, also
gets its Actions settings: a read-only workflow token that cannot approve pull requests, SHA
pinning required, and only the actions its rendered workflows use allowed where GitHub offers
that list. So each added source repository costs seven GitHub resources with `repository`
scope (six for one that does not deploy) and six (five) with `organization` scope: each is a
write on the first `pulumi up`, and the provider spaces writes about a second apart. Files for
the infra repository's default branch (the central pipeline) come in through
`SharedWiringArgs.infra_files`.

With `fileDelivery: pullRequest` each file goes on the program's branch for its target
branch instead, and one pull request per repository and target branch proposes it
(components/delivery.py): each source repository's component owns the proposals for its
`main` and `develop`; the infra repository's proposal comes in as `infra_proposal`, shared
with the stack's compose file.

What GitHub must already hold (repositories, branches, the organization) is looked up before
anything is registered (components/preflight.py); this component takes those facts as input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_github as github

from components import delivery, repository_rules
from components.preflight import GithubFacts
from components.settings import Commit, RepositoryRules, SourceRepository
from components.workflows import actions, credentials, trigger

RULESET_BYPASS_ROLES = {"admin": 5, "maintain": 2}
"""Repository roles that may write refs of the infra repository (GitHub's ids; write is 4)."""

WORKFLOW_DIRECTORY = ".github/workflows/"

REPOSITORY_SCOPE = "repository"
ORGANIZATION_SCOPE = "organization"


@dataclass(frozen=True)
class SharedWiringArgs:
    owner: str
    """The GitHub user or organization that owns every repository below."""
    infra_repository: str
    """Where the central pipeline runs; the trigger sends its dispatch events there."""
    source_repositories: tuple[SourceRepository, ...]
    dispatch_token: pulumi.Output[str]
    """Secret, for the source repositories: may create dispatch events on the infra repository
    (in app mode, the dispatch App's private key)."""
    pipeline_token: pulumi.Output[str]
    """Secret, for the infra repository: reads the source repositories, posts their statuses
    (in app mode, the pipeline App's private key)."""
    dispatch_token_scope: str
    """`repository`: one secret per repository; `organization`: one organization secret."""
    commit: Commit
    """Message and author of the commits that write workflow files."""
    github: GithubFacts
    """The repositories as GitHub has them (components/preflight.py)."""
    create_missing_branches: bool = False
    """Trigger files create a missing branch from the repository's default branch."""
    infra_ruleset: bool = True
    """Rulesets on the infra repository that keep DISPATCH_TOKEN's identity from writing any ref."""
    infra_files: Mapping[str, str] = field(default_factory=dict)
    """Path -> content, written on the infra repository's default branch (the central pipeline)."""
    auth: credentials.Auth = credentials.TOKENS
    """Tokens, or GitHub Apps: which secrets are written, and what the trigger renders."""
    repository_rules: RepositoryRules | None = None
    """The rulesets of components/repository_rules.py; None: none."""
    actions_settings: bool = True
    """Each repository's Actions settings (workflow token, allowed actions, SHA pinning)."""
    infra_workflows: Mapping[str, str] = field(default_factory=dict)
    """Name -> content of workflows the infra repository runs that are not written here (this
    project's preview, apply and drift): their actions are allowed there too."""
    file_delivery: str = delivery.DIRECT
    """`direct`, or `pullRequest`: files go on the program's branches, proposed in pull requests."""
    stack: str = ""
    """The stack that writes the wiring, named in its pull requests."""
    infra_proposal: delivery.Proposal | None = None
    """With `pullRequest`: the proposal the infra files join (the caller opens it)."""


@dataclass(frozen=True)
class SourceRepositoryWiringArgs:
    repository: SourceRepository
    central_repository: str
    """`OWNER/NAME` of the infra repository, where the trigger sends its dispatch events."""
    commit: Commit
    dispatch_token: pulumi.Output[str] | None
    """Set with `repository` scope: the repository gets its own DISPATCH_TOKEN secret."""
    create_branches_from: str | None = None
    """A branch to create a missing trigger branch from (the default branch); None: they must exist."""
    auth: credentials.Auth = credentials.TOKENS
    repository_rules: RepositoryRules | None = None
    bypass: repository_rules.Bypass | None = None
    """The rulesets' bypass actors, looked up once by the shared wiring."""
    actions_settings: bool = True
    allowlist_available: bool = False
    """GitHub offers this repository an allowed-actions list (GithubFacts.allows_action_allowlist)."""
    file_delivery: str = delivery.DIRECT
    stack: str = ""
    owner: str = ""
    """The repository's owner, for the pull requests' references in the stack output."""


def required_token_permissions(
    scope: str, auth: credentials.Auth = credentials.TOKENS, actions_settings: bool = False
) -> tuple[str, ...]:
    """What the credential `pulumi up` runs the GitHub provider with needs, for the wiring."""
    needs = [
        "workflow (classic) / Workflows: read and write (fine-grained): write .github/workflows/*",
        "repo (classic) / Contents, Secrets: read and write (fine-grained): files, repository secrets",
    ]
    if scope == ORGANIZATION_SCOPE:
        needs.append(
            f"admin:org (classic) / organization Secrets: read and write (fine-grained): the {auth.dispatch.secret}"
        )
    needs.append(
        "repo (classic) / Administration: read and write (fine-grained): the rulesets of the infra repository"
        " and (repositoryRules) of every source repository"
    )
    if actions_settings:
        needs.append(
            "repo (classic) / Administration: read and write (fine-grained): every wired repository's Actions "
            "settings (workflow token permissions, allowed actions, SHA pinning)"
        )
    needs += [
        f"{c.secret} ({c.config_key}), for {c.lives_in}: {c.permissions}; if stolen: {c.if_stolen}"
        for c in auth.credentials
    ]
    return tuple(needs)


class SourceRepositoryWiring(pulumi.ComponentResource):
    """One source repository: its trigger files, and its secret with `repository` scope."""

    def __init__(self, name: str, args: SourceRepositoryWiringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("dreamscape:wiring:SourceRepository", name, None, opts)
        repo = args.repository.name
        content = trigger.render(
            args.central_repository, args.repository.event_type, args.repository.component_names, args.auth
        )
        self.proposals: list[delivery.Proposal] = []
        self.files: list[github.RepositoryFile] = []
        self.workflow_files: list[str] = []
        for branch in trigger.BRANCHES:
            proposal = None
            if args.file_delivery == delivery.PULL_REQUEST:
                proposal = delivery.Proposal(
                    f"{name}-{branch}",
                    delivery.ProposalArgs(repo, branch, delivery.program_branch(branch), args.stack, args.owner),
                    opts=pulumi.ResourceOptions(parent=self),
                )
                self.proposals.append(proposal)
            self.files.append(
                delivery.repository_file(
                    f"{name}-trigger-{branch}",
                    repo,
                    branch,
                    trigger.PATH,
                    content,
                    args.commit,
                    self,
                    create_branch_from=args.create_branches_from,
                    proposal=proposal,
                )
            )
            self.workflow_files.append(f"{repo}@{delivery.written_branch(branch, proposal)}:{trigger.PATH}")
        for proposal in self.proposals:
            proposal.open()
        self.secret: github.ActionsSecret | None = None
        if args.dispatch_token is not None:
            self.secret = _repository_secret(
                f"{name}-dispatch-token", repo, args.dispatch_token, self, secret_name=args.auth.dispatch.secret
            )
        self.rulesets: list[github.RepositoryRuleset] = []
        if args.repository_rules is not None:
            assert args.bypass is not None
            self.rulesets = repository_rules.source_rulesets(
                name, repo, args.repository.deployable, args.repository_rules, args.bypass, self
            )
        self.actions_settings = (
            _actions_settings(name, repo, [content], args.allowlist_available, self) if args.actions_settings else []
        )
        self.register_outputs({"workflowFiles": self.workflow_files})


class SharedWiring(pulumi.ComponentResource):
    """Trigger workflows in every source repository, DISPATCH_TOKEN, and the infra repository's files."""

    def __init__(self, name: str, args: SharedWiringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("dreamscape:wiring:SharedWiring", name, None, opts)
        if args.dispatch_token_scope not in (REPOSITORY_SCOPE, ORGANIZATION_SCOPE):
            raise ValueError(f"unknown dispatch token scope {args.dispatch_token_scope!r}")
        if args.file_delivery not in delivery.MODES:
            raise ValueError(f"unknown file delivery {args.file_delivery!r}")
        if (args.file_delivery == delivery.PULL_REQUEST) != (args.infra_proposal is not None) and args.infra_files:
            raise ValueError("infra_proposal goes with fileDelivery: pullRequest, and only with it")
        per_repository = args.dispatch_token_scope == REPOSITORY_SCOPE
        bypass = None
        if args.repository_rules is not None:
            bypass = repository_rules.Bypass.of(args.repository_rules, pulumi.InvokeOptions(parent=self))
        self.repositories = [
            SourceRepositoryWiring(
                f"{name}-{repo.name}",
                SourceRepositoryWiringArgs(
                    repository=repo,
                    central_repository=f"{args.owner}/{args.infra_repository}",
                    commit=args.commit,
                    dispatch_token=args.dispatch_token if per_repository else None,
                    create_branches_from=(
                        args.github.sources[repo.name].default_branch if args.create_missing_branches else None
                    ),
                    auth=args.auth,
                    repository_rules=args.repository_rules,
                    bypass=bypass,
                    actions_settings=args.actions_settings,
                    allowlist_available=args.github.allows_action_allowlist(args.github.sources[repo.name]),
                    file_delivery=args.file_delivery,
                    stack=args.stack,
                    owner=args.owner,
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for repo in args.source_repositories
        ]
        self.proposals = [p for repo in self.repositories for p in repo.proposals]

        self.organization_secret: github.ActionsOrganizationSecret | None = None
        if not per_repository:
            self.organization_secret = self._organization_secret(name, args)
        self.infra_secret = _repository_secret(
            f"{name}-infra-pipeline-token",
            args.infra_repository,
            args.pipeline_token,
            self,
            secret_name=args.auth.pipeline.secret,
        )

        self.infra_rulesets = self._infra_rulesets(name, args) if args.infra_ruleset else []
        if args.repository_rules is not None:
            self.infra_rulesets.append(
                repository_rules.infra_ruleset(name, args.infra_repository, args.repository_rules, bypass, self)
            )
        self.infra_files: list[github.RepositoryFile] = []
        self.workflow_files: list[str] = [path for repo in self.repositories for path in repo.workflow_files]
        if args.infra_files:
            self._write_infra_files(name, args)
        self.infra_actions_settings: list[pulumi.CustomResource] = []
        if args.actions_settings:
            workflows = [content for path, content in args.infra_files.items() if path.startswith(WORKFLOW_DIRECTORY)]
            self.infra_actions_settings = _actions_settings(
                f"{name}-infra",
                args.infra_repository,
                [*workflows, *args.infra_workflows.values()],
                args.github.allows_action_allowlist(args.github.infra),
                self,
            )
        self.required_token_permissions = required_token_permissions(
            args.dispatch_token_scope, args.auth, args.actions_settings
        )
        if args.file_delivery == delivery.PULL_REQUEST:
            self.required_token_permissions += delivery.required_token_permissions()
        self.register_outputs({"workflowFiles": self.workflow_files})

    def _organization_secret(self, name: str, args: SharedWiringArgs) -> github.ActionsOrganizationSecret:
        """One organization secret, visible to the source repositories only (the infra repository needs none)."""
        found = [args.github.sources[repo.name] for repo in args.source_repositories]
        return github.ActionsOrganizationSecret(
            f"{name}-dispatch-token",
            secret_name=args.auth.dispatch.secret,
            visibility="selected",
            selected_repository_ids=[r.repo_id for r in found],
            value=args.dispatch_token,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _infra_rulesets(self, name: str, args: SharedWiringArgs) -> list[github.RepositoryRuleset]:
        """No branch or tag of the infra repository is created, moved or deleted but by its admins
        and maintainers (RepositoryRole ids 5 and 2 in GitHub's API).

        DISPATCH_TOKEN needs Contents: write on the infra repository to dispatch, which would also
        let it push a branch there and run that branch's workflows: its identity must hold the
        Write role (id 4) only, which these rulesets do not exempt. The identity `pulumi up` runs
        with writes the pipeline's files, so it must be an admin or maintainer.
        """
        return [
            github.RepositoryRuleset(
                f"{name}-infra-{target}-writes",
                repository=args.infra_repository,
                name=f"dreamscape-{target}-writes",
                target=target,
                enforcement="active",
                conditions={"ref_name": {"includes": ["~ALL"], "excludes": []}},
                rules={"creation": True, "update": True, "deletion": True},
                bypass_actors=[
                    {"actor_id": role, "actor_type": "RepositoryRole", "bypass_mode": "always"}
                    for role in RULESET_BYPASS_ROLES.values()
                ],
                opts=pulumi.ResourceOptions(parent=self),
            )
            for target in ("branch", "tag")
        ]

    def _write_infra_files(self, name: str, args: SharedWiringArgs) -> None:
        """Files on the infra repository's default branch: the place for the central pipeline."""
        branch = args.github.infra.default_branch
        for path, content in args.infra_files.items():
            suffix = "".join(c if c.isalnum() else "-" for c in path.lower()).strip("-")
            file = delivery.repository_file(
                f"{name}-infra-{suffix}",
                args.infra_repository,
                branch,
                path,
                content,
                args.commit,
                self,
                proposal=args.infra_proposal,
            )
            self.infra_files.append(file)
            self.workflow_files.append(
                f"{args.infra_repository}@{delivery.written_branch(branch, args.infra_proposal)}:{path}"
            )


def _repository_secret(
    name: str,
    repository: str,
    token: pulumi.Output[str],
    parent: pulumi.Resource,
    secret_name: str = trigger.SECRET,
) -> github.ActionsSecret:
    return github.ActionsSecret(
        name,
        repository=repository,
        secret_name=secret_name,
        value=token,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _actions_settings(
    name: str, repository: str, workflows: list[str], allowlist_available: bool, parent: pulumi.Resource
) -> list[pulumi.CustomResource]:
    """A repository's Actions settings, for the workflows this program gives it.

    The workflow token is read-only unless a workflow asks for more (every rendered job names
    its permissions) and may not approve pull requests, so no run can approve its own change.
    Every action must be pinned to a full commit SHA. Where GitHub offers an allowed-actions
    list (GithubFacts.allows_action_allowlist), only the exact commits the workflows use may
    run (with the repository owner's own actions, which GitHub always admits): a pattern with a
    commit, not `@*`, so a commit from a fork of an allowed action, reachable through the same
    repository name, cannot run either. Elsewhere any action may run, pinned.
    """
    opts = pulumi.ResourceOptions(parent=parent)
    token = github.WorkflowRepositoryPermissions(
        f"{name}-workflow-permissions",
        repository=repository,
        default_workflow_permissions="read",
        can_approve_pull_request_reviews=False,
        opts=opts,
    )
    selected: dict = {"allowed_actions": "all"}
    if allowlist_available:
        selected = {
            "allowed_actions": "selected",
            "allowed_actions_config": github.ActionsRepositoryPermissionsAllowedActionsConfigArgs(
                github_owned_allowed=False,
                verified_allowed=False,
                patterns_alloweds=list(actions.allowlist(workflows)),
            ),
        }
    allowed = github.ActionsRepositoryPermissions(
        f"{name}-actions-permissions",
        repository=repository,
        enabled=True,
        sha_pinning_required=True,
        **selected,
        opts=opts,
    )
    return [token, allowed]
