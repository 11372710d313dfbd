"""The central pipeline's decisions, called in-process: which request a payload makes (and
whether it deploys), which refusal names its first problem, and whether the deploy job deploys
the commit it was given. The workflow tests (test_central_resolve.py, test_central_tiers.py)
run the same code as a step on the local GitHub API; these pin each decision as a literal and
let `make mutation` see which test covers which line (it cannot follow a step's process)."""

from __future__ import annotations

import json

import pytest

from ci import config, deploy_gate, github, resolve
from tests.central_support import DISPATCH_TOKEN, settings_of, stand_in
from tests.harness.github_api import Reply

SHA = "0123456789abcdef0123456789abcdef01234567"
HEAD = "89abcdef0123456789abcdef0123456789abcdef"
SERVICES = config.Repository(
    name="Acme/acme-services",
    event_type="services-push",
    deployable=True,
    components=("auth-service", "user-service"),
    build="make",
    test="make test",
)
DOCS = config.Repository(
    name="Acme/acme-docs",
    event_type="docs-push",
    deployable=False,
    components=("site",),
    build="make",
    test="make test",
)
CONFIG = config.Config(
    repositories=(SERVICES, DOCS),
    registry="ghcr.io/acme",
    runner="ubuntu-24.04",
    scan_severity="CRITICAL,HIGH",
    arm_runner_label=None,
    deploy=config.Deploy(lock_wait_seconds=300, wait_timeout_seconds=180, keep_releases=5),
)


PUSH = "repository_dispatch"


def payload(**changes: object) -> str:
    base = {
        "source_repo": "Acme/acme-services",
        "ref": "refs/heads/main",
        "sha": SHA,
        "component": "auth-service",
        "environment": "production",
    }
    return json.dumps({**base, **changes})


def check(raw: str, event: str = "repository_dispatch", event_type: str = "services-push"):
    target = resolve.Target()
    try:
        return resolve.check(event, event_type, raw, CONFIG, target), target
    except resolve.RefusedError as error:
        return str(error), target


@pytest.mark.parametrize(
    ("changes", "event", "environment", "deploy"),
    [
        ({}, "repository_dispatch", "production", True),
        ({"ref": "refs/heads/develop", "environment": "staging"}, "repository_dispatch", "staging", True),
        ({"ref": "refs/heads/feature/x", "environment": "dev"}, "repository_dispatch", "dev", False),
        ({"ref": "refs/heads/feature/x", "environment": "dev"}, "workflow_dispatch", "dev", True),
        ({"ref": "refs/heads/hotfix/x"}, "repository_dispatch", "production", True),
        ({"source_repo": "Acme/acme-docs", "component": "site"}, "repository_dispatch", "production", False),
        ({"source_repo": "Acme/acme-docs", "component": "site"}, "workflow_dispatch", "production", False),
    ],
)
def test_each_accepted_request_and_whether_it_deploys(changes, event, environment, deploy) -> None:
    event_type = "docs-push" if changes.get("source_repo") == "Acme/acme-docs" else "services-push"
    request, _ = check(payload(**changes), event, event_type)
    assert isinstance(request, resolve.Request), request
    assert (request.environment, request.deploy) == (environment, deploy)
    assert request.sha == SHA
    assert request.ref == changes.get("ref", "refs/heads/main")


def test_a_request_names_the_configured_spelling_and_each_component_once() -> None:
    request, target = check(payload(source_repo="acme/ACME-services", component="user-service,auth-service"))
    assert request.repository == "Acme/acme-services"
    assert request.components == ("user-service", "auth-service")
    assert (target.repository, target.sha) == ("Acme/acme-services", SHA)
    assert resolve.outputs(request) == {
        "environment": "production",
        "deploy": "true",
        "components": '["user-service","auth-service"]',
        "source_repo": "Acme/acme-services",
        "ref": "refs/heads/main",
        "sha": SHA,
    }
    assert resolve.plan_text(request) == "Build, test and scan user-service,auth-service, then deploy to production"
    request, _ = check(payload(ref="refs/heads/feature/x", environment="dev"))
    assert resolve.outputs(request)["deploy"] == "false"
    assert resolve.plan_text(request) == "Build, test and scan auth-service (dev, no deploy)"


