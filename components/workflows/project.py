"""This repository's own workflows: preview on pull requests, apply on main, nightly drift.

Unlike the workflows the program provisions in other repositories, these three files are
committed here, under `.github/workflows/`. `make golden` writes them from this module and
`tests/test_project_workflows.py` fails when the committed copies differ.

- `preview.yml` (pull requests to main): the offline plan of every stack on the base and on
  the merge commit, diffed, in the job summary and an artifact (this part needs no secret, so
  it also runs for pull requests from forks); for pull requests from this repository only,
  `pulumi preview` of each stack, then one job that writes all of it into a single pull
  request comment, edited in place on every push.
- `apply.yml` (push to main): `pulumi up` of dev, then staging, then production (in the
  GitHub environment `production`); never two at once.
- `drift.yml` (nightly, or by hand): `pulumi preview --refresh --expect-no-changes` of each
  stack; on drift the run fails and one issue names the stacks and resources.

Secrets reach only the steps that run Pulumi, through `env:`, and only as secrets of a GitHub
environment: `pulumi` (apply and drift) admits the default branch alone, so a workflow edited on
another branch cannot read them; `pulumi-preview` (pull requests) requires a reviewer's
approval before a pull request's code runs with them. Repository secrets would reach a
workflow on any branch.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components import rules
from components.workflows import actions, emit

SOURCE = "components/workflows/project.py"
DIRECTORY = Path(".github") / "workflows"
RUNNER = "ubuntu-24.04"
PYTHON_VERSION = "3.11"
"""The program's Python (pyproject.toml's target)."""

STACKS = rules.ENVIRONMENTS
"""Stack names; also the order `apply.yml` goes through them."""
MATRIX_STACK = "${{ matrix.stack }}"
INFRA_ENVIRONMENT = "pulumi"
"""The GitHub environment holding the infra credentials for apply and drift: its deployment
branch policy admits the default branch only (docs/operations.md says how to create it)."""
PREVIEW_ENVIRONMENT = "pulumi-preview"
"""The environment of secret-bearing pull request previews: required reviewers approve each
run before it starts; without reviewers it must hold no secret (previews are then offline)."""
DEFAULT_BRANCH = "${{ github.event.repository.default_branch }}"

PREVIEW_MARKER = "<!-- dreamscape-infra:pulumi-preview -->"
"""First line of the pull request comment; how the comment job finds it again."""
COMMENT_AUTHOR = "github-actions[bot]"
"""Who posts with the workflow's GITHUB_TOKEN; only its comments are edited."""
DRIFT_TITLE = "Infrastructure drift detected"
DRIFT_LABEL = "infrastructure-drift"
DRIFT_MARKER = "<!-- dreamscape-infra:drift -->"
DRIFT_CRON = "17 3 * * *"
"""Nightly at 03:17 UTC: off the hour, when GitHub's scheduler is busiest and delays runs."""
APPLY_CONCURRENCY = "pulumi-apply"

COMMENT_LIMIT = 12_000
"""Characters of one stack's preview in the comment; GitHub caps a comment at 65,536."""
SUMMARY_LIMIT = 60_000
"""Characters of one diff in a job summary (GitHub caps a step's summary at 1 MiB)."""

IGNORED_DRIFT_OPS = ("same", "read", "refresh")
"""`pulumi preview --json` step operations that are not a change."""


@dataclass(frozen=True)
class Credential:
    """A repository secret (or variable) and the environment variable that carries it."""

    name: str
    """Its name under Settings → Secrets and variables → Actions."""
    env: str
    """The environment variable the Pulumi CLI or a provider reads."""
    purpose: str
    variable: bool = False
    """A repository variable (not secret) rather than a secret."""

    @property
    def expression(self) -> str:
        context = "vars" if self.variable else "secrets"
        return "${{ " + f"{context}.{self.name}" + " }}"


CREDENTIALS: tuple[Credential, ...] = (
    Credential(
        "PULUMI_BACKEND_URL",
        "PULUMI_BACKEND_URL",
        "the state backend: the s3:// URL `make state-backend` prints",
        variable=True,
    ),
    Credential("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE", "passphrase of the stacks' secrets provider"),
    Credential(
        "PULUMI_STATE_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID", "Customer Secret Key for the state bucket: access key"
    ),
    Credential(
        "PULUMI_STATE_SECRET_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "Customer Secret Key for the state bucket: secret key",
    ),
    Credential("OCI_TENANCY_OCID", "TF_VAR_tenancy_ocid", "OCI provider: tenancy OCID"),
    Credential("OCI_USER_OCID", "TF_VAR_user_ocid", "OCI provider: user OCID of the API signing key"),
    Credential("OCI_FINGERPRINT", "TF_VAR_fingerprint", "OCI provider: fingerprint of the API signing key"),
    Credential("OCI_PRIVATE_KEY", "TF_VAR_private_key", "OCI provider: the API signing key (PEM)"),
    Credential("PULUMI_GITHUB_TOKEN", "GITHUB_TOKEN", "GitHub provider: token that writes the wiring (see the README)"),
)


