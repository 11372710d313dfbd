"""The deploy program's contract, read from the program itself: patterns, parsing, frames.

These run the program's own functions in-process (it loads as a module); the e2e tests run
it for real behind sshd.
"""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys

import pytest

from components import rules
from components.environment import deploy_program

PROGRAM = deploy_program.load_program()
SHA = "0123456789abcdef" * 4


def test_program_is_python_standard_library_only() -> None:
    text = deploy_program.program_text()
    assert text.startswith("#!/usr/bin/python3 -I\n"), "isolated mode: no PYTHON* variables, no user site"
    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported, "the parse found no imports at all"
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_program_never_uses_a_shell() -> None:
    tree = ast.parse(deploy_program.program_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    names = {getattr(c.func, "attr", getattr(c.func, "id", "")) for c in calls}
    assert "Popen" in names and "run" in names, "the scan must see the program's subprocess calls"
    assert not {"system", "popen", "eval", "exec", "getoutput", "getstatusoutput"} & names
    for call in calls:
        for keyword in call.keywords:
            assert not (keyword.arg == "shell" and getattr(keyword.value, "value", False)), ast.unparse(call)


def test_contract_agrees_with_the_pipeline() -> None:
    assert PROGRAM.COMPONENT_PATTERN == rules.COMPONENT_PATTERN
    assert PROGRAM.SETTINGS["DREAMSCAPE_DEPLOY_STATE_DIR"][0] == deploy_program.STATE_DIR
    codes = [e.code for e in deploy_program.EXIT_CODES]
    assert len(set(codes)) == len(codes) == 7
    assert 255 not in codes, "ssh itself exits 255"
    assert {e.name for e in deploy_program.EXIT_CODES if e.success} == {"DEPLOYED", "NO_CHANGE"}


def test_authorized_keys_line_forces_the_program_with_restrict() -> None:
    line = deploy_program.authorized_keys_line("ssh-ed25519 AAAAC3Nza key@host", "dreamscape-ci")
    assert line == 'restrict,command="/usr/local/sbin/dreamscape-deploy" ssh-ed25519 AAAAC3Nza dreamscape-ci'
    with pytest.raises(ValueError, match="ssh-ed25519"):
        deploy_program.authorized_keys_line("ssh-rsa AAAAB3 x", "c")


@pytest.mark.parametrize(
    ("component", "variable"),
    [
        ("auth-service", "AUTH_SERVICE_IMAGE"),
        ("web", "WEB_IMAGE"),
        ("a-b-c", "A_B_C_IMAGE"),
        ("3d-viewer", "_3D_VIEWER_IMAGE"),
    ],
)
def test_image_variable(component: str, variable: str) -> None:
    assert deploy_program.image_variable(component) == variable


def test_image_variable_is_a_valid_distinct_name_for_every_shape_of_component() -> None:
    corpus = ["a", "0", "a0", "0a", "a-b", "ab", "a-0", "a0-b", "x" * 63, "9-9", "abc-def-ghi"]
    variables = [deploy_program.image_variable(c) for c in corpus]
    assert len(set(variables)) == len(corpus)
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) for v in variables), variables
    with pytest.raises(ValueError, match="not a component name"):
        deploy_program.image_variable("Auth_Service")


