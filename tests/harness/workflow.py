"""Run a rendered workflow job's steps the way a GitHub-hosted runner does, with real bash.

    result = run_job(workflow_text, "dispatch", Context(
        github=push_context("o/src", "refs/heads/main", before, after, api_url=api.url),
        secrets={"DISPATCH_TOKEN": "ghp_x"}, vars={...}))
    result.step("decide").outputs["environment"]

For each step, in order:
- `if:` is evaluated (an implicit `success() &&` unless it names a status function);
- the environment is built like the runner's: the runner's default variables (`GITHUB_*`,
  `RUNNER_*`, `CI`), then workflow, job and step `env:` with `${{ }}` evaluated against the
  context (`github` with `event`, `secrets`, `vars`, `inputs`, `needs`, `matrix`, `strategy`,
  `steps.<id>.outputs/outcome/conclusion`, `env`, `job.status`, `runner`), then what earlier
  steps wrote to `GITHUB_ENV` and `GITHUB_PATH`;
- `python3` is the machine's system Python (RUNNER_PYTHON), found on PATH before the
  inherited PATH (which may lead to a virtualenv) and after what steps added to GITHUB_PATH;
- a `run:` body is written to a file and run with the step's shell, as GitHub does
  (`shell: bash` is `bash --noprofile --norc -eo pipefail {0}`; no shell is `bash -e {0}`),
  in a fresh process with only that environment, under a time limit;
- `GITHUB_OUTPUT`, `GITHUB_ENV` and `GITHUB_STEP_SUMMARY` are read back with GitHub's file
  command syntax (`name=value` or `name<<DELIMITER`); a malformed file fails the step.
- `ACTIONS_ID_TOKEN_REQUEST_URL` and `_TOKEN` are set only for a job whose `permissions:`
  grant `id-token: write`, and only when the test gives an OIDC endpoint (`Context.id_token`),
  as the runner does;
- a `uses:` step is not run: it is recorded as skipped, unless the test passes a stand-in for
  that action (`uses={"actions/checkout": fn}`; fn(step, with_, env) returns its outputs; `env`
  holds the runner's variables and the step's `env:`, as an action's process sees them).

Job `if:`, `defaults.run`, `continue-on-error` and job `outputs:` are honoured. Anything the
harness does not model (other shells, containers, services) raises, so a test never passes by
accident. Nothing is masked: tests check the raw logs for secrets.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness.expressions import Evaluator, ExpressionError, to_string

DEFAULT_STEP_TIMEOUT = 60.0
ZERO_SHA = "0" * 40
RUNNER_PYTHON = "/usr/bin/python3"
"""The runner image's own `python3` (not a virtualenv's): steps find it on PATH, as on GitHub."""

ID_TOKEN_VARIABLES = ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
UsesStandIn = Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, str]], Mapping[str, str]]


class HarnessError(RuntimeError):
    """The workflow uses something the harness does not model, or a step ran out of time."""


@dataclass
class Context:
    """What the expressions of a job see (besides what the run itself produces)."""

    github: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    needs: dict[str, Any] = field(default_factory=dict)
    """job id -> {"result": "success", "outputs": {...}}"""
    matrix: dict[str, Any] = field(default_factory=dict)
    strategy: dict[str, Any] = field(default_factory=dict)
    id_token: tuple[str, str] | None = None
    """The runner's OIDC token endpoint (request URL, request token), for jobs with `id-token: write`."""


@dataclass
class StepResult:
    index: int
    id: str
    name: str
    uses: str | None
    ran: bool
    """False when the `if:` said no, or for a `uses:` step without a stand-in."""
    outcome: str
    """success, failure or skipped (before continue-on-error)."""
    conclusion: str
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    env: dict[str, str] = field(default_factory=dict)
    """The environment it ran with (secrets included: never print it)."""
    note: str = ""


@dataclass
class JobResult:
    job: str
    status: str
    """success, failure or skipped."""
    steps: list[StepResult]
    outputs: dict[str, str]

    def step(self, step_id: str) -> StepResult:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"no step {step_id!r}; steps: {[s.id for s in self.steps]}")

    @property
    def summary(self) -> str:
        return "".join(s.summary for s in self.steps)

    @property
    def log(self) -> str:
        """Everything the steps printed (stdout and stderr), in order."""
        return "".join(s.stdout + s.stderr for s in self.steps)