@pytest.mark.parametrize(
    ("raw", "event", "refusal", "reported"),
    [
        (payload(), "push", "this pipeline runs on repository_dispatch or workflow_dispatch only", False),
        ("{", PUSH, "the payload is not JSON", False),
        ("[1]", PUSH, "the payload is not a JSON object", False),
        (
            json.dumps({**json.loads(payload()), **{f"k{i}": "v" for i in range(6)}}),
            PUSH,
            "the payload has 11 keys; the contract has 5 and GitHub allows 10",
            True,
        ),
        (
            json.dumps({**json.loads(payload()), **{f"k{i}": "v" for i in range(5)}}),
            PUSH,
            "the payload has 5 key(s) outside the contract (source_repo, ref, sha, component, environment)",
            True,
        ),
        (payload(ref=""), PUSH, "ref is missing, empty, or not a string of printable ASCII", True),
        (payload(ref="refs/heads/ma\nin"), PUSH, "ref is missing, empty, or not a string of", True),
        (payload(ref="refs/heads/mаin"), PUSH, "ref is missing, empty, or not a string of", True),
        (payload(ref=["refs/heads/main"]), PUSH, "ref is missing, empty, or not a string of", True),
        (payload(ref="refs/heads/main\x7f"), PUSH, "ref is missing, empty, or not a string of", True),
        (payload(ref="refs/heads/main\x80"), PUSH, "ref is missing, empty, or not a string of", True),
        (payload(ref="refs/heads/ma in"), PUSH, "ref refs/heads/ma?in is refused: ", True),
        (payload(ref=" refs/heads/main"), PUSH, "ref ?refs/heads/main is refused: ", True),
        (payload(source_repo="Acme/other"), PUSH, "source_repo Acme/other is not a configured", False),
        (payload(sha=SHA.upper()), PUSH, f"sha {SHA.upper()} is not 40 lowercase hexadecimal", False),
        (payload(), PUSH + ":docs-push", "event type docs-push is not the one Acme/acme-services", True),
        (payload(ref="refs/tags/v1"), PUSH, "ref refs/tags/v1 is refused: ", True),
        (payload(environment="dev"), PUSH, "environment dev does not match the ref, which means production", True),
        (payload(component="auth-service;id"), PUSH, "component auth-service?id is not a comma-separated", True),
        (payload(component="site"), PUSH, "component site is not a component of Acme/acme-services", True),
        (payload(component="auth-service,auth-service"), PUSH, "component auth-service is listed twice", True),
    ],
)  # fmt: skip
def test_each_refusal_names_the_first_problem_and_where_it_is_reported(raw, event, refusal, reported) -> None:
    event, _, event_type = event.partition(":")
    result, target = check(raw, event, event_type or "services-push")
    assert isinstance(result, str), result
    assert result.startswith(refusal), result
    # Once repository and sha are both valid, the refusal is reported on that commit; never before.
    assert (target.repository, target.sha) == (("Acme/acme-services", SHA) if reported else ("", ""))


def test_a_manual_run_may_send_any_event_type() -> None:
    request, _ = check(payload(), "workflow_dispatch", "")
    assert isinstance(request, resolve.Request), request


def test_a_refused_value_reaches_the_log_as_safe_characters_only() -> None:
    assert resolve.printable("::error::x`y\n") == "??error??x?y?"
    assert resolve.printable("a" * 500) == "a" * 120
    assert resolve.printable("refs/heads/feature/x-1.2_3") == "refs/heads/feature/x-1.2_3"


@pytest.mark.parametrize(
    ("ref", "environment", "deploy", "needed"),
    [
        ("refs/heads/main", "production", True, False),
        ("refs/heads/hotfix/x", "production", True, True),
        ("refs/heads/hotfix/x", "production", False, False),
        ("refs/heads/develop", "staging", True, False),
    ],
)
def test_only_a_production_deploy_from_another_branch_needs_a_ruleset(ref, environment, deploy, needed) -> None:
    request = resolve.Request("Acme/acme-services", ref, SHA, ("auth-service",), environment, deploy)
    assert resolve.needs_ruleset(request) is needed


