"""The central pipeline's deploy client: runs dreamscape-deploy on the environment's VM over SSH.

    python3 -m ci.deploy

Inputs (environment): VM_HOST, SSH_PRIVATE_KEY and SSH_KNOWN_HOSTS (the run's environment's
deploy secrets, which the job binds by expression), DEPLOY_IMAGES (`<component>=<image>`
pairs, separated by whitespace), DEPLOY_COMPOSE_FILE, and optionally DEPLOY_REGISTRY,
DEPLOY_REGISTRY_USER and DEPLOY_REGISTRY_TOKEN (a short-lived login the VM pulls with),
DEPLOY_SSH_USER and DEPLOY_SSH_PORT (`deploy` and 22 unless set). The deploy settings (lock
wait, health wait, releases kept) come from the data file (ci/config.py) and travel with the
call as the program's options.

Every input is checked before anything connects, with the deploy program's own patterns and
bounds (components/environment/deploy_program.py, which the job's checkout includes): a bad
one exits 2 with an annotation naming it. The key and the pinned known-hosts line go to a
private directory, removed on exit; ssh verifies the host against that line only. The
compose file (and the registry token, when there is one) reach the program on ssh's stdin in
its frame format, never on a command line. The program's exit code becomes a message (255:
ssh itself failed), and its Markdown summary goes to the log and the job summary.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ci import config, runner
from components import rules
from components.environment import deploy_program

HOST = "VM_HOST"
PRIVATE_KEY = "SSH_PRIVATE_KEY"
KNOWN_HOSTS = "SSH_KNOWN_HOSTS"
"""The deploy secrets' variables: the job binds each to the secret of the run's environment."""
IMAGES = "DEPLOY_IMAGES"
COMPOSE_FILE = "DEPLOY_COMPOSE_FILE"
REGISTRY = "DEPLOY_REGISTRY"
REGISTRY_USER = "DEPLOY_REGISTRY_USER"
REGISTRY_TOKEN = "DEPLOY_REGISTRY_TOKEN"  # noqa: S105 - a variable name, not a credential
SSH_USER = "DEPLOY_SSH_USER"
SSH_PORT = "DEPLOY_SSH_PORT"
"""The VM's SSH user and port; only tests set them (a local sshd on another port)."""
SECRET_VARIABLES = (PRIVATE_KEY, KNOWN_HOSTS, REGISTRY_TOKEN)
"""Left out of ssh's own environment: they reach it through files and stdin only."""

DEFAULT_PORT = 22
BAD_INPUT = 2
SSH_FAILED = 255
"""What ssh itself exits with when it cannot connect, verify the host key or authenticate."""

OPTION_SETTINGS = (
    (deploy_program.LOCK_WAIT, "lock_wait_seconds"),
    (deploy_program.WAIT_TIMEOUT, "wait_timeout_seconds"),
    (deploy_program.KEEP, "keep_releases"),
)
"""Each option of the program's `deploy` and the data file's `deploy.*` field that carries its value."""

_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]*", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}", re.ASCII)


class InputError(Exception):
    """An input the deploy does not start with: exit BAD_INPUT, nothing sent."""


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value, re.ASCII) is not None


@dataclass(frozen=True)
class Login:
    registry: str
    username: str
    token: str


@dataclass(frozen=True)
class Request:
    """A checked deploy: where to, what, and what goes on stdin."""

    host: str
    user: str
    port: int
    private_key: str
    known_hosts: str
    options: tuple[str, ...]
    """`--lock-wait <s> --wait-timeout <s> --keep <n>`."""
    pairs: tuple[str, ...]
    compose: bytes
    login: Login | None


def options(deploy: config.Deploy) -> tuple[str, ...]:
    """The program's options from the data file's deploy settings, each within the program's bounds."""
    words: list[str] = []
    for option, field in OPTION_SETTINGS:
        value = getattr(deploy, field)
        if isinstance(value, bool) or not isinstance(value, int) or not option.low <= value <= option.high:
            raise InputError(f"{config.PATH}: deploy.{field} is {value!r}; expected {option.expected}")
        words += [option.flag, str(value)]
    return tuple(words)


def pairs(images: str) -> tuple[str, ...]:
    """`<component>=<image>` words, checked with the deploy program's own patterns."""
    words = tuple(images.split())
    if not words:
        raise InputError(f"{IMAGES} names no <component>=<image>")
    seen: set[str] = set()
    for pair in words:
        component, sep, image = pair.partition("=")
        if not sep or not rules.is_component(component):
            raise InputError(f"not <component>=<image>: {pair}")
        if not deploy_program.is_image(image):
            raise InputError(f"not an image reference: {image}")
        if component in seen:
            raise InputError(f"component {component} given twice")
        seen.add(component)
    return words


