"""A real OpenSSH server on 127.0.0.1 with the deploy program behind the CI key, on a real
Docker Engine, for the e2e tests and the deploy benchmark.

What is real: `sshd` (Debian's openssh-server) with its own per-run host key, a throwaway
system user in group `docker` (as cloud-init makes the deploy user), its `authorized_keys`
holding `authorized_keys_line(...)` exactly as cloud-init writes it, the program text as
cloud-init installs it, `flock`, `logger`, and the Docker engine with the Compose v2 plugin,
with images from local registries (tests/harness/engine.py).

The CI key's line forces `/usr/local/sbin/dreamscape-deploy` (DEPLOY_PROGRAM_PATH). Rather
than install into the host's /usr/local/sbin, sshd runs in a private mount namespace
(`unshare --mount`) where a temporary directory holding the program is bind-mounted over
/usr/local/sbin: the program sits at its production path for sshd and its children only, the
authorized_keys line stays byte for byte what production renders, and nothing outside the
temporary directory changes except the throwaway user (removed on stop) and the engine's
containers and images of this server's compose project (removed on reset and stop).

sshd sets the program's settings through `SetEnv`, as an admin would on a VM: the state
directory, a compose project of its own (so two servers share the engine), its edge's
directory, admin socket, loopback address and slot ports, the system log
socket (a datagram socket the harness reads), a PATH where the packaged docker client comes
first, and short fallbacks for the options a request leaves out (lock wait, health timeout,
releases kept), each within the program's bounds. The pipeline's requests carry their own
values, which win.

In front of the releases runs the VM's edge proxy (tests/harness/edge.py), a Caddy of the
server's own, on 127.0.0.1; the releases run in the two slot projects `<project>-blue` and
`<project>-green`.

Everything runs as root (sshd needs it); every wait is bounded.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.environment import deploy_program
from tests.harness import edge, engine, workflow
from tests.harness.edge import EdgeProxy
from tests.harness.engine import Engine, free_port

SSHD = "/usr/sbin/sshd"
CI_COMMENT = "dreamscape-ci"
UNSHARE = ("unshare", "--mount", "--propagation", "private", "--")
LOCK_WAIT = 2
WAIT_TIMEOUT = 10
"""The shortest health wait the program accepts (`--wait-timeout`, `deploy.waitTimeoutSeconds`)."""
KEEP = 3


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run the harness, as messages naming the Debian package."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the sshd harness runs as root (sshd, useradd, a mount namespace)")
    for tool, package in (
        (SSHD, "openssh-server"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("ssh-agent", "openssh-client"),
        ("scp", "openssh-client"),
        ("unshare", "util-linux"),
        ("logger", "bsdutils"),
        ("flock", "util-linux"),
        ("useradd", "passwd"),
    ):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not installed (Debian package {package})")
    problems += edge.missing_prerequisites()
    if os.geteuid() == 0:
        problems += engine.missing_prerequisites()
    if not problems:
        unshare = subprocess.run([*UNSHARE, "true"], capture_output=True, check=False, timeout=30)
        if unshare.returncode != 0:
            problems.append("no private mount namespace here (unshare --mount needs CAP_SYS_ADMIN)")
    return problems


def keygen(path: Path, comment: str | None = None) -> str:
    """A new ed25519 key pair at `path` (no passphrase); returns the public key `<type> <base64>`."""
    comment_args = ["-C", comment] if comment is not None else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", *comment_args, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def base_config(port: int, host_key: Path) -> list[str]:
    """What every test sshd sets, as Ubuntu's does: 127.0.0.1 only, its own host key, PAM,
    keys only, strict modes."""
    return [
        "ListenAddress 127.0.0.1",
        f"Port {port}",
        f"HostKey {host_key}",
        "PidFile none",
        "UsePAM yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "StrictModes yes",
    ]


def check_config(config: Path) -> None:
    """`sshd -t` on the file, with sshd's privilege separation directory in place."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True, capture_output=True, timeout=60)


def remove_user(user: str) -> None:
    """The throwaway system user and its group, gone."""
    subprocess.run(["userdel", user], capture_output=True, check=False, timeout=60)
    with contextlib.suppress(KeyError):
        grp.getgrnam(user)
        subprocess.run(["groupdel", user], capture_output=True, check=False, timeout=60)


