"""ci/oci.py without a cloud: its signatures against the OCI SDK's own, the variable it reads,
and the session TTL it asks for.

The calls themselves run against the OCI stand-in (tests/harness/oci_api.py) in
test_ci_deploy_bastion.py and, inside the rendered job, test_central_deploy.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import oci
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from oci._vendor import requests as oci_requests

from ci import config, deploy
from ci import oci as ci_oci
from components.environment import deploy_program
from tests.harness.oci_api import ApiKey, BastionSpec, OciApi, Principal

TENANCY = "ocid1.tenancy.oc1..aaaaaaaatenancy"
USER = "ocid1.user.oc1..aaaaaaaaciuser"
FINGERPRINT = "12:34:56:78:9a:bc:de:f0:12:34:56:78:9a:bc:de:f0"
BASTION = "ocid1.bastion.oc1.eu-frankfurt-1.aaaaaaaabastion"


def key_file(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return path


def sdk_authorization(path: Path, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> str:
    """The Authorization header the OCI SDK's signer writes for the same request."""
    sdk = oci.signer.Signer(TENANCY, USER, FINGERPRINT, str(path))
    prepared = oci_requests.Request(method, url, data=body, headers=dict(headers)).prepare()
    sdk(prepared)
    return prepared.headers["authorization"]


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "https://bastion.eu-frankfurt-1.oci.oraclecloud.com/20210331/sessions/ocid1.bastionsession.x", None),
        ("DELETE", "https://bastion.eu-frankfurt-1.oci.oraclecloud.com/20210331/sessions/s?a=1", None),
        ("POST", "http://127.0.0.1:8123/20210331/sessions", json.dumps({"bastionId": BASTION}).encode()),
    ],
)
def test_a_signature_is_the_oci_sdks_byte_for_byte(tmp_path: Path, method: str, url: str, body) -> None:
    path = key_file(tmp_path)
    ours = ci_oci.Signer(f"{TENANCY}/{USER}/{FINGERPRINT}", path).headers(method, url, body)
    sent = {name: value for name, value in ours.items() if name != "authorization"}
    assert ours["authorization"] == sdk_authorization(path, method, url, body, sent)
    if body is not None:
        assert ours["x-content-sha256"] and ours["content-length"] == str(len(body))
        assert (
            'headers="date (request-target) host content-length content-type x-content-sha256"' in ours["authorization"]
        )


def test_a_session_token_signs_with_the_st_key_id(tmp_path: Path) -> None:
    headers = ci_oci.Signer("ST$token.of.the.run", key_file(tmp_path)).headers("GET", "https://x/y", None)
    assert 'keyId="ST$token.of.the.run"' in headers["authorization"]


