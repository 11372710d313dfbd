"""The central pipeline in the infra repository: validate, build and test, scan, deploy, report.

    .github/workflows/central-dispatch.yml   on the infra repository's default branch

Started by a source repository's trigger (`repository_dispatch`, one event type per kind) or by
hand (`workflow_dispatch`, the only way to deploy dev). Six jobs, each in one trust tier
(DESIGN.md, "Trust tiers"; `TIERS`): a source repository's code runs only in `build-test`,
which holds no secret, no write scope and no token that reaches anything (`permissions: {}`),
and which no later job trusts but through the artifacts it leaves, checked on the way:

- `resolve` (`ci/resolve.py`) checks the payload against the contract in `rules.py` and the
  repositories and components of the data file, recomputes environment and deploy from the
  ref (a mismatch is refused), checks with the compare API that the commit is on the named
  branch of the source repository, and posts `pending` on that commit with a link to the run.
  A payload it refuses gets an `error` status on the source commit when repository and sha are
  valid. It then checks the source out at the sha (with PIPELINE_TOKEN, not kept), plans the
  builds (`ci/plan.py`) and hands the source on as an archive (artifact `source`). Its outputs
  (`OUTPUTS`) are what every later job reads.
- `build-test` (one job per entry of the build plan, untrusted) unpacks that archive, runs the
  build and test commands its entry carries, uploads test reports, and builds the component's
  image for the target environment's platform without pushing it: the image leaves as an archive.
- `security-scan` scans the source tree (vulnerabilities, secrets, misconfigurations) and each
  image archive (vulnerabilities, secrets, `ci/scan.py`) with trivy, whose binary and database come fresh
  from upstream on every run (no Actions cache, which the untrusted job could write), and
  outputs the sha256 of each archive it passed.
- `publish` (only when the run deploys, `ci/publish.py`) runs no source code: it pushes each scanned archive,
  checked against those sha256 sums, under `<registry>/<component>:<sha>-<os>-<arch>-<run>`
  (never over an existing tag) and outputs `<component>=<registry>/<component>@sha256:...`.
- `deploy` runs in GitHub environment `<env>`, one at a time per environment: an automatic run
  whose commit is no longer its branch's head deploys nothing ("superseded", `ci/deploy_gate.py`);
  otherwise it hands the environment's compose file and the images, by digest, to the deploy
  program over SSH (`ci/deploy.py`).
- `report` always runs: the final commit status and a summary table (`ci/report.py`).

A job that runs one of the pipeline's Python modules (`ci/`) first checks this repository out at
the run's own commit, only the code it runs (`PIPELINE_CODE`, and for the deploy client the
deploy program) and the data file (`data_file`: the stack's choices), then runs
`python3 -m ci.<module>`. The few shell bodies left are fixed text (unpack, build the image),
the same for every config. Steps read event
data only through `env:`; `PIPELINE_TOKEN` reaches only the steps that call the GitHub API on a
source repository or check one out, never a step that runs the source repository's commands.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import ci.config
import ci.deploy
import ci.github
import ci.instances
import ci.oci
import ci.plan
import ci.report
import ci.resolve
import ci.scan
from components import rules
from components.environment import compose, deploy_program, names
from components.settings import Deploy, Settings, SourceRepository
from components.workflows import actions, credentials, emit

PATH = ".github/workflows/central-dispatch.yml"
DATA_PATH = ci.config.PATH
"""The stack's choices the pipeline's modules read (`data_file`), written beside the workflow."""
NAME = "Central CI/CD"
SOURCE = "components/workflows/central.py"

RUNNER = "ubuntu-24.04"
TOKEN = credentials.PIPELINE.secret
"""PIPELINE_TOKEN, held by the infra repository alone: reads the source repositories and posts
statuses on their commits. The source repositories' DISPATCH_TOKEN can do neither."""
MINT_STEP = "pipeline-token"
MINTED = {
    "resolve": {"contents": "read", "statuses": "write"},
    "deploy": {"contents": "read"},
    "report": {"statuses": "write"},
}
"""App mode: the permissions of the token each job mints, for the run's one source repository."""
STATUS_CONTEXT = ci.github.STATUS_CONTEXT

OUTPUTS = (*ci.resolve.OUTPUTS, "platform", "builds")
"""`resolve`'s job outputs: the contract every later job reads (the last two are the build plan's)."""

REPORTED_JOBS = ci.report.JOBS
"""The jobs whose results the report lists and judges."""
JOBS = (*REPORTED_JOBS, "report")

