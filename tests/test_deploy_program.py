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
    assert PROGRAM.SETTINGS["DREAMSCAPE_DEPLOY_STATE_DIR"] == deploy_program.STATE_DIR
    assert PROGRAM.SETTINGS["DREAMSCAPE_DEPLOY_EDGE_DIR"] == deploy_program.EDGE_DIR
    assert set(deploy_program.SETTINGS) == set(PROGRAM.SETTINGS), "every setting has its meaning"
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
    with pytest.raises(PROGRAM.BadInputError, match=re.escape(message)):
        PROGRAM.parse_command(text)


DEPLOY = frozenset({"compose", "login"})
SECRETS = frozenset({"compose", "login", "secrets"})


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


def test_the_secrets_frame_is_one_object_never_shown() -> None:
    payload = b'{"JWT_SIGNING_KEY": "k\\u00e9y", "POSTGRES_PASSWORD": "pw"}'
    parsed = frames(b"secrets %d\n" % len(payload) + payload, SECRETS)
    assert parsed.secrets == {"JWT_SIGNING_KEY": "k\u00e9y", "POSTGRES_PASSWORD": "pw"}
    assert "pw" not in repr(parsed)


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
        (b"secrets 2\n{}", DEPLOY, "this command reads compose or login"),
        (b"secrets 4\nnope", SECRETS, "secrets frame is not JSON"),
        (b'secrets 5\n["x"]', SECRETS, "not one object of NAME: non-empty string"),
        (b'secrets 10\n{"a": "v"}', SECRETS, "not one object of NAME: non-empty string"),
        (b'secrets 9\n{"A": ""}', SECRETS, "not one object of NAME: non-empty string"),
        (b'secrets 8\n{"A": 1}', SECRETS, "not one object of NAME: non-empty string"),
        (b'secrets 15\n{"A/../B": "v"}', SECRETS, "not one object of NAME: non-empty string"),
        (b"secrets 65537\n", SECRETS, "at most 65536 accepted"),
        (b"secrets 2\n{}secrets 2\n{}", SECRETS, "one secrets frame"),
        (b"secrets\n", SECRETS, "one secrets frame"),
    ],
)
def test_frames_refuse(data: bytes, allowed: frozenset, message: str) -> None:
    with pytest.raises(PROGRAM.BadInputError, match=re.escape(message)):
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
        ({"DREAMSCAPE_DEPLOY_PROJECT": "Bad Name"}, "expected a compose project name"),
        ({"DREAMSCAPE_DEPLOY_EDGE_DIR": "edge"}, "DREAMSCAPE_DEPLOY_EDGE_DIR='edge': expected an absolute path"),
        ({"DREAMSCAPE_DEPLOY_EDGE_ADMIN": "/run/caddy admin"}, "expected an absolute path"),
        (
            {"DREAMSCAPE_DEPLOY_EDGE_BIND": "localhost"},
            "DREAMSCAPE_DEPLOY_EDGE_BIND='localhost': expected an IP address",
        ),
        ({"DREAMSCAPE_DEPLOY_ACME_CA_ROOT": "ca.pem"}, "expected an absolute path"),
        ({"DREAMSCAPE_DEPLOY_FIRST_BOOT": "first-boot"}, "expected an absolute path"),
        (
            {"DREAMSCAPE_DEPLOY_SLOT_PORTS": "80"},
            "DREAMSCAPE_DEPLOY_SLOT_PORTS='80': expected a whole number of at least 1024",
        ),
        ({"DREAMSCAPE_DEPLOY_SLOT_PORTS": "65510"}, "the slots' ports would pass 65535"),
        ({"DREAMSCAPE_DEPLOY_DRAIN_TIMEOUT": "-1"}, "DREAMSCAPE_DEPLOY_DRAIN_TIMEOUT='-1'"),
    ],
)
def test_bad_settings_are_a_misconfiguration(environ: dict, message: str) -> None:
    with pytest.raises(PROGRAM.MisconfiguredError, match=re.escape(message)):
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

    with pytest.raises(PROGRAM.BadInputError, match="service web depends on api, which this environment has never"):
        PROGRAM.without_services(model, ["api"])


# --- the edge and the slots ------------------------------------------------------------------------

EDGE_SETTINGS = PROGRAM.load_settings({"DREAMSCAPE_DEPLOY_SLOT_PORTS": "30000"})


def model_with(**services: dict) -> dict:
    return {"name": "x", "services": {name: {"image": IMAGE, **spec} for name, spec in services.items()}}


def port(published: str, target: int = 8080, **extra) -> dict:
    return {"mode": "ingress", "target": target, "published": published, "protocol": "tcp", **extra}


