"""repositoryRules: the rulesets that leave no unreviewed path to production, in the offline plan.

What each ruleset does against pushes is GitHub's business; here the plan must register exactly
the rules the docs promise, on every repository, and refuse a config that leaves production open.
"""

from __future__ import annotations

import pytest

from components import repository_rules, rules
from components.settings import ConfigError
from tools import offline

RULESET = "github:index/repositoryRuleset:RepositoryRuleset"
ADMIN = {"actorId": 5, "actorType": "RepositoryRole", "bypassMode": "always"}


def rulesets(plan: offline.Plan) -> dict[tuple[str, str], offline.Registered]:
    """(repository, ruleset name) -> the ruleset, for the review rules (the infra `-writes` ones aside)."""
    return {
        (r.plain("repository"), r.plain("name")): r
        for r in plan.of_type(RULESET)
        if not r.plain("name").endswith("-writes")
    }


def test_every_repository_gets_its_review_rules(plan_of, stack_config) -> None:
    mocks = offline.OfflineMocks()
    team = int(mocks.call_answers["github:index/getTeam:getTeam"]({"slug": "release-managers"})["id"])
    plan = plan_of("production")
    found = rulesets(plan)
    config = stack_config("production")
    expected = {(config["infraRepository"], "dreamscape-reviewed-default-branch")}
    for repo in config["sourceRepositories"]:
        expected.add((repo["name"], "dreamscape-reviewed-branches"))
        if repo.get("deployable"):
            expected.add((repo["name"], "dreamscape-production-branches"))
    assert set(found) == expected
    for (repository, name), ruleset in found.items():
        assert ruleset.plain("target") == "branch"
        assert ruleset.plain("enforcement") == "active"
        includes = ruleset.plain("conditions")["refName"]["includes"]
        on = ruleset.plain("rules")
        if name == "dreamscape-production-branches":
            assert includes == ["refs/heads/hotfix/**"]
            assert (on["creation"], on["update"], on["deletion"], on["nonFastForward"]) == (True, True, True, True)
            assert ruleset.plain("bypassActors") == [{"actorId": team, "actorType": "Team", "bypassMode": "always"}]
        else:
            assert includes == (
                ["~DEFAULT_BRANCH"]
                if repository == config["infraRepository"]
                else ["refs/heads/main", "refs/heads/develop"]
            )
            review = on["pullRequest"]
            assert review["requiredApprovingReviewCount"] == 1
            assert review["dismissStaleReviewsOnPush"] is True and review["requireLastPushApproval"] is True
            assert (on["nonFastForward"], on["deletion"]) == (True, True)
            assert ruleset.plain("bypassActors") == [ADMIN]


def test_the_production_patterns_follow_the_branch_table() -> None:
    """Every deploying production rule but main (reviewed) is covered, whatever the table holds."""
    production = [r.branch for r in rules.BRANCH_RULES if r.environment == "production" and r.deploy]
    assert "main" in production
    assert repository_rules.production_branch_patterns() == [
        "refs/heads/" + b.replace("*", "**") for b in production if b != "main"
    ]


def test_bypass_actors_of_every_kind(run_with) -> None:
    mocks = offline.OfflineMocks()
    plan = run_with(
        "production",
        mocks=mocks,
        repositoryRules={"productionPushers": ["user:octocat", "app:123456", "role:maintain"], "approvals": 2},
    )
    octocat = int(mocks.call_answers["github:index/getUser:getUser"]({"username": "octocat"})["id"])
    [services] = [r for (repo, name), r in rulesets(plan).items() if name == "dreamscape-production-branches"][:1]
    assert services.plain("bypassActors") == [
        {"actorId": octocat, "actorType": "User", "bypassMode": "always"},
        {"actorId": 123456, "actorType": "Integration", "bypassMode": "always"},
        {"actorId": 2, "actorType": "RepositoryRole", "bypassMode": "always"},
    ]
    reviewed = [r for (repo, name), r in rulesets(plan).items() if name != "dreamscape-production-branches"]
    assert {r.plain("rules")["pullRequest"]["requiredApprovingReviewCount"] for r in reviewed} == {2}


@pytest.mark.parametrize(
    ("rules_config", "message"),
    [
        ({"enabled": False}, r"repositoryRules\.enabled: false leaves every branch"),
        ({"approvals": 0}, r"repositoryRules\.approvals: 0 lets a pull request into main"),
        ({"productionPushers": ["role:write"]}, r"repositoryRules\.productionPushers\[0\]: expected role:admin"),
        ({"pulumiBypass": ["team:"]}, r"repositoryRules\.pulumiBypass\[0\]: expected"),
    ],
)
def test_an_open_path_to_production_is_refused(run_with, rules_config, message) -> None:
    with pytest.raises(ConfigError, match=message):
        run_with("production", repositoryRules=rules_config)


def test_the_opt_out_is_explicit_and_leaves_the_rules_out(run_with) -> None:
    plan = run_with("production", repositoryRules={"enabled": False, "allowUnreviewedProduction": True})
    assert rulesets(plan) == {}
    # The infra repository's ref-write rulesets (infraRuleset) stay: they guard the pipeline's own code.
    assert sorted(r.plain("name") for r in plan.of_type(RULESET)) == [
        "dreamscape-branch-writes",
        "dreamscape-tag-writes",
    ]
    unreviewed = run_with("production", repositoryRules={"approvals": 0, "allowUnreviewedProduction": True})
    counts = {
        r.plain("rules")["pullRequest"]["requiredApprovingReviewCount"]
        for r in rulesets(unreviewed).values()
        if "pullRequest" in r.plain("rules")
    }
    assert counts == {0}


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_only_the_wiring_stack_registers_rules(plan_of, stack) -> None:
    assert rulesets(plan_of(stack)) == {}
