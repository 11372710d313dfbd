"""The offline plan as a user runs it: `python tools/plan.py --stack S [--json F] [--render-dir D]`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import settings as settings_module
from tests.conftest import ROOT, copy_project
from tests.test_settings import BAD, edit, raw
from tools import offline


def plan_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(cwd / "tools" / "plan.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("stack", ["dev", "staging", "production"])
def test_plan_of_each_stack(stack: str, tmp_path: Path) -> None:
    result = plan_cli("--stack", stack, "--json", str(tmp_path / "plan.json"), "--render-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"Offline plan of stack {stack}" in result.stdout
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["stack"] == stack
    assert data["outputs"]["environment"] == stack
    for resource in data["resources"]:
        assert set(resource) == {"type", "name", "parent", "inputs"}
    count = re.search(r"^(\d+) resources in (\d+) components$", result.stdout, re.MULTILINE)
    assert count, result.stdout
    custom = [r for r in offline.run(stack).resources if r.custom]
    assert int(count.group(1)) == len(custom)
    # Every resource of the JSON is in the printed tree, with its parent.
    for resource in data["resources"]:
        assert f"{resource['type']}  {resource['name']}  (parent: {resource['parent'] or 'stack'})" in result.stdout


def test_secure_values_never_printed(tmp_path: Path) -> None:
    result = plan_cli("--stack", "production", "--json", str(tmp_path / "plan.json"))
    assert result.returncode == 0, result.stderr
    stack_file = yaml.safe_load((ROOT / "Pulumi.production.yaml").read_text())
    ciphertext = stack_file["config"]["dreamscape-infra:dispatchToken"]["secure"]
    for text in (result.stdout, (tmp_path / "plan.json").read_text()):
        assert offline.PLACEHOLDER_PREFIX not in text
        assert ciphertext not in text


def test_secret_inputs_print_masked() -> None:
    plan = offline.run("production")
    config, secret_keys = offline.stack_config("production")
    assert "dreamscape-infra:dispatchToken" in secret_keys
    assert config["dreamscape-infra:dispatchToken"].startswith(offline.PLACEHOLDER_PREFIX)
    for resource in plan.resources:
        assert offline.PLACEHOLDER_PREFIX not in json.dumps(offline.masked(resource.inputs))


def test_unknown_stack_exits_2() -> None:
    result = plan_cli("--stack", "qa")
    assert result.returncode == 2
    assert "no stack file Pulumi.qa.yaml" in result.stderr


def write_stack(project: Path, stack: str, config: dict[str, Any]) -> None:
    """Write a full stack file that sets every key of `config` (plain values, secrets as secure:)."""
    original = yaml.safe_load((project / f"Pulumi.{stack}.yaml").read_text())["config"]
    doc = {k: v for k, v in original.items() if not k.startswith("dreamscape-infra:")}
    for key, value in config.items():
        doc[f"dreamscape-infra:{key}"] = value
    (project / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": doc}, sort_keys=False))


def test_every_bad_config_case_exits_2_with_its_message(tmp_path: Path) -> None:
    def run_case(index: int) -> tuple[str, subprocess.CompletedProcess, str]:
        what, stack, path, value, message = BAD[index]
        project = copy_project(tmp_path / f"case{index}")
        write_stack(project, stack, edit(raw(stack), path, value))
        return what, plan_cli("--stack", stack, cwd=project), message

    for i in range(len(BAD)):
        (tmp_path / f"case{i}").mkdir()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run_case, range(len(BAD))))
    for what, result, message in results:
        assert result.returncode == 2, (what, result.stdout, result.stderr)
        assert re.search(message, result.stderr), (what, result.stderr)
        assert "Traceback" not in result.stderr, what
        assert result.stderr.count("\n") == 1, (what, result.stderr)
        assert result.stdout == "", what


def test_second_stack_file_claiming_the_wiring_exits_2(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    dev = edit(raw("dev"), "wiringStack", "dev")
    dev["dispatchToken"] = dev["pipelineToken"] = {"secure": "v1:abc"}
    write_stack(project, "dev", dev)
    for stack in ("dev", "production"):
        result = plan_cli("--stack", stack, cwd=project)
        assert result.returncode == 2, result.stdout
        assert "stacks disagree on who owns the shared wiring" in result.stderr
        assert "Pulumi.dev.yaml says dev" in result.stderr


def test_overlapping_stack_networks_exit_2(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    staging = edit(raw("staging"), "oci.vcnCidr", "10.10.0.0/16")
    write_stack(project, "staging", edit(staging, "oci.subnetCidr", "10.10.2.0/24"))
    result = plan_cli("--stack", "dev", cwd=project)
    assert result.returncode == 2
    assert "oci.vcnCidr: 10.10.0.0/16 overlaps stack staging's 10.10.0.0/16" in result.stderr


def test_the_programs_warnings_open_the_plan(tmp_path: Path) -> None:
    """A warning the program logs (here: SSH open to the internet) is the plan's first news."""
    project = copy_project(tmp_path)
    write_stack(project, "dev", edit(raw("dev"), "oci.sshAllowedCidrs", ["0.0.0.0/0"]))
    result = plan_cli("--stack", "dev", cwd=project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Offline plan of stack dev")
    assert lines[2].startswith("warning: still at their example values")
    assert lines[3].startswith("warning: dev: SSH is open to 0.0.0.0/0 (oci.sshAllowedCidrs)")
    shipped = [line for line in plan_cli("--stack", "dev").stdout.splitlines() if line.startswith("warning:")]
    assert len(shipped) == 1, "the shipped dev stack warns of its example values only"


EXAMPLE_KEYS = {stack: ["oci.compartmentId", "oci.identityDomainUrl"] for stack in ("dev", "staging", "production")}
"""The shipped stack files' stand-ins for a tenancy's own values."""


@pytest.mark.parametrize("stack", ["dev", "staging", "production"])
def test_the_plan_of_the_shipped_files_opens_naming_every_example_value(stack: str) -> None:
    result = plan_cli("--stack", stack)
    assert result.returncode == 0, result.stderr
    listed = ", ".join(f"dreamscape-infra:{key}" for key in EXAMPLE_KEYS[stack])
    assert result.stdout.splitlines()[2] == (
        f"warning: still at their example values, which `pulumi up` refuses: {listed}"
    )


_RECORDING = offline.RecordingMonitor


class _Engine:
    """A resource monitor that is not the SDK's mock one: what the program sees under `pulumi up`
    (everything else of the offline run, its answers and records, stays)."""

    def __init__(self, mocks: offline.OfflineMocks) -> None:
        self._inner = _RECORDING(mocks)

    def __getattr__(self, name: str):
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


def outside_the_mock_engine(
    stack: str, config: dict | None = None, mocks: offline.OfflineMocks | None = None
) -> tuple[offline.Plan | None, offline.OfflineMocks]:
    mocks = mocks or offline.OfflineMocks()
    original = offline.RecordingMonitor
    offline.RecordingMonitor = lambda m: _Engine(m)  # type: ignore[assignment, misc]
    try:
        values, secret_keys = offline.stack_config(stack)
        return offline.run(stack, config={**values, **(config or {})}, secret_keys=secret_keys, mocks=mocks), mocks
    finally:
        offline.RecordingMonitor = original  # type: ignore[misc]


def test_the_real_engine_refuses_the_example_values_before_anything_is_registered() -> None:
    mocks = offline.OfflineMocks()
    with pytest.raises(settings_module.ConfigError) as refused:
        outside_the_mock_engine("production", mocks=mocks)
    assert mocks.created == {} and mocks.calls == []
    listed = ", ".join(f"dreamscape-infra:{key}" for key in EXAMPLE_KEYS["production"])
    assert str(refused.value).startswith(f"{listed}: still at the example values this repository ships")


def test_the_real_engine_plans_a_stack_with_values_of_its_own() -> None:
    oci = dict(raw("staging")["oci"])
    oci["compartmentId"] = "ocid1.compartment.oc1..aaaaaaaaacmestaging"
    oci["identityDomainUrl"] = "https://idcs-acmestaging.identity.oraclecloud.com"
    config = {"dreamscape-infra:oci": json.dumps(oci)}
    plan, _ = outside_the_mock_engine("staging", config)
    assert plan is not None and plan.of_type("oci:Core/instance:Instance")
    assert not [w for w in plan.warnings if "example" in w]