GOOD_IMAGES = [
    f"ghcr.io/dreamscape/auth-service:{SHA}",
    "ghcr.io/dreamscape/auth-service:v1.2.3",
    "registry.example.com:5000/team/app_name:latest",
    "localhost:5000/app:1",
    "localhost/app:1",
    "registry:5000/app:1",
    f"ghcr.io/o/app@sha256:{SHA}",
    f"ghcr.io/o/app:v1@sha256:{SHA}",
    "ghcr.io/o/a.b__c-d/e---f:T_a.g-1",
]
BAD_IMAGES = [
    "auth-service:v1",  # no registry
    "docker.io/library/nginx",  # no tag nor digest
    "ghcr.io/o/app:v1;id",
    "ghcr.io/o/app:$(id)",
    "ghcr.io/o/app:`id`",
    "ghcr.io/o/app:v1 x",
    "ghcr.io/O/App:v1",  # uppercase path
    "ghcr.io/o/app:-v1",
    "ghcr.io/o/app:" + "t" * 129,
    f"ghcr.io/o/app@sha256:{SHA[:-1]}",
    f"ghcr.io/o/app@sha512:{SHA}",
    "ghcr.io//app:v1",
    "ghcr.io/o/app_:v1",
    "-oProxyCommand=x/app:v1",
    "ghcr.io/o/app:v1\n",
    "ghcr.io/o/app:v1\x00",
    "ghcr.io/o/аpp:v1",  # Cyrillic a
    "",
]


@pytest.mark.parametrize("image", GOOD_IMAGES)
def test_image_pattern_accepts(image: str) -> None:
    assert deploy_program.is_image(image)


@pytest.mark.parametrize("image", BAD_IMAGES)
def test_image_pattern_refuses(image: str) -> None:
    assert not deploy_program.is_image(image)


def test_image_pattern_means_the_same_to_bash() -> None:
    """IMAGE_PATTERN is a POSIX ERE (deploy_program.py says so): bash's `[[ =~ ]]` reads it the same way."""
    corpus = [i for i in GOOD_IMAGES + BAD_IMAGES if "\n" not in i and "\x00" not in i]
    script = 're=$1; shift; for x in "$@"; do if [[ $x =~ $re ]]; then echo 1; else echo 0; fi; done'
    result = subprocess.run(
        ["bash", "-c", script, "bash", deploy_program.IMAGE_PATTERN, *corpus],
        capture_output=True,
        text=True,
        env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=30,
    )
    bash_says = [line == "1" for line in result.stdout.split()]
    assert bash_says == [deploy_program.is_image(i) for i in corpus]
    assert any(bash_says) and not all(bash_says)


IMAGE = f"ghcr.io/dreamscape/auth-service:{SHA}"


@pytest.mark.parametrize(
    ("text", "name", "pairs"),
    [
        ("status", "status", ()),
        ("rollback", "rollback", ()),
        (f"deploy auth-service={IMAGE}", "deploy", (("auth-service", IMAGE),)),
        (
            f"deploy auth-service={IMAGE} web=ghcr.io/o/web:v2",
            "deploy",
            (("auth-service", IMAGE), ("web", "ghcr.io/o/web:v2")),
        ),
    ],
)
def test_parse_command_accepts(text: str, name: str, pairs: tuple) -> None:
    command = PROGRAM.parse_command(text)
    assert (command.name, command.pairs, command.settings) == (name, pairs, ())


