"""The central pipeline's `resolve` job, run with real bash against the GitHub API stand-in.

The workflow is the file the production stack's offline plan writes. Valid payloads of every
kind and branch are accepted with the outputs the later jobs read; hostile ones are refused,
reported on the source commit when it is known, and never executed.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ci import github, resolve
from components import rules
from components.workflows import central, credentials
from tests.central_support import (
    APP_CONFIG,
    DISPATCH_TOKEN,
    PLATFORMS,
    central_document,
    dispatch_github,
    in_parallel,
    manual_github,
    payload,
    run_resolve,
    settings_of,
    sha_of,
    stand_in,
)
from tests.harness.github_api import GitHubAPI, Reply, Ruleset
from tests.harness.workflow import JobResult

STACK = "production"
SETTINGS = settings_of(STACK)
SERVICES = next(r for r in SETTINGS.source_repositories if r.kind == "services")
TESTS = next(r for r in SETTINGS.source_repositories if r.kind == "tests")
SERVICES_FULL = f"{SETTINGS.github_owner}/{SERVICES.name}"

BRANCH_EXAMPLES = {"main": "main", "develop": "develop", "feature/*": "feature/login", "hotfix/*": "hotfix/cve-1"}
"""One concrete branch for each row of the branch table."""


@pytest.fixture(scope="module", params=credentials.MODES)
def workflow(request, plan_of) -> dict[str, Any]:
    """The production stack's resolve job, in each credential mode (App mode mints the token first)."""
    if request.param == "app":
        return central.document(central.CentralArgs.from_settings(settings_of(STACK, **APP_CONFIG)))
    return central_document(plan_of(STACK))


@pytest.fixture
def api():
    with stand_in(SETTINGS) as server:
        yield server


