"""The limits of ci/ that no other test reaches at their edge, each reached at it: the last value
accepted and the first refused, or the number a request carries, so that moving a limit by one
fails here.

- ci/deploy.py: the SSH user (32 characters at most), the SSH and bastion ports (1 to 65535, 5
  digits at most), ssh's `ConnectTimeout=20` on both command lines, the bastion session's
  display name (the run id cut to 20 digits, the attempt to 4), and a workload identity session
  token older than 3000 s exchanged again before the session's delete.
- ci/instances.py: a container instance's OCPUs (1 to 76), memory (1 to 1024 GB) and container
  port (1 to 65535); the 30 s a new instance gets to shut down and the health check each
  container gets, as the create sends them; instances listed 100 a page; and the 300 s the
  load balancer changes of one deploy share (the waits for health between them apart).
- ci/github.py: the 120 s a call may wait in all between its retries.
- components/environment/cloudinit.py: user_data of 32000 base64 bytes at most.

The numbers are written here, never read back from the code they bound; no test waits for real
(fake clocks and sleeps, stand-ins on 127.0.0.1).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci import deploy, github, instances, oci
from components.environment import cloudinit
from tests.bastion_support import BASTION, CLIENT_ID, CLIENT_SECRET, INFRA, SERVICE_USER
from tests.harness.oci_api import BastionSpec, Issuer, OciApi, Principal, Trust
from tests.harness.oci_platform import DEFAULT_AVAILABILITY_DOMAINS
from tests.test_ci_deploy import COMPOSE, inputs, request, workspace
from tests.test_ci_oci import WIF
from tests.test_deploy_instances import (  # noqa: F401 - fixtures
    COMPARTMENT,
    DIGEST,
    LB,
    NSG,
    REGION,
    SUBNET,
    TENANCY,
    Clock,
    created_bodies,
    deploy_once,
    deployer,
    key,
    stand_in,
)

# --- ci/deploy.py: the request's bounds -------------------------------------------------------------


def checked(tmp_path: Path, **changes: str) -> deploy.Request:
    """deploy.request over a workspace the job's checkout writes, with `changes` to the inputs."""
    root = workspace(tmp_path)
    return deploy.request(inputs(DEPLOY_COMPOSE_FILE=str(root / COMPOSE), **changes), root)


def refusal(tmp_path: Path, **changes: str) -> str:
    with pytest.raises(deploy.InputError) as refused:
        checked(tmp_path, **changes)
    return str(refused.value)


def test_an_ssh_user_of_32_characters_is_taken(tmp_path: Path) -> None:
    assert checked(tmp_path, DEPLOY_SSH_USER="a" * 32).user == "a" * 32


def test_an_ssh_user_is_at_most_32_characters(tmp_path: Path) -> None:
    assert refusal(tmp_path, DEPLOY_SSH_USER="a" * 33) == "DEPLOY_SSH_USER is not a user name"


@pytest.mark.parametrize("port", [1, 65535])
def test_an_ssh_port_from_1_to_65535_is_taken(tmp_path: Path, port: int) -> None:
    assert checked(tmp_path, DEPLOY_SSH_PORT=str(port)).port == port


@pytest.mark.parametrize("port", ["0", "65536", "065535"])
def test_an_ssh_port_outside_1_to_65535_or_over_5_digits_is_refused(tmp_path: Path, port: str) -> None:
    assert refusal(tmp_path, DEPLOY_SSH_PORT=port) == "DEPLOY_SSH_PORT is not a port"


def through_the_bastion(bastion_ssh: str) -> dict[str, str]:
    return {
        "DEPLOY_OCI": json.dumps(WIF),
        "OCI_DEPLOY_CREDENTIAL": "the client secret",
        "DEPLOY_BASTION_SSH": bastion_ssh,
    }


@pytest.mark.parametrize("port", [1, 65535])
def test_a_bastion_ssh_port_from_1_to_65535_is_taken(tmp_path: Path, port: int) -> None:
    route = checked(tmp_path, **through_the_bastion(f"127.0.0.1:{port}")).route
    assert route is not None and (route.ssh_host, route.ssh_port) == ("127.0.0.1", port)


@pytest.mark.parametrize("port", ["0", "65536", "065535"])
def test_a_bastion_ssh_port_outside_1_to_65535_or_over_5_digits_is_refused(tmp_path: Path, port: str) -> None:
    message = refusal(tmp_path, **through_the_bastion(f"127.0.0.1:{port}"))
    assert message == "DEPLOY_BASTION_SSH is not <host>:<port>"


# --- ci/deploy.py: what ssh and OCI are given --------------------------------------------------------


def options_of(words: list[str]) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words) if word == "-o"]