def test_each_published_port_becomes_a_site_with_a_loopback_port_per_slot() -> None:
    model = model_with(gateway={"ports": [port("80")]}, web={"ports": [port("443", 3000)]}, auth={})
    sites = PROGRAM.published_sites(model)
    assert sites == [PROGRAM.Site(80, "gateway", 8080), PROGRAM.Site(443, "web", 3000)]
    blue = PROGRAM.slotted(EDGE_SETTINGS, model, sites, "blue")
    green = PROGRAM.slotted(EDGE_SETTINGS, model, sites, "green")
    assert blue["services"]["gateway"]["ports"] == [port("30000", host_ip="127.0.0.1")]
    assert green["services"]["gateway"]["ports"] == [port("30001", host_ip="127.0.0.1")]
    assert blue["services"]["web"]["ports"] == [port("30002", 3000, host_ip="127.0.0.1")]
    assert green["services"]["web"]["ports"] == [port("30003", 3000, host_ip="127.0.0.1")]
    assert "ports" not in blue["services"]["auth"] and model["services"]["gateway"]["ports"] == [port("80")]


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ([port("80", protocol="udp")], "the edge forwards one TCP port per entry"),
        ([port("8000-8010")], "the edge forwards one TCP port per entry"),
        ([{"mode": "ingress", "target": 8080, "protocol": "tcp"}], "the edge forwards one TCP port per entry"),
        ([port("70000")], "not a port"),
        ([port(str(p)) for p in range(1, 18)], "17 published ports; the edge forwards at most 16"),
    ],
)
def test_what_the_edge_cannot_forward_is_refused(ports: list, message: str) -> None:
    with pytest.raises(PROGRAM.BadInputError, match=re.escape(message)):
        PROGRAM.published_sites(model_with(gateway={"ports": ports}))


def test_plain_http_on_443_is_refused() -> None:
    model = model_with(web={"ports": [port("443")]})
    with pytest.raises(PROGRAM.BadInputError, match=r"publishes 443 without x-dreamscape-edge\.domain: 443 is HTTPS"):
        PROGRAM.edge_domain(model, PROGRAM.published_sites(model))


def test_two_services_on_one_port_are_refused() -> None:
    model = model_with(a={"ports": [port("80")]}, b={"ports": [port("80")]})
    with pytest.raises(PROGRAM.BadInputError, match="port 80 is published by both a and b"):
        PROGRAM.published_sites(model)


def test_the_caddyfile_routes_each_site_to_the_slot_the_marker_names() -> None:
    sites = [PROGRAM.Site(80, "gateway", 8080)]
    text = PROGRAM.caddyfile(EDGE_SETTINGS, sites, None)
    assert "admin unix//run/caddy/admin.sock" in text and "auto_https off" in text
    assert "http://:80 {" in text
    assert "\t\treverse_proxy 127.0.0.1:30001 127.0.0.1:30000 {" in text  # green first while marked
    assert "\t\treverse_proxy 127.0.0.1:30000 127.0.0.1:30001 {" in text  # blue first otherwise
    assert "try_files green" in text and f"root {deploy_program.EDGE_DIR}" in text
    assert "Strict-Transport-Security" not in text and "acme_ca" not in text
    assert text == PROGRAM.caddyfile(EDGE_SETTINGS, sites, None), "the same ports give the same text"


def test_with_a_domain_the_caddyfile_asks_acme_for_it_and_sends_hsts() -> None:
    sites = [PROGRAM.Site(80, "gateway", 8080)]
    domain = PROGRAM.Domain("app.dreamscape.example", "https://acme.example/dir", "ops@dreamscape.example", 80, 443)
    settings = PROGRAM.replace(EDGE_SETTINGS, acme_ca_root="/etc/ca.pem", edge_bind="127.0.0.1")
    text = PROGRAM.caddyfile(settings, sites, domain)
    assert "auto_https off" not in text
    for line in ("acme_ca https://acme.example/dir", "email ops@dreamscape.example", "acme_ca_root /etc/ca.pem",
                 "default_bind 127.0.0.1", "http_port 80", "https_port 443",
                 'header Strict-Transport-Security "max-age=31536000"'):  # fmt: skip
        assert f"\t{line}" in text, line
    assert "\napp.dreamscape.example {\n" in text