PIPELINE_CODE = (
    "ci/",
    "components/__init__.py",
    "components/rules.py",
    "components/environment/__init__.py",
    "components/environment/names.py",
)
"""What a job that runs `python3 -m ci.<module>` checks out of the infra repository: ci/ and
the standard-library-only modules of components/ it imports."""

PERMISSIONS: dict[str, dict[str, tuple[str, str]]] = {
    "resolve": {},
    "build-test": {},
    "security-scan": {"contents": ("read", "the trivy action fetches trivy with this job's token")},
    "publish": {
        "contents": ("read", "check out the pipeline's code (ci/) of this repository"),
        "packages": ("write", "push the scanned images; this job runs no source code"),
    },
    "deploy": {
        "contents": ("read", "check out this repository's compose files and the pipeline's code"),
        "id-token": ("write", "exchanged for a short-lived OCI session token that opens the bastion session"),
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

SEVERITIES = ci.scan.SEVERITIES
"""Trivy's severities, lowest first; the scan fails on the configured one and every one above."""


GITHUB_REGISTRY = "ghcr.io"

SOURCE_DIR = ci.plan.SOURCE_DIR
"""Where resolve checks the source repository out, and where later jobs unpack it."""
SOURCE_ARTIFACT = "source"
"""The source tree at the sha, as resolve packed it (tar keeps modes and symlinks)."""
SOURCE_ARCHIVE = "source.tar.gz"
IMAGE_ARTIFACT = "image-"
"""`image-<component>`: the image build-test built, one `docker save` archive `<component>.tar`."""
IMAGES_DIR = ci.scan.IMAGES_DIR
"""Where build-test saves its archive, and where security-scan and publish download them all,
merged: `images/<component>.tar` however many match (download-artifact unpacks a single match
straight into its path, several into a folder each, unless told to merge)."""
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
    auth: credentials.Auth = credentials.TOKENS
    oci_deploy_auth: str = ci.oci.WORKLOAD_IDENTITY
    """How the deploy job signs its OCI calls (ci/oci.py): only `workloadIdentity` needs `id-token: write`."""

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
            auth=settings.auth,
            oci_deploy_auth=settings.oci_deploy_auth,
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
    if job == "deploy" and (args is None or args.oci_deploy_auth != ci.oci.WORKLOAD_IDENTITY):
        del granted["id-token"]
    return granted


def _pipeline_token(args: CentralArgs) -> str:
    """The pipeline's credential in a job's steps: the secret, or the token the job minted."""
    return _expr(f"steps.{MINT_STEP}.outputs.token") if args.auth.apps else _expr(f"secrets.{TOKEN}")


def _name_of(args: CentralArgs, expression: str) -> str:
    """The configured repository's name (no owner) that `expression` names, '' for any other."""
    clauses = [f"{expression} == '{args.full_name(repo)}' && '{repo.name}'" for repo in args.repositories]
    return " || ".join([*clauses, "''"])


def _mint(args: CentralArgs, job: str, repository: str, condition: str) -> list[dict[str, Any]]:
    """App mode: the step that mints this job's token, for the one source repository `repository`."""
    if not args.auth.apps:
        return []
    return [
        {
            "name": "Mint the pipeline's token for the run's source repository",
            "id": MINT_STEP,
            "if": condition,
            "uses": actions.uses("actions/create-github-app-token"),
            "with": {
                "client-id": args.auth.pipeline_client_id,
                "private-key": _expr(f"secrets.{args.auth.pipeline.secret}"),
                "owner": args.owner,
                "repositories": repository,
                **{f"permission-{scope}": level for scope, level in MINTED[job].items()},
            },
        }
    ]


def _mint_for_resolved(args: CentralArgs, job: str) -> list[dict[str, Any]]:
    """The mint step of a job after resolve: for the repository resolve accepted, when it accepted one."""
    accepted = _resolved("source_repo")
    return _mint(args, job, _expr(_name_of(args, accepted)), f"{accepted} != ''")


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


severities_from = ci.scan.severities_from


def deploy_timeout(deploy: Deploy) -> int:
    """Minutes for the deploy step, the longer of the two targets': on a VM, opening the bastion
    session, waiting for the lock, pulling, starting, maybe rolling back; on container
    instances, the new instance becoming ACTIVE, healthy, then OK behind the load balancer."""
    vm = (
        ci.oci.ACTIVE_WAIT_SECONDS + deploy.lock_wait_seconds + PULL_ALLOWANCE_SECONDS + 2 * deploy.wait_timeout_seconds
    )
    containers = ci.instances.CREATE_WAIT_SECONDS + 2 * deploy.wait_timeout_seconds + ci.instances.SWITCH_SECONDS
    return math.ceil(max(vm, containers) / 60) + 5


# --- shell pieces ------------------------------------------------------------------------------


def _check_out_source(args: CentralArgs) -> dict[str, Any]:
    """The source repository at the commit resolve accepted (nothing of it runs in resolve)."""
    return {
        "name": "Check out the source repository at the commit",
        "uses": actions.uses("actions/checkout"),
        "with": {
            "repository": _expr("steps.resolve.outputs.source_repo"),
            "ref": _expr("steps.resolve.outputs.sha"),
            "path": SOURCE_DIR,
            # A private source repository is readable with PIPELINE_TOKEN only; it is not
            # kept in .git/config.
            "token": _pipeline_token(args),
            "persist-credentials": False,
        },
    }


def _hand_on_source() -> list[dict[str, Any]]:
    """resolve's last steps: the source at the sha, packed for the jobs that build and scan it."""
    return [
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
    outputs = {name: _expr(f"steps.resolve.outputs.{name}") for name in ci.resolve.OUTPUTS}
    outputs |= {name: _expr(f"steps.plan.outputs.{name}") for name in ("platform", "builds")}
    event = {
        "EVENT_NAME": _expr("github.event_name"),
        "DISPATCHED_TYPE": _expr("github.event.action"),
        "CLIENT_PAYLOAD": _expr("toJSON(github.event.client_payload)"),
        "INPUTS": _expr("toJSON(github.event.inputs)"),
    }
    target: list[dict[str, Any]] = []
    if args.auth.apps:
        # The token is minted for the repository the payload names, once it is a configured one.
        target = [
            {
                "name": "Find the source repository to mint the token for",
                "id": "target",
                "shell": "bash",
                "env": event,
                "run": _python("resolve --target"),
            },
            *_mint(args, "resolve", _expr("steps.target.outputs.name"), "steps.target.outputs.name != ''"),
        ]
    return {
        "name": "Validate the request",
        "runs-on": RUNNER,
        "timeout-minutes": TIMEOUTS["resolve"],
        "permissions": _permissions("resolve"),
        "outputs": outputs,
        "steps": [
            _check_out_pipeline(DATA_PATH),
            *target,
            {
                "name": "Validate the payload, check the commit, post pending",
                "id": "resolve",
                "shell": "bash",
                "env": {**event, ci.github.TOKEN_VARIABLE: _pipeline_token(args)},
                "run": _python("resolve"),
            },
            _check_out_source(args),
            {
                "name": "Plan the builds",
                "id": "plan",
                "shell": "bash",
                "env": {
                    "SOURCE_REPO": _expr("steps.resolve.outputs.source_repo"),
                    "ENVIRONMENT": _expr("steps.resolve.outputs.environment"),
                    "DEPLOY": _expr("steps.resolve.outputs.deploy"),
                    "COMPONENTS_JSON": _expr("steps.resolve.outputs.components"),
                    **{
                        names.platform_variable(env): _expr(f"vars.{names.platform_variable(env)}")
                        for env in rules.ENVIRONMENTS
                    },
                },
                "run": _python("plan"),
            },
            *_hand_on_source(),
        ],
    }


def _build_image_body() -> str:
    """Build into the runner's engine, then save the image as an archive: nothing is pushed from here.

    The layer cache is read from the registry (the environment's, which only `publish` writes)
    and the image carries its own cache metadata (`inline`) for the next build to read.
    """
    return "\n".join(
        [
            "set -euo pipefail",
            'tag="dreamscape-build/${COMPONENT}:${SHA}"',
            'args=(--provenance=false --sbom=false --load --tag "$tag" --cache-to type=inline)',
            'if [[ -n "$PLATFORM" ]]; then',
            '  args+=(--platform "$PLATFORM")',
            "fi",
            "# A missing or unreadable cache is a cold build, not a failure.",
            'if [[ -n "$CACHE" ]]; then',
            '  args+=(--cache-from "type=registry,ref=${CACHE}")',
            "fi",
            f'docker buildx build "${{args[@]}}" "{SOURCE_DIR}/${{COMPONENT}}"',
            f'mkdir -p "${{RUNNER_TEMP}}/{IMAGES_DIR}"',
            f'docker save --output "${{RUNNER_TEMP}}/{IMAGES_DIR}/${{COMPONENT}}.tar" "$tag"',
        ]
    )


def _source_command() -> str:
    """Runs the matrix entry's build or test command (the stack config's) in the component's folder."""
    return "\n".join(["set -euo pipefail", f'cd "{SOURCE_DIR}/${{COMPONENT}}"', 'eval "$COMMAND"'])


def _build_test_job(args: CentralArgs) -> dict[str, Any]:
    component = _expr("matrix.component")
    artifact_paths = sorted({path for repo in args.repositories for path in repo.artifacts})
    return {
        "name": f"Build and test {component}",
        "needs": "resolve",
        "runs-on": _expr("matrix.runs-on"),
        "timeout-minutes": TIMEOUTS["build-test"],
        # Untrusted: the source's commands, its dependencies' install scripts and its Dockerfile
        # run here. No secret, no write scope, no registry login; the job's token has no scope.
        "permissions": _permissions("build-test"),
        "strategy": {
            "fail-fast": False,
            # resolve's build plan (ci/plan.py): one entry per component.
            "matrix": _expr(f"fromJSON({_resolved('builds')})"),
        },
        "steps": [
            {
                "name": "Stop on what the build plan found",
                "if": "matrix.problem != ''",
                "shell": "bash",
                "env": {"PROBLEM": _expr("matrix.problem")},
                "run": 'echo "::error title=Build plan::${PROBLEM}"\nexit 1',
            },
            *_unpack_source(),
            *(
                {
                    "name": which.capitalize(),
                    "shell": "bash",
                    "env": {"COMPONENT": component, "COMMAND": _expr(f"matrix.{which}")},
                    "run": _source_command(),
                }
                for which in ("build", "test")
            ),
            {
                "name": "Upload test reports",
                "if": "always() && matrix.problem == ''",
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
                "if": "matrix.platform != '' && runner.arch != matrix.arch",
                "uses": actions.uses("docker/setup-qemu-action"),
                "with": {"platforms": _expr("matrix.platform")},
            },
            {
                "name": "Build the image (never pushed from here)",
                "if": "matrix.image == 'true'",
                "shell": "bash",
                "env": {
                    "COMPONENT": component,
                    "SHA": _expr(_resolved("sha")),
                    "PLATFORM": _expr("matrix.platform"),
                    "CACHE": _expr("matrix.cache"),
                },
                "run": _build_image_body(),
            },
            {
                "name": "Hand the image on to the scan",
                "if": "matrix.image == 'true'",
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
            _check_out_pipeline(DATA_PATH),
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
                "env": {"TRIVY_CACHE_DIR": TRIVY_CACHE},
                "run": _python("scan"),
            },
        ],
    }


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
            _check_out_pipeline(DATA_PATH),
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
                    "COMPONENTS_JSON": _expr(_resolved("components")),
                    "SHA": _expr(_resolved("sha")),
                    "PLATFORM": _expr(_resolved("platform")),
                    "ENVIRONMENT": _expr(_resolved("environment")),
                    "SCANNED_ARCHIVES": _expr("needs.security-scan.outputs.scanned"),
                },
                "run": _python("publish"),
            },
        ],
    }


