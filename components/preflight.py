"""What must hold on GitHub before the program registers anything, looked up first.

The provider answers a repository or a branch it cannot find (missing, renamed, or outside
the token's access) with an empty result, not an error, and a `RepositoryFile` on a missing
branch fails only when `pulumi up` writes it, half-way through an update. So `__main__.py`
calls `look_up` before any resource exists, and a problem stops the run (preview included)
with one line naming what to check:
- the infra repository, whose default branch receives the central pipeline and compose files,
  and which holds the deploy secrets;
- on the stack that owns the wiring: every source repository, and its `main` and `develop`
  branches, where the trigger goes. A missing branch is refused, naming each one and how to
  create it, unless `createMissingBranches` is set: then the trigger's own write creates it
  from the repository's default branch, and the plan and the stack outputs list it (not with
  `fileDelivery: pullRequest`: a pull request needs its base branch);
- with an organization-wide DISPATCH_TOKEN: that the owner is an organization whose plan
  gives organization secrets to every repository involved;
- with `actionsSettings` and a repository that is not public: the organization's plan, which
  decides whether GitHub offers that repository an allowed-actions list;
- with `ociDeployAuth: workloadIdentity`: the infra repository's name as GitHub spells it and
  the owner's numeric id, which the subject of the deploy job's OIDC token is made of.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_github as github

import ci.oci
from components import delivery
from components.settings import PROJECT, ConfigError, Settings
from components.workflows import trigger


@dataclass(frozen=True)
class Repository:
    name: str
    repo_id: int
    default_branch: str
    visibility: str
    """`public`, `private` or `internal`."""
    full_name: str = ""
    """`OWNER/NAME` as GitHub spells them, whatever the case of the config."""


@dataclass(frozen=True)
class GithubFacts:
    infra: Repository
    sources: Mapping[str, Repository]
    """By name; filled on the stack that owns the wiring only."""
    branches_to_create: tuple[str, ...] = ()
    """`REPO@BRANCH` of each trigger branch this run creates (with `createMissingBranches`)."""
    owner_plan: str | None = None
    """The organization's GitHub plan (`free`, `team`, `enterprise`), read when the Actions settings
    need it for a repository that is not public; None: not read, a user account, or not shown."""
    owner_id: int | None = None
    """`githubOwner`'s numeric account id, read with `ociDeployAuth: workloadIdentity`."""

    def allows_action_allowlist(self, repository: Repository) -> bool:
        """GitHub offers an allowed-actions list for public repositories on every plan, and for
        private and internal ones with GitHub Enterprise only."""
        return repository.visibility == "public" or (self.owner_plan or "").lower() == "enterprise"


def look_up(settings: Settings, opts: pulumi.InvokeOptions) -> GithubFacts:
    """Every GitHub fact the program's resources depend on, or a ConfigError naming what is wrong."""
    owner = settings.github_owner
    infra = repository(owner, settings.infra_repository, "infraRepository", opts)
    owner_id = account_id(owner, opts) if settings.oci_deploy_auth == ci.oci.WORKLOAD_IDENTITY else None
    if not settings.owns_wiring:
        return GithubFacts(infra=infra, sources={}, owner_id=owner_id)
    sources = {
        repo.name: repository(owner, repo.name, f"sourceRepositories[{i}].name", opts)
        for i, repo in enumerate(settings.source_repositories)
    }
    missing = [
        f"{name}@{branch}"
        for name, found in sources.items()
        for branch in trigger.BRANCHES
        if not branch_exists(name, branch, opts)
    ]
    if missing and not settings.create_missing_branches:
        raise ConfigError(
            f"{PROJECT}:sourceRepositories: the trigger goes on {' and '.join(trigger.BRANCHES)} of every source "
            f"repository, and {owner} has no {', '.join(missing)}; create each from the default branch "
            "(git push origin HEAD:refs/heads/<branch>) or set createMissingBranches: true to have "
            "`pulumi up` create them"
        )
    if missing and settings.file_delivery == delivery.PULL_REQUEST:
        raise ConfigError(
            f"{PROJECT}:createMissingBranches: with fileDelivery: pullRequest each trigger is proposed in a "
            f"pull request into its branch, and {owner} has no {', '.join(missing)}: a pull request needs its "
            "base branch; create each from the default branch (git push origin HEAD:refs/heads/<branch>)"
        )
    owner_plan = None
    if settings.dispatch_token_scope == "organization":  # noqa: S105 - a scope, not a secret
        owner_plan = _check_organization(owner, list(sources.values()), opts)
    elif settings.actions_settings and any(r.visibility != "public" for r in (infra, *sources.values())):
        owner_plan = organization_plan(owner, opts)
    return GithubFacts(
        infra=infra, sources=sources, branches_to_create=tuple(missing), owner_plan=owner_plan, owner_id=owner_id
    )


