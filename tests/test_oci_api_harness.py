"""The OCI API stand-in (tests/harness/oci_api.py) is strict and right: the OCI SDK, a
well-behaved client, gets through; what OCI refuses, it refuses with OCI's status and code."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import email.utils
import functools
import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import oci
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from oci._vendor import requests
from oci._vendor.httpsig_cffi.utils import get_fingerprint

from tests.harness.oci_api import (
    GITHUB_ISSUER,
    ApiKey,
    BastionSession,
    BastionSpec,
    Issuer,
    OciApi,
    Principal,
    Trust,
)

REGION = "eu-frankfurt-1"
BASTION = "ocid1.bastion.oc1.eu-frankfurt-1.staging"
OTHER_BASTION = "ocid1.bastion.oc1.eu-frankfurt-1.production"
TARGET = ("10.0.1.5", 22)
AUDIENCE = "https://idcs-standin.identity.oraclecloud.com"
REPOSITORY = "owner/dreamscape-infra"
CLIENT = ("deploy-client", "deploy-client-secret")
TIMEOUT = (2, 5)


@pytest.fixture(scope="module")
def ci_key() -> ApiKey:
    return ApiKey.generate()


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer(REPOSITORY, "staging", request_token="runner-request-token")


@pytest.fixture(scope="module")
def ssh_public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.fixture(scope="module")
def session_key() -> rsa.RSAPrivateKey:
    """The key pair a token exchange binds a UPST to."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def ci(ci_key: ApiKey) -> Principal:
    return Principal("ocid1.user.oc1..ci", bastions=[BASTION], target=TARGET, api_key=ci_key)


@pytest.fixture
def deployer() -> Principal:
    """The service user the identity propagation trust maps the staging job to."""
    return Principal("ocid1.user.oc1..deployer", bastions=[BASTION], target=TARGET)


@pytest.fixture
def events() -> list[tuple[str, str]]:
    """(hook, session id) as the hooks ran."""
    return []


@pytest.fixture
def make_api(
    ci: Principal, deployer: Principal, issuer: Issuer, events: list[tuple[str, str]]
) -> Iterator[Callable[..., OciApi]]:
    """Starts a stand-in (stopped after the test) with the staging bastion, a production
    bastion no principal may use, `ci` (API key) and `deployer` (through the trust)."""

    def make(spec: BastionSpec | None = None, upst_lifetime: int = 3600, **kwargs: Any) -> OciApi:
        trust = Trust(
            *CLIENT, audience=AUDIENCE, subject=issuer.subject, user=deployer.user, upst_lifetime=upst_lifetime
        )
        hooks = {
            "on_active": lambda session: events.append(("active", session.id)),
            "on_deleted": lambda session: events.append(("deleted", session.id)),
        }
        api = OciApi(
            region=REGION,
            bastions={
                BASTION: spec or BastionSpec(user_name="deploy", host_key="ssh-ed25519 AAAAhostkey"),
                OTHER_BASTION: BastionSpec(),
            },
            principals=[ci, deployer],
            trust=trust,
            issuer=issuer,
            **{**hooks, **kwargs},
        )
        return servers.enter_context(api)

    with contextlib.ExitStack() as servers:
        yield make


@pytest.fixture
def api(make_api: Callable[..., OciApi]) -> OciApi:
    return make_api()


def api_key_signer(principal: Principal, key: ApiKey | None = None) -> oci.signer.Signer:
    """The SDK's signer for the principal's keyId, signing with `key` (its own by default)."""
    assert principal.api_key is not None
    return _signer(
        principal.tenancy, principal.user, principal.api_key.fingerprint, (key or principal.api_key).private_pem
    )


@functools.cache
def _signer(tenancy: str, user: str, fingerprint: str, private_pem: str) -> oci.signer.Signer:
    """Loading an RSA private key checks it, which takes tens of milliseconds: once per key."""
    return oci.signer.Signer(tenancy, user, fingerprint, None, private_key_content=private_pem)


