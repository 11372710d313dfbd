#!/usr/bin/python3 -I
"""dreamscape-deploy: the one program the CI key may run on this VM.

sshd runs it as the forced command of the CI key (`restrict,command="..."` in the deploy
user's authorized_keys); what the client asked for arrives in SSH_ORIGINAL_COMMAND:

    deploy [options] <component>=<image> ...  stdin: frames (the compose file, maybe a login, the secrets)
    rollback [options]                        stdin: frames (maybe a login, the secrets), or nothing
    status                                    stdin: not read

Options, before the pairs: `--lock-wait <seconds>` and `--wait-timeout <seconds>` (deploy and
rollback), `--keep <releases>` (deploy). The pipeline sends all three with every call, from
its config; each is checked against the bounds in OPTIONS (the same bounds the config schema
reads from here). An option left out falls back to its environment variable, then to its
default, for a command run by hand.

Stdin frames: a header line `compose <length>`, `login <registry> <username> <length>` or
`secrets <length>`, then exactly <length> bytes of payload (the compose file, the registry
token, or the containers' secrets as one JSON object `{NAME: value}`); frames follow each
other, then end of input. Each kind at most once. Each secret becomes a file in the release's
`secrets/`, which the compose file's top-level `secrets` name; the files of a release that
stops running are removed.

Each release runs in one of two slots (compose projects) behind the VM's edge proxy, Caddy:
a new one starts beside the running one and takes the traffic once healthy; the old one then
finishes its requests and stops (see "the edge proxy and the two slots" below).

Only the Python standard library; the arguments of every child process are lists, so no input
ever reaches a shell. The other settings come from the environment, which only sshd sets
(`SetEnv` in sshd_config): see SETTINGS. The exit codes are the Exit table. Stdout carries a
Markdown summary for the pipeline's job summary; stderr carries progress; each deploy,
rollback or refusal leaves one line in the system log (`logger -t dreamscape-deploy`).
"""

from __future__ import annotations

import collections
import contextlib
import enum
import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

# --- the contract: patterns, limits, exit codes, settings ------------------------------

COMPONENT_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
"""The same pattern as the pipeline's component names (dreamscape-infra components/rules.py)."""

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_PORT = r"(:[0-9]{1,5})?"
_REGISTRY = rf"(localhost{_PORT}|{_LABEL}(\.{_LABEL})+{_PORT}|{_LABEL}:[0-9]{{1,5}})"
REGISTRY_PATTERN = rf"^{_REGISTRY}$"
"""A registry host: a dotted name, `localhost` or `name:port` (as docker tells it from a path)."""

_PATH_COMPONENT = r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*"
_TAG = r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"@sha256:[0-9a-f]{64}"
IMAGE_PATTERN = rf"^{_REGISTRY}(/{_PATH_COMPONENT})+({_TAG}({_DIGEST})?|{_DIGEST})$"
"""`registry/path:tag`, `registry/path@sha256:<64 hex>` or both; the registry is never implied."""

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$"
TOKEN_PATTERN = r"^[!-~]{1,4096}$"  # noqa: S105 - a pattern, not a credential
"""A registry token: printable ASCII without spaces."""

MAX_COMMAND_BYTES = 8192
MAX_PAIRS = 64
MAX_IMAGE_LENGTH = 512
MAX_HEADER_BYTES = 512
MAX_COMPOSE_BYTES = 256 * 1024
MAX_SECRETS_BYTES = 64 * 1024
SECRET_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,127}$"  # noqa: S105 - a pattern, not a credential
MAX_PUBLISHED = 16
"""Published ports per compose file: each takes two of the slots' loopback ports."""
STDIN_SECONDS = 60
"""The whole of stdin must arrive within this time."""

PROJECT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
NUMBER_PATTERN = r"^(0|[1-9][0-9]{0,5})$"
"""An option's value: decimal digits, no sign, no leading zero."""


class Exit(enum.IntEnum):
    DEPLOYED = 0
    ERROR = 1
    BAD_INPUT = 2
    NO_CHANGE = 3
    LOCK_TIMEOUT = 4
    ROLLED_BACK = 5
    ROLLBACK_FAILED = 6


@dataclass(frozen=True)
class Option:
    """A setting the request carries as `<flag> <whole number>`, within [low, high].

    dreamscape-infra's config schema reads its bounds and default from here (`deploy.*`), so
    what the config accepts and what the program accepts cannot drift apart. Left out of a
    request, it comes from `variable` (sshd's `SetEnv`), then from `default`.
    """

    flag: str
    variable: str
    default: int
    low: int
    high: int
    unit: str

    @property
    def field(self) -> str:
        """The Settings field it sets: `--lock-wait` -> `lock_wait`."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def expected(self) -> str:
        return f"a whole number of {self.unit} from {self.low} to {self.high}"

    def value(self, text: str) -> int | None:
        """The number `text` spells (decimal, no sign, no leading zero) when within bounds, else None."""
        if not matches(NUMBER_PATTERN, text) or not self.low <= int(text) <= self.high:
            return None
        return int(text)


LOCK_WAIT = Option("--lock-wait", "DREAMSCAPE_DEPLOY_LOCK_WAIT", 300, 0, 3600, "seconds")
WAIT_TIMEOUT = Option("--wait-timeout", "DREAMSCAPE_DEPLOY_WAIT_TIMEOUT", 180, 10, 3600, "seconds")
KEEP = Option("--keep", "DREAMSCAPE_DEPLOY_KEEP", 5, 2, 50, "releases")
OPTIONS = (LOCK_WAIT, WAIT_TIMEOUT, KEEP)
COMMAND_OPTIONS: dict[str, tuple[Option, ...]] = {
    "deploy": (LOCK_WAIT, WAIT_TIMEOUT, KEEP),
    "rollback": (LOCK_WAIT, WAIT_TIMEOUT),
    "status": (),
}
"""The commands and the options each one takes."""

PULL_TIMEOUT_DEFAULT = 600
SLOT_PORTS_DEFAULT = 20000
DRAIN_TIMEOUT_DEFAULT = 30

SETTINGS = {
    "DREAMSCAPE_DEPLOY_STATE_DIR": "/var/lib/dreamscape-deploy",
    "DREAMSCAPE_DEPLOY_PROJECT": "dreamscape",
    **{o.variable: str(o.default) for o in OPTIONS},
    "DREAMSCAPE_DEPLOY_PULL_TIMEOUT": str(PULL_TIMEOUT_DEFAULT),
    "DREAMSCAPE_DEPLOY_LOG_SOCKET": "/dev/log",
    "DREAMSCAPE_DEPLOY_EDGE_DIR": "/var/lib/dreamscape-edge",
    "DREAMSCAPE_DEPLOY_EDGE_ADMIN": "/run/caddy/admin.sock",
    "DREAMSCAPE_DEPLOY_EDGE_BIND": "",
    "DREAMSCAPE_DEPLOY_SLOT_PORTS": str(SLOT_PORTS_DEFAULT),
    "DREAMSCAPE_DEPLOY_DRAIN_TIMEOUT": str(DRAIN_TIMEOUT_DEFAULT),
    "DREAMSCAPE_DEPLOY_ACME_CA_ROOT": "",
    "DREAMSCAPE_DEPLOY_FIRST_BOOT": "/var/lib/dreamscape-first-boot",
}
"""Environment variable -> default. What each one means: dreamscape-infra's deploy_program.py
(SETTINGS) and docs/deploy.md."""

SYSLOG_TAG = "dreamscape-deploy"


def _synopsis(name: str) -> str:
    return " ".join([name, *(f"[{o.flag} <{o.unit}>]" for o in COMMAND_OPTIONS[name])])


USAGE = (
    f"usage: {_synopsis('deploy')} <component>=<image> ... (compose file framed on stdin) | "
    f"{_synopsis('rollback')} | {_synopsis('status')}; this key runs dreamscape-deploy and nothing else"
)


def matches(pattern: str, value: str) -> bool:
    """Whole-string match of an anchored ERE, ASCII only."""
    return re.fullmatch(pattern, value, re.ASCII) is not None


def image_variable(component: str) -> str:
    """The compose variable that carries a component's image: `auth-service` -> `AUTH_SERVICE_IMAGE`.

    A name starting with a digit gets a leading `_`, so the variable stays a valid name and no
    two components share one.
    """
    if not matches(COMPONENT_PATTERN, component):
        raise ValueError(f"not a component name: {component!r}")
    name = component.upper().replace("-", "_") + "_IMAGE"
    return "_" + name if name[0].isdigit() else name


def is_image(reference: str) -> bool:
    return len(reference) <= MAX_IMAGE_LENGTH and matches(IMAGE_PATTERN, reference)


NEVER_DEPLOYED_REGISTRY = "never-deployed.invalid"
"""Where the placeholder images of components never deployed point: `.invalid` never
resolves (RFC 2606), so such an image can never be pulled or started by mistake."""


def placeholder_image(component: str) -> str:
    """The image a never-deployed component's variable gets while its service is left out."""
    return f"{NEVER_DEPLOYED_REGISTRY}/{component}:none"


