"""The data file the program writes beside the central workflow, and ci/config.py that reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci import config
from components.workflows import central
from tests.central_support import settings_of


@pytest.mark.parametrize("stack", ["dev", "staging", "production"])
def test_the_data_file_carries_the_stack_choices_and_loads_back(stack: str) -> None:
    settings = settings_of(stack)
    args = central.CentralArgs.from_settings(settings)
    loaded = config.loads(central.data_file(args))
    assert [r.name for r in loaded.repositories] == [args.full_name(r) for r in settings.source_repositories]
    for repo, configured in zip(loaded.repositories, settings.source_repositories, strict=True):
        assert (repo.event_type, repo.deployable, repo.components, repo.build, repo.test) == (
            configured.event_type,
            configured.deployable,
            configured.component_names,
            configured.build_command,
            configured.test_command,
        )
    assert (loaded.registry, loaded.scan_severity, loaded.arm_runner_label) == (
        settings.registry,
        settings.scan_severity,
        settings.arm_runner_label,
    )
    assert loaded.deploy == config.Deploy(
        settings.deploy.lock_wait_seconds, settings.deploy.wait_timeout_seconds, settings.deploy.keep_releases
    )


def test_a_repository_is_found_without_regard_to_case() -> None:
    loaded = config.loads(central.data_file(central.CentralArgs.from_settings(settings_of("production"))))
    first = loaded.repositories[0]
    assert loaded.repository(first.name.upper()) == first
    assert loaded.repository(first.name + "x") is None


def _valid() -> dict:
    return json.loads(central.data_file(central.CentralArgs.from_settings(settings_of("production"))))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(schema=2), "is not schema 1"),
        (lambda d: d.pop("schema"), "is not schema 1"),
        (lambda d: d.pop("registry"), "registry is missing"),
        (lambda d: d.update(registry=1), "registry has the wrong type"),
        (lambda d: d["repositories"][1].update(deployable="yes"), "repositories[1].deployable has the wrong type"),
        (lambda d: d["repositories"][0].update(components="a,b"), "repositories[0].components has the wrong type"),
        (lambda d: d["repositories"][0].update(components=[1]), "repositories[0].components must be a list"),
        (lambda d: d["deploy"].update(keep_releases=True), "deploy.keep_releases has the wrong type"),
        (lambda d: d["deploy"].pop("lock_wait_seconds"), "deploy.lock_wait_seconds is missing"),
        (lambda d: d.update(arm_runner_label=3), "arm_runner_label has the wrong type"),
    ],
)
def test_a_file_it_does_not_understand_is_refused_naming_the_field(change, message: str) -> None:
    data = _valid()
    change(data)
    with pytest.raises(config.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.loads(json.dumps(data))


def test_a_missing_or_broken_file_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="is missing: run pulumi up on the wiring stack"):
        config.load(tmp_path)
    (tmp_path / config.PATH).parent.mkdir(parents=True)
    (tmp_path / config.PATH).write_text("{")
    with pytest.raises(config.ConfigError, match="is not JSON"):
        config.load(tmp_path)