@pytest.mark.parametrize(
    ("text", "settings_given"),
    [
        (
            f"deploy --lock-wait 0 --wait-timeout 10 --keep 2 auth-service={IMAGE}",
            {"lock_wait": 0, "wait_timeout": 10, "keep": 2},
        ),
        (f"deploy --keep 50 --lock-wait 3600 auth-service={IMAGE}", {"keep": 50, "lock_wait": 3600}),
        (f"deploy --wait-timeout 3600 auth-service={IMAGE}", {"wait_timeout": 3600}),
        ("rollback --lock-wait 5 --wait-timeout 600", {"lock_wait": 5, "wait_timeout": 600}),
        ("rollback --wait-timeout 11", {"wait_timeout": 11}),
    ],
)
def test_parse_command_takes_options_before_the_pairs(text: str, settings_given: dict) -> None:
    command = PROGRAM.parse_command(text)
    assert dict(command.settings) == settings_given
    assert command.pairs == ((("auth-service", IMAGE),) if command.name == "deploy" else ())
    assert "--" not in command.describe(), "the lock holder's description names the pairs only"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no command given"),
        ("", "no command given"),
        ("id", "unknown command 'id'"),
        ("bash", "unknown command 'bash'"),
        ("/usr/lib/openssh/sftp-server", "unknown command"),
        ("scp -t /tmp", "unknown command 'scp'"),
        ("status now", "status takes no arguments"),
        ("rollback 000001-abc", "rollback takes no arguments"),
        ("deploy", "at least one"),
        ("deploy  auth-service=" + IMAGE, "doubled spaces"),
        ("deploy auth-service=" + IMAGE + " ", "trailing"),
        ("deploy\tauth-service=" + IMAGE, "printable ASCII"),
        ("deploy auth-service=" + IMAGE + "\nid", "printable ASCII"),
        ("deploy auth-service", "is not <component>=<image>"),
        ("deploy Auth=" + IMAGE, "not a component name"),
        ("deploy -rf=" + IMAGE, "not a component name"),
        ("deploy auth-service=" + IMAGE + ";id", "not an image reference"),
        ("deploy auth-service=$(id)", "not an image reference"),
        (f"deploy auth-service={IMAGE} auth-service={IMAGE}", "given twice"),
        ("deploy " + " ".join(f"c{i}={IMAGE}" for i in range(65)), "at most 64"),
        ("deploy " + "a" * 9000, "longer than 8192"),
        ("deploy a=ghcr.io/o/\udcffx:v1", "printable ASCII"),
        (f"deploy --keep 1 auth-service={IMAGE}", "--keep '1': expected a whole number of releases from 2 to 50"),
        (f"deploy --keep 51 auth-service={IMAGE}", "from 2 to 50"),
        (f"deploy --wait-timeout 9 auth-service={IMAGE}", "--wait-timeout '9': expected a whole number of seconds"),
        (f"deploy --wait-timeout 3601 auth-service={IMAGE}", "from 10 to 3600"),
        (f"deploy --lock-wait 3601 auth-service={IMAGE}", "--lock-wait '3601': expected"),
        (f"deploy --lock-wait -1 auth-service={IMAGE}", "--lock-wait '-1': expected"),
        (f"deploy --lock-wait 07 auth-service={IMAGE}", "--lock-wait '07': expected"),
        (f"deploy --lock-wait 1e3 auth-service={IMAGE}", "--lock-wait '1e3': expected"),
        (f"deploy --lock-wait +5 auth-service={IMAGE}", "--lock-wait '+5': expected"),
        (f"deploy --lock-wait ${{x}} auth-service={IMAGE}", "--lock-wait '${x}': expected"),
        (f"deploy --lock-wait 9999999999 auth-service={IMAGE}", "expected a whole number"),
        (f"deploy --keep=3 auth-service={IMAGE}", "deploy takes no option '--keep=3'"),
        (f"deploy --pull-timeout 5 auth-service={IMAGE}", "deploy takes no option '--pull-timeout'"),
        (f"deploy --keep 3 --keep 4 auth-service={IMAGE}", "option --keep given twice"),
        (f"deploy auth-service={IMAGE} --keep 3", "options come first"),
        (f"deploy --keep auth-service={IMAGE}", "--keep 'auth-service="),
        ("deploy --keep", "option --keep needs a value"),
        ("deploy --keep 3", "deploy needs at least one <component>=<image>"),
        ("rollback --keep 3", "rollback takes no option '--keep' (it takes --lock-wait, --wait-timeout)"),
        ("rollback --wait-timeout 5", "from 10 to 3600"),
        ("rollback --lock-wait 5 x", "rollback takes no arguments"),
        ("status --lock-wait 5", "status takes no arguments"),
    ],
)
def test_parse_command_refuses(text: str | None, message: str) -> None:
    with pytest.raises(PROGRAM.BadInput, match=re.escape(message)):
        PROGRAM.parse_command(text)


DEPLOY = frozenset({"compose", "login"})


def frames(data: bytes, allowed=DEPLOY):
    return PROGRAM.read_frames(io.BufferedReader(io.BytesIO(data)), allowed)


