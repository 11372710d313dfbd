"""ci/oci.py without a cloud: its signatures against the OCI SDK's own, the variable it reads,
and the session TTL it asks for.

The calls themselves run against the OCI stand-in (tests/harness/oci_api.py) in
test_ci_deploy_bastion.py and, inside the rendered job, test_central_deploy.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import oci
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from oci._vendor import requests as oci_requests

from ci import config, deploy
from ci import oci as ci_oci
from components.environment import deploy_program

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
