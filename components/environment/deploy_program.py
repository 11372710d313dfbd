"""The deploy program that runs on each VM, and the SSH line that lets CI run only it.

The program's text lives beside this module (`deploy/dreamscape_deploy.py`, Python 3 standard
library only); cloud-init installs it at DEPLOY_PROGRAM_PATH, and the CI key's
`authorized_keys` line forces every connection made with that key into it.

The program is the one source of its own contract (patterns, exit codes, settings, the image
variable naming rule): this module loads it as a module and re-exports that contract for the
rest of dreamscape-infra (the pipeline's deploy client `ci/deploy.py`, the compose generator,
the docs). The deploy job imports it from its sparse checkout of the infra repository: it
stays standard library only.

What the VM must provide (cloud-init's part):
- DEPLOY_USER with a login shell (sshd runs the forced command through it) and in group
  `docker`; its `~/.ssh/authorized_keys` holds `authorized_keys_line(...)`;
- the program at DEPLOY_PROGRAM_PATH, mode 0755, owned by root;
- STATE_DIR, owned by DEPLOY_USER, mode 0750;
- `python3`, `logger` (util-linux), Docker engine and the compose plugin.
The pipeline sends the lock wait, the health wait and the number of releases kept with every
call (OPTIONS, whose bounds the config schema reads); the other settings (SETTINGS) keep their
defaults unless an sshd `SetEnv` for DEPLOY_USER changes them.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import io
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

DEPLOY_USER = "deploy"
DEPLOY_PROGRAM_PATH = "/usr/local/sbin/dreamscape-deploy"
STATE_DIR = "/var/lib/dreamscape-deploy"

_SOURCE = Path(__file__).with_name("deploy") / "dreamscape_deploy.py"


def program_text() -> str:
    """The program exactly as installed on the VM: the source without its docstrings, comments
    and blank lines (`shipped`), about two thirds of its size.

    Made once per process, when this module is imported: CPython 3.11 before 3.11.8 fails
    `ast.parse` now and then while another thread compiles (gh-106905), and the Pulumi engine
    runs the program's callbacks on threads of its own.
    """
    return _PROGRAM_TEXT


def shipped(source: str) -> str:
    """`source` without docstrings, comments and blank lines, indented by one space per level;
    the same statements, and every string the same.

    Only whole lines go (a docstring that is a body's only statement becomes `pass`), found
    by line number from the parse and the tokenizer, so the result is the same under every
    Python version that runs the program: a different text would change user_data, and OCI
    replaces an instance whose user_data changes.
    """
    tree = ast.parse(source)
    dropped: set[int] = set()
    passes: dict[int, str] = {}
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if not isinstance(body, list):
                continue
            for statement in body:
                if not _is_docstring(statement):
                    continue
                lines = set(range(statement.lineno, statement.end_lineno + 1))
                if len(body) == 1:
                    passes[statement.lineno] = " " * (statement.col_offset // 4) + "pass"
                dropped |= lines
    verbatim: set[int] = set()  # inside a multi-line string that stays: blank lines are its content
    for node in ast.walk(tree):
        if isinstance(node, (ast.Constant, ast.JoinedStr)) and node.end_lineno and node.end_lineno > node.lineno:
            verbatim |= set(range(node.lineno + 1, node.end_lineno + 1)) - dropped
    comments: dict[int, int] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and token.start[0] > 1:  # line 1: the shebang
            comments[token.start[0]] = token.start[1]
    kept = []
    for number, line in enumerate(source.splitlines(), 1):
        if number in passes:
            kept.append(passes[number])
            continue
        if number in dropped:
            continue
        if number in verbatim:
            kept.append(line)
            continue
        if number in comments:
            line = line[: comments[number]].rstrip()
        if line.strip():
            # One space per level: blocks are indented by multiples of 4 (ruff format), and
            # inside brackets indentation means nothing.
            text = line.lstrip(" ")
            kept.append(" " * ((len(line) - len(text)) // 4) + text)
    return "\n".join(kept) + "\n"


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def authorized_keys_line(public_key_openssh: str, comment: str) -> str:
    """`restrict,command="<program>" <key> <comment>`: no shell, PTY, forwarding or agent."""
    parts = public_key_openssh.split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        raise ValueError("expected an ssh-ed25519 public key in OpenSSH format")
    return f'restrict,command="{DEPLOY_PROGRAM_PATH}" {parts[0]} {parts[1]} {comment}'


def load_program() -> ModuleType:
    """The program as a Python module (its `main` guarded, so loading runs nothing), named by
    its path as a package module would be: `components.environment.deploy` is no package (the
    program ships alone), but tools that name functions by module (mutation testing) find it."""
    name = "components.environment.deploy.dreamscape_deploy"
    if name not in sys.modules:
        loader = importlib.machinery.SourceFileLoader(name, str(_SOURCE))
        spec = importlib.util.spec_from_loader(name, loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        loader.exec_module(module)
    return sys.modules[name]


_PROGRAM = load_program()
_PROGRAM_TEXT = shipped(_SOURCE.read_text())


@dataclass(frozen=True)
class ExitCode:
    code: int
    name: str
    meaning: str
    success: bool
    """Whether the pipeline's deploy step passes with this code."""


EXIT_MEANINGS: dict[str, str] = {
    "DEPLOYED": "the new release runs and is healthy",
    "ERROR": "the program failed unexpectedly (misconfigured VM, full disk, a bug); read its stderr",
    "BAD_INPUT": "command, image reference, stdin or compose file refused; nothing changed",
    "NO_CHANGE": "that exact release is already running and healthy; nothing done",
    "LOCK_TIMEOUT": "another deploy held the lock for longer than the wait; nothing changed",
    "ROLLED_BACK": "the new release failed; the release that ran before runs, keeps the traffic and is healthy",
    "ROLLBACK_FAILED": "the new release failed and no healthy release could be restored: the environment is down",
}
"""What each of the program's exit codes means (the program carries the codes only)."""

EXIT_CODES: tuple[ExitCode, ...] = tuple(
    ExitCode(int(e), e.name, EXIT_MEANINGS[e.name], e in (_PROGRAM.Exit.DEPLOYED, _PROGRAM.Exit.NO_CHANGE))
    for e in _PROGRAM.Exit
)
"""The program's exit codes, in order; ssh itself exits 255 when it cannot connect or verify."""

EXIT = {e.name: e.code for e in EXIT_CODES}

OPTION_MEANINGS: dict[str, str] = {
    "--lock-wait": "how long a deploy or rollback waits for another one to release the lock",
    "--wait-timeout": "how long `docker compose up --wait` waits for a release to be healthy",
    "--keep": "releases kept on disk (always the running one and the one before)",
}
_SETTING_MEANINGS: dict[str, str] = {
    "DREAMSCAPE_DEPLOY_STATE_DIR": "releases, state and lock (owned by the deploy user)",
    "DREAMSCAPE_DEPLOY_PROJECT": "the prefix of the two slots' compose projects (`<project>-blue`, `-green`)",
    **{o.variable: f"{OPTION_MEANINGS[o.flag]}, when a request leaves out {o.flag}" for o in _PROGRAM.OPTIONS},
    "DREAMSCAPE_DEPLOY_PULL_TIMEOUT": "seconds `docker compose pull` may take",
    "DREAMSCAPE_DEPLOY_LOG_SOCKET": "the system log socket `logger` writes to",
    "DREAMSCAPE_DEPLOY_EDGE_DIR": "the edge proxy's Caddyfile and slot marker (the deploy user's, readable by caddy)",
    "DREAMSCAPE_DEPLOY_EDGE_ADMIN": "the edge proxy's admin socket (Caddy's API)",
    "DREAMSCAPE_DEPLOY_EDGE_BIND": "the address the edge proxy listens on; empty: every address",
    "DREAMSCAPE_DEPLOY_SLOT_PORTS": "the first of the 127.0.0.1 ports the two slots publish on, two per published port",
    "DREAMSCAPE_DEPLOY_DRAIN_TIMEOUT": "seconds the old slot may take to finish its requests after the switch",
    "DREAMSCAPE_DEPLOY_ACME_CA_ROOT": "a CA certificate file the edge trusts for the ACME server; empty: the system's",
    "DREAMSCAPE_DEPLOY_FIRST_BOOT": "the file the VM's first boot writes when it ends (`complete`, or "
    "`FAILED (exit <n>)`); deploy and rollback refuse until it says complete",
}
if set(_SETTING_MEANINGS) != set(_PROGRAM.SETTINGS) or set(EXIT_MEANINGS) != {e.name for e in _PROGRAM.Exit}:
    raise RuntimeError("the deploy program's settings or exit codes and their meanings here disagree")

SETTINGS: dict[str, tuple[str, str]] = {
    name: (default, _SETTING_MEANINGS[name]) for name, default in _PROGRAM.SETTINGS.items()
}
"""Environment variable -> (default, meaning). Only sshd sets the program's environment."""

LOCK_WAIT = _PROGRAM.LOCK_WAIT
"""`--lock-wait <seconds>`: config `deploy.lockWaitSeconds`."""
WAIT_TIMEOUT = _PROGRAM.WAIT_TIMEOUT
"""`--wait-timeout <seconds>`: config `deploy.waitTimeoutSeconds`."""
KEEP = _PROGRAM.KEEP
"""`--keep <releases>`: config `deploy.keepReleases`."""
OPTIONS = _PROGRAM.OPTIONS
"""The settings a request carries, each an `Option` (`flag`, `default`, `low`, `high`, `unit`)."""
PULL_TIMEOUT_SECONDS: int = _PROGRAM.PULL_TIMEOUT_DEFAULT
"""What the program allows `docker compose pull` unless sshd's `SetEnv` says otherwise."""

IMAGE_PATTERN: str = _PROGRAM.IMAGE_PATTERN
"""Image references the program accepts (POSIX ERE, also valid for bash `[[ =~ ]]`)."""
REGISTRY_PATTERN: str = _PROGRAM.REGISTRY_PATTERN
USERNAME_PATTERN: str = _PROGRAM.USERNAME_PATTERN
NUMBER_PATTERN: str = _PROGRAM.NUMBER_PATTERN
"""An option's value (POSIX ERE): decimal digits, no sign, no leading zero."""
MAX_COMPOSE_BYTES: int = _PROGRAM.MAX_COMPOSE_BYTES
MAX_IMAGE_LENGTH: int = _PROGRAM.MAX_IMAGE_LENGTH
MAX_PUBLISHED: int = _PROGRAM.MAX_PUBLISHED
"""Published ports a compose file may have (each takes two loopback ports, one per slot)."""

FIRST_BOOT_FILE: str = SETTINGS["DREAMSCAPE_DEPLOY_FIRST_BOOT"][0]
"""Where the first boot's outcome is written (root's, readable by every user)."""
EDGE_DIR: str = SETTINGS["DREAMSCAPE_DEPLOY_EDGE_DIR"][0]
"""The edge proxy's directory: its Caddyfile (written by the program) and the slot marker."""
EDGE_ADMIN: str = SETTINGS["DREAMSCAPE_DEPLOY_EDGE_ADMIN"][0]
"""Caddy's admin socket, which the deploy user reaches through caddy's group."""
CADDYFILE: str = _PROGRAM.CADDYFILE
EDGE_MARKER: str = _PROGRAM.EDGE_MARKER
EDGE_EXTENSION: str = _PROGRAM.EDGE_EXTENSION
"""The compose file's top-level key for the domain served over HTTPS (`x-dreamscape-edge`)."""
ACCESSORIES_EXTENSION: str = _PROGRAM.ACCESSORIES_EXTENSION
"""The compose file's top-level list of accessories (`x-dreamscape-accessories`)."""
SECRET_NAME_PATTERN: str = _PROGRAM.SECRET_NAME_PATTERN
MAX_SECRETS_BYTES: int = _PROGRAM.MAX_SECRETS_BYTES
"""The secrets frame's size limit: all of an environment's secret values, as JSON."""
SLOTS: tuple[str, ...] = _PROGRAM.SLOTS
DOMAIN_PATTERN: str = _PROGRAM.DOMAIN_PATTERN
"""A domain the edge serves over HTTPS (lowercase DNS name, at least two labels)."""
ACME_PATTERN: str = _PROGRAM.ACME_PATTERN
EMAIL_PATTERN: str = _PROGRAM.EMAIL_PATTERN
HSTS: str = _PROGRAM.HSTS
"""The Strict-Transport-Security value the edge sends with a domain."""


def initial_caddyfile(environ: dict[str, str] | None = None) -> str:
    """The edge's configuration before any deploy (cloud-init writes it): the admin socket, no site.

    `environ`: the program's settings as sshd would set them (none: the VM's defaults).
    """
    return _PROGRAM.caddyfile(_PROGRAM.load_settings(environ or {}), [], None)


def image_variable(component: str) -> str:
    """The compose variable carrying a component's image: `auth-service` -> `AUTH_SERVICE_IMAGE`.

    The environment's compose file writes each service's image as `${<variable>}` (better:
    `${<variable>:?<message>}`); each release's `.env` sets them.
    """
    return _PROGRAM.image_variable(component)


def is_image(reference: str) -> bool:
    return _PROGRAM.is_image(reference)
