"""The `ci/` package on its own: what a job's sparse checkout holds is enough, and the GitHub client.

The client is called directly against the GitHub API stand-in (tests/harness/github_api.py),
with its sleeps recorded instead of slept; the jobs that use it are run in test_central_*.py.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ci import github
from components.workflows import central
from tests.central_support import DISPATCH_TOKEN, settings_of
from tests.conftest import ROOT
from tests.harness.github_api import GitHubAPI, Reply
from tests.harness.workflow import RUNNER_PYTHON

SOURCE = "acme/app"
SHA = "a" * 40


IMPORT = "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)"
NEEDS_MORE = {"ci.deploy": "deploy"}
"""Modules that import more than PIPELINE_CODE, and the job whose checkout brings it."""
PART_OF = {"ci.instances": "ci.deploy"}
"""Modules no step runs, and the module that runs them (its job's checkout is checked for both)."""


def sparse_copy(root: Path, paths: list[str]) -> None:
    """What a non-cone sparse checkout of these paths (folders end in `/`) writes."""
    for path in paths:
        source = ROOT / path
        if source.is_dir():
            shutil.copytree(source, root / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, root / path)


def imports(root: Path, *modules: str) -> subprocess.CompletedProcess:
    """The runner's python3 imports the modules from `root`; `-S` leaves site-packages (yaml, pulumi...) out."""
    return subprocess.run(
        [RUNNER_PYTHON, "-S", "-c", IMPORT, *modules], cwd=root, capture_output=True, text=True, timeout=60
    )


def test_every_module_imports_from_the_sparse_checkout_with_the_standard_library_only(tmp_path: Path) -> None:
    """The jobs check out PIPELINE_CODE; a module that needs more is checked with its job's checkout below."""
    sparse_copy(tmp_path, list(central.PIPELINE_CODE))
    modules = sorted(f"ci.{p.stem}" for p in (ROOT / "ci").glob("*.py") if p.stem != "__init__")
    assert {"ci.deploy", "ci.github", "ci.report", "ci.runner"} <= set(modules)
    result = imports(tmp_path, *(m for m in modules if m not in NEEDS_MORE and m not in PART_OF))
    assert result.returncode == 0, result.stderr
    # ci.deploy reads the deploy program, which PIPELINE_CODE alone lacks.
    assert "cannot import name 'deploy_program' from 'components.environment'" in imports(tmp_path, "ci.deploy").stderr
    # The same check fails on what the checkout lacks, and on a package from outside the standard library.
    (tmp_path / "components" / "rules.py").unlink()
    (tmp_path / "ci" / "needs_rules.py").write_text("from components import rules\n")
    (tmp_path / "ci" / "needs_yaml.py").write_text("import yaml\n")
    for module, error in (
        ("ci.needs_rules", "cannot import name 'rules'"),
        ("ci.needs_yaml", "No module named 'yaml'"),
    ):
        assert error in imports(tmp_path, module).stderr, module


@pytest.mark.parametrize("stack", ["dev", "production"])
def test_each_module_a_job_runs_imports_from_that_jobs_own_checkout(tmp_path: Path, stack: str) -> None:
    """Read from the rendered workflow: each `python3 -m ci.<module>` step and its job's sparse-checkout list."""
    document = central.document(central.CentralArgs.from_settings(settings_of(stack)))
    ran: dict[str, str] = {}
    for job_id, job in document["jobs"].items():
        runs = [s.get("run", "").removeprefix("exec ") for s in job["steps"]]
        modules = [run.removeprefix("python3 -m ") for run in runs if run.startswith("python3 -m ci.")]
        if not modules:
            continue
        [checkout] = [
            s
            for s in job["steps"]
            if str(s.get("uses", "")).startswith("actions/checkout@") and "repository" not in s["with"]
        ]
        paths = [line.removeprefix("/") for line in checkout["with"]["sparse-checkout"].split("\n")]
        # Generated files (the data file, compose files) are not this repository's; the module reads them at run time.
        root = tmp_path / job_id
        sparse_copy(root, [p for p in paths if (ROOT / p).exists()])
        result = imports(root, *modules, *(m for m, runner in PART_OF.items() if runner in modules))
        assert result.returncode == 0, (job_id, result.stderr)
        ran |= dict.fromkeys(modules, job_id)
    assert {"ci.deploy_gate": "deploy", "ci.deploy": "deploy", "ci.report": "report"}.items() <= ran.items()
    assert NEEDS_MORE.items() <= ran.items()


@pytest.fixture
def api():
    with GitHubAPI(repositories=[SOURCE]) as server:
        server.add_token(DISPATCH_TOKEN, write=True)
        yield server


def client(api: GitHubAPI, token: str = DISPATCH_TOKEN, base: str = "0") -> tuple[github.GitHub, list, list]:
    slept: list[float] = []
    logged: list[str] = []
    env = {"GITHUB_API_URL": api.url, github.BASE_DELAY_ENV: base}
    return github.GitHub(token, env=env, sleep=slept.append, log=logged.append), slept, logged


def post(gh: github.GitHub, description: str = "Built") -> github.Answer:
    return gh.post_status(SOURCE, SHA, "success", description, "https://github.com/acme/infra/actions/runs/1")


def test_a_status_is_posted_with_the_pinned_version_and_the_token_in_a_header_only(api) -> None:
    gh, slept, logged = client(api)
    answer = post(gh, "x" * 200)
    assert answer.status == 201 and answer.ok
    [request] = api.requests
    assert request.method == "POST" and request.path == f"/repos/{SOURCE}/statuses/{SHA}"
    assert request.headers["authorization"] == f"Bearer {DISPATCH_TOKEN}"
    assert request.headers["x-github-api-version"] == "2026-03-10"
    assert request.headers["user-agent"] == "dreamscape-infra-workflow"
    assert request.json == {
        "state": "success",
        "target_url": "https://github.com/acme/infra/actions/runs/1",
        "description": "x" * 139,
        "context": "central-cicd",
    }
    assert (slept, logged) == ([], [])


def test_a_502_is_retried_with_backoff_that_doubles(api) -> None:
    gh, slept, logged = client(api, base="3")
    api.script("statuses", Reply.server_error(502), Reply.server_error(503))
    assert post(gh).status == 201
    assert [r.status for r in api.requests] == [502, 503, 201]
    assert slept == [3, 6]
    assert logged[0] == f"HTTP 502 from POST /repos/{SOURCE}/statuses/{SHA} (attempt 1 of 5): retrying in 3s"


def test_retry_after_is_honoured_on_a_429_and_a_rate_limit_403(api) -> None:
    gh, slept, _ = client(api)
    api.script("statuses", Reply.rate_limited(retry_after=7), Reply.rate_limited(retry_after=2, status=403))
    assert post(gh).status == 201
    assert slept == [7, 2]


def test_an_exhausted_rate_limit_waits_for_its_reset(api) -> None:
    gh, slept, _ = client(api)
    reset = int(time.time()) + 20
    limited = Reply.forbidden("API rate limit exceeded")
    limited.headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
    api.script("statuses", limited)
    assert post(gh).status == 201
    [pause] = slept
    assert 19 <= pause <= 21


@pytest.mark.parametrize("reply", [Reply.forbidden(), Reply.not_found(), Reply.error(422, "Validation Failed")])
def test_a_refusal_is_not_retried(api, reply: Reply) -> None:
    gh, slept, _ = client(api)
    api.script("statuses", reply)
    answer = post(gh)
    assert answer.status == reply.status and not answer.ok
    assert answer.message() == reply.body["message"]
    assert len(api.requests) == 1 and slept == []


def test_a_revoked_token_gets_401_once(api) -> None:
    gh, _, _ = client(api, token="ghp_revoked")
    answer = post(gh)
    assert (answer.status, answer.message(), len(api.requests)) == (401, "Bad credentials", 1)


def test_retries_give_up_after_the_last_attempt(api) -> None:
    gh, slept, logged = client(api)
    api.script("statuses", *[Reply.server_error(502)] * github.MAX_ATTEMPTS)
    assert post(gh).status == 502
    assert len(api.requests) == github.MAX_ATTEMPTS == 5
    assert len(slept) == 4
    assert logged[-1].endswith("giving up after 5 attempts")


def test_a_wait_beyond_the_budget_stops_at_once(api) -> None:
    gh, slept, logged = client(api)
    api.script("statuses", Reply.rate_limited(retry_after=3600))
    assert post(gh).status == 429
    assert slept == [] and len(api.requests) == 1
    assert "more than the 120s retry budget allows" in logged[-1]


def test_nothing_answering_is_status_0_and_retried(tmp_path: Path) -> None:
    slept: list[float] = []
    env = {"GITHUB_API_URL": "http://127.0.0.1:9", github.BASE_DELAY_ENV: "1"}
    gh = github.GitHub(DISPATCH_TOKEN, env=env, sleep=slept.append, log=lambda _: None)
    answer = gh.call("GET", "/repos/acme/app")
    assert (answer.status, answer.ok, answer.json(), answer.message()) == (0, False, None, "")
    assert slept == [1, 2, 4, 8]


def test_the_shell_helper_and_the_client_share_one_policy() -> None:
    from components.workflows import shell

    assert (shell.API_VERSION, shell.MAX_ATTEMPTS, shell.BASE_DELAY_ENV) == (
        "2026-03-10",
        5,
        "DREAMSCAPE_RETRY_BASE_SECONDS",
    )
    assert "--max-time 30 " in shell.api_function()
    assert "X-GitHub-Api-Version: 2026-03-10" in shell.api_function()


def test_outputs_are_single_lines_and_a_line_break_is_refused(tmp_path: Path) -> None:
    from ci import runner

    env = {"GITHUB_OUTPUT": str(tmp_path / "output")}
    runner.set_outputs({"superseded": "", "images": "a=b c=d"}, env)
    for bad in ({"superseded": "x\nimages=evil"}, {"a=b": "c"}, {"x": "y\r"}):
        with pytest.raises(ValueError, match="single lines"):
            runner.set_outputs(bad, env)
    assert (tmp_path / "output").read_text() == "superseded=\nimages=a=b c=d\n"


def test_resolve_without_the_data_file_stops_before_any_call(tmp_path: Path) -> None:
    """A checkout without the stack's data file (pulumi up never ran): a clear error, nothing posted."""
    env = {"PYTHONPATH": str(ROOT), "EVENT_NAME": "repository_dispatch", "CLIENT_PAYLOAD": "{}"}
    env |= {"GITHUB_API_URL": "http://127.0.0.1:9", "PIPELINE_TOKEN": "x"}
    result = subprocess.run(
        [RUNNER_PYTHON, "-m", "ci.resolve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout == (
        "::error title=Pipeline data::.github/dreamscape/central.json is missing: run pulumi up on the wiring stack\n"
    )