def organization_plan(owner: str, opts: pulumi.InvokeOptions) -> str | None:
    """The owner's plan name, or None for a user account (GitHub answers 404) or when not shown."""
    try:
        return github.get_organization(name=owner, summary_only=True, opts=opts).plan or None
    except Exception:  # the provider reports GitHub's 404 as a failed invoke
        return None


def warnings(facts: GithubFacts, settings: Settings | None = None) -> list[str]:
    """What the user should know before applying, though nothing stops the run."""
    found = []
    protected = settings is not None and bool(settings.protection.reviewers or settings.protection.wait_timer)
    enterprise = (facts.owner_plan or "").lower() == "enterprise"
    if settings is not None and protected and facts.infra.visibility != "public" and not enterprise:
        found.append(
            f"the {settings.environment} environment names reviewers or a wait timer, and the infra repository "
            f"{facts.infra.name} is {facts.infra.visibility}: GitHub enforces them there with GitHub "
            "Enterprise only (on Free, Pro and Team, on public repositories only), so without it the "
            "deploys of this environment are not held for a review"
        )
    private = [name for name, repo in facts.sources.items() if repo.visibility != "public"]
    if facts.infra.visibility == "public" and private:
        found.append(
            f"the infra repository {facts.infra.name} is public and builds private repositories "
            f"({', '.join(private)}): anyone can read its runs' logs and download their artifacts (test reports, "
            "and for a day the source and image archives handed between jobs); make it private, or keep "
            "sourceRepositories[].artifacts to reports that reveal nothing"
        )
    return found


def repository(owner: str, name: str, key: str, opts: pulumi.InvokeOptions) -> Repository:
    """The repository as the provider's token sees it; an empty answer is a ConfigError on `key`."""
    found = github.get_repository(full_name=f"{owner}/{name}", opts=opts)
    if not found.repo_id or not found.default_branch:
        raise ConfigError(
            f"{PROJECT}:{key}: GitHub shows no repository {owner}/{name} to the provider's token; check "
            "the name and githubOwner, that the repository exists, and that the token can read it "
            "(a fine-grained token lists the repositories it may access)"
        )
    return Repository(
        name,
        int(found.repo_id),
        found.default_branch,
        found.visibility or "private",
        found.full_name or f"{owner}/{name}",
    )


def account_id(login: str, opts: pulumi.InvokeOptions) -> int:
    """A user's or an organization's numeric id (GitHub's /users/<login> answers for both)."""
    try:
        found = github.get_user(username=login, opts=opts).id
    except Exception as error:  # the provider reports GitHub's 404 as a failed invoke
        found, reason = "", f": {error}"
    else:
        reason = ""
    if not str(found).isdigit():
        raise ConfigError(
            f"{PROJECT}:githubOwner: GitHub shows no account {login!r} to the provider's token{reason}; the "
            "deploy job's OIDC subject names its id"
        )
    return int(found)


def branch_exists(repository_name: str, branch: str, opts: pulumi.InvokeOptions) -> bool:
    """Whether the branch exists; the provider answers a missing one with an empty sha."""
    return bool(github.get_branch(repository=repository_name, branch=branch, opts=opts).sha)


def _check_organization(owner: str, repositories: list[Repository], opts: pulumi.InvokeOptions) -> str | None:
    """An organization secret needs an organization, and GitHub Free gives them to public repositories only.

    The organization secret is DISPATCH_TOKEN, for the source repositories; the infra repository
    holds PIPELINE_TOKEN as a repository secret whatever the scope.
    """
    try:
        organization = github.get_organization(name=owner, summary_only=True, opts=opts)
    except Exception as error:  # the provider reports GitHub's 404 as a failed invoke
        raise ConfigError(
            f"{PROJECT}:dispatchTokenScope: 'organization' needs githubOwner {owner!r} to be a GitHub "
            "organization, and GitHub has none by that name (a user account has no organization "
            "secrets; or the provider's token cannot see it). Use dispatchTokenScope: repository. "
            f"GitHub said: {error}"
        ) from None
    private = [r.name for r in repositories if r.visibility != "public"]
    if (organization.plan or "").lower() == "free" and private:
        raise ConfigError(
            f"{PROJECT}:dispatchTokenScope: organization secrets are not available to private repositories "
            f"on GitHub Free, and {owner} is on the free plan ({', '.join(private)} are not public); "
            "use dispatchTokenScope: repository"
        )
    return organization.plan or None
