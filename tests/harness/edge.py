"""The VM's edge proxy for the deploy tests: Debian's Caddy, run as the VM runs Ubuntu's.

What is real: the `caddy` binary (Debian 12's 2.6.2, the version Ubuntu 24.04 ships), run with
the command line of the VM's systemd drop-in (cloudinit.caddy_drop_in) as a throwaway system
user of its own with the drop-in's umask 007, its configuration
file in an edge directory owned by the deploy user and group-readable by caddy's group (setgid,
as cloud-init makes it), its admin API on a unix socket the deploy user reaches through that
group, and the same first configuration cloud-init writes (`deploy_program.initial_caddyfile`).
The deploy program then configures it through the socket, exactly as on a VM.

Listens on 127.0.0.1 only: the server's `SetEnv` gives the program `DREAMSCAPE_DEPLOY_EDGE_BIND`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

from components.environment import cloudinit, deploy_program
from tests.harness import engine

CADDY = "/usr/bin/caddy"


def missing_prerequisites() -> list[str]:
    if not Path(CADDY).exists():
        return [f"{CADDY} not installed (Debian package caddy; .ci/run installs it)"]
    return []


_TAKEN: set[int] = set()
"""Ports handed out by free_port_block in this process."""


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports on 127.0.0.1, below the kernel's ephemeral
    range: the slots' containers bind them again at every start, and a port in that range may
    meanwhile be the source port of any outgoing connection (as on a VM, whose slot ports,
    20000 up, sit below it too)."""
    bottom, top = worker_ports()
    for _ in range(200):
        first = random.randrange(bottom, top - count)
        if _TAKEN & set(range(first, first + count)):
            continue  # another server of this run has them, even while nothing listens there
        probes = []
        try:
            for port in range(first, first + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            _TAKEN.update(range(first, first + count))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1 from {bottom} to {top}")


def worker_ports() -> tuple[int, int]:
    """The ports from 10000 to the ephemeral range, or this pytest-xdist worker's share of them:
    a port one worker has handed out stays free until its server's first deploy binds it, and
    the other worker cannot see `_TAKEN`."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    share = (low - 10000) // workers
    return 10000 + index * share, 10000 + (index + 1) * share


class EdgeProxy:
    """Caddy for one DeployServer: `directory` (the deploy user's), `admin` (its socket)."""

    def __init__(self, base: Path, user: str) -> None:
        self.base = base
        self.user = user
        """Caddy's throwaway user, one per server."""
        self.directory = base / "edge"
        self.run_dir = base / "run-caddy"
        self.home = base / "caddy-home"
        self.admin = self.run_dir / "admin.sock"
        self.slot_ports = free_port_block(2 * deploy_program.MAX_PUBLISHED)
        self.log_path = base / "caddy.log"
        self.process: subprocess.Popen | None = None
        self._user_created = False

    def create_user(self) -> int:
        """The caddy user; returns its group's id, which the deploy user joins."""
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(self.home),
             "--shell", "/usr/sbin/nologin", self.user],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self._user_created = True
        entry = pwd.getpwnam(self.user)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        return self.gid

    def install(self, deploy_uid: int, acme_ca_root: Path | None = None) -> dict[str, str]:
        """The directories and first configuration; returns the program's settings for `SetEnv`."""
        self.directory.mkdir(mode=0o750)
        os.chown(self.directory, deploy_uid, self.gid)
        self.directory.chmod(0o2750)
        for path in (self.run_dir, self.home):
            path.mkdir(mode=0o755)
            os.chown(path, self.uid, self.gid)
        self.settings = {
            "DREAMSCAPE_DEPLOY_EDGE_DIR": str(self.directory),
            "DREAMSCAPE_DEPLOY_EDGE_ADMIN": str(self.admin),
            "DREAMSCAPE_DEPLOY_EDGE_BIND": "127.0.0.1",
            "DREAMSCAPE_DEPLOY_SLOT_PORTS": str(self.slot_ports),
            "DREAMSCAPE_DEPLOY_DRAIN_TIMEOUT": "10",
        }
        if acme_ca_root is not None:
            self.settings["DREAMSCAPE_DEPLOY_ACME_CA_ROOT"] = str(acme_ca_root)
        self.write_initial()
        return self.settings

    def write_initial(self) -> None:
        """The configuration cloud-init writes before any deploy: the admin socket, no site."""
        path = self.directory / deploy_program.CADDYFILE
        path.write_text(deploy_program.initial_caddyfile(self.settings))
        os.chown(path, self.uid, self.gid)
        path.chmod(0o640)

    def command(self) -> list[str]:
        """The drop-in's ExecStart (what systemd runs on the VM), with this edge's directory."""
        (line,) = [x for x in cloudinit.caddy_drop_in().splitlines() if x.startswith("ExecStart=/")]
        args = shlex.split(line.removeprefix("ExecStart="))
        return [arg.replace(deploy_program.EDGE_DIR, str(self.directory)) for arg in args]

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                user=self.uid,
                group=self.gid,
                extra_groups=[],
                umask=0o007,
                env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"},
                cwd=str(self.home),
            )
        deadline = time.monotonic() + 30
        while not self.admin.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"caddy did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        self._wait_for_listeners(deadline)

    def _wait_for_listeners(self, deadline: float) -> None:
        """Until every site address of the loaded configuration accepts connections: Caddy opens
        its admin socket before its HTTP servers bind, so the socket alone says nothing yet
        about traffic."""
        config = json.loads(self.call("GET", "/config/") or b"null") or {}
        servers = config.get("apps", {}).get("http", {}).get("servers", {})
        for server in servers.values():
            for address in server.get("listen", []):
                host, _, port = address.rpartition(":")
                while True:
                    with contextlib.suppress(OSError), socket.create_connection((host or "127.0.0.1", int(port)), 1):
                        break
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"caddy did not listen on {address}:\n{self.log_path.read_text()[-3000:]}")
                    time.sleep(0.05)

    def stop(self) -> None:
        engine.terminate(self.process, timeout=5)
        self.process = None
        with contextlib.suppress(FileNotFoundError):
            self.admin.unlink()

    def restart(self) -> None:
        """As a reboot of the VM: Caddy starts again from the configuration file."""
        self.stop()
        self.start()

    def reset(self) -> None:
        """No slot marker and the first configuration, as on a VM that never saw a deploy."""
        with contextlib.suppress(FileNotFoundError):
            (self.directory / deploy_program.EDGE_MARKER).unlink()
        self.write_initial()
        self.load(self.directory.joinpath(deploy_program.CADDYFILE).read_text())

    def load(self, caddyfile: str) -> None:
        self.call("POST", "/load", caddyfile.encode(), "text/caddyfile")

    def call(self, method: str, path: str, body: bytes = b"", content_type: str = "") -> bytes:
        """A request to Caddy's admin socket, made by the deploy program's own client."""
        program = deploy_program.load_program()
        settings = SimpleNamespace(edge_admin=str(self.admin), edge_dir=self.directory)
        return program.Edge(settings)._call(method, path, body, content_type)

    def live(self) -> str:
        return "green" if (self.directory / deploy_program.EDGE_MARKER).exists() else "blue"

    def remove(self) -> None:
        self.stop()
        if self._user_created:
            from tests.harness.sshd import remove_user  # sshd.py builds on this module

            remove_user(self.user)
        shutil.rmtree(self.home, ignore_errors=True)
