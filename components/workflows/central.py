"""The central pipeline in the infra repository: validate, build and test, scan, deploy, report.

    .github/workflows/central-dispatch.yml   on the infra repository's default branch

Started by a source repository's trigger (`repository_dispatch`, one event type per kind) or by
hand (`workflow_dispatch`, the only way to deploy dev). Six jobs, each in one trust tier
(DESIGN.md, "Trust tiers"; `TIERS`): a source repository's code runs only in `build-test`,
which holds no secret, no write scope and no token that reaches anything (`permissions: {}`),
and which no later job trusts but through the artifacts it leaves, checked on the way:

- `resolve` checks the payload against the contract in `rules.py` and the allowlist of
  repositories and components from the stack config, recomputes environment and deploy from
  the ref (a mismatch is refused), checks with the compare API that the commit is on the named
  branch of the source repository, and posts `pending` on that commit with a link to the run.
  A payload it refuses gets an `error` status on the source commit when repository and sha are
  valid. Its outputs (`OUTPUTS`) are what every later job reads. It then checks the source out
  at the sha (with PIPELINE_TOKEN, not kept) and hands it on as an archive (artifact `source`).
- `build-test` (one job per component, untrusted) unpacks that archive, runs the repository's
  configured build and test commands, uploads test reports, and builds the component's image
  for the target environment's platform without pushing it: the image leaves as an archive.
- `security-scan` scans the source tree (vulnerabilities, secrets, misconfigurations) and each
  image archive (vulnerabilities, secrets) with trivy, whose binary and database come fresh
  from upstream on every run (no Actions cache, which the untrusted job could write), and
  outputs the sha256 of each archive it passed.
- `publish` (only when the run deploys) runs no source code: it pushes each scanned archive,
  checked against those sha256 sums, under `<registry>/<component>:<sha>-<os>-<arch>-<run>`
  (never over an existing tag) and outputs `<component>=<registry>/<component>@sha256:...`.
- `deploy` runs in GitHub environment `<env>`, one at a time per environment: an automatic run
  whose commit is no longer its branch's head deploys nothing ("superseded", `ci/deploy_gate.py`);
  otherwise it hands the environment's compose file and the images, by digest, to the deploy
  program over SSH (`ci/deploy.py`).
- `report` always runs: the final commit status and a summary table (`ci/report.py`).

A job that runs one of the pipeline's Python modules (`ci/`) first checks this repository out at
the run's own commit, only the code it runs (`PIPELINE_CODE`, and for the deploy client the
deploy program and the data file), then runs `python3 -m ci.<module>`.
Every other shell body is rendered here from data (`rules.py`, the settings). Steps read event
data only through `env:`; `PIPELINE_TOKEN` reaches only the steps that call the GitHub API on a
source repository or check one out, never a step that runs the source repository's commands.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import ci.config
import ci.github
import ci.report
from components import rules
from components.environment import compose, deploy_program, names
from components.settings import Deploy, Settings, SourceRepository
from components.workflows import actions, credentials, emit, shell

PATH = ".github/workflows/central-dispatch.yml"
DATA_PATH = ci.config.PATH
"""The stack's choices the pipeline's modules read (`data_file`), written beside the workflow."""
NAME = "Central CI/CD"
SOURCE = "components/workflows/central.py"

RUNNER = "ubuntu-24.04"
TOKEN = credentials.PIPELINE.secret
"""PIPELINE_TOKEN, held by the infra repository alone: reads the source repositories and posts
statuses on their commits. The source repositories' DISPATCH_TOKEN can do neither."""
STATUS_CONTEXT = ci.github.STATUS_CONTEXT
MAX_DESCRIPTION = ci.github.MAX_DESCRIPTION

OUTPUTS = ("environment", "deploy", "components", "source_repo", "ref", "sha")
"""`resolve`'s job outputs: the contract every later job reads."""

REPORTED_JOBS = ci.report.JOBS
"""The jobs whose results the report lists and judges."""
JOBS = (*REPORTED_JOBS, "report")

PIPELINE_CODE = ("ci/", "components/__init__.py", "components/rules.py")
"""What a job that runs `python3 -m ci.<module>` checks out of the infra repository (ci/ imports rules.py)."""

PERMISSIONS: dict[str, dict[str, tuple[str, str]]] = {
    "resolve": {},
    "build-test": {},
    "security-scan": {"contents": ("read", "the trivy action fetches trivy with this job's token")},
    "publish": {"packages": ("write", "push the scanned images; this job runs no source code")},
    "deploy": {
        "contents": ("read", "check out this repository's compose files and the pipeline's code"),
        "packages": ("read", "the VM pulls this run's images with this job's token"),
    },
    "report": {"contents": ("read", "check out the pipeline's code (ci/) of this repository")},
}
"""Each job's token permissions with the reason, written beside each line of the rendered file.

An empty set: the job calls the API on source repositories with PIPELINE_TOKEN only, or (build-test)
holds nothing at all. A job that checks this repository out needs `contents: read` when it is private.
"""

TIERS = {
    "resolve": "gate",
    "build-test": "untrusted",
    "security-scan": "gate",
    "publish": "gate",
    "deploy": "deploy",
    "report": "gate",
}
"""Each job's trust tier (DESIGN.md): only `untrusted` runs a source repository's code."""

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
"""Trivy's severities, lowest first; the scan fails on the configured one and every one above."""

PLATFORM_ARCHITECTURES = {"linux/amd64": "X64", "linux/arm64": "ARM64"}
"""Each deploy platform and the runner architecture (`RUNNER_ARCH`) that builds it natively."""

GITHUB_REGISTRY = "ghcr.io"

