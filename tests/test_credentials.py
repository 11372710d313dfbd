"""The two GitHub credentials, each used as a thief would use it, against the GitHub API stand-in.

The stand-in enforces the fine-grained permission GitHub documents for each endpoint and the
rulesets the production plan registers on the infra repository (their bypass roles mapped to
logins that hold those roles). What each token may do comes from components/workflows/
credentials.py, the text the docs and `githubTokenNeeds` print: the tests hold it to that.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from components.workflows import credentials
from tests.central_support import infra, settings_of
from tests.harness.github_api import GitHubAPI, Ruleset

RULESET = "github:index/repositoryRuleset:RepositoryRuleset"
SETTINGS = settings_of("production")
INFRA = infra(SETTINGS)
SOURCES = [f"{SETTINGS.github_owner}/{r.name}" for r in SETTINGS.source_repositories]
SHA = "1" * 40

ROLES = {"platform-admin": 5, "platform-maintainer": 2, "dreamscape-dispatch": 4, "developer": 4}
"""Logins and their role on the infra repository (GitHub's ids: admin 5, maintain 2, write 4).
The identity behind DISPATCH_TOKEN holds Write, as the docs require."""

DISPATCH = "github_pat_dispatch_for_tests"
PIPELINE = "github_pat_pipeline_for_tests"
ADMIN = "ghp_platform_admin_for_tests"


def rulesets_from_plan(plan) -> list[Ruleset]:
    """The infra repository's rulesets as registered, with bypass roles mapped to logins."""
    found = []
    # The rulesets that keep identities from writing refs (repositoryRules adds review rules elsewhere).
    for resource in [r for r in plan.of_type(RULESET) if r.name.endswith("-writes")]:
        assert resource.plain("repository") == SETTINGS.infra_repository
        assert resource.plain("enforcement") == "active"
        assert resource.plain("conditions") == {"refName": {"includes": ["~ALL"], "excludes": []}}
        roles = {int(a["actorId"]) for a in resource.plain("bypassActors") if a["actorType"] == "RepositoryRole"}
        rules = {rule for rule, on in resource.plain("rules").items() if on is True}
        found.append(
            Ruleset(
                target=resource.plain("target"),
                rules=frozenset(rules),
                bypass=frozenset(login for login, role in ROLES.items() if role in roles),
            )
        )
    return found


@pytest.fixture(scope="module")
def api(plan_of):
    with GitHubAPI(repositories=[INFRA, *SOURCES]) as server:
        # Exactly what the docs tell the user to grant each token.
        server.add_token(DISPATCH, repositories=[INFRA], permissions={"contents": "write"}, actor="dreamscape-dispatch")
        server.add_token(
            PIPELINE,
            repositories=SOURCES,
            permissions={"contents": "read", "statuses": "write"},
            actor="dreamscape-pipeline",
        )
        server.add_token(ADMIN, actor="platform-admin")
        for ruleset in rulesets_from_plan(plan_of("production")):
            server.add_ruleset(INFRA, ruleset)
        for repo in [INFRA, *SOURCES]:
            server.branch_heads[(repo.lower(), "main")] = SHA
            server.add_comparison(repo, SHA, "main", status="identical")
        yield server


def call(api: GitHubAPI, token: str, method: str, path: str, body: Any = None) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 - the stand-in on 127.0.0.1
        api.url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "User-Agent": "thief",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the stand-in on 127.0.0.1
            text = response.read()
            return response.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_the_rulesets_cover_branches_and_tags_and_exempt_only_admins_and_maintainers(plan_of) -> None:
    rulesets = rulesets_from_plan(plan_of("production"))
    assert sorted(r.target for r in rulesets) == ["branch", "tag"]
    for ruleset in rulesets:
        assert ruleset.rules == {"creation", "update", "deletion"}
        assert ruleset.bypass == {"platform-admin", "platform-maintainer"}


def test_the_dispatch_token_can_start_the_pipeline(api) -> None:
    body = {"event_type": "services-changed", "client_payload": {"source_repo": SOURCES[0]}}
    status, _ = call(api, DISPATCH, "POST", f"/repos/{INFRA}/dispatches", body)
    assert status == 204


@pytest.mark.parametrize("source", SOURCES)
def test_the_dispatch_token_reads_no_source_repository_and_posts_no_status(api, source) -> None:
    status, _ = call(api, DISPATCH, "GET", f"/repos/{source}/compare/{SHA}...main")
    assert status == 404  # a fine-grained token sees only the repositories it was given
    status, _ = call(api, DISPATCH, "GET", f"/repos/{source}/git/ref/heads/main")
    assert status == 404
    status, _ = call(api, DISPATCH, "POST", f"/repos/{source}/statuses/{SHA}", {"state": "success"})
    assert status == 404


def test_the_dispatch_token_cannot_push_to_the_infra_repository(api) -> None:
    """Contents: write (needed to dispatch) would let it push a branch; the ruleset does not."""
    for ref in ("refs/heads/evil", "refs/tags/v9"):
        status, answer = call(api, DISPATCH, "POST", f"/repos/{INFRA}/git/refs", {"ref": ref, "sha": SHA})
        assert status == 422, ref
        assert answer["message"].startswith("Repository rule violations found")
    status, answer = call(api, DISPATCH, "PATCH", f"/repos/{INFRA}/git/refs/heads/main", {"sha": "2" * 40})
    assert status == 422
    assert "updates being restricted" in answer["message"]
    assert api.branch_heads[(INFRA.lower(), "main")] == SHA


def test_an_admin_still_writes_the_infra_repository(api) -> None:
    """The rulesets stop everyone else, not the people (and the `pulumi up` identity) who run it."""
    status, _ = call(api, ADMIN, "POST", f"/repos/{INFRA}/git/refs", {"ref": "refs/heads/admin-change", "sha": SHA})
    assert status == 201


def test_the_pipeline_token_reads_sources_and_posts_statuses_but_cannot_dispatch(api) -> None:
    status, answer = call(api, PIPELINE, "GET", f"/repos/{SOURCES[0]}/compare/{SHA}...main")
    assert (status, answer["status"]) == (200, "identical")
    status, _ = call(api, PIPELINE, "POST", f"/repos/{SOURCES[0]}/statuses/{SHA}", {"state": "pending"})
    assert status == 201
    status, _ = call(api, PIPELINE, "POST", f"/repos/{INFRA}/dispatches", {"event_type": "services-changed"})
    assert status == 404
    status, _ = call(api, PIPELINE, "POST", f"/repos/{SOURCES[0]}/git/refs", {"ref": "refs/heads/x", "sha": SHA})
    assert status == 403  # Contents: read only


def test_each_credential_is_documented_where_users_read_it(plan_of) -> None:
    needs = "\n".join(plan_of("production").outputs["githubTokenNeeds"])
    for credential in credentials.ALL:
        assert f"{credential.secret} ({credential.config_key})" in needs
        assert credential.if_stolen in needs