# --- parsing the request ------------------------------------------------------------------


class BadInputError(Exception):
    """A refused request: exit BAD_INPUT, nothing changed."""


@dataclass(frozen=True)
class Command:
    name: str
    pairs: tuple[tuple[str, str], ...] = ()
    settings: tuple[tuple[str, int], ...] = ()
    """(Settings field, value) for each option the request gave."""

    def describe(self) -> str:
        return " ".join([self.name, *(f"{c}={i}" for c, i in self.pairs)])


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def _pair(arg: str) -> tuple[str, str]:
    component, sep, image = arg.partition("=")
    if not sep:
        raise BadInputError(f"{_shown(arg)} is not <component>=<image>")
    if not matches(COMPONENT_PATTERN, component):
        raise BadInputError(f"{_shown(component)} is not a component name ({COMPONENT_PATTERN})")
    if not is_image(image):
        raise BadInputError(f"{_shown(image)} is not an image reference (registry/path:tag or @sha256:<digest>)")
    return component, image


def parse_command(text: str | None) -> Command:
    """SSH_ORIGINAL_COMMAND -> Command; raises BadInputError naming the first problem.

    `<command> [<option> <value>]... [<component>=<image>]...`: options first, each at most
    once, only those COMMAND_OPTIONS gives the command; pairs for `deploy` only.
    """
    if text is None or text == "":
        raise BadInputError("no command given")
    if len(text.encode("utf-8", "surrogateescape")) > MAX_COMMAND_BYTES:
        raise BadInputError(f"command longer than {MAX_COMMAND_BYTES} bytes")
    if not all(" " <= ch <= "~" for ch in text):
        raise BadInputError("command contains characters other than printable ASCII")
    words = text.split(" ")
    if "" in words:
        raise BadInputError("command has leading, trailing or doubled spaces")
    name, args = words[0], words[1:]
    if name not in COMMAND_OPTIONS:
        raise BadInputError(f"unknown command {_shown(name)}")
    options = {o.flag: o for o in COMMAND_OPTIONS[name]}
    settings: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []
    position = 0
    while position < len(args):
        word = args[position]
        if word.startswith("--"):
            option = options.get(word)
            if not options:
                raise BadInputError(f"{name} takes no arguments")
            if option is None:
                raise BadInputError(f"{name} takes no option {_shown(word)} (it takes {', '.join(options)})")
            if pairs:
                raise BadInputError(f"option {word} after a <component>=<image> pair: options come first")
            if option.field in settings:
                raise BadInputError(f"option {word} given twice")
            if position + 1 == len(args):
                raise BadInputError(f"option {word} needs a value: {option.expected}")
            value = option.value(args[position + 1])
            if value is None:
                raise BadInputError(f"{word} {_shown(args[position + 1])}: expected {option.expected}")
            settings[option.field] = value
            position += 2
            continue
        if name != "deploy":
            but = f" but its options ({', '.join(options)})" if options else ""
            raise BadInputError(f"{name} takes no arguments{but}")
        component, image = _pair(word)
        if any(component == c for c, _ in pairs):
            raise BadInputError(f"component {component} given twice")
        pairs.append((component, image))
        if len(pairs) > MAX_PAIRS:
            raise BadInputError(f"deploy takes at most {MAX_PAIRS} components")
        position += 1
    if name == "deploy" and not pairs:
        raise BadInputError("deploy needs at least one <component>=<image>")
    return Command(name, tuple(pairs), tuple(settings.items()))


@dataclass(frozen=True)
class Login:
    registry: str
    username: str
    token: str = ""

    def __repr__(self) -> str:  # never show the token
        return f"Login(registry={self.registry!r}, username={self.username!r})"


@dataclass(frozen=True)
class Frames:
    compose: bytes | None = None
    login: Login | None = None
    secrets: dict | None = field(default=None, repr=False)


def _length(word: str, limit: int, what: str) -> int:
    if not re.fullmatch(r"[1-9][0-9]{0,9}", word):
        raise BadInputError(f"{what} frame length {_shown(word)} is not a positive decimal number")
    value = int(word)
    if value > limit:
        raise BadInputError(f"{what} is {value} bytes; at most {limit} accepted")
    return value


def _payload(stream, length: int, what: str) -> bytes:
    data = stream.read(length)
    if len(data) != length:
        raise BadInputError(f"stdin ended inside the {what} frame ({len(data)} of {length} bytes)")
    return data


def read_frames(stream, allowed: frozenset[str]) -> Frames:
    """Read every frame from a binary stream up to its end; raises BadInputError on anything else."""
    compose: bytes | None = None
    login: Login | None = None
    secrets: dict | None = None
    while True:
        line = stream.readline(MAX_HEADER_BYTES + 1)
        if line == b"":
            break
        if not line.endswith(b"\n"):
            raise BadInputError(f"stdin frame header longer than {MAX_HEADER_BYTES} bytes or cut short")
        try:
            header = line[:-1].decode("ascii")
        except UnicodeDecodeError:
            raise BadInputError("stdin frame header is not ASCII") from None
        words = header.split(" ")
        kind = words[0]
        if kind not in allowed:
            expected = " or ".join(sorted(allowed)) or "nothing"
            raise BadInputError(f"unexpected stdin frame {_shown(kind)}; this command reads {expected}")
        if kind == "compose":
            if compose is not None:
                raise BadInputError("two compose frames on stdin")
            if len(words) != 2:
                raise BadInputError("compose frame header is `compose <length>`")
            compose = _payload(stream, _length(words[1], MAX_COMPOSE_BYTES, "compose file"), "compose")
            try:
                compose.decode("utf-8")
            except UnicodeDecodeError:
                raise BadInputError("compose file is not UTF-8") from None
            if b"\0" in compose:
                raise BadInputError("compose file contains a NUL byte")
        elif kind == "secrets":
            if secrets is not None or len(words) != 2:
                raise BadInputError("one secrets frame, its header `secrets <length>`")
            payload = _payload(stream, _length(words[1], MAX_SECRETS_BYTES, "secrets"), "secrets")
            try:
                secrets = json.loads(payload)
            except ValueError:
                raise BadInputError("secrets frame is not JSON") from None
            if not isinstance(secrets, dict) or not all(
                matches(SECRET_NAME_PATTERN, k) and isinstance(v, str) and v for k, v in secrets.items()
            ):
                raise BadInputError("secrets frame is not one object of NAME: non-empty string")
        else:
            if login is not None:
                raise BadInputError("two login frames on stdin")
            if len(words) != 4:
                raise BadInputError("login frame header is `login <registry> <username> <length>`")
            registry, username = words[1], words[2]
            if not matches(REGISTRY_PATTERN, registry):
                raise BadInputError(f"{_shown(registry)} is not a registry host")
            if not matches(USERNAME_PATTERN, username):
                raise BadInputError(f"{_shown(username)} is not a registry user name")
            token = _payload(stream, _length(words[3], 4096, "registry token"), "login")
            text = token.decode("ascii", "replace")
            if not matches(TOKEN_PATTERN, text):
                raise BadInputError("registry token must be printable ASCII without spaces")
            login = Login(registry, username, text)
    return Frames(compose, login, secrets)


# --- settings --------------------------------------------------------------------------------


class MisconfiguredError(Exception):
    """The VM's setup is wrong (not the caller's input): exit ERROR."""


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    project: str
    lock_wait: int
    wait_timeout: int
    pull_timeout: int
    keep: int
    log_socket: str
    edge_dir: Path
    edge_admin: str
    edge_bind: str
    slot_ports: int
    drain_timeout: int
    acme_ca_root: str
    first_boot: Path
    """What the VM's first boot wrote when it ended: `complete` or `FAILED (exit <n>)`."""


def _setting(environ, name: str) -> str:
    return environ.get(name) or SETTINGS[name]


def _seconds(environ, name: str, low: int) -> int:
    value = _setting(environ, name)
    if not re.fullmatch(r"[0-9]{1,6}", value) or int(value) < low:
        raise MisconfiguredError(f"{name}={value!r}: expected a whole number of at least {low}")
    return int(value)


def _fallback(environ, option: Option) -> int:
    """An option's value when the request leaves it out: sshd's `SetEnv`, else its default."""
    text = environ.get(option.variable) or str(option.default)
    value = option.value(text)
    if value is None:
        raise MisconfiguredError(f"{option.variable}={text!r}: expected {option.expected}")
    return value