SOURCE_DIR = "source"
"""Where resolve checks the source repository out, and where later jobs unpack it."""
SOURCE_ARTIFACT = "source"
"""The source tree at the sha, as resolve packed it (tar keeps modes and symlinks)."""
SOURCE_ARCHIVE = "source.tar.gz"
IMAGE_ARTIFACT = "image-"
"""`image-<component>`: the image build-test built, one `docker save` archive `<component>.tar`."""
IMAGES_DIR = "images"
"""Where build-test saves its archive, and where security-scan and publish download them all,
merged: `images/<component>.tar` however many match (download-artifact unpacks a single match
straight into its path, several into a folder each, unless told to merge)."""
"""Where security-scan and publish download the image artifacts (one folder per artifact)."""
TRANSFER_RETENTION_DAYS = 1
"""The source and image archives only travel between this run's jobs."""
TRIVY_CACHE = "${{ github.workspace }}/.cache/trivy"
"""trivy's database, as the trivy action downloads it for this job (its default cache-dir)."""

TIMEOUTS = {"resolve": 10, "build-test": 45, "security-scan": 20, "publish": 15, "report": 5}
"""Minutes; the deploy step's comes from the deploy settings (`deploy_timeout`), its job's five more."""
PULL_ALLOWANCE_SECONDS = deploy_program.PULL_TIMEOUT_SECONDS
"""What the deploy program allows `docker compose pull`; part of the deploy job's time budget."""


@dataclass(frozen=True)
class CentralArgs:
    owner: str
    repositories: tuple[SourceRepository, ...]
    registry: str
    """Images go to `<registry>/<component>:<sha>`; the job's own token logs in to its host."""
    scan_severity: str
    arm_runner_label: str | None
    """A native arm64 runner for images of arm64 environments; None: QEMU on an x86 runner."""
    deploy_secret_layout: str
    deploy: Deploy
    artifact_retention_days: int = 7

    @classmethod
    def from_settings(cls, settings: Settings) -> CentralArgs:
        return cls(
            owner=settings.github_owner,
            repositories=settings.source_repositories,
            registry=settings.registry,
            scan_severity=settings.scan_severity,
            arm_runner_label=settings.arm_runner_label,
            deploy_secret_layout=settings.deploy_secret_layout,
            deploy=settings.deploy,
            artifact_retention_days=settings.artifact_retention_days,
        )

    def full_name(self, repo: SourceRepository) -> str:
        return f"{self.owner}/{repo.name}"


# --- expressions -----------------------------------------------------------------------------


def _expr(expression: str) -> str:
    return "${{ " + expression + " }}"


def _permissions(job: str, args: CentralArgs | None = None) -> dict[str, str]:
    granted = {scope: level for scope, (level, _) in PERMISSIONS[job].items()}
    if job == "deploy" and (args is None or not _pulls_with_job_token(args)):
        del granted["packages"]
    return granted


def _registry_host(args: CentralArgs) -> str:
    return args.registry.split("/")[0]


def _pulls_with_job_token(args: CentralArgs) -> bool:
    """On GitHub's registry the job's own token can pull; elsewhere the VM needs its own access."""
    return _registry_host(args) == GITHUB_REGISTRY


def _comment_permissions(text: str) -> str:
    """Writes each permission's reason beside its line (the emitter has no comments of its own)."""
    lines = text.split("\n")
    job = None
    in_permissions = False
    for i, line in enumerate(lines):
        if line.startswith("  ") and not line.startswith("   ") and line.endswith(":"):
            job = line.strip().removesuffix(":")
        in_permissions = line == "    permissions:" or (in_permissions and line.startswith("      "))
        if in_permissions and line.startswith("      ") and job in PERMISSIONS:
            scope, level = line.strip().split(": ")
            expected, reason = PERMISSIONS[job][scope]
            if level != expected:
                raise AssertionError(f"{job}: {scope} is {level}, the table says {expected}")
            lines[i] = f"{line} # {reason}"
    return "\n".join(lines)


def _resolved(output: str) -> str:
    if output not in OUTPUTS:
        raise KeyError(f"resolve has no output {output!r}")
    return f"needs.resolve.outputs.{output}"


def _per_environment(value: Any) -> str:
    """An expression picking `value(env)` for the run's environment, '' when none applies.

    Expressions cannot upper-case a name, so the choice is spelled out for every environment
    (`a && b || c && d || ''`; `&&` binds tighter than `||`).
    """
    clauses = [f"{_resolved('environment')} == '{env}' && {value(env)}" for env in rules.ENVIRONMENTS]
    return _expr(" || ".join([*clauses, "''"]))


def severities_from(threshold: str) -> str:
    """`HIGH` -> `HIGH,CRITICAL`: the severities at or above the threshold."""
    return ",".join(SEVERITIES[SEVERITIES.index(threshold) :])


def deploy_timeout(deploy: Deploy) -> int:
    """Minutes for the deploy step: waiting for the lock, pulling, starting, maybe rolling back."""
    seconds = deploy.lock_wait_seconds + PULL_ALLOWANCE_SECONDS + 2 * deploy.wait_timeout_seconds
    return math.ceil(seconds / 60) + 5


# --- shell pieces ------------------------------------------------------------------------------

_SUMMARY = """\
summary() {
  printf '%s\\n' "$@" >> "$GITHUB_STEP_SUMMARY"
}"""

_POST_STATUS = f"""\
# post_status STATE DESCRIPTION: a commit status on $status_repo at $status_sha, linking this run.
run_url="${{GITHUB_SERVER_URL}}/${{GITHUB_REPOSITORY}}/actions/runs/${{GITHUB_RUN_ID}}"
post_status() {{
  local request
  request="$(mktemp)"
  jq -n --arg state "$1" --arg description "${{2:0:{MAX_DESCRIPTION}}}" --arg target_url "$run_url" \\
    --arg context {STATUS_CONTEXT} \\
    '{{state: $state, target_url: $target_url, description: $description, context: $context}}' > "$request"
  github_api POST "/repos/${{status_repo}}/statuses/${{status_sha}}" "${TOKEN}" "$request"
}}"""


