"""The VM's cloud-init user-data, built as data and emitted as YAML.

What the first boot sets up (Ubuntu on OCI):
- the pinned ed25519 host key (the image's host keys deleted, no other type made), password
  login off, root login off, admin keys for the default user `ubuntu`;
- a locked `deploy` user whose one `authorized_keys` line forces the deploy program;
- the deploy program at DEPLOY_PROGRAM_PATH, downloaded from the environment's Object Storage
  bucket and installed only if its SHA-256 is the one written here (components/environment/
  program_store.py), and its state directory;
- unattended security upgrades;
- iptables: 80/443 accepted in INPUT (Oracle's images reject all but 22), and a
  DOCKER-USER rule that drops container traffic to the instance metadata service, which
  serves this very user-data (host private key included). Both saved with
  netfilter-persistent so they survive a reboot;
- Docker engine and the compose plugin, installed only after the rules are saved, so the
  saved rule set holds none of Docker's own chains (Docker re-creates those at each start);
- the edge proxy: Ubuntu's `caddy` under systemd, listening on the published ports (80/443)
  and forwarding to the slot the deploy program names (its Caddyfile and slot marker live in
  EDGE_DIR, owned by the deploy user and readable by caddy's group; its admin API is a unix
  socket only caddy's group reaches, and the deploy user is in that group).

Changing anything here changes `user_data`, and OCI replaces an instance whose user_data
changes: the reserved IP and the host key survive, the running release does not.
"""

from __future__ import annotations

import base64
import gzip
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.environment import deploy_program
from components.workflows import emit

DEFAULT_USER = "ubuntu"
"""The default user of Canonical's Ubuntu images; admin keys go to it."""
METADATA_SERVICE = "169.254.169.254/32"
DOCKER_PACKAGES = ("docker.io", "docker-compose-v2", "busybox-static")
"""busybox-static: the statically linked busybox each component's health check runs, mounted
read-only into its container (compose.PROBE), so an image needs no HTTP client of its own."""
EDGE_PACKAGES = ("caddy",)
"""Ubuntu 24.04's Caddy (2.6.2, universe): the version the deploy tests run (Debian 12's build)."""
CADDY_DROP_IN = "/etc/systemd/system/caddy.service.d/dreamscape.conf"
"""Ubuntu's own builds of the engine and the compose plugin: security fixes arrive through
the same unattended upgrades as the rest of the system, with no third-party apt key."""
APT_LOCK_TIMEOUT_SECONDS = 900
"""How long first-boot installs wait for apt's lock: apt-daily and unattended-upgrades take it
at boot, and a plain `apt-get` fails at once while they hold it (cloud-init's own `packages`
wait; `runcmd` lines do not)."""
FIRST_BOOT_TAG = "dreamscape-first-boot"
"""The syslog tag of the first boot's outcome; a failure also goes to the console, which OCI's
console history shows."""
MAX_USER_DATA_BYTES = 32_000
"""OCI's limit on an instance's metadata (user_data is stored base64-encoded)."""


@dataclass(frozen=True)
class CloudInitArgs:
    environment: str
    host_private_key_openssh: str
    host_public_key_openssh: str
    ci_public_key_openssh: str
    admin_ssh_keys: Sequence[str]
    program_url: str
    """Where the deploy program is downloaded from (a pre-authenticated request: secret)."""
    program_sha256: str


@dataclass(frozen=True)
class IptablesRule:
    chain: str
    spec: tuple[str, ...]
    why: str


FIREWALL: tuple[IptablesRule, ...] = (
    IptablesRule(
        "INPUT",
        ("-p", "tcp", "-m", "conntrack", "--ctstate", "NEW", "--dport", "80", "-j", "ACCEPT"),
        "HTTP: Oracle's Ubuntu images reject every new connection but SSH",
    ),
    IptablesRule(
        "INPUT",
        ("-p", "tcp", "-m", "conntrack", "--ctstate", "NEW", "--dport", "443", "-j", "ACCEPT"),
        "HTTPS, as above",
    ),
    IptablesRule(
        "DOCKER-USER",
        ("-d", METADATA_SERVICE, "-j", "DROP"),
        "containers never reach the metadata service that serves this user-data",
    ),
)


def ci_key_comment(environment: str) -> str:
    return f"dreamscape-ci-{environment}"