def branch_of(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


def reachable(api: GitHubAPI, repository: str, branch: str, sha: str, status: str = "ahead") -> None:
    """What the compare API says of `<sha>...<branch>`: `ahead` or `identical` when sha is on the branch."""
    api.add_comparison(repository, sha, branch, status=status)


HOTFIXES = "refs/heads/hotfix/*"
"""The branches a ruleset must keep to its bypass actors before resolve deploys them to production."""


def protect(api: GitHubAPI, repository: str, kinds=("creation", "update"), includes=(HOTFIXES,)) -> None:
    """A branch ruleset on `repository` restricting `kinds` on the refs `includes` names, bypassed by nobody here."""
    api.add_ruleset(repository, Ruleset("branch", frozenset(kinds), frozenset({"release-managers"}), tuple(includes)))


def statuses(api: GitHubAPI, repository: str, sha: str) -> list[dict[str, Any]]:
    return api.statuses.get((repository.lower(), sha), [])


def only_error_status(api: GitHubAPI, sha: str) -> dict[str, Any]:
    posted = statuses(api, SERVICES_FULL, sha)
    assert [s["state"] for s in posted] == ["error"], posted
    status = posted[0]
    assert status["context"] == central.STATUS_CONTEXT
    assert status["target_url"] == "https://github.com/DREAMSCAPE-AI/dreamscape-infra/actions/runs/1000001"
    assert len(status["description"]) <= 140
    return status


def refused(result: JobResult) -> str:
    """The job failed in resolve, set none of its outputs, and said why; returns the reason."""
    assert result.status == "failure", result.log
    assert all(value == "" for value in result.outputs.values()), result.outputs
    assert "### Central CI/CD: run refused" in result.summary
    return result.summary


# --- accepted -------------------------------------------------------------------------------------


CASES = [(repo, branch) for repo in SETTINGS.source_repositories for branch in BRANCH_EXAMPLES]


def test_each_kind_and_branch_is_accepted(workflow, api: GitHubAPI) -> None:
    for repo in SETTINGS.source_repositories:
        protect(api, f"{SETTINGS.github_owner}/{repo.name}")

    def run(case):
        repo, rule = case
        ref = f"refs/heads/{BRANCH_EXAMPLES[rule]}"
        sha = sha_of(repo.name, ref)
        decision = rules.classify_ref(ref)
        reachable(api, f"{SETTINGS.github_owner}/{repo.name}", branch_of(ref), sha, "identical")
        sent = payload(SETTINGS, repo.name, ref, sha, repo.component_names, decision.environment)
        return repo, ref, sha, decision, run_resolve(workflow, dispatch_github(SETTINGS, api, repo.event_type, sent))

    for repo, ref, sha, decision, result in in_parallel(run, CASES):
        full = f"{SETTINGS.github_owner}/{repo.name}"
        assert result.status == "success", result.log
        deploy = decision.deploy and repo.deployable
        plan = json.loads(result.outputs.pop("builds"))["include"]
        assert [entry["component"] for entry in plan] == list(repo.component_names)
        platform = PLATFORMS[f"DEPLOY_PLATFORM_{decision.environment.upper()}"] if deploy else ""
        assert result.outputs.pop("platform") == platform
        assert {entry["platform"] for entry in plan} == {platform}
        assert result.outputs == {
            "environment": decision.environment,
            "deploy": "true" if decision.deploy and repo.deployable else "false",
            "components": json.dumps(list(repo.component_names), separators=(",", ":")),
            "source_repo": full,
            "ref": ref,
            "sha": sha,
        }
        [pending] = statuses(api, full, sha)
        assert pending["state"] == "pending"
        assert pending["context"] == central.STATUS_CONTEXT
        assert pending["target_url"].endswith("/DREAMSCAPE-AI/dreamscape-infra/actions/runs/1000001")
    # Every API call of resolve carried DISPATCH_TOKEN, the one that may read the source repositories.
    assert {r.token for r in api.requests} == {DISPATCH_TOKEN}
    assert len(api.requests_for("compare", status=200)) == len(CASES)
    # The branch rules are read for the production deploys from hotfix/*, of deployable repositories only.
    assert sorted(r.path for r in api.requests_for("branch-rules", status=200)) == sorted(
        f"/repos/{SETTINGS.github_owner}/{repo.name}/rules/branches/hotfix%2Fcve-1"
        for repo in SETTINGS.source_repositories
        if repo.deployable
    )


def test_the_components_output_is_the_matrix_of_the_named_components(workflow, api: GitHubAPI) -> None:
    sha = sha_of("subset")
    reachable(api, SERVICES_FULL, "develop", sha, "ahead")
    sent = payload(SETTINGS, SERVICES.name, "refs/heads/develop", sha, ["user-service"], "staging")
    result = run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, sent))
    assert result.status == "success", result.log
    assert json.loads(result.outputs["components"]) == ["user-service"]
    assert result.outputs["deploy"] == "true"


def test_repository_names_match_whatever_their_case(workflow, api: GitHubAPI) -> None:
    sha = sha_of("case")
    reachable(api, SERVICES_FULL, "main", sha, "identical")
    sent = payload(SETTINGS, SERVICES.name, "refs/heads/main", sha, ["auth-service"], "production")
    sent["source_repo"] = sent["source_repo"].lower()
    result = run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, sent))
    assert result.status == "success", result.log
    assert result.outputs["source_repo"] == SERVICES_FULL


@pytest.mark.parametrize(
    ("repository", "ref", "deploy"),
    [
        (SERVICES, "refs/heads/feature/login", "true"),  # the only way to deploy dev
        (SERVICES, "refs/heads/main", "true"),
        (TESTS, "refs/heads/feature/login", "false"),  # never deploys a repository that is not deployable
    ],
)
def test_a_manual_run_deploys_to_the_environment_of_its_branch(workflow, api, repository, ref, deploy) -> None:
    full = f"{SETTINGS.github_owner}/{repository.name}"
    sha = sha_of("manual", repository.name, ref)
    reachable(api, full, branch_of(ref), sha, "ahead")
    decision = rules.classify_ref(ref)
    inputs = payload(SETTINGS, repository.name, ref, sha, repository.component_names[:1], decision.environment)
    result = run_resolve(workflow, manual_github(SETTINGS, api, inputs))
    assert result.status == "success", result.log
    assert result.outputs["environment"] == decision.environment
    assert result.outputs["deploy"] == deploy