def _allowlist(args: CentralArgs) -> str:
    """A `case` on the lower-cased repository setting what the config says about it.

    GitHub names are case-insensitive; the configured spelling is the one used afterwards.
    """
    lines = [
        "# The configured repositories, rendered from the stack config (sourceRepositories).",
        "repository='' event_type='' deployable=false known_components=''",
        'case "${source_repo,,}" in',
    ]
    for repo in args.repositories:
        full = args.full_name(repo)
        lines += [
            f"  {shell.quote(full.lower())})",
            f"    repository={shell.quote(full)} event_type={shell.quote(repo.event_type)}"
            f" deployable={'true' if repo.deployable else 'false'}"
            f" known_components={shell.quote(','.join(repo.component_names))}",
            "    ;;",
        ]
    lines += ["esac"]
    return "\n".join(lines)


def _resolve_body(args: CentralArgs) -> str:
    keys_json = "[" + ",".join(f'"{key}"' for key in rules.PAYLOAD_KEYS) + "]"
    values = ", ".join(f".{key}" for key in rules.PAYLOAD_KEYS)
    read_program = (
        'def text: if type == "string" and (explode | all(. >= 32 and . < 127)) then . else "" end;'
        ' if type == "object" then "object", (length | tostring),'
        " ([keys[] | select(. as $k | any($allowed[]; . == $k) | not)] | length | tostring),"
        f" ({values} | text) else type end"
    )
    deploy_rule = ", ".join(r.branch for r in rules.BRANCH_RULES if r.deploy)
    return "\n".join(
        [
            shell.STRICT,
            _SUMMARY,
            shell.PRINTABLE,
            shell.api_function(),
            "status_repo='' status_sha=''",
            _POST_STATUS,
            "# reject MESSAGE: stop, saying why; the message never carries raw event data (see printable).",
            "reject() {",
            '  echo "::error title=Run refused::$1"',
            "  summary '### Central CI/CD: run refused' '' \"$1\"",
            '  if [[ -n "$status_repo" ]]; then',
            '    if post_status error "Refused: $1"; then',
            '      echo "Posted error on ${status_repo} ${status_sha}."',
            "    else",
            '      echo "::warning title=No status posted::HTTP ${api_status} from the statuses API: $(api_message)"',
            "    fi",
            "  fi",
            "  exit 1",
            "}",
            "",
            'case "$EVENT_NAME" in',
            '  repository_dispatch) payload="$CLIENT_PAYLOAD" ;;',
            '  workflow_dispatch) payload="$INPUTS" ;;',
            '  *) reject "this pipeline runs on repository_dispatch or workflow_dispatch only" ;;',
            "esac",
            "# One pass over the payload: 'object', its key count, how many keys are outside the contract,",
            "# then each contract key's value when it is a string of printable ASCII (no control character,",
            "# so no newline), else ''. Rendered from components/rules.py (PAYLOAD_KEYS).",
            f'if ! parsed="$(jq -r --argjson allowed {shell.quote(keys_json)} {shell.quote(read_program)}'
            ' <<< "$payload" 2> /dev/null)"; then',
            '  reject "the payload is not JSON"',
            "fi",
            'mapfile -t fields <<< "$parsed"',
            'if [[ "${fields[0]:-}" != object ]]; then',
            '  reject "the payload is not a JSON object"',
            "fi",
            'count="${fields[1]}" unknown="${fields[2]}"',
            "declare -A value=()",
            "i=3",
            f"for key in {' '.join(rules.PAYLOAD_KEYS)}; do",
            '  value[$key]="${fields[i]:-}"',
            "  i=$((i + 1))",
            "done",
            "",
            "# Repository and sha first: once both are valid, a refusal is reported on that commit.",
            'source_repo="${value[source_repo]}" sha="${value[sha]}"',
            _allowlist(args),
            f"sha_pattern={shell.quote(rules.SHA_PATTERN)}",
            'if [[ -n "$repository" && "$sha" =~ $sha_pattern ]]; then',
            '  status_repo="$repository" status_sha="$sha"',
            "fi",
            "",
            f"if (( count > {rules.MAX_PAYLOAD_KEYS} )); then",
            f'  reject "the payload has ${{count}} keys; the contract has {len(rules.PAYLOAD_KEYS)}'
            f' and GitHub allows {rules.MAX_PAYLOAD_KEYS}"',
            "fi",
            "if (( unknown > 0 )); then",
            f'  reject "the payload has ${{unknown}} key(s) outside the contract ({", ".join(rules.PAYLOAD_KEYS)})"',
            "fi",
            f"for key in {' '.join(rules.PAYLOAD_KEYS)}; do",
            '  if [[ -z "${value[$key]}" ]]; then',
            '    reject "${key} is missing, empty, or not a string of printable ASCII characters"',
            "  fi",
            "done",
            'if [[ -z "$repository" ]]; then',
            '  reject "source_repo $(printable "$source_repo") is not a configured repository"',
            "fi",
            'if [[ ! "$sha" =~ $sha_pattern ]]; then',
            '  reject "sha $(printable "$sha") is not 40 lowercase hexadecimal characters"',
            "fi",
            'if [[ "$EVENT_NAME" == repository_dispatch && "$DISPATCHED_TYPE" != "$event_type" ]]; then',
            '  reject "event type $(printable "$DISPATCHED_TYPE") is not the one ${repository} sends (${event_type})"',
            "fi",
            "",
            'ref="${value[ref]}"',
            shell.ref_decision("ref"),
            'if [[ -z "$environment" ]]; then',
            '  reject "ref $(printable "$ref") is refused: ${reason}"',
            "fi",
            'requested="${value[environment]}"',
            'if [[ "$requested" != "$environment" ]]; then',
            '  reject "environment $(printable "$requested") does not match the ref, which means ${environment}"',
            "fi",
            "",
            'component="${value[component]}"',
            f"component_list_pattern={shell.quote(shell.COMPONENT_LIST_PATTERN)}",
            'if [[ ! "$component" =~ $component_list_pattern ]]; then',
            '  reject "component $(printable "$component") is not a comma-separated list of component names"',
            "fi",
            'IFS=, read -r -a names <<< "$component"',
            "declare -A seen=()",
            'for name in "${names[@]}"; do',
            '  if [[ ",${known_components}," != *",${name},"* ]]; then',
            '    reject "component ${name} is not a component of ${repository}"',
            "  fi",
            '  if [[ -n "${seen[$name]:-}" ]]; then',
            '    reject "component ${name} is listed twice"',
            "  fi",
            "  seen[$name]=1",
            "done",
            "",
            f"# Deploys: pushes to {deploy_rule} (the branch rules), and every manual run; never a",
            "# repository that is not deployable. Dev is deployed by manual runs only.",
            'if [[ "$deployable" != true ]]; then',
            "  deploy=false",
            'elif [[ "$EVENT_NAME" == workflow_dispatch ]]; then',
            "  deploy=true",
            "fi",
            "",
            "# The commit must be on the branch: the branch is identical to it or ahead of it. The sha",
            "# comes first, so `...` cannot be confused with dots that end a branch name.",
            'branch="${ref#refs/heads/}"',
            'if ! github_api GET "/repos/${repository}/compare/${sha}...${branch//\\//%2F}" "$' + TOKEN + '"; then',
            '  if [[ "$api_status" == 404 ]]; then',
            '    reject "commit ${sha} is not on branch ${branch} of ${repository}"',
            "  fi",
            f'  reject "the compare API answered HTTP ${{api_status}} ($(api_message)): check that {TOKEN}'
            ' may read ${repository}"',
            "fi",
            'comparison="$(jq -r \'.status // "" | tostring\' "$api_body")"',
            'case "$comparison" in',
            "  identical | ahead) ;;",
            '  *) reject "commit ${sha} is not on branch ${branch} of ${repository}'
            ' (comparison: $(printable "$comparison"))" ;;',
            "esac",
            "",
            'if [[ "$deploy" == true ]]; then',
            '  plan="Build, test and scan ${component}, then deploy to ${environment}"',
            "else",
            '  plan="Build, test and scan ${component} (${environment}, no deploy)"',
            "fi",
            'if ! post_status pending "$plan"; then',
            f'  reject "could not post the pending status (HTTP ${{api_status}}: $(api_message)): check that {TOKEN}'
            ' may write commit statuses on ${repository}"',
            "fi",
            "# A JSON array for the matrix; the names are checked, so they need no escaping.",
            'components="[\\"${component//,/\\",\\"}\\"]"',
            "{",
            *(f'  echo "{name}=${{{name}}}"' for name in ("environment", "deploy", "components")),
            '  echo "source_repo=${repository}"',
            *(f'  echo "{name}=${{{name}}}"' for name in ("ref", "sha")),
            '} >> "$GITHUB_OUTPUT"',
            'echo "Accepted: ${repository} ${ref} ${sha}, ${environment}, deploy ${deploy}, components ${component}"',
        ]
    )