def test_caddy_accepts_the_caddyfile(tmp_path) -> None:
    caddy = "/usr/bin/caddy"
    if not __import__("pathlib").Path(caddy).exists():
        pytest.skip("caddy not installed (.ci/run installs it)")
    sites = [PROGRAM.Site(80, "gateway", 8080), PROGRAM.Site(8443, "web", 3000)]
    domain = PROGRAM.Domain("app.dreamscape.example", "https://acme.example/dir", None, 80, 443)
    for text in (PROGRAM.caddyfile(EDGE_SETTINGS, sites, None), PROGRAM.caddyfile(EDGE_SETTINGS, sites[:1], domain)):
        path = tmp_path / "Caddyfile"
        path.write_text(text)
        result = subprocess.run([caddy, "adapt", "--config", str(path), "--adapter", "caddyfile", "--validate"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "lb_policy" not in result.stderr


@pytest.mark.parametrize(
    ("extension", "message"),
    [
        ({"domain": "App.Example.com", "acmeDirectory": "https://a.example/dir"}, "not a lowercase DNS name"),
        ({"domain": "app.example.com", "acmeDirectory": "http://a.example/dir"}, "not an https:// URL"),
        ({"domain": "app.example.com", "acmeDirectory": "https://a/d", "acmeEmail": "x"}, "not an e-mail address"),
        ({"domain": "app.example.com", "acmeDirectory": "https://a/d", "httpsPort": 0}, "httpsPort: 0 is not a port"),
        ({"domain": "app.example.com", "acmeDirectory": "https://a/d", "tls": "off"}, "takes domain, acmeDirectory"),
    ],
)
def test_a_bad_edge_extension_is_refused(extension: dict, message: str) -> None:
    model = {**model_with(gateway={"ports": [port("80")]}), PROGRAM.EDGE_EXTENSION: extension}
    with pytest.raises(PROGRAM.BadInputError, match=re.escape(message)):
        PROGRAM.edge_domain(model, PROGRAM.published_sites(model))


def test_a_domain_needs_exactly_one_published_service() -> None:
    extension = {"domain": "app.example.com", "acmeDirectory": "https://acme.example/dir"}
    model = {**model_with(a={"ports": [port("80")]}, b={"ports": [port("443")]}), PROGRAM.EDGE_EXTENSION: extension}
    with pytest.raises(PROGRAM.BadInputError, match="serves one published service; the file publishes 2"):
        PROGRAM.edge_domain(model, PROGRAM.published_sites(model))


# --- the program as shipped in user_data ------------------------------------------------------------


def _without_docstrings(tree: ast.AST) -> str:
    class Strip(ast.NodeTransformer):
        def generic_visit(self, node: ast.AST) -> ast.AST:
            super().generic_visit(node)
            for field in ("body", "orelse", "finalbody"):
                body = getattr(node, field, None)
                if isinstance(body, list) and body and all(isinstance(s, ast.stmt) for s in body):
                    kept = [s for s in body if not deploy_program._is_docstring(s)]
                    setattr(node, field, kept or [ast.Pass()])
            return node

    return ast.dump(Strip().visit(tree))


def test_the_shipped_program_is_the_source_without_docstrings_and_comments() -> None:
    source = (deploy_program.Path(deploy_program.__file__).with_name("deploy") / "dreamscape_deploy.py").read_text()
    shipped = deploy_program.program_text()
    assert _without_docstrings(ast.parse(shipped)) == _without_docstrings(ast.parse(source))
    assert len(shipped) < len(source) * 0.8
    assert '"""' not in shipped.split("\n", 2)[1], "the module docstring is gone"
    assert not [line for line in shipped.splitlines()[1:] if line.lstrip().startswith("#")]


def test_shipping_keeps_every_string_and_statement() -> None:
    source = '''#!/usr/bin/python3 -I
"""Module docstring."""
import os  # a trailing remark


class Empty(Exception):
    """Only a docstring."""


TEXT = """first

# not a comment: part of the string
    indented
"""
VALUE = 1
"""An attribute docstring."""


def f(x):
    """Doc."""
    if x:  # comment
        return f"{x} # {TEXT}"
    return (
            x,
    )
'''
    shipped = deploy_program.shipped(source)
    namespace: dict = {}
    exec(compile(shipped, "shipped", "exec"), namespace)  # noqa: S102 - the test's own text
    assert namespace["TEXT"] == "first\n\n# not a comment: part of the string\n    indented\n"
    assert namespace["f"](2) == "2 # " + namespace["TEXT"] and namespace["f"](0) == (0,)
    assert issubclass(namespace["Empty"], Exception) and namespace["VALUE"] == 1
    assert not [gone for gone in ("docstring", "trailing remark", "Doc.") if gone in shipped]
    assert shipped.startswith("#!/usr/bin/python3 -I\nimport os\nclass Empty(Exception):\n pass\n")
