"""The trigger workflow, run: its bash steps against a local GitHub API, as a runner would run them.

The workflow text of each repository comes from the production stack's offline plan, so what
runs here is exactly what `pulumi up` would write; what the runs are held against (central
repository, event type, components) comes from the stack's config. Every test runs in both
credential modes: `token` (the DISPATCH_TOKEN secret) and `app` (a token minted from the
dispatch App's key by the create-github-app-token stand-in, which here mints the value the test
registered, so a test's grants apply in both modes).
"""

from __future__ import annotations

import functools
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import yaml

from components import rules, settings
from components.workflows import credentials, shell, trigger
from tests.central_support import APP_CONFIG, DISPATCH_APP_ID
from tests.conftest import plan_with
from tests.harness.github_api import GitHubAPI, Reply
from tests.harness.github_app import App, CreateAppToken, app_key
from tests.harness.workflow import ZERO_SHA, Context, JobResult, dispatch_context, push_context, run_job
from tests.ref_corpus import REFS

DISPATCH_TOKEN = "ghp_DispatchTokenForTheTriggerTests0001"
JOB_TOKEN = "ghs_JobTokenOfTheSourceRepository0001"
BEFORE = "1" * 40
AFTER = "2" * 40
FAST = {shell.BASE_DELAY_ENV: "0"}
"""No real sleeping between retries (Retry-After is still honoured)."""

FILE = "github:index/repositoryFile:RepositoryFile"
APP_KEY = app_key()


@dataclass(frozen=True)
class Repo:
    full_name: str
    infra: str
    event_type: str
    components: tuple[str, ...]
    workflow: str
    mode: str = "token"

    @functools.cached_property
    def document(self) -> dict:
        return yaml.safe_load(self.workflow)


@pytest.fixture(scope="module", params=credentials.MODES)
def repos(request) -> dict[str, Repo]:
    """Each source repository as the production plan wires it, with what its config says it must send."""
    if request.param == "app":
        plan = plan_with(
            "production", secret={"dispatchAppPrivateKey": APP_KEY, "pipelineAppPrivateKey": "x"}, **APP_CONFIG
        )
    else:
        plan = request.getfixturevalue("plan_of")("production")
    config = settings.merged_plain_config("production")
    owner = config["githubOwner"]
    out = {}
    for repo in config["sourceRepositories"]:
        name = repo["name"]
        [workflow] = [
            r.plain("content")
            for r in plan.of_type(FILE)
            if r.plain("repository") == name and r.plain("branch") == "main" and r.plain("file") == trigger.PATH
        ]
        out[name] = Repo(
            full_name=f"{owner}/{name}",
            infra=f"{owner}/{config['infraRepository']}",
            event_type=f"{repo['kind']}-changed",
            components=tuple(c["name"] for c in repo["components"]),
            workflow=workflow,
            mode=request.param,
        )
    return out


@pytest.fixture
def services(repos) -> Repo:
    return repos["dreamscape-services"]


def _api(repo: Repo) -> GitHubAPI:
    api = GitHubAPI(repositories=[repo.full_name, repo.infra])
    api.add_token(DISPATCH_TOKEN, write=True)
    api.add_token(JOB_TOKEN, repositories=[repo.full_name], write=False)
    return api


def _run(
    api: GitHubAPI, repo: Repo, github: dict, secrets: dict | None = None, variables: dict | None = None, **kwargs
) -> JobResult:
    secrets = {"DISPATCH_TOKEN": DISPATCH_TOKEN} if secrets is None else secrets
    if repo.mode == "app":
        # The dispatch credential is what the App's token mints: the value the test chose.
        app = App("dreamscape-dispatch", DISPATCH_APP_ID, APP_KEY, {"contents": "write"}, [repo.infra])
        minted = CreateAppToken(api, app, fixed_token=secrets.get("DISPATCH_TOKEN") or "unused")
        kwargs["uses"] = {**kwargs.get("uses", {}), "actions/create-github-app-token": minted}
        secrets = {credentials.DISPATCH_APP.secret: APP_KEY} if secrets else {}
    result = run_job(
        repo.document,
        "dispatch",
        Context(github=github, secrets=secrets, vars=variables or {}),
        extra_env=kwargs.pop("extra_env", FAST),
        **kwargs,
    )
    for text in (result.log, result.summary, repr([s.outputs for s in result.steps if s.id != "token"])):
        for token in (DISPATCH_TOKEN, JOB_TOKEN, "ghp_revoked", "ghp_readonly", APP_KEY):
            assert token not in text, "a token was printed"
    return result