def _deployable_case(args: CentralArgs, variable: str) -> list[str]:
    deployable = [args.full_name(r) for r in args.repositories if r.deployable]
    lines = [f'case "${variable}" in']
    if deployable:
        lines.append(f"  {' | '.join(shell.quote(name) for name in deployable)}) image=true ;;")
    lines += ["  *) image=false ;;", "esac"]
    return lines


def _platform_lines() -> list[str]:
    """Sets `platform` to the environment's DEPLOY_PLATFORM_<ENV> variable, or fails naming it."""
    lines = ['case "$ENVIRONMENT" in']
    for env in rules.ENVIRONMENTS:
        lines.append(
            f'  {env}) variable={names.platform_variable(env)} platform="${{{names.platform_variable(env)}}}" ;;'
        )
    platforms = " or ".join(PLATFORM_ARCHITECTURES)
    lines += [
        '  *) fail "unknown environment" ;;',
        "esac",
        'case "$platform" in',
        f"  {' | '.join(PLATFORM_ARCHITECTURES)}) ;;",
        f'  *) fail "the infra repository variable ${{variable}} is missing or not {platforms}:'
        ' pulumi up on the ${ENVIRONMENT} stack sets it" ;;',
        "esac",
    ]
    return lines


def _platform_env() -> dict[str, str]:
    return {
        "ENVIRONMENT": _expr(_resolved("environment")),
        **{names.platform_variable(env): _expr(f"vars.{names.platform_variable(env)}") for env in rules.ENVIRONMENTS},
    }


_FAIL = """\
fail() {
  echo "::error title=$FAIL_TITLE::$1"
  exit 1
}"""


def _plan_body(args: CentralArgs) -> str:
    """Whether this component gets an image, and for which platform; fails on a missing variable."""
    lines = [
        shell.STRICT,
        "FAIL_TITLE='Build plan'",
        _FAIL,
        f"component_pattern={shell.quote(rules.COMPONENT_PATTERN)}",
        'if [[ ! "$COMPONENT" =~ $component_pattern ]]; then',
        '  fail "not a component name"',
        "fi",
        f'if [[ ! -d "{SOURCE_DIR}/${{COMPONENT}}" ]]; then',
        '  fail "the source repository has no folder ${COMPONENT}: a component is a top-level folder"',
        "fi",
        "# Images are built for the components of deployable repositories (stack config).",
        *_deployable_case(args, "SOURCE_REPO"),
        f'if [[ "$image" == true && ! -f "{SOURCE_DIR}/${{COMPONENT}}/Dockerfile" ]]; then',
        '  fail "${COMPONENT}/Dockerfile is missing: each component of a deployable repository builds an image"',
        "fi",
        "# A run that deploys builds for the environment's platform; any other, natively.",
        "platform='' qemu=false",
        'if [[ "$image" == true && "$DEPLOY" == true ]]; then',
        *(f"  {line}" for line in _platform_lines()),
        '  case "$platform" in',
    ]
    for platform, arch in PLATFORM_ARCHITECTURES.items():
        lines.append(f'    {platform}) [[ "$RUNNER_ARCH" == {arch} ]] || qemu=true ;;')
    lines += [
        "  esac",
        "fi",
        "{",
        '  echo "image=${image}"',
        '  echo "platform=${platform}"',
        '  echo "qemu=${qemu}"',
        '} >> "$GITHUB_OUTPUT"',
        'echo "image: ${image}, platform: ${platform:-native}, QEMU: ${qemu}"',
    ]
    return "\n".join(lines)


