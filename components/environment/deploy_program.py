"""The deploy program that runs on each VM, and the SSH line that lets CI run only it.

The program's text lives beside this module (`deploy/dreamscape-deploy`, Python 3 standard
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

import importlib.machinery
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

DEPLOY_USER = "deploy"
DEPLOY_PROGRAM_PATH = "/usr/local/sbin/dreamscape-deploy"
STATE_DIR = "/var/lib/dreamscape-deploy"

_SOURCE = Path(__file__).with_name("deploy") / "dreamscape-deploy"


def program_text() -> str:
    """The program exactly as installed on the VM."""
    return _SOURCE.read_text()


def authorized_keys_line(public_key_openssh: str, comment: str) -> str:
    """`restrict,command="<program>" <key> <comment>`: no shell, PTY, forwarding or agent."""
    parts = public_key_openssh.split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        raise ValueError("expected an ssh-ed25519 public key in OpenSSH format")
    return f'restrict,command="{DEPLOY_PROGRAM_PATH}" {parts[0]} {parts[1]} {comment}'


def load_program() -> ModuleType:
    """The program as a Python module (its `main` guarded, so loading runs nothing)."""
    name = "dreamscape_deploy_program"
    if name not in sys.modules:
        loader = importlib.machinery.SourceFileLoader(name, str(_SOURCE))
        spec = importlib.util.spec_from_loader(name, loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        loader.exec_module(module)
    return sys.modules[name]


_PROGRAM = load_program()


@dataclass(frozen=True)
class ExitCode:
    code: int
    name: str
    meaning: str
    success: bool
    """Whether the pipeline's deploy step passes with this code."""


EXIT_CODES: tuple[ExitCode, ...] = tuple(
    ExitCode(int(e), e.name, _PROGRAM.EXIT_MEANINGS[e], e in (_PROGRAM.Exit.DEPLOYED, _PROGRAM.Exit.NO_CHANGE))
    for e in _PROGRAM.Exit
)
"""The program's exit codes, in order; ssh itself exits 255 when it cannot connect or verify."""

EXIT = {e.name: e.code for e in EXIT_CODES}

SETTINGS: dict[str, tuple[str, str]] = dict(_PROGRAM.SETTINGS)
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


def image_variable(component: str) -> str:
    """The compose variable carrying a component's image: `auth-service` -> `AUTH_SERVICE_IMAGE`.

    The environment's compose file writes each service's image as `${<variable>}` (better:
    `${<variable>:?<message>}`); each release's `.env` sets them.
    """
    return _PROGRAM.image_variable(component)


def is_image(reference: str) -> bool:
    return _PROGRAM.is_image(reference)
