"""The deploy job's newest-wins check: an automatic run deploys only its branch's newest commit.

    python3 -m ci.deploy_gate

Runs once the job holds its environment's slot (the deploy `concurrency` group), so a slow
older run can never replace a newer release. Inputs (environment): `SOURCE_REPO`, `REF`, `SHA`,
`EVENT_NAME` and PIPELINE_TOKEN (reads the branch head). Output `superseded`: the newer head,
or empty when this run deploys.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from ci import github, runner


@dataclass(frozen=True)
class Gate:
    superseded: str
    """The branch's head when it is another commit and this run is automatic; else empty."""
    message: str
    notice: str = ""
    """The title of a notice annotation for `message`; empty: a plain log line."""


def decide(sha: str, head: str, branch: str, manual: bool) -> Gate:
    """Deploy the head; a manual run may deploy an older commit on purpose; anything else waits for its own run."""
    if head == sha:
        return Gate("", f"{sha} is the head of {branch}: deploying it.")
    if manual:
        return Gate("", f"{branch} is at {head}; this manual run deploys {sha} on purpose.", "Older commit")
    return Gate(head, f"{branch} is at {head} now, which its own run deploys; {sha} is not deployed.", "Superseded")


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    repository, sha = env["SOURCE_REPO"], env["SHA"]
    branch = env["REF"].removeprefix("refs/heads/")
    api = github.GitHub(env.get(github.TOKEN_VARIABLE, ""), env=env)
    answer = api.call("GET", f"/repos/{repository}/git/ref/heads/{quote(branch, safe='/')}")
    data = answer.json() if answer.ok else None
    head = data.get("object", {}).get("sha", "") if isinstance(data, dict) else ""
    if not answer.ok or not isinstance(head, str) or not head:
        reason = f"HTTP {answer.status:03d} ({answer.message()})"
        if answer.status == 404:
            # GitHub answers 404 both for a branch that is gone and for a repository the token cannot see.
            reason += f": branch {branch} no longer exists in {repository}, or {github.TOKEN_VARIABLE} cannot read it"
        else:
            reason += f": check that {github.TOKEN_VARIABLE} may read {repository}"
        runner.annotate("error", "Branch head", f"{reason}; nothing deployed")
        return 1
    gate = decide(sha, head, branch, manual=env.get("EVENT_NAME") == "workflow_dispatch")
    if gate.notice:
        runner.annotate("notice", gate.notice, gate.message)
    else:
        print(gate.message)
    runner.set_outputs({"superseded": gate.superseded}, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