def test_ssh_gives_up_connecting_to_the_vm_after_20_seconds(tmp_path: Path) -> None:
    argv = deploy.ssh_command(request(), tmp_path / "key", tmp_path / "known_hosts")
    assert [o for o in options_of(argv) if o.startswith("ConnectTimeout=")] == ["ConnectTimeout=20"]


def test_ssh_gives_up_connecting_to_the_bastion_after_20_seconds(tmp_path: Path) -> None:
    route = deploy.Route(oci.access(json.dumps(WIF), "DEPLOY_OCI"), "secret", "https://x", "bastion.example", 22)
    session = oci.Session("ocid1.bastionsession.oc1.x.y", "ocid1.bastionsession.oc1.x.y", None)
    words = deploy.proxy_command(route, session, tmp_path / "key", tmp_path / "known_hosts").split()
    assert [o for o in options_of(words) if o.startswith("ConnectTimeout=")] == ["ConnectTimeout=20"]


def test_a_session_name_keeps_20_digits_of_the_run_id_and_4_of_the_attempt() -> None:
    run_id, attempt = "1234567890" * 2 + "1", "98765"
    env = {"GITHUB_RUN_ID": run_id, "GITHUB_RUN_ATTEMPT": attempt}
    assert deploy.session_name(env) == f"dreamscape-deploy-{run_id[:20]}-{attempt[:4]}"
    whole = {"GITHUB_RUN_ID": run_id[:20], "GITHUB_RUN_ATTEMPT": attempt[:4]}
    assert deploy.session_name(whole) == f"dreamscape-deploy-{run_id[:20]}-{attempt[:4]}"


# --- ci/deploy.py: a session token older than 3000 s signs the delete anew ----------------------------


@pytest.fixture
def identity_domain() -> Iterator[OciApi]:
    """The OCI stand-in as the identity domain, the runner's OIDC endpoint and the Bastion API,
    with one service user the deploy job's token exchange maps to."""
    issuer = Issuer(INFRA, "production")
    trust = Trust(CLIENT_ID, CLIENT_SECRET, audience="set below", subject=issuer.subject, user=SERVICE_USER)
    principal = Principal(SERVICE_USER, [BASTION], ("10.20.1.2", 22))
    with OciApi(bastions={BASTION: BastionSpec()}, principals=[principal], trust=trust, issuer=issuer) as api:
        api.trust = dataclasses.replace(trust, audience=api.url)
        yield api


def open_and_close_a_session(api: OciApi, tmp_path: Path, seconds: float) -> None:
    """A bastion session through the workload identity, closed `seconds` after the sign-in."""
    access = oci.access(json.dumps({**WIF, "domainUrl": api.url, "bastionId": BASTION}), "DEPLOY_OCI")
    route = deploy.Route(access, CLIENT_SECRET, api.url, "127.0.0.1", 22)
    req = request(host="10.20.1.2", route=route, session_ttl=1800)  # the host the principal may reach
    env = {
        "ACTIONS_ID_TOKEN_REQUEST_URL": api.oidc_request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": api.issuer.request_token,
        "GITHUB_RUN_ID": "4242",
    }
    clock = Clock()
    client = oci.Client(sleep=lambda _: None, base_delay=0)
    with deploy.bastion_session(req, tmp_path, env, client, clock=clock):
        clock.now += seconds


def key_id(request: Any) -> str:
    return request.headers["authorization"].split('keyId="', 1)[1].split('"', 1)[0]


def test_a_session_token_3000_seconds_old_still_signs_the_delete(identity_domain: OciApi, tmp_path: Path) -> None:
    open_and_close_a_session(identity_domain, tmp_path, 3000)
    assert len(identity_domain.requests_for("token-exchange", status=200)) == 1
    [token] = identity_domain.tokens
    [create] = identity_domain.requests_for("create-session", status=200)
    [delete] = identity_domain.requests_for("delete-session", status=202)
    assert key_id(create) == key_id(delete) == f"ST${token}"


def test_a_session_token_over_3000_seconds_old_is_exchanged_again_before_the_delete(
    identity_domain: OciApi, tmp_path: Path
) -> None:
    open_and_close_a_session(identity_domain, tmp_path, 3001)
    first, second = identity_domain.requests_for("token-exchange", status=200)
    first_token, second_token = identity_domain.tokens
    [create] = identity_domain.requests_for("create-session", status=200)
    [delete] = identity_domain.requests_for("delete-session", status=202)
    assert key_id(create) == f"ST${first_token}"
    assert key_id(delete) == f"ST${second_token}"
    sent = identity_domain.requests
    assert sent.index(first) < sent.index(create) < sent.index(second) < sent.index(delete)


# --- ci/instances.py: the variable's bounds ------------------------------------------------------------


