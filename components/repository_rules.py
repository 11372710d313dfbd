"""The rulesets that leave no unreviewed path to production (config `repositoryRules`).

On every source repository:
- `dreamscape-reviewed-branches`: `main` and `develop` take changes through pull requests with
  `approvals` approving reviews (stale approvals dismissed, the last push approved by someone
  else), and cannot be force-pushed or deleted. `pulumiBypass` (the identity `pulumi up` runs
  with) commits the trigger files past it.
- `dreamscape-production-branches` (deployable repositories): the other branches that deploy
  to production (`hotfix/*`, from the branch table in rules.py) may be created, updated or
  deleted by `productionPushers` only; everyone else still pushes `feature/*` freely.
On the infra repository, `dreamscape-reviewed-default-branch`: pull requests into the default
branch, `pulumiBypass` alone committing the files the program writes there.

A bypass actor is `role:admin` or `role:maintain` (a repository role), `team:<slug>` (a team of
githubOwner, looked up), `user:<login>` (looked up) or `app:<id>` (a GitHub App's id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_github as github

from components import rules
from components.settings import RepositoryRules

ROLE_IDS = {"admin": 5, "maintain": 2}
"""GitHub's ids of the repository roles a ruleset can exempt (write is 4: never exempted)."""

REVIEWED_BRANCHES = ("main", "develop")


def production_branch_patterns() -> list[str]:
    """The ref patterns of every branch rule that deploys to production, but `main` (which is reviewed)."""
    patterns = []
    for rule in rules.BRANCH_RULES:
        if rule.environment == "production" and rule.deploy and rule.branch not in REVIEWED_BRANCHES:
            # `hotfix/*` -> `refs/heads/hotfix/**`: deeper names too (the table refuses them, the ruleset also holds).
            patterns.append("refs/heads/" + rule.branch.replace("*", "**"))
    return patterns


def bypass_actors(actors: Sequence[str], opts: pulumi.InvokeOptions | None = None) -> list[dict[str, Any]]:
    """Ruleset bypass actors from their config spelling; teams and users are looked up by name."""
    found: list[dict[str, Any]] = []
    for actor in actors:
        kind, _, value = actor.partition(":")
        if kind == "role":
            found.append({"actor_id": ROLE_IDS[value], "actor_type": "RepositoryRole", "bypass_mode": "always"})
        elif kind == "team":
            team_id = github.get_team_output(slug=value, opts=opts).id.apply(int)
            found.append({"actor_id": team_id, "actor_type": "Team", "bypass_mode": "always"})
        elif kind == "user":
            user_id = github.get_user_output(username=value, opts=opts).id.apply(int)
            found.append({"actor_id": user_id, "actor_type": "User", "bypass_mode": "always"})
        elif kind == "app":
            found.append({"actor_id": int(value), "actor_type": "Integration", "bypass_mode": "always"})
        else:
            raise ValueError(f"unknown bypass actor {actor!r}")
    return found


def _ruleset(
    name: str,
    repository: str,
    ruleset: str,
    includes: list[str],
    rules_: dict[str, Any],
    bypass: list[dict[str, Any]],
    parent: pulumi.Resource,
) -> github.RepositoryRuleset:
    return github.RepositoryRuleset(
        name,
        repository=repository,
        name=ruleset,
        target="branch",
        enforcement="active",
        conditions={"ref_name": {"includes": includes, "excludes": []}},
        rules=rules_,
        bypass_actors=bypass,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _pull_requests(config: RepositoryRules) -> dict[str, Any]:
    return {
        "required_approving_review_count": config.approvals,
        "dismiss_stale_reviews_on_push": True,
        "require_last_push_approval": config.approvals > 0,
        "require_code_owner_review": False,
        "required_review_thread_resolution": False,
    }


@dataclass(frozen=True)
class Bypass:
    """The bypass lists, looked up once for every repository."""

    pulumi: list[dict[str, Any]]
    production: list[dict[str, Any]]

    @classmethod
    def of(cls, config: RepositoryRules, opts: pulumi.InvokeOptions | None) -> Bypass:
        return cls(bypass_actors(config.pulumi_bypass, opts), bypass_actors(config.production_pushers, opts))


def source_rulesets(
    name: str,
    repository: str,
    deployable: bool,
    config: RepositoryRules,
    bypass: Bypass,
    parent: pulumi.Resource,
) -> list[github.RepositoryRuleset]:
    """A source repository's rulesets (module docstring); one that never deploys needs no production rule."""
    rulesets = [
        _ruleset(
            f"{name}-reviewed-branches",
            repository,
            "dreamscape-reviewed-branches",
            [f"refs/heads/{branch}" for branch in REVIEWED_BRANCHES],
            {"pull_request": _pull_requests(config), "non_fast_forward": True, "deletion": True},
            bypass.pulumi,
            parent,
        )
    ]
    if deployable:
        rulesets.append(
            _ruleset(
                f"{name}-production-branches",
                repository,
                "dreamscape-production-branches",
                production_branch_patterns(),
                {"creation": True, "update": True, "deletion": True, "non_fast_forward": True},
                bypass.production,
                parent,
            )
        )
    return rulesets


def infra_ruleset(
    name: str, repository: str, config: RepositoryRules, bypass: Bypass, parent: pulumi.Resource
) -> github.RepositoryRuleset:
    """The infra repository's default branch: reviewed pull requests, the program's identity excepted."""
    return _ruleset(
        f"{name}-infra-reviewed-default-branch",
        repository,
        "dreamscape-reviewed-default-branch",
        ["~DEFAULT_BRANCH"],
        {"pull_request": _pull_requests(config), "non_fast_forward": True, "deletion": True},
        bypass.pulumi,
        parent,
    )