PATH_VALUE = r"^/[A-Za-z0-9._/-]{1,200}$"
SETTING_PATTERNS = {
    "DREAMSCAPE_DEPLOY_STATE_DIR": (PATH_VALUE, "an absolute path"),
    "DREAMSCAPE_DEPLOY_PROJECT": (PROJECT_PATTERN, "a compose project name"),
    "DREAMSCAPE_DEPLOY_EDGE_DIR": (PATH_VALUE, "an absolute path"),
    "DREAMSCAPE_DEPLOY_EDGE_ADMIN": (PATH_VALUE, "an absolute path"),
    "DREAMSCAPE_DEPLOY_EDGE_BIND": (r"^([0-9A-Fa-f.:]{2,45})?$", "an IP address"),
    "DREAMSCAPE_DEPLOY_ACME_CA_ROOT": (r"^(/[A-Za-z0-9._/-]{1,200})?$", "an absolute path"),
    "DREAMSCAPE_DEPLOY_FIRST_BOOT": (PATH_VALUE, "an absolute path"),
}
"""The text settings and what each must be (the numbers are read by `_seconds`)."""


def load_settings(environ) -> Settings:
    text = {}
    for name, (pattern, what) in SETTING_PATTERNS.items():
        text[name] = environ.get(name) or SETTINGS[name]
        if not matches(pattern, text[name]):
            raise MisconfiguredError(f"{name}={text[name]!r}: expected {what}")
    slot_ports = _seconds(environ, "DREAMSCAPE_DEPLOY_SLOT_PORTS", 1024)
    if slot_ports + 2 * MAX_PUBLISHED > 65535:
        raise MisconfiguredError(f"DREAMSCAPE_DEPLOY_SLOT_PORTS={slot_ports}: the slots' ports would pass 65535")
    return Settings(
        state_dir=Path(text["DREAMSCAPE_DEPLOY_STATE_DIR"]),
        project=text["DREAMSCAPE_DEPLOY_PROJECT"],
        pull_timeout=_seconds(environ, "DREAMSCAPE_DEPLOY_PULL_TIMEOUT", 1),
        log_socket=_setting(environ, "DREAMSCAPE_DEPLOY_LOG_SOCKET"),
        edge_dir=Path(text["DREAMSCAPE_DEPLOY_EDGE_DIR"]),
        edge_admin=text["DREAMSCAPE_DEPLOY_EDGE_ADMIN"],
        edge_bind=text["DREAMSCAPE_DEPLOY_EDGE_BIND"],
        slot_ports=slot_ports,
        drain_timeout=_seconds(environ, "DREAMSCAPE_DEPLOY_DRAIN_TIMEOUT", 0),
        acme_ca_root=text["DREAMSCAPE_DEPLOY_ACME_CA_ROOT"],
        first_boot=Path(text["DREAMSCAPE_DEPLOY_FIRST_BOOT"]),
        **{option.field: _fallback(environ, option) for option in OPTIONS},
    )


# --- output ------------------------------------------------------------------------------------


class Console:
    """Progress on stderr. A client that went away must not stop a deploy half way, so a
    failed write silences the console instead of raising."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._open = True

    def say(self, text: str) -> None:
        if not self._open:
            return
        try:
            self._stream.write(text + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            self._open = False


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def ssh_client(environ) -> str:
    address = (environ.get("SSH_CLIENT") or "").split(" ")[0]
    return address if re.fullmatch(r"[0-9A-Fa-f.:]{1,45}", address) else "unknown"


def system_log(settings: Settings, console: Console, message: str) -> None:
    """One line in the system log; a missing log socket is reported, never fatal."""
    try:
        result = subprocess.run(
            ["logger", "--tag", SYSLOG_TAG, "--id=" + str(os.getpid()), "--socket", settings.log_socket, "--", message],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        console.say(f"warning: system log not written: {error}")
        return
    if result.returncode != 0:
        console.say(f"warning: system log not written: {result.stderr.strip()}")


def fence(text: str) -> str:
    """A Markdown code block that the text cannot close early: three backticks, or one more
    than the longest run of them in the text."""
    ticks = "`" * max([3, *(len(run) + 1 for run in re.findall(r"`+", text))])
    return f"{ticks}\n{text.rstrip()}\n{ticks}"


# --- state on disk -----------------------------------------------------------------------------

RELEASE_NAME = r"^[0-9]{6}-[0-9a-f]{12}$"
RECEIVED_FILE = "compose.received.yaml"
"""In a release: the environment's compose file as the deploy sent it."""
COMPOSE_FILE = "compose.yaml"
"""In a release: what runs, the received file's model without the never-deployed components."""
SECRETS_DIR = "secrets"
"""In a release (0700): one file per secret, mounted read-only into the containers that get it."""
ACCESSORIES_EXTENSION = "x-dreamscape-accessories"
"""The compose file's top-level list of accessories: services that run in their own project,
started by a deploy when missing and otherwise never recreated or stopped by one."""


@dataclass
class Release:
    path: Path
    record: dict

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def digest(self) -> str:
        return self.record["digest"]

    @property
    def images(self) -> dict[str, str]:
        return dict(self.record["images"])

    @property
    def slot(self) -> str:
        """The slot (compose project) the release runs in."""
        return self.record["slot"]

    @property
    def sites(self) -> list[Site]:
        return [Site(*entry) for entry in self.record.get("sites", [])]

    @property
    def domain(self) -> Domain | None:
        found = self.record.get("domain")
        return Domain(**found) if found else None

    def upstreams(self, settings: Settings) -> list[int]:
        """The 127.0.0.1 ports its slot publishes for the edge."""
        return [site.upstream(settings, index, self.slot) for index, site in enumerate(self.sites)]

    @property
    def not_deployed(self) -> list[str]:
        """Components of the compose file this release leaves out: none has had an image here."""
        return list(self.record.get("not_deployed", []))

    def save(self) -> None:
        write_atomic(self.path / "release.json", json.dumps(self.record, indent=2, sort_keys=True) + "\n")


def write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class State:
    """`state.json` (which release runs, which ran before, whether it is healthy) and `releases/`."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.state_dir
        self.releases = self.root / "releases"
        self.file = self.root / "state.json"
        self.data = {"current": None, "previous": None, "healthy": False}
        if self.file.exists():
            self.data.update(json.loads(self.file.read_text(encoding="utf-8")))

    def release(self, key: str) -> Release | None:
        name = self.data.get(key)
        if not name:
            return None
        path = self.releases / name
        return Release(path, json.loads((path / "release.json").read_text(encoding="utf-8")))

    def save(self, current: Release | None, previous: Release | None, healthy: bool) -> None:
        self.data = {
            "current": current.id if current else None,
            "previous": previous.id if previous else None,
            "healthy": healthy,
            "updated": utc_now(),
        }
        write_atomic(self.file, json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    def names(self) -> list[str]:
        if not self.releases.is_dir():
            return []
        return sorted(p.name for p in self.releases.iterdir() if matches(RELEASE_NAME, p.name))

    def stage(self, compose: bytes, images: dict[str, str], deployed: dict[str, str], slot: str) -> Release:
        names = self.names()
        number = int(names[-1][:6]) + 1 if names else 1
        digest = digest_of(compose, images)
        path = self.releases / f"{number:06d}-{digest}"
        path.mkdir(parents=True, mode=0o750)
        (path / RECEIVED_FILE).write_bytes(compose)
        (path / ".env").write_text(env_file(images), encoding="utf-8")
        record = {"digest": digest, "created": utc_now(), "deployed": deployed, "images": images, "slot": slot}
        release = Release(path, {**record, "result": "staged"})
        release.save()
        return release

    def prune(self, keep: int) -> None:
        kept = {self.data.get("current"), self.data.get("previous")}
        names = [n for n in self.names() if n not in kept]
        for name in names[: max(0, len(names) - (keep - len(kept - {None})))]:
            shutil.rmtree(self.releases / name, ignore_errors=True)


def write_secrets(directory: Path, secrets: dict) -> None:
    """One file per secret in `directory`, which only the deploy user (and Docker) can enter;
    the files are world-readable inside it, so a container's own user can read its mount."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    for name, value in secrets.items():
        descriptor = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with open(descriptor, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o444)
            handle.write(value)


def secrets_fingerprint(secrets: dict | None) -> str:
    """What tells a rotation apart: kept in release.json, readable by the deploy user only."""
    return hashlib.sha256(json.dumps(secrets or {}, sort_keys=True).encode()).hexdigest()


def check_secrets(model: dict, release: Release) -> None:
    """Every secret file the model mounts from the release's `secrets/` exists."""
    inside = str(release.path / SECRETS_DIR) + "/"
    for name, spec in sorted((model.get("secrets") or {}).items()):
        path = spec.get("file")
        if isinstance(path, str) and path.startswith(inside) and not os.path.isfile(path):
            raise BadInputError(
                f"secret {name} was not sent: the deploy sends the environment's APP_SECRETS "
                "(its stack writes them; run pulumi up for it)"
            )


def env_file(images: dict[str, str]) -> str:
    """The release's `.env`: one `<COMPONENT>_IMAGE=<image>` line per component."""
    return "".join(f"{name}={images[name]}\n" for name in sorted(images))


def digest_of(compose: bytes, images: dict[str, str]) -> str:
    """What identifies a release: its compose file and its images."""
    return hashlib.sha256(compose + b"\0" + env_file(images).encode()).hexdigest()[:12]


