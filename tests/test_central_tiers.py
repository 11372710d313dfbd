"""The central pipeline's trust tiers, attacked: untrusted code holds nothing, only scanned images
are published, what is deployed is a digest, and a superseded run deploys nothing.

The jobs run one after another as GitHub would chain them, with real bash, a real Docker Engine
and a real registry on 127.0.0.1 (tests/harness/engine.py), the GitHub API stand-in, and one
run's artifact store (tests/central_support.Artifacts). The scanner is the one stand-in: trivy
needs its vulnerability database from the internet, so `trivy` here checks the arguments the
step passes and fails an image archive that holds a file named VULNERABLE, as trivy fails an
image with a finding at the configured severity.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.environment import compose
from components.workflows import central
from tests import conftest
from tests.central_support import (
    DISPATCH_TOKEN,
    RETRY_ENV,
    Artifacts,
    central_document,
    data_files,
    dispatch_github,
    manual_github,
    run_resolve,
    settings_of,
    sha_of,
    stand_in,
)
from tests.harness import engine
from tests.harness.workflow import Context, JobResult, run_job

STACK = "production"
COMPONENT = "auth-service"
REPOSITORIES = [
    {
        "name": "dreamscape-services",
        "kind": "services",
        "deployable": True,
        "build": "true",
        "test": "true",
        "components": [{"name": COMPONENT, "port": 8080, "healthPath": "/health"}],
    }
]
SOURCE = "DREAMSCAPE-AI/dreamscape-services"
JOB_TOKEN = "ghs_job_token"
"""The `github.token` the workflow harness gives every job."""
PLATFORM = {"DEPLOY_PLATFORM_PRODUCTION": "linux/amd64"}
"""This machine's platform: the engine builds natively (QEMU is GitHub's runner's business)."""

FAKE_TRIVY = r"""#!/usr/bin/env python3
import sys, tarfile
args = sys.argv[1:]
expected = ["image", "--input", None, "--scanners", "vuln,secret", "--severity", None, "--exit-code", "1",
            "--no-progress", "--format", "table"]
if len(args) != len(expected) or any(e is not None and a != e for a, e in zip(args, expected)):
    print(f"fake trivy: unexpected arguments {args}", file=sys.stderr); sys.exit(2)
with tarfile.open(args[2]) as archive:
    for member in archive.getmembers():
        if member.name.endswith("layer.tar") or member.name.startswith("blobs/"):
            layer = archive.extractfile(member)
            if layer is None:
                continue
            try:
                with tarfile.open(fileobj=layer) as files:
                    if any(name.endswith("VULNERABLE") for name in files.getnames()):
                        print("CRITICAL: a finding", file=sys.stderr); sys.exit(1)
            except tarfile.ReadError:
                continue
print("no finding")
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[engine.Registry]:
    problems = engine.missing_prerequisites()
    if problems:
        if conftest.IN_CI:
            pytest.fail("; ".join(problems) + " - CI=true requires it")
        pytest.skip("; ".join(problems))
    started = engine.Registry(tmp_path_factory.mktemp("tiers"), "registry").start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def workflow(registry: engine.Registry) -> dict[str, Any]:
    settings = settings_of(STACK, sourceRepositories=REPOSITORIES, registry=f"{registry.host}/dreamscape")
    return central.document(central.CentralArgs.from_settings(settings))


@pytest.fixture
def tools(tmp_path) -> Path:
    """PATH's first folder: the packaged docker client, and the trivy stand-in."""
    folder = tmp_path / "tools"
    folder.mkdir()
    (folder / "docker").symlink_to(engine.DOCKER)
    (folder / "trivy").write_text(FAKE_TRIVY)
    (folder / "trivy").chmod(0o755)
    return folder