def test_a_new_key_is_private_and_its_public_half_is_der(tmp_path: Path) -> None:
    path = tmp_path / "run.pem"
    public = ci_oci.new_rsa_key(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    expected = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert base64.b64decode(public) == expected


WIF = {
    "auth": "workloadIdentity",
    "region": "eu-frankfurt-1",
    "bastionId": BASTION,
    "domainUrl": "https://idcs-0123456789abcdef.identity.oraclecloud.com",
    "clientId": "0123456789abcdef0123456789abcdef",
}
API_KEY = {
    "auth": "apiKey",
    "region": "eu-frankfurt-1",
    "bastionId": BASTION,
    "tenancy": TENANCY,
    "user": USER,
    "fingerprint": FINGERPRINT,
}


def test_the_variable_of_each_mode_is_read() -> None:
    wif = ci_oci.access(json.dumps(WIF), "DEPLOY_OCI")
    assert (wif.auth, wif.domain_url, wif.client_id, wif.bastion_id) == (
        "workloadIdentity",
        WIF["domainUrl"],
        WIF["clientId"],
        BASTION,
    )
    assert wif.api_endpoint == "https://bastion.eu-frankfurt-1.oci.oraclecloud.com"
    assert wif.ssh_host == "host.bastion.eu-frankfurt-1.oci.oraclecloud.com"
    key = ci_oci.access(json.dumps(API_KEY), "DEPLOY_OCI")
    assert (key.tenancy, key.user, key.fingerprint) == (TENANCY, USER, FINGERPRINT)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "DEPLOY_OCI is not JSON"),
        ("[]", "DEPLOY_OCI is not a JSON object"),
        (json.dumps({**WIF, "auth": "password"}), "DEPLOY_OCI.auth is 'password'; expected one of"),
        (json.dumps({**WIF, "tenancy": TENANCY}), "DEPLOY_OCI.tenancy is not a field of auth workloadIdentity"),
        (json.dumps({k: v for k, v in WIF.items() if k != "clientId"}), "DEPLOY_OCI.clientId is missing or malformed"),
        (json.dumps({**WIF, "region": "Frankfurt"}), "DEPLOY_OCI.region is missing or malformed"),
        (json.dumps({**WIF, "domainUrl": "ftp://idcs"}), "DEPLOY_OCI.domainUrl is missing or malformed"),
        # The client secret and the job's token go to an identity domain over https, or to a
        # stand-in on this machine; nowhere else.
        (json.dumps({**WIF, "domainUrl": "http://idcs-0a.identity.oraclecloud.com"}), "DEPLOY_OCI.domainUrl is"),
        (json.dumps({**WIF, "domainUrl": "https://attacker.example.com"}), "DEPLOY_OCI.domainUrl is"),
        (json.dumps({**WIF, "domainUrl": "http://10.0.0.1:8080"}), "DEPLOY_OCI.domainUrl is"),
        (json.dumps({**API_KEY, "fingerprint": "12:34"}), "DEPLOY_OCI.fingerprint is missing or malformed"),
        (json.dumps({**API_KEY, "bastionId": "bastion"}), "DEPLOY_OCI.bastionId is missing or malformed"),
    ],
)
def test_a_malformed_variable_is_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        ci_oci.access(text, "DEPLOY_OCI")


