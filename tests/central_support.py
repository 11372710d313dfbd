"""What the central pipeline's tests share: the rendered file, contexts, runs against the stand-in API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import yaml

from components import settings as settings_module
from components.workflows import central, credentials
from tests.conftest import ROOT
from tests.harness.github_api import GitHubAPI
from tests.harness.github_app import App, CreateAppToken, app_key
from tests.harness.workflow import Context, JobResult, github_context, run_job
from tools import offline

REPOSITORY_FILE = "github:index/repositoryFile:RepositoryFile"
DISPATCH_TOKEN = "ghp_dispatch_token_for_tests"
DISPATCH_APP_ID = "Iv23liDispatchApp0001"
PIPELINE_APP_ID = "Iv23liPipelineApp0001"
APP_CONFIG = {
    "githubAuth": "app",
    "dispatchAppClientId": DISPATCH_APP_ID,
    "pipelineAppClientId": PIPELINE_APP_ID,
    "dispatchToken": None,
    "pipelineToken": None,
}
"""GitHub App mode's config keys (None removes the token keys of the stack files)."""
RETRY_ENV = {"DREAMSCAPE_RETRY_BASE_SECONDS": "0"}
PLATFORMS = {
    "DEPLOY_PLATFORM_DEV": "linux/amd64",
    "DEPLOY_PLATFORM_STAGING": "linux/arm64",
    "DEPLOY_PLATFORM_PRODUCTION": "linux/arm64",
}
"""The repository variables each environment stack sets (its VM's platform), as resolve reads them."""
"""The API helper's backoff base, zero so scripted failures do not sleep."""

T = TypeVar("T")
R = TypeVar("R")


def settings_of(stack: str, **changes: Any) -> settings_module.Settings:
    """A stack's settings from its files, with config keys replaced (as Python data)."""
    raw = settings_module.merged_plain_config(stack)
    raw.update(changes)
    # The wiring's secrets of the mode, as `pulumi config set --secret` leaves them; None removes a key.
    for key in settings_module.WIRING_SECRETS[raw.get("githubAuth", "token")]:
        raw.setdefault(key, "[secret]")
    return settings_module.parse({k: v for k, v in raw.items() if v is not None}, stack)


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


def data_files(settings: settings_module.Settings) -> dict[str, str]:
    """The pipeline's data file as `pulumi up` writes it for `settings`, by its path in the infra repository."""
    return {central.DATA_PATH: central.data_file(central.CentralArgs.from_settings(settings))}


def run_resolve(
    document: dict[str, Any],
    github: dict[str, Any],
    extra_env: dict[str, str] | None = None,
    artifacts: Artifacts | None = None,
    settings: settings_module.Settings | None = None,
    variables: dict[str, str] | None = None,
) -> JobResult:
    """The resolve job; its checkout of the infra repository holds the data file of `settings`
    (default: the production stack's), unless `artifacts` brings its own."""
    settings = settings or settings_of("production")
    artifacts = artifacts or Artifacts({"README.md": "source\n"}, infra=data_files(settings))
    secrets, uses = pipeline_credential(document, "resolve", settings)
    context = Context(github=github, secrets=secrets, vars=PLATFORMS | (variables or {}))
    extra = {**RETRY_ENV, **(extra_env or {})}
    return run_job(document, "resolve", context, extra_env=extra, uses={**artifacts.table(), **uses})


PIPELINE_APP_KEY = app_key()


def pipeline_credential(
    document: dict[str, Any], job: str, settings: settings_module.Settings
) -> tuple[dict[str, str], dict[str, Any]]:
    """The secrets and action stand-ins a job of `document` needs for the pipeline's credential.

    Token mode: PIPELINE_TOKEN holds DISPATCH_TOKEN (the stand-in's token with every grant).
    App mode: the pipeline App's key, and the create-github-app-token stand-in minting that same
    token, so a test's grants and assertions hold in both modes (test_github_apps.py mints real,
    narrowed tokens).
    """
    minting = any("create-github-app-token" in s.get("uses", "") for s in document["jobs"][job]["steps"])
    if not minting:
        return {central.TOKEN: DISPATCH_TOKEN}, {}
    app = App(
        "dreamscape-pipeline",
        PIPELINE_APP_ID,
        PIPELINE_APP_KEY,
        {"contents": "read", "statuses": "write"},
        full_names(settings),
    )
    minted = CreateAppToken(None, app, fixed_token=DISPATCH_TOKEN)
    return {credentials.PIPELINE_APP.secret: PIPELINE_APP_KEY}, {"actions/create-github-app-token": minted}