def test_frames_carry_compose_and_login_in_either_order() -> None:
    compose = b"services:\n  web:\n    image: ${WEB_IMAGE}\n"
    login = b"login ghcr.io ci-bot 6\nsecret"
    body = b"compose %d\n" % len(compose) + compose
    for data in (login + body, body + login):
        parsed = frames(data)
        assert parsed.compose == compose
        assert (parsed.login.registry, parsed.login.username, parsed.login.token) == ("ghcr.io", "ci-bot", "secret")
        assert "secret" not in repr(parsed.login)
    assert frames(b"") == PROGRAM.Frames(None, None)


@pytest.mark.parametrize(
    ("data", "allowed", "message"),
    [
        (b"compose 5\nabc", DEPLOY, "ended inside the compose frame (3 of 5 bytes)"),
        (b"compose 3\nabcextra 1\nx", DEPLOY, "unexpected stdin frame 'extra'"),
        (b"compose 3\nabcextra", DEPLOY, "cut short"),
        (b"compose 3\nabc\n", DEPLOY, "unexpected stdin frame ''"),
        (b"compose 3\nabccompose 3\nabc", DEPLOY, "two compose frames"),
        (b"compose 0\n", DEPLOY, "not a positive decimal"),
        (b"compose 03\nabc", DEPLOY, "not a positive decimal"),
        (b"compose -3\nabc", DEPLOY, "not a positive decimal"),
        (b"compose 262145\n", DEPLOY, "at most 262144 accepted"),
        (b"compose\n", DEPLOY, "`compose <length>`"),
        (b"compose 3 x\nabc", DEPLOY, "`compose <length>`"),
        (b"compose 2\n\xff\xfe", DEPLOY, "not UTF-8"),
        (b"compose 2\na\x00", DEPLOY, "NUL byte"),
        (b"x" * 600, DEPLOY, "longer than 512 bytes"),
        (b"compose 3", DEPLOY, "cut short"),
        (b"comp\xc3\xa9se 3\n", DEPLOY, "not ASCII"),
        (b"services:\n  web: {}\n", DEPLOY, "unexpected stdin frame 'services:'"),
        (b"compose 3\nabc", frozenset({"login"}), "this command reads login"),
        (b"login ghcr.io u\n", DEPLOY, "`login <registry> <username> <length>`"),
        (b"login ghcr.io;id u 1\nx", DEPLOY, "not a registry host"),
        (b"login ghcr.io -u 1\nx", DEPLOY, "not a registry user name"),
        (b"login ghcr.io u 5000\n", DEPLOY, "at most 4096 accepted"),
        (b"login ghcr.io u 3\na b", DEPLOY, "printable ASCII without spaces"),
        (b"login ghcr.io u 1\nxlogin ghcr.io u 1\nx", DEPLOY, "two login frames"),
    ],
)
def test_frames_refuse(data: bytes, allowed: frozenset, message: str) -> None:
    with pytest.raises(PROGRAM.BadInput, match=re.escape(message)):
        frames(data, allowed)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DREAMSCAPE_DEPLOY_LOCK_WAIT": "soon"}, "DREAMSCAPE_DEPLOY_LOCK_WAIT='soon'"),
        ({"DREAMSCAPE_DEPLOY_LOCK_WAIT": "3601"}, "a whole number of seconds from 0 to 3600"),
        (
            {"DREAMSCAPE_DEPLOY_KEEP": "1"},
            "DREAMSCAPE_DEPLOY_KEEP='1': expected a whole number of releases from 2 to 50",
        ),
        ({"DREAMSCAPE_DEPLOY_KEEP": "05"}, "from 2 to 50"),
        ({"DREAMSCAPE_DEPLOY_WAIT_TIMEOUT": "9"}, "from 10 to 3600"),
        ({"DREAMSCAPE_DEPLOY_PULL_TIMEOUT": "0"}, "at least 1"),
        ({"DREAMSCAPE_DEPLOY_STATE_DIR": "relative/dir"}, "absolute path"),
        ({"DREAMSCAPE_DEPLOY_PROJECT": "Bad Name"}, "not a compose project name"),
    ],
)
def test_bad_settings_are_a_misconfiguration(environ: dict, message: str) -> None:
    with pytest.raises(PROGRAM.Misconfigured, match=re.escape(message)):
        PROGRAM.load_settings(environ)