# --- the lock ----------------------------------------------------------------------------------


class LockTimeoutError(Exception):
    pass


def describe_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "an unknown process"
    return f"pid {info.get('pid')} ({info.get('command')}) from {info.get('client')} since {info.get('since')}"


def lock_holder(settings: Settings) -> str | None:
    """Who holds the lock right now, or None; for `status`, which never waits for it."""
    path = settings.state_dir / "lock"
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return describe_holder(fd)
    finally:
        os.close(fd)
    return None


class Lock:
    """flock(2) on `<state>/lock`; the holder writes who it is into the file."""

    def __init__(self, settings: Settings, console: Console, holder: dict) -> None:
        self.path = settings.state_dir / "lock"
        self.wait = settings.lock_wait
        self.console = console
        self.holder = holder
        self.fd = -1

    def _held_by(self) -> str:
        return describe_holder(self.fd)

    def __enter__(self) -> Lock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        deadline = time.monotonic() + self.wait
        announced = False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    held_by = self._held_by()
                    os.close(self.fd)
                    raise LockTimeoutError(
                        f"gave up after {self.wait} s: another deploy holds the lock: {held_by}"
                    ) from None
                if not announced:
                    self.console.say(f"waiting up to {self.wait} s for the lock held by {self._held_by()}")
                    announced = True
                time.sleep(0.1)
        info = json.dumps({**self.holder, "since": utc_now()}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, info, 0)
        return self

    def __exit__(self, *exc) -> None:
        os.ftruncate(self.fd, 0)
        os.close(self.fd)


# --- docker ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    ok: bool
    step: str
    tail: str


def child_environment(environ, docker_config: str | None) -> dict[str, str]:
    """The environment docker runs with: images come only from the release's .env file, so
    variables that could override it (`*_IMAGE`, `COMPOSE_*`) are dropped."""
    env = {k: v for k, v in environ.items() if not (k.endswith("_IMAGE") or k.startswith("COMPOSE_"))}
    if docker_config:
        env["DOCKER_CONFIG"] = docker_config
    return env


def compose_base(settings: Settings, release: Release, file: str = COMPOSE_FILE) -> list[str]:
    return [
        "docker",
        "compose",
        "--project-name",
        slot_project(settings, release.slot),
        "--project-directory",
        str(release.path),
        "--file",
        str(release.path / file),
        "--env-file",
        str(release.path / ".env"),
    ]


def run_streamed(args: list[str], env: dict, console: Console, timeout: int, step: str) -> Outcome:
    """Run docker, passing its output to stderr line by line and keeping the last lines."""
    console.say("$ " + " ".join(args))
    tail: collections.deque[str] = collections.deque(maxlen=20)
    try:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
        )
    except OSError as error:
        return Outcome(False, step, str(error))
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            console.say(line)
        code = process.wait()
    finally:
        timer.cancel()
    if code < 0:
        tail.append(f"(killed after {timeout} s)")
    elif code:
        tail.append(f"(exit {code})")
    return Outcome(code == 0, step, "\n".join(tail))


def compose_query(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """A docker call that only reads (config, ps): its output captured, bounded in time."""
    return subprocess.run(
        args, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60, check=False
    )


def compose_model(settings: Settings, release: Release, env: dict, *options: str) -> dict:
    """`docker compose config --format json` of the received file: validates it and returns the model."""
    result = compose_query(
        [*compose_base(settings, release, RECEIVED_FILE), "config", "--format", "json", *options], env
    )
    if result.returncode != 0:
        raise BadInputError("docker compose config refused the compose file:\n" + result.stderr.strip())
    try:
        model = json.loads(result.stdout)
    except ValueError:
        raise BadInputError("docker compose config did not print a JSON model") from None
    if not isinstance(model, dict) or not isinstance(model.get("services"), dict):
        raise BadInputError("the compose file defines no services")
    return model


def running_model(release: Release) -> dict:
    """The model a staged release runs (its `compose.yaml`)."""
    return json.loads((release.path / COMPOSE_FILE).read_text(encoding="utf-8"))


def project_containers(settings: Settings, env: dict, slot: str) -> list[dict]:
    """`docker compose ps --all` of a slot's project, as JSON: one object per container."""
    result = compose_query(
        ["docker", "compose", "--project-name", slot_project(settings, slot), "ps", "--all", "--format", "json"], env
    )
    if result.returncode != 0:
        raise OSError(f"docker compose ps failed: {result.stderr.strip()}")
    text = result.stdout.strip()
    if text.startswith("["):  # Compose before 2.21 prints one array
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def config_hashes(settings: Settings, release: Release, env: dict) -> dict[str, str]:
    """service -> the configuration hash compose labels its containers with, for this release."""
    result = compose_query([*compose_base(settings, release), "config", "--hash", "*"], env)
    if result.returncode != 0:
        raise OSError(f"docker compose config --hash failed: {result.stderr.strip()}")
    return dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)


CONFIG_HASH_LABEL = re.compile(r"(?:^|,)com\.docker\.compose\.config-hash=([0-9a-f]+)")


def docker_problems(settings: Settings, release: Release, env: dict, configuration: bool = True) -> dict[str, str]:
    """What Docker itself shows wrong with `release`: service -> problem; empty when every
    service of the release has its containers running, healthy (or without a health check)
    and made from this release's configuration, and the project runs nothing else.

    `state.json` only says what the last deploy saw; containers stop, go unhealthy or are
    removed by hand after it, so only this decides that a release "already runs".
    `configuration=False`: right after `up`, whose containers are this configuration by
    construction. A service in another's namespace (`network_mode`, `ipc` or `pid` set to
    `service:<name>`) is labelled with the hash of the resolved `container:<id>`, which `config
    --hash` never prints: its configuration is not compared, only its state and health.
    """
    services = running_model(release)["services"]
    hashes = config_hashes(settings, release, env)
    containers = project_containers(settings, env, release.slot)
    problems: dict[str, str] = {}
    for name in services:
        mine = [c for c in containers if c.get("Service") == name]
        if not mine:
            problems[name] = "no container"
        for container in mine:
            state, health = container.get("State"), container.get("Health") or ""
            found = CONFIG_HASH_LABEL.search(container.get("Labels") or "")
            if state != "running":
                problems[name] = str(state)
            elif health not in ("", "healthy"):
                problems[name] = health
            elif (
                configuration
                and not _joins_another(services[name])
                and (found is None or found.group(1) != hashes.get(name))
            ):
                problems[name] = "runs another configuration"
    for container in containers:
        if container.get("Service") not in services:
            problems[str(container.get("Service"))] = "not part of this release"
    return problems


def release_problems(settings: Settings, release: Release, env: dict) -> dict[str, str]:
    """`docker_problems`, and the edge when it sends the traffic to the other slot."""
    problems = docker_problems(settings, release, env)
    if Edge(settings).live() != release.slot:
        problems["edge"] = f"sends traffic to the {other_slot(release.slot)} slot"
    return problems


def _joins_another(service: dict) -> bool:
    return any(str(service.get(key) or "").startswith("service:") for key in ("network_mode", "ipc", "pid"))


def describe_problems(problems: dict[str, str]) -> str:
    return ", ".join(f"{name} {problem}" for name, problem in sorted(problems.items()))


def changed_services(model: dict, before: Release | None) -> list[str]:
    """The services whose image differs from the release before (all of them on a first
    deploy): the only ones pulled. A registry's retention clean-up may have removed an
    image that still runs; pulling it again would fail a deploy that does not touch it."""
    if before is None or not (before.path / COMPOSE_FILE).exists():
        return list(model["services"])
    old = running_model(before)["services"]
    return [
        name
        for name, service in model["services"].items()
        if name not in old or old[name].get("image") != service.get("image")
    ]


def release_model(settings: Settings, release: Release, env: dict, images: dict[str, str]) -> tuple[dict, list[str]]:
    """The model a release runs, and the components it leaves out.

    Each service named after a component takes its image from that component's variable.
    A component never deployed here has no image: its variable gets a placeholder that can
    never be pulled, so compose can read the file, and its service is then removed from the
    model with whatever only it used. What remains is written as the release's compose file
    (JSON is YAML), which `pull`, `up --wait` and `--remove-orphans` act on.
    """
    names = compose_model(settings, release, env, "--no-interpolate")["services"]
    placeholders = {
        image_variable(name): placeholder_image(name)
        for name in names
        if matches(COMPONENT_PATTERN, name) and image_variable(name) not in images
    }
    model = compose_model(settings, release, {**env, **placeholders})
    left_out = sorted(
        name
        for name, service in model["services"].items()
        if matches(COMPONENT_PATTERN, name) and service.get("image") == placeholders.get(image_variable(name))
    )
    return without_services(model, left_out), left_out


RESOURCE_KINDS = ("networks", "volumes", "configs", "secrets")