def _push(api: GitHubAPI, repo: Repo, ref: str, before: str = BEFORE, after: str = AFTER, **kwargs) -> JobResult:
    return _run(api, repo, push_context(repo.full_name, ref, before, after, api_url=api.url, token=JOB_TOKEN), **kwargs)


def _expected_dispatch(repo: Repo, ref: str, components: str, sha: str = AFTER) -> dict:
    return {
        "event_type": repo.event_type,
        "client_payload": {
            "source_repo": repo.full_name,
            "ref": ref,
            "sha": sha,
            "component": components,
            "environment": rules.classify_ref(ref).environment,
        },
    }


def _assert_api_request(request, method: str, path: str, token: str) -> None:
    assert request.method == method
    assert request.path == path
    assert request.query == {}
    assert request.headers["authorization"] == f"Bearer {token}"
    assert request.headers["x-github-api-version"] == shell.API_VERSION
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["user-agent"] == shell.USER_AGENT


# --- a push to each kind of branch ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "environment", "deploy"),
    [
        ("refs/heads/main", "production", "true"),
        ("refs/heads/develop", "staging", "true"),
        ("refs/heads/feature/login-page", "dev", "false"),
        ("refs/heads/hotfix/CVE-2026-0001", "production", "true"),
    ],
)
def test_a_push_sends_one_dispatch_with_the_contract_payload(services, ref, environment, deploy):
    with _api(services) as api:
        api.add_comparison(
            services.full_name,
            BEFORE,
            AFTER,
            files=["user-service/src/index.ts", "user-service/package.json", "README.md", "docs/auth-service/x.md"],
        )
        result = _push(api, services, ref)

    assert result.status == "success"
    decide = result.step("decide")
    assert (decide.outputs["environment"], decide.outputs["deploy"], decide.outputs["send"]) == (
        environment,
        deploy,
        "true",
    )
    compare, dispatch = api.requests
    _assert_api_request(compare, "GET", f"/repos/{services.full_name}/compare/{BEFORE}...{AFTER}", JOB_TOKEN)
    assert compare.status == 200 and compare.body == b""
    _assert_api_request(dispatch, "POST", f"/repos/{services.infra}/dispatches", DISPATCH_TOKEN)
    assert dispatch.headers["content-type"] == "application/json"
    assert dispatch.status == 204
    assert dispatch.json == _expected_dispatch(services, ref, "user-service")
    known = {services.full_name: services.components}
    assert rules.validate_payload(dispatch.json["client_payload"], known).environment == environment
    assert api.dispatches == [(services.infra, dispatch.json)]
    assert "### Sent to the central pipeline" in result.summary
    assert f"| ref | `{ref}` |" in result.summary
    assert f"| environment | {environment} (deploy: {deploy}) |" in result.summary


def test_every_default_repository_sends_its_own_event_type(repos):
    for repo in repos.values():
        with _api(repo) as api:
            first = repo.components[0]
            api.add_comparison(repo.full_name, BEFORE, AFTER, files=[f"{first}/file.txt"])
            _push(api, repo, "refs/heads/develop")
        assert api.dispatches == [(repo.infra, _expected_dispatch(repo, "refs/heads/develop", first))]


def test_changed_components_are_listed_in_config_order_and_renames_count_twice(services):
    with _api(services) as api:
        api.add_comparison(
            services.full_name,
            BEFORE,
            AFTER,
            files=[("user-service/moved.ts", "auth-service/moved.ts"), "user-service/a.ts"],
        )
        _push(api, services, "refs/heads/main")
    [(_, body)] = api.dispatches
    assert body["client_payload"]["component"] == "auth-service,user-service"


# --- when every component goes ---------------------------------------------------------------------


def test_a_new_branch_sends_every_component_without_comparing(services):
    with _api(services) as api:
        result = _push(api, services, "refs/heads/feature/new", before=ZERO_SHA)
    [dispatch] = api.requests
    assert dispatch.route == "dispatches"
    assert dispatch.json == _expected_dispatch(services, "refs/heads/feature/new", ",".join(services.components))
    assert "new branch" in result.summary


