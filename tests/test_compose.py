"""Each stack's compose file: written into the infra repository, valid compose, one service per component."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from components.environment import compose, deploy_program
from components.settings import SourceRepository
from tests.central_support import rendered_file, settings_of
from tests.conftest import require_tool

STACKS = ("dev", "staging", "production")
IMAGE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*):\?[^}]+\}$")


def deployable_components(repositories: tuple[SourceRepository, ...]):
    return [c for r in repositories if r.deployable for c in r.components]


@pytest.mark.parametrize("stack", STACKS)
def test_each_stack_writes_its_own_compose_file(plan_of, stack: str) -> None:
    plan = plan_of(stack)
    resource, content = rendered_file(plan, compose.path(stack))
    assert resource.plain("repository") == "dreamscape-infra"
    assert resource.plain("branch") == "main"
    assert resource.plain("overwriteOnCreate") is True
    others = [compose.path(s) for s in STACKS if s != stack]
    assert not [r for r in plan.of_type(resource.type) if r.plain("file") in others]
    settings = settings_of(stack)
    assert content == compose.render(settings.source_repositories, settings.edge, settings.accessories)
    assert plan.outputs["composeFile"] == f"dreamscape-infra@main:deploy/compose.{stack}.yml"


@pytest.mark.parametrize("stack", STACKS)
def test_the_compose_spec_schema_accepts_it(plan_of, stack: str, tmp_path: Path) -> None:
    checker = require_tool("check-jsonschema", "PyPI check-jsonschema (requirements-dev.txt)")
    path = tmp_path / "compose.yml"
    path.write_text(rendered_file(plan_of(stack), compose.path(stack))[1])
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_would_catch_a_broken_file(tmp_path: Path) -> None:
    checker = require_tool("check-jsonschema", "PyPI check-jsonschema (requirements-dev.txt)")
    settings = settings_of("dev")
    document = compose.document(settings.source_repositories, accessories=settings.accessories)
    document["services"]["auth-service"]["restart_policy"] = "always"  # no such key in a service
    path = tmp_path / "compose.yml"
    path.write_text(yaml.safe_dump(document))
    result = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True)
    assert result.returncode == 1


def test_one_service_per_deployable_component() -> None:
    settings = settings_of("production")
    services = compose.document(settings.source_repositories, accessories=settings.accessories)["services"]
    components = deployable_components(settings.source_repositories)
    assert list(services) == [c.name for c in components] + ["postgres"]
    for component in components:
        service = services[component.name]
        variable = IMAGE.match(service["image"])
        assert variable and variable.group(1) == deploy_program.image_variable(component.name)
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"] == compose.health_test(component.port, component.health_path)
        assert service["healthcheck"]["test"][-1] == f"http://127.0.0.1:{component.port}{component.health_path}"
        if component.host_port is None:
            assert "ports" not in service
        else:
            assert service["ports"] == [f"{component.host_port}:{component.port}"]
    assert not {"unit", "integration", "e2e", "site"} & set(services)


def test_a_config_without_deployable_components_is_refused() -> None:
    settings = settings_of("dev")
    with pytest.raises(ValueError, match="no deployable component"):
        compose.document(tuple(r for r in settings.source_repositories if not r.deployable))


@pytest.mark.parametrize(
    ("component", "variable"),
    [("auth-service", "AUTH_SERVICE_IMAGE"), ("web-client", "WEB_CLIENT_IMAGE"), ("9lives", "_9LIVES_IMAGE")],
)
def test_image_variable(component: str, variable: str) -> None:
    assert deploy_program.image_variable(component) == variable


@pytest.mark.parametrize("bad", ["", "Auth", "a_b", "a b", "-a", "a" * 64, "$(id)"])
def test_image_variable_refuses_what_is_no_component(bad: str) -> None:
    with pytest.raises(ValueError, match="not a component name"):
        deploy_program.image_variable(bad)


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = 200 if self.path == "/health" else 500
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def health_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def probe(tmp_path: Path) -> Callable[[list[str]], list[str]]:
    """The health test as the container runs it: this machine's busybox-static (what the VM
    mounts) at a path of the same name as the container's."""
    require_tool(compose.PROBE_SOURCE, "busybox-static")
    mounted = tmp_path / Path(compose.PROBE).name
    shutil.copy2(compose.PROBE_SOURCE, mounted)

    def argv(test: list[str]) -> list[str]:
        assert test[:2] == ["CMD", compose.PROBE]
        return [str(mounted), *test[2:]]

    return argv


@pytest.mark.parametrize(("path", "healthy"), [("/health", True), ("/broken", False)])
def test_the_health_check_follows_the_answer(health_server: int, probe, path: str, healthy: bool) -> None:
    result = subprocess.run(probe(compose.health_test(health_server, path)), capture_output=True, timeout=30)
    assert (result.returncode == 0) is healthy, result.stderr


def test_the_health_check_fails_when_nothing_listens(probe) -> None:
    assert subprocess.run(probe(compose.health_test(1, "/health")), capture_output=True, timeout=30).returncode != 0


def test_every_component_gets_the_probe_read_only_and_no_client_of_its_image() -> None:
    document = compose.document([auth_service_with()])
    for service in document["services"].values():
        assert service["volumes"][0] == {
            "type": "bind",
            "source": "/bin/busybox",
            "target": "/run/dreamscape/busybox",
            "read_only": True,
        }
        assert service["healthcheck"]["test"][:3] == ["CMD", "/run/dreamscape/busybox", "wget"]


def seconds(duration: str) -> float:
    value = re.fullmatch(r"(\d+)(ms|s)", duration)
    assert value, duration
    return int(value.group(1)) / (1000 if value.group(2) == "ms" else 1)