def bastion_client(api: OciApi, signer: Any, config: dict[str, str] | None = None) -> oci.bastion.BastionClient:
    return oci.bastion.BastionClient(
        config or {"region": api.region},
        signer=signer,
        service_endpoint=api.url,
        retry_strategy=oci.retry.NoneRetryStrategy(),
        circuit_breaker_strategy=oci.circuit_breaker.NoCircuitBreakerStrategy(),
        timeout=TIMEOUT,
    )


def ci_client(api: OciApi, ci: Principal) -> oci.bastion.BastionClient:
    return bastion_client(api, api_key_signer(ci), ci.sdk_config(api.region))


def session_details(ssh_public_key: str, **changes: Any) -> dict[str, Any]:
    """A CreateSessionDetails body as the deploy job sends it; `changes` replace top-level fields
    (None removes one)."""
    body = {
        "bastionId": BASTION,
        "displayName": "deploy-staging",
        "keyType": "PUB",
        "keyDetails": {"publicKeyContent": ssh_public_key},
        "sessionTtlInSeconds": 1800,
        "targetResourceDetails": {
            "sessionType": "PORT_FORWARDING",
            "targetResourcePrivateIpAddress": TARGET[0],
            "targetResourcePort": TARGET[1],
        },
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def sdk_details(ssh_public_key: str) -> oci.bastion.models.CreateSessionDetails:
    """The body of `session_details` as the SDK's model."""
    return oci.bastion.models.CreateSessionDetails(
        bastion_id=BASTION,
        display_name="deploy-staging",
        key_type="PUB",
        key_details=oci.bastion.models.PublicKeyDetails(public_key_content=ssh_public_key),
        session_ttl_in_seconds=1800,
        target_resource_details=oci.bastion.models.CreatePortForwardingSessionTargetResourceDetails(
            target_resource_private_ip_address=TARGET[0], target_resource_port=TARGET[1]
        ),
    )


def send(
    api: OciApi,
    method: str,
    path: str,
    signer: Any,
    body: Any = None,
    tamper: Callable[[Any], None] | None = None,
) -> tuple[int, Any]:
    """One request signed by the SDK's signer (`tamper` changes it after signing): status and JSON."""
    data = body if body is None or isinstance(body, str) else json.dumps(body)
    request = requests.Request(method, api.url + path, data=data, headers={"content-type": "application/json"})
    prepared = request.prepare()
    signer(prepared)
    if tamper is not None:
        tamper(prepared)
    with requests.Session() as session:
        response = session.send(prepared, timeout=TIMEOUT)
    assert response.headers.get("opc-request-id")
    return response.status_code, response.json() if response.content else None


def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """A stdlib request, as the deploy job makes them: status and JSON."""
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310 - a local http URL
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - a local http URL
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def id_token(api: OciApi, issuer: Issuer, audience: str = AUDIENCE) -> str:
    url = f"{api.oidc_request_url}&audience={urllib.parse.quote(audience, safe='')}"
    status, body = http(url, headers={"Authorization": f"bearer {issuer.request_token}"})
    assert status == 200
    return body["value"]


def public_key_field(key: rsa.RSAPrivateKey) -> str:
    """The exchange's public_key: base64 DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def exchange(
    api: OciApi, subject_token: str, key: rsa.RSAPrivateKey, client: tuple[str, str] = CLIENT, **form: str | None
) -> tuple[int, Any]:
    """POST /oauth2/v1/token with the form TokenExchangeSigner sends; `form` replaces fields
    (None removes one)."""
    fields: dict[str, str | None] = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "requested_token_type": "urn:oci:token-type:oci-upst",
        "subject_token": subject_token,
        "subject_token_type": "jwt",
        "public_key": public_key_field(key),
    }
    fields.update(form)
    data = urllib.parse.urlencode({k: v for k, v in fields.items() if v is not None}).encode()
    basic = base64.b64encode(":".join(client).encode()).decode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {basic}"}
    return http(api.url + "/oauth2/v1/token", data, headers)


# --- well-behaved clients get through ------------------------------------------------------------


def test_the_sdk_creates_gets_and_deletes_a_session_with_an_api_key(api, ci, ssh_public_key, events):
    client = ci_client(api, ci)
    created = client.create_session(sdk_details(ssh_public_key)).data
    assert created.lifecycle_state == "CREATING"
    assert created.id.startswith(f"ocid1.bastionsession.oc1.{REGION}.")
    assert events == []

    active = client.get_session(created.id).data
    assert active.lifecycle_state == "ACTIVE"
    assert events == [("active", created.id)]
    assert active.bastion_user_name == "deploy"
    assert active.bastion_public_host_key_info == "ssh-ed25519 AAAAhostkey"
    assert active.key_details.public_key_content == ssh_public_key
    assert active.target_resource_details.target_resource_private_ip_address == TARGET[0]
    assert active.ssh_metadata["command"] == (
        f"ssh -i <privateKey> -N -L <localPort>:{TARGET[0]}:{TARGET[1]} -p 22 "
        f"{created.id}@host.bastion.{REGION}.oci.oraclecloud.com"
    )

    deleted = client.delete_session(created.id)
    assert deleted.status == 202
    assert deleted.headers["opc-work-request-id"].startswith("ocid1.bastionworkrequest.")
    assert events == [("active", created.id), ("deleted", created.id)]
    assert client.get_session(created.id).data.lifecycle_state == "DELETED"
    assert client.get_session(created.id).data.lifecycle_state == "DELETED"
    with pytest.raises(oci.exceptions.ServiceError) as again:
        client.delete_session(created.id)
    assert (again.value.status, again.value.code) == (409, "IncorrectState")

    assert [(r.route, r.status, r.principal) for r in api.requests] == [
        ("create-session", 200, ci.user),
        ("get-session", 200, ci.user),
        ("delete-session", 202, ci.user),
        ("get-session", 200, ci.user),
        ("get-session", 200, ci.user),
        ("delete-session", 409, ci.user),
    ]


def test_the_answer_is_the_sdks_camel_case_session(api, ci, ssh_public_key):
    status, body = send(api, "POST", "/20210331/sessions", api_key_signer(ci), session_details(ssh_public_key))
    assert status == 200
    assert body["keyType"] == "PUB"
    assert body["sessionTtlInSeconds"] == 1800
    assert body["bastionId"] == BASTION
    assert body["bastionName"] == "deploy-bastion"
    assert body["targetResourceDetails"] == {
        "sessionType": "PORT_FORWARDING",
        "targetResourcePrivateIpAddress": TARGET[0],
        "targetResourcePort": TARGET[1],
    }
    assert body["timeCreated"].endswith("Z")
    assert api.sessions[body["id"]].state == "CREATING"


def test_a_github_jwt_is_exchanged_and_the_sdk_drives_the_bastion_with_it(api, issuer, deployer, ssh_public_key):
    token = id_token(api, issuer)
    status, jwks = http(api.url + "/.well-known/jwks")
    assert status == 200
    claims = jwt.decode(
        token, jwt.PyJWK(jwks["keys"][0]).key, algorithms=["RS256"], audience=AUDIENCE, issuer=GITHUB_ISSUER
    )
    assert claims["sub"] == f"repo:{REPOSITORY}:environment:staging"
    assert (claims["repository"], claims["environment"]) == (REPOSITORY, "staging")

    signer = oci.auth.signers.TokenExchangeSigner(token, api.url, *CLIENT)
    client = bastion_client(api, signer)
    created = client.create_session(sdk_details(ssh_public_key))
    assert created.data.lifecycle_state == "CREATING"
    assert api.sessions[created.data.id].principal == deployer.user
    [exchanged] = api.requests_for("token-exchange", status=200)
    assert exchanged.principal == deployer.user
    assert exchanged.headers["content-type"] == "application/x-www-form-urlencoded"
    [bastion_call] = api.requests_for("create-session")
    assert bastion_call.headers["authorization"].count('keyId="ST$') == 1


@pytest.mark.filterwarnings("ignore::FutureWarning")  # a regex of the SDK's vendored httpsig
def test_fingerprints_are_the_md5_of_the_der_key_as_oci_computes_them(ci_key):
    assert ci_key.fingerprint == get_fingerprint(ci_key.public_pem)
    assert len(ci_key.fingerprint.split(":")) == 16


# --- the OIDC endpoint and the identity domain ---------------------------------------------------


def test_the_oidc_endpoint_needs_the_request_token(api, issuer):
    assert http(api.oidc_request_url + "&audience=x", headers={"Authorization": "bearer other"})[0] == 401
    assert http(api.oidc_request_url + "&audience=x")[0] == 401
    status, body = http(api.oidc_request_url, headers={"Authorization": f"Bearer {issuer.request_token}"})
    assert status == 200
    unverified = jwt.decode(body["value"], options={"verify_signature": False})
    assert unverified["aud"] == "https://github.com/owner"


def test_wrong_client_credentials_are_invalid_client(api, issuer, session_key):
    status, body = exchange(api, id_token(api, issuer), session_key, client=(CLIENT[0], "wrong"))
    assert status == 401
    assert body["error"] == "invalid_client"
    assert api.tokens == {}


@pytest.mark.parametrize(
    "claims",
    [
        lambda now: {"sub": f"repo:{REPOSITORY}:environment:production"},
        lambda now: {"aud": "https://another-domain.identity.oraclecloud.com"},
        lambda now: {"iss": "https://token.example.com"},
        lambda now: {"exp": now - 60, "iat": now - 400, "nbf": now - 400},
        lambda now: {"nbf": now + 600},
        lambda now: {"exp": None},
    ],
    ids=["other-sub", "other-aud", "other-iss", "expired", "not-yet-valid", "no-exp"],
)
def test_jwts_the_trust_does_not_accept_are_invalid_grant(api, issuer, session_key, claims):
    # Times from when the test runs, not from when it was collected: a long suite outlives them.
    token = issuer.token(AUDIENCE, **claims(int(time.time())))
    status, body = exchange(api, token, session_key)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert api.tokens == {}


def test_a_jwt_signed_by_another_key_is_invalid_grant(api, session_key):
    impostor = Issuer(REPOSITORY, "staging")
    status, body = exchange(api, impostor.token(AUDIENCE), session_key)
    assert (status, body["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"requested_token_type": "urn:ietf:params:oauth:token-type:access_token"}, "invalid_request"),
        ({"subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}, "invalid_request"),
        ({"public_key": None}, "invalid_request"),
        ({"public_key": "not-base64-der"}, "invalid_request"),
        ({"scope": "urn:opc:idm:__myscopes__"}, "invalid_request"),
    ],
    ids=["grant-type", "requested-token-type", "subject-token-type", "no-public-key", "bad-public-key", "extra"],
)
def test_malformed_exchange_forms_are_refused(api, issuer, session_key, form, error):
    status, body = exchange(api, id_token(api, issuer), session_key, **form)
    assert (status, body["error"]) == (400, error)


def test_an_expired_upst_no_longer_signs(make_api, issuer, session_key, ssh_public_key):
    api = make_api(upst_lifetime=900)
    status, body = exchange(api, id_token(api, issuer), session_key)
    assert status == 200
    token = body["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900
    assert claims["sub"] == api.tokens[token].user
    signer = oci.auth.signers.SecurityTokenSigner(token, session_key)
    assert send(api, "POST", "/20210331/sessions", signer, session_details(ssh_public_key))[0] == 200

    api.tokens[token] = dataclasses.replace(api.tokens[token], expires=time.time() - 1)  # 900 s later
    status, error = send(api, "POST", "/20210331/sessions", signer, session_details(ssh_public_key))
    assert (status, error["code"]) == (401, "NotAuthenticated")
    assert api.requests[-1].detail == "security token expired"


def test_a_upst_signs_only_with_the_key_it_was_bound_to(api, issuer, session_key, ssh_public_key):
    status, body = exchange(api, id_token(api, issuer), session_key)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = oci.auth.signers.SecurityTokenSigner(body["token"], other)
    status, error = send(api, "POST", "/20210331/sessions", signer, session_details(ssh_public_key))
    assert (status, error["code"]) == (401, "NotAuthenticated")


# --- signatures ------------------------------------------------------------------------------------


def _replace_body(prepared: Any) -> None:
    prepared.body = prepared.body.replace('"deploy-staging"', '"deploy-stagin9"')


def _replace_body_and_hash(prepared: Any) -> None:
    _replace_body(prepared)
    prepared.headers["x-content-sha256"] = base64.b64encode(hashlib.sha256(prepared.body.encode()).digest()).decode()


def _other_date(prepared: Any) -> None:
    prepared.headers["date"] = email.utils.formatdate(time.time() - 60, usegmt=True)


def _no_authorization(prepared: Any) -> None:
    del prepared.headers["authorization"]


@pytest.mark.parametrize(
    ("tamper", "detail"),
    [
        (_replace_body, "x-content-sha256 does not match the body"),
        (_replace_body_and_hash, "signature does not match"),
        (_other_date, "signature does not match"),
        (_no_authorization, "no Signature authorization header"),
    ],
    ids=["body", "body-and-hash", "date", "unsigned"],
)
def test_a_request_changed_after_signing_is_not_authenticated(api, ci, ssh_public_key, tamper, detail):
    status, body = send(api, "POST", "/20210331/sessions", api_key_signer(ci), session_details(ssh_public_key), tamper)
    assert (status, body["code"]) == (401, "NotAuthenticated")
    assert api.requests[-1].detail == detail
    assert api.sessions == {}


def test_an_old_date_is_refused_even_when_signed(api, ci):
    def sign_old(prepared: Any) -> None:
        prepared.headers["date"] = "Mon, 30 Nov 2020 10:00:00 GMT"
        api_key_signer(ci)(prepared)

    status, body = send(api, "GET", "/20210331/sessions/ocid1.bastionsession.x", sign_old)
    assert (status, body["code"]) == (401, "NotAuthenticated")
    assert api.requests[-1].detail == "Date not within 5 minutes of the server's clock"


def test_a_key_that_is_not_the_principals_is_refused(api, ci, ssh_public_key):
    impostor = api_key_signer(ci, ApiKey.generate())
    status, body = send(api, "POST", "/20210331/sessions", impostor, session_details(ssh_public_key))
    assert (status, body["code"]) == (401, "NotAuthenticated")
    assert api.requests[-1].detail == "signature does not match"

    unknown = oci.signer.Signer(
        ci.tenancy, "ocid1.user.oc1..nobody", "00:11", None, private_key_content=ci.api_key.private_pem
    )
    assert send(api, "GET", "/20210331/sessions/x", unknown)[0] == 401


def test_a_post_must_sign_its_body_headers(api, ci, ssh_public_key):
    """The SDK's signer without content headers signs `date (request-target) host` only."""
    status, body = send(
        api, "POST", "/20210331/sessions", api_key_signer(ci).without_content_headers, session_details(ssh_public_key)
    )
    assert (status, body["code"]) == (401, "NotAuthenticated")
    assert api.requests[-1].detail.startswith("headers not signed: content-length")


# --- bodies and policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"unknownField": 1}, "InvalidParameter"),
        ({"keyDetails": None}, "MissingParameter"),
        ({"bastionId": None}, "MissingParameter"),
        ({"sessionTtlInSeconds": "1800"}, "InvalidParameter"),
        ({"sessionTtlInSeconds": True}, "InvalidParameter"),
        ({"sessionTtlInSeconds": 1799}, "InvalidParameter"),
        ({"sessionTtlInSeconds": 10801}, "InvalidParameter"),
        ({"keyType": "RSA"}, "InvalidParameter"),
        ({"keyDetails": {"publicKeyContent": "not a key"}}, "InvalidParameter"),
        ({"keyDetails": {"publicKeyContent": "ssh-ed25519 AAAA", "extra": "x"}}, "InvalidParameter"),
        ({"targetResourceDetails": {"targetResourcePrivateIpAddress": TARGET[0]}}, "MissingParameter"),
        ({"targetResourceDetails": {"sessionType": "PORT_BASED_FORWARDING"}}, "InvalidParameter"),
        (
            {"targetResourceDetails": {"sessionType": "PORT_FORWARDING", "targetResourcePort": "22"}},
            "InvalidParameter",
        ),
    ],
    ids=[
        "unknown-field",
        "no-key-details",
        "no-bastion-id",
        "ttl-string",
        "ttl-bool",
        "ttl-too-short",
        "ttl-too-long",
        "key-type",
        "not-a-key",
        "unknown-nested-field",
        "no-session-type",
        "unknown-session-type",
        "port-string",
    ],
)
def test_bodies_are_checked_against_the_sdk_models(api, ci, ssh_public_key, changes, code):
    status, body = send(
        api, "POST", "/20210331/sessions", api_key_signer(ci), session_details(ssh_public_key, **changes)
    )
    assert (status, body["code"]) == (400, code)
    assert api.sessions == {}