def variable(**changes: Any) -> dict[str, Any]:
    """DEPLOY_OCI of a container instances environment with one published container: the
    stand-in's ids, the deploy identity's API key."""
    values = {
        "target": "containerInstances",
        "auth": "apiKey",
        "region": REGION,
        "environment": "staging",
        "compartmentId": COMPARTMENT,
        "availabilityDomain": DEFAULT_AVAILABILITY_DOMAINS[0],
        "subnetId": SUBNET,
        "nsgId": NSG,
        "dnsSearch": "public.vcn.oraclevcn.com",
        "shape": "CI.Standard.A1.Flex",
        "loadBalancerId": LB,
        "ocpus": 1,
        "memoryGbs": 6,
        "backendSets": {"gateway": 8080},
        "containers": [{"name": "gateway", "port": 8080, "healthPath": "/health", "env": {}, "secrets": []}],
        "tenancy": TENANCY,
        "user": "ocid1.user.oc1..deployer",
        "fingerprint": "12:34:56:78:9a:bc:de:f0:12:34:56:78:9a:bc:de:f0",
    }
    return values | changes


def with_port(port: int) -> dict[str, Any]:
    container = {"name": "gateway", "port": port, "healthPath": "/health", "env": {}, "secrets": []}
    return variable(containers=[container], backendSets={"gateway": port})


def platform_of(data: dict[str, Any]) -> instances.Platform:
    return instances.platform(json.dumps(data), "DEPLOY_OCI")


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(instances.InputError) as refusal:
        platform_of(data)
    return str(refusal.value)


@pytest.mark.parametrize(
    ("name", "value", "taken"),
    [
        ("ocpus", 1, True),
        ("ocpus", 76, True),
        ("ocpus", 0, False),
        ("ocpus", 77, False),
        ("memoryGbs", 1, True),
        ("memoryGbs", 1024, True),
        ("memoryGbs", 0, False),
        ("memoryGbs", 1025, False),
    ],
)
def test_an_instance_takes_1_to_76_ocpus_and_1_to_1024_gb(name: str, value: int, taken: bool) -> None:
    if taken:
        found = platform_of(variable(**{name: value}))
        assert (found.ocpus, found.memory_gbs) == ((value, 6) if name == "ocpus" else (1, value))
    else:
        assert refused(variable(**{name: value})) == "DEPLOY_OCI.ocpus or .memoryGbs is missing or out of range"


@pytest.mark.parametrize("port", [1, 65535])
def test_a_container_port_from_1_to_65535_is_taken(port: int) -> None:
    found = platform_of(with_port(port))
    assert [c.port for c in found.containers] == [port] and found.backend_sets == {"gateway": port}


@pytest.mark.parametrize("port", [0, 65536])
def test_a_container_port_outside_1_to_65535_is_refused(port: int) -> None:
    assert refused(with_port(port)) == "DEPLOY_OCI.containers[0] is malformed"


# --- ci/instances.py: what the calls send -------------------------------------------------------------


def test_a_new_instance_gets_30_seconds_to_shut_down_and_each_container_a_health_check_every_10_seconds(
    tmp_path: Path,
    stand_in,  # noqa: F811
    deployer,  # noqa: F811
    key,  # noqa: F811
) -> None:
    api, _ = stand_in()
    access = variable(user=deployer.user, fingerprint=key.fingerprint)
    env = {
        "DEPLOY_OCI": json.dumps(access),
        "OCI_DEPLOY_CREDENTIAL": key.private_pem,
        "DEPLOY_IMAGES": f"gateway=ghcr.io/dreamscape-ai/gateway:1{DIGEST}",
        "DEPLOY_OCI_API": api.url,
        "GITHUB_RUN_ID": "4242",
    }
    assert deploy_once(tmp_path, env) == instances.DEPLOYED
    [body] = created_bodies(api)
    assert body["gracefulShutdownTimeoutInSeconds"] == 30
    [container] = body["containers"]
    [check] = container["healthChecks"]
    timing = {
        k: check[k] for k in ("intervalInSeconds", "timeoutInSeconds", "failureThreshold", "initialDelayInSeconds")
    }
    assert timing == {
        "intervalInSeconds": 10,
        "timeoutInSeconds": 5,
        "failureThreshold": 3,
        "initialDelayInSeconds": 10,
    }


def test_container_instances_are_listed_100_a_page() -> None:
    paths = []

    class TwoPages(instances.Api):
        def call(self, what, service, method, path, data=None, headers=None, client=None):
            paths.append(path)
            following = {"opc-next-page": "p1"} if len(paths) == 1 else {}
            return {"items": [{"id": f"ocid1.i{len(paths)}"}]}, following

    found = TwoPages(REGION, None, None).instances("ocid1.compartment")
    assert [i["id"] for i in found] == ["ocid1.i1", "ocid1.i2"]
    assert paths == [
        "/20210415/containerInstances?compartmentId=ocid1.compartment&limit=100",
        "/20210415/containerInstances?compartmentId=ocid1.compartment&limit=100&page=p1",
    ]