def firewall_commands(rules: Sequence[IptablesRule] = FIREWALL) -> list[str]:
    """Shell lines that add each rule once (at the top of its chain), then save them all."""
    lines = []
    chains = sorted({r.chain for r in rules} - {"INPUT", "FORWARD", "OUTPUT"})
    for chain in chains:
        # Docker creates DOCKER-USER when it starts; creating it first lets the saved rule
        # set hold our rule, and Docker keeps an existing DOCKER-USER chain as it is.
        lines.append(f"iptables -n -L {shlex.quote(chain)} >/dev/null 2>&1 || iptables -N {shlex.quote(chain)}")
    for rule in rules:
        spec = shlex.join(rule.spec)
        chain = shlex.quote(rule.chain)
        lines.append(f"iptables -C {chain} {spec} 2>/dev/null || iptables -I {chain} 1 {spec}")
    lines.append("netfilter-persistent save")
    return lines


def first_boot_report(marker: str = deploy_program.FIRST_BOOT_FILE) -> list[str]:
    """An exit trap: the first boot's outcome in the system log, in `marker` (which the deploy
    program's `status` shows, and whose `complete` its deploys wait for) and, on failure, on the
    console.

    cloud-init also marks a failed `runcmd` (`cloud-init status --long` says `error`); this says
    it where an operator without SSH looks first. runcmd runs under /bin/sh: no ERR trap.
    """
    failed = f"{FIRST_BOOT_TAG}: FAILED (exit $rc); see /var/log/cloud-init-output.log"
    target = shlex.quote(marker)
    return [
        'first_boot_done() { rc=$?; if [ "$rc" -eq 0 ]; then '
        f"echo complete > {target}; logger -t {FIRST_BOOT_TAG} complete; "
        f'else echo "FAILED (exit $rc)" > {target}; '
        f'echo "{failed}" | tee -a /dev/console | logger -t {FIRST_BOOT_TAG}; fi; }}',
        "trap first_boot_done EXIT",
    ]


def apt_install(packages: Sequence[str]) -> str:
    """An `apt-get install` that waits for apt's lock instead of failing while another apt holds it."""
    return (
        f"DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout={APT_LOCK_TIMEOUT_SECONDS} "
        "install -y --no-install-recommends " + shlex.join(packages)
    )


def caddy_drop_in() -> str:
    """caddy.service as the edge runs: its configuration from EDGE_DIR (which the deploy program
    writes), and umask 007 so the admin socket in /run/caddy opens to caddy's group only."""
    config = shlex.join(["--config", f"{deploy_program.EDGE_DIR}/{deploy_program.CADDYFILE}", "--adapter", "caddyfile"])
    return "\n".join(
        [
            "[Service]",
            "ExecStart=",
            f"ExecStart=/usr/bin/caddy run {config}",
            "ExecReload=",
            f"ExecReload=/usr/bin/caddy reload {config} --force",
            "UMask=0007",
            "RuntimeDirectory=caddy",
            "RuntimeDirectoryMode=0750",
            "",
        ]
    )


def program_install(url: str, sha256: str, path: str = deploy_program.DEPLOY_PROGRAM_PATH) -> list[str]:
    """Download the deploy program, and install it only if its SHA-256 is `sha256`.

    curl retries for a while (the network may come up after cloud-init starts), and the file
    lands under its final name only once checked: a failure leaves no program, which the first
    boot's report then names.
    """
    download = f"{path}.download"
    return [
        shlex.join(["curl", "--fail", "--silent", "--show-error", "--retry", "10", "--retry-all-errors"])
        + " "
        + shlex.join(["--max-time", "120", "--output", download, url]),
        f"echo {shlex.quote(f'{sha256}  {download}')} | sha256sum --check --strict --quiet",
        shlex.join(["chmod", "0755", download]),
        shlex.join(["mv", download, path]),
    ]


def runcmd(program_url: str, program_sha256: str, marker: str = deploy_program.FIRST_BOOT_FILE) -> list[str]:
    """The first-boot commands, in order; `set -eu` stops at the first failure, which the trap reports."""
    deploy = deploy_program.DEPLOY_USER
    edge = deploy_program.EDGE_DIR
    return [
        "set -eu",
        *first_boot_report(marker),
        *program_install(program_url, program_sha256),
        *firewall_commands(),
        apt_install(DOCKER_PACKAGES),
        f"usermod -aG docker {shlex.quote(deploy)}",
        shlex.join(["install", "-d", "-o", deploy, "-g", deploy, "-m", "0750", deploy_program.STATE_DIR]),
        "systemctl enable --now docker",
        "docker compose version",
        # The package starts caddy with the drop-in and the first Caddyfile write_files left.
        apt_install(EDGE_PACKAGES),
        f"usermod -aG caddy {shlex.quote(deploy)}",
        # setgid: what the deploy program writes there stays in caddy's group, readable by it.
        shlex.join(["chown", "-R", f"{deploy}:caddy", edge]),
        shlex.join(["chmod", "2750", edge]),
        shlex.join(["chmod", "0640", f"{edge}/{deploy_program.CADDYFILE}"]),
        "systemctl daemon-reload",
        "systemctl enable caddy",
        "systemctl restart caddy",
        "caddy version",
    ]