# --- contexts ----------------------------------------------------------------------------------


def github_context(
    repository: str,
    event_name: str,
    ref: str,
    sha: str,
    event: dict[str, Any],
    api_url: str = "https://api.github.com",
    token: str = "ghs_job_token",  # noqa: S107 - a stand-in token for the stand-in API
    actor: str = "dreamscape-dev",
    workflow: str = "workflow",
) -> dict[str, Any]:
    """A `github` context with the fields a runner fills in."""
    owner = repository.split("/")[0]
    ref_type = "tag" if ref.startswith("refs/tags/") else "branch"
    ref_name = ref.split("/", 2)[2] if ref.count("/") >= 2 else ref
    return {
        "repository": repository,
        "repository_owner": owner,
        "event_name": event_name,
        "event": event,
        "ref": ref,
        "ref_name": ref_name,
        "ref_type": ref_type,
        "sha": sha,
        "actor": actor,
        "triggering_actor": actor,
        "workflow": workflow,
        "run_id": "1000001",
        "run_number": "7",
        "run_attempt": "1",
        "api_url": api_url,
        "server_url": "https://github.com",
        "graphql_url": "https://api.github.com/graphql",
        "token": token,
        "head_ref": "",
        "base_ref": "",
    }


def push_context(
    repository: str, ref: str, before: str, after: str, *, forced: bool = False, **kwargs: Any
) -> dict[str, Any]:
    """The `github` context of a push (a new branch has `before` all zeros)."""
    event = {
        "ref": ref,
        "before": before,
        "after": after,
        "created": before == ZERO_SHA,
        "deleted": after == ZERO_SHA,
        "forced": forced,
        "repository": {"full_name": repository, "name": repository.split("/")[1]},
        "head_commit": None if after == ZERO_SHA else {"id": after},
    }
    return github_context(repository, "push", ref, after, event, **kwargs)


def dispatch_context(repository: str, ref: str, sha: str, inputs: dict[str, Any] | None = None, **kwargs: Any):
    """The `github` context of a workflow_dispatch run."""
    event = {"ref": ref, "inputs": inputs or {}, "repository": {"full_name": repository}}
    return github_context(repository, "workflow_dispatch", ref, sha, event, **kwargs)


# --- file commands ----------------------------------------------------------------------------


def parse_file_commands(text: str, what: str) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV syntax: `name=value` lines and `name<<DELIMITER` blocks."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line == "":
            i += 1
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i] != delimiter:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise HarnessError(f"Unable to process file command '{what}': no closing {delimiter!r}")
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            if not name:
                raise HarnessError(f"Unable to process file command '{what}': empty name in {line!r}")
            values[name] = value
        else:
            raise HarnessError(f"Unable to process file command '{what}': invalid format {line!r}")
        i += 1
    return values


# --- running -----------------------------------------------------------------------------------


def _shell_command(shell: str | None, script: Path) -> list[str]:
    if shell is None:
        return ["bash", "-e", str(script)]
    if shell == "bash":
        return ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)]
    if shell == "sh":
        return ["sh", "-e", str(script)]
    raise HarnessError(f"the harness runs bash and sh steps only, not {shell!r}")


def _runner_env(context: Context, job_id: str, workdir: Path, files: dict[str, Path], workflow_name: str):
    gh = context.github
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir / "home"),
        "LANG": "C.UTF-8",
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_ACTOR": to_string(gh.get("actor")),
        "GITHUB_API_URL": to_string(gh.get("api_url")),
        "GITHUB_SERVER_URL": to_string(gh.get("server_url")),
        "GITHUB_GRAPHQL_URL": to_string(gh.get("graphql_url")),
        "GITHUB_REPOSITORY": to_string(gh.get("repository")),
        "GITHUB_REPOSITORY_OWNER": to_string(gh.get("repository_owner")),
        "GITHUB_EVENT_NAME": to_string(gh.get("event_name")),
        "GITHUB_EVENT_PATH": str(files["event"]),
        "GITHUB_REF": to_string(gh.get("ref")),
        "GITHUB_REF_NAME": to_string(gh.get("ref_name")),
        "GITHUB_REF_TYPE": to_string(gh.get("ref_type")),
        "GITHUB_SHA": to_string(gh.get("sha")),
        "GITHUB_HEAD_REF": to_string(gh.get("head_ref")),
        "GITHUB_BASE_REF": to_string(gh.get("base_ref")),
        "GITHUB_RUN_ID": to_string(gh.get("run_id")),
        "GITHUB_RUN_NUMBER": to_string(gh.get("run_number")),
        "GITHUB_RUN_ATTEMPT": to_string(gh.get("run_attempt")),
        "GITHUB_WORKFLOW": workflow_name,
        "GITHUB_JOB": job_id,
        "GITHUB_WORKSPACE": str(workdir / "workspace"),
        "RUNNER_OS": "Linux",
        "RUNNER_ARCH": "X64",
        "RUNNER_NAME": "harness",
        "RUNNER_TEMP": str(workdir / "temp"),
        "RUNNER_TOOL_CACHE": str(workdir / "toolcache"),
    }
    return env