def test_unparsable_json_cannot_be_parsed(api, ci):
    status, body = send(api, "POST", "/20210331/sessions", api_key_signer(ci), "{not json")
    assert (status, body["code"]) == (400, "CannotParseRequest")


def test_the_ttl_is_bounded_by_the_bastions_maximum(make_api, ci, ssh_public_key):
    api = make_api(BastionSpec(max_session_ttl=3600))
    signer = api_key_signer(ci)
    assert (
        send(api, "POST", "/20210331/sessions", signer, session_details(ssh_public_key, sessionTtlInSeconds=3601))[0]
        == 400
    )
    status, body = send(
        api, "POST", "/20210331/sessions", signer, session_details(ssh_public_key, sessionTtlInSeconds=None)
    )
    assert (status, body["sessionTtlInSeconds"]) == (200, 3600)


@pytest.mark.parametrize(
    "changes",
    [
        {"bastionId": OTHER_BASTION},
        {"bastionId": "ocid1.bastion.oc1.eu-frankfurt-1.unknown"},
        {
            "targetResourceDetails": {
                "sessionType": "MANAGED_SSH",
                "targetResourceId": "ocid1.instance.oc1.eu-frankfurt-1.vm",
                "targetResourceOperatingSystemUserName": "opc",
            }
        },
        {"targetResourceDetails": {"sessionType": "DYNAMIC_PORT_FORWARDING"}},
        {
            "targetResourceDetails": {
                "sessionType": "PORT_FORWARDING",
                "targetResourcePrivateIpAddress": "10.0.1.6",
                "targetResourcePort": 22,
            }
        },
        {
            "targetResourceDetails": {
                "sessionType": "PORT_FORWARDING",
                "targetResourcePrivateIpAddress": TARGET[0],
                "targetResourcePort": 5432,
            }
        },
        {
            "targetResourceDetails": {
                "sessionType": "PORT_FORWARDING",
                "targetResourceId": "ocid1.instance.oc1.eu-frankfurt-1.vm",
                "targetResourcePrivateIpAddress": TARGET[0],
                "targetResourcePort": TARGET[1],
            }
        },
    ],
    ids=["other-bastion", "unknown-bastion", "managed-ssh", "dynamic", "other-ip", "other-port", "by-instance"],
)
def test_what_the_policy_does_not_allow_is_not_found(api, ci, ssh_public_key, changes):
    status, body = send(
        api, "POST", "/20210331/sessions", api_key_signer(ci), session_details(ssh_public_key, **changes)
    )
    assert (status, body["code"]) == (404, "NotAuthorizedOrNotFound")
    assert api.sessions == {}