def _command_body(args: CentralArgs, which: str) -> str:
    """Runs the source repository's configured build or test command in the component's folder."""
    lines = [
        "set -euo pipefail",
        f'cd "{SOURCE_DIR}/${{COMPONENT}}"',
        f"# The {which} commands, rendered from the stack config (sourceRepositories[].{which}).",
        'case "$SOURCE_REPO" in',
    ]
    for repo in args.repositories:
        command = repo.build_command if which == "build" else repo.test_command
        lines += [f"  {shell.quote(args.full_name(repo))})", f"    {command}", "    ;;"]
    lines += [
        "  *)",
        f'    echo "::error::no {which} command configured for this repository"',
        "    exit 1",
        "    ;;",
        "esac",
    ]
    return "\n".join(lines)


def _hand_on_source() -> list[dict[str, Any]]:
    """resolve's last steps: the source at the sha, packed for the jobs that build and scan it."""
    return [
        {
            "name": "Check out the source repository at the commit",
            "uses": actions.uses("actions/checkout"),
            "with": {
                "repository": _expr("steps.resolve.outputs.source_repo"),
                "ref": _expr("steps.resolve.outputs.sha"),
                "path": SOURCE_DIR,
                # A private source repository is readable with PIPELINE_TOKEN only; it is not
                # kept in .git/config, and nothing of the source runs in this job.
                "token": _expr(f"secrets.{TOKEN}"),
                "persist-credentials": False,
            },
        },
        {
            "name": "Pack the source",
            "shell": "bash",
            "run": "\n".join(
                [
                    "set -euo pipefail",
                    "# tar keeps file modes and symlinks, which an artifact's zip would lose; no .git.",
                    f'tar --create --gzip --file "$RUNNER_TEMP/{SOURCE_ARCHIVE}" --exclude=./.git'
                    f" --directory {SOURCE_DIR} .",
                ]
            ),
        },
        {
            "name": "Hand the source on",
            "uses": actions.uses("actions/upload-artifact"),
            "with": {
                "name": SOURCE_ARTIFACT,
                "path": f"${{{{ runner.temp }}}}/{SOURCE_ARCHIVE}",
                "retention-days": TRANSFER_RETENTION_DAYS,
                "if-no-files-found": "error",
            },
        },
    ]


def _unpack_source() -> list[dict[str, Any]]:
    """The source tree resolve packed, at SOURCE_DIR (no token: the artifact belongs to this run)."""
    return [
        {
            "name": "Fetch the source",
            "uses": actions.uses("actions/download-artifact"),
            "with": {"name": SOURCE_ARTIFACT, "path": "${{ runner.temp }}/source-archive"},
        },
        {
            "name": "Unpack the source",
            "shell": "bash",
            "run": "\n".join(
                [
                    "set -euo pipefail",
                    f"mkdir -p {SOURCE_DIR}",
                    f'tar --extract --gzip --file "$RUNNER_TEMP/source-archive/{SOURCE_ARCHIVE}"'
                    f" --directory {SOURCE_DIR}",
                ]
            ),
        },
    ]


def _check_out_pipeline(*extra: str) -> dict[str, Any]:
    """This repository at the run's own commit, only PIPELINE_CODE and `extra` (folders end in `/`).

    A repository_dispatch run's commit is the head of the infra repository's default branch,
    the same commit this workflow file was read from.
    """
    return {
        "name": "Check out the pipeline's code at this run's commit",
        "uses": actions.uses("actions/checkout"),
        "with": {
            "ref": _expr("github.sha"),
            "persist-credentials": False,
            "sparse-checkout": "\n".join(f"/{path}" for path in (*PIPELINE_CODE, *extra)),
            # Single files are listed, which cone mode (folders only) cannot express.
            "sparse-checkout-cone-mode": False,
        },
    }


def _python(module: str) -> str:
    """The `run:` of a step that runs one module of ci/ (its inputs come through `env:` only)."""
    return f"python3 -m ci.{module}"


def _resolve_job(args: CentralArgs) -> dict[str, Any]:
    return {
        "name": "Validate the request",
        "runs-on": RUNNER,
        "timeout-minutes": TIMEOUTS["resolve"],
        "permissions": _permissions("resolve"),
        "outputs": {name: _expr(f"steps.resolve.outputs.{name}") for name in OUTPUTS},
        "steps": [
            {
                "name": "Validate the payload, check the commit, post pending",
                "id": "resolve",
                "shell": "bash",
                "env": {
                    "EVENT_NAME": _expr("github.event_name"),
                    "DISPATCHED_TYPE": _expr("github.event.action"),
                    "CLIENT_PAYLOAD": _expr("toJSON(github.event.client_payload)"),
                    "INPUTS": _expr("toJSON(github.event.inputs)"),
                    TOKEN: _expr(f"secrets.{TOKEN}"),
                },
                "run": _resolve_body(args),
            },
            *_hand_on_source(),
        ],
    }


def _runs_on_for_images(args: CentralArgs) -> str:
    if args.arm_runner_label is None:
        return RUNNER
    platform = _per_environment(lambda env: f"vars.{names.platform_variable(env)}").removeprefix("${{ ")
    platform = platform.removesuffix(" }}")
    return _expr(
        f"{_resolved('deploy')} == 'true' && ({platform}) == 'linux/arm64' && '{args.arm_runner_label}' || '{RUNNER}'"
    )


def _build_image_body() -> str:
    """Build into the runner's engine, then save the image as an archive: nothing is pushed from here."""
    return "\n".join(
        [
            "set -euo pipefail",
            'tag="dreamscape-build/${COMPONENT}:${SHA}"',
            'args=(--provenance=false --sbom=false --load --tag "$tag")',
            'if [[ -n "$PLATFORM" ]]; then',
            '  args+=(--platform "$PLATFORM")',
            "fi",
            f'docker buildx build "${{args[@]}}" "{SOURCE_DIR}/${{COMPONENT}}"',
            f'mkdir -p "${{RUNNER_TEMP}}/{IMAGES_DIR}"',
            f'docker save --output "${{RUNNER_TEMP}}/{IMAGES_DIR}/${{COMPONENT}}.tar" "$tag"',
        ]
    )


