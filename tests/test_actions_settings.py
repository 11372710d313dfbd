"""Actions settings of every wired repository: the workflow token, the allowed actions, SHA pinning.

The allowed actions are checked against the `uses:` read back from the exact files the plan
writes (and this repository's own workflows), so a workflow that gains an action its
repository's list lacks fails here.
"""

from __future__ import annotations

import re

import pytest
import yaml

from components.settings import ConfigError
from components.workflows import actions
from tests.conftest import ROOT
from tests.test_github_apps import APP_CONFIG, SECRETS
from tools import offline

FILE = "github:index/repositoryFile:RepositoryFile"
WORKFLOW_PERMISSIONS = "github:index/workflowRepositoryPermissions:WorkflowRepositoryPermissions"
ACTIONS_PERMISSIONS = "github:index/actionsRepositoryPermissions:ActionsRepositoryPermissions"
SOURCES = ("dreamscape-services", "dreamscape-frontend", "dreamscape-tests", "dreamscape-docs")
INFRA = "dreamscape-infra"
OWNER = "DREAMSCAPE-AI"
TRIVY = "aquasecurity/trivy-action@ed142fd0673e97e23eac54620cfb913e5ce36c25"
TRIVY_STEPS = {
    # Read from trivy-action v0.36.0's action.yaml and setup-trivy v0.2.6's action.yaml.
    "aquasecurity/setup-trivy@3fb12ec12f41e471780db15c232d5dd185dcb514",
    "actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae",
    "actions/cache@9255dc7a253b0ccc959486e2bca901246202afeb",
    "actions/checkout@8e8c483db84b4bee98b60c0593521ed34d9990e8",
}


def _parent(repository: str) -> str:
    return "wiring" if repository == INFRA else f"wiring-{repository}"


def _settings(plan: offline.Plan) -> dict[str, tuple[offline.Registered, offline.Registered]]:
    """Repository -> (its workflow permissions, its actions permissions), each exactly one."""
    out = {}
    for repository in (*SOURCES, INFRA):
        prefix = "wiring-infra" if repository == INFRA else f"wiring-{repository}"
        token = plan.named(f"{prefix}-workflow-permissions")
        allowed = plan.named(f"{prefix}-actions-permissions")
        assert (token.type, allowed.type) == (WORKFLOW_PERMISSIONS, ACTIONS_PERMISSIONS)
        assert token.parent_name == allowed.parent_name == _parent(repository)
        out[repository] = (token, allowed)
    assert len(plan.of_type(WORKFLOW_PERMISSIONS)) == len(plan.of_type(ACTIONS_PERMISSIONS)) == 5
    return out


def _uses(texts: list[str]) -> set[str]:
    """Every `uses:` of these workflows' jobs and steps, as written."""
    found = set()
    for text in texts:
        for job in yaml.safe_load(text)["jobs"].values():
            found |= {step["uses"] for step in [job, *job.get("steps", [])] if "uses" in step}
    return found


def _workflows_written_to(plan: offline.Plan, repository: str) -> list[str]:
    return [
        r.plain("content")
        for r in plan.of_type(FILE)
        if r.plain("repository") == repository and r.plain("file").startswith(".github/workflows/")
    ]


def _expected_patterns(plan: offline.Plan, repository: str) -> list[str]:
    texts = _workflows_written_to(plan, repository)
    if repository == INFRA:
        texts += [p.read_text() for p in sorted((ROOT / ".github" / "workflows").glob("*.yml"))]
    used = _uses(texts)
    if TRIVY in used:
        used |= TRIVY_STEPS
    return sorted(re.sub(r"^([^/]+/[^/@]+)[^@]*@", r"\1@", u) for u in used)


def _public(mocks: offline.OfflineMocks) -> offline.OfflineMocks:
    mocks.public_repositories |= {f"{OWNER}/{name}" for name in (*SOURCES, INFRA)}
    return mocks


# --- what every repository gets ----------------------------------------------------------------


def test_every_wired_repository_gets_a_read_only_token_that_cannot_approve(plan_of):
    for repository, (token, _) in _settings(plan_of("production")).items():
        assert token.inputs == {
            "repository": repository,
            "defaultWorkflowPermissions": "read",
            "canApprovePullRequestReviews": False,
        }


def test_private_repositories_on_team_require_pinning_but_get_no_allowlist(plan_of):
    """The shipped repositories are private and the organization is on Team: GitHub offers no
    allowed-actions list there, so any action may run, pinned to a commit."""
    for repository, (_, allowed) in _settings(plan_of("production")).items():
        assert allowed.inputs == {
            "repository": repository,
            "enabled": True,
            "shaPinningRequired": True,
            "allowedActions": "all",
        }