class Run:
    """One pipeline run, job after job, sharing its artifacts and its `needs`."""

    def __init__(
        self,
        workflow,
        registry: engine.Registry,
        tools: Path,
        tree: dict[str, str],
        event: str = "push",
        branch: str = "main",
        environment: str = "production",
        repositories: list[dict[str, Any]] = REPOSITORIES,
    ):
        self.workflow = workflow
        self.branch, self.environment = branch, environment
        self.settings = settings_of(STACK, sourceRepositories=repositories, registry=f"{registry.host}/dreamscape")
        self.tools = tools
        # The infra repository's generated compose and data files, for the jobs' checkouts.
        self.artifacts = Artifacts(
            tree, infra={compose.path(environment): "services: {}\n", **data_files(self.settings)}
        )
        self.sha = sha_of("tiers", sorted(tree), os.urandom(8).hex())
        self.event = event
        self.needs: dict[str, Any] = {}
        self.api = stand_in(self.settings)
        self.api.branch_heads[(SOURCE.lower(), branch)] = self.sha

    def __enter__(self) -> Run:
        self.api.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.api.__exit__(*exc)

    def github(self) -> dict[str, Any]:
        if self.event == "manual":
            inputs = {
                "source_repo": SOURCE,
                "ref": f"refs/heads/{self.branch}",
                "sha": self.sha,
                "component": COMPONENT,
            }
            return manual_github(self.settings, self.api, {**inputs, "environment": self.environment})
        payload = {
            "source_repo": SOURCE,
            "ref": f"refs/heads/{self.branch}",
            "sha": self.sha,
            "component": COMPONENT,
            "environment": self.environment,
        }
        return dispatch_github(self.settings, self.api, "services-changed", payload)

    def resolve(self) -> JobResult:
        self.api.add_comparison(SOURCE, self.sha, self.branch, status="identical")
        result = run_resolve(self.workflow, self.github(), artifacts=self.artifacts, variables=PLATFORM)
        self.needs["resolve"] = {"result": result.status, "outputs": result.outputs}
        return result

    def job(self, job_id: str, **context: Any) -> JobResult:
        ctx = Context(
            github=self.github(),
            secrets={central.TOKEN: DISPATCH_TOKEN},
            vars=PLATFORM,
            needs=self.needs,
            **context,
        )
        extra = {**RETRY_ENV, "PATH": f"{self.tools}:{os.environ['PATH']}"}
        result = run_job(self.workflow, job_id, ctx, uses=self.artifacts.table(), extra_env=extra, step_timeout=120)
        self.needs[job_id] = {"result": result.status, "outputs": result.outputs}
        return result

    def build(self) -> JobResult:
        """The build-test job of the one component, with the matrix entry resolve planned for it."""
        [entry] = json.loads(self.needs["resolve"]["outputs"]["builds"])["include"]
        assert entry["component"] == COMPONENT
        return self.job("build-test", matrix=entry)

    def through_scan(self) -> tuple[JobResult, JobResult]:
        assert self.resolve().status == "success"
        build = self.build()
        assert build.status == "success", build.log
        return build, self.job("security-scan")


def tree(*extra: str) -> dict[str, str]:
    files = {f"{COMPONENT}/Dockerfile": "FROM scratch\nCOPY . /app/\n", f"{COMPONENT}/index.js": "\n"}
    return {**files, **{f"{COMPONENT}/{name}": "\n" for name in extra}}