# --- ci/instances.py: the load balancer changes of a deploy share 300 s ---------------------------------


class SlowLoadBalancer:
    """The Api the deploy's load balancer steps call, on a clock that moves one second a poll:
    adding the new backend takes `add_takes` s, the load balancer reports it OK `healthy_after`
    s later, and the promotion's work request never ends."""

    def __init__(self, clock: Clock, add_takes: int, healthy_after: int) -> None:
        self.clock = clock
        self.add_takes = add_takes
        self.healthy_after = healthy_after
        self.client = self
        self.sent: list[tuple[str, str | None, float]] = []

    def sleep(self, seconds: float) -> None:
        self.clock.now += 1

    def change_backend(self, what, method, lb, backend_set, backend, data, client=None) -> str:
        self.sent.append((method, backend, self.clock()))
        return f"work-{len(self.sent)}"

    def work_request(self, work_id: str) -> dict[str, str]:
        added = work_id == "work-1" and self.clock() - self.sent[0][2] >= self.add_takes
        return {"lifecycleState": "SUCCEEDED" if added else "IN_PROGRESS"}

    def backend_health(self, lb: str, backend_set: str, backend: str) -> dict[str, str]:
        self.clock.now += self.healthy_after
        return {"status": "OK"}


@pytest.mark.parametrize(
    ("add_takes", "healthy_after", "promotion_gets"),
    [(0, 250, 300), (0, 3000, 300), (250, 0, 50), (299, 0, 1), (300, 0, 0)],
)
def test_the_load_balancer_changes_of_a_deploy_share_300_seconds_and_the_health_wait_is_apart(
    add_takes: int, healthy_after: int, promotion_gets: int
) -> None:
    """All of a deploy's load balancer changes take 300 s together (one that finds none left is
    sent, then given up at its first look); the wait for the new backend's health between them
    counts apart (up to deploy.waitTimeoutSeconds)."""
    clock = Clock()
    api = SlowLoadBalancer(clock, add_takes, healthy_after)
    req = instances.Request(
        platform=platform_of(variable()), credential="unused", images={}, secrets={}, wait_timeout=3600
    )
    job = instances.Deploy(req, api, clock, log=lambda line: None)  # type: ignore[arg-type]
    job.new_ip = "10.20.1.9"
    job.join()
    with pytest.raises(
        oci.OciError, match=r"^the load balancer's work request work-2 did not end within the 300s a deploy's "
    ):
        job.switch(None)
    [(_, _, added), (method, backend, promoted)] = api.sent
    assert (method, backend) == ("PUT", "10.20.1.9:8080")
    assert promoted - added == add_takes + healthy_after
    assert clock() - promoted == promotion_gets


# --- ci/github.py: 120 s of waiting in all -----------------------------------------------------------


def retried(monkeypatch: pytest.MonkeyPatch, waits: list[str]) -> tuple[github.Answer, list[float], list[str]]:
    """A call GitHub answers 503 with each Retry-After of `waits` in turn, then 200: the last
    answer, the sleeps and the log."""
    answers = [github.Answer(503, b"", {"retry-after": wait}) for wait in waits] + [github.Answer(200, b"{}")]

    def send(*_: Any) -> github.Answer:
        return answers.pop(0)

    monkeypatch.setattr(github, "send", send)
    slept: list[float] = []
    logged: list[str] = []
    client = github.GitHub("token", "https://api.github.invalid", env={}, sleep=slept.append, log=logged.append)
    return client.call("GET", "/repos/o/r"), slept, logged


def test_a_github_call_waits_120_seconds_in_all_between_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    answer, slept, _ = retried(monkeypatch, ["60", "60"])
    assert answer.status == 200
    assert slept == [60, 60] and sum(slept) == 120


def test_a_github_call_that_would_wait_more_than_120_seconds_in_all_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    answer, slept, logged = retried(monkeypatch, ["60", "61"])
    assert answer.status == 503
    assert slept == [60]
    assert logged[-1] == (
        "HTTP 503 from GET /repos/o/r: GitHub asks to wait 61s; that is more than the 120s retry budget allows"
    )


# --- components/environment/cloudinit.py: 32000 bytes of user_data --------------------------------


def test_user_data_of_32000_base64_bytes_fits_the_instance_metadata() -> None:
    assert cloudinit.size_problem("A" * 32000) is None


def test_user_data_of_32001_base64_bytes_is_over_the_instance_metadata_limit() -> None:
    assert cloudinit.size_problem("A" * 32001) == (
        "user_data is 32001 bytes base64-encoded; OCI accepts at most 32000 bytes of instance metadata"
    )
