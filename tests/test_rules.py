"""The rules table: branch to environment and deploy, event types, the payload contract."""

from __future__ import annotations

import pytest

from components import rules

SHA = "0123456789abcdef0123456789abcdef01234567"
KNOWN = {"DREAMSCAPE-AI/dreamscape-services": ("auth-service", "user-service")}


@pytest.mark.parametrize(
    ("ref", "environment", "deploy"),
    [
        ("refs/heads/main", "production", True),
        ("refs/heads/develop", "staging", True),
        ("refs/heads/feature/login", "dev", False),
        ("refs/heads/feature/JIRA-12/new_login.v2", "dev", False),
        ("refs/heads/hotfix/cve-2026-1", "production", True),
        ("refs/heads/hotfix/1.2.3", "production", True),
        ("refs/heads/feature/x_", "dev", False),
    ],
)
def test_deploying_and_testing_branches(ref: str, environment: str, deploy: bool) -> None:
    decision = rules.classify_ref(ref)
    assert (decision.environment, decision.deploy, decision.sends) == (environment, deploy, True)


REFUSED = [
    "refs/heads/main2",
    "refs/heads/Main",
    "refs/heads/develop/x",
    "refs/heads/mainline",
    "refs/heads/release/1.0",
    "refs/heads/feature/",
    "refs/heads/feature",
    "refs/heads/hotfix/",
    "refs/heads/hotfix/a/b",
    "refs/heads/feature//x",
    "refs/heads/feature/a/",
    "refs/heads/feature/.hidden",
    "refs/heads/feature/-rf",
    "refs/heads/feature/a..b",
    "refs/heads/feature/trailing.",
    "refs/heads/hotfix/x.",
    "refs/heads/feature/a./b",
    "refs/heads/feature/../main",
    "refs/tags/v1.0.0",
    "refs/tags/main",
    "refs/pull/1/merge",
    "main",
    "heads/main",
    "refs/heads/main\n",
    "refs/heads/main\nrefs/heads/develop",
    "refs/heads/feature/a\nb",
    "refs/heads/feature/with space",
    "refs/heads/feature/tab\there",
    "refs/heads/feature/$(id)",
    "refs/heads/feature/`id`",
    "refs/heads/feature/a;id",
    "refs/heads/feature/a|id",
    "refs/heads/feature/a&id",
    "refs/heads/feature/a>b",
    "refs/heads/feature/${IFS}",
    "refs/heads/feature/a'b",
    'refs/heads/feature/a"b',
    "refs/heads/feature/a\\b",
    "refs/heads/feature/a*",
    "refs/heads/feature/a?",
    "refs/heads/feature/~1",
    "refs/heads/feature/a:b",
    "refs/heads/feature/a@{0}",
    "refs/heads/mаin",  # Cyrillic a
    "refs/heads/maіn",  # Ukrainian i
    "refs/heads/feature／x",  # fullwidth solidus
    "refs/heads/feature/ｘ",  # fullwidth x
    "refs/heads/feature/x\u200b",  # zero-width space
    "refs/heads/hotfix/é",
    "refs/heads/main\x00",
    "refs/heads/feature/" + "a" * 256,
    "refs/heads/hotfix/" + "b" * 256,
    " refs/heads/main",
    "refs/heads/main ",
    "",
]


@pytest.mark.parametrize("ref", REFUSED, ids=[repr(r)[:40] for r in REFUSED])
def test_everything_else_sends_nothing(ref: str) -> None:
    decision = rules.classify_ref(ref)
    assert decision.environment is None
    assert decision.deploy is False
    assert not decision.sends
    assert decision.reason


def test_length_limit_is_exact() -> None:
    """A ref of 200 characters is sent, one of 201 is not."""
    prefix = "refs/heads/feature/"
    assert rules.classify_ref(prefix + "a" * (200 - len(prefix))).sends
    assert not rules.classify_ref(prefix + "a" * (201 - len(prefix))).sends


def test_every_environment_is_reachable() -> None:
    assert {r.environment for r in rules.BRANCH_RULES} == set(rules.ENVIRONMENTS)


@pytest.mark.parametrize("kind", rules.KINDS)
def test_event_type_per_kind(kind: str) -> None:
    assert rules.event_type(kind) == f"{kind}-changed"


def test_unknown_kind_has_no_event_type() -> None:
    with pytest.raises(ValueError, match="unknown kind 'mobile'"):
        rules.event_type("mobile")


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (
            rules.is_component,
            ["auth-service", "e2e", "a", "a" * 63],
            ["", "Auth", "-a", "a-", "a_b", "a;b", "a" * 64, "а"],
        ),
        (
            rules.is_repository,
            ["dreamscape-infra", "x.y_z", "a" * 100],
            ["", ".", "..", "a/b", "a b", "a" * 101, "-x;y"],
        ),
        (rules.is_owner, ["DREAMSCAPE-AI", "a", "a" * 39], ["", "-a", "a_b", "a" * 40, "a/b"]),
        (rules.is_sha, [SHA], [SHA.upper(), SHA[:39], SHA + "0", "g" * 40, SHA + "\n"]),
        (
            rules.is_component_list,
            ["web", "auth-service,user-service", ",".join(["a"] * 50)],
            ["", ",", "web,", ",web", "web, api", "web;api", "Web", "web,-api", "web\n"],
        ),
    ],
)
def test_name_patterns(check, good: list[str], bad: list[str]) -> None:
    assert all(check(v) for v in good)
    assert not any(check(v) for v in bad)


def payload(**changes: str) -> dict[str, str]:
    base = {
        "source_repo": "DREAMSCAPE-AI/dreamscape-services",
        "ref": "refs/heads/main",
        "sha": SHA,
        "component": "auth-service,user-service",
        "environment": "production",
    }
    base.update(changes)
    return base


def test_valid_payload() -> None:
    decision = rules.validate_payload(payload(), KNOWN)
    assert (decision.environment, decision.deploy) == ("production", True)
    assert set(payload()) == set(rules.PAYLOAD_KEYS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not a dict", "not an object"),
        ({**payload(), **{f"k{i}": "v" for i in range(6)}}, "11 keys; GitHub allows 10"),
        ({**payload(), "extra": "1"}, "unknown keys: extra"),
        ({**payload(), **{f"k{i}": "v" for i in range(5)}}, "unknown keys: k0, k1, k2, k3, k4$"),  # 10 keys: allowed
        ({k: v for k, v in payload().items() if k != "sha"}, "lacks: sha"),
        (payload(source_repo="DREAMSCAPE-AI/other"), "source_repo is not a configured repository"),
        (payload(sha="abc"), "sha is not 40"),
        (payload(ref="refs/tags/v1"), "ref refused"),
        (payload(ref="refs/heads/feature/x"), r"environment does not match the ref \(the ref means dev\)"),
        (payload(component="auth-service;id"), "component is not a known component"),
        (payload(component="$(id)"), "component is not a known component"),
        (payload(component="auth-service,auth-service"), "component lists a name twice"),
        (payload(component=""), "component is not a known component"),
        ({**payload(), "sha": 1}, "values must be strings"),
    ],
)
def test_hostile_payloads(data, message: str) -> None:
    with pytest.raises(rules.PayloadError, match=message):
        rules.validate_payload(data, KNOWN)
