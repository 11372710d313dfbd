"""The deploy program's input gate at its edges, in-process: the last value each limit accepts
and the first it refuses, and what the program makes of a request it accepts (the settings it
runs with, the model split for accessories, the edge's sites and its whole Caddyfile).

The limits are written here as numbers, never read back from the program: a changed limit is
a changed contract, and it shows up here first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from components.environment import deploy_program
from tests.test_deploy_program import SECRETS, frames

PROGRAM = deploy_program.load_program()
Refused = PROGRAM.BadInputError


def refusal(call, *args) -> str:
    with pytest.raises(Refused) as refused:
        call(*args)
    return str(refused.value)


def read(data: bytes):
    """Every frame a deploy may carry, read as the program reads stdin."""
    return frames(data, SECRETS)


def image_of_length(length: int, name: str = "app") -> str:
    """A valid reference of `length` characters (one long path component)."""
    head = f"ghcr.io/dreamscape/{name}"
    return head + "p" * (length - len(head) - 2) + ":1"


# --- the request line -------------------------------------------------------------------------------


def test_a_pattern_matches_the_whole_value_in_ascii_only() -> None:
    """`\\d` and `\\w` are ASCII digits and letters: a digit of another script is no digit here."""
    assert PROGRAM.matches(r"^\d{2}$", "42")
    assert not PROGRAM.matches(r"^\d{2}$", "\u0664\u0662")  # ٤٢, Arabic-Indic
    assert not PROGRAM.matches(r"^\w+$", "caf\u00e9")
    assert not PROGRAM.matches(r"^[a-z]+$", "abc\n") and not PROGRAM.matches(r"[a-z]+", "abc1")


def test_an_image_reference_is_at_most_512_characters() -> None:
    assert PROGRAM.is_image(image_of_length(512))
    too_long = image_of_length(513)
    assert PROGRAM.matches(PROGRAM.IMAGE_PATTERN, too_long) and not PROGRAM.is_image(too_long)


def command_of(length: int) -> str:
    """A valid deploy command of exactly `length` bytes (at most 64 pairs of at most 512-character images)."""
    pairs = [f"c{i}={image_of_length(400, f'c{i}')}" for i in range(length // 410)]
    text = " ".join(["deploy", *pairs])
    rest = length - len(text) - 1
    last = f"z={image_of_length(rest - 2, 'z')}"
    return f"{text} {last}"


def test_a_command_is_at_most_8192_bytes() -> None:
    longest = command_of(8192)
    assert len(longest.encode()) == 8192
    assert len(PROGRAM.parse_command(longest).pairs) == len(longest.split(" ")) - 1
    assert refusal(PROGRAM.parse_command, command_of(8193)) == "command longer than 8192 bytes"


def test_a_deploy_takes_at_most_64_components() -> None:
    pairs = [f"c{i}=r.io/c:{i}" for i in range(65)]
    assert len(PROGRAM.parse_command(" ".join(["deploy", *pairs[:64]])).pairs) == 64
    assert refusal(PROGRAM.parse_command, " ".join(["deploy", *pairs])) == "deploy takes at most 64 components"


def test_a_command_is_printable_ascii_space_to_tilde() -> None:
    """`~` is the last printable character: past the character check, refused as no image."""
    assert "is not an image reference" in refusal(PROGRAM.parse_command, "deploy a=r.io/a:~")
    for other in ("\x7f", "\t", "é", "\x00"):
        message = refusal(PROGRAM.parse_command, f"deploy a=r.io/a:1{other}")
        assert message == "command contains characters other than printable ASCII", other


def test_a_pair_splits_at_its_first_equals_sign() -> None:
    assert refusal(PROGRAM.parse_command, "deploy web=r.io/web:1=2") == (
        "'r.io/web:1=2' is not an image reference (registry/path:tag or @sha256:<digest>)"
    )


def test_a_refused_word_is_shown_whole_up_to_80_characters_then_cut() -> None:
    shown = "x" * 80
    assert refusal(PROGRAM.parse_command, f"deploy {shown}") == f"{shown!r} is not <component>=<image>"
    longer = "x" * 81
    assert refusal(PROGRAM.parse_command, f"deploy {longer}") == f"{'x' * 77 + '...'!r} is not <component>=<image>"


# --- the frames on stdin ----------------------------------------------------------------------------


def test_a_frame_header_is_at_most_512_bytes() -> None:
    """Read with a bound: a longer line is refused before it is read whole."""
    assert refusal(read, b"x" * 512 + b"\n").startswith("unexpected stdin frame 'xxx")
    assert refusal(read, b"x" * 513 + b"\n") == "stdin frame header longer than 512 bytes or cut short"


@pytest.mark.parametrize(
    ("kind", "limit", "what"),
    [("compose", 256 * 1024, "compose file"), ("secrets", 64 * 1024, "secrets")],
)
def test_a_frame_is_at_most_its_limit(kind: str, limit: int, what: str) -> None:
    if kind == "compose":
        payload = b"#" * limit
        assert read(b"compose %d\n" % limit + payload).compose == payload
    else:
        payload = json.dumps({"K": "v" * (limit - 9)}).encode()
        assert len(payload) == limit
        assert read(b"secrets %d\n" % limit + payload).secrets == {"K": "v" * (limit - 9)}
    over = limit + 1
    assert refusal(read, b"%s %d\n" % (kind.encode(), over) + b"#" * over) == (
        f"{what} is {over} bytes; at most {limit} accepted"
    )


def test_a_registry_token_is_at_most_4096_printable_characters() -> None:
    token = "t" * 4096
    login = read(b"login ghcr.io ci-bot 4096\n" + token.encode()).login
    assert login.token == token
    assert refusal(read, b"login ghcr.io ci-bot 4097\n" + b"t" * 4097) == (
        "registry token is 4097 bytes; at most 4096 accepted"
    )


@pytest.mark.parametrize("token", [b"caf\xc3\xa9-token", b"\xff\xfe", b"with space"])
def test_a_registry_token_that_is_not_printable_ascii_is_refused_as_such(token: bytes) -> None:
    data = b"login ghcr.io ci-bot %d\n" % len(token) + token
    assert refusal(read, data) == "registry token must be printable ASCII without spaces"


# --- the settings the program runs with --------------------------------------------------------------


def test_every_setting_reaches_the_program() -> None:
    environ = {
        "DREAMSCAPE_DEPLOY_STATE_DIR": "/srv/state",
        "DREAMSCAPE_DEPLOY_PROJECT": "shop",
        "DREAMSCAPE_DEPLOY_LOCK_WAIT": "12",
        "DREAMSCAPE_DEPLOY_WAIT_TIMEOUT": "34",
        "DREAMSCAPE_DEPLOY_KEEP": "7",
        "DREAMSCAPE_DEPLOY_PULL_TIMEOUT": "56",
        "DREAMSCAPE_DEPLOY_LOG_SOCKET": "/run/log.sock",
        "DREAMSCAPE_DEPLOY_EDGE_DIR": "/srv/edge",
        "DREAMSCAPE_DEPLOY_EDGE_ADMIN": "/run/edge.sock",
        "DREAMSCAPE_DEPLOY_EDGE_BIND": "10.0.0.5",
        "DREAMSCAPE_DEPLOY_SLOT_PORTS": "41000",
        "DREAMSCAPE_DEPLOY_DRAIN_TIMEOUT": "9",
        "DREAMSCAPE_DEPLOY_ACME_CA_ROOT": "/etc/ca.pem",
        "DREAMSCAPE_DEPLOY_FIRST_BOOT": "/srv/first-boot",
    }
    assert PROGRAM.load_settings(environ) == PROGRAM.Settings(
        state_dir=Path("/srv/state"),
        project="shop",
        lock_wait=12,
        wait_timeout=34,
        pull_timeout=56,
        keep=7,
        log_socket="/run/log.sock",
        edge_dir=Path("/srv/edge"),
        edge_admin="/run/edge.sock",
        edge_bind="10.0.0.5",
        slot_ports=41000,
        drain_timeout=9,
        acme_ca_root="/etc/ca.pem",
        first_boot=Path("/srv/first-boot"),
    )


@pytest.mark.parametrize(
    ("name", "lowest"),
    [
        ("DREAMSCAPE_DEPLOY_SLOT_PORTS", 1024),
        ("DREAMSCAPE_DEPLOY_PULL_TIMEOUT", 1),
        ("DREAMSCAPE_DEPLOY_DRAIN_TIMEOUT", 0),
    ],
)
def test_a_number_setting_has_a_lowest_value(name: str, lowest: int) -> None:
    field = name.removeprefix("DREAMSCAPE_DEPLOY_").lower()
    assert getattr(PROGRAM.load_settings({name: str(lowest)}), field) == lowest
    if lowest:
        with pytest.raises(
            PROGRAM.MisconfiguredError, match=re.escape(f"expected a whole number of at least {lowest}")
        ):
            PROGRAM.load_settings({name: str(lowest - 1)})


def test_the_slots_ports_end_at_65535() -> None:
    """16 published ports, two loopback ports each, from DREAMSCAPE_DEPLOY_SLOT_PORTS on."""
    assert PROGRAM.load_settings({"DREAMSCAPE_DEPLOY_SLOT_PORTS": "65503"}).slot_ports == 65503
    with pytest.raises(PROGRAM.MisconfiguredError, match="the slots' ports would pass 65535"):
        PROGRAM.load_settings({"DREAMSCAPE_DEPLOY_SLOT_PORTS": "65504"})


@pytest.mark.parametrize(
    ("name", "accepted", "refused"),
    [
        ("DREAMSCAPE_DEPLOY_STATE_DIR", "/" + "s" * 200, "/" + "s" * 201),
        ("DREAMSCAPE_DEPLOY_ACME_CA_ROOT", "/" + "c" * 200, "/" + "c" * 201),
        (
            "DREAMSCAPE_DEPLOY_EDGE_BIND",
            "0000:0000:0000:0000:0000:ffff:192.168.100.200",
            "0000:0000:0000:0000:0000:ffff:192.168.100.2000",
        ),
        ("DREAMSCAPE_DEPLOY_EDGE_BIND", "::", ":"),
        ("DREAMSCAPE_DEPLOY_PULL_TIMEOUT", "999999", "1000000"),
    ],
)
def test_a_text_setting_is_at_most_its_length(name: str, accepted: str, refused: str) -> None:
    """Paths of 200 characters after the first slash, an address of 2 to 45, numbers of 6 digits."""
    field = name.removeprefix("DREAMSCAPE_DEPLOY_").lower()
    loaded = getattr(PROGRAM.load_settings({name: accepted}), field)
    assert str(loaded) == accepted
    with pytest.raises(PROGRAM.MisconfiguredError, match=f"^{name}="):
        PROGRAM.load_settings({name: refused})


def test_the_slots_ports_start_at_20000_unless_set() -> None:
    assert PROGRAM.load_settings({}).slot_ports == 20000


# --- what an accepted compose file becomes -----------------------------------------------------------

SETTINGS = PROGRAM.load_settings({"DREAMSCAPE_DEPLOY_PROJECT": "shop", "DREAMSCAPE_DEPLOY_SLOT_PORTS": "30000"})
IMAGE = "ghcr.io/dreamscape/web:1"


def test_a_service_running_the_image_it_was_given_is_accepted() -> None:
    PROGRAM.check_model({"services": {"web": {"image": IMAGE}, "api": {"image": "other"}}}, (("web", IMAGE),))


def test_a_secret_the_release_does_not_hold_is_left_to_compose(tmp_path: Path) -> None:
    """Only files inside the release's secrets/ are the deploy's to send; sent ones pass."""
    release = PROGRAM.Release(tmp_path / "000001-abcdef012345", {"slot": "blue"})
    (release.path / "secrets").mkdir(parents=True)
    (release.path / "secrets" / "SENT").write_text("x")
    model = {
        "secrets": {
            "SENT": {"file": str(release.path / "secrets" / "SENT")},
            "ELSEWHERE": {"file": str(tmp_path / "missing")},
            "FROM_ENV": {"environment": "TOKEN"},
        }
    }
    PROGRAM.check_secrets(model, release)


def test_the_resources_a_service_uses_in_either_syntax() -> None:
    service = {
        "networks": {"front": {"aliases": ["web"]}, "back": None},
        "volumes": ["data:/data", "/srv:/srv:ro", {"type": "volume", "source": "cache", "target": "/c"}],
        "configs": [{"source": "site", "target": "/site"}],
        "secrets": ["key"],
    }
    assert PROGRAM.resources_used(service) == {
        "networks": {"front", "back"},
        "volumes": {"data", "/srv", "cache"},
        "configs": {"site"},
        "secrets": {"key"},
    }
    assert PROGRAM.resources_used({"networks": ["front"]})["networks"] == {"front"}


def test_an_optional_dependency_left_out_goes_and_the_others_stay() -> None:
    model = {
        "services": {
            "api": {"image": "r.io/api:1", "volumes": ["/srv/api:/data"]},
            "cache": {"image": "r.io/cache:1"},
            "web": {"image": "r.io/web:1", "depends_on": {"api": {"required": False}, "cache": {}}},
        }
    }
    result = PROGRAM.without_services(model, ["api"])
    assert result == {
        "services": {"cache": {"image": "r.io/cache:1"}, "web": {"image": "r.io/web:1", "depends_on": {"cache": {}}}}
    }, "no top-level volumes to prune: the bind mount only api used leaves the model as it is"


def test_accessories_are_split_into_a_project_of_their_own_sharing_named_networks() -> None:
    model = {
        "name": "shop",
        "services": {
            "api": {"image": IMAGE, "networks": ["db", "default"]},
            "web": {"image": IMAGE},
            "postgres": {"image": "r.io/pg:17", "networks": ["db"], "volumes": ["pgdata:/var/lib/postgresql"]},
        },
        "networks": {"db": {}, "default": {}},
        "volumes": {"pgdata": {}},
        PROGRAM.ACCESSORIES_EXTENSION: ["postgres"],
    }
    before = json.dumps(model, sort_keys=True)
    app, accessories = PROGRAM.accessories_of(SETTINGS, model)
    assert json.dumps(model, sort_keys=True) == before, "the model given is not changed"
    assert app == {
        "name": "shop",
        "services": {"api": model["services"]["api"], "web": model["services"]["web"]},
        "networks": {"db": {"name": "shop_db", "external": True}, "default": {}},
        "volumes": {},
        PROGRAM.ACCESSORIES_EXTENSION: ["postgres"],
    }
    assert accessories == {
        "name": "shop",
        "services": {"postgres": model["services"]["postgres"]},
        "networks": {"db": {"name": "shop_db"}},
        "volumes": {"pgdata": {}},
        PROGRAM.ACCESSORIES_EXTENSION: ["postgres"],
    }


def test_a_file_without_accessories_is_all_components() -> None:
    model = {"services": {"web": {"image": IMAGE}}}
    assert PROGRAM.accessories_of(SETTINGS, model) == (model, None)
    model_empty = {"services": {"web": {"image": IMAGE}}, PROGRAM.ACCESSORIES_EXTENSION: []}
    assert PROGRAM.accessories_of(SETTINGS, model_empty) == (model_empty, None)


def test_an_accessory_on_a_network_no_component_joins_keeps_it_to_itself() -> None:
    model = {
        "services": {"web": {"image": IMAGE}, "redis": {"image": "r.io/redis:7", "networks": ["cache"]}},
        "networks": {"cache": {}},
        PROGRAM.ACCESSORIES_EXTENSION: ["redis"],
    }
    app, accessories = PROGRAM.accessories_of(SETTINGS, model)
    assert app["networks"] == {} and accessories["networks"] == {"cache": {"name": "shop_cache"}}


def port(published: str | int, target: int = 8080, **extra) -> dict:
    return {"mode": "ingress", "target": target, "published": published, **extra}


def test_a_port_without_a_protocol_is_tcp_and_the_highest_is_65535() -> None:
    model = {"services": {"web": {"image": IMAGE, "ports": [port("65535")]}}}
    assert PROGRAM.published_sites(model) == [PROGRAM.Site(65535, "web", 8080)]
    model["services"]["web"]["ports"] = [port("65536")]
    assert refusal(PROGRAM.published_sites, model).endswith(": not a port")


def test_the_edge_forwards_at_most_16_published_ports() -> None:
    model = {"services": {"web": {"image": IMAGE, "ports": [port(str(p)) for p in range(8001, 8017)]}}}
    assert len(PROGRAM.published_sites(model)) == 16


def test_a_domain_takes_every_edge_key_and_defaults_to_ports_80_and_443() -> None:
    sites = [PROGRAM.Site(80, "web", 8080)]
    given = {"domain": "app.example.org", "acmeDirectory": "https://acme.example/dir"}
    assert PROGRAM.edge_domain({PROGRAM.EDGE_EXTENSION: given}, sites) == PROGRAM.Domain(
        "app.example.org", "https://acme.example/dir", None, 80, 443
    )
    every = {**given, "acmeEmail": "ops@example.org", "httpPort": 8080, "httpsPort": 8443}
    assert PROGRAM.edge_domain({PROGRAM.EDGE_EXTENSION: every}, sites) == PROGRAM.Domain(
        "app.example.org", "https://acme.example/dir", "ops@example.org", 8080, 8443
    )


def domain_of_length(length: int) -> str:
    """63-character labels, then one of what is left: `length` characters in all."""
    labels = ["a" * 63] * (length // 64)
    return ".".join([*labels, "b" * (length - 64 * len(labels))])


@pytest.mark.parametrize(
    ("key", "field", "accepted", "refused"),
    [
        ("domain", "name", domain_of_length(253), domain_of_length(254)),
        ("httpPort", "http_port", 1, 0),
        ("httpPort", "http_port", 65535, 65536),
        ("httpsPort", "https_port", 65535, 65536),
    ],
)
def test_the_edge_keys_at_their_bounds(key: str, field: str, accepted, refused) -> None:
    sites = [PROGRAM.Site(80, "web", 8080)]
    given = {"domain": "app.example.org", "acmeDirectory": "https://acme.example/dir"}
    domain = PROGRAM.edge_domain({PROGRAM.EDGE_EXTENSION: {**given, key: accepted}}, sites)
    assert getattr(domain, field) == accepted
    message = refusal(PROGRAM.edge_domain, {PROGRAM.EDGE_EXTENSION: {**given, key: refused}}, sites)
    assert message.startswith(f"x-dreamscape-edge.{key}: {refused!r} is not a"), message


def test_the_plain_caddyfile_whole() -> None:
    """The edge's entire configuration for one plain-HTTP site: what every deploy writes."""
    assert PROGRAM.caddyfile(SETTINGS, [PROGRAM.Site(80, "gateway", 8080)], None) == (
        "# dreamscape-deploy writes this file\n"
        "{\n"
        "\tadmin unix//run/caddy/admin.sock\n"
        "\tauto_https off\n"
        "}\n"
        "\n"
        "# gateway: container port 8080\n"
        "http://:80 {\n"
        "\t@green file {\n"
        "\t\troot /var/lib/dreamscape-edge\n"
        "\t\ttry_files green\n"
        "\t}\n"
        "\thandle @green {\n"
        "\t\treverse_proxy 127.0.0.1:30001 127.0.0.1:30000 {\n"
        "\t\t\tlb_policy first\n"
        "\t\t\tlb_try_duration 5s\n"
        "\t\t\tlb_try_interval 100ms\n"
        "\t\t\tfail_duration 2s\n"
        "\t\t\tmax_fails 1\n"
        "\t\t}\n"
        "\t}\n"
        "\thandle {\n"
        "\t\treverse_proxy 127.0.0.1:30000 127.0.0.1:30001 {\n"
        "\t\t\tlb_policy first\n"
        "\t\t\tlb_try_duration 5s\n"
        "\t\t\tlb_try_interval 100ms\n"
        "\t\t\tfail_duration 2s\n"
        "\t\t\tmax_fails 1\n"
        "\t\t}\n"
        "\t}\n"
        "}\n"
    )


# --- the status report ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "block"),
    [
        ("plain", "```\nplain\n```"),
        ("  indented\n\n", "```\n  indented\n```"),
        ("a `tick` and ``two``", "```\na `tick` and ``two``\n```"),
        ("a ``` b", "````\na ``` b\n````"),
    ],
)
def test_a_fence_is_three_backticks_or_one_more_than_the_text_holds(text: str, block: str) -> None:
    assert PROGRAM.fence(text) == block
