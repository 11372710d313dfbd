"""The central pipeline's `report` job: the final status on the source commit, and the job summary.

    python3 -m ci.report

Inputs (environment): each reported job's result (`RESOLVE_RESULT`, `BUILD_TEST_RESULT`, ...),
resolve's outputs (`SOURCE_REPO`, `REF`, `SHA`, `ENVIRONMENT`, `DEPLOY`, `COMPONENTS_JSON`),
the deploy job's `SUPERSEDED`, and PIPELINE_TOKEN for the statuses API. The job fails only
when the source commit did not get its final status.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from ci import github, runner

JOBS = ("resolve", "build-test", "security-scan", "publish", "deploy")
"""The jobs whose results the report lists and judges, in the workflow's order."""


def result_variable(job: str) -> str:
    """`build-test` -> `BUILD_TEST_RESULT`: where the workflow hands a job's result over."""
    return job.upper().replace("-", "_") + "_RESULT"


@dataclass(frozen=True)
class Run:
    results: Mapping[str, str]
    """Each of JOBS -> success, failure, cancelled or skipped."""
    source_repo: str = ""
    ref: str = ""
    sha: str = ""
    environment: str = ""
    deploy: bool = False
    components: tuple[str, ...] = ()
    superseded: str = ""
    """The newer commit the deploy job found at the branch head, when it deployed nothing."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Run:
        try:
            names = json.loads(env.get("COMPONENTS_JSON") or "[]")
        except ValueError:
            names = []
        return cls(
            results={job: env.get(result_variable(job), "") for job in JOBS},
            source_repo=env.get("SOURCE_REPO", ""),
            ref=env.get("REF", ""),
            sha=env.get("SHA", ""),
            environment=env.get("ENVIRONMENT", ""),
            deploy=env.get("DEPLOY") == "true",
            components=tuple(str(n) for n in names) if isinstance(names, list) else (),
            superseded=env.get("SUPERSEDED", ""),
        )


def verdict(run: Run) -> tuple[str, str]:
    """The final state and its description: what failed is a failure, what did not finish an error."""
    results = run.results
    others = [results[job] for job in JOBS[1:]]
    if results["resolve"] != "success":
        return "error", "Refused or interrupted before the build: see the run"
    if "failure" in others:
        return "failure", "Failed: " + ", ".join(job for job in JOBS[1:] if results[job] == "failure")
    if "cancelled" in others:
        return "error", "Cancelled before the end: see the run"
    if results["build-test"] != "success" or results["security-scan"] != "success":
        return "error", "Build, test or scan did not run: see the run"
    published = (results["publish"], results["deploy"])
    if run.deploy and published != ("success", "success"):
        return "error", f"The publish or the deploy to {run.environment} did not run: see the run"
    if not run.deploy and published != ("skipped", "skipped"):
        return "error", "A publish or a deploy ran that was not planned: see the run"
    if run.deploy and run.superseded:
        return "success", f"Built, tested and scanned; not deployed: superseded by {run.superseded[:12]}"
    if run.deploy:
        return "success", f"Built, tested, scanned and deployed to {run.environment}"
    return "success", f"Built, tested and scanned; not deployed ({run.environment})"


def summary(run: Run, state: str, description: str, posted: str) -> str:
    """The job summary: the run's request, each job's result, and what was posted."""

    def shown(value: str) -> str:
        return f"`{value}`" if value else "(not resolved)"

    lines = [
        f"### Central CI/CD: {state}",
        "",
        description,
        "",
        "| | |",
        "| --- | --- |",
        f"| source | {shown(run.source_repo)} |",
        f"| ref | {shown(run.ref)} |",
        f"| sha | {shown(run.sha)} |",
        f"| environment | {shown(run.environment)} (deploy: {'true' if run.deploy else 'false'}) |",
        f"| components | {shown(', '.join(run.components))} |",
        "",
        "| job | result |",
        "| --- | --- |",
        *(f"| {job} | {run.results[job]} |" for job in JOBS),
        "",
        f"Commit status: {posted}.",
    ]
    return "\n".join(lines) + "\n"


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    run = Run.from_env(env)
    state, description = verdict(run)
    failed = False
    if not run.source_repo or not run.sha:
        posted = "none: the request was refused before a commit was known (see the resolve job)"
    else:
        api = github.GitHub(env.get(github.TOKEN_VARIABLE, ""), env=env)
        answer = api.post_status(run.source_repo, run.sha, state, description, github.run_url(env))
        if answer.ok:
            posted = f"{state} on {run.source_repo} {run.sha}"
        else:
            failed = True
            posted = f"failed: HTTP {answer.status:03d} from the statuses API"
            runner.annotate(
                "error",
                "No final status",
                f"HTTP {answer.status:03d} ({answer.message()}): check that {github.TOKEN_VARIABLE}"
                f" may write commit statuses on {run.source_repo}",
            )
    print(f"Final state: {state} ({description}); status posted: {posted}")
    runner.add_summary(summary(run, state, description, posted), env)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