def test_unknown_sessions_and_paths_are_not_found(api, ci):
    signer = api_key_signer(ci)
    for method in ("GET", "DELETE"):
        status, body = send(api, method, "/20210331/sessions/ocid1.bastionsession.oc1.eu-frankfurt-1.nothing", signer)
        assert (status, body["code"]) == (404, "NotAuthorizedOrNotFound")
    assert send(api, "GET", "/20210331/bastions", signer)[0] == 404


def test_a_session_on_a_bastion_the_principal_may_not_use_is_not_found(api, ci, ssh_public_key):
    foreign = BastionSession(
        id="ocid1.bastionsession.oc1.eu-frankfurt-1.foreign",
        bastion_id=OTHER_BASTION,
        display_name=None,
        public_key=ssh_public_key,
        target=TARGET,
        ttl=1800,
        principal="ocid1.user.oc1..admin",
    )
    api.sessions[foreign.id] = foreign
    assert send(api, "GET", f"/20210331/sessions/{foreign.id}", api_key_signer(ci))[0] == 404
    assert send(api, "DELETE", f"/20210331/sessions/{foreign.id}", api_key_signer(ci))[0] == 404
    assert foreign.state == "CREATING"


# --- lifecycle, hooks and faults -------------------------------------------------------------------


def _create(api: OciApi, ci: Principal, ssh_public_key: str) -> str:
    status, body = send(api, "POST", "/20210331/sessions", api_key_signer(ci), session_details(ssh_public_key))
    assert status == 200
    return body["id"]


