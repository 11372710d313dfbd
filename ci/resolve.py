"""The central pipeline's `resolve` step: is this a request the pipeline serves, for which commit?

    python3 -m ci.resolve            the whole check, with PIPELINE_TOKEN
    python3 -m ci.resolve --target   which source repository a token may be minted for (no API call)

Checks the payload (`client_payload` of a repository_dispatch, the inputs of a manual run)
against the contract in components/rules.py and against the configured repositories and
components (.github/dreamscape/central.json), recomputes environment and deploy from the ref (a
mismatch is refused), checks with the compare API that the commit is on the named branch, for
a production deploy from another branch than production's own (`hotfix/*`) that the branch's
rules (GitHub's "Get rules for a branch") restrict both its creation and its updates, and
posts `pending` on that commit with a link to the run. A request it refuses gets an `error`
status on the source commit once repository and sha are valid, and the job fails.

Inputs (environment): `EVENT_NAME`, `DISPATCHED_TYPE`, `CLIENT_PAYLOAD`, `INPUTS` (the event's
JSON) and PIPELINE_TOKEN. Outputs: OUTPUTS, the contract every later job reads. Event data is
shown in a log line or the summary only through `printable`.

With `--target` (GitHub App mode, before the token is minted) it only checks the payload, makes
no call, and outputs the configured repository (`repository`, `name`) once repository and sha
are valid, refused or not: the one repository the pipeline App's token is narrowed to, so that
even a refusal can be reported on that commit. It never fails on the payload: the full check
after it does.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ci import config, github, runner
from components import rules

OUTPUTS = ("environment", "deploy", "components", "source_repo", "ref", "sha")
EVENTS = ("repository_dispatch", "workflow_dispatch")
SHOWN = 120
"""At most this many characters of a refused value reach the log."""
PRODUCTION = "production"
LIMITING_RULES = {"creation": "creations", "update": "updates"}
"""The rule types (GitHub's `type`, and what they restrict) that leave creating and moving a
branch to the bypass actors of a ruleset."""
RULES_PER_PAGE = 100
"""GitHub's largest page of the rules API."""
MAX_RULES_PAGES = 10
"""Rules read at most (1,000): what is not found by then counts as missing."""


def printable(value: str) -> str:
    """`value` with every character outside [A-Za-z0-9/._-] as '?', at most SHOWN of them.

    A hostile value can then inject neither a workflow command (`::`) nor Markdown.
    """
    return "".join(c if c.isascii() and (c.isalnum() or c in "/._-") else "?" for c in value[:SHOWN])


def _text(value: Any) -> str:
    """A string of printable ASCII (no control character, so no line break) as is; anything else ''."""
    if isinstance(value, str) and all(32 <= ord(c) < 127 for c in value):
        return value
    return ""


class RefusedError(Exception):
    pass


@dataclass(frozen=True)
class Request:
    repository: str
    """OWNER/NAME as configured."""
    ref: str
    sha: str
    components: tuple[str, ...]
    environment: str
    deploy: bool


@dataclass
class Target:
    """Where a refusal is reported: set once repository and sha are known to be valid."""

    repository: str = ""
    sha: str = ""


def check(event: str, dispatched_type: str, raw: str, settings: config.Config, target: Target) -> Request:
    """The request the payload makes, or RefusedError naming the first problem (in the order of the contract)."""
    if event not in EVENTS:
        raise RefusedError("this pipeline runs on repository_dispatch or workflow_dispatch only")
    try:
        payload = json.loads(raw)
    except ValueError:
        raise RefusedError("the payload is not JSON") from None
    if not isinstance(payload, dict):
        raise RefusedError("the payload is not a JSON object")
    value = {key: _text(payload.get(key)) for key in rules.PAYLOAD_KEYS}

    # Repository and sha first: once both are valid, a refusal is reported on that commit.
    repo = settings.repository(value["source_repo"]) if value["source_repo"] else None
    if repo is not None and rules.is_sha(value["sha"]):
        target.repository, target.sha = repo.name, value["sha"]

    if len(payload) > rules.MAX_PAYLOAD_KEYS:
        raise RefusedError(
            f"the payload has {len(payload)} keys; the contract has {len(rules.PAYLOAD_KEYS)}"
            f" and GitHub allows {rules.MAX_PAYLOAD_KEYS}"
        )
    unknown = [key for key in payload if key not in rules.PAYLOAD_KEYS]
    if unknown:
        raise RefusedError(
            f"the payload has {len(unknown)} key(s) outside the contract ({', '.join(rules.PAYLOAD_KEYS)})"
        )
    for key in rules.PAYLOAD_KEYS:
        if not value[key]:
            raise RefusedError(f"{key} is missing, empty, or not a string of printable ASCII characters")
    if repo is None:
        raise RefusedError(f"source_repo {printable(value['source_repo'])} is not a configured repository")
    if not rules.is_sha(value["sha"]):
        raise RefusedError(f"sha {printable(value['sha'])} is not 40 lowercase hexadecimal characters")
    if event == "repository_dispatch" and dispatched_type != repo.event_type:
        raise RefusedError(
            f"event type {printable(dispatched_type)} is not the one {repo.name} sends ({repo.event_type})"
        )

    ref = value["ref"]
    decision = rules.classify_ref(ref)
    if decision.environment is None:
        raise RefusedError(f"ref {printable(ref)} is refused: {decision.reason}")
    if value["environment"] != decision.environment:
        raise RefusedError(
            f"environment {printable(value['environment'])} does not match the ref, which means {decision.environment}"
        )

    if not rules.is_component_list(value["component"]):
        raise RefusedError(
            f"component {printable(value['component'])} is not a comma-separated list of component names"
        )
    names = value["component"].split(",")
    seen: set[str] = set()
    for name in names:
        if name not in repo.components:
            raise RefusedError(f"component {name} is not a component of {repo.name}")
        if name in seen:
            raise RefusedError(f"component {name} is listed twice")
        seen.add(name)

    # Deploys: pushes to the branches whose rule deploys, and every manual run; never a
    # repository that is not deployable. Dev is deployed by manual runs only.
    deploy = repo.deployable and (decision.deploy or event == "workflow_dispatch")
    return Request(repo.name, ref, value["sha"], tuple(names), decision.environment, deploy)


def check_on_branch(api: github.GitHub, request: Request) -> None:
    """The commit is on the branch: the branch is identical to it or ahead of it.

    The sha comes first in the comparison, so `...` cannot be confused with dots that end a branch name.
    """
    branch = request.ref.removeprefix("refs/heads/")
    answer = api.call("GET", f"/repos/{request.repository}/compare/{request.sha}...{quote(branch, safe='')}")
    not_on_branch = f"commit {request.sha} is not on branch {branch} of {request.repository}"
    if answer.status == 404:
        raise RefusedError(not_on_branch)
    if not answer.ok:
        raise RefusedError(
            f"the compare API answered HTTP {answer.status:03d} ({answer.message()}): check that"
            f" {github.TOKEN_VARIABLE} may read {request.repository}"
        )
    data = answer.json()
    comparison = data.get("status") if isinstance(data, dict) else None
    comparison = comparison if isinstance(comparison, str) else ""
    if comparison not in ("identical", "ahead"):
        raise RefusedError(f"{not_on_branch} (comparison: {printable(comparison)})")


def production_branch() -> str:
    """The branch production deploys from by default: the branch table's production rule for a
    plain branch name (main), as opposed to a pattern anyone can name a new branch after."""
    named = [
        rule.branch
        for rule in rules.BRANCH_RULES
        if rule.environment == PRODUCTION and rule.deploy and "*" not in rule.branch
    ]
    if len(named) != 1:
        raise ValueError(f"the branch table names {len(named)} plain production branches; resolve expects one")
    return named[0]


def needs_ruleset(request: Request) -> bool:
    """Whether the request deploys to production from a branch other than production's own.

    Anyone who can push a branch can name one `hotfix/...`: such a deploy is accepted only when a
    ruleset keeps creating and moving that branch to its bypass actors (check_ruleset).
    """
    return request.deploy and request.environment == PRODUCTION and request.ref != f"refs/heads/{production_branch()}"


def check_ruleset(api: github.GitHub, request: Request) -> None:
    """The branch's active rules restrict both its creation and its updates (GitHub's "Get rules
    for a branch": every active rule that applies to that name, from the repository's and the
    organization's rulesets)."""
    branch = request.ref.removeprefix("refs/heads/")
    path = f"/repos/{request.repository}/rules/branches/{quote(branch, safe='')}?per_page={RULES_PER_PAGE}"
    found: set[str] = set()
    for page in range(1, MAX_RULES_PAGES + 1):
        answer = api.call("GET", f"{path}&page={page}")
        if not answer.ok:
            raise RefusedError(
                f"the rules API answered HTTP {answer.status:03d} ({answer.message()}): check that"
                f" {github.TOKEN_VARIABLE} may read {request.repository} (Metadata: read)"
            )
        listed = answer.json()
        if not isinstance(listed, list):
            raise RefusedError(f"the rules API did not answer a list of rules for {branch} of {request.repository}")
        found |= {rule.get("type") for rule in listed if isinstance(rule, dict) and isinstance(rule.get("type"), str)}
        found &= LIMITING_RULES.keys()
        if found == LIMITING_RULES.keys() or len(listed) < RULES_PER_PAGE:
            break
    missing = [words for rule, words in LIMITING_RULES.items() if rule not in found]
    if missing:
        raise RefusedError(
            f"{branch} of {request.repository} deploys to production, and no ruleset limits who may create and"
            f" update it: its active rules do not restrict {' or '.join(missing)}"
        )


def plan_text(request: Request) -> str:
    components = ",".join(request.components)
    if request.deploy:
        return f"Build, test and scan {components}, then deploy to {request.environment}"
    return f"Build, test and scan {components} ({request.environment}, no deploy)"


def outputs(request: Request) -> dict[str, str]:
    return {
        "environment": request.environment,
        "deploy": "true" if request.deploy else "false",
        "components": json.dumps(list(request.components), separators=(",", ":")),
        "source_repo": request.repository,
        "ref": request.ref,
        "sha": request.sha,
    }


def refuse(reason: str, api: github.GitHub, target: Target, env: Mapping[str, str]) -> int:
    runner.annotate("error", "Run refused", reason)
    runner.add_summary(f"### Central CI/CD: run refused\n\n{reason}\n", env)
    if target.repository:
        answer = api.post_status(target.repository, target.sha, "error", f"Refused: {reason}", github.run_url(env))
        if answer.ok:
            print(f"Posted error on {target.repository} {target.sha}.")
        else:
            runner.annotate(
                "warning", "No status posted", f"HTTP {answer.status:03d} from the statuses API: {answer.message()}"
            )
    return 1


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    argv = sys.argv[1:] if argv is None else argv
    if argv not in ([], ["--target"]):
        print("usage: python3 -m ci.resolve [--target]", file=sys.stderr)
        return 2
    try:
        settings = config.load()
    except config.ConfigError as error:
        runner.annotate("error", "Pipeline data", str(error))
        return 1
    event = env.get("EVENT_NAME", "")
    raw = env.get("CLIENT_PAYLOAD" if event == "repository_dispatch" else "INPUTS", "")
    target = Target()
    if argv == ["--target"]:
        with contextlib.suppress(RefusedError):
            check(event, env.get("DISPATCHED_TYPE", ""), raw, settings, target)
        name = target.repository.partition("/")[2]
        runner.set_outputs({"repository": target.repository, "name": name}, env)
        print(f"The pipeline's token is for: {target.repository or 'no repository (nothing to report on)'}")
        return 0
    api = github.GitHub(env.get(github.TOKEN_VARIABLE, ""), env=env)
    try:
        request = check(event, env.get("DISPATCHED_TYPE", ""), raw, settings, target)
        check_on_branch(api, request)
        if needs_ruleset(request):
            check_ruleset(api, request)
        answer = api.post_status(request.repository, request.sha, "pending", plan_text(request), github.run_url(env))
        if not answer.ok:
            raise RefusedError(
                f"could not post the pending status (HTTP {answer.status:03d}: {answer.message()}): check that"
                f" {github.TOKEN_VARIABLE} may write commit statuses on {request.repository}"
            )
    except RefusedError as refusal:
        return refuse(str(refusal), api, target, env)
    runner.set_outputs(outputs(request), env)
    print(
        f"Accepted: {request.repository} {request.ref} {request.sha}, {request.environment},"
        f" deploy {'true' if request.deploy else 'false'}, components {','.join(request.components)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
