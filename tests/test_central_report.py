"""The central pipeline's `report` job: the final commit status for every combination of job results.

The rendered job runs (its checkout of the pipeline's code, then `python3 -m ci.report`) against
the GitHub API stand-in, with the `needs` context GitHub would give it; `ci.report`'s decision is
also called directly. The expected state is the rule written out below, independently of both.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from ci import report
from components.workflows import central, credentials
from tests.central_support import (
    APP_CONFIG,
    DISPATCH_TOKEN,
    RETRY_ENV,
    Artifacts,
    central_document,
    dispatch_github,
    in_parallel,
    pipeline_credential,
    settings_of,
    sha_of,
    stand_in,
)
from tests.harness.github_api import GitHubAPI, Reply
from tests.harness.workflow import Context, JobResult, run_job

STACK = "production"
SETTINGS = settings_of(STACK)
SOURCE = f"{SETTINGS.github_owner}/dreamscape-services"
RESULTS = ("success", "failure", "cancelled", "skipped")
JOBS = central.REPORTED_JOBS


@pytest.fixture(scope="module", params=credentials.MODES)
def workflow(request, plan_of) -> dict[str, Any]:
    """The production stack's report job, in each credential mode (App mode mints the token first)."""
    if request.param == "app":
        return central.document(central.CentralArgs.from_settings(settings_of(STACK, **APP_CONFIG)))
    return central_document(plan_of(STACK))


def expected_state(results: dict[str, str], deploy: bool) -> str:
    """The rule: anything that failed is a failure; anything that did not finish is an error."""
    others = [results[job] for job in JOBS if job != "resolve"]
    if results["resolve"] != "success":
        return "error"
    if "failure" in others:
        return "failure"
    if "cancelled" in others:
        return "error"
    if results["build-test"] != "success" or results["security-scan"] != "success":
        return "error"
    if deploy:
        return "success" if results["publish"] == results["deploy"] == "success" else "error"
    return "success" if results["publish"] == results["deploy"] == "skipped" else "error"


def resolve_outputs(sha: str, deploy: bool) -> dict[str, str]:
    return {
        "environment": "production",
        "deploy": "true" if deploy else "false",
        "components": '["auth-service","user-service"]',
        "source_repo": SOURCE,
        "ref": "refs/heads/main",
        "sha": sha,
    }


def run_report(
    workflow, api: GitHubAPI, results: dict[str, str], outputs: dict[str, str], superseded: str = ""
) -> JobResult:
    needs = {job: {"result": results[job], "outputs": outputs if job == "resolve" else {}} for job in JOBS}
    needs["deploy"]["outputs"] = {"superseded": superseded} if results["deploy"] == "success" else {}
    github = dispatch_github(SETTINGS, api, "services-changed", {})
    secrets, uses = pipeline_credential(workflow, "report", SETTINGS)
    context = Context(github=github, secrets=secrets, needs=needs)
    return run_job(workflow, "report", context, extra_env=RETRY_ENV, uses={**Artifacts().table(), **uses})


def combinations() -> list[tuple[dict[str, str], bool, bool]]:
    """(results, deploy, resolve's outputs known) for every combination of results.

    Resolve's outputs exist only once it accepted the request; a resolve that did not succeed
    is tried both with them (cancelled after posting pending) and without (refused).
    """
    out = []
    for values in itertools.product(RESULTS, repeat=len(JOBS)):
        results = dict(zip(JOBS, values, strict=True))
        if results["resolve"] == "success":
            out += [(results, True, True), (results, False, True)]
        else:
            out += [(results, True, True), (results, False, False)]
    return out


def at_most_two_unsuccessful(case: tuple[dict[str, str], bool, bool]) -> bool:
    return sum(result != "success" for result in case[0].values()) <= 2