def run_job(
    workflow: str | Mapping[str, Any],
    job_id: str,
    context: Context,
    *,
    extra_env: Mapping[str, str] | None = None,
    uses: Mapping[str, UsesStandIn] | None = None,
    step_timeout: float = DEFAULT_STEP_TIMEOUT,
    refusals_expected: bool = False,
) -> JobResult:
    """Run one job of `workflow` (YAML text or the parsed document); see the module docstring.

    `extra_env` is added to the runner's default environment (workflow `env:` overrides it):
    it stands for what a runner machine has set, e.g. a test-only retry delay. A secret of the
    run on a command line raises HarnessError whatever the job's outcome, unless the test is
    about that (`refusals_expected`).
    """
    document = yaml.safe_load(workflow) if isinstance(workflow, str) else dict(workflow)
    jobs = document.get("jobs") or {}
    if job_id not in jobs:
        raise KeyError(f"no job {job_id!r}; jobs: {list(jobs)}")
    job = jobs[job_id]
    for unsupported in ("container", "services", "uses"):
        if unsupported in job:
            raise HarnessError(f"job {job_id}: the harness does not model '{unsupported}'")

    workdir = Path(tempfile.mkdtemp(prefix="workflow-harness-"))
    try:
        for sub in ("home", "workspace", "temp", "toolcache", "runner-bin"):
            (workdir / sub).mkdir()
        install_argv_guard(workdir / "runner-bin", guarded_values(context))
        install_python(workdir / "runner-bin")
        files = {"event": workdir / "event.json"}
        files["event"].write_text(json.dumps(context.github.get("event") or {}))
        runner_env = _runner_env(context, job_id, workdir, files, to_string(document.get("name") or "workflow"))
        runner_env.update(extra_env or {})
        if set(runner_env) & set(ID_TOKEN_VARIABLES):
            raise HarnessError("the runner sets the OIDC request variables itself (Context.id_token)")
        permissions = job.get("permissions", document.get("permissions"))
        if context.id_token and isinstance(permissions, dict) and permissions.get("id-token") == "write":
            runner_env.update(zip(ID_TOKEN_VARIABLES, context.id_token, strict=True))
        result = _Job(document, job_id, job, context, runner_env, workdir, uses or {}, step_timeout).run()
        trips = guard_trips(workdir / "runner-bin")
        if trips and not refusals_expected:
            raise HarnessError(f"job {job_id}: a secret of the run on the command line of {', '.join(trips)}")
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


GUARDED_TOOLS = ("curl", "docker", "ssh", "oci", "git", "wget")
"""Commands whose arguments are checked for a secret of the run: any process on the runner can
read another's command line (`ps`, /proc), so a token or key belongs on stdin or in a file."""
GUARD_EXIT = 97
MIN_GUARDED = 8
"""Shorter values (`true`, a port) are too common to tell apart from ordinary arguments."""

ARGV_GUARD = r"""#!/bin/bash
# The harnesses' guard: refuse a secret of the run on this command's command line, then run
# the real command (the next one on PATH). The secrets: one per line, in `guarded-values`
# beside this script.
self="${0##*/}"
here="${0%/*}"
values="${here}/guarded-values"
[[ -r "$values" ]] || values=/dev/null
for arg in "$@"; do
  while IFS= read -r value; do
    if [[ -n "$value" && "$arg" == *"$value"* ]]; then
      echo "harness: a secret of the run is on ${self}'s command line" >&2
      { printf '%s\n' "$self" >> "${here}/trips"; } 2>/dev/null || true
      exit 97
    fi
  done < "$values"
done
rest=":${PATH}:"
rest="${rest//:${here}:/:}"
real="$(PATH="${rest#:}" command -v "$self")" || { echo "workflow harness: no ${self} on PATH" >&2; exit 127; }
exec "$real" "$@"
"""


