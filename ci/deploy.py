"""The central pipeline's deploy client: runs dreamscape-deploy on the environment's VM over SSH.

    python3 -m ci.deploy

Inputs (environment): VM_HOST, SSH_PRIVATE_KEY, SSH_KNOWN_HOSTS, OCI_DEPLOY_CREDENTIAL and
APP_SECRETS (the run's environment's deploy secrets, which the job binds by expression), DEPLOY_OCI (the
environment's `DEPLOY_OCI_<ENV>` variable: its bastion and how to sign OCI calls), DEPLOY_IMAGES (`<component>=<image>`
pairs, separated by whitespace), DEPLOY_COMPOSE_FILE, and optionally DEPLOY_REGISTRY,
DEPLOY_REGISTRY_USER and DEPLOY_REGISTRY_TOKEN (a short-lived login the VM pulls with),
DEPLOY_SSH_USER and DEPLOY_SSH_PORT (`deploy` and 22 unless set). The deploy settings (lock
wait, health wait, releases kept) come from the data file (ci/config.py) and travel with the
call as the program's options.

Every input is checked before anything connects, with the deploy program's own patterns and
bounds (components/environment/deploy_program.py, which the job's checkout includes): a bad
one exits 2 with an annotation naming it. The key and the pinned known-hosts line go to a
private directory, removed on exit; ssh verifies the host against that line only.

With DEPLOY_OCI set (every stack sets it), the VM is reached through its environment's OCI
Bastion (ci/oci.py): a port-forwarding session to VM_HOST (its private address) and the SSH
port, for a key pair made for this run, becomes ssh's ProxyCommand (`ssh -W` through the
bastion, which checks the bastion's own host key when OCI gives it); the inner connection is
the one that carries the deploy and is verified against the pinned line, end to end, so the
bastion sees only encrypted bytes. The session is deleted however the step ends (a failure,
a cancelled job's SIGTERM); one left behind by a killed runner expires with its TTL. Without
DEPLOY_OCI, ssh connects to VM_HOST directly (a runner inside the VCN). The
compose file, the registry token (when there is one) and the containers' secrets (APP_SECRETS,
when it names any) reach the program on ssh's stdin in its frame format, never on a command
line, and no value of them is ever printed. The program's exit code becomes a message (255:
ssh itself failed; 10: no bastion session), and its Markdown summary goes to the log and the job summary.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path

from ci import config, instances, oci, runner
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
APP_SECRETS = "APP_SECRETS"
"""`{NAME: value}` as JSON: the environment's secrets for its containers (its stack writes them)."""
SSH_USER = "DEPLOY_SSH_USER"
SSH_PORT = "DEPLOY_SSH_PORT"
"""The VM's SSH user and port; only tests set them (a local sshd on another port)."""
OCI_ACCESS = "DEPLOY_OCI"
OCI_CREDENTIAL = "OCI_DEPLOY_CREDENTIAL"
BASTION_API = "DEPLOY_BASTION_API"
BASTION_SSH = "DEPLOY_BASTION_SSH"
"""The Bastion API's endpoint and the bastion's SSH `host:port`; the region's unless set, and
only tests set them (local stand-ins)."""
SECRET_VARIABLES = (PRIVATE_KEY, KNOWN_HOSTS, REGISTRY_TOKEN, OCI_CREDENTIAL, APP_SECRETS, oci.ID_TOKEN_TOKEN)
"""Left out of ssh's own environment: they reach it through files and stdin only."""

DEFAULT_PORT = 22
BAD_INPUT = 2
NO_BASTION_SESSION = 10
"""OCI refused the credential or the session, or the session never became ACTIVE: nothing ran on the VM."""
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
class Route:
    """The environment's bastion and how to reach it."""

    access: oci.Access
    credential: str
    api_endpoint: str
    ssh_host: str
    ssh_port: int


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
    route: Route | None = None
    """None: ssh straight to the host."""
    session_ttl: int = 0
    """The bastion session's TTL (`session_ttl`); with a route only."""
    secrets: bytes = _field(default=b"", repr=False)
    """APP_SECRETS as sent (empty: no secrets frame)."""


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
    route = _route(env, host)
    secrets = app_secrets(env.get(APP_SECRETS, ""))
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
        route=route,
        session_ttl=session_ttl(settings.deploy) if route else 0,
        secrets=secrets,
    )