def test_the_session_lives_as_long_as_the_deploy_can_take_within_ocis_bounds() -> None:
    default = config.Deploy(lock_wait_seconds=300, wait_timeout_seconds=180, keep_releases=5)
    # 300 to become ACTIVE + 300 lock + the pull + 2 x 180 + 60, rounded up to the minute.
    needed = 300 + 300 + deploy_program.PULL_TIMEOUT_SECONDS + 360 + 60
    assert deploy.session_ttl(default) == max(1800, -(-needed // 60) * 60)
    assert deploy.session_ttl(config.Deploy(0, 10, 2)) == 1800
    assert deploy.session_ttl(config.Deploy(3600, 3600, 2)) == 10800


# --- the calls, against the OCI stand-in (tests/harness/oci_api.py) --------------------------------

TARGET = ("10.20.1.2", 22)


@pytest.fixture
def principal() -> Principal:
    return Principal("ocid1.user.oc1..aaaaaaaaciuser", [BASTION], TARGET, api_key=ApiKey.generate())


def bastion_client(api: OciApi, principal: Principal, tmp_path: Path, **client: Any) -> ci_oci.Bastion:
    key = tmp_path / "api_key.pem"
    key.write_text(principal.api_key.private_pem)
    signer = ci_oci.Signer(principal.key_id, key)
    return ci_oci.Bastion(api.url, signer, ci_oci.Client(sleep=lambda _: None, base_delay=0, **client))


SESSION_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)


def create(bastion: ci_oci.Bastion) -> str:
    return bastion.create(BASTION, *TARGET, SESSION_KEY, "t", 1800)


def test_a_failed_create_is_retried_with_the_same_retry_token(principal: Principal, tmp_path: Path) -> None:
    with OciApi(bastions={BASTION: BastionSpec()}, principals=[principal]) as api:
        api.fail_next("create-session", 503, "ServiceUnavailable", times=2)
        session_id = create(bastion_client(api, principal, tmp_path))
        attempts = api.requests_for("create-session")
    assert [r.status for r in attempts] == [503, 503, 200]
    assert len({r.headers["opc-retry-token"] for r in attempts}) == 1, "one token: a retry opens no second session"
    assert list(api.sessions) == [session_id]


def test_a_refusal_is_not_retried_and_names_ocis_code(principal: Principal, tmp_path: Path) -> None:
    with OciApi(bastions={BASTION: BastionSpec()}, principals=[principal]) as api:
        api.fail_next("create-session", 400, "InvalidParameter", "bad session")
        with pytest.raises(
            ci_oci.OciError, match=r"^Create the bastion session: HTTP 400 InvalidParameter: bad session$"
        ):
            create(bastion_client(api, principal, tmp_path))
        assert len(api.requests_for("create-session")) == 1


def test_no_answer_gives_up_after_the_attempts(tmp_path: Path, principal: Principal) -> None:
    with OciApi(bastions={BASTION: BastionSpec()}, principals=[principal]) as api:
        bastion = bastion_client(api, principal, tmp_path)
    # The stand-in is gone: nothing answers.
    with pytest.raises(ci_oci.OciError, match=r"^Create the bastion session: no answer$") as raised:
        create(bastion)
    assert raised.value.status is None


def test_a_session_deleted_twice_is_deleted(principal: Principal, tmp_path: Path) -> None:
    with OciApi(bastions={BASTION: BastionSpec()}, principals=[principal]) as api:
        bastion = bastion_client(api, principal, tmp_path)
        session_id = create(bastion)
        bastion.delete(session_id)
        bastion.delete(session_id)  # 409 IncorrectState: already deleting
        assert [r.status for r in api.requests_for("delete-session")] == [202, 409]
        api.fail_next("delete-session", 404, "NotAuthorizedOrNotFound")
        with pytest.raises(ci_oci.OciError, match="HTTP 404"):
            bastion.delete(session_id)


def test_a_session_that_never_becomes_active_is_given_up(principal: Principal, tmp_path: Path) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 60
        return now[0]

    with OciApi(bastions={BASTION: BastionSpec(outcome=None)}, principals=[principal]) as api:
        bastion = bastion_client(api, principal, tmp_path)
        session_id = create(bastion)
        with pytest.raises(ci_oci.OciError, match="not ACTIVE within 300s"):
            bastion.wait_active(session_id, clock=clock)
        assert 3 <= len(api.requests_for("get-session")) <= ci_oci.ACTIVE_WAIT_SECONDS // 60 + 1


@pytest.mark.parametrize("user", ["a;id", "a b", "a%h", "$(id)", "a\nb", "", "x" * 256])
def test_a_session_user_that_could_reach_the_proxy_command_is_refused(user: str) -> None:
    with pytest.raises(ci_oci.OciError, match="names no user"):
        ci_oci._session("ocid1.bastionsession.oc1.x.y", {"bastionUserName": user} if user else {"bastionUserName": 7})


def test_the_bastion_host_key_is_taken_only_as_a_key() -> None:
    session = ci_oci._session("s", {"bastionUserName": "u", "bastionPublicHostKeyInfo": "ssh-ed25519 AAAA1;id\nx"})
    assert session.host_key == "ssh-ed25519 AAAA1"
    assert ci_oci._session("s", {"bastionUserName": "u", "bastionPublicHostKeyInfo": "garbage"}).host_key is None


def test_the_proxy_command_quotes_every_word_but_ssh_tokens(tmp_path: Path) -> None:
    route = deploy.Route(
        ci_oci.access(json.dumps(WIF), "DEPLOY_OCI"), "secret", "https://x", "host.bastion.example", 22
    )
    session = ci_oci.Session("ocid1.bastionsession.oc1.x.y", "ocid1.bastionsession.oc1.x.y", "ssh-ed25519 AAAA")
    command = deploy.proxy_command(route, session, tmp_path / "a key", tmp_path / "known hosts")
    assert f"-i '{tmp_path}/a key'" in command and f"'UserKnownHostsFile={tmp_path}/known hosts'" in command
    assert command.endswith("-W %h:%p host.bastion.example")
    assert "secret" not in command


def test_openssl_and_ssh_keygen_see_none_of_the_jobs_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCI_DEPLOY_CREDENTIAL", "the client secret")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "the request token")
    seen = ci_oci.tool("env").stdout.decode()
    assert dict(line.split("=", 1) for line in seen.splitlines()) == ci_oci.TOOL_ENV