def test_settings_defaults() -> None:
    settings = PROGRAM.load_settings({})
    assert str(settings.state_dir) == deploy_program.STATE_DIR
    assert (settings.project, settings.lock_wait, settings.wait_timeout, settings.keep) == ("dreamscape", 300, 180, 5)


def test_a_request_option_overrides_the_environment_fallback() -> None:
    environ = {"DREAMSCAPE_DEPLOY_LOCK_WAIT": "7", "DREAMSCAPE_DEPLOY_KEEP": "9"}
    fallback = PROGRAM.load_settings(environ)
    assert (fallback.lock_wait, fallback.wait_timeout, fallback.keep) == (7, 180, 9)
    command = PROGRAM.parse_command(f"deploy --keep 2 --wait-timeout 42 auth-service={IMAGE}")
    settings_used = PROGRAM.replace(fallback, **dict(command.settings))
    assert (settings_used.lock_wait, settings_used.wait_timeout, settings_used.keep) == (7, 42, 2)


def test_child_environment_cannot_override_the_release_images() -> None:
    env = PROGRAM.child_environment(
        {"PATH": "/usr/bin", "WEB_IMAGE": "evil/x:1", "COMPOSE_FILE": "/tmp/x.yaml", "HOME": "/home/deploy"},
        "/state/auth",
    )
    assert env == {"PATH": "/usr/bin", "HOME": "/home/deploy", "DOCKER_CONFIG": "/state/auth"}


def test_fence_cannot_be_closed_by_the_text() -> None:
    block = PROGRAM.fence("a ``` b ```` c")
    assert block.startswith("`````\n") and block.endswith("\n`````")


def test_a_placeholder_image_is_a_valid_reference_no_registry_can_serve() -> None:
    for component in ("a", "auth-service", "0web", "x" * 63):
        placeholder = PROGRAM.placeholder_image(component)
        assert PROGRAM.is_image(placeholder), placeholder
        assert placeholder.split("/")[0].endswith(".invalid"), "RFC 2606: never resolves"


def test_leaving_services_out_keeps_everything_a_kept_service_uses() -> None:
    model = {
        "name": "dreamscape",
        "services": {
            "api": {"image": "r.io/api:1", "volumes": ["data:/data", "/srv:/srv"], "secrets": ["key"]},
            "web": {
                "image": "r.io/web:1",
                "depends_on": ["api"],
                "volumes": [{"type": "volume", "source": "data", "target": "/d"}],
                "configs": [{"source": "site", "target": "/site"}],
            },
            "worker": {"image": "r.io/worker:1", "depends_on": {"web": {"required": False}}, "secrets": ["key"]},
        },
        "volumes": {"data": {}},
        "secrets": {"key": {"file": "./key"}},
        "configs": {"site": {"file": "./site"}, "unused": {"file": "./unused"}},
    }
    before = json.dumps(model, sort_keys=True)
    result = PROGRAM.without_services(model, ["web"])
    assert json.dumps(model, sort_keys=True) == before, "the model given is not changed"
    assert result["services"] == {
        "api": model["services"]["api"],
        "worker": {"image": "r.io/worker:1", "secrets": ["key"]},
    }
    assert result["volumes"] == {"data": {}} and result["secrets"] == {"key": {"file": "./key"}}
    assert result["configs"] == {"unused": {"file": "./unused"}}, "what only web used goes; what nobody used stays"

    with pytest.raises(PROGRAM.BadInput, match="service web depends on api, which this environment has never"):
        PROGRAM.without_services(model, ["api"])