def test_report_posts_the_right_state_through_the_rendered_job(workflow) -> None:
    """The rendered job, run with bash and Python as GitHub runs it, for every combination in
    which at most two jobs did not succeed (every pair of outcomes); the decision alone is held to
    all 2,048 combinations below, without a runner."""
    cases = [case for case in combinations() if at_most_two_unsuccessful(case)]
    assert len(cases) == 2 * (1 + len(JOBS) * 3 + 10 * 3 * 3)
    with stand_in(SETTINGS) as api:

        def run(case):
            results, deploy, known = case
            sha = sha_of("report", sorted(results.items()), deploy, known)
            outputs = resolve_outputs(sha, deploy) if known else {}
            return case, sha, run_report(workflow, api, results, outputs)

        wrong = []
        for (results, deploy, known), sha, result in in_parallel(run, cases):
            posted = api.statuses.get((SOURCE.lower(), sha), [])
            rows = re.findall(r"^\| ([a-z-]+) \| ([a-z]+) \|$", result.summary, re.MULTILINE)
            summary_results = {job: value for job, value in rows if job in JOBS}
            if summary_results != results:
                wrong.append((results, "summary lists", summary_results))
            if result.status != "success":
                wrong.append((results, "report job", result.status, result.log))
            if not known:
                if posted:
                    wrong.append((results, "posted without a commit", posted))
                continue
            state = expected_state(results, deploy)
            if [s["state"] for s in posted] != [state]:
                wrong.append((results, deploy, "expected", state, "posted", posted))
            elif not 0 < len(posted[0]["description"]) <= 140:
                wrong.append((results, "description", posted[0]["description"]))
            elif f"### Central CI/CD: {state}" not in result.summary:
                wrong.append((results, "summary title", result.summary))
        assert wrong == []
        assert {r.token for r in api.requests} == {DISPATCH_TOKEN}


def test_the_decision_alone_gives_the_right_state_for_every_combination_of_results() -> None:
    """`ci.report.verdict` without a runner: the same rule, and a description GitHub accepts."""
    wrong = []
    cases = combinations()
    assert len(cases) == 2 * len(RESULTS) ** len(JOBS)
    for results, deploy, _ in cases:
        run = report.Run(results=results, environment="production", deploy=deploy, superseded="")
        state, description = report.verdict(run)
        if state != expected_state(results, deploy) or not 0 < len(description) <= 140:
            wrong.append((results, deploy, state, description))
    assert wrong == []


def test_a_failure_names_every_failed_job_in_order() -> None:
    results = {"resolve": "success", "build-test": "failure", "security-scan": "success"}
    results |= {"publish": "failure", "deploy": "skipped"}
    assert report.verdict(report.Run(results=results, deploy=True)) == ("failure", "Failed: build-test, publish")


def test_resolve_outputs_that_are_not_a_json_list_show_no_components() -> None:
    env = {report.result_variable(job): "success" for job in JOBS} | {"COMPONENTS_JSON": "not json"}
    assert report.Run.from_env(env).components == ()
    env["COMPONENTS_JSON"] = '["auth-service","user-service"]'
    assert report.Run.from_env(env).components == ("auth-service", "user-service")
    assert report.result_variable("security-scan") == "SECURITY_SCAN_RESULT"


def test_the_job_checks_out_only_the_pipeline_code_at_the_run_commit(workflow) -> None:
    # A private infra repository is readable by the job's own token only with this scope.
    assert workflow["jobs"]["report"]["permissions"] == {"contents": "read"}
    with stand_in(SETTINGS) as api:
        artifacts = Artifacts()
        results = dict.fromkeys(JOBS, "success")
        needs = {job: {"result": results[job], "outputs": {}} for job in JOBS}
        needs["resolve"]["outputs"] = resolve_outputs(sha_of("checkout"), True)
        secrets, uses = pipeline_credential(workflow, "report", SETTINGS)
        context = Context(github=dispatch_github(SETTINGS, api, "services-changed", {}), needs=needs, secrets=secrets)
        result = run_job(workflow, "report", context, extra_env=RETRY_ENV, uses={**artifacts.table(), **uses})
    assert result.status == "success", result.log
    [checkout] = artifacts.called("actions/checkout")
    assert checkout == {
        "ref": "f" * 40,  # github.sha: the infra repository's commit this run was started at
        "persist-credentials": False,
        "sparse-checkout": "\n".join(f"/{path}" for path in central.PIPELINE_CODE),
        "sparse-checkout-cone-mode": False,
    }
    [step] = [s for s in result.steps if s.uses is None]
    assert step.env["PATH"].split(":")[0].endswith("runner-bin"), "the runner's python3, not a virtualenv's"