def _states(api: OciApi, ci: Principal, session_id: str, gets: int) -> list[str]:
    signer = api_key_signer(ci)
    return [send(api, "GET", f"/20210331/sessions/{session_id}", signer)[1]["lifecycleState"] for _ in range(gets)]


@pytest.mark.parametrize(
    ("spec", "states"),
    [
        (BastionSpec(gets_until_active=3), ["CREATING", "CREATING", "ACTIVE", "ACTIVE"]),
        (BastionSpec(outcome=None), ["CREATING"] * 4),
        (BastionSpec(outcome="FAILED"), ["FAILED"] * 4),
    ],
    ids=["after-three-gets", "stays-creating", "fails"],
)
def test_a_session_becomes_what_its_bastion_is_set_to(make_api, ci, ssh_public_key, events, spec, states):
    api = make_api(spec)
    session_id = _create(api, ci, ssh_public_key)
    assert _states(api, ci, session_id, 4) == states
    assert events == ([("active", session_id)] if "ACTIVE" in states else [])
    assert api.sessions[session_id].activated == ("ACTIVE" in states)


def test_a_failing_hook_answers_500_and_keeps_the_state(make_api, ci, ssh_public_key):
    def refuse(session: BastionSession) -> None:
        raise OSError("cannot write authorized_keys")

    api = make_api(on_active=refuse)
    session_id = _create(api, ci, ssh_public_key)
    status, body = send(api, "GET", f"/20210331/sessions/{session_id}", api_key_signer(ci))
    assert (status, body["code"]) == (500, "InternalServerError")
    assert api.sessions[session_id].state == "CREATING"
    assert [str(e) for e in api.errors] == ["cannot write authorized_keys"]


