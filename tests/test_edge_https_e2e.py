"""HTTPS at the edge, end to end: a stack's domain reaches the VM's Caddy through the compose
file, Caddy gets a certificate from a real ACME server (Debian's pebble, which validates the
challenge against the edge itself) and serves the release with it, behind the real sshd and
deploy program on the real Docker engine (tests/harness/).

The client trusts pebble's root only and checks the certificate's name, as a browser trusts
Let's Encrypt's.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from components.environment import compose, deploy_program
from components.settings import Edge
from tests.harness import acme, edge
from tests.harness.acme import Pebble
from tests.harness.engine import Engine, free_port
from tests.harness.sshd import DeployServer
from tests.test_deploy_e2e import SHA2, compose_file, image, publish, text, v1

pytestmark = pytest.mark.e2e

DOMAIN = "staging.dreamscape.test"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def https_port() -> int:
    return edge.free_port_block(1)


@pytest.fixture(scope="module")
def pebble_and_server(docker_engine: Engine, https_port: int) -> Iterator[tuple[Pebble, DeployServer]]:
    problems = acme.missing_prerequisites()
    if problems:
        pytest.fail("; ".join(problems))
    server = DeployServer(docker_engine, user="dshttps")  # its ports are chosen; not started yet
    pebble = None
    try:
        # pebble validates http-01 on the server's HTTP port and tls-alpn-01 on its HTTPS port.
        pebble = Pebble(server.http_port, https_port).start()
        server.acme_ca_root = pebble.listener_ca
        server.start()
        yield pebble, server
    finally:
        server.stop()
        if pebble is not None:
            pebble.stop()


def served(pebble: Pebble, server: DeployServer, https_port: int, root: str, seconds: float = 30):
    """What the edge answers over HTTPS once it holds the certificate: Caddy orders it when the
    deploy gives it the domain, and completes the order in the background."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return acme.fetch(https_port, DOMAIN, root)
        except ssl.SSLError as error:
            if isinstance(error, ssl.SSLCertVerificationError) or time.monotonic() > deadline:
                raise AssertionError(
                    f"{error}\npebble:\n{pebble.logs()}\ncaddy:\n{server.edge.log_path.read_text()[-4000:]}"
                ) from error
            time.sleep(0.2)


def https_compose(server: DeployServer, pebble: Pebble, https_port: int) -> str:
    """The tests' compose file with the extension the stack renders for `edge.domain`, on this
    server's ports (a VM listens on 80 and 443)."""
    document = yaml.safe_load(compose_file(server, start_period="8s"))
    extension = compose.edge_extension(Edge(domain=DOMAIN, acme_directory=pebble.directory))
    document[deploy_program.EDGE_EXTENSION] = {**extension, "httpPort": server.http_port, "httpsPort": https_port}
    return yaml.safe_dump(document, sort_keys=False)


def test_a_domain_is_served_over_https_with_a_certificate_from_acme(
    pebble_and_server: tuple[Pebble, DeployServer], https_port: int
) -> None:
    pebble, server = pebble_and_server
    server.reset()
    publish(server, v1(server))
    compose_text = https_compose(server, pebble, https_port)

    result = server.deploy(v1(server), compose_text, timeout=300)
    assert result.returncode == 0, text(result)
    root = pebble.root()

    status, headers, body, certificate = served(pebble, server, https_port, root)
    assert (status, body) == (200, "healthy"), pebble.logs()
    assert ("DNS", DOMAIN) in certificate["subjectAltName"]
    assert headers.get("Strict-Transport-Security") == deploy_program.HSTS
    serial = certificate["serialNumber"]
    assert pebble.orders() == 1

    # Plain HTTP on the domain is redirected to HTTPS.
    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/", headers={"Host": DOMAIN})
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(request, timeout=10)
    assert redirect.value.code in (301, 308)
    assert redirect.value.headers["Location"].startswith(f"https://{DOMAIN}")

    # A new release and a restart of the edge (a reboot) keep the certificate: no new order.
    second = publish(server, {"auth-service": image(server, "auth-service", SHA2)}, "slow-1")
    result = server.deploy(second, compose_text, timeout=300)
    assert result.returncode == 0, text(result)
    server.edge.restart()
    status, _, body, certificate = served(pebble, server, https_port, root)
    assert (status, body) == (200, "slow-1")
    assert certificate["serialNumber"] == serial and pebble.orders() == 1


def test_a_client_that_does_not_trust_the_acme_root_is_refused(
    pebble_and_server: tuple[Pebble, DeployServer], https_port: int
) -> None:
    """The certificate is pebble's, not something any client would take: the check above means something."""
    pebble, server = pebble_and_server
    other = Pebble(free_port(), free_port()).start()
    try:
        foreign_root = other.root()
    finally:
        other.stop()
    server.reset()
    publish(server, v1(server))
    assert server.deploy(v1(server), https_compose(server, pebble, https_port), timeout=300).returncode == 0
    served(pebble, server, https_port, pebble.root())  # issued and served
    with pytest.raises(ssl.SSLCertVerificationError):
        acme.fetch(https_port, DOMAIN, foreign_root)
    with pytest.raises(ssl.SSLError):  # no certificate for that name: the handshake fails
        acme.fetch(https_port, "other.dreamscape.test", pebble.root())