def pulumi_cli_version() -> str:
    """The Pulumi CLI release matching the pinned SDK (they are released together)."""
    path = Path(__file__).resolve().parents[2] / "requirements.txt"
    match = re.search(r"^pulumi==([0-9][0-9.]*)\s*$", path.read_text(), re.MULTILINE)
    if not match:
        raise ValueError(f"{path}: no `pulumi==<version>` pin")
    return match.group(1)


# --- steps -----------------------------------------------------------------------------------


def _script(text: str) -> str:
    return "set -euo pipefail\n" + textwrap.dedent(text).strip("\n") + "\n"


def _checkout(**extra: Any) -> dict[str, Any]:
    return {
        "name": extra.pop("name", "Check out"),
        "uses": actions.uses("actions/checkout"),
        "with": {**extra, "persist-credentials": False},
    }


def _setup_python() -> dict[str, Any]:
    return {
        "name": "Set up Python",
        "uses": actions.uses("actions/setup-python"),
        "with": {"python-version": PYTHON_VERSION},
    }


def _program_venv() -> dict[str, Any]:
    return {
        "name": "Install the program's dependencies",
        # Pulumi.yaml names .venv as the program's virtualenv.
        "run": _script(
            """
            python -m venv .venv
            .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
            """
        ),
    }


def _pulumi_cli() -> dict[str, Any]:
    # Without `command`, the action installs the CLI and stops; the steps below run it.
    return {
        "name": "Install the Pulumi CLI",
        "uses": actions.uses("pulumi/actions"),
        "with": {"pulumi-version": pulumi_cli_version()},
    }


# Plain settings for the Pulumi steps. The CLI's S3 client (aws-sdk-go-v2) adds checksums to
# every upload and checks them on every download unless told otherwise, which S3-compatible
# stores do not all accept; only where S3 requires them.
PULUMI_SETTINGS = {
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}


def _pulumi(name: str, stack: str, script: str) -> dict[str, Any]:
    env = {c.env: c.expression for c in CREDENTIALS}
    env.update(PULUMI_SETTINGS)
    env["STACK"] = stack
    return {"name": name, "env": env, "run": _script(script)}


def _upload(name: str, path: str) -> dict[str, Any]:
    # Also after a failed step: its output is what the comment or the report shows.
    return {
        "name": f"Keep {name}",
        "if": "!cancelled()",
        "uses": actions.uses("actions/upload-artifact"),
        "with": {"name": name, "path": path, "if-no-files-found": "warn", "retention-days": 14},
    }


def _program_steps(**checkout: Any) -> list[dict[str, Any]]:
    return [_checkout(**checkout), _setup_python(), _program_venv(), _pulumi_cli()]