def wait_for_sshd(process: subprocess.Popen, port: int, log_path: Path, seconds: float = 15) -> None:
    """Until sshd answers with its banner on 127.0.0.1:`port`; RuntimeError with its log if it exits or stays silent."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}:\n{log_path.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
            if probe.recv(64).startswith(b"SSH-2.0-"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on port {port} within {seconds} s:\n{log_path.read_text()}")


def frames(
    compose: bytes | None, login: tuple[str, str, str] | None = None, secrets: dict[str, str] | None = None
) -> bytes:
    """The program's stdin: an optional `login <registry> <user> <length>` frame, then the
    `compose <length>` frame, then an optional `secrets <length>` frame."""
    data = b""
    if login is not None:
        registry, user, token = login
        data += f"login {registry} {user} {len(token.encode())}\n".encode() + token.encode()
    if compose is not None:
        data += f"compose {len(compose)}\n".encode() + compose
    if secrets is not None:
        payload = json.dumps(secrets).encode()
        data += f"secrets {len(payload)}\n".encode() + payload
    return data


@dataclass
class Key:
    path: Path
    public: str


class DeployServer:
    def __init__(self, engine: Engine, user: str = "dsdeploy", acme_ca_root: Path | None = None) -> None:
        self.engine = engine
        self.acme_ca_root = acme_ca_root
        """A CA the edge trusts for the ACME directory (the HTTPS tests' pebble)."""
        self.base = Path(tempfile.mkdtemp(prefix="dreamscape-deploy-e2e-"))
        self.base.chmod(0o755)
        self.user = f"{user}{os.getpid()}"[:32]
        self.project = self.user
        """The compose project every release of this server runs under."""
        self.port = free_port()
        self.http_port = edge.free_port_block(1)
        """Where the tests' compose files publish the gateway, on 127.0.0.1 (the edge listens
        there from the first deploy on: a port outside the ephemeral range stays free until then)."""
        self.home = self.base / "home"
        self.state_dir = self.base / "state"
        self.first_boot = self.base / "first-boot"
        """What cloud-init's first boot writes when it ends; `complete` here, as on a booted VM."""
        self.log_path = self.base / "sshd.log"
        self.syslog_path = self.base / "log" / "syslog.sock"
        self.known_hosts = self.base / "client" / "known_hosts"
        self.process: subprocess.Popen | None = None
        self._syslog: socket.socket | None = None
        self._messages: list[str] = []
        self._messages_lock = threading.Lock()
        self._user_created = False
        self.edge = EdgeProxy(self.base, user=f"{self.user[:27]}-edge")
        """The VM's Caddy in front of the slots (tests/harness/edge.py)."""

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> DeployServer:
        try:
            self._create_user()
            self._install()
            self.edge.start()
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> DeployServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=60)

    def _create_user(self) -> None:
        caddy_group = self.edge.create_user()
        self._run(
            "useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(self.home),
            "--shell", "/bin/bash", "--groups", f"docker,{grp.getgrgid(caddy_group).gr_name}", self.user,
        )  # fmt: skip
        self._user_created = True
        entry = pwd.getpwnam(self.user)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def _owned(self, path: Path, mode: int) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, self.uid, self.gid)
        path.chmod(mode)
        return path

    def _key(self, name: str) -> Key:
        path = self.base / "client" / name
        keygen(path, name)
        return Key(path, path.with_suffix(".pub").read_text().strip())

    def _install(self) -> None:
        (self.base / "client").mkdir(mode=0o700)
        etc = self.base / "etc"
        etc.mkdir(mode=0o700)
        self.host_key = etc / "ssh_host_ed25519_key"
        self.known_hosts_line = f"[127.0.0.1]:{self.port} {keygen(self.host_key)}"
        self.known_hosts.write_text(self.known_hosts_line + "\n")

        self.first_boot.write_text("complete\n")
        self.first_boot.chmod(0o644)
        # The deploy user's home and keys, as cloud-init leaves them.
        self.ci_key = self._key("ci")
        self.control_key = self._key("control")
        ssh_dir = self._owned(self.home / ".ssh", 0o700)
        self._owned(self.home, 0o750)
        self.ci_line = deploy_program.authorized_keys_line(self.ci_key.public, CI_COMMENT)
        # A control key forced into the same program but without `restrict`: what it can do
        # and the CI key cannot is exactly what `restrict` takes away.
        control_line = f'command="{deploy_program.DEPLOY_PROGRAM_PATH}" {self.control_key.public}'
        authorized = ssh_dir / "authorized_keys"
        authorized.write_text(self.ci_line + "\n" + control_line + "\n")
        os.chown(authorized, self.uid, self.gid)
        authorized.chmod(0o600)

        # The program at its production path (inside sshd's mount namespace).
        self.program_dir = self.base / "sbin"
        self.program_dir.mkdir(mode=0o755)
        program = self.program_dir / Path(deploy_program.DEPLOY_PROGRAM_PATH).name
        program.write_text(deploy_program.program_text())
        program.chmod(0o755)

        # First on the program's PATH: a docker that refuses to run with a secret of the current
        # request (its registry token, its secrets' values) on its command line.
        self.guard_dir = self.base / "guard"
        self.guard_dir.mkdir(mode=0o755)
        self.guarded_values = workflow.install_argv_guard(self.guard_dir, [], tools=("docker",))

        self._owned(self.state_dir, 0o750)

        log_dir = self.base / "log"
        log_dir.mkdir(mode=0o755)
        self._syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._syslog.bind(str(self.syslog_path))
        self.syslog_path.chmod(0o666)
        # Read as a syslog daemon would: a datagram queue holds few messages, then `logger` blocks.
        threading.Thread(target=self._read_syslog, args=(self._syslog,), daemon=True).start()

        edge_settings = self.edge.install(self.uid, self.acme_ca_root)
        # /usr/bin before /usr/local/bin: a static docker client there would shadow the packaged one.
        setenv = {
            **edge_settings,
            "PATH": f"{self.guard_dir}:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin",
            "DREAMSCAPE_DEPLOY_STATE_DIR": str(self.state_dir),
            "DREAMSCAPE_DEPLOY_PROJECT": self.project,
            "DREAMSCAPE_DEPLOY_LOCK_WAIT": str(LOCK_WAIT),
            "DREAMSCAPE_DEPLOY_WAIT_TIMEOUT": str(WAIT_TIMEOUT),
            "DREAMSCAPE_DEPLOY_KEEP": str(KEEP),
            "DREAMSCAPE_DEPLOY_LOG_SOCKET": str(self.syslog_path),
            "DREAMSCAPE_DEPLOY_FIRST_BOOT": str(self.first_boot),
        }
        assert set(setenv) - {"PATH"} <= set(deploy_program.SETTINGS)
        config = [
            *base_config(self.port, self.host_key),
            # As on Ubuntu's sshd: the sftp subsystem.
            "AuthorizedKeysFile .ssh/authorized_keys",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            "AcceptEnv LANG LC_*",
            f"AllowUsers {self.user}",
            "LogLevel VERBOSE",
            "SetEnv " + " ".join(f"{k}={v}" for k, v in setenv.items()),
        ]
        self.config = etc / "sshd_config"
        self.config.write_text("\n".join(config) + "\n")

    def _launch(self) -> None:
        check_config(self.config)
        mount_and_run = 'mount --bind "$1" "$2" && exec "$3" -D -e -f "$4"'
        target = str(Path(deploy_program.DEPLOY_PROGRAM_PATH).parent)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*UNSHARE, "/bin/sh", "-c", mount_and_run, "sh", str(self.program_dir), target, SSHD, str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        wait_for_sshd(self.process, self.port, self.log_path)

    def stop(self) -> None:
        engine.terminate(self.process, timeout=5)
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.clear_engine()
        self.edge.remove()
        if self._user_created:
            self._kill_user_processes()
            remove_user(self.user)
        if self._syslog is not None:
            with contextlib.suppress(OSError):
                self._syslog.shutdown(socket.SHUT_RDWR)
            self._syslog.close()
        shutil.rmtree(self.base, ignore_errors=True)

    def user_processes(self) -> list[int]:
        """The pids of what runs as the throwaway user: the deploy program and its docker calls."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid == self.uid:
                        pids.append(int(entry.name))
        return pids

    def wait_idle(self, seconds: float = 90) -> bool:
        """Until nothing runs as the throwaway user (a deploy whose client went away has finished
        on its own); False if something still does after `seconds`."""
        deadline = time.monotonic() + seconds
        while self.user_processes():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _kill_user_processes(self) -> None:
        """Programs a test left running as the throwaway user (found by uid, killed by pid)."""
        for pid in self.user_processes():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    # --- per test ------------------------------------------------------------------------------

    def reset(self) -> None:
        """A VM that never saw a deploy and an engine with nothing of this server's on it."""
        shutil.rmtree(self.state_dir)
        self._owned(self.state_dir, 0o750)
        self.first_boot.write_text("complete\n")
        self.clear_engine()
        self.edge.reset()
        self.syslog()

    def clear_engine(self) -> None:
        """Remove both slots' containers and networks, and every image pulled from the test registries."""
        for project in (*self.projects, self.accessories_project):
            engine.docker(
                "compose", "--project-name", project, "down", "--volumes", "--remove-orphans", "--timeout", "2"
            )
        registries = (self.engine.registry.host + "/", self.engine.auth_registry.host + "/")
        listed = engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()
        pulled = [name for name in listed if name.startswith(registries)]
        if pulled:
            engine.docker("rmi", "--force", *pulled)

    def local(self, compose_text: str) -> str:
        """A compose file as this server runs it: its one published port bound to 127.0.0.1
        at this server's `http_port` (production publishes on the VM's public address)."""
        document = yaml.safe_load(compose_text)
        published = [s for s in document["services"].values() if s.get("ports")]
        if len(published) > 1:
            raise ValueError("the tests' servers publish one port")
        for service in published:
            (port,) = service["ports"]
            service["ports"] = [f"127.0.0.1:{self.http_port}:{str(port).rsplit(':', 1)[1]}"]
        return yaml.safe_dump(document, sort_keys=False)

    def stand_in_accessories(self, compose_text: str) -> str:
        """The file with each accessory (`x-dreamscape-accessories`) run from the harness's busybox
        image, answering on 5432 with a health check to match: the pinned images of Docker Hub
        cannot be pulled here. Everything else, its secrets and networks included, stays as rendered."""
        document = yaml.safe_load(compose_text)
        for name in document.get(deploy_program.ACCESSORIES_EXTENSION) or []:
            service = document["services"][name]
            service["image"] = self.engine.publish(self.engine.registry.image(f"accessories/{name}", "stand-in"))
            service.setdefault("environment", {})["PORT"] = "5432"
            service["healthcheck"]["test"] = ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:5432/health"]
        return yaml.safe_dump(document, sort_keys=False)

    @staticmethod
    def secrets_for(compose_text: str) -> dict[str, str]:
        """A test value for each secret the file names (what APP_SECRETS would carry)."""
        names = yaml.safe_load(compose_text).get("secrets") or {}
        return {name: f"test-value-of-{name.lower()}" for name in names}

    @property
    def projects(self) -> tuple[str, ...]:
        """The compose projects of the two slots."""
        return tuple(f"{self.project}-{slot}" for slot in deploy_program.SLOTS)

    @property
    def accessories_project(self) -> str:
        return f"{self.project}-accessories"

    def containers(self, slot: str | None = None) -> list[dict]:
        """A slot's containers (default: the slot the edge sends traffic to) as
        `docker compose ps --all --format json` shows them."""
        project = f"{self.project}-{slot or self.edge.live()}"
        output = engine.docker("compose", "--project-name", project, "ps", "--all", "--format", "json")
        output = output.strip()
        if output.startswith("["):
            return json.loads(output)
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def idle_slot_containers(self) -> list[dict]:
        """What runs in the slot the edge does not send traffic to (nothing, between deploys)."""
        return self.containers("green" if self.edge.live() == "blue" else "blue")

    def running(self) -> dict[str, tuple[str, str]]:
        """service -> (image, health) of the live slot's containers; health is the container's
        state when it is not running or has no health check."""
        found: dict[str, tuple[str, str]] = {}
        for container in self.containers():
            running = container["State"] == "running"
            health = container["Health"] if running and container["Health"] else container["State"]
            found[container["Service"]] = (container["Image"], health)
        return found

    def state(self) -> dict:
        path = self.state_dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _read_syslog(self, receiver: socket.socket) -> None:
        while True:
            try:
                message = receiver.recv(65536).decode("utf-8", "replace")
            except OSError:
                return
            with self._messages_lock:
                self._messages.append(message)

    def syslog(self) -> list[str]:
        """Messages received on the system log socket since the last call."""
        with self._messages_lock:
            messages, self._messages = self._messages, []
        return messages

    # --- clients ---------------------------------------------------------------------------------

    def ssh_args(self, key: Key | None = None, known_hosts: Path | None = None) -> list[str]:
        return [
            "ssh", "-F", "none",
            "-p", str(self.port), "-l", self.user, "-i", str((key or self.ci_key).path),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
        ]  # fmt: skip

    def ssh(
        self, *command: str, stdin: bytes = b"", key: Key | None = None, options: tuple[str, ...] = (), timeout=60
    ) -> subprocess.CompletedProcess:
        args = [*self.ssh_args(key), *options, "127.0.0.1", *command]
        return subprocess.run(args, input=stdin, capture_output=True, timeout=timeout, check=False)

    def deploy(
        self, pairs: dict[str, str], compose: str, login=None, flags: tuple[str, ...] = (), secrets=None, **kwargs
    ) -> subprocess.CompletedProcess:
        """`deploy <flags> <component>=<image> ...`, the compose file (and a login, and secrets)
        framed on stdin; `flags` are the program's options, such as `("--keep", "2")`."""
        command = ["deploy", *flags, *(f"{c}={i}" for c, i in pairs.items())]
        self.guard(*([login[2]] if login else []), *(secrets or {}).values())
        return self.ssh(*command, stdin=frames(compose.encode(), login, secrets), **kwargs)

    def guard(self, *values: str) -> None:
        """The secrets no docker command the program runs may carry in its arguments, from now on."""
        workflow.write_guarded_values(self.guarded_values, workflow.secret_lines(values))

    def start_deploy(self, pairs: dict[str, str], compose: str, flags: tuple[str, ...] = ()) -> subprocess.Popen:
        """A deploy running in the background (for the lock tests)."""
        command = ["deploy", *flags, *(f"{c}={i}" for c, i in pairs.items())]
        with tempfile.TemporaryFile() as stdin:
            stdin.write(frames(compose.encode()))
            stdin.seek(0)
            return subprocess.Popen(
                [*self.ssh_args(), "127.0.0.1", *command], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )


