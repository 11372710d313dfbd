"""The deploy program that runs on each VM, and the SSH line that lets CI run only it.

The program's text lives beside this module (`deploy/dreamscape-deploy`); cloud-init installs
it at DEPLOY_PROGRAM_PATH, and the CI key's `authorized_keys` line forces every connection
made with that key into it.
"""

from __future__ import annotations

from pathlib import Path

from components import rules

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


def image_variable(component: str) -> str:
    """The compose variable that carries a component's image: `auth-service` -> `AUTH_SERVICE_IMAGE`.

    The deploy program sets it for each component it deploys; the environment's compose file
    reads the service's image from it. A name starting with a digit gets a leading `_`, so the
    variable stays a valid name and no two components share one.
    """
    if not rules.is_component(component):
        raise ValueError(f"not a component name: {component!r}")
    name = component.upper().replace("-", "_") + "_IMAGE"
    return "_" + name if name[0].isdigit() else name