def manifest(registry: engine.Registry, repository: str, reference: str) -> tuple[str, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://{registry.host}/v2/{repository}/manifests/{reference}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http://127.0.0.1 only
        return response.headers["Docker-Content-Digest"], json.loads(response.read())


def tags(registry: engine.Registry, repository: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{registry.host}/v2/{repository}/tags/list", timeout=10) as response:
            return json.loads(response.read()).get("tags") or []
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise


pytestmark = pytest.mark.e2e


# --- the chain, and what it publishes ----------------------------------------------------------------


def test_a_deploying_run_publishes_exactly_the_scanned_archive_and_deploys_it_by_digest(
    workflow, registry, tools
) -> None:
    with Run(workflow, registry, tools, tree()) as run:
        build, scan = run.through_scan()
        assert scan.status == "success", scan.log
        archive = run.artifacts.store[f"image-{COMPONENT}"][f"{COMPONENT}.tar"]
        scanned = scan.outputs["scanned"]
        assert re.fullmatch(rf"{COMPONENT}=sha256:[0-9a-f]{{64}}", scanned)
        publish = run.job("publish")
        assert publish.status == "success", publish.log
    [pair] = publish.outputs["images"].split()
    name, _, reference = pair.partition("=")
    assert name == COMPONENT
    assert re.fullmatch(rf"{re.escape(registry.host)}/dreamscape/{COMPONENT}@sha256:[0-9a-f]{{64}}", reference)
    # The tag names the commit, the platform and the run; it holds the digest deployed.
    [tag] = tags(registry, f"dreamscape/{COMPONENT}")
    assert tag == f"{run.sha}-linux-amd64-1000001.1"
    digest, pushed = manifest(registry, f"dreamscape/{COMPONENT}", tag)
    assert reference.endswith("@" + digest)
    # The manifest's layers are the scanned archive's layers: the VM runs what was scanned.
    with tarfile.open(fileobj=io.BytesIO(archive)) as saved:
        config = json.loads(saved.extractfile("manifest.json").read())[0]["Config"]
    assert pushed["config"]["digest"].split(":")[1] in config
    assert "sha256:" + hashlib.sha256(archive).hexdigest() == scanned.split("=")[1]
    assert build.outputs == {}


def test_a_feature_branch_run_publishes_nothing_and_deploys_nothing(workflow, registry, tools) -> None:
    """What production pulls can only change through a deploying run's publish job."""
    before = tags(registry, f"dreamscape/{COMPONENT}")
    with Run(workflow, registry, tools, tree(), branch="feature/x", environment="dev") as run:
        build, scan = run.through_scan()
        assert scan.status == "success", scan.log
        assert run.needs["resolve"]["outputs"]["deploy"] == "false"
        publish = run.job("publish")
        deploy = run.job("deploy")
    assert (publish.status, deploy.status) == ("skipped", "skipped")
    assert tags(registry, f"dreamscape/{COMPONENT}") == before
    assert build.status == "success"


def test_a_fake_docker_on_the_build_path_gets_no_token(workflow, registry, tools, tmp_path) -> None:
    """The attack: a build step puts its own `docker` first on PATH for the steps after it."""
    caught = tmp_path / "caught"
    hostile = dict(REPOSITORIES[0])
    hostile["build"] = (
        'mkdir -p "$RUNNER_TEMP/evil" && '
        f'printf \'#!/bin/sh\\nenv >> {caught}/env\\necho "$*" >> {caught}/args\\n\' > "$RUNNER_TEMP/evil/docker" && '
        'chmod +x "$RUNNER_TEMP/evil/docker" && echo "$RUNNER_TEMP/evil" >> "$GITHUB_PATH"'
    )
    caught.mkdir()
    settings = settings_of(STACK, sourceRepositories=[hostile], registry=f"{registry.host}/dreamscape")
    hostile_workflow = central.document(central.CentralArgs.from_settings(settings))
    with Run(hostile_workflow, registry, tools, tree(), repositories=[hostile]) as run:
        assert run.resolve().status == "success"
        build = run.build()
    assert (caught / "args").read_text().startswith("buildx build")  # the fake docker did run
    seen = (caught / "env").read_text()
    for secret in (DISPATCH_TOKEN, JOB_TOKEN):
        assert secret not in seen
    assert not re.search(r"(gh[pousr]_|ACTIONS_ID_TOKEN|password)", seen, re.IGNORECASE)
    assert build.status == "failure"  # and what it built is no image: nothing to hand on
    assert f"image-{COMPONENT}" not in run.artifacts.store


def test_a_failed_scan_stops_the_image_before_the_registry(workflow, registry, tools) -> None:
    with Run(workflow, registry, tools, tree("VULNERABLE")) as run:
        _, scan = run.through_scan()
    assert scan.status == "failure"
    assert "CRITICAL: a finding" in scan.log
    assert scan.outputs.get("scanned", "") == ""
    # GitHub runs `publish` only when every job it needs succeeded (its `if:` adds no always()).
    publish = workflow["jobs"]["publish"]
    assert "security-scan" in publish["needs"]
    assert not re.search(r"always\(\)|failure\(\)|cancelled\(\)", publish["if"])
    assert tags(registry, f"dreamscape/{COMPONENT}") == [] or all(
        not t.startswith(run.sha) for t in tags(registry, f"dreamscape/{COMPONENT}")
    )


def test_an_archive_changed_after_the_scan_is_never_pushed(workflow, registry, tools) -> None:
    with Run(workflow, registry, tools, tree()) as run:
        _, scan = run.through_scan()
        assert scan.status == "success", scan.log
        archive = run.artifacts.store[f"image-{COMPONENT}"]
        archive[f"{COMPONENT}.tar"] += b"\0" * 1024  # what a lower tier could upload again
        publish = run.job("publish")
    assert publish.status == "failure"
    assert f"the archive of {COMPONENT} is not the one the scan passed" in publish.log
    assert not any(t.startswith(run.sha) for t in tags(registry, f"dreamscape/{COMPONENT}"))


def test_an_archive_holding_more_than_one_image_is_never_pushed(workflow, registry, tools, tmp_path) -> None:
    """The scan reads one image of an archive; publish pushes only an archive that holds exactly one."""
    with Run(workflow, registry, tools, tree()) as run:
        _, scan = run.through_scan()
        assert scan.status == "success", scan.log
        other = f"dreamscape-test/another:{run.sha[:12]}"
        engine.docker("import", str(_another_image(registry)), other)
        archive = tmp_path / "two.tar"
        try:
            engine.docker("save", "--output", str(archive), f"dreamscape-build/{COMPONENT}:{run.sha}", other)
            data = archive.read_bytes()
            run.artifacts.store[f"image-{COMPONENT}"] = {f"{COMPONENT}.tar": data}
            digest = hashlib.sha256(data).hexdigest()
            run.needs["security-scan"]["outputs"] = {"scanned": f"{COMPONENT}=sha256:{digest}"}  # as if it passed
            publish = run.job("publish")
        finally:
            engine.docker("rmi", "--force", other)
    assert publish.status == "failure"
    assert f"the archive of {COMPONENT} must hold exactly one tagged image" in publish.log
    assert not any(t.startswith(run.sha) for t in tags(registry, f"dreamscape/{COMPONENT}"))


def test_an_image_for_another_platform_is_refused(workflow, registry, tools) -> None:
    """build-test runs the source's code: an image it built for another platform than planned is not pushed."""
    with Run(workflow, registry, tools, tree()) as run:
        _, scan = run.through_scan()
        assert scan.status == "success", scan.log
        run.needs["resolve"]["outputs"]["platform"] = "linux/arm64"
        result = run.job("publish")
    assert result.status == "failure"
    assert f"the image of {COMPONENT} is built for linux/amd64, the environment runs linux/arm64" in result.log
    assert not [tag for tag in tags(registry, f"dreamscape/{COMPONENT}") if tag.startswith(run.sha)]


def test_an_existing_tag_is_never_replaced(workflow, registry, tools) -> None:
    with Run(workflow, registry, tools, tree()) as run:
        _, scan = run.through_scan()
        assert scan.status == "success", scan.log
        taken = f"{registry.host}/dreamscape/{COMPONENT}:{run.sha}-linux-amd64-1000001.1"
        engine.docker("import", str(_another_image(registry)), taken)
        engine.docker("push", "--quiet", taken)
        before, _ = manifest(registry, f"dreamscape/{COMPONENT}", taken.rsplit(":", 1)[1])
        publish = run.job("publish")
    assert publish.status == "failure"
    assert f"{taken} already exists; it is never replaced" in publish.log
    after, _ = manifest(registry, f"dreamscape/{COMPONENT}", taken.rsplit(":", 1)[1])
    assert after == before


def _another_image(registry: engine.Registry) -> Path:
    """A one-file root filesystem: some other image that already holds a tag."""
    folder = registry.directory / "another"
    folder.mkdir(exist_ok=True)
    (folder / "other").write_text("another image\n")
    archive = folder.with_suffix(".tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(folder / "other", arcname="other")
    return archive


# --- newest wins ------------------------------------------------------------------------------------------


def _deploy(run: Run) -> JobResult:
    run.needs.setdefault("publish", {"result": "success", "outputs": {"images": f"{COMPONENT}=x"}})
    return run.job("deploy")


def test_an_automatic_run_whose_commit_is_no_longer_the_head_deploys_nothing(workflow, registry, tools) -> None:
    with Run(workflow, registry, tools, tree()) as run:
        assert run.resolve().status == "success"
        newer = sha_of("a newer commit on main")
        run.api.branch_heads[(SOURCE.lower(), "main")] = newer
        result = _deploy(run)
    assert result.status == "success", result.log
    assert result.outputs["superseded"] == newer
    [deploy] = [s for s in result.steps if s.name.startswith("Deploy to")]
    assert not deploy.ran
    assert f"main is at {newer} now" in result.log


def test_a_manual_run_may_deploy_an_older_commit_and_says_so(workflow, registry, tools) -> None:
    with Run(workflow, registry, tools, tree(), event="manual") as run:
        assert run.resolve().status == "success"
        newer = sha_of("a newer commit on main, manual")
        run.api.branch_heads[(SOURCE.lower(), "main")] = newer
        result = _deploy(run)
    assert result.step("newest").outputs == {"superseded": ""}
    assert f"this manual run deploys {run.sha} on purpose" in result.log
    [deploy] = [s for s in result.steps if s.name.startswith("Deploy to")]
    assert deploy.ran  # it went on to the deploy (which has no VM to reach here)


def test_the_head_is_read_with_the_pipeline_credential_when_the_deploy_starts(workflow, registry, tools) -> None:
    with Run(workflow, registry, tools, tree()) as run:
        assert run.resolve().status == "success"
        _deploy(run)
        [request] = run.api.requests_for("git-ref")
    assert request.path == f"/repos/{SOURCE}/git/ref/heads/main"
    assert request.token == DISPATCH_TOKEN
    deploy = workflow["jobs"]["deploy"]
    assert [s.get("id") for s in deploy["steps"]].index("newest") < len(deploy["steps"]) - 1
    assert "concurrency" in deploy  # the check runs once the job holds the environment's slot


# --- what each tier holds, pinned ---------------------------------------------------------------------------


def _secrets_named(job: dict[str, Any]) -> set[str]:
    return set(re.findall(r"secrets\.(\w+)", json.dumps(job)))


def test_each_job_holds_only_what_its_tier_allows(plan_of) -> None:
    """The shipped production pipeline (GitHub's registry), pinned as literals."""
    jobs = central_document(plan_of(STACK))["jobs"]
    assert central.TIERS == {
        "resolve": "gate",
        "build-test": "untrusted",
        "security-scan": "gate",
        "publish": "gate",
        "deploy": "deploy",
        "report": "gate",
    }
    assert {job_id: job["permissions"] for job_id, job in jobs.items()} == {
        "resolve": {},
        "build-test": {},
        "security-scan": {"contents": "read"},
        "publish": {"contents": "read", "packages": "write"},
        # id-token: the job's own GitHub OIDC token, exchanged for the OCI session token that
        # opens its bastion session (ociDeployAuth: workloadIdentity).
        "deploy": {"contents": "read", "id-token": "write", "packages": "read"},
        "report": {"contents": "read"},  # the checkout of ci/ from the infra repository
    }
    # Only the deploy job may ask for an OIDC token, and only it holds the OCI credential.
    assert [j for j, job in jobs.items() if "id-token" in job["permissions"]] == ["deploy"]
    assert [j for j, job in jobs.items() if "OCI_DEPLOY_CREDENTIAL" in json.dumps(job)] == ["deploy"]
    assert _secrets_named(jobs["build-test"]) == set()
    assert "github.token" not in json.dumps(jobs["build-test"])
    assert _secrets_named(jobs["publish"]) == {"GITHUB_TOKEN"}
    assert _secrets_named(jobs["security-scan"]) == set()
    # Only build-test runs the source's commands and Dockerfile.
    runs_source = [j for j, job in jobs.items() if "Build" in {s.get("name") for s in job["steps"]}]
    assert runs_source == ["build-test"]


def test_no_job_reads_a_cache_that_the_untrusted_tier_could_write(plan_of) -> None:
    workflow = central_document(plan_of(STACK))
    for job_id, job in workflow["jobs"].items():
        for step in job["steps"]:
            uses = step.get("uses", "")
            assert not uses.startswith("actions/cache"), job_id
            if uses.startswith("aquasecurity/trivy-action"):
                assert step["with"]["cache"] == "false", job_id
            assert "setup-buildx" not in uses  # its builder cache lives in the untrusted job only
    scan = workflow["jobs"]["security-scan"]
    images = next(s for s in scan["steps"] if s.get("id") == "images")
    assert images["env"]["TRIVY_CACHE_DIR"] == "${{ github.workspace }}/.cache/trivy"


# --- warm builds --------------------------------------------------------------------------------------


def fresh_runner(run: Run) -> None:
    """What a new GitHub runner has of earlier runs: nothing. The run's images, the cache tags
    publish pushed and the engine's build cache go, so whatever the next build reuses came from
    the registry."""
    cache = f"{run.settings.registry}/cache/"
    mine = set()
    for line in engine.docker("images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}").splitlines():
        repository, tag, image = line.split()
        if run.sha in tag or repository.startswith(cache):
            # An image the cache tag moved away from has no tag left: its id names it.
            mine.add(image if tag == "<none>" else f"{repository}:{tag}")
    if mine:
        engine.docker("rmi", "--force", *sorted(mine))
    engine.docker("builder", "prune", "--all", "--force")


def cache_digest(registry: engine.Registry, environment: str) -> str | None:
    try:
        return manifest(registry, f"dreamscape/cache/{COMPONENT}", environment)[0]
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def test_publish_leaves_the_layer_cache_the_next_build_of_its_environment_reads(workflow, registry, tools) -> None:
    with Run(workflow, registry, tools, tree("warm")) as first:
        first.through_scan()
        publish = first.job("publish")
        assert publish.status == "success", publish.log
        fresh_runner(first)
    [pair] = publish.outputs["images"].split()
    # The cache is the published image itself, under the environment's cache tag.
    assert pair.endswith("@" + cache_digest(registry, "production"))
    with Run(workflow, registry, tools, tree("warm")) as second:
        assert second.resolve().status == "success"
        build = second.build()
        fresh_runner(second)
    assert build.status == "success", build.log
    cache = f"{registry.host}/dreamscape/cache/{COMPONENT}:production"
    assert f"importing cache manifest from {cache}" in build.log
    # The layer comes from the registry (pulled), not from anything left on the runner.
    assert re.search(
        r"\[1/1\] COPY \. /app/\n#\d+ pulling sha256:[0-9a-f]{64}( [0-9.]+s)? done\n#\d+ CACHED", build.log
    ), build.log
    # The same tree on a fresh runner without that cache (dev has none) builds cold.
    with Run(workflow, registry, tools, tree("warm"), branch="feature/x", environment="dev") as cold:
        assert cold.resolve().status == "success"
        build = cold.build()
        fresh_runner(cold)
    assert build.status == "success", build.log
    assert re.search(r"\[1/1\] COPY \. /app/\s*\n#\d+ DONE", build.log), build.log


def test_only_a_deploying_run_writes_the_cache_and_each_environment_has_its_own(workflow, registry, tools) -> None:
    with Run(workflow, registry, tools, tree("x")) as deploying:
        deploying.through_scan()
        assert deploying.job("publish").status == "success"
        fresh_runner(deploying)
    production = cache_digest(registry, "production")
    dev_before = cache_digest(registry, "dev")
    with Run(workflow, registry, tools, tree("y"), branch="feature/x", environment="dev") as feature:
        build, _ = feature.through_scan()
        assert feature.job("publish").status == "skipped"
        fresh_runner(feature)
    # A feature branch's build reads dev's cache, never production's, and writes none.
    assert f"/dreamscape/cache/{COMPONENT}:dev" in build.log
    assert f"cache/{COMPONENT}:production" not in build.log
    assert (cache_digest(registry, "production"), cache_digest(registry, "dev")) == (production, dev_before)


def test_the_source_travels_as_a_short_lived_archive_of_this_run(workflow, registry, tools) -> None:
    with Run(workflow, registry, tools, tree()) as run:
        assert run.resolve().status == "success"
    pipeline, checkout = run.artifacts.called("actions/checkout")
    assert "repository" not in pipeline and "token" not in pipeline  # the infra repository's own code
    assert checkout["token"] == DISPATCH_TOKEN and checkout["persist-credentials"] is False
    [upload] = run.artifacts.called("actions/upload-artifact")
    assert (upload["name"], upload["retention-days"]) == ("source", 1)
    archive = run.artifacts.store["source"]["source.tar.gz"]
    listing = subprocess.run(["tar", "-tz"], input=archive, capture_output=True, check=True).stdout.decode()
    assert f"./{COMPONENT}/Dockerfile" in listing.split()
    assert not [line for line in listing.split() if line.startswith("./.git/")]
    # Only the source: the pipeline's code and data, checked out beside it, stay out.
    assert not [line for line in listing.split() if line.startswith(("./ci/", "./.github/"))]
