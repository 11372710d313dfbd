"""The docker stand-in of the deploy tests refuses what docker refuses.

A stand-in that accepted anything would let the deploy program call docker wrongly and still
pass; these run it directly (as the e2e tests' deploy user would) on calls docker rejects.
"""

from __future__ import annotations

import importlib.resources
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import conftest
from tests.harness import sshd

pytestmark = pytest.mark.e2e

HARNESS = Path(sshd.__file__).parent


@pytest.fixture
def docker(tmp_path: Path):
    probe = subprocess.run(
        [sshd.SYSTEM_PYTHON, "-I", "-c", "import yaml, jsonschema"], capture_output=True, check=False, timeout=30
    )
    if probe.returncode != 0:
        message = "the docker stand-in needs /usr/bin/python3 with python3-yaml and python3-jsonschema"
        if conftest.IN_CI:
            pytest.fail(message + " - CI=true requires it")
        pytest.skip(message)
    (tmp_path / "bin").mkdir()
    data = tmp_path / "docker-standin"
    data.mkdir()
    shutil.copyfile(HARNESS / "docker_standin.py", tmp_path / "bin" / "docker")
    (tmp_path / "bin" / "docker").chmod(0o755)
    schema = importlib.resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    (data / "compose-spec.json").write_text(schema.read_text())

    def run(*args: str, stdin: str = "", compose: str | None = None, env_file: str = "") -> tuple[int, str]:
        argv = list(args)
        if compose is not None:
            (tmp_path / "compose.yaml").write_text(compose)
            (tmp_path / ".env").write_text(env_file)
            argv = ["compose", "-p", "t", "-f", str(tmp_path / "compose.yaml"), "--env-file", str(tmp_path / ".env")]
            argv += list(args)
        result = subprocess.run(
            [str(tmp_path / "bin" / "docker"), *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            check=False,
        )
        return result.returncode, result.stdout + result.stderr

    run.calls = lambda: [json.loads(line) for line in (data / "calls.jsonl").read_text().splitlines()]
    return run


GOOD = "services:\n  web:\n    image: ${WEB_IMAGE:?web has no image}\n"


def test_unknown_commands_and_flags_fail_as_in_docker(docker) -> None:
    assert docker("frobnicate") == (1, "docker: 'frobnicate' is not a docker command.\nSee 'docker --help'\n")
    assert docker("compose", "frobnicate") == (1, 'unknown docker command: "compose frobnicate"\n')
    code, output = docker("compose", "--bogus", "config")
    assert code == 1 and "unknown flag: --bogus" in output
    code, output = docker("up", "--detach", "--wait", "--bogus", compose=GOOD, env_file="WEB_IMAGE=r.io/o/w:1\n")
    assert code == 1 and "unknown flag: --bogus" in output
    code, output = docker("logs", compose=GOOD)
    assert code == 99 and "not modeled" in output
    assert [c["argv"][0] for c in docker.calls()] == ["frobnicate", "compose", "compose", "compose", "compose"]


def test_login_takes_the_password_on_stdin_only(docker, tmp_path: Path) -> None:
    code, output = docker("login", "-u", "u", "-p", "s3cret", "ghcr.io")
    assert code == 99, "a password on the command line fails the test that caused it"
    code, output = docker("login", "-u", "u", "ghcr.io")
    assert code == 1 and "Cannot perform an interactive login from a non TTY device" in output
    code, output = docker(
        "--config", str(tmp_path / "auth"), "login", "-u", "u", "--password-stdin", "ghcr.io", stdin="tok\n"
    )
    assert (code, output) == (0, "Login Succeeded\n")
    assert json.loads((tmp_path / "auth" / "config.json").read_text()) == {"auths": {"ghcr.io": {"auth": "dTp0b2s="}}}
    assert docker.calls()[-1]["stdin"] == "tok\n"


@pytest.mark.parametrize(
    ("compose", "env_file", "message"),
    [
        ("services:\n  web:\n    image: r.io/o/w:1\n    bogus: 1\n", "", "'bogus' was unexpected"),
        ("services:\n  web:\n    image: r.io/o/w:1\n    ports: 80\n", "", "ports"),
        (GOOD, "", "required variable WEB_IMAGE is missing a value: web has no image"),
        (GOOD, "WEB IMAGE=x\n", "unexpected character in variable name 'WEB IMAGE'"),
        ("services:\n  web:\n    image: ${WEB_IMAGE\n", "", "invalid interpolation format"),
        ("services:\n  web:\n    restart: always\n", "", "neither an image nor a build context"),
        ("services: {}\n", "", "no service selected"),
        ("services: [\n", "", "yaml:"),
    ],
)
def test_compose_config_refuses_what_compose_refuses(docker, compose: str, env_file: str, message: str) -> None:
    code, output = docker("config", "--format", "json", compose=compose, env_file=env_file)
    assert code == 1
    assert message in output


def test_compose_config_interpolates_normalizes_and_escapes_dollars(docker, tmp_path: Path) -> None:
    compose = GOOD + "    environment:\n      PRICE: $$5\n      MODE: ${MODE:-prod}\n"
    code, output = docker("config", "--format", "json", compose=compose, env_file="WEB_IMAGE=r.io/o/w:1\n")
    assert code == 0, output
    model = json.loads(output)
    assert model["name"] == "t"
    assert model["services"]["web"] == {
        "image": "r.io/o/w:1",
        "environment": {"PRICE": "$$5", "MODE": "prod"},
        "networks": {"default": None},
    }
    assert model["networks"] == {"default": {"name": "t_default"}}
    # The printed model is a compose file that reads back as itself.
    again = docker("config", "--format", "json", compose=output, env_file="")
    assert again == (0, output)


def test_compose_config_without_interpolation_prints_the_variables(docker) -> None:
    compose = GOOD + "    environment:\n      PRICE: $$5\n"
    code, output = docker("config", "--no-interpolate", "--format", "json", compose=compose, env_file="")
    assert code == 0, output
    web = json.loads(output)["services"]["web"]
    assert web["image"] == "${WEB_IMAGE:?web has no image}"
    assert web["environment"] == {"PRICE": "$$5"}


TWO = "services:\n  web:\n    image: r.io/o/w:1\n{web}  api:\n    image: r.io/o/a:1\n{top}"


@pytest.mark.parametrize(
    ("web", "top", "dependencies"),
    [
        ("    depends_on: [api]\n", "", {"api": {"condition": "service_started", "required": True}}),
        (
            "    depends_on:\n      api: {condition: service_healthy}\n",
            "",
            {"api": {"condition": "service_healthy", "required": True}},
        ),
        (
            "    links: ['api:backend']\n",
            "",
            {"api": {"condition": "service_started", "restart": True, "required": True}},
        ),
        (
            "    network_mode: service:api\n",
            "",
            {"api": {"condition": "service_started", "restart": True, "required": True}},
        ),
        (
            "    volumes_from: ['api:ro']\n",
            "",
            {"api": {"condition": "service_started", "restart": False, "required": True}},
        ),
    ],
    ids=["short", "long", "links", "network-mode", "volumes-from"],
)
def test_compose_config_makes_every_dependency_a_depends_on_entry(docker, web: str, top: str, dependencies) -> None:
    code, output = docker("config", "--format", "json", compose=TWO.format(web=web, top=top))
    assert code == 0, output
    assert json.loads(output)["services"]["web"]["depends_on"] == dependencies


@pytest.mark.parametrize(
    ("web", "top", "message"),
    [
        ("    depends_on: [db]\n", "", 'service "web" depends on undefined service "db": invalid compose project'),
        ("    depends_on:\n      db: {condition: service_started, required: false}\n", "", "undefined service"),
        ("    links: [db]\n", "", 'service "web" depends on undefined service "db"'),
        ("    network_mode: service:db\n", "", 'service "web" depends on undefined service "db"'),
        ("    networks: [back]\n", "", 'service "web" refers to undefined network back'),
        ("    volumes: ['data:/data']\n", "", 'service "web" refers to undefined volume data'),
        ("    secrets: [key]\n", "", 'service "web" refers to undefined secret key'),
        ("    configs: [{source: conf, target: /c}]\n", "", 'service "web" refers to undefined config conf'),
    ],
    ids=["depends-on", "optional", "links", "network-mode", "network", "volume", "secret", "config"],
)
def test_a_model_that_refers_to_what_it_lacks_is_refused(docker, web: str, top: str, message: str) -> None:
    compose = TWO.format(web=web, top=top)
    for command in (("config", "--format", "json"), ("pull",), ("up", "--detach", "--wait")):
        code, output = docker(*command, compose=compose)
        assert (code, message in output) == (1, True), (command, output)
    code, output = docker("config", "--no-interpolate", "--format", "json", compose=compose)
    assert code == 0, "the model without interpolation is not checked for consistency, as in compose-go"


def test_resources_in_the_model_satisfy_the_references(docker) -> None:
    web = "    volumes: ['data:/data', './here:/here']\n    networks: [back]\n    secrets: [key]\n"
    top = "volumes:\n  data: {}\nnetworks:\n  back: {}\nsecrets:\n  key: {file: ./key}\n"
    code, output = docker("config", "--format", "json", compose=TWO.format(web=web, top=top))
    assert code == 0, output
    model = json.loads(output)
    assert model["volumes"] == {"data": {"name": "t_data"}}
    assert model["networks"] == {"default": {"name": "t_default"}, "back": {"name": "t_back"}}


def test_up_removes_orphans_only_when_asked(docker) -> None:
    both = TWO.format(web="", top="")
    only_web = GOOD.replace("${WEB_IMAGE:?web has no image}", "r.io/o/w:2")
    assert docker("up", "--detach", "--wait", compose=both)[0] == 0
    code, output = docker("up", "--detach", "--wait", compose=only_web)
    assert code == 0 and "api" not in output
    assert "t-api-1" in docker("ps", compose=only_web)[1], "without --remove-orphans the container stays"
    code, output = docker("up", "--detach", "--wait", "--remove-orphans", compose=only_web)
    assert code == 0 and "Container t-api-1 Removed" in output
    listed = docker("ps", compose=only_web)[1]
    assert "t-api-1" not in listed and "t-web-1\tr.io/o/w:2" in listed