def test_the_deploy_gate_deploys_the_head_and_an_older_commit_only_by_hand() -> None:
    assert deploy_gate.decide(SHA, SHA, "main", manual=False) == deploy_gate.Gate(
        "", f"{SHA} is the head of main: deploying it."
    )
    assert deploy_gate.decide(SHA, SHA, "main", manual=True).superseded == ""
    assert deploy_gate.decide(SHA, HEAD, "main", manual=True) == deploy_gate.Gate(
        "", f"main is at {HEAD}; this manual run deploys {SHA} on purpose.", "Older commit"
    )
    assert deploy_gate.decide(SHA, HEAD, "main", manual=False) == deploy_gate.Gate(
        HEAD, f"main is at {HEAD} now, which its own run deploys; {SHA} is not deployed.", "Superseded"
    )


# --- production deploys from another branch: the ruleset that must guard it ----------------------


@pytest.fixture(scope="module")
def api():
    settings = settings_of("production")
    with stand_in(settings) as server:
        services = next(r for r in settings.source_repositories if r.kind == "services")
        server.repository = f"{settings.github_owner}/{services.name}"
        yield server


def ruleset_check(api, *pages) -> str:
    api.script("branch-rules", *(Reply(200, page) for page in pages))
    request = resolve.Request(api.repository, "refs/heads/hotfix/cve-1", SHA, ("auth-service",), "production", True)
    try:
        resolve.check_ruleset(github.GitHub(DISPATCH_TOKEN, api.url, env={}), request)
    except resolve.RefusedError as error:
        return str(error)
    return "accepted"


def test_a_hotfix_deploy_needs_rules_that_restrict_both_creation_and_update(api) -> None:
    assert ruleset_check(api, [{"type": "creation"}, {"type": "update"}, {"type": "deletion"}]) == "accepted"
    refused = f"hotfix/cve-1 of {api.repository} deploys to production, and no ruleset limits who may create and"
    assert (
        ruleset_check(api, [{"type": "creation"}]) == f"{refused} update it: its active rules do not restrict updates"
    )
    assert (
        ruleset_check(api, [{"type": "update"}]) == f"{refused} update it: its active rules do not restrict creations"
    )
    assert ruleset_check(api, []) == f"{refused} update it: its active rules do not restrict creations or updates"
    assert ruleset_check(api, [{"type": "deletion"}, {"type": "non_fast_forward"}]).endswith("creations or updates")
    # Rules of unexpected shapes count for nothing.
    shapes = [{"type": ["creation"]}, {"type": "update"}, "creation", None, {"kind": "creation"}]
    assert ruleset_check(api, shapes).endswith("do not restrict creations")
    # The branch is one path segment of the request, its slash encoded.
    assert api.requests_for("branch-rules")[-1].path.endswith("/rules/branches/hotfix%2Fcve-1")


def test_the_rules_are_read_page_by_page_until_both_are_found(api) -> None:
    full = [{"type": "pull_request"}] * resolve.RULES_PER_PAGE
    assert ruleset_check(api, full, [{"type": "creation"}]).endswith("do not restrict updates")
    assert ruleset_check(api, [*full[:-1], {"type": "creation"}], [{"type": "update"}]) == "accepted"
    # Both found on a full first page: the second is never asked for.
    read = len(api.requests_for("branch-rules"))
    assert ruleset_check(api, [*full[:-2], {"type": "creation"}, {"type": "update"}]) == "accepted"
    assert len(api.requests_for("branch-rules")) == read + 1
    # A short page is the last one.
    assert ruleset_check(api, [{"type": "creation"}]).endswith("do not restrict updates")
    assert len(api.requests_for("branch-rules")) == read + 2
    # At most MAX_RULES_PAGES pages: what is not found by then counts as missing.
    pages = [full] * resolve.MAX_RULES_PAGES
    assert ruleset_check(api, *pages).endswith("creations or updates")
    assert len(api.requests_for("branch-rules")) == read + 2 + resolve.MAX_RULES_PAGES
    assert [r.query["page"] for r in api.requests_for("branch-rules")[-2:]] == [["9"], ["10"]]