def _build_test_job(args: CentralArgs) -> dict[str, Any]:
    component = _expr("matrix.component")
    resolved_env = {
        "SOURCE_REPO": _expr(_resolved("source_repo")),
        "COMPONENT": component,
    }
    artifact_paths = sorted({path for repo in args.repositories for path in repo.artifacts})
    return {
        "name": f"Build and test {component}",
        "needs": "resolve",
        "runs-on": _runs_on_for_images(args),
        "timeout-minutes": TIMEOUTS["build-test"],
        # Untrusted: the source's commands, its dependencies' install scripts and its Dockerfile
        # run here. No secret, no write scope, no registry login; the job's token has no scope.
        "permissions": _permissions("build-test"),
        "strategy": {
            "fail-fast": False,
            "matrix": {"component": _expr(f"fromJSON({_resolved('components')})")},
        },
        "steps": [
            *_unpack_source(),
            {
                "name": "Plan the image",
                "id": "plan",
                "shell": "bash",
                "env": {
                    **resolved_env,
                    "DEPLOY": _expr(_resolved("deploy")),
                    **_platform_env(),
                },
                "run": _plan_body(args),
            },
            {
                "name": "Build",
                "shell": "bash",
                "env": resolved_env,
                "run": _command_body(args, "build"),
            },
            {
                "name": "Test",
                "shell": "bash",
                "env": resolved_env,
                "run": _command_body(args, "test"),
            },
            {
                "name": "Upload test reports",
                "if": "always() && steps.plan.outcome == 'success'",
                "uses": actions.uses("actions/upload-artifact"),
                "with": {
                    "name": f"test-reports-{component}",
                    "path": "\n".join(f"{SOURCE_DIR}/{component}/{path}" for path in artifact_paths),
                    "if-no-files-found": "warn",
                    "retention-days": args.artifact_retention_days,
                },
            },
            {
                "name": "Set up QEMU for the target platform",
                "if": "steps.plan.outputs.qemu == 'true'",
                "uses": actions.uses("docker/setup-qemu-action"),
                "with": {"platforms": _expr("steps.plan.outputs.platform")},
            },
            {
                "name": "Build the image (never pushed from here)",
                "if": "steps.plan.outputs.image == 'true'",
                "shell": "bash",
                "env": {
                    "COMPONENT": component,
                    "SHA": _expr(_resolved("sha")),
                    "PLATFORM": _expr("steps.plan.outputs.platform"),
                },
                "run": _build_image_body(),
            },
            {
                "name": "Hand the image on to the scan",
                "if": "steps.plan.outputs.image == 'true'",
                "uses": actions.uses("actions/upload-artifact"),
                "with": {
                    "name": f"{IMAGE_ARTIFACT}{component}",
                    "path": f"${{{{ runner.temp }}}}/{IMAGES_DIR}/{component}.tar",
                    "retention-days": TRANSFER_RETENTION_DAYS,
                    "if-no-files-found": "error",
                },
            },
        ],
    }


def _download_images() -> dict[str, Any]:
    return {
        "name": "Fetch the image archives",
        "uses": actions.uses("actions/download-artifact"),
        "with": {"pattern": f"{IMAGE_ARTIFACT}*", "path": IMAGES_DIR, "merge-multiple": True},
    }


def _scan_images_body() -> str:
    """Each image archive through trivy (the binary the action installed); their sha256 as an output."""
    return "\n".join(
        [
            "set -euo pipefail",
            "scanned=()",
            "shopt -s nullglob",
            f"for archive in {IMAGES_DIR}/*.tar; do",
            '  component="${archive##*/}"',
            '  component="${component%.tar}"',
            '  echo "Scanning the image of ${component}"',
            '  trivy image --input "$archive" --scanners vuln,secret --severity "$SEVERITY" --exit-code 1 \\',
            "    --no-progress --format table",
            '  digest="$(sha256sum "$archive")"',
            '  scanned+=("${component}=sha256:${digest%% *}")',
            "done",
            'echo "scanned=${scanned[*]}" >> "$GITHUB_OUTPUT"',
            'echo "Passed: ${scanned[*]:-no image in this run}"',
        ]
    )


def _security_scan_job(args: CentralArgs) -> dict[str, Any]:
    severity = severities_from(args.scan_severity)
    return {
        "name": "Security scan",
        "needs": ["resolve", "build-test"],
        "runs-on": RUNNER,
        "timeout-minutes": TIMEOUTS["security-scan"],
        "permissions": _permissions("security-scan"),
        "outputs": {"scanned": _expr("steps.images.outputs.scanned")},
        "steps": [
            *_unpack_source(),
            {
                "name": f"Scan the source tree (fails at {args.scan_severity} and above)",
                "uses": actions.uses("aquasecurity/trivy-action"),
                "with": {
                    "scan-type": "fs",
                    "scan-ref": SOURCE_DIR,
                    "scanners": "vuln,secret,misconfig",
                    "severity": severity,
                    "exit-code": "1",
                    "format": "table",
                    "hide-progress": "true",
                    # No Actions cache: a job running source code can write this run's cache
                    # entries, so trivy and its database come fresh from upstream every time.
                    "cache": "false",
                },
            },
            _download_images(),
            {
                "name": f"Scan each image (fails at {args.scan_severity} and above)",
                "id": "images",
                "shell": "bash",
                "env": {"SEVERITY": severity, "TRIVY_CACHE_DIR": TRIVY_CACHE},
                "run": _scan_images_body(),
            },
        ],
    }


