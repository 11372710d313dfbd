"""ci/publish.py against the real Docker engine and registries on 127.0.0.1.

The chain that feeds it (build, scan, publish, deploy) runs in test_central_tiers.py; here the
module meets what a registry can answer when it asks whether a tag exists. The answers the
test registries cannot give on demand (GitHub's `denied` for a package that does not exist yet,
a refused push of the layer cache) come from a `docker` wrapper in front of the real client
that gives them for that one command only (`docker_failing`).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ci import publish, scan
from components.workflows import central
from tests.central_support import settings_of, sha_of
from tests.conftest import ROOT
from tests.harness import engine
from tests.harness.workflow import RUNNER_PYTHON

COMPONENT = "auth-service"

pytestmark = pytest.mark.e2e


def workspace(images: engine.Engine, tmp_path: Path, registry: str, variant: str = "healthy") -> tuple[Path, str]:
    """A publish workspace: the data file naming `registry`, and one saved image archive of
    the engine's `variant`."""
    settings = settings_of("production", registry=registry)
    data = tmp_path / central.DATA_PATH
    data.parent.mkdir(parents=True)
    data.write_text(central.data_file(central.CentralArgs.from_settings(settings)))
    archive = tmp_path / scan.IMAGES_DIR / f"{COMPONENT}.tar"
    archive.parent.mkdir()
    engine.docker("save", "--output", str(archive), images.build(variant).local)
    return tmp_path, scan.sha256_of(archive)


def docker_failing(tmp_path: Path, fault: str) -> str:
    """A PATH whose `docker` runs `fault` (shell lines that may answer and exit) before the real
    client: registry answers the test registries cannot give on demand."""
    wrapper = tmp_path / "bin" / "docker"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\n{fault}\nexec {engine.DOCKER} "$@"\n')
    wrapper.chmod(0o755)
    return f"{wrapper.parent}:{os.environ['PATH']}"


def run_publish(root: Path, passed: str, sha: str, path: str | None = None):
    output = root / "output"
    output.write_text("")
    env = {
        "PATH": path or os.environ["PATH"],
        "HOME": str(root),
        "PYTHONPATH": str(ROOT),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_RUN_ID": "77",
        "GITHUB_RUN_ATTEMPT": "1",
        "COMPONENTS_JSON": json.dumps([COMPONENT]),
        "SHA": sha,
        "ENVIRONMENT": "production",
        "PLATFORM": "linux/amd64",
        "SCANNED_ARCHIVES": f"{COMPONENT}={passed}",
    }
    result = subprocess.run(
        [RUNNER_PYTHON, "-m", "ci.publish"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    return result, output.read_text()


def test_a_registry_that_refuses_the_question_stops_the_push(docker_engine, tmp_path) -> None:
    """No login for a registry that needs one: the engine cannot tell whether the tag exists."""
    registry = docker_engine.auth_registry
    root, passed = workspace(docker_engine, tmp_path, f"{registry.host}/dreamscape")
    result, outputs = run_publish(root, passed, sha_of("publish", "auth"))
    assert result.returncode == 1
    assert "::error title=Publish::could not tell whether" in result.stdout
    assert "no basic auth credentials" in result.stdout
    assert outputs == ""


def test_github_denied_for_a_new_package_is_taken_as_absent(docker_engine, tmp_path) -> None:
    registry = docker_engine.registry
    path = docker_failing(
        tmp_path, 'if [ "$1" = pull ]; then echo "Error response from daemon: denied: denied" >&2; exit 1; fi'
    )
    root, passed = workspace(docker_engine, tmp_path / "work", f"{registry.host}/dreamscape")
    sha = sha_of("publish", "denied")
    result, outputs = run_publish(root, passed, sha, path=path)
    assert result.returncode == 0, result.stdout + result.stderr
    [pair] = outputs.removeprefix("images=").split()
    assert pair.startswith(f"{COMPONENT}={registry.host}/dreamscape/{COMPONENT}@sha256:")
    # Without the wrapper, the real registry now answers that the tag exists: never replaced.
    again, _ = run_publish(root, passed, sha)
    assert again.returncode == 1
    tag = publish.tag_for(f"{registry.host}/dreamscape", COMPONENT, sha, "linux/amd64", "77.1")
    assert f"::error title=Publish::{tag} already exists; it is never replaced" in again.stdout


@pytest.mark.parametrize(
    ("scanned", "message"),
    [
        ("", "the archive of auth-service is not the one the scan passed"),
        (f"{COMPONENT}=sha256:{'0' * 64}", "the archive of auth-service is not the one the scan passed"),
    ],
)
def test_an_archive_the_scan_did_not_pass_is_never_loaded(docker_engine, tmp_path, scanned, message) -> None:
    root, _ = workspace(docker_engine, tmp_path, f"{docker_engine.registry.host}/dreamscape")
    result, outputs = run_publish(root, scanned.partition("=")[2], sha_of("publish", scanned))
    assert result.returncode == 1
    assert f"::error title=Publish::{message}" in result.stdout
    assert outputs == ""


def test_a_failed_cache_push_warns_and_publishes_all_the_same(docker_engine, tmp_path) -> None:
    """The layer cache only makes the next build warmer: a registry refusing it stops nothing."""
    registry = docker_engine.registry
    path = docker_failing(
        tmp_path,
        'case "$1 $3" in push\\ */cache/*)\n'
        '  echo "denied: requested access to the resource is denied" >&2; exit 1 ;;\n'
        "esac",
    )
    root, passed = workspace(docker_engine, tmp_path / "work", f"{registry.host}/dreamscape")
    result, outputs = run_publish(root, passed, sha_of("publish", "cache"), path=path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs.startswith(f"images={COMPONENT}={registry.host}/dreamscape/{COMPONENT}@sha256:")
    cache = f"{registry.host}/dreamscape/cache/{COMPONENT}:production"
    assert f"::warning title=Layer cache::could not push {cache}: denied" in result.stdout