def app_secrets(text: str) -> bytes:
    """APP_SECRETS checked with the program's rules (names only in any message); empty when it
    names no secret, and then no frame is sent."""
    if not text.strip():
        return b""
    try:
        values = json.loads(text)
    except ValueError:
        values = None
    if not isinstance(values, dict) or not all(
        _matches(deploy_program.SECRET_NAME_PATTERN, k) and isinstance(v, str) and v for k, v in values.items()
    ):
        raise InputError(f"{APP_SECRETS} is not one JSON object of NAME: value: check the environment's deploy secrets")
    data = json.dumps(values, sort_keys=True).encode() if values else b""
    if len(data) > deploy_program.MAX_SECRETS_BYTES:
        raise InputError(f"{APP_SECRETS} is {len(data)} bytes; at most {deploy_program.MAX_SECRETS_BYTES}")
    return data


def _route(env: Mapping[str, str], host: str) -> Route | None:
    text = env.get(OCI_ACCESS, "")
    if not text:
        return None
    try:
        access = oci.access(text, OCI_ACCESS)
    except ValueError as error:
        raise InputError(f"{error}: check the variable the environment's stack writes") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InputError(f"{HOST} must be the VM's private IP address to go through the bastion") from None
    credential = env.get(OCI_CREDENTIAL, "")
    if not credential:
        raise InputError(f"{OCI_CREDENTIAL} is empty: check the deploy secrets of this environment")
    ssh_host, _, ssh_port = (env.get(BASTION_SSH) or f"{access.ssh_host}:{DEFAULT_PORT}").rpartition(":")
    if not _HOST.fullmatch(ssh_host) or not _PORT.fullmatch(ssh_port) or not 0 < int(ssh_port) < 65536:
        raise InputError(f"{BASTION_SSH} is not <host>:<port>")
    return Route(access, credential, env.get(BASTION_API) or access.api_endpoint, ssh_host, int(ssh_port))


def stdin(req: Request) -> bytes:
    """The program's stdin: with a login, `login <registry> <user> <length>` and the token; then
    `compose <length>` and the file; with secrets, `secrets <length>` and their JSON."""
    data = b""
    if req.login is not None:
        token = req.login.token.encode()
        data += f"login {req.login.registry} {req.login.username} {len(token)}\n".encode() + token
    data += f"compose {len(req.compose)}\n".encode() + req.compose
    if req.secrets:
        data += f"secrets {len(req.secrets)}\n".encode() + req.secrets
    return data


def proxy_command(route: Route, session: oci.Session, key: Path, known_hosts: Path, ssh: str = "ssh") -> str:
    """The ProxyCommand through the bastion session: `ssh -W %h:%p` as the session's user with
    the run's session key. The bastion's host key is checked against OCI's answer when OCI
    gives it; without it the first key is taken into a file of this run only (what is inside
    the tunnel is verified end to end either way)."""
    checking = "StrictHostKeyChecking=yes" if session.host_key else "StrictHostKeyChecking=accept-new"
    words = [
        ssh, "-F", "none", "-T", "-p", str(route.ssh_port), "-l", session.user, "-i", str(key),
        "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
        "-o", checking, "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no", "-o", "ConnectTimeout=20",
        "-W", "%h:%p", route.ssh_host,
    ]  # fmt: skip
    return " ".join(word if word == "%h:%p" else shlex.quote(word) for word in words)


def ssh_command(req: Request, key: Path, known_hosts: Path, ssh: str = "ssh", proxy: str | None = None) -> list[str]:
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
        *(("-o", f"ProxyCommand={proxy}") if proxy else ()),
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
    if code == NO_BASTION_SESSION:
        return False, "no bastion session: OCI refused the deploy credential or the session; nothing ran on the VM"
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


def session_seconds(deploy: config.Deploy) -> int:
    """Seconds a deploy through the bastion may take: the session becoming ACTIVE, then the
    lock, the pull, starting and maybe rolling back, with a minute to spare."""
    return (
        oci.ACTIVE_WAIT_SECONDS
        + deploy.lock_wait_seconds
        + deploy_program.PULL_TIMEOUT_SECONDS
        + 2 * deploy.wait_timeout_seconds
        + 60
    )


