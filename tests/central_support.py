"""What the central pipeline's tests share: the rendered file, contexts, runs against the stand-in API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import yaml

from components import settings as settings_module
from components.workflows import central
from tests.harness.github_api import GitHubAPI
from tests.harness.workflow import Context, JobResult, github_context, run_job
from tools import offline

REPOSITORY_FILE = "github:index/repositoryFile:RepositoryFile"
DISPATCH_TOKEN = "ghp_dispatch_token_for_tests"
RETRY_ENV = {"DREAMSCAPE_RETRY_BASE_SECONDS": "0"}
"""The API helper's backoff base, zero so scripted failures do not sleep."""

T = TypeVar("T")
R = TypeVar("R")


def settings_of(stack: str, **changes: Any) -> settings_module.Settings:
    """A stack's settings from its files, with config keys replaced (as Python data)."""
    raw = settings_module.merged_plain_config(stack)
    raw.update(changes)
    raw.setdefault("dispatchToken", "[secret]")
    raw.setdefault("pipelineToken", "[secret]")
    return settings_module.parse(raw, stack)


def rendered_file(plan: offline.Plan, path: str) -> tuple[offline.Registered, str]:
    files = [r for r in plan.of_type(REPOSITORY_FILE) if r.plain("file") == path]
    if len(files) != 1:
        raise AssertionError(f"{len(files)} files at {path} in the plan of {plan.stack}")
    return files[0], files[0].plain("content")


def central_text(plan: offline.Plan) -> str:
    return rendered_file(plan, central.PATH)[1]


def central_document(plan: offline.Plan) -> dict[str, Any]:
    return yaml.safe_load(central_text(plan))


def infra(settings: settings_module.Settings) -> str:
    return f"{settings.github_owner}/{settings.infra_repository}"


def full_names(settings: settings_module.Settings) -> list[str]:
    return [f"{settings.github_owner}/{r.name}" for r in settings.source_repositories]


def stand_in(settings: settings_module.Settings) -> GitHubAPI:
    """The GitHub API with the infra and source repositories, and DISPATCH_TOKEN allowed on all."""
    api = GitHubAPI(repositories=[infra(settings), *full_names(settings)])
    api.add_token(DISPATCH_TOKEN, write=True)
    return api


def dispatch_github(settings: settings_module.Settings, api: GitHubAPI, event_type: str, payload: Any):
    """The `github` context of a repository_dispatch run on the infra repository's default branch."""
    event = {"action": event_type, "client_payload": payload, "repository": {"full_name": infra(settings)}}
    return github_context(infra(settings), "repository_dispatch", "refs/heads/main", "f" * 40, event, api_url=api.url)


def manual_github(settings: settings_module.Settings, api: GitHubAPI, inputs: dict[str, Any]):
    """The `github` context of a workflow_dispatch run (inputs are strings, as GitHub sends them)."""
    event = {"inputs": inputs, "ref": "refs/heads/main", "repository": {"full_name": infra(settings)}}
    return github_context(infra(settings), "workflow_dispatch", "refs/heads/main", "f" * 40, event, api_url=api.url)


def run_resolve(
    document: dict[str, Any],
    github: dict[str, Any],
    extra_env: dict[str, str] | None = None,
    artifacts: Artifacts | None = None,
) -> JobResult:
    artifacts = artifacts or Artifacts({"README.md": "source\n"})
    context = Context(github=github, secrets={central.TOKEN: DISPATCH_TOKEN})
    return run_job(document, "resolve", context, extra_env={**RETRY_ENV, **(extra_env or {})}, uses=artifacts.table())


class Artifacts:
    """One run's artifact store and the actions that reach it, for jobs run one after another.

    `actions/upload-artifact` copies what its `path` lines name (globs relative to the workspace,
    or absolute) under the artifact's name; `actions/download-artifact` copies an artifact (by
    `name`) or every artifact matching `pattern` (each in a folder of its name) to `path`, as the
    real actions do. `actions/checkout` writes `tree`. Every other action is recorded only.
    """

    def __init__(self, tree: dict[str, str] | None = None) -> None:
        self.tree = tree or {}
        self.store: dict[str, dict[str, bytes]] = {}
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    def checkout(self, step, with_, env) -> dict[str, str]:
        self.calls.append(("actions/checkout", dict(with_), dict(env)))
        root = Path(env["GITHUB_WORKSPACE"]) / with_.get("path", ".")
        for name, content in self.tree.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(content)
        return {}

    def upload(self, step, with_, env) -> dict[str, str]:
        workspace = Path(env["GITHUB_WORKSPACE"])
        files: dict[str, bytes] = {}
        for line in str(with_["path"]).splitlines():
            pattern = Path(line)
            matches = [pattern] if pattern.is_absolute() and pattern.exists() else list(workspace.glob(line))
            for match in matches:
                for path in [match] if match.is_file() else sorted(p for p in match.rglob("*") if p.is_file()):
                    base = match.parent
                    files[str(path.relative_to(base))] = path.read_bytes()
        self.calls.append(("actions/upload-artifact", {**with_, "found": sorted(files)}, dict(env)))
        if not files and with_.get("if-no-files-found") == "error":
            raise AssertionError(f"upload-artifact {with_['name']}: no files found at {with_['path']}")
        if files:
            self.store[str(with_["name"])] = files
        return {}

    def download(self, step, with_, env) -> dict[str, str]:
        self.calls.append(("actions/download-artifact", dict(with_), dict(env)))
        target = Path(env["GITHUB_WORKSPACE"]) / str(with_.get("path", "."))
        if "name" in with_:
            if with_["name"] not in self.store:
                raise AssertionError(f"Artifact '{with_['name']}' not found")
            chosen = {"": self.store[with_["name"]]}
        else:
            prefix = str(with_["pattern"]).removesuffix("*")
            chosen = {name: files for name, files in self.store.items() if name.startswith(prefix)}
        for folder, files in chosen.items():
            for name, data in files.items():
                path = target / folder / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        return {}

    def record(self, name: str):
        def stand_in(step, with_, env) -> dict[str, str]:
            self.calls.append((name, dict(with_), dict(env)))
            return {}

        return stand_in

    def table(self) -> dict[str, Any]:
        recorded = ("docker/setup-qemu-action", "docker/login-action", "aquasecurity/trivy-action")
        return {
            "actions/checkout": self.checkout,
            "actions/upload-artifact": self.upload,
            "actions/download-artifact": self.download,
            **{name: self.record(name) for name in recorded},
        }

    def called(self, name: str) -> list[dict[str, Any]]:
        return [with_ for action, with_, _ in self.calls if action == name]


def payload(
    settings: settings_module.Settings, repository: str, ref: str, sha: str, components: Iterable[str], environment: str
) -> dict[str, str]:
    return {
        "source_repo": f"{settings.github_owner}/{repository}",
        "ref": ref,
        "sha": sha,
        "component": ",".join(components),
        "environment": environment,
    }


def sha_of(*parts: object) -> str:
    """A distinct, well-formed commit sha for each test case."""
    import hashlib

    return hashlib.sha1(json.dumps(parts).encode(), usedforsecurity=False).hexdigest()


def in_parallel(function: Callable[[T], R], items: Iterable[T], workers: int = 4) -> list[R]:
    """Each item through `function` in a few threads (each run is a bash process waiting on I/O)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))
