"""`sourceRepositories[].artifacts`: what the central pipeline keeps of each build, and its bad values."""

from __future__ import annotations

import pytest

from components.settings import ConfigError
from tests.test_settings import edit, parse, raw


def test_artifacts_default_to_test_reports_only() -> None:
    """Build outputs and coverage carry the source: an artifact of a public infra repository is public."""
    repositories = parse("dev", raw("dev")).source_repositories
    assert all(r.artifacts == ("reports", "test-results") for r in repositories)


def test_artifact_retention_defaults_to_a_week_and_is_bounded() -> None:
    assert parse("dev", raw("dev")).artifact_retention_days == 7
    assert parse("dev", edit(raw("dev"), "artifactRetentionDays", 30)).artifact_retention_days == 30
    for bad in (0, 91, "7", True):
        with pytest.raises(ConfigError, match=r"artifactRetentionDays: expected a whole number from 1 to 90"):
            parse("dev", edit(raw("dev"), "artifactRetentionDays", bad))


def test_artifacts_from_config() -> None:
    config = edit(raw("dev"), "sourceRepositories[0].artifacts", ["out", "reports/*.xml", "junit.xml"])
    assert parse("dev", config).source_repositories[0].artifacts == ("out", "reports/*.xml", "junit.xml")


@pytest.mark.parametrize(
    "value",
    ["../secrets", "a/../../b", "/etc", "./dist", "a//b", "a b", "$(id)", "dist\n", "", 7, "~/x"],
)
def test_bad_artifact_paths_name_the_key(value) -> None:
    config = edit(raw("dev"), "sourceRepositories[1].artifacts", ["dist", value])
    with pytest.raises(ConfigError) as error:
        parse("dev", config)
    assert str(error.value).startswith(
        "dreamscape-infra:sourceRepositories[1].artifacts[1]: expected a relative path inside the component's folder"
    )


def test_artifacts_must_be_a_list_without_duplicates() -> None:
    with pytest.raises(ConfigError, match=r"sourceRepositories\[0\]\.artifacts: expected a list"):
        parse("dev", edit(raw("dev"), "sourceRepositories[0].artifacts", "dist"))
    with pytest.raises(ConfigError, match=r"sourceRepositories\[0\]\.artifacts\[1\]: duplicate 'dist'"):
        parse("dev", edit(raw("dev"), "sourceRepositories[0].artifacts", ["dist", "dist"]))