def request(env: Mapping[str, str], root: Path | str = ".") -> Request:
    """Every input checked, in the order a reader fixes them; raises InputError naming the first problem."""
    host = env.get(HOST, "")
    private_key = env.get(PRIVATE_KEY, "")
    known_hosts = env.get(KNOWN_HOSTS, "")
    if not host:
        raise InputError(f"{HOST} is empty: check the deploy secrets of this environment")
    if not _HOST.fullmatch(host):
        raise InputError(f"{HOST} is not a host name or an IP address")
    if not private_key:
        raise InputError(f"{PRIVATE_KEY} is empty: check the deploy secrets")
    if not known_hosts:
        raise InputError(f"{KNOWN_HOSTS} is empty: check the deploy secrets")
    user = env.get(SSH_USER) or deploy_program.DEPLOY_USER
    if not _USER.fullmatch(user):
        raise InputError(f"{SSH_USER} is not a user name")
    port = env.get(SSH_PORT) or str(DEFAULT_PORT)
    if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
        raise InputError(f"{SSH_PORT} is not a port")
    compose_file = env.get(COMPOSE_FILE, "")
    try:
        compose = Path(compose_file).read_bytes() if compose_file else None
    except OSError:
        compose = None
    if compose is None:
        raise InputError(f"compose file {compose_file} not found")
    if not 0 < len(compose) <= deploy_program.MAX_COMPOSE_BYTES:
        raise InputError(f"compose file is {len(compose)} bytes; 1 to {deploy_program.MAX_COMPOSE_BYTES} accepted")
    try:
        settings = config.load(root)
    except config.ConfigError as error:
        raise InputError(str(error)) from None
    login = None
    if env.get(REGISTRY_TOKEN):
        login = Login(env.get(REGISTRY, ""), env.get(REGISTRY_USER, ""), env[REGISTRY_TOKEN])
        if not _matches(deploy_program.REGISTRY_PATTERN, login.registry):
            raise InputError(f"{REGISTRY} is not a registry host")
        if not _matches(deploy_program.USERNAME_PATTERN, login.username):
            raise InputError(f"{REGISTRY_USER} is not a user name")
    return Request(
        host=host,
        user=user,
        port=int(port),
        private_key=private_key,
        known_hosts=known_hosts,
        options=options(settings.deploy),
        pairs=pairs(env.get(IMAGES, "")),
        compose=compose,
        login=login,
    )


def stdin(req: Request) -> bytes:
    """The program's stdin: with a login, `login <registry> <user> <length>` and the token; then
    `compose <length>` and the file."""
    data = b""
    if req.login is not None:
        token = req.login.token.encode()
        data += f"login {req.login.registry} {req.login.username} {len(token)}\n".encode() + token
    return data + f"compose {len(req.compose)}\n".encode() + req.compose


def ssh_command(req: Request, key: Path, known_hosts: Path, ssh: str = "ssh") -> list[str]:
    """ssh that trusts only the pinned host key and offers only the CI key; no secret on it."""
    return [
        ssh,
        "-F",
        "none",
        "-T",
        "-p",
        str(req.port),
        "-l",
        req.user,
        "-i",
        str(key),
        *("-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes"),
        *("-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"),
        *("-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no"),
        *("-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"),
        "--",
        req.host,
        "deploy",
        *req.options,
        *req.pairs,
    ]


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text + "\n")


@contextmanager
def private_files(req: Request, parent: str | None = None) -> Iterator[tuple[Path, Path]]:
    """The key and the known-hosts line in a directory only this user reads (0700, files 0600), removed on exit."""
    work = Path(tempfile.mkdtemp(prefix="dreamscape-deploy-", dir=parent))
    try:
        key, known_hosts = work / "key", work / "known_hosts"
        _write_private(key, req.private_key)
        _write_private(known_hosts, req.known_hosts)
        yield key, known_hosts
    finally:
        shutil.rmtree(work, ignore_errors=True)


def outcome(code: int) -> tuple[bool, str]:
    """Whether the step passes with the program's (or ssh's) exit code, and what to say."""
    for exit_code in deploy_program.EXIT_CODES:
        if exit_code.code == code:
            return exit_code.success, f"{exit_code.name.lower().replace('_', ' ')}: {exit_code.meaning}"
    if code == SSH_FAILED:
        return False, (
            f"ssh failed before the deploy program answered: the VM is unreachable, its host key does not "
            f"match {KNOWN_HOSTS}, or it refused the key in {PRIVATE_KEY}"
        )
    return False, f"unexpected exit code {code} from the deploy"


def _fail(message: str, code: int) -> int:
    runner.annotate("error", "Deploy", message)
    return code


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # the key's directory is removed on the way out


def run(req: Request, env: Mapping[str, str]) -> int:
    """The deploy over ssh; the exit code to end with."""
    child_env = {name: value for name, value in env.items() if name not in SECRET_VARIABLES}
    ssh = shutil.which("ssh", path=env.get("PATH", os.defpath))
    if ssh is None:
        return _fail("ssh is not installed on this runner", 127)
    with private_files(req, env.get("RUNNER_TEMP") or env.get("TMPDIR") or None) as (key, known_hosts):
        command = ssh_command(req, key, known_hosts, ssh)
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env)
        try:
            answer, _ = process.communicate(stdin(req))
        except BaseException:
            # Stopped from outside: the program finishes (or rolls back) on its own when its client goes.
            process.kill()
            raise
    code = process.returncode if process.returncode >= 0 else 128 - process.returncode
    summary = answer.decode("utf-8", "replace")
    print(summary, end="", flush=True)
    if env.get("GITHUB_STEP_SUMMARY"):
        runner.add_summary(summary or f"### Deploy: no answer from the VM (exit {code})\n", env)
    success, message = outcome(code)
    if success:
        print(message, flush=True)
        return 0
    return _fail(message, code)


def main(env: Mapping[str, str] | None = None, root: Path | str = ".") -> int:
    env = os.environ if env is None else env
    try:
        req = request(env, root)
    except InputError as refused:
        return _fail(str(refused), BAD_INPUT)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return run(req, env)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