def test_a_manual_run_is_held_to_the_branch_table(workflow, api: GitHubAPI) -> None:
    sha = sha_of("manual-mismatch")
    reachable(api, SERVICES_FULL, "feature/login", sha, "identical")
    inputs = payload(SETTINGS, SERVICES.name, "refs/heads/feature/login", sha, ["auth-service"], "production")
    reason = refused(run_resolve(workflow, manual_github(SETTINGS, api, inputs)))
    assert "environment production does not match the ref, which means dev" in reason
    only_error_status(api, sha)


# --- refused ----------------------------------------------------------------------------------------


def _valid(commit: str, **changes: Any) -> dict[str, Any]:
    sent: dict[str, Any] = payload(
        SETTINGS, SERVICES.name, "refs/heads/main", commit, ["auth-service", "user-service"], "production"
    )
    sent.update(changes)
    return {k: v for k, v in sent.items() if v is not None}


LONG = "a" * 101
HOSTILE = {
    # name: (changes to a valid payload, status expected on the source commit, reason in the summary)
    "unknown repository": ({"source_repo": "DREAMSCAPE-AI/dreamscape-secrets"}, False, "not a configured repository"),
    "other owner": ({"source_repo": "attacker/dreamscape-services"}, False, "not a configured repository"),
    "101-character repository": ({"source_repo": f"DREAMSCAPE-AI/{LONG}"}, False, "not a configured repository"),
    "unknown component": ({"component": "auth-service,billing"}, True, "billing is not a component of"),
    "101-character component": ({"component": LONG}, True, "not a comma-separated list of component names"),
    "component with ;": ({"component": "auth-service;id"}, True, "not a comma-separated list"),
    "component with $(id)": ({"component": "$(id)"}, True, "not a comma-separated list"),
    "component with backticks": ({"component": "`id`"}, True, "not a comma-separated list"),
    "component with a newline": ({"component": "auth-service\nid"}, True, "component is missing, empty, or not"),
    "component with spaces": ({"component": "auth-service, user-service"}, True, "not a comma-separated list"),
    "component twice": ({"component": "auth-service,auth-service"}, True, "auth-service is listed twice"),
    "empty component": ({"component": ""}, True, "component is missing, empty"),
    "feature branch to production": (
        {"ref": "refs/heads/feature/x"},
        True,
        "environment production does not match the ref, which means dev",
    ),
    "tag": ({"ref": "refs/tags/v1.0.0"}, True, "ref refs/tags/v1.0.0 is refused"),
    "ref with $(id)": ({"ref": "refs/heads/feature/$(id)"}, True, "is refused"),
    "deep hotfix": ({"ref": "refs/heads/hotfix/a/b"}, True, "is refused"),
    "non-hex sha": ({"sha": "g" * 40}, False, "is not 40 lowercase hexadecimal characters"),
    "short sha": ({"sha": "a" * 39}, False, "is not 40 lowercase hexadecimal characters"),
    "upper-case sha": ({"sha": "A" * 40}, False, "is not 40 lowercase hexadecimal characters"),
    "environment missing": ({"environment": None}, True, "environment is missing"),
    "number as a value": ({"component": 7}, True, "component is missing, empty, or not a string"),
    "unknown key": ({"extra": "x"}, True, "1 key(s) outside the contract"),
    "more than ten keys": ({f"k{i}": "x" for i in range(6)}, True, "the payload has 11 keys"),
    "unicode look-alike": ({"component": "auth‐service"}, True, "component is missing, empty, or not"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_payload_is_refused(workflow, api: GitHubAPI, case: str) -> None:
    changes, reported, reason = HOSTILE[case]
    sha = sha_of("hostile", case)
    sent = _valid(sha, **changes)
    reachable(api, SERVICES_FULL, "main", sent.get("sha", sha), "identical")
    summary = refused(run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, sent)))
    assert reason in summary
    if reported:
        status = only_error_status(api, sha)
        assert status["description"].startswith("Refused: ")
    else:
        assert api.statuses == {}
    assert api.requests_for("compare") == [], "a refused payload must not reach the compare API"