def _publish_body() -> str:
    """Push each scanned archive under a new tag naming its platform; output the digests."""
    lines = [
        shell.STRICT,
        "FAIL_TITLE=Publish",
        _FAIL,
        *_platform_lines(),
        'platform_tag="${platform//\\//-}"',
        "# security-scan's output: `<component>=sha256:<sum>` of each archive the scan passed.",
        "declare -A passed=()",
        'read -r -a scanned <<< "$SCANNED_ARCHIVES"',
        'for pair in "${scanned[@]}"; do',
        '  passed["${pair%%=*}"]="${pair#*=}"',
        "done",
        "# resolve's components output is a JSON array of checked names.",
        'names="$(jq -r \'.[]\' <<< "$COMPONENTS_JSON")"',
        'mapfile -t components <<< "$names"',
        "pairs=()",
        'for name in "${components[@]}"; do',
        f'  archive="{IMAGES_DIR}/${{name}}.tar"',
        '  [[ -f "$archive" ]] || fail "no image archive for ${name}"',
        '  digest="$(sha256sum "$archive")"',
        '  if [[ "sha256:${digest%% *}" != "${passed[$name]:-none}" ]]; then',
        '    fail "the archive of ${name} is not the one the scan passed"',
        "  fi",
        '  loaded="$(docker load --quiet --input "$archive" | sed -n \'s/^Loaded image: //p\')"',
        "  # Exactly one image: the scan read one, and the one pushed must be that one.",
        '  if [[ -z "$loaded" || "$loaded" == *$\'\\n\'* ]]; then',
        '    fail "the archive of ${name} must hold exactly one tagged image"',
        "  fi",
        '  built="$(docker image inspect --format \'{{.Os}}/{{.Architecture}}\' "$loaded")"',
        '  if [[ "$built" != "$platform" ]]; then',
        '    fail "the image of ${name} is built for ${built}, the ${ENVIRONMENT} environment runs ${platform}"',
        "  fi",
        '  tag="${REGISTRY}/${name}:${SHA}-${platform_tag}-${GITHUB_RUN_ID}.${GITHUB_RUN_ATTEMPT}"',
        "  # A tag is never moved to another image: this run's tags are new, or the run stops. The",
        '  # engine asks the registry (TLS as configured); any answer but "unknown" stops the run.',
        '  # GitHub\'s registry answers "denied" for a package that does not exist yet (a first push),',
        "  # as for credentials it refuses, whose push then fails the same way.",
        '  if docker pull --quiet "$tag" > "$RUNNER_TEMP/pull.log" 2>&1; then',
        '    fail "${tag} already exists; it is never replaced"',
        "  fi",
        "  if ! grep -qiE 'manifest unknown|not found|denied' \"$RUNNER_TEMP/pull.log\"; then",
        '    fail "could not tell whether ${tag} exists: $(tail -n 1 "$RUNNER_TEMP/pull.log")"',
        "  fi",
        '  docker tag "$loaded" "$tag"',
        '  docker push --quiet "$tag" > /dev/null',
        '  reference="$(docker image inspect --format \'{{join .RepoDigests "\\n"}}\' "$tag" |',
        '    grep -F -m 1 "${REGISTRY}/${name}@sha256:")" || fail "no digest for ${tag} after the push"',
        '  pairs+=("${name}=${reference}")',
        '  echo "Pushed ${tag} as ${reference}"',
        "done",
        'echo "images=${pairs[*]}" >> "$GITHUB_OUTPUT"',
    ]
    return "\n".join(lines)


def _publish_job(args: CentralArgs) -> dict[str, Any]:
    return {
        "name": "Publish the scanned images",
        "needs": ["resolve", "build-test", "security-scan"],
        "if": f"{_resolved('deploy')} == 'true'",
        "runs-on": RUNNER,
        "timeout-minutes": TIMEOUTS["publish"],
        # The only job with a write scope; it runs nothing of the source, only docker on archives.
        "permissions": _permissions("publish"),
        "outputs": {"images": _expr("steps.push.outputs.images")},
        "steps": [
            _download_images(),
            {
                "name": "Log in to the registry",
                "uses": actions.uses("docker/login-action"),
                "with": {
                    "registry": _registry_host(args),
                    "username": _expr("github.repository_owner"),
                    "password": _expr("secrets.GITHUB_TOKEN"),
                },
            },
            {
                "name": "Push the scanned images",
                "id": "push",
                "shell": "bash",
                "env": {
                    **_platform_env(),
                    "COMPONENTS_JSON": _expr(_resolved("components")),
                    "SCANNED_ARCHIVES": _expr("needs.security-scan.outputs.scanned"),
                    "REGISTRY": args.registry,
                    "SHA": _expr(_resolved("sha")),
                },
                "run": _publish_body(),
            },
        ],
    }


DEPLOY_CLIENT_CODE = (
    "components/environment/__init__.py",
    "components/environment/deploy_program.py",
    "components/environment/deploy/dreamscape-deploy",
)
"""What `ci.deploy` imports beyond PIPELINE_CODE: the deploy program's contract (its patterns,
bounds and exit codes), read from the program itself."""


