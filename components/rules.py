"""The rules of the pipeline: which pushed ref goes to which environment, and the payload contract.

Pure Python, no Pulumi. The trigger workflow's shell code and the central pipeline's
`resolve` job are rendered from the tables here, and the tests check on a large corpus of
refs that the rendered shell decides exactly as `classify_ref` does.

Every pattern is a POSIX extended regular expression that means the same thing to Python
(`re.ASCII`, whole-string match) and to bash's `[[ =~ ]]` under `LC_ALL=C`, so one string
serves both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENVIRONMENTS = ("dev", "staging", "production")

KINDS = ("services", "frontend", "tests", "docs")
"""The kinds of source repository; each sends its own event type."""

# --- names -----------------------------------------------------------------------------

OWNER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$"
"""A GitHub user or organization login."""

REPOSITORY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"
"""A GitHub repository name (at most 100 characters)."""

COMPONENT_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
"""A component: a top-level folder of its repository, a compose service and an image name."""

SHA_PATTERN = r"^[0-9a-f]{40}$"

_COMPONENT = COMPONENT_PATTERN.removeprefix("^").removesuffix("$")
COMPONENT_LIST_PATTERN = f"^{_COMPONENT}(,{_COMPONENT})*$"
"""Comma-separated component names, no spaces: the payload's `component`."""

_SEGMENT = r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_-])?"
"""A branch name segment. git refuses a name ending in a dot; the table refuses any segment that does."""
MAX_REF_LENGTH = 200
"""Longest ref accepted, `refs/heads/` included."""


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value, re.ASCII) is not None


def is_owner(value: str) -> bool:
    return _matches(OWNER_PATTERN, value)


def is_repository(value: str) -> bool:
    return _matches(REPOSITORY_PATTERN, value)  # its first character refuses "." and ".."


def is_component(value: str) -> bool:
    return _matches(COMPONENT_PATTERN, value)


def is_sha(value: str) -> bool:
    return _matches(SHA_PATTERN, value)


def is_component_list(value: str) -> bool:
    return _matches(COMPONENT_LIST_PATTERN, value)


# --- branches ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BranchRule:
    """One row of the branch table."""

    branch: str
    """The branch as people write it (`main`, `feature/*`)."""
    pattern: str
    """Anchored ERE over the full ref."""
    environment: str
    deploy: bool
    """Whether a push here deploys (dev is only ever deployed by a manual run)."""


BRANCH_RULES: tuple[BranchRule, ...] = (
    BranchRule("main", r"^refs/heads/main$", "production", True),
    BranchRule("develop", r"^refs/heads/develop$", "staging", True),
    BranchRule("feature/*", rf"^refs/heads/feature/{_SEGMENT}(/{_SEGMENT})*$", "dev", False),
    # One segment only: production takes hotfixes from plainly named branches; a deeper name
    # (`hotfix/a/b`) sends nothing, and the trigger's summary says why.
    BranchRule("hotfix/*", rf"^refs/heads/hotfix/{_SEGMENT}$", "production", True),
)

PUSH_BRANCH_FILTERS = ("main", "develop", "feature/**", "hotfix/**")
"""The trigger runs on these; refs the table refuses get a summary saying why."""


@dataclass(frozen=True)
class Decision:
    environment: str | None
    deploy: bool
    reason: str

    @property
    def sends(self) -> bool:
        return self.environment is not None


def classify_ref(ref: str) -> Decision:
    """Environment and deploy for a pushed ref; `environment` is None when nothing runs."""
    if len(ref) > MAX_REF_LENGTH:
        return Decision(None, False, f"ref longer than {MAX_REF_LENGTH} characters")
    if ".." in ref:
        return Decision(None, False, "ref contains '..'")
    for rule in BRANCH_RULES:
        if _matches(rule.pattern, ref):
            return Decision(rule.environment, rule.deploy, f"branch rule {rule.branch}")
    return Decision(None, False, "not a main, develop, feature/* or hotfix/* branch")


def event_type(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return f"{kind}-changed"


# --- payload -----------------------------------------------------------------------------

PAYLOAD_KEYS = ("source_repo", "ref", "sha", "component", "environment")
MAX_PAYLOAD_KEYS = 10
"""GitHub refuses a `client_payload` with more top-level keys than this."""


class PayloadError(ValueError):
    pass


def validate_payload(payload: object, known: dict[str, tuple[str, ...]]) -> Decision:
    """Check a `client_payload` against the contract.

    `known` maps each allowed `OWNER/NAME` to its components. Returns the decision recomputed
    from the ref; raises PayloadError naming the first problem.
    """
    if not isinstance(payload, dict):
        raise PayloadError("client_payload is not an object")
    if len(payload) > MAX_PAYLOAD_KEYS:
        raise PayloadError(f"client_payload has {len(payload)} keys; GitHub allows {MAX_PAYLOAD_KEYS}")
    extra = sorted(set(payload) - set(PAYLOAD_KEYS))
    if extra:
        raise PayloadError(f"client_payload has unknown keys: {', '.join(extra)}")
    missing = [k for k in PAYLOAD_KEYS if k not in payload]
    if missing:
        raise PayloadError(f"client_payload lacks: {', '.join(missing)}")
    if not all(isinstance(payload[k], str) for k in PAYLOAD_KEYS):
        raise PayloadError("client_payload values must be strings")
    repo = payload["source_repo"]
    if repo not in known:
        raise PayloadError("source_repo is not a configured repository")
    if not is_sha(payload["sha"]):
        raise PayloadError("sha is not 40 lowercase hex characters")
    decision = classify_ref(payload["ref"])
    if not decision.sends:
        raise PayloadError(f"ref refused: {decision.reason}")
    if payload["environment"] != decision.environment:
        raise PayloadError(f"environment does not match the ref (the ref means {decision.environment})")
    names = payload["component"].split(",")
    for name in names:
        if name not in known[repo]:
            raise PayloadError("component is not a known component of source_repo")
    if len(set(names)) != len(names):
        raise PayloadError("component lists a name twice")
    return decision