def test_a_payload_that_is_no_object_is_refused(workflow, api: GitHubAPI) -> None:
    for sent in (["a", "b"], "text", None, 12):
        refused(run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, sent)))
    assert api.requests == []


def test_an_event_type_of_another_kind_is_refused(workflow, api: GitHubAPI) -> None:
    sha = sha_of("kind")
    reason = refused(run_resolve(workflow, dispatch_github(SETTINGS, api, "docs-changed", _valid(sha))))
    assert "event type docs-changed is not the one DREAMSCAPE-AI/dreamscape-services sends" in reason
    only_error_status(api, sha)


@pytest.mark.parametrize("comparison", ["behind", "diverged", None])
def test_a_commit_not_on_the_branch_is_refused(workflow, api: GitHubAPI, comparison: str | None) -> None:
    sha = sha_of("unreachable", comparison)
    if comparison is not None:
        reachable(api, SERVICES_FULL, "main", sha, comparison)
    # No comparison at all: GitHub answers 404 (no common ancestor: a commit of a fork network).
    reason = refused(run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, _valid(sha))))
    assert f"commit {sha} is not on branch main of {SERVICES_FULL}" in reason
    [compare] = api.requests_for("compare")
    assert compare.path == f"/repos/{SERVICES_FULL}/compare/{sha}...main"
    assert compare.token == DISPATCH_TOKEN
    only_error_status(api, sha)


def test_the_compare_call_names_the_branch_of_the_ref(workflow, api: GitHubAPI) -> None:
    sha = sha_of("nested")
    reachable(api, SERVICES_FULL, "feature/a/b", sha, "ahead")
    sent = _valid(sha, ref="refs/heads/feature/a/b", environment="dev")
    assert run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, sent)).status == "success"
    [compare] = api.requests_for("compare")
    assert compare.path == f"/repos/{SERVICES_FULL}/compare/{sha}...feature%2Fa%2Fb"


def test_a_token_that_cannot_write_statuses_fails_resolve_and_says_which(workflow) -> None:
    with GitHubAPI(repositories=[SERVICES_FULL]) as api:
        api.add_token(DISPATCH_TOKEN, write=False)
        sha = sha_of("read-only")
        reachable(api, SERVICES_FULL, "main", sha, "identical")
        result = run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, _valid(sha)))
    reason = refused(result)
    assert "could not post the pending status (HTTP 403" in reason
    assert "check that PIPELINE_TOKEN may write commit statuses" in reason


def test_the_compare_call_is_retried_on_server_errors(workflow, api: GitHubAPI) -> None:
    sha = sha_of("retry")
    reachable(api, SERVICES_FULL, "main", sha, "identical")
    api.script("compare", Reply.server_error(), Reply.server_error(503))
    result = run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, _valid(sha)))
    assert result.status == "success", result.log
    assert [r.status for r in api.requests_for("compare")] == [502, 503, 200]


# --- production deploys from a branch other than main ---------------------------------------------

HOTFIX = "refs/heads/hotfix/cve-1"
UNPROTECTED = (
    "hotfix/cve-1 of DREAMSCAPE-AI/dreamscape-services deploys to production, and no ruleset limits who"
    " may create and update it"
)


def _hotfix(commit: str) -> dict[str, Any]:
    return _valid(commit, ref=HOTFIX)


