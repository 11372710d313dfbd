"""The environment's secrets for its containers, through the offline plan: which resource makes
each value, where the values go (one secret GitHub secret), and where they never go."""

from __future__ import annotations

import json

from components.environment import app_secrets, compose
from tests.central_support import rendered_file
from tests.conftest import copy_project
from tests.test_plan import plan_cli
from tools import offline
from tools import plan as plan_tool

SECRET = "github:index/actionsSecret:ActionsSecret"
PASSWORD = "random:index/randomPassword:RandomPassword"
STRIPE = "sk_live_51HfAkeValueForThePlanOnly0123"


def with_stripe(stack_config, stack: str = "staging") -> dict:
    """The shipped config plus a `config` secret that auth-service gets."""
    config = stack_config(stack)
    config["secrets"]["STRIPE_API_KEY"] = "config"
    config["sourceRepositories"][0]["components"][0]["secrets"] = ["JWT_SIGNING_KEY", "STRIPE_API_KEY"]
    return config


def test_generated_secrets_are_random_passwords_made_once_per_environment(plan_of) -> None:
    plan = plan_of("staging")
    made = {r.name: r for r in plan.of_type(PASSWORD)}
    assert sorted(made) == ["staging-secret-jwt-signing-key", "staging-secret-postgres-password"]
    for password in made.values():
        assert password.plain("length") == 48 and password.plain("special") is False


def test_every_value_travels_in_the_one_secret_the_deploy_job_reads(run_with, stack_config, tmp_path) -> None:
    config = with_stripe(stack_config)
    plan = run_with(
        "staging",
        secrets=config["secrets"],
        sourceRepositories=config["sourceRepositories"],
        secret={"secretValues": json.dumps({"STRIPE_API_KEY": STRIPE})},
    )
    [carrier] = [r for r in plan.of_type(SECRET) if r.plain("secretName") == "APP_SECRETS_STAGING"]
    assert offline.is_secret(carrier.inputs["value"])
    values = json.loads(carrier.plain("value"))
    assert sorted(values) == ["JWT_SIGNING_KEY", "POSTGRES_PASSWORD", "STRIPE_API_KEY"]
    assert values["STRIPE_API_KEY"] == STRIPE
    generated = offline._unwrap(plan.named(app_secrets.resource_name("staging", "JWT_SIGNING_KEY")).outputs["result"])
    assert values["JWT_SIGNING_KEY"] == generated
    assert plan.outputs["appSecrets"]["auth-service"] == ["JWT_SIGNING_KEY", "POSTGRES_PASSWORD", "STRIPE_API_KEY"]
    assert plan.outputs["appSecrets"]["postgres"] == ["POSTGRES_PASSWORD"]
    assert "gateway" not in plan.outputs["appSecrets"]
    file = rendered_file(plan, compose.path("staging"))[1]
    assert "STRIPE_API_KEY_FILE: /run/secrets/STRIPE_API_KEY" in file
    # No file the stack writes (the compose file, workflows, user_data) holds a value, nor
    # anything the plan shows: its JSON prints every input and output with secrets masked.
    written = plan_tool.render(plan, tmp_path)
    assert written and not [p for p in written if STRIPE in p.read_text() or generated in p.read_text()]
    shown = json.dumps(plan_tool.as_json(plan))
    assert STRIPE not in shown and generated not in shown


def test_a_config_secret_from_the_stack_file_is_planned_and_never_printed(tmp_path, stack_config) -> None:
    """As `pulumi config set --secret --path 'secretValues.STRIPE_API_KEY'` writes it."""
    project = copy_project(tmp_path)
    config = with_stripe(stack_config)
    stack_file = project / "Pulumi.staging.yaml"
    text = stack_file.read_text()
    text += "  dreamscape-infra:secrets: " + json.dumps(config["secrets"]) + "\n"
    text += "  dreamscape-infra:sourceRepositories: " + json.dumps(config["sourceRepositories"]) + "\n"
    text += "  dreamscape-infra:secretValues:\n    STRIPE_API_KEY:\n      secure: v1:c2VjcmV0:ZW5jcnlwdGVk\n"
    stack_file.write_text(text)
    values, secret_keys = offline.stack_config("staging", project)
    assert "dreamscape-infra:secretValues" in secret_keys
    assert "v1:c2VjcmV0" not in values["dreamscape-infra:secretValues"]
    result = plan_cli("--stack", "staging", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "v1:c2VjcmV0" not in result.stdout + result.stderr
    outputs = result.stdout.split("Outputs:\n")[1]
    assert "  appSecrets:\n    auth-service: JWT_SIGNING_KEY, POSTGRES_PASSWORD, STRIPE_API_KEY\n" in outputs
    assert "\n    user-service: JWT_SIGNING_KEY, POSTGRES_PASSWORD\n    postgres: POSTGRES_PASSWORD\n" in outputs


def test_a_plain_secret_value_in_a_stack_file_stops_the_plan(tmp_path) -> None:
    project = copy_project(tmp_path)
    stack_file = project / "Pulumi.staging.yaml"
    stack_file.write_text(
        stack_file.read_text() + "  dreamscape-infra:secretValues:\n    STRIPE_API_KEY: " + STRIPE + "\n"
    )
    result = plan_cli("--stack", "staging", cwd=project)
    assert result.returncode != 0
    assert "secretValues: set in plain text" in result.stdout + result.stderr
    assert STRIPE not in result.stdout + result.stderr


def test_the_plan_without_secrets_writes_an_empty_object(run_with, stack_config) -> None:
    config = stack_config("dev")
    for repository in config["sourceRepositories"]:
        for component in repository["components"]:
            component.pop("secrets", None)
            component.pop("accessories", None)
    plan = run_with("dev", secrets=None, accessories=None, sourceRepositories=config["sourceRepositories"])
    [carrier] = [r for r in plan.of_type(SECRET) if r.plain("secretName") == "APP_SECRETS_DEV"]
    assert carrier.plain("value") == "{}"
    assert plan.of_type(PASSWORD) == []
    assert plan.outputs["appSecrets"] == {}