@pytest.mark.parametrize(
    ("results", "deploy", "state", "description"),
    [
        (("success",) * 5, True, "success", "Built, tested, scanned and deployed to production"),
        (("success",) * 3 + ("skipped",) * 2, False, "success", "Built, tested and scanned; not deployed"),
        (("success", "failure", "success", "skipped", "skipped"), True, "failure", "Failed: build-test"),
        (("success", "failure", "failure") + ("skipped",) * 2, True, "failure", "Failed: build-test, security-scan"),
        (("success",) * 3 + ("failure", "skipped"), True, "failure", "Failed: publish"),
        (("success",) * 4 + ("failure",), True, "failure", "Failed: deploy"),
        (("success", "success", "cancelled", "skipped", "skipped"), True, "error", "Cancelled before the end"),
        (("success",) * 3 + ("skipped",) * 2, True, "error", "The publish or the deploy to production did not run"),
        (("cancelled",) + ("skipped",) * 4, True, "error", "Refused or interrupted before the build"),
    ],
)
def test_report_descriptions(workflow, results, deploy, state, description) -> None:
    with stand_in(SETTINGS) as api:
        sha = sha_of("described", results, deploy)
        result = run_report(workflow, api, dict(zip(JOBS, results, strict=True)), resolve_outputs(sha, deploy))
        [status] = api.statuses[(SOURCE.lower(), sha)]
    assert result.status == "success", result.log
    assert (status["state"], status["description"][: len(description)]) == (state, description)
    assert status["context"] == central.STATUS_CONTEXT
    assert status["target_url"] == "https://github.com/DREAMSCAPE-AI/dreamscape-infra/actions/runs/1000001"


def test_a_superseded_run_succeeds_and_says_which_commit_superseded_it(workflow) -> None:
    newer = sha_of("newer commit")
    with stand_in(SETTINGS) as api:
        sha = sha_of("superseded")
        results = dict.fromkeys(JOBS, "success")
        result = run_report(workflow, api, results, resolve_outputs(sha, True), superseded=newer)
        [status] = api.statuses[(SOURCE.lower(), sha)]
    assert result.status == "success", result.log
    assert status["state"] == "success"
    assert status["description"] == f"Built, tested and scanned; not deployed: superseded by {newer[:12]}"


def test_the_summary_table_shows_the_run(workflow) -> None:
    with stand_in(SETTINGS) as api:
        sha = sha_of("table")
        result = run_report(workflow, api, dict.fromkeys(JOBS, "success"), resolve_outputs(sha, True))
    rows = dict(re.findall(r"^\| ([a-z-]+) \| (.+) \|$", result.summary, re.MULTILINE))
    assert rows["source"] == f"`{SOURCE}`"
    assert rows["ref"] == "`refs/heads/main`"
    assert rows["sha"] == f"`{sha}`"
    assert rows["environment"] == "`production` (deploy: true)"
    assert rows["components"] == "`auth-service, user-service`"
    assert all(rows[job] == "success" for job in JOBS)


def test_a_refused_request_gets_a_summary_but_no_status(workflow) -> None:
    with stand_in(SETTINGS) as api:
        results = {"resolve": "failure", **dict.fromkeys(JOBS[1:], "skipped")}
        result = run_report(workflow, api, results, {})
        assert api.requests == []
    assert result.status == "success"
    assert "| source | (not resolved) |" in result.summary
    assert "Commit status: none: the request was refused before a commit was known" in result.summary


def test_report_fails_when_the_final_status_cannot_be_posted(workflow) -> None:
    with stand_in(SETTINGS) as api:
        api.script("statuses", Reply.forbidden())
        sha = sha_of("forbidden")
        result = run_report(workflow, api, dict.fromkeys(JOBS, "success"), resolve_outputs(sha, True))
    assert result.status == "failure"
    assert "::error title=No final status::HTTP 403" in result.log
    assert "check that PIPELINE_TOKEN may write commit statuses" in result.log


DOCS_EXAMPLE_SHA = "5d1c0e7a9b3f42c8e6a1d0f9b7c4e2a8f3b6d9c1"
"""The commit of the example in docs/central.md."""


DOCS_EXAMPLES = {
    "deployed": dict.fromkeys(JOBS, "success"),
    "failed": {
        "resolve": "success",
        "build-test": "failure",
        "security-scan": "skipped",
        "publish": "skipped",
        "deploy": "skipped",
    },
}
"""The job results of each example in docs/central.md (a production run from main)."""


def example_summary(workflow, example: str) -> str:
    """The report's summary for one of DOCS_EXAMPLES, as docs/central.md shows it."""
    with stand_in(SETTINGS) as api:
        result = run_report(workflow, api, DOCS_EXAMPLES[example], resolve_outputs(DOCS_EXAMPLE_SHA, True))
    assert result.status == "success", result.log
    return result.summary


@pytest.mark.parametrize("example", sorted(DOCS_EXAMPLES))
def test_the_documented_summaries_are_what_the_report_writes(workflow, example: str) -> None:
    from tests.conftest import ROOT

    docs = (ROOT / "docs" / "central.md").read_text()
    marker = f"<!-- report summary: {example} -->\n```markdown\n"
    assert marker in docs
    assert docs.split(marker, 1)[1].split("```", 1)[0] == example_summary(workflow, example)