@pytest.mark.parametrize(
    ("rulesets", "missing"),
    [
        ([("creation", "update")], None),
        ([("creation",), ("update", "deletion")], None),  # two rulesets together restrict both
        ([], "creations or updates"),
        ([("update",)], "creations"),
        ([("creation", "deletion")], "updates"),
    ],
)
def test_a_hotfix_deploys_only_when_rulesets_restrict_creating_and_updating_it(
    workflow, api: GitHubAPI, rulesets, missing
) -> None:
    for kinds in rulesets:
        protect(api, SERVICES_FULL, kinds)
    sha = sha_of("hotfix", rulesets)
    reachable(api, SERVICES_FULL, "hotfix/cve-1", sha, "ahead")
    result = run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, _hotfix(sha)))
    [lookup] = api.requests_for("branch-rules")
    assert lookup.path == f"/repos/{SERVICES_FULL}/rules/branches/hotfix%2Fcve-1"
    assert lookup.token == DISPATCH_TOKEN
    assert lookup.query == {"per_page": ["100"], "page": ["1"]}
    if missing is None:
        assert result.status == "success", result.log
        assert (result.outputs["environment"], result.outputs["deploy"]) == ("production", "true")
        assert [s["state"] for s in statuses(api, SERVICES_FULL, sha)] == ["pending"]
    else:
        reason = refused(result)
        assert f"{UNPROTECTED}: its active rules do not restrict {missing}" in reason
        status = only_error_status(api, sha)
        assert status["description"].startswith(f"Refused: {UNPROTECTED[:60]}")


def test_rules_of_other_branches_do_not_protect_a_hotfix(workflow, api: GitHubAPI) -> None:
    protect(api, SERVICES_FULL, includes=("refs/heads/main", "refs/heads/hotfix/other", "refs/heads/hotfix/*/*"))
    sha = sha_of("hotfix", "other branches")
    reachable(api, SERVICES_FULL, "hotfix/cve-1", sha, "identical")
    reason = refused(run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, _hotfix(sha))))
    assert f"{UNPROTECTED}: its active rules do not restrict creations or updates" in reason
    only_error_status(api, sha)


@pytest.mark.parametrize("protected", [True, False])
def test_a_manual_run_of_a_hotfix_gets_the_same_check(workflow, api: GitHubAPI, protected: bool) -> None:
    if protected:
        protect(api, SERVICES_FULL)
    sha = sha_of("manual hotfix", protected)
    reachable(api, SERVICES_FULL, "hotfix/cve-1", sha, "ahead")
    inputs = payload(SETTINGS, SERVICES.name, HOTFIX, sha, ["auth-service"], "production")
    result = run_resolve(workflow, manual_github(SETTINGS, api, inputs))
    assert len(api.requests_for("branch-rules", status=200)) == 1
    if protected:
        assert result.status == "success", result.log
        assert result.outputs["deploy"] == "true"
    else:
        assert UNPROTECTED in refused(result)
        only_error_status(api, sha)


def test_the_rules_are_checked_after_the_commit_is_found_on_the_branch(workflow, api: GitHubAPI) -> None:
    protect(api, SERVICES_FULL)
    sha = sha_of("hotfix", "not on the branch")
    reachable(api, SERVICES_FULL, "hotfix/cve-1", sha, "diverged")
    reason = refused(run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, _hotfix(sha))))
    assert f"commit {sha} is not on branch hotfix/cve-1" in reason
    assert api.requests_for("branch-rules") == []


@pytest.mark.parametrize(
    ("event", "ref", "environment", "deploy"),
    [
        ("repository_dispatch", "refs/heads/main", "production", "true"),
        ("repository_dispatch", "refs/heads/develop", "staging", "true"),
        ("repository_dispatch", "refs/heads/feature/login", "dev", "false"),
        ("workflow_dispatch", "refs/heads/main", "production", "true"),
        ("workflow_dispatch", "refs/heads/develop", "staging", "true"),
        ("workflow_dispatch", "refs/heads/feature/login", "dev", "true"),
    ],
)
def test_other_branches_are_never_looked_up(workflow, api: GitHubAPI, event, ref, environment, deploy) -> None:
    sha = sha_of("not looked up", event, ref)
    reachable(api, SERVICES_FULL, branch_of(ref), sha, "ahead")
    sent = _valid(sha, ref=ref, environment=environment)
    github_context = (
        dispatch_github(SETTINGS, api, SERVICES.event_type, sent)
        if event == "repository_dispatch"
        else manual_github(SETTINGS, api, sent)
    )
    result = run_resolve(workflow, github_context)
    assert result.status == "success", result.log
    assert (result.outputs["environment"], result.outputs["deploy"]) == (environment, deploy)
    assert [r.route for r in api.requests] == ["compare", "statuses"]