def _stack_matrix_job(
    title: str,
    command: str,
    script: str,
    artifact: str,
    path: str,
    environment: str,
    condition: str | None = None,
    checkout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One job per stack running `command`; the step's output is kept as `<artifact>-<stack>`."""
    job: dict[str, Any] = {"name": f"{title} ({MATRIX_STACK})"}
    if condition:
        job["if"] = condition
    job.update(
        {
            "runs-on": RUNNER,
            "timeout-minutes": 30,
            "permissions": {"contents": "read"},
            "environment": environment,
            "strategy": {"fail-fast": False, "matrix": {"stack": list(STACKS)}},
            "steps": [
                *_program_steps(**(checkout or {})),
                _pulumi(command, MATRIX_STACK, script),
                _upload(f"{artifact}-{MATRIX_STACK}", path),
            ],
        }
    )
    return job


_STACK_WORDS = " ".join(STACKS)

# `section TITLE FILE LIMIT`: a collapsed block holding FILE, HTML-escaped inside <pre> so no
# diff line can close it or turn into markdown; cut at LIMIT characters.
_SECTION = textwrap.dedent(
    """
    section() {
      local title="$1" file="$2" limit="$3" escaped
      echo
      if [ ! -f "$file" ]; then
        echo "**$title**: no result (the job stopped before producing it)."
        return
      fi
      if [ ! -s "$file" ]; then
        echo "**$title**: no change."
        return
      fi
      escaped="$(jq -Rrs '@html' <"$file")"
      echo "<details><summary>$title</summary>"
      echo
      echo "<pre>"
      printf '%s\\n' "${escaped:0:$limit}"
      echo "</pre>"
      if [ "${#escaped}" -gt "$limit" ]; then
        echo
        echo "_Cut at $limit characters: the run's artifacts hold the whole text._"
      fi
      echo "</details>"
    }
    """
).strip("\n")


# --- preview.yml ------------------------------------------------------------------------------

_SAME_REPOSITORY = "github.event.pull_request.head.repo.full_name == github.repository"


def _offline_plan_job() -> dict[str, Any]:
    install = _script(
        """
        python -m venv head/.venv
        head/.venv/bin/python -m pip install --quiet --disable-pip-version-check -r head/requirements.txt
        # The base branch gets its own environment only when its pins differ.
        if ! cmp -s base/requirements.txt head/requirements.txt; then
          python -m venv base/.venv
          base/.venv/bin/python -m pip install --quiet --disable-pip-version-check -r base/requirements.txt
        fi
        """
    )
    render = _script(
        f"""
        out="$RUNNER_TEMP/offline-plan"
        scratch="$RUNNER_TEMP/render"
        failed=""
        for tree in base head; do
          python="$PWD/$tree/.venv/bin/python"
          [ -x "$python" ] || python="$PWD/head/.venv/bin/python"
          mkdir -p "$out/$tree/plans" "$out/$tree/files"
          for stack in {_STACK_WORDS}; do
            rm -rf "$scratch"
            mkdir -p "$scratch"
            # Same render path for both trees, so the printed plans differ only where the plans do.
            if (cd "$tree" && "$python" tools/plan.py --stack "$stack" --render-dir "$scratch") \\
                >"$out/$tree/plans/$stack.txt" 2>&1; then
              mv "$scratch" "$out/$tree/files/$stack"
            else
              echo "::warning title=Offline plan::stack $stack does not plan on $tree"
              [ "$tree" = base ] || failed="$failed $stack"
            fi
          done
        done
        if [ -n "$failed" ]; then
          echo "::error title=Offline plan::these stacks do not plan on the pull request:$failed"
          cat "$out"/head/plans/*.txt
          exit 1
        fi
        """
    )
    diff = _script(
        f"""
        {_indent(_SECTION, 8)}
        cd "$RUNNER_TEMP/offline-plan"
        mkdir -p base/plans head/plans base/files head/files
        for part in plans files; do
          status=0
          diff -ruN "base/$part" "head/$part" >"$part.diff" || status=$?
          [ "$status" -le 1 ] || exit "$status"
        done
        {{
          echo "## Offline plan"
          echo
          echo "Rendered without credentials from base ${{BASE_SHA:0:12}} and merge commit ${{HEAD_SHA:0:12}}:"
          echo "the resources each stack registers, and every file \\`pulumi up\\` would write."
          section "Resources (tools/plan.py)" plans.diff {SUMMARY_LIMIT}
          section "Rendered files" files.diff {SUMMARY_LIMIT}
        }} >>"$GITHUB_STEP_SUMMARY"
        """
    )
    return {
        "name": "Offline plan (base and pull request)",
        "runs-on": RUNNER,
        "timeout-minutes": 20,
        "permissions": {"contents": "read"},
        "steps": [
            _checkout(name="Check out the pull request", path="head"),
            _checkout(
                name="Check out the base branch",
                ref="${{ github.event.pull_request.base.sha }}",
                path="base",
            ),
            _setup_python(),
            {"name": "Install the program's dependencies", "run": install},
            {"name": "Plan and render every stack on both trees", "run": render},
            {
                "name": "Diff base and pull request",
                "if": "!cancelled()",
                "env": {
                    "BASE_SHA": "${{ github.event.pull_request.base.sha }}",
                    "HEAD_SHA": "${{ github.sha }}",
                },
                "run": diff,
            },
            _upload("offline-plan", "${{ runner.temp }}/offline-plan/*.diff"),
        ],
    }


def _preview_job() -> dict[str, Any]:
    preview = f"""
        out="$RUNNER_TEMP/preview"
        mkdir -p "$out"
        if [ -z "${{PULUMI_CONFIG_PASSPHRASE:-}}" ]; then
          # The environment holds no credentials (no reviewers to approve a run): offline plan only.
          echo "::notice title=No preview::{PREVIEW_ENVIRONMENT} holds no credentials; the offline plan is the preview"
          echo offline >"$out/exit-code"
          exit 0
        fi
        status=0
        pulumi preview --stack "$STACK" --diff --non-interactive --suppress-outputs --color never \\
          >"$out/preview.txt" 2>&1 || status=$?
        cat "$out/preview.txt"
        echo "$status" >"$out/exit-code"
        exit "$status"
        """
    # A pull request from a fork gets no secrets: the offline plan covers it. From this
    # repository, the run waits for a reviewer of the environment before the code runs.
    return _stack_matrix_job(
        "pulumi preview",
        "pulumi preview",
        preview,
        "preview",
        "${{ runner.temp }}/preview/",
        environment=PREVIEW_ENVIRONMENT,
        condition=_SAME_REPOSITORY,
    )


def _comment_job() -> dict[str, Any]:
    rows = "\n".join(f'  row {stack} "$artifacts/preview-{stack}"' for stack in STACKS)
    sections = "\n".join(
        f'  section "pulumi preview: {stack}" "$artifacts/preview-{stack}/preview.txt" {COMMENT_LIMIT}'
        for stack in STACKS
    )
    select = f'.[] | select(.user.login == "{COMMENT_AUTHOR}") | select(.body | startswith("{PREVIEW_MARKER}")) | .id'
    script = _script(
        f"""
        {_indent(_SECTION, 8)}
        # `row STACK DIR`: the stack's line of the table, from the preview job's artifact.
        row() {{
          local stack="$1" dir="$2" code changes
          if [ ! -f "$dir/exit-code" ]; then
            echo "| $stack | no result | |"
            return
          fi
          code="$(cat "$dir/exit-code")"
          if [ "$code" = offline ]; then
            echo "| $stack | offline plan only (no credentials for previews) | |"
            return
          fi
          changes="$(awk '/^Resources:/ {{ p = 1; next }} p && NF == 0 {{ exit }} p {{ $1 = $1; print }}' \\
            "$dir/preview.txt" | paste -sd ',' - | sed 's/,/, /g')"
          if [ "$code" = 0 ]; then
            echo "| $stack | ok | $changes |"
          else
            echo "| $stack | **failed** (exit $code) | $changes |"
          fi
        }}

        artifacts="$RUNNER_TEMP/artifacts"
        gh run download "$GITHUB_RUN_ID" --repo "$GITHUB_REPOSITORY" --dir "$artifacts"
        body="$RUNNER_TEMP/comment.md"
        {{
          echo "{PREVIEW_MARKER}"
          echo "## Pulumi preview"
          echo
          run_url="$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID"
          echo "Merge commit ${{HEAD_SHA:0:12}}, [workflow run]($run_url)."
          echo
          echo "| stack | preview | changes |"
          echo "| --- | --- | --- |"
        {_indent(rows, 8)}
        {_indent(sections, 8)}
          section "Offline plan: resources" "$artifacts/offline-plan/plans.diff" {COMMENT_LIMIT}
          section "Offline plan: rendered files" "$artifacts/offline-plan/files.diff" {COMMENT_LIMIT}
        }} >"$body"
        jq -n --rawfile body "$body" '{{body: $body}}' >"$RUNNER_TEMP/comment.json"

        # One comment per pull request, found by its first line and edited on every push.
        ids="$(gh api --paginate "repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments" \\
          --jq '{select}')"
        comment_id="${{ids%%$'\\n'*}}"
        if [ -n "$comment_id" ]; then
          gh api --method PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$comment_id" \\
            --input "$RUNNER_TEMP/comment.json" >/dev/null
          echo "Updated comment $comment_id"
        else
          gh api --method POST "repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments" \\
            --input "$RUNNER_TEMP/comment.json" >/dev/null
          echo "Posted the preview comment"
        fi
        """
    )
    return {
        "name": "Pull request comment",
        "needs": ["offline-plan", "preview"],
        # After the previews whatever their outcome, so a failed stack shows as failed; not
        # for a cancelled run (a newer push), whose stale results would overwrite the comment.
        "if": f"!cancelled() && {_SAME_REPOSITORY}",
        "runs-on": RUNNER,
        "timeout-minutes": 10,
        "permissions": {"actions": "read", "pull-requests": "write"},
        "steps": [
            {
                "name": "Write or update the preview comment",
                "env": {
                    "GH_TOKEN": "${{ github.token }}",
                    "PR_NUMBER": "${{ github.event.pull_request.number }}",
                    "HEAD_SHA": "${{ github.sha }}",
                },
                "run": script,
            }
        ],
    }


def preview_workflow() -> dict[str, Any]:
    return {
        "name": "Pulumi preview",
        "on": {"pull_request": {"branches": ["main"]}},
        "permissions": {},
        "concurrency": {
            "group": "pulumi-preview-${{ github.event.pull_request.number }}",
            "cancel-in-progress": True,
        },
        "defaults": {"run": {"shell": "bash"}},
        "jobs": {
            "offline-plan": _offline_plan_job(),
            "preview": _preview_job(),
            "comment": _comment_job(),
        },
    }


# --- apply.yml --------------------------------------------------------------------------------


def _apply_job(stack: str, previous: str | None) -> dict[str, Any]:
    up = """
        pulumi up --stack "$STACK" --yes --diff --non-interactive --suppress-outputs --color never
        echo "pulumi up of stack $STACK: done" >>"$GITHUB_STEP_SUMMARY"
        """
    job: dict[str, Any] = {"name": f"pulumi up ({stack})"}
    if previous:
        job["needs"] = [f"up-{previous}"]
    job.update(
        {
            "runs-on": RUNNER,
            "timeout-minutes": 60,
            "permissions": {"contents": "read"},
            # Its branch policy admits the default branch alone; reviewers there gate every apply.
            "environment": INFRA_ENVIRONMENT,
        }
    )
    job["steps"] = [*_program_steps(), _pulumi("pulumi up", stack, up)]
    return job


def apply_workflow() -> dict[str, Any]:
    jobs = {}
    previous = None
    for stack in STACKS:
        jobs[f"up-{stack}"] = _apply_job(stack, previous)
        previous = stack
    return {
        "name": "Pulumi apply",
        "on": {"push": {"branches": ["main"]}},
        "permissions": {},
        # One apply at a time, never cancelled halfway: a push during an apply waits (a newer
        # push replaces a waiting one, which is fine: main's newest commit holds both).
        "concurrency": {"group": APPLY_CONCURRENCY, "cancel-in-progress": False},
        "defaults": {"run": {"shell": "bash"}},
        "jobs": jobs,
    }


# --- drift.yml --------------------------------------------------------------------------------


def _drift_job() -> dict[str, Any]:
    ignored = ", ".join(f'"{op}"' for op in IGNORED_DRIFT_OPS)
    detect = f"""
        out="$RUNNER_TEMP/drift"
        mkdir -p "$out"
        status=0
        pulumi preview --stack "$STACK" --refresh --expect-no-changes --json --non-interactive \\
          --suppress-outputs >"$out/preview.json" 2>"$out/stderr.txt" || status=$?
        cat "$out/stderr.txt" >&2
        # The resources the program would change after a refresh, as `op urn`.
        # -s: an empty file (the CLI stopped before printing) reads as no steps, not as an error.
        if changes="$(jq -cs '[.[0].steps[]? | select([.op] | inside([{ignored}]) | not) | {{op, urn}}]' \\
            "$out/preview.json")"; then
          if [ "$changes" != "[]" ]; then result=drift
          elif [ "$status" -ne 0 ]; then result=error
          else result=clean
          fi
        else
          changes="[]"
          result=error
        fi
        jq -n --arg stack "$STACK" --arg result "$result" --argjson exit "$status" --argjson changes "$changes" \\
          '{{stack: $stack, result: $result, exitCode: $exit, changes: $changes}}' >"$out/result.json"
        cat "$out/result.json"
        case "$result" in
          clean) echo "Stack $STACK: no drift" ;;
          drift) echo "::error title=Drift::stack $STACK differs from its program and state"; exit 1 ;;
          *) echo "::error title=Drift check failed::pulumi preview of $STACK exited $status"; exit 1 ;;
        esac
        """
    return _stack_matrix_job(
        "Drift check",
        "pulumi preview --refresh --expect-no-changes",
        detect,
        "drift",
        "${{ runner.temp }}/drift/result.json",
        environment=INFRA_ENVIRONMENT,
        # Started by hand on another branch, it still checks the default branch's program
        # (and the environment refuses that run its credentials anyway).
        checkout={"name": "Check out the default branch", "ref": DEFAULT_BRANCH},
    )


def _drift_report_job() -> dict[str, Any]:
    script = _script(
        f"""
        artifacts="$RUNNER_TEMP/artifacts"
        mkdir -p "$artifacts"
        gh run download "$GITHUB_RUN_ID" --dir "$artifacts" --pattern 'drift-*' || true
        run_url="$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID"
        sections="$RUNNER_TEMP/stacks.md"
        report="$RUNNER_TEMP/drift.md"
        drifted=""
        failed=""
        for stack in {_STACK_WORDS}; do
          file="$artifacts/drift-$stack/result.json"
          result="$(jq -r '.result' "$file" 2>/dev/null || echo missing)"
          echo
          case "$result" in
            clean) echo "### $stack: no drift" ;;
            drift)
              drifted="$drifted $stack"
              echo "### $stack: $(jq '.changes | length' "$file") resources drifted"
              echo
              jq -r '.changes[] | "- `\\(.op)` `\\(.urn)`"' "$file"
              ;;
            *)
              failed="$failed $stack"
              echo "### $stack: not checked (the preview failed; see the run)"
              ;;
          esac
        done >"$sections"
        cat "$sections" >>"$GITHUB_STEP_SUMMARY"
        {{
          echo "{DRIFT_MARKER}"
          echo "The nightly drift check found resources that differ from what the program and the state"
          echo "say. Either apply the program again (push to main, or \\`pulumi up\\`) to put them back,"
          echo "or change the program to match; the next check without drift closes this issue."
          echo
          echo "Last checked by [this run]($run_url)."
          cat "$sections"
        }} >"$report"

        existing="$(gh issue list --state open --label '{DRIFT_LABEL}' --limit 100 --json number,title \\
          --jq '[.[] | select(.title == "{DRIFT_TITLE}")][0].number // empty')"
        if [ -n "$drifted" ]; then
          gh label create '{DRIFT_LABEL}' --color B60205 \\
            --description 'Resources differ from the Pulumi program and state' --force >/dev/null
          if [ -n "$existing" ]; then
            gh issue edit "$existing" --body-file "$report" >/dev/null
            gh issue comment "$existing" --body "Still drifting:$drifted ($run_url)." >/dev/null
            echo "Updated issue #$existing"
          else
            gh issue create --title '{DRIFT_TITLE}' --label '{DRIFT_LABEL}' --body-file "$report"
          fi
          echo "::error title=Drift::drift in:$drifted"
          exit 1
        fi
        if [ -n "$failed" ]; then
          echo "::error title=Drift check failed::not checked:$failed"
          exit 1
        fi
        if [ -n "$existing" ]; then
          gh issue comment "$existing" --body "No drift left in any stack ($run_url); closing." >/dev/null
          gh issue close "$existing" >/dev/null
          echo "Closed issue #$existing"
        fi
        """
    )
    return {
        "name": "Drift report",
        "needs": ["drift"],
        # Whatever the checks' outcome: a drifted stack fails its job, and that is the news.
        "if": "!cancelled()",
        "runs-on": RUNNER,
        "timeout-minutes": 10,
        "permissions": {"actions": "read", "issues": "write"},
        "steps": [
            {
                "name": "Open, update or close the drift issue",
                "env": {"GH_TOKEN": "${{ github.token }}", "GH_REPO": "${{ github.repository }}"},
                "run": script,
            }
        ],
    }


def drift_workflow() -> dict[str, Any]:
    return {
        "name": "Pulumi drift",
        "on": {"schedule": [{"cron": DRIFT_CRON}], "workflow_dispatch": {}},
        "permissions": {},
        "concurrency": {"group": "pulumi-drift", "cancel-in-progress": False},
        "defaults": {"run": {"shell": "bash"}},
        "jobs": {"drift": _drift_job(), "report": _drift_report_job()},
    }


# --- files ------------------------------------------------------------------------------------


def documents() -> dict[str, dict[str, Any]]:
    """File name under .github/workflows/ → workflow document."""
    return {
        "preview.yml": preview_workflow(),
        "apply.yml": apply_workflow(),
        "drift.yml": drift_workflow(),
    }


def render() -> dict[str, str]:
    """File name → exact text, as committed."""
    return {
        name: emit.dump(document, SOURCE, change="the generator", command="make golden")
        for name, document in documents().items()
    }


def write(root: Path) -> list[Path]:
    """Write the workflows under ROOT/.github/workflows/; returns the paths."""
    directory = root / DIRECTORY
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def _indent(text: str, spaces: int) -> str:
    """Indent all lines but the first, for a block placed inside a dedented template."""
    pad = " " * spaces
    return text.replace("\n", "\n" + pad)
