"""The stack's choices the central pipeline's modules read: one JSON file beside the workflow.

    .github/dreamscape/central.json   on the infra repository's default branch

`pulumi up` on the wiring stack writes it (components/workflows/central.py, `data_file`) in the
same way as the workflow file, from the same settings. A job reads it from its sparse checkout
of the infra repository at the run's own commit, so the workflow and the data it reads come
from one commit. `load` checks every field and refuses a file it does not understand, naming
the field, rather than guess.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PATH = ".github/dreamscape/central.json"
SCHEMA = 1
"""Bumped when a field changes meaning; a module refuses a file of another schema."""


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Repository:
    name: str
    """OWNER/NAME as configured (GitHub names are case-insensitive; this is the spelling used)."""
    event_type: str
    deployable: bool
    components: tuple[str, ...]
    build: str
    """The build command, run in each component's folder."""
    test: str


@dataclass(frozen=True)
class Deploy:
    lock_wait_seconds: int
    wait_timeout_seconds: int
    keep_releases: int


@dataclass(frozen=True)
class Config:
    repositories: tuple[Repository, ...]
    registry: str
    """`<host>/<namespace>`: images are pushed as `<registry>/<component>:<tag>`."""
    runner: str
    """The runner label of every job (`runs-on`) but an arm64 build's."""
    scan_severity: str
    arm_runner_label: str | None
    """The runner that builds arm64 images natively; None: QEMU on the default runner."""
    deploy: Deploy

    def repository(self, name: str) -> Repository | None:
        """The configured repository of that name, compared without case."""
        for repo in self.repositories:
            if repo.name.lower() == name.lower():
                return repo
        return None


def dumps(config: Config) -> str:
    data = {"schema": SCHEMA, **asdict(config)}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _field(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise ConfigError(f"{PATH}: {where}{key} is missing")
    value = data[key]
    if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
        raise ConfigError(f"{PATH}: {where}{key} has the wrong type")
    return value


def _strings(data: Any, key: str, where: str) -> tuple[str, ...]:
    values = _field(data, key, list, where)
    if not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{PATH}: {where}{key} must be a list of strings")
    return tuple(values)


def loads(text: str) -> Config:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"{PATH} is not JSON: {error}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ConfigError(f"{PATH} is not schema {SCHEMA}: run pulumi up on the wiring stack")
    repositories = []
    for index, repo in enumerate(_field(data, "repositories", list, "")):
        where = f"repositories[{index}]."
        repositories.append(
            Repository(
                name=_field(repo, "name", str, where),
                event_type=_field(repo, "event_type", str, where),
                deployable=_field(repo, "deployable", bool, where),
                components=_strings(repo, "components", where),
                build=_field(repo, "build", str, where),
                test=_field(repo, "test", str, where),
            )
        )
    deploy = _field(data, "deploy", dict, "")
    label = data.get("arm_runner_label")
    if label is not None and not isinstance(label, str):
        raise ConfigError(f"{PATH}: arm_runner_label has the wrong type")
    return Config(
        repositories=tuple(repositories),
        registry=_field(data, "registry", str, ""),
        runner=_field(data, "runner", str, ""),
        scan_severity=_field(data, "scan_severity", str, ""),
        arm_runner_label=label,
        deploy=Deploy(
            lock_wait_seconds=_field(deploy, "lock_wait_seconds", int, "deploy."),
            wait_timeout_seconds=_field(deploy, "wait_timeout_seconds", int, "deploy."),
            keep_releases=_field(deploy, "keep_releases", int, "deploy."),
        ),
    )


def load(root: Path | str = ".") -> Config:
    """The file from a checkout of the infra repository at `root` (a job's workspace)."""
    path = Path(root) / PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        raise ConfigError(f"{PATH} is missing: run pulumi up on the wiring stack") from None
    return loads(text)