def resources_used(service: dict) -> dict[str, set[str]]:
    """The top-level networks, volumes, configs and secrets a service names (short or long syntax)."""

    def sources(entries) -> set[str]:
        # A list of names or `source:target` strings or `{source: ...}` entries; a map (networks'
        # long syntax) gives its keys.
        return {e.get("source") if isinstance(e, dict) else str(e).split(":")[0] for e in entries or ()}

    return {kind: sources(service.get(kind)) for kind in RESOURCE_KINDS}


def without_services(model: dict, left_out: list[str]) -> dict:
    """The model without the `left_out` services and the resources only they use.

    A kept service that depends on a left-out one (`depends_on`, which compose also fills from
    links, `service:` namespaces and `volumes_from`) is refused: compose would refuse the file,
    and starting the service without what it needs would break it silently. A dependency
    marked `required: false` is optional by definition, and is dropped instead.
    """
    kept = {name: dict(service) for name, service in model["services"].items() if name not in left_out}
    for name, service in kept.items():
        dependencies = service.get("depends_on") or {}
        if isinstance(dependencies, list):
            dependencies = dict.fromkeys(dependencies)
        for dependency, spec in dependencies.items():
            if dependency in left_out and (spec or {}).get("required", True):
                raise BadInputError(
                    f"service {name} depends on {dependency}, which this environment has never deployed: "
                    f"deploy {dependency} first, or in the same deploy as {name}"
                )
        if any(d in left_out for d in dependencies):
            service["depends_on"] = {d: spec for d, spec in dependencies.items() if d not in left_out}
            if not service["depends_on"]:
                del service["depends_on"]
    result = {**model, "services": kept}
    needed = [resources_used(service) for service in kept.values()]
    for kind in RESOURCE_KINDS:
        only_theirs = set().union(*(resources_used(model["services"][name])[kind] for name in left_out))
        only_theirs -= set().union(*(used[kind] for used in needed))
        if only_theirs and isinstance(model.get(kind), dict):
            result[kind] = {key: value for key, value in model[kind].items() if key not in only_theirs}
    return result


def check_model(model: dict, pairs: tuple[tuple[str, str], ...]) -> None:
    for component, image in pairs:
        service = model["services"].get(component)
        if not isinstance(service, dict):
            raise BadInputError(f"component {component} is not a service of the compose file")
        if service.get("image") != image:
            raise BadInputError(
                f"service {component} runs image {service.get('image')!r}, not {image}: "
                f"its image must be ${{{image_variable(component)}}}"
            )


def accessories_of(settings: Settings, model: dict) -> tuple[dict, dict | None]:
    """The model split in two: the components (slotted) and the accessories (their own project,
    `<project>-accessories`). An accessory's networks get one name both projects use, and only
    the components that name one join it; the component side sees them as external."""
    names = model.get(ACCESSORIES_EXTENSION) or []
    if not isinstance(names, list) or not all(n in model["services"] for n in names if isinstance(n, str)):
        raise BadInputError(f"{ACCESSORIES_EXTENSION} is a list of the file's services")
    if not names:
        return model, None
    app = json.loads(json.dumps(without_services(model, names)))
    accessories = json.loads(json.dumps(without_services(model, [n for n in model["services"] if n not in names])))
    for key in set().union(*(resources_used(model["services"][n])["networks"] for n in names)):
        accessories["networks"][key] = {"name": f"{settings.project}_{key}"}
        if key in (app.get("networks") or {}):
            app["networks"][key] = {"name": f"{settings.project}_{key}", "external": True}
    return app, accessories


def start_accessories(settings: Settings, model: dict, env: dict, console: Console) -> Outcome:
    """Start the accessories that do not run (`up --no-recreate`: what runs stays as it is).
    `model` is `accessories_of`'s own copy, changed here as the accessories run it."""
    home = settings.state_dir / "accessories"
    home.mkdir(mode=0o750, exist_ok=True)
    share_volumes(settings, model)
    files = {key: spec for key, spec in (model.get("secrets") or {}).items() if spec.get("file")}
    write_secrets(
        home / SECRETS_DIR, {key: Path(spec["file"]).read_text(encoding="utf-8") for key, spec in files.items()}
    )
    for key, spec in files.items():
        spec["file"] = str(home / SECRETS_DIR / key)
    model.pop("name", None)
    write_atomic(home / COMPOSE_FILE, json.dumps(model, indent=2, ensure_ascii=False) + "\n")
    args = ["docker", "compose", "--project-name", f"{settings.project}-accessories", "--project-directory"]
    args += [str(home), "--file", str(home / COMPOSE_FILE), "up", "--detach", "--no-recreate", "--wait"]
    args += ["--wait-timeout", str(settings.wait_timeout)]
    return run_streamed(args, env, console, settings.wait_timeout + settings.pull_timeout, "accessories up")


class Registry:
    """A throwaway docker config for one run: the token goes in on stdin, serves the pulls,
    and is deleted with the directory whatever happens."""

    def __init__(self, settings: Settings, login: Login | None, environ, console: Console) -> None:
        self.login = login
        self.environ = environ
        self.console = console
        self.directory = settings.state_dir / f"auth-{os.getpid()}"
        self.env = child_environment(environ, None)

    def __enter__(self) -> Registry:
        if self.login is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(mode=0o700)
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def sign_in(self) -> Outcome:
        if self.login is None:
            return Outcome(True, "login", "")
        args = ["docker", "--config", str(self.directory), "login", "--username", self.login.username]
        args += ["--password-stdin", self.login.registry]
        self.console.say("$ " + " ".join(args))
        result = subprocess.run(
            args,
            input=self.login.token + "\n",
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            return Outcome(False, "login", (result.stdout + result.stderr).strip())
        self.env = child_environment(self.environ, str(self.directory))
        return Outcome(True, "login", "")


def start(
    settings: Settings,
    release: Release,
    env: dict,
    console: Console,
    pull: list[str],
    recreate: list[str] | None = None,
) -> Outcome:
    """Pull the `pull` services (none: no pull), then `up --wait` the release. `recreate`
    names the only services to touch, recreated even when their configuration is unchanged
    (a stopped or unhealthy container of the running release)."""
    base = compose_base(settings, release)
    if pull:
        pulled = run_streamed([*base, "pull", *pull], env, console, settings.pull_timeout, "compose pull")
        if not pulled.ok:
            return pulled
    up = [*base, "up", "--detach", "--wait", "--wait-timeout", str(settings.wait_timeout), "--remove-orphans"]
    if recreate is not None:
        up += ["--force-recreate", "--no-deps", *recreate]
    return run_streamed(up, env, console, settings.wait_timeout + 120, "compose up")


# --- the edge proxy and the two slots --------------------------------------------------------
#
# Every release runs in one of two slots, each its own compose project (`<project>-blue`,
# `<project>-green`), so a new release starts beside the running one and the components of a
# release reach each other by service name inside their own slot only. No slot publishes on the
# VM's addresses: each published port of the compose file becomes a port on 127.0.0.1 per slot,
# and the edge proxy (Caddy, a systemd service) listens on the published port and forwards to
# the slot the marker file names. The switch is that file: Caddy's `file` matcher reads it on
# every request, so moving traffic needs no reload and keeps every client connection.

SLOTS = ("blue", "green")
EDGE_MARKER = "green"
"""In the edge directory: present while the green slot takes the traffic, absent while blue does."""
CADDYFILE = "Caddyfile"
EDGE_EXTENSION = "x-dreamscape-edge"
"""The compose file's top-level key for the edge: the domain served over HTTPS and its ACME account."""
DOMAIN_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
ACME_PATTERN = r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$"
EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}$"
HSTS = "max-age=31536000"
"""A year: browsers that saw the domain over HTTPS refuse plain HTTP to it for that long."""
PROXY_OPTIONS = (
    "lb_policy first",
    "lb_try_duration 5s",
    "lb_try_interval 100ms",
    "fail_duration 2s",
    "max_fails 1",
)
"""How the edge forwards: to the first upstream (the live slot) unless it failed in the last 2 s;
a request whose connection fails is tried again for up to 5 s instead of answered with 502."""
DRAIN_SETTLE_SECONDS = 0.2
"""After the switch: time for requests that passed the matcher just before it to reach Caddy's count."""


def other_slot(slot: str) -> str:
    return SLOTS[1 - SLOTS.index(slot)]


def slot_project(settings: Settings, slot: str) -> str:
    return f"{settings.project}-{slot}"


@dataclass(frozen=True)
class Site:
    """A port the compose file publishes: the edge listens on it and forwards to `service`."""

    published: int
    service: str
    target: int

    def upstream(self, settings: Settings, index: int, slot: str) -> int:
        """The 127.0.0.1 port `slot`'s container publishes for this site."""
        return settings.slot_ports + 2 * index + SLOTS.index(slot)


@dataclass(frozen=True)
class Domain:
    name: str
    acme_directory: str
    acme_email: str | None
    http_port: int
    https_port: int