DEPLOY_CLIENT_CODE = (
    "components/environment/deploy_program.py",
    "components/environment/deploy/dreamscape_deploy.py",
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
        ci.deploy.OCI_ACCESS: _per_environment(lambda env: f"vars.{names.oci_variable(env)}"),
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
        "name": f"Deploy to {environment}",
        # A superseded run deploys nothing: the newer commit's own run deploys it.
        "if": "steps.newest.outputs.superseded == ''",
        "timeout-minutes": step_minutes,
        "env": {**env, "DEPLOY_COMPOSE_FILE": compose.path(environment)},
        "shell": "bash",
        # exec: the runner's SIGINT and SIGTERM of a cancelled job reach the client itself, which
        # then deletes its bastion session, or the new container instance that never took
        # traffic (bash would exit and leave them).
        "run": f"exec {_python('deploy')}",
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
            *_mint_for_resolved(args, "deploy"),
            {
                "name": "Check that the commit is still the newest of its branch",
                "id": "newest",
                "shell": "bash",
                "env": {
                    "SOURCE_REPO": _expr(_resolved("source_repo")),
                    "REF": _expr(_resolved("ref")),
                    "SHA": _expr(_resolved("sha")),
                    "EVENT_NAME": _expr("github.event_name"),
                    ci.github.TOKEN_VARIABLE: _pipeline_token(args),
                },
                "run": _python("deploy_gate"),
            },
            ssh_step,
        ],
    }


def _report_job(args: CentralArgs) -> dict[str, Any]:
    return {
        "name": "Report back",
        "needs": list(REPORTED_JOBS),
        "if": "always()",
        "runs-on": RUNNER,
        "timeout-minutes": TIMEOUTS["report"],
        "permissions": _permissions("report"),
        "steps": [
            _check_out_pipeline(),
            *_mint_for_resolved(args, "report"),
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
                    ci.github.TOKEN_VARIABLE: _pipeline_token(args),
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
            "report": _report_job(args),
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
        runner=RUNNER,
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
