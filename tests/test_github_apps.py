"""GitHub App mode (`githubAuth: app`): config, the plan, and the workflows minting their tokens.

The workflows run with real bash against the GitHub API stand-in; `actions/create-github-app-token`
is the stand-in of tests/harness/github_app.py, which mints tokens the API stand-in then holds
to the repositories and permissions asked for, within what each App was granted and where it
is installed.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import settings as settings_module
from components.workflows import central, credentials, trigger
from tests.central_support import (
    APP_CONFIG,
    DISPATCH_APP_ID,
    PIPELINE_APP_ID,
    PLATFORMS,
    RETRY_ENV,
    Artifacts,
    data_files,
    dispatch_github,
    infra,
    payload,
    settings_of,
    sha_of,
)
from tests.conftest import ROOT, plan_with, require_tool
from tests.harness.github_api import GitHubAPI, Ruleset
from tests.harness.github_app import App, CreateAppToken, app_key
from tests.harness.workflow import Context, JobResult, push_context, run_job
from tests.test_credentials import call
from tools import offline

DISPATCH_ID = DISPATCH_APP_ID
PIPELINE_ID = PIPELINE_APP_ID
DISPATCH_KEY = app_key()
PIPELINE_KEY = app_key()
SECRETS = {"dispatchAppPrivateKey": DISPATCH_KEY, "pipelineAppPrivateKey": PIPELINE_KEY}
SETTINGS = settings_of("production", **APP_CONFIG)
INFRA = infra(SETTINGS)
SOURCES = [f"{SETTINGS.github_owner}/{r.name}" for r in SETTINGS.source_repositories]
SERVICES = next(r for r in SETTINGS.source_repositories if r.kind == "services")
SERVICES_FULL = f"{SETTINGS.github_owner}/{SERVICES.name}"
FILE = "github:index/repositoryFile:RepositoryFile"
SECRET = "github:index/actionsSecret:ActionsSecret"


def dispatch_app() -> App:
    """As the README says to create it: Contents read and write, installed on the infra repository only."""
    return App("dreamscape-dispatch", DISPATCH_ID, DISPATCH_KEY, {"contents": "write"}, [INFRA])


def pipeline_app() -> App:
    """Contents read, Commit statuses read and write, installed on the source repositories only."""
    return App("dreamscape-pipeline", PIPELINE_ID, PIPELINE_KEY, {"contents": "read", "statuses": "write"}, SOURCES)


@pytest.fixture(scope="module")
def plan():
    return plan_with("production", secret=SECRETS, **APP_CONFIG)


def files(plan, path: str) -> dict[str, str]:
    """`repository@branch` -> content of each file at `path` in the plan."""
    return {
        f"{r.plain('repository')}@{r.plain('branch')}": r.plain("content")
        for r in plan.of_type(FILE)
        if r.plain("file") == path
    }


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"githubAuth": "app", "pipelineAppClientId": PIPELINE_ID},
            "dispatchAppClientId: required with githubAuth: app",
        ),
        ({**APP_CONFIG, "dispatchToken": "[secret]"}, "dispatchToken: used only with githubAuth: token"),
        ({"dispatchAppClientId": DISPATCH_ID}, "dispatchAppClientId: used only with githubAuth: app"),
        ({**APP_CONFIG, "pipelineAppClientId": "12345"}, "pipelineAppClientId: expected a GitHub App client id"),
        ({**APP_CONFIG, "githubAuth": "oauth"}, "githubAuth: expected one of token, app"),
    ],
)
def test_each_mode_takes_its_own_keys(changes, message) -> None:
    raw = settings_module.merged_plain_config("production")
    raw.update(changes)
    if raw.get("githubAuth") == "app":
        raw.update({key: "[secret]" for key in SECRETS})
    else:
        raw.setdefault("dispatchToken", "[secret]")
        raw.setdefault("pipelineToken", "[secret]")
    with pytest.raises(settings_module.ConfigError, match=re.escape(message)):
        settings_module.parse({k: v for k, v in raw.items() if v is not None}, "production")


def test_the_wiring_stack_needs_both_app_keys() -> None:
    raw = settings_module.merged_plain_config("production") | APP_CONFIG
    raw = {k: v for k, v in raw.items() if v is not None} | {"dispatchAppPrivateKey": "[secret]"}
    with pytest.raises(settings_module.ConfigError, match="pipelineAppPrivateKey: required on the stack that owns"):
        settings_module.parse(raw, "production")


# --- the plan -------------------------------------------------------------------------------------


def test_the_apps_keys_go_where_each_side_mints_and_no_token_secret_is_written(plan) -> None:
    written = {(r.plain("repository"), r.plain("secretName")) for r in plan.of_type(SECRET)}
    names = {name for _, name in written}
    assert not names & {credentials.DISPATCH.secret, credentials.PIPELINE.secret}
    assert (SETTINGS.infra_repository, credentials.PIPELINE_APP.secret) in written
    for repo in SETTINGS.source_repositories:
        assert (repo.name, credentials.DISPATCH_APP.secret) in written
        assert (repo.name, credentials.PIPELINE_APP.secret) not in written
    values = {r.plain("secretName"): r for r in plan.of_type(SECRET)}
    assert values[credentials.PIPELINE_APP.secret].plain("value") == PIPELINE_KEY
    assert values[credentials.DISPATCH_APP.secret].plain("value") == DISPATCH_KEY
    for resource in plan.of_type(SECRET):
        assert offline.is_secret(resource.inputs["value"]), resource.name
    needs = "\n".join(plan.outputs["githubTokenNeeds"])
    assert credentials.DISPATCH_APP.secret in needs and credentials.PIPELINE_APP.secret in needs
    assert "DISPATCH_TOKEN (" not in needs


def test_each_trigger_mints_a_contents_write_token_for_the_infra_repository_only(plan) -> None:
    triggers = files(plan, trigger.PATH)
    assert len(triggers) == 2 * len(SETTINGS.source_repositories)
    for text in triggers.values():
        steps = yaml.safe_load(text)["jobs"]["dispatch"]["steps"]
        [mint] = [s for s in steps if s.get("uses", "").startswith("actions/create-github-app-token@")]
        assert mint["with"] == {
            "client-id": DISPATCH_ID,
            "private-key": "${{ secrets.DISPATCH_APP_PRIVATE_KEY }}",
            "owner": SETTINGS.github_owner,
            "repositories": SETTINGS.infra_repository,
            "permission-contents": "write",
        }
        [dispatch] = [s for s in steps if s.get("id") == "dispatch"]
        assert dispatch["env"][trigger.SECRET] == "${{ steps.token.outputs.token }}"
        assert "secrets.DISPATCH_TOKEN" not in text


def test_only_resolve_deploy_and_report_mint_the_pipeline_token(plan) -> None:
    [text] = files(plan, central.PATH).values()
    document = yaml.safe_load(text)
    for job_id, job in document["jobs"].items():
        mints = [s for s in job["steps"] if s.get("uses", "").startswith("actions/create-github-app-token@")]
        if job_id not in central.MINTED:
            assert mints == [], job_id
            assert "secrets." not in json.dumps(job).replace("secrets.GITHUB_TOKEN", ""), job_id
            continue
        [mint] = mints
        wanted = {f"permission-{scope}": level for scope, level in central.MINTED[job_id].items()}
        assert {k: v for k, v in mint["with"].items() if k.startswith("permission-")} == wanted
        assert mint["with"]["private-key"] == "${{ secrets.PIPELINE_APP_PRIVATE_KEY }}"
        assert mint["with"]["client-id"] == PIPELINE_ID
        assert "if" in mint, f"{job_id}: an empty repositories input would mint for every installed repository"
    assert "secrets.PIPELINE_TOKEN" not in text
    assert document["jobs"]["build-test"]["permissions"] == {}
    assert "secrets." not in json.dumps(document["jobs"]["build-test"])


def test_app_mode_files_pass_the_static_checks(plan, tmp_path: Path) -> None:
    zizmor = require_tool("zizmor", "PyPI zizmor (requirements.txt)")
    checker = require_tool("check-jsonschema", "PyPI check-jsonschema (requirements.txt)")
    written = []
    for path in (central.PATH, trigger.PATH):
        for where, text in files(plan, path).items():
            target = tmp_path / where / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            written.append(target)
    for target in written:
        commands = [
            [zizmor, "--offline", "--no-config", str(target)],
            [checker, "--builtin-schema", "vendor.github-workflows", str(target)],
        ]
        if target.name == Path(central.PATH).name:
            # The central workflow is also held to the pedantic persona, with zizmor.yml's reasons.
            commands.append(
                [zizmor, "--offline", "--persona", "pedantic", "--config", str(ROOT / "zizmor.yml"), str(target)]
            )
        for command in commands:
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, f"{target}: {result.stdout}{result.stderr}"


# --- the trigger, run -------------------------------------------------------------------------------


def test_the_trigger_dispatches_with_a_minted_token_that_can_do_nothing_else(plan) -> None:
    text = files(plan, trigger.PATH)[f"{SERVICES.name}@main"]
    job_token = "ghs_job_token_of_the_source_repository"
    app = dispatch_app()
    before, after = "1" * 40, "2" * 40
    with GitHubAPI(repositories=[INFRA, *SOURCES]) as api:
        api.add_token(job_token, repositories=[SERVICES_FULL], write=False)
        api.add_comparison(SERVICES_FULL, before, after, files=["auth-service/index.js"])
        api.add_ruleset(INFRA, Ruleset("branch", frozenset({"creation", "update", "deletion"}), frozenset()))
        api.branch_heads[(INFRA.lower(), "main")] = after
        result = run_job(
            yaml.safe_load(text),
            "dispatch",
            Context(
                github=push_context(SERVICES_FULL, "refs/heads/main", before, after, api_url=api.url, token=job_token),
                secrets={credentials.DISPATCH_APP.secret: DISPATCH_KEY},
            ),
            extra_env=RETRY_ENV,
            uses={"actions/create-github-app-token": CreateAppToken(api, app)},
        )
        assert result.status == "success", result.log
        [minted] = app.minted
        assert minted.repositories == (INFRA.lower(),)
        assert minted.permissions == {"contents": "write"}
        [(target, body)] = api.dispatches
        assert target == INFRA and body["client_payload"]["component"] == "auth-service"
        assert [r.token for r in api.requests_for("dispatches")] == [minted.token]
        # What a thief holding that token (or the key, minting the same) gets: nothing else.
        for source in SOURCES:
            assert call(api, minted.token, "GET", f"/repos/{source}/compare/{before}...main")[0] == 404
            assert call(api, minted.token, "POST", f"/repos/{source}/statuses/{after}", {"state": "success"})[0] == 404
        status, _ = call(api, minted.token, "POST", f"/repos/{INFRA}/git/refs", {"ref": "refs/heads/x", "sha": after})
        assert status == 422
    assert DISPATCH_KEY not in result.log + result.summary


def test_the_dispatch_app_cannot_mint_for_a_source_repository() -> None:
    """The App is installed on the infra repository only: a key thief asking for more is refused."""
    app = dispatch_app()
    with GitHubAPI(repositories=[INFRA, *SOURCES]) as api:
        mint = CreateAppToken(api, app)
        env = {"GITHUB_REPOSITORY": SERVICES_FULL, "GITHUB_REPOSITORY_OWNER": SETTINGS.github_owner}
        base = {"client-id": DISPATCH_ID, "private-key": DISPATCH_KEY, "owner": SETTINGS.github_owner}
        with pytest.raises(RuntimeError, match="not installed on"):
            mint({}, {**base, "repositories": SERVICES.name}, env)
        with pytest.raises(RuntimeError, match="not granted"):
            mint({}, {**base, "repositories": SETTINGS.infra_repository, "permission-workflows": "write"}, env)
        with pytest.raises(RuntimeError, match="could not be decoded"):
            mint({}, {**base, "private-key": PIPELINE_KEY, "repositories": SETTINGS.infra_repository}, env)
    assert app.minted == []


# --- the pipeline, run ------------------------------------------------------------------------------


def run_pipeline_job(
    document: dict[str, Any], job: str, api: GitHubAPI, app: App, github: dict[str, Any], needs=None
) -> JobResult:
    artifacts = Artifacts({"auth-service/Dockerfile": "FROM scratch\n"}, infra=data_files(SETTINGS))
    return run_job(
        document,
        job,
        Context(
            github=github,
            secrets={credentials.PIPELINE_APP.secret: PIPELINE_KEY},
            vars=PLATFORMS,
            needs=needs or {},
        ),
        extra_env=RETRY_ENV,
        uses={**artifacts.table(), "actions/create-github-app-token": CreateAppToken(api, app)},
    )


@pytest.fixture(scope="module")
def pipeline() -> dict[str, Any]:
    return central.document(central.CentralArgs.from_settings(SETTINGS))


def test_resolve_mints_for_the_one_source_repository_of_the_run(pipeline) -> None:
    app = pipeline_app()
    sha = sha_of("app", "accepted")
    with GitHubAPI(repositories=[INFRA, *SOURCES]) as api:
        api.add_comparison(SERVICES_FULL, sha, "main", status="identical")
        sent = payload(SETTINGS, SERVICES.name, "refs/heads/main", sha, ["auth-service"], "production")
        result = run_pipeline_job(
            pipeline, "resolve", api, app, dispatch_github(SETTINGS, api, SERVICES.event_type, sent)
        )
        assert result.status == "success", result.log
        [minted] = app.minted
        assert minted.repositories == (SERVICES_FULL.lower(),)
        assert minted.permissions == {"contents": "read", "statuses": "write"}
        assert {r.token for r in api.requests} == {minted.token}
        [pending] = api.statuses[(SERVICES_FULL.lower(), sha)]
        assert pending["state"] == "pending"
        # That token reaches no other source repository.
        other = SOURCES[1]
        assert call(api, minted.token, "GET", f"/repos/{other}/compare/{sha}...main")[0] == 404
    checkout = next(c for c in result.steps if c.name == "Check out the source repository at the commit")
    assert checkout.ran
    assert PIPELINE_KEY not in result.log


def test_a_refusal_on_a_configured_repository_is_reported_with_a_minted_token(pipeline) -> None:
    app = pipeline_app()
    sha = sha_of("app", "refused")
    with GitHubAPI(repositories=[INFRA, *SOURCES]) as api:
        sent = payload(SETTINGS, SERVICES.name, "refs/heads/main", sha, ["billing"], "production")
        result = run_pipeline_job(
            pipeline, "resolve", api, app, dispatch_github(SETTINGS, api, SERVICES.event_type, sent)
        )
        assert result.status == "failure"
        [minted] = app.minted
        assert minted.repositories == (SERVICES_FULL.lower(),)
        [error] = api.statuses[(SERVICES_FULL.lower(), sha)]
        assert error["state"] == "error" and "billing is not a component" in error["description"]
        assert api.requests_for("compare") == []


@pytest.mark.parametrize("named", ["attacker/dreamscape-services", "DREAMSCAPE-AI/dreamscape-infra", ""])
def test_no_token_is_minted_for_a_repository_that_is_not_configured(pipeline, named: str) -> None:
    app = pipeline_app()
    sha = sha_of("app", "unknown", named)
    with GitHubAPI(repositories=[INFRA, *SOURCES]) as api:
        sent = payload(SETTINGS, SERVICES.name, "refs/heads/main", sha, ["auth-service"], "production")
        sent["source_repo"] = named
        result = run_pipeline_job(
            pipeline, "resolve", api, app, dispatch_github(SETTINGS, api, SERVICES.event_type, sent)
        )
        assert result.status == "failure"
        assert app.minted == []
        assert api.requests == []
    assert "is not a configured repository" in result.summary or "source_repo is missing" in result.summary


def test_report_mints_a_statuses_token_for_the_resolved_repository_only(pipeline) -> None:
    app = pipeline_app()
    sha = sha_of("app", "report")
    resolved = {
        "environment": "production",
        "deploy": "false",
        "components": '["auth-service"]',
        "source_repo": SERVICES_FULL,
        "ref": "refs/heads/main",
        "sha": sha,
        "platform": "",
        "builds": "{}",
    }
    needs = {"resolve": {"result": "success", "outputs": resolved}}
    for job in ("build-test", "security-scan"):
        needs[job] = {"result": "success", "outputs": {}}
    for job in ("publish", "deploy"):
        needs[job] = {"result": "skipped", "outputs": {}}
    with GitHubAPI(repositories=[INFRA, *SOURCES]) as api:
        result = run_pipeline_job(pipeline, "report", api, app, dispatch_github(SETTINGS, api, "x", {}), needs)
        assert result.status == "success", result.log
        [minted] = app.minted
        assert (minted.repositories, minted.permissions) == ((SERVICES_FULL.lower(),), {"statuses": "write"})
        [final] = api.statuses[(SERVICES_FULL.lower(), sha)]
        assert final["state"] == "success"
        # Statuses only: it reads nothing.
        assert call(api, minted.token, "GET", f"/repos/{SERVICES_FULL}/compare/{sha}...main")[0] == 403