def session_ttl(deploy: config.Deploy) -> int:
    """The session's TTL: `session_seconds` rounded up to the minute, within OCI's bounds. The
    bastion's longest session (`oci.bastionSessionTtlSeconds`) must allow it; settings refuses
    deploy settings that need more than OCI's longest."""
    seconds = -(-session_seconds(deploy) // 60) * 60
    return min(max(oci.SESSION_TTL_SECONDS, seconds), oci.MAX_SESSION_TTL_SECONDS)


def session_name(env: Mapping[str, str]) -> str:
    """The session's display name in OCI's console: which run opened it."""
    run_id = re.sub(r"[^0-9]", "", env.get("GITHUB_RUN_ID", ""))[:20] or "local"
    attempt = re.sub(r"[^0-9]", "", env.get("GITHUB_RUN_ATTEMPT", ""))[:4] or "1"
    return f"dreamscape-deploy-{run_id}-{attempt}"


@contextmanager
def bastion_session(
    req: Request, work: Path, env: Mapping[str, str], client: oci.Client, clock=time.monotonic
) -> Iterator[tuple[oci.Session, Path]]:
    """An ACTIVE port-forwarding session to the VM for a key made here; deleted on the way out,
    whatever happens inside (a failure to delete is a warning: the session expires anyway).

    Stopped from outside (the runner's SIGINT, then SIGTERM, when the job is cancelled), the
    delete gets one short attempt with both signals held back, so the second one cannot cut it
    short. A session token too old to outlive the delete is exchanged again first."""
    assert req.route is not None
    route = req.route
    signer = oci.signer(route.access, route.credential, work, env, client)
    signed_in = clock()
    key = work / "bastion_key"
    made = oci.tool("ssh-keygen", "-q", "-t", "rsa", "-N", "", "-C", "dreamscape-deploy", "-f", str(key))
    if made.returncode != 0:
        raise oci.OciError("ssh-keygen could not make the session's key")
    bastion = oci.Bastion(route.api_endpoint, signer, client)
    public_key = key.with_suffix(".pub").read_text().strip()
    session_id = None
    stopped = False
    try:
        session_id = bastion.create(
            route.access.bastion_id, req.host, req.port, public_key, session_name(env), req.session_ttl
        )
        print(f"Bastion session {session_id} to {req.host}:{req.port}", flush=True)
        yield bastion.wait_active(session_id), key
    except (KeyboardInterrupt, SystemExit):
        stopped = True
        raise
    finally:
        if session_id is not None:
            held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                if route.access.auth == oci.WORKLOAD_IDENTITY and clock() - signed_in > oci.TOKEN_REFRESH_SECONDS:
                    bastion.signer = oci.signer(route.access, route.credential, work, env, client)
                bastion.delete(session_id, client.last_chance() if stopped else None)
                print(f"Bastion session {session_id} deleted", flush=True)
            except oci.OciError as error:
                runner.annotate("warning", "Deploy", f"{error}; it expires {req.session_ttl}s after it opened")
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _ssh(command: list[str], req: Request, env: Mapping[str, str]) -> tuple[bytes, int]:
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        answer, _ = process.communicate(stdin(req))
    except BaseException:
        # Stopped from outside: the program finishes (or rolls back) on its own when its client goes.
        process.kill()
        process.wait()
        raise
    return answer, process.returncode if process.returncode >= 0 else 128 - process.returncode


def run(req: Request, env: Mapping[str, str], client: oci.Client | None = None) -> int:
    """The deploy over ssh (through the bastion when the request has a route); the exit code to end with."""
    child_env = {name: value for name, value in env.items() if name not in SECRET_VARIABLES}
    ssh = shutil.which("ssh", path=env.get("PATH", os.defpath))
    if ssh is None:
        return _fail("ssh is not installed on this runner", 127)
    with private_files(req, env.get("RUNNER_TEMP") or env.get("TMPDIR") or None) as (key, known_hosts):
        if req.route is None:
            answer, code = _ssh(ssh_command(req, key, known_hosts, ssh), req, child_env)
        else:
            try:
                with bastion_session(req, key.parent, env, client or oci.Client()) as (session, session_key):
                    bastion_hosts = key.parent / "bastion_known_hosts"
                    host = req.route.ssh_host
                    name = host if req.route.ssh_port == DEFAULT_PORT else f"[{host}]:{req.route.ssh_port}"
                    _write_private(bastion_hosts, f"{name} {session.host_key}" if session.host_key else "")
                    proxy = proxy_command(req.route, session, session_key, bastion_hosts, ssh)
                    answer, code = _ssh(ssh_command(req, key, known_hosts, ssh, proxy), req, child_env)
            except oci.OciError as error:
                return _fail(f"no bastion session: {error}", NO_BASTION_SESSION)
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
    if instances.is_container_target(env.get(OCI_ACCESS, "")):
        # The environment runs on container instances: a new instance per release (ci/instances.py).
        previous = signal.signal(signal.SIGTERM, _terminated)
        try:
            return instances.main(env, root)
        finally:
            signal.signal(signal.SIGTERM, previous)
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
