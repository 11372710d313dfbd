"""Each refusal of components/settings.py that no other test reached (`make refusals` lists
them), reached: the stack's config with one value wrong, the one-line message naming the key."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from components import settings as settings_module

Config = dict[str, Any]


def staging() -> Config:
    return copy.deepcopy(settings_module.merged_plain_config("staging"))


def component(config: Config, **changes: Any) -> Config:
    config["sourceRepositories"][1]["components"][0].update(changes)  # web-client
    return config


def oci(config: Config, **changes: Any) -> Config:
    config["oci"] = {**config["oci"], **changes}
    return config


CASES: list[tuple[str, Callable[[Config], Config], str]] = [
    ("an empty string", lambda c: {**c, "githubOwner": ""}, r"githubOwner: expected a GitHub user or organization"),
    ("hostPort not 80", lambda c: component(c, hostPort=8080), r"hostPort: expected 80 \(HTTP; set edge.domain"),
    ("componentEnv not a map", lambda c: {**c, "componentEnv": "LOG_LEVEL=debug"}, r"componentEnv: expected a map"),
    ("oci not an object", lambda c: {**c, "oci": "VM.Standard.A1.Flex"}, r"dreamscape-infra:oci: expected an object"),
    (
        "more variables than allowed",
        lambda c: component(c, env={f"V{i}": "x" for i in range(settings_module.MAX_ENV + 1)}),
        rf"env: {settings_module.MAX_ENV + 1} variables; at most {settings_module.MAX_ENV}",
    ),
    ("volumes not a map", lambda c: component(c, volumes=["data"]), r"volumes: expected a map of 1 to 10"),
    ("secrets not a map", lambda c: {**c, "secrets": ["JWT_SIGNING_KEY"]}, r"secrets: expected a map of at most 50"),
    (
        "one author field",
        lambda c: {**c, "commit": {"message": "ci: wiring", "authorName": "bot"}},
        r"commit.authorEmail: required with the other author field",
    ),
    (
        "app mode without client ids",
        lambda c: {**c, "githubAuth": "app"},
        r"dispatchAppClientId: required with githubAuth: app",
    ),
    (
        "an app key in token mode",
        lambda c: {**c, "dispatchAppClientId": "Iv23liABCDEF"},
        r"dispatchAppClientId: used only with githubAuth: app",
    ),
    (
        "rules off",
        lambda c: {**c, "repositoryRules": {**c["repositoryRules"], "enabled": False}},
        r"repositoryRules.enabled: false leaves every branch",
    ),
    (
        "no approvals",
        lambda c: {**c, "repositoryRules": {**c["repositoryRules"], "approvals": 0}},
        r"repositoryRules.approvals: 0 lets a pull request into main",
    ),
    (
        "two components on port 80",
        lambda c: component(c, hostPort=80),
        r"components\[1\].hostPort: 80 is already published by web-client",
    ),
    (
        "componentEnv past the limit",
        lambda c: {
            **c,
            "componentEnv": {"web-client": {f"V{i}": "x" for i in range(settings_module.MAX_ENV)}},
            "sourceRepositories": component(copy.deepcopy(c), env={"LOG_LEVEL": "info"})["sourceRepositories"],
        },
        rf"componentEnv.web-client: {settings_module.MAX_ENV + 1} variables with env",
    ),
    (
        "container instances with nothing published",
        lambda c: oci(
            {
                **c,
                "allowPaidShapes": True,
                "sourceRepositories": [
                    {**r, "components": [{k: v for k, v in x.items() if k != "hostPort"} for x in r["components"]]}
                    for r in c["sourceRepositories"]
                ],
            },
            target="containerInstances",
            shape="CI.Standard.A1.Flex",
            bootVolumeGbs=50,
        ),
        r"oci.target containerInstances serves the component published on hostPort 80",
    ),
    (
        "an unknown shape",
        lambda c: oci(c, shape="VM.Standard.X9.Flex"),
        r"oci.shape: expected one of VM.Standard.A1.Flex",
    ),
    (
        "waived and named reviewers",
        lambda c: {**c, "protection": {"reviewers": ["octocat"], "waiveReviewers": True}},
        r"protection.waiveReviewers: true, with reviewers named: choose one",
    ),
    (
        "too many reviewers",
        lambda c: {**c, "protection": {"reviewers": [f"user{i}" for i in range(7)]}},
        r"protection.reviewers: GitHub accepts at most 6 reviewers, got 7",
    ),
    (
        "another organization's team",
        lambda c: {**c, "protection": {"reviewers": ["other-org/release-managers"]}},
        r"protection.reviewers\[0\]: team 'other-org/release-managers' is not a team of githubOwner",
    ),
]


@pytest.mark.parametrize(("what", "edit", "message"), CASES, ids=[c[0] for c in CASES])
def test_each_refusal_names_its_key(what: str, edit: Callable[[Config], Config], message: str) -> None:
    with pytest.raises(settings_module.ConfigError, match=message) as refused:
        settings_module.parse(edit(staging()), "staging", oci_region="eu-frankfurt-1")
    assert "\n" not in str(refused.value), what