ADDRESSES = ("VM_HOST",)
"""Secrets that hold an address, not something confidential: ssh is given it as its host."""


def guarded_values(context: Context) -> list[str]:
    """Each secret of the run (each line of a multi-line one: a key's body), long enough to tell."""
    values = [context.github.get("token", ""), *(v for k, v in context.secrets.items() if not k.startswith(ADDRESSES))]
    if context.id_token:
        values.append(context.id_token[1])
    return secret_lines(values)


def secret_lines(values: Iterable[Any]) -> list[str]:
    """The lines of these secrets the guard looks for: long enough to tell from an ordinary
    argument, and not a PEM armour line (`-----BEGIN ...`), which any key has."""
    lines = {line.strip() for value in values for line in str(value).splitlines()}
    return sorted(v for v in lines if len(v) >= MIN_GUARDED and not v.startswith("-----"))


def write_guarded_values(values_file: Path, values: list[str]) -> None:
    """The secrets the guard refuses, one a line; readable by all: the guarded command may run
    as another user (the deploy program runs as the deploy user)."""
    values_file.write_text("".join(f"{v}\n" for v in values))
    values_file.chmod(0o644)


def install_argv_guard(directory: Path, values: list[str], tools: tuple[str, ...] = GUARDED_TOOLS) -> Path:
    """The guard for each of `tools` in `directory` (put it first on PATH), refusing `values`;
    returns the file of values it reads (write_guarded_values changes them)."""
    values_file = directory / "guarded-values"
    write_guarded_values(values_file, values)
    for tool in tools:
        (directory / tool).write_text(ARGV_GUARD)
        (directory / tool).chmod(0o755)
    return values_file


ARGV_AUDIT = Path(__file__).with_name("argv_audit")
"""The guard inside Python (its sitecustomize.py): it checks every process a Python program starts,
also those it starts with a PATH of its own, past the guard scripts."""

DEPLOY_CLIENT_SECRETS = (
    "SSH_PRIVATE_KEY",
    "OCI_DEPLOY_CREDENTIAL",
    "APP_SECRETS",
    "DEPLOY_REGISTRY_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
)
"""The deploy job's secrets, as its client reads them; a JSON one is guarded value by value."""


def _leaves(value: str) -> list[str]:
    try:
        decoded = json.loads(value)
    except ValueError:
        return [value]
    if isinstance(decoded, dict):
        return [leaf for v in decoded.values() for leaf in _leaves(v if isinstance(v, str) else json.dumps(v))]
    return [value]


def guarded_client_env(env: Mapping[str, str], directory: Path) -> dict[str, str]:
    """`env` for `python3 -m ci.deploy` under both guards (the scripts first on its PATH, the hook
    inside it), refusing each of its DEPLOY_CLIENT_SECRETS; `guard_trips(directory)` says what
    they refused."""
    directory.mkdir(parents=True, exist_ok=True)
    values = [leaf for name in DEPLOY_CLIENT_SECRETS if env.get(name) for leaf in _leaves(env[name])]
    path = env.get("PATH", os.defpath)
    # Only before a command the PATH has: a guard must not make a missing one look present.
    install_argv_guard(directory, secret_lines(values), tuple(t for t in GUARDED_TOOLS if shutil.which(t, path=path)))
    return {
        **env,
        "PATH": f"{directory}{os.pathsep}{path}",
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ARGV_AUDIT), env.get("PYTHONPATH")))),
        "HARNESS_GUARD_DIR": str(directory),
    }


def install_python(directory: Path) -> None:
    """`python3` in `directory`: the runner's Python with the guard inside, refusing the values
    of the guard scripts beside it."""
    (directory / "python3").write_text(
        "#!/bin/bash\n"
        f'export PYTHONPATH={shlex.quote(str(ARGV_AUDIT))}"${{PYTHONPATH:+:$PYTHONPATH}}"\n'
        f"export HARNESS_GUARD_DIR={shlex.quote(str(directory))}\n"
        f'exec {RUNNER_PYTHON} "$@"\n'
    )
    (directory / "python3").chmod(0o755)