def test_health_is_probed_every_second_while_a_service_starts(plan_of) -> None:
    """Docker's first probe comes one `start_interval` after start (only while `start_period`
    runs), else one `interval`: production must be seen healthy well within the shortest
    health wait the program accepts, or that wait fails every healthy release."""
    _, content = rendered_file(plan_of("production"), compose.path("production"))
    for name, service in yaml.safe_load(content)["services"].items():
        health = service["healthcheck"]
        assert (health["start_interval"], health["start_period"]) == ("1s", "30s"), name
        assert (health["interval"], health["timeout"], health["retries"]) == ("10s", "5s", 3), name
        first_probe = seconds(health["start_interval"])
        assert seconds(health["start_period"]) > first_probe
        # Even a first probe that runs to its timeout ends inside the shortest wait.
        assert first_probe + seconds(health["timeout"]) < deploy_program.WAIT_TIMEOUT.low


# --- the edge: a domain for HTTPS -----------------------------------------------------------------

DOMAIN_EDGE = {"domain": "staging.dreamscape.example", "acmeEmail": "ops@dreamscape.example"}


def test_a_stack_with_a_domain_sends_it_to_the_edge_and_uses_https(run_with, tmp_path: Path) -> None:
    plan = run_with("staging", edge=DOMAIN_EDGE)
    _, content = rendered_file(plan, compose.path("staging"))
    document = yaml.safe_load(content)
    assert document[deploy_program.EDGE_EXTENSION] == {
        "domain": "staging.dreamscape.example",
        "acmeDirectory": "https://acme-v02.api.letsencrypt.org/directory",
        "acmeEmail": "ops@dreamscape.example",
    }
    assert plan.outputs["url"] == "https://staging.dreamscape.example"
    variables = {
        r.plain("variableName"): r.plain("value") for r in plan.of_type("github:index/actionsVariable:ActionsVariable")
    }
    assert variables["DEPLOY_URL_STAGING"] == "https://staging.dreamscape.example"
    # Still a compose file: the spec allows top-level `x-` keys.
    checker = require_tool("check-jsonschema", "PyPI check-jsonschema (requirements-dev.txt)")
    path = tmp_path / "compose.yml"
    path.write_text(content)
    result = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("stack", STACKS)
def test_without_a_domain_the_environment_is_plain_http_on_its_address(plan_of, stack: str) -> None:
    plan = plan_of(stack)
    _, content = rendered_file(plan, compose.path(stack))
    assert deploy_program.EDGE_EXTENSION not in yaml.safe_load(content)
    assert plan.outputs["url"] == f"http://{plan.outputs['host']}"


def test_the_acme_directory_can_be_another_ca(run_with) -> None:
    directory = "https://acme-staging-v02.api.letsencrypt.org/directory"
    plan = run_with("staging", edge={**DOMAIN_EDGE, "acmeDirectory": directory})
    document = yaml.safe_load(rendered_file(plan, compose.path("staging"))[1])
    assert document[deploy_program.EDGE_EXTENSION]["acmeDirectory"] == directory


# --- configuration and volumes per component ---------------------------------------------------------


def auth_service_with(**changes) -> SourceRepository:
    settings = settings_of("dev")
    [services] = [r for r in settings.source_repositories if r.name == "dreamscape-services"]
    # Without the shipped accessory and secrets, which have their own tests below.
    plain = [dataclasses.replace(c, secrets=(), accessories=()) for c in services.components]
    components = tuple(dataclasses.replace(c, **changes) if c.name == "auth-service" else c for c in plain)
    return dataclasses.replace(services, components=components)


def test_a_components_variables_are_its_environment_with_dollar_signs_kept_literal() -> None:
    repository = auth_service_with(env=(("FEATURE_FLAGS", "a,b"), ("GREETING", "costs $5 or ${NOT_A_VARIABLE}")))
    service = compose.document([repository])["services"]["auth-service"]
    assert service["environment"] == {
        "PORT": "3001",
        "FEATURE_FLAGS": "a,b",
        "GREETING": "costs $$5 or $${NOT_A_VARIABLE}",
    }


def test_a_components_volumes_are_named_after_it() -> None:
    repository = auth_service_with(volumes=(("data", "/var/lib/auth"), ("uploads", "/srv/uploads")))
    document = compose.document([repository])
    assert document["services"]["auth-service"]["volumes"] == [
        compose.probe_mount(),
        "auth-service-data:/var/lib/auth",
        "auth-service-uploads:/srv/uploads",
    ]
    assert document["volumes"] == {"auth-service-data": {}, "auth-service-uploads": {}}
    assert document["services"]["user-service"]["volumes"] == [compose.probe_mount()]


def test_the_stack_file_overrides_a_components_variables(run_with, stack_config) -> None:
    repositories = stack_config("staging")["sourceRepositories"]
    for repository in repositories:
        for component in repository["components"]:
            if component["name"] == "auth-service":
                component["env"] = {"LOG_LEVEL": "info", "REGION_NAME": "eu"}
            if component["name"] == "user-service":
                component["env"] = {"LOG_LEVEL": "info"}
    plan = run_with("staging", sourceRepositories=repositories, componentEnv={"auth-service": {"LOG_LEVEL": "debug"}})
    document = yaml.safe_load(rendered_file(plan, compose.path("staging"))[1])

    def plain(service: str) -> dict[str, str]:
        environment = document["services"][service]["environment"]
        return {k: v for k, v in environment.items() if not k.endswith("_FILE")}

    assert plain("auth-service") == {"PORT": "3001", "LOG_LEVEL": "debug", "REGION_NAME": "eu"}
    assert plain("user-service") == {"PORT": "3002", "LOG_LEVEL": "info"}
