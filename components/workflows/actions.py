"""The one table of third-party actions, each pinned to the commit its release tag points to.

Source: shared/pinned-actions.md (read from each action's own repository), and the same
reading for the one action that list lacks (download-artifact). A workflow names
an action through `uses()`, never by hand, so a bump is one line here and a golden diff.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class PinnedAction:
    repository: str
    version: str
    commit: str


PINNED: dict[str, PinnedAction] = {
    a.repository: a
    for a in (
        PinnedAction("actions/checkout", "v7.0.1", "3d3c42e5aac5ba805825da76410c181273ba90b1"),
        PinnedAction("actions/setup-python", "v7.0.0", "5fda3b95a4ea91299a34e894583c3862153e4b97"),
        PinnedAction("actions/upload-artifact", "v7.0.0", "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f"),
        # Read from actions/download-artifact: the commit tag v8.0.1 points to.
        PinnedAction("actions/download-artifact", "v8.0.1", "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c"),
        PinnedAction("actions/create-github-app-token", "v3.1.1", "1b10c78c7865c340bc4f6099eb2f838309f1e8c3"),
        PinnedAction("pulumi/actions", "v7.0.0", "8e5e406f4007fca908480587cb9893c07090f58d"),
        PinnedAction("aquasecurity/trivy-action", "v0.36.0", "ed142fd0673e97e23eac54620cfb913e5ce36c25"),
        PinnedAction("github/codeql-action", "v4.36.2", "8aad20d150bbac5944a9f9d289da16a4b0d87c1e"),
        PinnedAction("docker/setup-qemu-action", "v4.2.0", "96fe6ef7f33517b61c61be40b68a1882f3264fb8"),
        PinnedAction("docker/setup-buildx-action", "v4.3.0", "37fe631027851001ddb9b187196cc803df7f5f0e"),
        PinnedAction("docker/build-push-action", "v7.3.0", "53b7df96c91f9c12dcc8a07bcb9ccacbed38856a"),
        PinnedAction("docker/login-action", "v4.1.0", "4907a6ddec9925e35a0a9e82d7399ccc52663121"),
    )
}


def uses(action: str) -> str:
    """`owner/repo[/path]@<commit>` for a `uses:` key; the emitter adds `# <version>`."""
    repository = "/".join(action.split("/")[:2])
    if repository not in PINNED:
        raise KeyError(f"{action} is not in the pinned-actions table")
    return f"{action}@{PINNED[repository].commit}"


def version_of(commit: str) -> str | None:
    for action in PINNED.values():
        if action.commit == commit:
            return action.version
    return None


COMPOSITE_STEPS: dict[str, tuple[str, ...]] = {
    # aquasecurity/trivy-action v0.36.0 is a composite action: its action.yaml at that commit
    # uses setup-trivy v0.2.6 and actions/cache v5.0.5, and setup-trivy v0.2.6's action.yaml
    # uses actions/cache/restore and actions/cache/save v5.0.1 and actions/checkout v6.0.1.
    "aquasecurity/trivy-action@ed142fd0673e97e23eac54620cfb913e5ce36c25": (
        "aquasecurity/setup-trivy@3fb12ec12f41e471780db15c232d5dd185dcb514",
        "actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae",
        "actions/cache/restore@9255dc7a253b0ccc959486e2bca901246202afeb",
        "actions/cache/save@9255dc7a253b0ccc959486e2bca901246202afeb",
        "actions/checkout@8e8c483db84b4bee98b60c0593521ed34d9990e8",
    ),
}
"""`owner/repo@commit` of each pinned composite action -> the `uses:` of its own steps, at any depth.

The runner downloads every action of a job when the job starts, those inside composite actions
included (whether or not their step runs), and a repository's allowed-actions policy and its
SHA-pinning rule apply to each one. A bump of a composite action in PINNED needs its row here."""

_SHA = re.compile(r"^[0-9a-f]{40}$")


def allowlist(workflows: Iterable[str]) -> tuple[str, ...]:
    """The `owner/repo@commit` patterns that let exactly these workflows' actions run.

    Reads every `uses:` of each workflow's jobs and steps (a local `./` action needs no entry),
    adds the steps of pinned composite actions (COMPOSITE_STEPS), and drops any path inside
    the action's repository: GitHub checks an action against the policy by its repository and
    ref, so `actions/cache@<sha>` admits `actions/cache/restore@<sha>`. A reference that is not
    pinned to a full commit SHA is an error, since the policy requires SHA pinning.
    """
    found: set[str] = set()
    for text in workflows:
        document = yaml.safe_load(text) or {}
        for job in (document.get("jobs") or {}).values():
            steps = [job, *(job.get("steps") or [])]
            found.update(step["uses"] for step in steps if isinstance(step.get("uses"), str))
    closure = set(found)
    for reference in found:
        closure.update(COMPOSITE_STEPS.get(reference, ()))
    patterns = set()
    for reference in closure:
        if reference.startswith("./"):
            continue
        action, _, ref = reference.partition("@")
        if not _SHA.match(ref):
            raise ValueError(f"{reference}: not pinned to a full commit SHA")
        patterns.add("/".join(action.split("/")[:2]) + "@" + ref)
    return tuple(sorted(patterns))