def guard_trips(directory: Path) -> list[str]:
    """The commands the guards refused in `directory`, one each time."""
    trips = directory / "trips"
    return trips.read_text().splitlines() if trips.exists() else []


def assert_guarded(directory: Path) -> None:
    """The guard was inside the Python program run with `guarded_client_env(..., directory)`,
    and neither guard refused anything."""
    assert (directory / "loaded").exists(), "the argv guard was not loaded (python3 -I, -E or -S?)"
    assert guard_trips(directory) == [], f"a secret of the run on a command line: {guard_trips(directory)}"


class _Job:
    def __init__(self, document, job_id, job, context, runner_env, workdir, uses, step_timeout) -> None:
        self.document = document
        self.job_id = job_id
        self.job = job
        self.context = context
        self.runner_env = runner_env
        self.workdir = workdir
        self.uses = uses
        self.step_timeout = step_timeout
        self.steps_context: dict[str, Any] = {}
        self.failed = False
        self.added_env: dict[str, str] = {}
        self.added_path: list[str] = []

    def evaluator(self, env: Mapping[str, str]) -> Evaluator:
        contexts = {
            "github": self.context.github,
            "secrets": {"GITHUB_TOKEN": self.context.github.get("token", ""), **self.context.secrets},
            "vars": self.context.vars,
            "inputs": self.context.inputs,
            "needs": self.context.needs,
            "matrix": self.context.matrix,
            "strategy": self.context.strategy,
            "steps": self.steps_context,
            "env": dict(env),
            "job": {"status": "failure" if self.failed else "success"},
            "runner": {
                "os": "Linux",
                "arch": "X64",
                "name": "harness",
                "temp": self.runner_env["RUNNER_TEMP"],
                "tool_cache": self.runner_env["RUNNER_TOOL_CACHE"],
            },
        }
        return Evaluator(contexts, status=self._status)

    def _status(self, name: str) -> bool:
        return {
            "always": True,
            "cancelled": False,
            "success": not self.failed,
            "failure": self.failed,
        }[name]

    def _env_block(self, block: Any, evaluator: Evaluator, base: dict[str, str]) -> dict[str, str]:
        out = dict(base)
        for key, value in (block or {}).items():
            out[str(key)] = to_string(evaluator.template(value))
            evaluator.contexts["env"][str(key)] = out[str(key)]  # type: ignore[index]
        return out

    def run(self) -> JobResult:
        base_eval = self.evaluator({})
        if "if" in self.job and not base_eval.condition(self.job["if"]):
            return JobResult(self.job_id, "skipped", [], {})
        defaults = {
            **((self.document.get("defaults") or {}).get("run") or {}),
            **((self.job.get("defaults") or {}).get("run") or {}),
        }
        env_eval = self.evaluator({})
        declared = self._env_block(self.document.get("env"), env_eval, {})
        declared = self._env_block(self.job.get("env"), env_eval, declared)
        results = []
        for index, step in enumerate(self.job.get("steps") or []):
            results.append(self._step(index, step, declared, defaults))
        job_eval = self.evaluator({**declared, **self.added_env})
        outputs = {k: to_string(job_eval.template(v)) for k, v in (self.job.get("outputs") or {}).items()}
        return JobResult(self.job_id, "failure" if self.failed else "success", results, outputs)

    def _step(self, index: int, step: Mapping[str, Any], declared: dict[str, str], defaults: dict) -> StepResult:
        step_id = str(step.get("id") or f"__step{index}")
        name = str(step.get("name") or step.get("run", step.get("uses", ""))).split("\n")[0]
        for unsupported in set(step) - {
            "id",
            "name",
            "if",
            "env",
            "run",
            "uses",
            "with",
            "shell",
            "working-directory",
            "continue-on-error",
            "timeout-minutes",
        }:
            raise HarnessError(f"step {step_id}: the harness does not model '{unsupported}'")
        env_before = {**declared, **self.added_env}
        evaluator = self.evaluator(env_before)
        if not evaluator.condition(step.get("if")):
            return self._record(StepResult(index, step_id, name, step.get("uses"), False, "skipped", "skipped", None))
        env = self._env_block(step.get("env"), evaluator, env_before)
        continue_on_error = truthy_value(evaluator.template(step.get("continue-on-error", False)))
        if "uses" in step:
            result = self._uses(index, step_id, name, step, evaluator, env)
        elif "run" in step:
            result = self._run(index, step_id, name, step, evaluator, env, defaults)
        else:
            raise HarnessError(f"step {step_id}: neither run nor uses")
        if result.outcome == "failure":
            if continue_on_error:
                result.conclusion = "success"
            else:
                self.failed = True
        return self._record(result)

    def _record(self, result: StepResult) -> StepResult:
        self.steps_context[result.id] = {
            "outputs": dict(result.outputs),
            "outcome": result.outcome,
            "conclusion": result.conclusion,
        }
        return result

    def _uses(self, index, step_id, name, step, evaluator, env) -> StepResult:
        action = str(step["uses"]).split("@", 1)[0]
        stand_in = self.uses.get(action)
        if stand_in is None:
            return StepResult(
                index, step_id, name, step["uses"], False, "skipped", "skipped", None, note="uses: not run"
            )
        with_ = {k: evaluator.template(v) for k, v in (step.get("with") or {}).items()}
        try:
            # The stand-in sees what the action would: the runner's variables (GITHUB_WORKSPACE...) and the step's env.
            outputs = dict(stand_in(step, with_, {**self.runner_env, **env}))
        except Exception as error:  # the stand-in failed the step, as the action would
            return StepResult(index, step_id, name, step["uses"], True, "failure", "failure", 1, stderr=str(error))
        return StepResult(index, step_id, name, step["uses"], True, "success", "success", 0, outputs=outputs)

    def _run(self, index, step_id, name, step, evaluator, env, defaults) -> StepResult:
        temp = Path(self.runner_env["RUNNER_TEMP"])
        token = uuid.uuid4().hex
        files = {
            "GITHUB_OUTPUT": temp / f"output_{token}",
            "GITHUB_ENV": temp / f"env_{token}",
            "GITHUB_PATH": temp / f"path_{token}",
            "GITHUB_STEP_SUMMARY": temp / f"summary_{token}",
            "GITHUB_STATE": temp / f"state_{token}",
        }
        for path in files.values():
            path.write_text("")
        script = temp / f"{token}.sh"
        script.write_text(to_string(evaluator.template(step["run"])))
        shell = step.get("shell", defaults.get("shell"))
        workdir = Path(self.runner_env["GITHUB_WORKSPACE"])
        subdir = step.get("working-directory", defaults.get("working-directory"))
        if subdir:
            workdir = workdir / to_string(evaluator.template(subdir))
        path = ":".join([*reversed(self.added_path), str(self.workdir / "runner-bin"), self.runner_env["PATH"]])
        process_env = {
            **self.runner_env,
            **env,
            **{k: str(v) for k, v in files.items()},
            "PATH": path,
        }
        timeout = self.step_timeout
        if "timeout-minutes" in step:
            timeout = min(timeout, float(evaluator.template(step["timeout-minutes"])) * 60)
        process = subprocess.Popen(
            _shell_command(shell, script),
            cwd=workdir,
            env=process_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise HarnessError(f"step {step_id} ran longer than {timeout:.0f}s") from None
        result = StepResult(
            index,
            step_id,
            name,
            None,
            True,
            "success" if process.returncode == 0 else "failure",
            "success" if process.returncode == 0 else "failure",
            process.returncode,
            stdout.decode(errors="replace"),
            stderr.decode(errors="replace"),
            env=process_env,
        )
        try:
            result.outputs = parse_file_commands(files["GITHUB_OUTPUT"].read_text(), "output")
            self.added_env.update(parse_file_commands(files["GITHUB_ENV"].read_text(), "env"))
        except HarnessError as error:
            result.outcome = result.conclusion = "failure"
            result.stderr += f"\n{error}\n"
        self.added_path += [p for p in files["GITHUB_PATH"].read_text().split("\n") if p]
        result.summary = files["GITHUB_STEP_SUMMARY"].read_text()
        return result


def truthy_value(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


__all__ = [
    "Context",
    "ExpressionError",
    "HarnessError",
    "JobResult",
    "StepResult",
    "dispatch_context",
    "github_context",
    "parse_file_commands",
    "push_context",
    "run_job",
]
