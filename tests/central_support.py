"""What the central pipeline's tests share: the rendered file, contexts, runs against the stand-in API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
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


def run_resolve(document: dict[str, Any], github: dict[str, Any], extra_env: dict[str, str] | None = None) -> JobResult:
    context = Context(github=github, secrets={central.TOKEN: DISPATCH_TOKEN})
    return run_job(document, "resolve", context, extra_env={**RETRY_ENV, **(extra_env or {})})


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