def published_sites(model: dict) -> list[Site]:
    """The published ports of a release's model, sorted; each must be one TCP port of one service."""
    sites: list[Site] = []
    for name, service in sorted(model["services"].items()):
        for entry in service.get("ports") or ():
            published = str(entry.get("published") or "")
            if entry.get("protocol", "tcp") != "tcp" or not re.fullmatch(r"[1-9][0-9]{0,4}", published):
                raise BadInputError(f"service {name} publishes {entry!r}: the edge forwards one TCP port per entry")
            if int(published) > 65535 or not isinstance(entry.get("target"), int):
                raise BadInputError(f"service {name} publishes {entry!r}: not a port")
            sites.append(Site(int(published), name, entry["target"]))
    seen: dict[int, str] = {}
    for site in sites:
        if site.published in seen:
            raise BadInputError(f"port {site.published} is published by both {seen[site.published]} and {site.service}")
        seen[site.published] = site.service
    if len(sites) > MAX_PUBLISHED:
        raise BadInputError(f"{len(sites)} published ports; the edge forwards at most {MAX_PUBLISHED}")
    return sorted(sites, key=lambda site: site.published)


EDGE_KEYS = {
    "domain": (lambda v: isinstance(v, str) and len(v) <= 253 and matches(DOMAIN_PATTERN, v), "a lowercase DNS name"),
    "acmeDirectory": (lambda v: isinstance(v, str) and matches(ACME_PATTERN, v), "an https:// URL"),
    "acmeEmail": (lambda v: v is None or (isinstance(v, str) and matches(EMAIL_PATTERN, v)), "an e-mail address"),
    "httpPort": (lambda v: type(v) is int and 1 <= v <= 65535, "a port"),
    "httpsPort": (lambda v: type(v) is int and 1 <= v <= 65535, "a port"),
}
"""The keys of `x-dreamscape-edge`: each value's check and what it must be."""


def edge_domain(model: dict, sites: list[Site]) -> Domain | None:
    """The compose file's `x-dreamscape-edge`: None for plain HTTP on the published ports."""
    edge = model.get(EDGE_EXTENSION)
    if edge is None:
        for site in sites:
            if site.published == 443:
                raise BadInputError(
                    f"service {site.service} publishes 443 without {EDGE_EXTENSION}.domain: 443 is HTTPS"
                )
        return None
    if not isinstance(edge, dict) or not set(edge) <= set(EDGE_KEYS):
        raise BadInputError(f"{EDGE_EXTENSION} takes {', '.join(EDGE_KEYS)}")
    values = {"httpPort": 80, "httpsPort": 443, **edge}
    for key, (valid, what) in EDGE_KEYS.items():
        if not valid(values.get(key)):
            raise BadInputError(f"{EDGE_EXTENSION}.{key}: {values.get(key)!r} is not {what}")
    if len(sites) != 1:
        raise BadInputError(f"{EDGE_EXTENSION}.domain serves one published service; the file publishes {len(sites)}")
    return Domain(*(values.get(key) for key in ("domain", "acmeDirectory", "acmeEmail", "httpPort", "httpsPort")))


def slotted(settings: Settings, model: dict, sites: list[Site], slot: str) -> dict:
    """The model as `slot` runs it: each published port on its slot port, on 127.0.0.1 only."""
    services = {name: dict(service) for name, service in model["services"].items()}
    for name in services:
        services[name].pop("ports", None)
    for index, site in enumerate(sites):
        entry = {"mode": "ingress", "host_ip": "127.0.0.1", "target": site.target, "protocol": "tcp"}
        entry["published"] = str(site.upstream(settings, index, slot))
        services[site.service].setdefault("ports", []).append(entry)
    return {**model, "services": services}


def caddyfile(settings: Settings, sites: list[Site], domain: Domain | None) -> str:
    """The edge's whole configuration for a release's published ports (the same text for every
    release that publishes the same ports, so a deploy leaves Caddy's configuration alone)."""
    options = [f"admin unix/{settings.edge_admin}"]
    if settings.edge_bind:
        options.append(f"default_bind {settings.edge_bind}")
    if domain is None:
        options.append("auto_https off")
    else:
        options += [f"http_port {domain.http_port}", f"https_port {domain.https_port}"]
        options.append(f"acme_ca {domain.acme_directory}")
        if domain.acme_email:
            options.append(f"email {domain.acme_email}")
        if settings.acme_ca_root:
            options.append(f"acme_ca_root {settings.acme_ca_root}")
    lines = ["# dreamscape-deploy writes this file", "{"]
    lines += [f"\t{option}" for option in options] + ["}"]
    for index, site in enumerate(sites):
        address = domain.name if domain else f"http://:{site.published}"
        blue, green = (f"127.0.0.1:{site.upstream(settings, index, slot)}" for slot in SLOTS)
        lines += ["", f"# {site.service}: container port {site.target}", f"{address} {{"]
        if domain:
            lines.append(f'\theader Strict-Transport-Security "{HSTS}"')
        lines += [
            f"\t@{EDGE_MARKER} file {{",
            f"\t\troot {settings.edge_dir}",
            f"\t\ttry_files {EDGE_MARKER}",
            "\t}",
        ]
        for matcher, upstreams in ((f"@{EDGE_MARKER} ", f"{green} {blue}"), ("", f"{blue} {green}")):
            lines += [f"\thandle {matcher}{{", f"\t\treverse_proxy {upstreams} {{"]
            lines += [f"\t\t\t{option}" for option in PROXY_OPTIONS]
            lines += ["\t\t}", "\t}"]
        lines.append("}")
    return "\n".join(lines) + "\n"


class EdgeError(Exception):
    """The edge proxy refused or did not answer: exit ERROR before the release moves."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Edge:
    """Caddy, through its admin socket, and the slot marker in the edge directory."""

    def __init__(self, settings: Settings, console: Console | None = None) -> None:
        self.settings = settings
        self.console = console or Console(sys.stderr)
        self.marker = settings.edge_dir / EDGE_MARKER

    def _call(self, method: str, path: str, body: bytes = b"", content_type: str = "") -> bytes:
        connection = _UnixConnection(self.settings.edge_admin, timeout=30)
        try:
            # Caddy's admin API refuses a request over its socket that names a host.
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", "")
            if content_type:
                connection.putheader("Content-Type", content_type)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            data = response.read(1024 * 1024)
        except OSError as error:
            raise EdgeError(f"the edge proxy's admin socket {self.settings.edge_admin}: {error}") from None
        finally:
            connection.close()
        if response.status != 200:
            raise EdgeError(
                f"the edge proxy answered {method} {path} with {response.status}: "
                + data[:2000].decode(errors="replace")
            )
        return data

    def live(self) -> str:
        """The slot the edge sends traffic to."""
        return EDGE_MARKER if self.marker.exists() else other_slot(EDGE_MARKER)

    def configure(self, sites: list[Site], domain: Domain | None) -> None:
        """Load the configuration for these sites; Caddy leaves an unchanged one as it is."""
        text = caddyfile(self.settings, sites, domain)
        self._call("POST", "/load", text.encode(), "text/caddyfile")
        path = self.settings.edge_dir / CADDYFILE
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            write_atomic(path, text)  # what Caddy loads when it starts again
            os.chmod(path, 0o640)

    def switch(self, slot: str) -> None:
        if self.live() == slot:
            return
        self.console.say(f"edge: traffic to the {slot} slot")
        if slot == EDGE_MARKER:
            write_atomic(self.marker, "")
            os.chmod(self.marker, 0o640)
        else:
            self.marker.unlink()

    def in_flight(self, ports: list[int]) -> int:
        """Requests Caddy has open to these 127.0.0.1 ports."""
        upstreams = json.loads(self._call("GET", "/reverse_proxy/upstreams") or b"[]")
        addresses = {f"127.0.0.1:{port}" for port in ports}
        return sum(u.get("num_requests", 0) for u in upstreams if u.get("address") in addresses)

    def drain(self, ports: list[int]) -> int:
        """Wait until no request is open to `ports` (at most the drain timeout); the ones left open."""
        time.sleep(DRAIN_SETTLE_SECONDS)
        deadline = time.monotonic() + self.settings.drain_timeout
        while True:
            open_requests = self.in_flight(ports)
            if open_requests == 0 or time.monotonic() >= deadline:
                return open_requests
            time.sleep(0.1)


# --- commands ----------------------------------------------------------------------------------


@dataclass
class Report:
    code: Exit
    title: str
    lines: list[str]
    log: str


def images_table(pairs) -> list[str]:
    rows = ["| component | image |", "| --- | --- |"]
    rows += [f"| `{c}` | `{i}` |" for c, i in pairs]
    return rows


def not_deployed_lines(release: Release) -> list[str]:
    if not release.not_deployed:
        return []
    names = ", ".join(f"`{name}`" for name in release.not_deployed)
    return ["", f"Not deployed yet (no image here so far, so not part of this release): {names}."]


def failure_lines(outcome: Outcome) -> list[str]:
    return [
        "",
        f"<details><summary>last lines of docker {outcome.step}</summary>",
        "",
        fence(outcome.tail or "(no output)"),
        "",
        "</details>",
    ]


def _derived(settings: Settings, key: str, spec) -> bool:
    """Whether compose named `spec` after a slot's project (the file gave it no name of its own)."""
    projects = {f"{slot_project(settings, s)}_{key}" for s in SLOTS}
    return isinstance(spec, dict) and not spec.get("external") and spec.get("name") in projects