@pytest.mark.parametrize(
    "answer",
    [Reply.forbidden(), Reply.not_found(), Reply.unauthorized(), Reply.server_error(503)],
    ids=["403", "404", "401", "503"],
)
def test_a_rules_api_error_refuses_and_names_the_credential(workflow, api: GitHubAPI, answer: Reply) -> None:
    protect(api, SERVICES_FULL)
    sha = sha_of("rules error", answer.status)
    reachable(api, SERVICES_FULL, "hotfix/cve-1", sha, "ahead")
    # A 503 is retried: it refuses once every attempt got one.
    api.script("branch-rules", *[answer] * github.MAX_ATTEMPTS)
    reason = refused(run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, _hotfix(sha))))
    assert f"the rules API answered HTTP {answer.status}" in reason
    assert f"check that PIPELINE_TOKEN may read {SERVICES_FULL} (Metadata: read)" in reason
    only_error_status(api, sha)


def test_the_rules_are_read_page_by_page(workflow, api: GitHubAPI) -> None:
    for _ in range(resolve.RULES_PER_PAGE + 1):
        protect(api, SERVICES_FULL, ("deletion",))
    protect(api, SERVICES_FULL)
    sha = sha_of("hotfix", "pages")
    reachable(api, SERVICES_FULL, "hotfix/cve-1", sha, "ahead")
    result = run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, _hotfix(sha)))
    assert result.status == "success", result.log
    assert [r.query["page"] for r in api.requests_for("branch-rules")] == [["1"], ["2"]]


# --- the decision itself ------------------------------------------------------------------------------


def test_production_deploys_from_main_by_default() -> None:
    assert resolve.production_branch() == "main"


def _request(ref: str, environment: str, deploy: bool) -> resolve.Request:
    return resolve.Request(SERVICES_FULL, ref, "a" * 40, ("auth-service",), environment, deploy)


@pytest.mark.parametrize(
    ("ref", "environment", "deploy", "needed"),
    [
        ("refs/heads/hotfix/cve-1", "production", True, True),
        ("refs/heads/hotfix/cve-1", "production", False, False),  # a repository that is not deployable
        ("refs/heads/main", "production", True, False),
        ("refs/heads/develop", "staging", True, False),
        ("refs/heads/feature/login", "dev", True, False),  # a manual dev deploy
        ("refs/heads/feature/login", "dev", False, False),
        ("refs/heads/mainline", "production", True, True),  # any other name than main
    ],
)
def test_a_ruleset_is_needed_for_production_deploys_from_other_branches(ref, environment, deploy, needed) -> None:
    assert resolve.needs_ruleset(_request(ref, environment, deploy)) is needed


def test_rules_of_unexpected_shapes_count_for_nothing(api: GitHubAPI) -> None:
    api.script("branch-rules", Reply(200, [{"type": ["creation"]}, {"type": "update"}, "creation", None]))
    client = github.GitHub(DISPATCH_TOKEN, api.url, env={})
    with pytest.raises(resolve.RefusedError, match=r"its active rules do not restrict creations$"):
        resolve.check_ruleset(client, _request(HOTFIX, "production", True))


def test_an_answer_that_is_no_list_refuses(api: GitHubAPI) -> None:
    api.script("branch-rules", Reply(200, {"type": "creation"}))
    client = github.GitHub(DISPATCH_TOKEN, api.url, env={})
    with pytest.raises(resolve.RefusedError, match="did not answer a list of rules for hotfix/cve-1 of"):
        resolve.check_ruleset(client, _request(HOTFIX, "production", True))


# --- never executed ---------------------------------------------------------------------------------

SHADOWED = ("id", "touch", "whoami", "curl_evil", "reboot")