def document(args: CloudInitArgs) -> dict[str, Any]:
    """The cloud-config as data."""
    ci_line = deploy_program.authorized_keys_line(args.ci_public_key_openssh, ci_key_comment(args.environment))
    return {
        "ssh_pwauth": False,
        "disable_root": True,
        "ssh_deletekeys": True,
        # The pinned key exists by then, so nothing is generated: one host key, the pinned one.
        "ssh_genkeytypes": ["ed25519"],
        "ssh_keys": {
            "ed25519_private": args.host_private_key_openssh,
            "ed25519_public": args.host_public_key_openssh.strip(),
        },
        # Admin keys for the default user; none ships (cloud-init refuses an empty list).
        **({"ssh_authorized_keys": list(args.admin_ssh_keys)} if args.admin_ssh_keys else {}),
        "users": [
            "default",
            {
                "name": deploy_program.DEPLOY_USER,
                "gecos": "Dreamscape deploys (forced command only)",
                # A real shell: sshd runs the forced command through the user's shell.
                "shell": "/bin/bash",
                "lock_passwd": True,
                "ssh_authorized_keys": [ci_line],
            },
        ],
        "package_update": True,
        "package_upgrade": True,
        "packages": ["unattended-upgrades", "iptables-persistent", "netfilter-persistent"],
        "write_files": [
            {
                "path": "/etc/apt/apt.conf.d/20auto-upgrades",
                "owner": "root:root",
                "permissions": "0644",
                "content": 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n',
            },
            {
                "path": CADDY_DROP_IN,
                "owner": "root:root",
                "permissions": "0644",
                "content": caddy_drop_in(),
            },
            {
                # The edge before any deploy: its admin socket, no site (the first deploy adds them).
                "path": f"{deploy_program.EDGE_DIR}/{deploy_program.CADDYFILE}",
                "owner": "root:root",
                "permissions": "0644",
                "content": deploy_program.initial_caddyfile(),
            },
            {
                "path": "/etc/docker/daemon.json",
                "owner": "root:root",
                "permissions": "0644",
                # live-restore keeps containers running while an upgrade restarts dockerd;
                # the local log driver rotates logs on a small boot volume.
                "content": json.dumps({"live-restore": True, "log-driver": "local"}, indent=2) + "\n",
            },
        ],
        "runcmd": runcmd(args.program_url, args.program_sha256),
    }


def render(args: CloudInitArgs) -> str:
    """The user-data text: `#cloud-config` first (cloud-init requires it), then the header."""
    return "#cloud-config\n" + emit.dump(document(args), __name__)


def encode(text: str) -> str:
    """user_data as OCI stores it: base64 of the gzip-compressed text.

    cloud-init decompresses gzip user-data by itself. Compression keeps the deploy program
    and the rest well inside OCI's metadata limit; `mtime=0` keeps the bytes identical from
    run to run, since any change to user_data replaces the instance.
    """
    encoded = base64.b64encode(gzip.compress(text.encode(), compresslevel=9, mtime=0)).decode()
    problem = size_problem(encoded)
    if problem:
        raise ValueError(problem)
    return encoded


def decode(user_data_base64: str) -> str:
    """The text of a user_data value (gzip-compressed or plain, as cloud-init accepts both)."""
    raw = base64.b64decode(user_data_base64)
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


def size_problem(user_data_base64: str) -> str | None:
    """Why OCI would refuse this user_data, or None."""
    if len(user_data_base64) > MAX_USER_DATA_BYTES:
        return (
            f"user_data is {len(user_data_base64)} bytes base64-encoded; OCI accepts at most "
            f"{MAX_USER_DATA_BYTES} bytes of instance metadata"
        )
    return None


def user_data(
    environment: str,
    host_private_key_openssh: pulumi.Input[str],
    host_public_key_openssh: pulumi.Input[str],
    ci_public_key_openssh: pulumi.Input[str],
    admin_ssh_keys: Sequence[str],
    program_url: pulumi.Input[str],
    program_sha256: str,
) -> pulumi.Output[str]:
    """`render()` over the keys' Outputs; secret, since it carries the host private key."""
    return pulumi.Output.secret(
        pulumi.Output.all(host_private_key_openssh, host_public_key_openssh, ci_public_key_openssh, program_url).apply(
            lambda k: render(CloudInitArgs(environment, k[0], k[1], k[2], tuple(admin_ssh_keys), k[3], program_sha256))
        )
    )