class BastionServer:
    """A real sshd on 127.0.0.1 playing an OCI Bastion's SSH endpoint: one system user whose keys
    can do nothing but open the one forward each allows.

    OCI admits a port-forwarding session's key for exactly the session's target; here
    `authorize(key, ip, port)` writes `restrict,port-forwarding,permitopen="ip:port"` for it, and
    `revoke(key)` takes it away when the session is deleted. No shell, no TTY, no agent, no
    remote forwards. Its host key is `host_key` (`<type> <base64>`), what OCI returns as the
    session's `bastionPublicHostKeyInfo`.
    """

    def __init__(self, user: str = "dsbastion") -> None:
        # Not under /tmp: with StrictModes, sshd refuses keys in a file below a world-writable
        # directory, as it would on a real host.
        self.base = Path(tempfile.mkdtemp(prefix="dreamscape-bastion-e2e-", dir="/run"))
        self.base.chmod(0o755)
        self.user = f"{user}{os.getpid()}"[:32]
        self.port = free_port()
        self.log_path = self.base / "sshd.log"
        self.authorized = self.base / "keys" / "authorized_keys"
        self.process: subprocess.Popen | None = None
        self._user_created = False
        self._lines: dict[str, str] = {}
        self._lock = threading.Lock()

    def start(self) -> BastionServer:
        try:
            subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/usr/sbin/nologin", self.user],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            self._user_created = True
            etc = self.base / "etc"
            etc.mkdir(mode=0o700)
            key = etc / "ssh_host_ed25519_key"
            self.host_key = keygen(key)
            self.authorized.parent.mkdir(mode=0o755)
            self._write_keys()
            config = etc / "sshd_config"
            config.write_text(
                "\n".join(
                    [
                        *base_config(self.port, key),
                        f"AuthorizedKeysFile {self.authorized}",
                        f"AllowUsers {self.user}",
                        "AllowTcpForwarding local",
                        "AllowAgentForwarding no",
                        "AllowStreamLocalForwarding no",
                        "X11Forwarding no",
                        "PermitTunnel no",
                        "PermitTTY no",
                        "GatewayPorts no",
                        "ForceCommand /usr/sbin/nologin",
                        "LogLevel VERBOSE",
                    ]
                )
                + "\n"
            )
            check_config(config)
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
            wait_for_sshd(self.process, self.port, self.log_path)
            return self
        except BaseException:
            self.stop()
            raise

    def _write_keys(self) -> None:
        temporary = self.authorized.with_suffix(".new")
        temporary.write_text("".join(line + "\n" for line in self._lines.values()))
        temporary.chmod(0o644)
        temporary.replace(self.authorized)

    def authorize(self, public_key: str, ip: str, port: int) -> None:
        """Admit `public_key` for a forward to ip:port only."""
        with self._lock:
            self._lines[public_key] = f'restrict,port-forwarding,permitopen="{ip}:{port}" {public_key}'
            self._write_keys()

    def revoke(self, public_key: str) -> None:
        with self._lock:
            self._lines.pop(public_key, None)
            self._write_keys()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        engine.terminate(self.process, timeout=5)
        if self._user_created:
            remove_user(self.user)
        shutil.rmtree(self.base, ignore_errors=True)
