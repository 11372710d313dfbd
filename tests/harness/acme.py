"""A real ACME server on 127.0.0.1 for the HTTPS tests: Debian's `pebble` (Let's Encrypt's test
server) and `pebble-challtestsrv` as its DNS, which answers every name with 127.0.0.1.

pebble really validates: it resolves the domain through the DNS server, connects to the edge on
the ports it is given (`httpPort` for http-01, `tlsPort` for tls-alpn-01) and issues only when
the edge answers the challenge. Its own listener needs a certificate (Debian ships none): a
throwaway CA made with openssl signs it, and the edge trusts that CA for the ACME directory
(`acme_ca_root`). The certificates it issues chain to a root it creates at each start, served on
its management port (`/roots/0`): a client that trusts that root only verifies the edge.

Every port is free and on 127.0.0.1; both processes stop with the server.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.harness import engine

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def missing_prerequisites() -> list[str]:
    missing = [path for path in (PEBBLE, CHALLTESTSRV) if not Path(path).exists()]
    return [f"{path} not installed (Debian package pebble; .ci/run installs it)" for path in missing]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


class Pebble:
    def __init__(self, http_port: int, tls_port: int) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="dreamscape-pebble-"))
        self.base.chmod(0o755)
        self.http_port, self.tls_port = http_port, tls_port
        self.port = engine.free_port()
        self.management_port = engine.free_port()
        self.dns_port = engine.free_port()
        self.dns_management_port = engine.free_port()
        self.directory = f"https://127.0.0.1:{self.port}/dir"
        self.listener_ca = self.base / "listener-ca.pem"
        """What the edge trusts for the ACME directory (DREAMSCAPE_DEPLOY_ACME_CA_ROOT)."""
        self.processes: list[subprocess.Popen] = []

    def _listener_certificate(self) -> tuple[Path, Path]:
        key, ca_key = self.base / "listener.key", self.base / "listener-ca.key"
        csr, cert = self.base / "listener.csr", self.base / "listener.pem"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", str(ca_key), "-out", str(self.listener_ca), "-days", "2",
                 "-subj", "/CN=pebble listener CA")  # fmt: skip
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")  # fmt: skip
        extensions = self.base / "san.cnf"
        extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.listener_ca), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extensions))  # fmt: skip
        self.listener_ca.chmod(0o644)
        return cert, key

    def start(self) -> Pebble:
        try:
            cert, key = self._listener_certificate()
            config = {
                "pebble": {
                    "listenAddress": f"127.0.0.1:{self.port}",
                    "managementListenAddress": f"127.0.0.1:{self.management_port}",
                    "certificate": str(cert),
                    "privateKey": str(key),
                    "httpPort": self.http_port,
                    "tlsPort": self.tls_port,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
            (self.base / "pebble.json").write_text(json.dumps(config))
            self._launch(
                [CHALLTESTSRV, "-dns01", f"127.0.0.1:{self.dns_port}", "-defaultIPv4", "127.0.0.1",
                 "-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-management", f"127.0.0.1:{self.dns_management_port}"],
                "challtestsrv.log", {},
            )  # fmt: skip
            # No sleep before validating, and no nonce refused on purpose: quick and deterministic.
            quick = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
            self._launch(
                [PEBBLE, "-config", str(self.base / "pebble.json"), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                "pebble.log",
                quick,
            )
            self._wait()
            return self
        except BaseException:
            self.stop()
            raise

    def _launch(self, args: list[str], log_name: str, env: dict[str, str]) -> None:
        with open(self.base / log_name, "ab") as log:
            self.processes.append(
                subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=self.base,
                    env={"PATH": "/usr/bin:/bin", **env},
                )
            )

    def _wait(self) -> None:
        context = ssl.create_default_context(cafile=str(self.listener_ca))
        deadline = time.monotonic() + 20
        while True:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.directory, timeout=2, context=context) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"pebble did not answer at {self.directory}:\n{self.logs()}")
            time.sleep(0.1)

    def root(self) -> str:
        """The PEM root that signs what pebble issues (new at each start)."""
        context = ssl.create_default_context(cafile=str(self.listener_ca))
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return response.read().decode()

    def orders(self) -> int:
        """How many certificate orders pebble has finalized, from its log."""
        return self.logs().count("Issued certificate serial")

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.base.glob("*.log")))

    def stop(self) -> None:
        for process in self.processes:
            engine.terminate(process, timeout=5)
        self.processes = []
        shutil.rmtree(self.base, ignore_errors=True)


def fetch(port: int, domain: str, root_pem: str, path: str = "/") -> tuple[int, dict[str, str], str, dict]:
    """GET https://<domain><path> from 127.0.0.1:`port`, trusting `root_pem` only and verifying the
    certificate for `domain` (SNI and name): (status, headers, body, the peer certificate)."""
    context = ssl.create_default_context(cadata=root_pem)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=domain) as tls,
    ):
        request = f"GET {path} HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n"
        tls.sendall(request.encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        body = response.read().decode(errors="replace").strip()
        return response.status, dict(response.getheaders()), body, tls.getpeercert()