class Artifacts:
    """One run's artifact store and the actions that reach it, for jobs run one after another.

    `actions/upload-artifact` copies what its `path` lines name (globs relative to the workspace,
    or absolute) under the artifact's name; `actions/download-artifact` copies an artifact (by
    `name`) or every artifact matching `pattern` (each in a folder of its name) to `path`, as the
    real actions do. `actions/checkout` of another repository (`repository:`) writes `tree`;
    of the infra repository itself, it writes what its `sparse-checkout` patterns name out of
    this repository's own files (the pipeline's code, ci/ and components/rules.py) and `infra`
    (the files `pulumi up` writes there), and refuses any other ref than the run's own commit.
    Every other action is recorded only.
    """

    def __init__(self, tree: dict[str, str] | None = None, infra: dict[str, str] | None = None) -> None:
        self.tree = tree or {}
        self.infra = infra or {}
        self.store: dict[str, dict[str, bytes]] = {}
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    def checkout(self, step, with_, env) -> dict[str, str]:
        self.calls.append(("actions/checkout", dict(with_), dict(env)))
        root = Path(env["GITHUB_WORKSPACE"]) / with_.get("path", ".")
        files = self.tree if "repository" in with_ else infra_checkout(with_, env, self.infra)
        for name, content in files.items():
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
            # As v8.0.1 does: one artifact matched, or merge-multiple, unpacks straight into
            # `path`; several go into a folder each.
            if len(chosen) == 1 or str(with_.get("merge-multiple", "false")).lower() == "true":
                chosen = {"": {n: d for files in chosen.values() for n, d in files.items()}}
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


def infra_checkout(with_: dict[str, Any], env: dict[str, str], generated: dict[str, str]) -> dict[str, str]:
    """The files a sparse checkout of the infra repository at the run's commit writes.

    The repository holds this repository's files and the `generated` ones. Non-cone patterns
    (`/ci/`, `/components/rules.py`) name a folder (trailing `/`) or a file from the root; in
    cone mode each line is a folder. A pattern that names nothing fails, as a missing file
    would fail the step that needs it.
    """
    if with_.get("ref") != env["GITHUB_SHA"]:
        raise AssertionError(f"the infra repository is checked out at {with_.get('ref')!r}, not the run's commit")
    if with_.get("persist-credentials") is not False:
        raise AssertionError("checkout without persist-credentials: false")
    patterns = [line for line in str(with_.get("sparse-checkout", "")).split("\n") if line]
    if not patterns:
        raise AssertionError("a full checkout of the infra repository: list what the job needs")
    cone = with_.get("sparse-checkout-cone-mode", True) not in (False, "false")
    written: dict[str, str] = {}
    for pattern in patterns:
        if cone:
            folder, file = pattern.strip("/") + "/", None
        elif not pattern.startswith("/"):
            raise AssertionError(f"{pattern!r} is not anchored at the root: it matches at any depth")
        elif pattern.endswith("/"):
            folder, file = pattern[1:], None
        else:
            folder, file = None, pattern[1:]
        found = {name: text for name, text in generated.items() if name == file or (folder and name.startswith(folder))}
        if file is not None and (ROOT / file).is_file():
            found[file] = (ROOT / file).read_text()
        elif folder is not None and (ROOT / folder).is_dir():
            for path in sorted((ROOT / folder).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    found[path.relative_to(ROOT).as_posix()] = path.read_text()
        if not found:
            raise AssertionError(f"sparse-checkout {pattern!r} names nothing in the infra repository")
        written |= found
    return written


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


def deploy_checkout(root: Path, generated: dict[str, str]) -> Path:
    """`root` as the deploy job's workspace after its checkout of the infra repository: the job's
    own sparse-checkout patterns (as the production stack renders them) over this repository's
    files and `generated` (the data file, the compose file), as the checkout stand-in writes them."""
    document = central.document(central.CentralArgs.from_settings(settings_of("production")))
    [checkout] = [
        s for s in document["jobs"]["deploy"]["steps"] if str(s.get("uses", "")).startswith("actions/checkout@")
    ]
    sha = "f" * 40
    for name, content in infra_checkout({**checkout["with"], "ref": sha}, {"GITHUB_SHA": sha}, generated).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root