def share_volumes(settings: Settings, model: dict) -> None:
    """Name each volume compose derived from a slot's project `<project>_<volume>`: both slots and
    the accessories then use the same data."""
    for key, spec in (model.get("volumes") or {}).items():
        if _derived(settings, key, spec):
            spec["name"] = f"{settings.project}_{key}"


def place(settings: Settings, release: Release, model: dict, slot: str) -> None:
    """Write the compose file `release` runs with in `slot`, and record the slot."""
    running = slotted(settings, model, release.sites, slot)
    for key, spec in (running.get("networks") or {}).items():
        if _derived(settings, key, spec):
            del spec["name"]  # each slot its own network: a release's components reach only each other
    share_volumes(settings, running)
    running.pop("name", None)
    write_atomic(release.path / COMPOSE_FILE, json.dumps(running, indent=2, ensure_ascii=False) + "\n")
    release.record["slot"] = slot
    release.save()


def slot_down(settings: Settings, slot: str, env: dict, console: Console) -> Outcome:
    """Stop and remove whatever runs in `slot` (each container gets its stop grace period)."""
    args = ["docker", "compose", "--project-name", slot_project(settings, slot), "down", "--remove-orphans"]
    return run_streamed(args, env, console, 300, "compose down")


def empty_slot(settings: Settings, slot: str, env: dict, console: Console) -> Outcome:
    """`slot_down` when anything of the slot's project exists, else nothing to do."""
    if not project_containers(settings, env, slot):
        return Outcome(True, "compose down", "")
    return slot_down(settings, slot, env, console)


def cut_over(settings: Settings, release: Release, before: Release | None, env: dict, console: Console) -> list[str]:
    """`release` runs healthy in its slot: send the traffic to it, let `before` finish the requests
    it has, then stop `before`'s slot. Returns notes for the summary."""
    edge = Edge(settings, console)
    edge.configure(release.sites, release.domain)
    edge.switch(release.slot)
    if before is None or before.slot == release.slot:
        return []
    notes = []
    left = edge.drain(before.upstreams(settings))
    if left:
        notes.append(
            f"{left} request(s) to release `{before.id}` were still open {settings.drain_timeout} s after the switch."
        )
    down = slot_down(settings, before.slot, env, console)
    if down.ok:
        shutil.rmtree(before.path / SECRETS_DIR, ignore_errors=True)
    else:
        notes.append(f"The {before.slot} slot (release `{before.id}`) could not be stopped; it takes no traffic.")
        notes += failure_lines(down)
    return notes


def start_in_slot(settings: Settings, release: Release, env: dict, console: Console, pull: list[str]) -> Outcome:
    """Empty the release's slot (what a killed deploy may have left), then start the release there."""
    emptied = empty_slot(settings, release.slot, env, console)
    if not emptied.ok:
        return emptied
    return start(settings, release, env, console, pull)


def restore(
    settings: Settings,
    state: State,
    fallback: Release | None,
    env: dict,
    console: Console,
    failed: Release,
    outcome: Outcome,
    previous: Release | None,
) -> Report:
    """`failed` did not come up: remove it, make sure `fallback` (the release that ran before,
    still running in the other slot) is healthy and takes the traffic; `previous` is what the
    state then names as the release before."""
    failed.record["result"] = f"failed at {outcome.step}"
    failed.save()
    what = f"release `{failed.id}` failed at `docker {outcome.step}`"
    log = f"release={failed.id} step={outcome.step.replace(' ', '-')}"
    if (fallback is None or fallback.slot != failed.slot) and empty_slot(settings, failed.slot, env, console).ok:
        shutil.rmtree(failed.path / SECRETS_DIR, ignore_errors=True)
    if fallback is None:
        state.save(None, previous, healthy=False)
        return Report(
            Exit.ROLLBACK_FAILED,
            "failed, nothing to roll back to",
            [f"The {what}; no earlier release exists to restore.", *failure_lines(outcome)],
            f"result=rollback-failed {log} restore=-",
        )
    console.say(f"{what}; release {fallback.id} keeps the traffic")
    restored = start(settings, fallback, env, console, pull=[])
    if restored.ok:
        try:
            cut_over(settings, fallback, None, env, console)
        except (EdgeError, OSError) as error:
            restored = Outcome(False, "edge", str(error))
    state.save(fallback, previous, healthy=restored.ok)
    if restored.ok:
        return Report(
            Exit.ROLLED_BACK,
            "failed, rolled back",
            [f"The {what}; release `{fallback.id}` runs again and is healthy.", *failure_lines(outcome)],
            f"result=rolled-back {log} restore={fallback.id}",
        )
    return Report(
        Exit.ROLLBACK_FAILED,
        "failed, rollback failed",
        [
            f"The {what}, and restoring release `{fallback.id}` failed too: the environment is down.",
            *failure_lines(outcome),
            *failure_lines(restored),
        ],
        f"result=rollback-failed {log} restore={fallback.id}",
    )


def move_in(
    settings: Settings,
    release: Release,
    before: Release | None,
    env: dict,
    console: Console,
    pull: list[str],
) -> tuple[Outcome, list[str]]:
    """Start `release` in its slot beside `before` and, once healthy, move the traffic to it."""
    outcome = start_in_slot(settings, release, env, console, pull)
    if not outcome.ok:
        return outcome, []
    # `up --wait` has been seen to exit 0 while a container was still starting: traffic moves
    # only to what Docker itself shows running and healthy.
    problems = docker_problems(settings, release, env, configuration=False)
    if problems:
        return Outcome(False, "compose up", f"docker shows after the wait: {describe_problems(problems)}"), []
    try:
        return outcome, cut_over(settings, release, before, env, console)
    except (EdgeError, OSError) as error:
        return Outcome(False, "edge", str(error)), []


def do_deploy(settings: Settings, command: Command, frames: Frames, environ, console: Console) -> Report:
    if frames.compose is None:
        raise BadInputError("deploy needs the compose file on stdin (a `compose <length>` frame)")
    Edge(settings, console).in_flight([])  # the edge answers, or nothing changes
    state = State(settings)
    current = state.release("current")
    images = current.images if current else {}
    images.update({image_variable(c): i for c, i in command.pairs})
    fingerprint = secrets_fingerprint(frames.secrets)
    if current and current.digest == digest_of(frames.compose, images) and current.record.get("secrets") == fingerprint:
        problems = release_problems(settings, current, child_environment(environ, None))
        if problems:
            return start_again(settings, state, current, problems, command, frames, environ, console)
        if not state.data.get("healthy"):
            state.save(current, state.release("previous"), healthy=True)
        return Report(
            Exit.NO_CHANGE,
            "already running",
            [
                *images_table(command.pairs),
                "",
                f"Release `{current.id}` is already running and healthy.",
                *not_deployed_lines(current),
            ],
            f"result=no-change release={current.id}",
        )
    slot = other_slot(current.slot) if current else SLOTS[0]
    release = state.stage(frames.compose, images, dict(command.pairs), slot)
    release.record["secrets"] = fingerprint
    console.say(f"staged release {release.id} for the {slot} slot")
    try:
        if frames.secrets:
            write_secrets(release.path / SECRETS_DIR, frames.secrets)
        model, left_out = release_model(settings, release, child_environment(environ, None), images)
        check_model(model, command.pairs)
        check_secrets(model, release)
        model, accessories = accessories_of(settings, model)
        sites = published_sites(model)
        domain = edge_domain(model, sites)
        release.record["sites"] = [[site.published, site.service, site.target] for site in sites]
        release.record["domain"] = domain.__dict__ if domain else None
        release.record["not_deployed"] = left_out
        place(settings, release, model, slot)
    except BaseException:
        shutil.rmtree(release.path, ignore_errors=True)
        raise
    if left_out:
        console.say("left out, never deployed here: " + ", ".join(left_out))
    with Registry(settings, frames.login, environ, console) as registry:
        outcome = registry.sign_in()
        notes: list[str] = []
        if outcome.ok and accessories:
            outcome = start_accessories(settings, accessories, registry.env, console)
        if outcome.ok:
            pull = changed_services(model, current)
            outcome, notes = move_in(settings, release, current, registry.env, console, pull)
        if not outcome.ok:
            return restore(settings, state, current, registry.env, console, release, outcome, state.release("previous"))
    release.record["result"] = "deployed"
    release.save()
    state.save(release, current, healthy=True)
    state.prune(settings.keep)
    before = f" (before: `{current.id}`, stopped once its requests were done)" if current else ""
    return Report(
        Exit.DEPLOYED,
        "deployed",
        [
            *images_table(command.pairs),
            "",
            f"Release `{release.id}` runs and is healthy in the {release.slot} slot{before}.",
            *notes,
            *not_deployed_lines(release),
        ],
        f"result=deployed release={release.id} previous={current.id if current else '-'}",
    )