def test_a_manual_run_sends_every_component(services):
    with _api(services) as api:
        github = dispatch_context(services.full_name, "refs/heads/develop", AFTER, api_url=api.url, token=JOB_TOKEN)
        _run(api, services, github)
    [dispatch] = api.requests
    assert dispatch.json == _expected_dispatch(services, "refs/heads/develop", ",".join(services.components))


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        (lambda api, repo: None, "the comparison failed (HTTP 404"),
        (lambda api, repo: api.script("compare", *[Reply.server_error(502)] * 5), "the comparison failed (HTTP 502"),
        (
            lambda api, repo: api.add_comparison(repo.full_name, BEFORE, AFTER, [f"x{i}/f" for i in range(300)]),
            "the comparison lists 300 files",
        ),
        (
            lambda api, repo: api.add_comparison(repo.full_name, BEFORE, AFTER, include_files=False),
            "the comparison lists no files",
        ),
        (
            lambda api, repo: api.add_comparison(repo.full_name, BEFORE, AFTER, ["README.md"], status="diverged"),
            "the history was rewritten (comparison status diverged)",
        ),
        (
            lambda api, repo: api.script("compare", Reply(200, ["not", "an", "object"])),
            "the comparison answer is not a JSON object",
        ),
    ],
    ids=["unknown-commit", "server-errors", "truncated", "no-files", "force-push", "not-an-object"],
)
def test_a_failed_or_incomplete_comparison_sends_every_component(services, setup, why):
    with _api(services) as api:
        setup(api, services)
        result = _push(api, services, "refs/heads/main")
    assert result.status == "success"
    [dispatch] = api.requests_for("dispatches")
    assert dispatch.json == _expected_dispatch(services, "refs/heads/main", ",".join(services.components))
    assert why in result.step("components").stdout
    assert f"all components: {why}" in result.summary


# --- when nothing is sent ------------------------------------------------------------------------


def test_a_push_that_touches_no_component_sends_nothing_and_says_why(services):
    with _api(services) as api:
        api.add_comparison(services.full_name, BEFORE, AFTER, files=["README.md", "docs/auth-service.md", "auth"])
        result = _push(api, services, "refs/heads/main")
    assert result.status == "success"
    assert [r.route for r in api.requests] == ["compare"]
    assert api.dispatches == []
    assert result.step("dispatch").ran is False
    assert "### Nothing sent to the central pipeline" in result.summary
    assert "changes 3 files, none of them in a component (auth-service,user-service)" in result.summary


def test_an_identical_comparison_sends_nothing(services):
    with _api(services) as api:
        api.add_comparison(services.full_name, BEFORE, AFTER, files=[], status="identical")
        result = _push(api, services, "refs/heads/main")
    assert api.dispatches == [] and "none of them in a component" in result.summary


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("refs/tags/v1.0.0", "not a main, develop, feature/* or hotfix/* branch"),
        ("refs/heads/hotfix/a/b", "not a main, develop, feature/* or hotfix/* branch"),
        ("refs/heads/feature/a..b", "ref contains '..'"),
    ],
)
def test_a_refused_ref_sends_nothing_and_says_why(services, ref, reason):
    with _api(services) as api:
        result = _push(api, services, ref)
    assert api.requests == []
    assert result.status == "success"
    assert [s.id for s in result.steps if s.ran] == ["decide"]
    assert f"is refused: {reason}." in result.summary
    assert result.step("decide").outputs == {"send": "false", "environment": "", "deploy": "false", "reason": reason}


def test_a_hostile_ref_is_not_echoed_raw(services):
    ref = "refs/heads/x\n::error::injected $(id) `id`"
    with _api(services) as api:
        result = _push(api, services, ref)
    assert api.requests == []
    assert "::error::injected" not in result.log
    assert "$(id)" not in result.log + result.summary
    assert "refs/heads/x???error??injected" in result.summary


def test_a_deleted_branch_sends_nothing(services):
    with _api(services) as api:
        result = _push(api, services, "refs/heads/feature/gone", after=ZERO_SHA)
    assert api.requests == []
    assert "the branch was deleted" in result.summary


# --- retries --------------------------------------------------------------------------------------


def _dispatch_after(api: GitHubAPI, repo: Repo, *replies: Reply, **kwargs) -> JobResult:
    api.add_comparison(repo.full_name, BEFORE, AFTER, files=["auth-service/a.ts"])
    api.script("dispatches", *replies)
    return _push(api, repo, "refs/heads/main", **kwargs)