@pytest.mark.parametrize("setup", ["public", "enterprise"])
def test_where_github_offers_it_only_the_workflows_actions_are_allowed(run_with, setup):
    mocks = offline.OfflineMocks()
    if setup == "public":
        _public(mocks)
    else:
        mocks.organization_plan = "enterprise"
    plan = run_with("production", mocks=mocks)
    for repository, (_, allowed) in _settings(plan).items():
        assert allowed.inputs == {
            "repository": repository,
            "enabled": True,
            "shaPinningRequired": True,
            "allowedActions": "selected",
            "allowedActionsConfig": {
                "githubOwnedAllowed": False,
                "verifiedAllowed": False,
                "patternsAlloweds": _expected_patterns(plan, repository),
            },
        }, repository
    infra = _settings(plan)[INFRA][1].plain("allowedActionsConfig")["patternsAlloweds"]
    # The central pipeline's and this project's actions, and what trivy-action runs itself.
    assert {p.split("@")[0] for p in infra} == {
        "actions/checkout",
        "actions/setup-python",
        "actions/upload-artifact",
        "actions/download-artifact",
        "actions/cache",
        "aquasecurity/trivy-action",
        "aquasecurity/setup-trivy",
        "docker/setup-qemu-action",
        "docker/login-action",
        "pulumi/actions",
    }
    # Token mode: the trigger runs no action at all.
    for repository in SOURCES:
        assert _settings(plan)[repository][1].plain("allowedActionsConfig")["patternsAlloweds"] == []


def test_app_mode_allows_the_token_action_in_the_source_repositories(run_with):
    plan = run_with("production", secret=SECRETS, mocks=_public(offline.OfflineMocks()), **APP_CONFIG)
    for repository, (_, allowed) in _settings(plan).items():
        patterns = allowed.plain("allowedActionsConfig")["patternsAlloweds"]
        assert patterns == _expected_patterns(plan, repository), repository
        assert f"actions/create-github-app-token@{actions.PINNED['actions/create-github-app-token'].commit}" in (
            patterns
        )


def test_every_pattern_names_one_commit():
    """SHA pinning is required, and a pattern with `@*` would admit any commit of a fork too."""
    workflows = [p.read_text() for p in (ROOT / ".github" / "workflows").glob("*.yml")]
    workflows += [p.read_text() for p in (ROOT / "tests" / "golden").rglob(".github/workflows/*.yml")]
    patterns = actions.allowlist(workflows)
    assert patterns and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", p) for p in patterns)


def test_a_workflow_with_an_unpinned_action_is_refused():
    text = "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v4\n"
    with pytest.raises(ValueError, match=r"actions/checkout@v4: not pinned to a full commit SHA"):
        actions.allowlist([text])


def test_the_composite_action_table_follows_the_pinned_commits():
    """A bump of trivy-action without a new row would leave its own steps off every list."""
    trivy = actions.PINNED["aquasecurity/trivy-action"]
    assert f"{trivy.repository}@{trivy.commit}" == TRIVY
    assert {re.sub(r"^([^/]+/[^/@]+)[^@]*@", r"\1@", u) for u in actions.COMPOSITE_STEPS[TRIVY]} == TRIVY_STEPS
    pinned = {f"{a.repository}@{a.commit}" for a in actions.PINNED.values()}
    assert set(actions.COMPOSITE_STEPS) <= pinned


# --- the credential, the opt-out, the other stacks ----------------------------------------------


def test_the_plan_names_the_permission_the_settings_need(plan_of, run_with):
    needs = plan_of("production").outputs["githubTokenNeeds"]
    assert any(
        n.startswith("repo (classic) / Administration: read and write") and "Actions settings" in n for n in needs
    )
    off = run_with("production", actionsSettings=False).outputs["githubTokenNeeds"]
    assert not any("Actions settings" in n for n in off)


def test_actions_settings_false_registers_none_and_reads_no_plan(run_with):
    mocks = offline.OfflineMocks()
    plan = run_with("production", mocks=mocks, actionsSettings=False)
    assert plan.of_type(WORKFLOW_PERMISSIONS) == [] and plan.of_type(ACTIONS_PERMISSIONS) == []
    assert [c for c in mocks.calls if c[0].endswith("getOrganization")] == []
    assert len(plan.of_type(FILE)) == 11  # the wiring is otherwise unchanged


def test_a_user_account_gets_the_settings_without_an_allowlist(run_with):
    mocks = offline.OfflineMocks()
    mocks.user_accounts.add(OWNER)
    for _, allowed in _settings(run_with("production", mocks=mocks)).values():
        assert allowed.plain("allowedActions") == "all"


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_stacks_that_do_not_own_the_wiring_register_none(plan_of, stack):
    plan = plan_of(stack)
    assert plan.of_type(WORKFLOW_PERMISSIONS) == [] and plan.of_type(ACTIONS_PERMISSIONS) == []


@pytest.mark.parametrize("value", ["yes", 1])
def test_a_bad_value_names_the_key(run_with, value):
    with pytest.raises(ConfigError, match=r"dreamscape-infra:actionsSettings: expected true or false, got"):
        run_with("production", actionsSettings=value)