def test_faults_answer_the_next_matching_requests_first(api, ci, ssh_public_key):
    api.fail_next("create-session", 429, "TooManyRequests", times=2, headers={"retry-after": "1"})
    client = ci_client(api, ci)
    details = sdk_details(ssh_public_key)
    for _ in range(2):
        with pytest.raises(oci.exceptions.ServiceError) as refused:
            client.create_session(details)
        assert (refused.value.status, refused.value.code) == (429, "TooManyRequests")
        assert refused.value.headers["retry-after"] == "1"
    assert client.create_session(details).status == 200
    assert [r.status for r in api.requests_for("create-session")] == [429, 429, 200]


def test_a_fault_on_the_exchange_uses_the_oauth_format(api, issuer, session_key):
    api.fail_next("token-exchange", 500, "server_error", "try again")
    assert exchange(api, id_token(api, issuer), session_key) == (
        500,
        {"error": "server_error", "error_description": "try again"},
    )
    assert exchange(api, id_token(api, issuer), session_key)[0] == 200


def test_requests_are_recorded_with_their_target(api, issuer):
    id_token(api, issuer)
    [request] = api.requests_for("id-token")
    assert request.target.startswith("/_apis/idtoken?api-version=2.0&audience=")
    assert request.headers["authorization"] == f"bearer {issuer.request_token}"
    assert request.principal is None


def test_the_server_stops_on_exit(ci):
    with OciApi(bastions={BASTION: BastionSpec()}, principals=[ci]) as api:
        url = api.url
        assert http(url + "/.well-known/jwks")[0] == 404
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/.well-known/jwks", timeout=1)  # noqa: S310 - a local http URL


def test_a_trust_must_map_to_a_known_principal(issuer):
    trust = Trust(*CLIENT, audience=AUDIENCE, subject=issuer.subject, user="ocid1.user.oc1..unknown")
    with pytest.raises(ValueError, match="not one of the principals"):
        OciApi(bastions={}, trust=trust, issuer=issuer)
    with pytest.raises(ValueError, match="maxSessionTtlInSeconds"):
        BastionSpec(max_session_ttl=10801)