def test_a_502_is_retried_then_sent(services):
    with _api(services) as api:
        result = _dispatch_after(api, services, Reply.server_error(502))
    assert result.status == "success"
    assert [r.status for r in api.requests_for("dispatches")] == [502, 204]
    first, second = api.requests_for("dispatches")
    assert first.json == second.json == _expected_dispatch(services, "refs/heads/main", "auth-service")
    assert "HTTP 502 from POST" in result.log


def test_a_429_waits_for_retry_after_then_sends(services):
    with _api(services) as api:
        result = _dispatch_after(api, services, Reply.rate_limited(retry_after=1))
    assert result.status == "success"
    limited, sent = api.requests_for("dispatches")
    assert (limited.status, sent.status) == (429, 204)
    assert sent.time - limited.time >= 1.0, "Retry-After was not honoured"
    assert "retrying in 1s" in result.log


def test_a_secondary_rate_limit_403_is_retried_not_reported_as_a_permission_problem(services):
    with _api(services) as api:
        result = _dispatch_after(api, services, Reply.rate_limited(retry_after=0, status=403))
    assert result.status == "success"
    assert [r.status for r in api.requests_for("dispatches")] == [403, 204]


def test_backoff_doubles_between_attempts(services):
    with _api(services) as api:
        result = _dispatch_after(
            api, services, Reply.server_error(503), Reply.server_error(502), extra_env={shell.BASE_DELAY_ENV: "1"}
        )
    assert result.status == "success"
    times = [r.time for r in api.requests_for("dispatches")]
    assert len(times) == 3
    assert times[1] - times[0] >= 1.0 and times[2] - times[1] >= 2.0


def test_retries_give_up_after_the_last_attempt(services):
    with _api(services) as api:
        result = _dispatch_after(api, services, *[Reply.server_error(502)] * shell.MAX_ATTEMPTS)
    assert result.status == "failure"
    assert len(api.requests_for("dispatches")) == shell.MAX_ATTEMPTS
    assert api.dispatches == []
    assert f"giving up after {shell.MAX_ATTEMPTS} attempts" in result.log
    assert "### Dispatch to the central pipeline failed" in result.summary


def test_a_retry_after_beyond_the_budget_fails_at_once(services):
    with _api(services) as api:
        started = time.monotonic()
        result = _dispatch_after(api, services, Reply.rate_limited(retry_after=3600))
    assert time.monotonic() - started < 30
    assert result.status == "failure"
    assert len(api.requests_for("dispatches")) == 1
    assert f"more than the {shell.MAX_TOTAL_WAIT_SECONDS}s retry budget" in result.log


# --- refusals name the secret and the permission ----------------------------------------------------


def test_a_revoked_token_fails_with_401_and_names_the_secret(services):
    with _api(services) as api:
        api.add_comparison(services.full_name, BEFORE, AFTER, files=["auth-service/a.ts"])
        result = _push(api, services, "refs/heads/main", secrets={"DISPATCH_TOKEN": "ghp_revoked"})
    assert result.status == "failure"
    assert result.step("dispatch").exit_code != 0
    [refused] = api.requests_for("dispatches")
    assert refused.status == 401 and refused.headers["authorization"] == "Bearer ghp_revoked"
    assert "HTTP 401 (Bad credentials)" in result.log
    if services.mode == "app":
        assert "does not accept the token minted with the DISPATCH_APP_PRIVATE_KEY secret" in result.log
    else:
        assert "DISPATCH_TOKEN secret" in result.log and "expired or revoked" in result.log
    assert "::error title=Dispatch failed::" in result.step("dispatch").stdout