def start_again(
    settings: Settings,
    state: State,
    current: Release,
    problems: dict[str, str],
    command: Command,
    frames: Frames,
    environ,
    console: Console,
) -> Report:
    """The release asked for is the current one, but Docker does not show it running and
    healthy (stopped or removed by hand, a container gone unhealthy): start the services it
    names again in its slot, recreating their containers, and wait for them. If that fails, the
    release before is restored, as for a new release that fails."""
    previous = state.release("previous")
    found = describe_problems(problems)
    console.say(f"release {current.id} is the one asked for, but docker shows: {found}; starting it again")
    services = [name for name in problems if name in running_model(current)["services"]]
    with Registry(settings, frames.login, environ, console) as registry:
        outcome = registry.sign_in()
        if outcome.ok:
            outcome = start(settings, current, registry.env, console, pull=[], recreate=services or None)
        if outcome.ok:
            try:
                cut_over(settings, current, None, registry.env, console)
            except (EdgeError, OSError) as error:
                outcome = Outcome(False, "edge", str(error))
        if not outcome.ok:
            if previous is not None and previous.slot == current.slot:
                place(settings, previous, running_model(previous), other_slot(current.slot))
            return restore(settings, state, previous, registry.env, console, current, outcome, current)
    current.record["result"] = "deployed (started again)"
    current.save()
    state.save(current, previous, healthy=True)
    return Report(
        Exit.DEPLOYED,
        "started again",
        [
            *images_table(command.pairs),
            "",
            f"Release `{current.id}` was not running as deployed (docker showed: {found}); "
            "it was started again and is healthy.",
            *not_deployed_lines(current),
        ],
        f"result=started-again release={current.id} found='{found}'",
    )


def do_rollback(settings: Settings, frames: Frames, environ, console: Console) -> Report:
    Edge(settings, console).in_flight([])  # the edge answers, or nothing changes
    state = State(settings)
    current, previous = state.release("current"), state.release("previous")
    if previous is None:
        raise BadInputError("no previous release to roll back to")
    if frames.secrets:
        write_secrets(previous.path / SECRETS_DIR, frames.secrets)
        previous.record["secrets"] = secrets_fingerprint(frames.secrets)
    check_secrets(running_model(previous), previous)
    slot = other_slot(current.slot) if current else previous.slot
    place(settings, previous, running_model(previous), slot)
    with Registry(settings, frames.login, environ, console) as registry:
        outcome = registry.sign_in()
        notes: list[str] = []
        if outcome.ok:
            outcome, notes = move_in(settings, previous, current, registry.env, console, pull=[])
        if not outcome.ok:
            return restore(settings, state, current, registry.env, console, previous, outcome, previous)
    previous.record["result"] = "deployed (rollback)"
    previous.save()
    state.save(previous, current, healthy=True)
    return Report(
        Exit.DEPLOYED,
        "rolled back",
        [
            *images_table(sorted(previous.record["deployed"].items())),
            "",
            f"Release `{previous.id}` runs again, in the {previous.slot} slot.",
            *notes,
            *not_deployed_lines(previous),
        ],
        f"result=rolled-back-by-request release={previous.id} previous={current.id if current else '-'}",
    )


def first_boot(settings: Settings) -> str | None:
    """`complete`, `FAILED (exit <n>)`, or None while the first boot still runs."""
    try:
        text = settings.first_boot.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    return "".join(c for c in text.strip() if c.isprintable())[:80] or None


FIRST_BOOT_LOG = "/var/log/cloud-init-output.log"


def not_ready(settings: Settings) -> Report | None:
    """A refusal while the VM's first boot runs or after it failed: Docker or the edge may be missing."""
    found = first_boot(settings)
    if found == "complete":
        return None
    why = "is still running" if found is None else f"ended {found}, see {FIRST_BOOT_LOG}"
    return Report(
        Exit.ERROR,
        "not ready",
        [f"The VM's first boot {why}: nothing was changed. Deploy again once `status` says it is complete."],
        f"result=not-ready first-boot={(found or 'running').replace(' ', '-')}",
    )


def do_status(settings: Settings, environ) -> Report:
    state = State(settings)
    booted = first_boot(settings)
    waiting = "" if booted in (None, "complete") else f" ({FIRST_BOOT_LOG})"
    lines = [f"- first boot: {booted or 'still running'}{waiting}"]
    for key in ("current", "previous"):
        release = state.release(key)
        if release is None:
            lines.append(f"- {key}: none")
            continue
        images = ", ".join(f"`{v}`" for _, v in sorted(release.images.items()))
        lines.append(
            f"- {key}: `{release.id}` ({release.record.get('result')}, {release.record.get('created')}, "
            f"{release.slot} slot): {images}"
        )
    current = state.release("current")
    left_out = ", ".join(f"`{name}`" for name in current.not_deployed) if current else ""
    lines.append(f"- not deployed yet: {left_out or 'none'}")
    env = child_environment(environ, None)
    problems = release_problems(settings, current, env) if current else {}
    health = "no release" if current is None else f"no ({describe_problems(problems)})" if problems else "yes"
    lines.append(f"- healthy: {health}")
    lines.append(f"- edge sends traffic to: the {Edge(settings).live()} slot")
    lines.append(f"- deploy in progress: {lock_holder(settings) or 'no'}")
    for name, project in [(f"{s} slot", slot_project(settings, s)) for s in SLOTS] + [
        ("accessories", f"{settings.project}-accessories")
    ]:
        result = compose_query(["docker", "compose", "--project-name", project, "ps", "--all"], env)
        lines += ["", f"{name}:", fence(result.stdout if result.returncode == 0 else result.stderr)]
    return Report(Exit.DEPLOYED, "status", lines, "")


def summary(report: Report, seconds: float) -> str:
    host = socket.gethostname()
    body = "\n".join(report.lines)
    return f"### dreamscape-deploy on `{host}`: {report.title}\n\n{body}\n\n_{seconds:.1f} s_\n"


def main(environ=os.environ, stdin=None, stdout=None, stderr=None) -> int:
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout
    console = Console(stderr if stderr is not None else sys.stderr)
    # The client going away (a cancelled job) must not cut a deploy short before its rollback.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.umask(0o027)
    began = time.monotonic()
    try:
        settings = load_settings(environ)
    except MisconfiguredError as error:
        console.say(f"dreamscape-deploy: misconfigured: {error}")
        return Exit.ERROR
    if not settings.state_dir.is_dir():
        console.say(f"dreamscape-deploy: misconfigured: {settings.state_dir} is missing (cloud-init creates it)")
        return Exit.ERROR
    client = ssh_client(environ)
    command_text = environ.get("SSH_ORIGINAL_COMMAND")
    try:
        command = parse_command(command_text)
        settings = replace(settings, **dict(command.settings))
        if command.name == "status":
            report = do_status(settings, environ)
        elif (refusal := not_ready(settings)) is not None:
            report = refusal
        else:
            allowed = frozenset({"compose", "login", "secrets"} if command.name == "deploy" else {"login", "secrets"})
            signal.signal(signal.SIGALRM, _stdin_too_slow)
            signal.alarm(STDIN_SECONDS)
            try:
                frames = read_frames(stdin, allowed)
            finally:
                signal.alarm(0)
            holder = {"pid": os.getpid(), "command": command.describe()[:300], "client": client}
            with Lock(settings, console, holder):
                if command.name == "deploy":
                    report = do_deploy(settings, command, frames, environ, console)
                else:
                    report = do_rollback(settings, frames, environ, console)
    except BadInputError as error:
        report = Report(Exit.BAD_INPUT, "refused", [fence(str(error)), "", USAGE], f"result=refused reason={error}")
        console.say(f"dreamscape-deploy: refused: {error}")
        console.say(USAGE)
    except LockTimeoutError as error:
        report = Report(Exit.LOCK_TIMEOUT, "lock not acquired", [str(error)], f"result=lock-timeout {error}")
        console.say(f"dreamscape-deploy: {error}")
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, EdgeError) as error:
        report = Report(Exit.ERROR, "error", [fence(f"{type(error).__name__}: {error}")], f"result=error {error}")
        console.say(f"dreamscape-deploy: error: {type(error).__name__}: {error}")
    seconds = time.monotonic() - began
    if report.log:
        shown = command_text if command_text is not None else "<none>"
        detail = " ".join(report.log.split())[:900]
        system_log(settings, console, f"{detail} command={shown[:600]!r} client={client} seconds={seconds:.1f}")
    with contextlib.suppress(OSError, ValueError):
        stdout.write(summary(report, seconds))
        stdout.flush()
    return int(report.code)


def _stdin_too_slow(signum, frame):
    raise BadInputError(f"stdin did not end within {STDIN_SECONDS} s")


if __name__ == "__main__":
    sys.exit(main())
