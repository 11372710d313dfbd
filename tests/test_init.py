"""`make init` (tools/init.py): the stack files a new user's own values make, checked by the
program's own schema before anything is written, and planned with no example value left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_project
from tests.test_plan import plan_cli
from tools import init

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb9ZqWb5p1mVbq2YH0Qzq7z0bq3p3oQe2o8xgFq3l8G admin@acme"


def flags(*stacks: str) -> list[str]:
    args = [
        "--owner", "acme",
        "--infra-repository", "acme-infra",
        "--repository", "acme-api=services",
        "--component", "acme-api/api:3000:/health:public",
        "--component", "acme-api/worker:3001:/ready",
        "--repository", "acme-docs=docs",
        "--component", "acme-docs/site",
        "--region", "eu-frankfurt-1",
        "--admin-key", KEY,
        "--reviewer", "acme/release-managers",
    ]  # fmt: skip
    for stack in stacks:
        args += ["--stack", f"{stack}=ocid1.compartment.oc1..aaaaaaaaacme{stack}"]
        args += ["--identity-domain", f"{stack}=https://idcs-acme{stack}0.identity.oraclecloud.com"]
    return args


def files(project: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(project.glob("Pulumi*.yaml"))}


def test_init_with_flags_then_plan_leaves_no_example_value(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    result = subprocess.run(
        [sys.executable, "tools/init.py", *flags("production")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "removed Pulumi.dev.yaml" in result.stdout and "make plan STACK=production" in result.stdout
    assert set(files(project)) == {"Pulumi.yaml", "Pulumi.production.yaml"}
    planned = plan_cli("--stack", "production", cwd=project)
    assert planned.returncode == 0, planned.stderr
    assert "example" not in planned.stdout + planned.stderr
    assert "DREAMSCAPE" not in planned.stdout and "dreamscape-services" not in planned.stdout
    assert "acme-infra" in planned.stdout
    stack = yaml.safe_load((project / "Pulumi.production.yaml").read_text())["config"]
    assert stack["dreamscape-infra:oci"]["adminSshKeys"] == [KEY]
    assert stack["dreamscape-infra:protection"] == {"reviewers": ["acme/release-managers"]}


def test_three_stacks_share_the_allowance_and_each_plans(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    assert init.main(flags("dev", "staging", "production"), interactive=False, root=project) == 0
    for stack in ("dev", "staging", "production"):
        planned = plan_cli("--stack", stack, cwd=project)
        assert planned.returncode == 0, (stack, planned.stderr)
        assert "Within Oracle's Always Free allowance: $0.00/month." in planned.stdout
    owner = yaml.safe_load((project / "Pulumi.yaml").read_text())["config"]["dreamscape-infra:wiringStack"]
    assert owner == "production"


def test_a_missing_answer_without_a_terminal_is_named_and_nothing_is_written(tmp_path: Path, capsys) -> None:
    project = copy_project(tmp_path)
    before = files(project)
    args = [a for a in flags("production") if a not in ("--region", "eu-frankfurt-1")]
    assert init.main(args, interactive=False, root=project) == 2
    assert "--region is required" in capsys.readouterr().err
    assert files(project) == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--stack", "production=not-an-ocid"), "dreamscape-infra:oci.compartmentId: expected a compartment OCID"),
        (("--component", "acme-api/api"), "a services component is deployed: give its port"),
        (("--repository", "acme-api=lambda"), "the kind is one of services, frontend, tests, docs"),
        (("--stack", "qa=ocid1.compartment.oc1..aaaaaaaaqa"), "the environments are dev, staging, production"),
    ],
)
def test_a_bad_value_is_named_and_nothing_is_written(tmp_path: Path, capsys, change, message) -> None:
    project = copy_project(tmp_path)
    before = files(project)
    args = flags("production")
    flag, value = change
    if flag == "--stack" and value.startswith("production="):
        args[args.index("production=ocid1.compartment.oc1..aaaaaaaaacmeproduction")] = value
    elif flag == "--repository" and value.startswith("acme-api="):
        args[args.index("acme-api=services")] = value
    elif flag == "--component":
        args[args.index("acme-api/api:3000:/health:public")] = value
    else:
        args += [flag, value]
    assert init.main(args, interactive=False, root=project) == 2
    assert message in capsys.readouterr().err
    assert files(project) == before


def test_questions_on_a_terminal_fill_what_the_flags_leave_out(tmp_path: Path, monkeypatch) -> None:
    project = copy_project(tmp_path)
    answers = iter(
        [
            "acme",
            "acme-infra",
            "acme-web=frontend",
            "web:8080:/:public",
            "eu-frankfurt-1",
            "staging=ocid1.compartment.oc1..aaaaaaaaacmestaging",
            "https://idcs-acmestaging0.identity.oraclecloud.com",
        ]
    )
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert init.main([], interactive=True, root=project) == 0
    config = yaml.safe_load((project / "Pulumi.yaml").read_text())["config"]
    assert config["dreamscape-infra:wiringStack"] == "staging"
    [repository] = config["dreamscape-infra:sourceRepositories"]["value"]
    assert repository["components"] == [{"name": "web", "port": 8080, "healthPath": "/", "hostPort": 80}]
    assert plan_cli("--stack", "staging", cwd=project).returncode == 0


def test_a_stack_file_with_values_of_its_own_is_kept_unless_forced(tmp_path: Path, capsys) -> None:
    project = copy_project(tmp_path)
    assert init.main(flags("dev", "production"), interactive=False, root=project) == 0
    before = files(project)
    # dev now holds the user's own values: a second init without it must not delete it.
    assert init.main(flags("production"), interactive=False, root=project) == 2
    assert "Pulumi.dev.yaml holds values of its own" in capsys.readouterr().err
    assert files(project) == before
    assert init.main([*flags("production"), "--force"], interactive=False, root=project) == 0
    assert "Pulumi.dev.yaml" not in files(project)


def test_without_identity_domains_the_api_key_mode_is_written(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    args = flags("production")
    at = args.index("--identity-domain")
    del args[at : at + 2]
    args = [*args, "--api-key-email", "production=ci@acme.example"]
    assert init.main(args, interactive=False, root=project) == 0
    config = yaml.safe_load((project / "Pulumi.yaml").read_text())["config"]
    assert config["dreamscape-infra:ociDeployAuth"] == "apiKey"
    stack = yaml.safe_load((project / "Pulumi.production.yaml").read_text())["config"]
    assert stack["dreamscape-infra:oci"]["ciUserEmail"] == "ci@acme.example"
    assert "identityDomainUrl" not in stack["dreamscape-infra:oci"]
    assert plan_cli("--stack", "production", cwd=project).returncode == 0