@pytest.fixture
def tripwire(tmp_path: Path):
    """A PATH whose `id`, `touch`, ... record being called instead of running."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "called"
    for name in SHADOWED:
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{record}"\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, record, tmp_path / "touched"


INJECTIONS = (
    "$(id)",
    "`id`",
    ";id",
    "|id",
    "&& id",
    "\nid",
    "$(touch {marker})",
    "`touch {marker}`",
    "'; touch {marker}; '",
    '"; touch {marker}; "',
    "${IFS}id",
    "$(reboot)",
)


@pytest.mark.parametrize("key", rules.PAYLOAD_KEYS)
def test_payload_values_are_never_executed(workflow, api: GitHubAPI, tripwire, key: str) -> None:
    env, record, marker = tripwire
    sha = sha_of("inject", key)
    reachable(api, SERVICES_FULL, "main", sha, "identical")

    def run(injection: str) -> JobResult:
        value = injection.replace("{marker}", str(marker))
        original = _valid(sha)[key]
        sent = _valid(sha, **{key: original + value})
        return run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, sent), extra_env=env)

    for result in in_parallel(run, INJECTIONS):
        refused(result)
        # Nothing of the value reaches the log as a workflow command either.
        commands = [line for line in result.log.splitlines() if line.startswith("::")]
        assert all(line.startswith(("::error title=Run refused::", "::warning")) for line in commands), commands
    assert not record.exists(), f"a payload value ran a command: {record.read_text()}"
    assert not marker.exists(), "a payload value ran touch"


def test_the_tripwire_would_catch_an_execution(tripwire) -> None:
    """The shadowed commands do record a call: the test above can fail."""
    import subprocess

    env, record, _ = tripwire
    subprocess.run(["bash", "-c", 'x="$(id)"; echo "$x"'], env={**os.environ, **env}, check=True, capture_output=True)
    assert record.read_text() == "id \n"


# --- differential -------------------------------------------------------------------------------------


def test_resolve_decides_every_ref_of_the_corpus_as_the_rules_do(workflow, api: GitHubAPI) -> None:
    from tests.ref_corpus import REFS

    assert len(REFS) >= 200
    protect(api, SERVICES_FULL)

    def run(ref: str):
        decision = rules.classify_ref(ref)
        sha = sha_of("corpus", ref)
        if decision.sends:
            reachable(api, SERVICES_FULL, branch_of(ref), sha, "identical")
        sent = _valid(sha, ref=ref, environment=decision.environment or "production")
        return ref, decision, run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, sent))

    disagreements = []
    for ref, decision, result in in_parallel(run, REFS):
        if decision.sends:
            got = (result.status, result.outputs.get("environment"), result.outputs.get("deploy"))
            expected = ("success", decision.environment, "true" if decision.deploy else "false")
        elif not (ref.isascii() and ref.isprintable()) or ref == "":
            # Refused before the branch table: values must be printable ASCII.
            got = (
                result.status,
                "ref is missing, empty, or not a string of printable ASCII characters" in result.summary,
            )
            expected = ("failure", True)
        else:
            reason = next((line for line in result.summary.splitlines() if " is refused: " in line), "")
            got = (result.status, reason.split(" is refused: ")[-1])
            expected = ("failure", decision.reason)
        if got != expected:
            disagreements.append((ref, expected, got))
    assert disagreements == []


def test_the_documented_refusal_is_what_resolve_writes(workflow, api: GitHubAPI) -> None:
    from tests.conftest import ROOT

    sha = "5d1c0e7a9b3f42c8e6a1d0f9b7c4e2a8f3b6d9c1"
    sent = _valid(sha, ref="refs/heads/feature/login")
    result = run_resolve(workflow, dispatch_github(SETTINGS, api, SERVICES.event_type, sent))
    docs = (ROOT / "docs" / "central.md").read_text()
    example = docs.split("<!-- resolve summary: refused -->\n```markdown\n", 1)[1].split("```", 1)[0]
    assert example == refused(result)
    only_error_status(api, sha)