def _deploy_job(args: CentralArgs) -> dict[str, Any]:
    def secret(base: str) -> str:
        per_env = {env: names.secret_names(env, args.deploy_secret_layout)[base] for env in rules.ENVIRONMENTS}
        if len(set(per_env.values())) == 1:
            return _expr(f"secrets.{per_env[rules.ENVIRONMENTS[0]]}")
        return _per_environment(lambda env: f"secrets.{per_env[env]}")

    environment = _expr(_resolved("environment"))
    env = {
        **{base: secret(base) for base in names.SECRETS},
        "DEPLOY_IMAGES": _expr("needs.publish.outputs.images"),
    }
    if _pulls_with_job_token(args):
        # The VM pulls this run's images with this job's token (packages: read), handed over on
        # stdin; it expires when the job ends.
        env |= {
            "DEPLOY_REGISTRY": _registry_host(args),
            "DEPLOY_REGISTRY_USER": _expr("github.repository_owner"),
            "DEPLOY_REGISTRY_TOKEN": _expr("secrets.GITHUB_TOKEN"),
        }
    step_minutes = deploy_timeout(args.deploy)
    ssh_step = {
        "name": f"Deploy to {environment} over SSH",
        # A superseded run deploys nothing: the newer commit's own run deploys it.
        "if": "steps.newest.outputs.superseded == ''",
        "timeout-minutes": step_minutes,
        "env": {**env, "DEPLOY_COMPOSE_FILE": compose.path(environment)},
        "shell": "bash",
        "run": _python("deploy"),
    }
    return {
        "name": f"Deploy to {environment}",
        "needs": ["resolve", "publish"],
        "if": f"{_resolved('deploy')} == 'true'",
        "runs-on": RUNNER,
        "timeout-minutes": step_minutes + 5,
        "permissions": _permissions("deploy", args),
        "environment": {
            "name": environment,
            "url": _per_environment(lambda env: f"vars.{names.url_variable(env)}"),
        },
        # One deploy at a time per environment; a newer run waits its turn instead of
        # cancelling a pending one, whose commit would never get a final status.
        "outputs": {"superseded": _expr("steps.newest.outputs.superseded")},
        "concurrency": {
            "group": f"central-deploy-{environment}",
            "cancel-in-progress": False,
            "queue": "max",
        },
        "steps": [
            _check_out_pipeline(*DEPLOY_CLIENT_CODE, DATA_PATH, f"{compose.DIRECTORY}/"),
            {
                "name": "Check that the commit is still the newest of its branch",
                "id": "newest",
                "shell": "bash",
                "env": {
                    "SOURCE_REPO": _expr(_resolved("source_repo")),
                    "REF": _expr(_resolved("ref")),
                    "SHA": _expr(_resolved("sha")),
                    "EVENT_NAME": _expr("github.event_name"),
                    ci.github.TOKEN_VARIABLE: _expr(f"secrets.{TOKEN}"),
                },
                "run": _python("deploy_gate"),
            },
            ssh_step,
        ],
    }


def _report_job() -> dict[str, Any]:
    return {
        "name": "Report back",
        "needs": list(REPORTED_JOBS),
        "if": "always()",
        "runs-on": RUNNER,
        "timeout-minutes": TIMEOUTS["report"],
        "permissions": _permissions("report"),
        "steps": [
            _check_out_pipeline(),
            {
                "name": "Post the final status and the summary",
                "shell": "bash",
                "env": {
                    **{ci.report.result_variable(job): _expr(f"needs.{job}.result") for job in REPORTED_JOBS},
                    "SOURCE_REPO": _expr(_resolved("source_repo")),
                    "REF": _expr(_resolved("ref")),
                    "SHA": _expr(_resolved("sha")),
                    "ENVIRONMENT": _expr(_resolved("environment")),
                    "DEPLOY": _expr(_resolved("deploy")),
                    "COMPONENTS_JSON": _expr(_resolved("components")),
                    "SUPERSEDED": _expr("needs.deploy.outputs.superseded"),
                    ci.github.TOKEN_VARIABLE: _expr(f"secrets.{TOKEN}"),
                },
                "run": _python("report"),
            },
        ],
    }


def _inputs(args: CentralArgs) -> dict[str, Any]:
    """Manual runs take the payload's keys as inputs, so one validation serves both events."""
    described = {
        "source_repo": "Source repository (OWNER/NAME)",
        "ref": "Full ref of the branch, e.g. refs/heads/feature/login",
        "sha": "Commit to build: 40 hexadecimal characters, on that branch",
        "component": "Components, comma-separated, no spaces",
        "environment": "Environment; it must be the one the branch maps to",
    }
    if set(described) != set(rules.PAYLOAD_KEYS):
        raise AssertionError("the manual inputs must be exactly rules.PAYLOAD_KEYS")
    inputs: dict[str, Any] = {}
    for key in rules.PAYLOAD_KEYS:
        spec: dict[str, Any] = {"description": described[key], "required": True, "type": "string"}
        if key == "source_repo":
            spec |= {"type": "choice", "options": [args.full_name(r) for r in args.repositories]}
        elif key == "environment":
            spec |= {"type": "choice", "options": list(rules.ENVIRONMENTS)}
        inputs[key] = spec
    return inputs


def event_types(repositories: Iterable[SourceRepository]) -> list[str]:
    """The `repository_dispatch` types: one per configured kind, in config order."""
    return list(dict.fromkeys(repo.event_type for repo in repositories))


def document(args: CentralArgs) -> dict[str, Any]:
    """The workflow as data; `render()` turns it into the file's text."""
    if args.deploy_secret_layout not in names.LAYOUTS:
        raise ValueError(f"unknown deploy secret layout {args.deploy_secret_layout!r}")
    return {
        "name": NAME,
        "on": {
            "repository_dispatch": {"types": event_types(args.repositories)},
            "workflow_dispatch": {"inputs": _inputs(args)},
        },
        "permissions": {},
        "jobs": {
            "resolve": _resolve_job(args),
            "build-test": _build_test_job(args),
            "security-scan": _security_scan_job(args),
            "publish": _publish_job(args),
            "deploy": _deploy_job(args),
            "report": _report_job(),
        },
    }


def data_file(args: CentralArgs) -> str:
    """The JSON the pipeline's modules load (ci/config.py): the same settings the workflow is rendered from."""
    config = ci.config.Config(
        repositories=tuple(
            ci.config.Repository(
                name=args.full_name(repo),
                event_type=repo.event_type,
                deployable=repo.deployable,
                components=repo.component_names,
                build=repo.build_command,
                test=repo.test_command,
            )
            for repo in args.repositories
        ),
        registry=args.registry,
        scan_severity=args.scan_severity,
        arm_runner_label=args.arm_runner_label,
        deploy=ci.config.Deploy(
            lock_wait_seconds=args.deploy.lock_wait_seconds,
            wait_timeout_seconds=args.deploy.wait_timeout_seconds,
            keep_releases=args.deploy.keep_releases,
        ),
    )
    return ci.config.dumps(config)


def render(args: CentralArgs) -> str:
    return _comment_permissions(emit.dump(document(args), SOURCE))