@pytest.mark.parametrize(
    ("grant", "status", "message"),
    [
        ({"write": False}, 403, "Resource not accessible by integration"),
        ({"repositories": ["DREAMSCAPE-AI/dreamscape-services"]}, 404, "Not Found"),
    ],
    ids=["read-only-token", "token-without-the-infra-repository"],
)
def test_a_token_that_may_not_dispatch_fails_and_names_the_permission(services, grant, status, message):
    with _api(services) as api:
        api.add_token("ghp_readonly", **grant)
        api.add_comparison(services.full_name, BEFORE, AFTER, files=["auth-service/a.ts"])
        result = _push(api, services, "refs/heads/main", secrets={"DISPATCH_TOKEN": "ghp_readonly"})
    assert result.status == "failure"
    assert [r.status for r in api.requests_for("dispatches")] == [status]
    assert f"HTTP {status} ({message})" in result.log
    if services.mode == "app":
        needed = ("DISPATCH_APP_PRIVATE_KEY", "the dispatch App is installed", "Contents: read and write")
    else:
        needed = ("DISPATCH_TOKEN", "the repo scope", "Contents: read and write")
    for text in (*needed, services.infra):
        assert text in result.log
    assert "### Dispatch to the central pipeline failed" in result.summary


def test_a_scripted_403_for_a_token_without_rights_is_not_retried(services):
    with _api(services) as api:
        result = _dispatch_after(api, services, Reply.forbidden())
    assert result.status == "failure"
    assert [r.status for r in api.requests_for("dispatches")] == [403]
    assert "Resource not accessible by personal access token" in result.log


def test_a_missing_secret_fails_before_any_dispatch(services):
    with _api(services) as api:
        api.add_comparison(services.full_name, BEFORE, AFTER, files=["auth-service/a.ts"])
        result = _push(api, services, "refs/heads/main", secrets={})
    assert result.status == "failure"
    assert api.requests_for("dispatches") == []
    if services.mode == "app":
        # No key, no token: the mint step stops the job, as the action does.
        assert result.step("token").outcome == "failure"
        assert "private-key" in result.step("token").stderr
    else:
        assert "The DISPATCH_TOKEN secret is empty or not visible" in result.log


def test_repository_variables_are_not_read(services):
    """What the file was rendered with wins over repository variables (those of an older setup included)."""
    stale = {
        "CENTRAL_CICD_REPOSITORY": services.full_name,
        "CENTRAL_CICD_EVENT_TYPE": "docs-changed",
        "CENTRAL_CICD_COMPONENTS": "user-service",
        "CENTRAL_REPOSITORY": services.full_name,
        "EVENT_TYPE": "docs-changed",
        "KNOWN_COMPONENTS": "user-service",
    }
    with _api(services) as api:
        api.add_comparison(services.full_name, BEFORE, AFTER, files=["auth-service/a.ts"])
        result = _push(api, services, "refs/heads/main", variables=stale)
    assert result.status == "success"
    assert api.dispatches == [(services.infra, _expected_dispatch(services, "refs/heads/main", "auth-service"))]
    assert not re.search(r"\bvars\s*\.", services.workflow, re.IGNORECASE)


# --- the shell decides as the Python rules do -------------------------------------------------------


def test_the_rendered_decision_equals_the_rules_on_the_ref_corpus(services):
    """Every ref of the corpus through the whole job: decision, reason, and whether anything is sent."""
    assert len(REFS) >= 200

    with _api(services) as api:

        def one(ref: str):
            github = dispatch_context(services.full_name, ref, AFTER, api_url=api.url, token=JOB_TOKEN)
            return ref, _run(api, services, github)

        with ThreadPoolExecutor(max_workers=4) as pool:
            runs = list(pool.map(one, REFS))
    sent_by_ref: dict[str, list[dict]] = {}
    for _, body in api.dispatches:
        sent_by_ref.setdefault(body["client_payload"]["ref"], []).append(body["client_payload"])
    outcomes = [(ref, result, sent_by_ref.get(ref, [])) for ref, result in runs]

    mismatches = []
    for ref, result, dispatches in outcomes:
        expected = rules.classify_ref(ref)
        decide = result.step("decide").outputs
        got = (decide.get("environment") or None, decide.get("deploy") == "true", decide.get("send") == "true")
        want = (expected.environment, expected.deploy, expected.sends)
        sent = dispatches
        want_sent = [_expected_dispatch(services, ref, ",".join(services.components))["client_payload"]]
        if got != want or sent != (want_sent if expected.sends else []) or result.status != "success":
            mismatches.append((ref, got, want, len(sent)))
        elif ref.isascii() and decide["reason"] != expected.reason:
            mismatches.append((ref, decide["reason"], expected.reason))
    assert mismatches == []
    assert sum(1 for _, _, d in outcomes if d) == sum(1 for r in REFS if rules.classify_ref(r).sends) >= 30
