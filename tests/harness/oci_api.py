"""A local stand-in for the OCI APIs a deploy job calls, strict the way OCI is.

    key = ApiKey.generate()
    ci = Principal("ocid1.user.oc1..ci", bastions=[BASTION], target=("10.0.1.5", 22), api_key=key)
    deployer = Principal("ocid1.user.oc1..deployer", bastions=[BASTION], target=("10.0.1.5", 22))
    issuer = Issuer("owner/dreamscape-infra", "staging", request_token="runner-token")
    trust = Trust("client-id", "client-secret", audience="https://idcs-x.identity.oraclecloud.com",
                  subject=issuer.subject, user=deployer.user)
    with OciApi(bastions={BASTION: BastionSpec(user_name="deploy", host_key=host_key_line)},
                principals=[ci, deployer], trust=trust, issuer=issuer, on_active=authorize) as api:
        ... ACTIONS_ID_TOKEN_REQUEST_URL=api.oidc_request_url, domainUrl and bastion endpoint api.url ...
        api.fail_next("create-session", 429, "TooManyRequests")
        [deleted] = api.requests_for("delete-session", status=202)

One server on 127.0.0.1 (a free port, `url`) plays three services:

- GitHub's runner OIDC endpoint (`id-token`: GET `oidc_request_url` + `&audience=...` with
  `Authorization: bearer <request token>`, answering `{"value": <JWT>}`), and the issuer's
  JWKS (`jwks`: GET /.well-known/jwks). The `Issuer` signs RS256 tokens with its own key.
- An OCI identity domain with one identity propagation trust (`token-exchange`: POST
  /oauth2/v1/token), taking exactly the form `oci.auth.signers.TokenExchangeSigner` sends
  (oci 2.189.0). It checks the client's Basic credentials (401 `invalid_client`), the form
  (400 `invalid_request` / `unsupported_grant_type`), then the JWT: the issuer's signature,
  `iss`, the trust's audience, `exp`/`nbf`/`iat`, and `sub` equal to the trust's rule value
  (400 `invalid_grant`). It answers `{"token": <UPST>}`: a JWT naming the trust's service
  user, bound to the public key of the request, valid `Trust.upst_lifetime` seconds.
- The Bastion API, version 20210331 (`create-session`: POST /20210331/sessions,
  `get-session` / `delete-session`: GET / DELETE /20210331/sessions/{id}). Every request
  must carry OCI's request signature (draft-cavage, verified with the SDK's vendored
  `HeaderVerifier`): version 1, rsa-sha256, signed headers at least `date (request-target)
  host` (and `content-length content-type x-content-sha256` with a body, as `oci.signer`
  signs), a Date within 5 minutes, the body's length and SHA-256. The keyId is `ST$<UPST>`
  (a token the exchange issued, unexpired, the key it was bound to) or
  `<tenancy>/<user>/<fingerprint>` (a principal's API key). Else 401 NotAuthenticated.
  Bodies are checked against the SDK's models (`swagger_types`, `attribute_map`, the
  `[Required]` marks, the polymorphic `get_subtype`, the enum setters): unknown fields,
  wrong types or enum values are 400 InvalidParameter, missing required ones 400
  MissingParameter, unparsable JSON 400 CannotParseRequest; a TTL outside
  1800..the bastion's `max_session_ttl` or a public key that is not OpenSSH is 400
  InvalidParameter. What the principal's policy does not allow (another bastion, another
  session type, any target but its own private IP and port) is 404 NotAuthorizedOrNotFound,
  as is an unknown session. Answers are the SDK's camelCase JSON of
  `oci.bastion.models.Session`, serialized by the SDK, with an `opc-request-id` header.

Session lifecycle: CREATING, then the bastion's `outcome` (ACTIVE, FAILED, or None to stay
CREATING) on the `gets_until_active`-th GET; `on_active(session)` runs before that GET is
answered. DELETE answers 202 with an `opc-work-request-id` (Bastion deletes through a work
request; the SDK's composite operation and the Terraform provider wait on it) and turns the
session DELETING, calling `on_deleted(session)`; the next GET answers DELETED, and later
ones too. Deleting a session that is DELETING or DELETED is 409 IncorrectState. A hook runs
before the state changes: one that raises leaves the state as it was, the request answers 500
InternalServerError and the exception is kept in `errors`. Hooks run with the stand-in's lock
held and must not call it. Sessions do not expire by TTL here.

Every request is recorded (`requests`): method, target as sent, route, headers, body, the
principal it acted as, status, error code and why it was refused. `fail_next(route, ...)`
makes the next requests to a route answer a given status and code, before anything else
is checked.

With `platform=Platform(...)` (tests/harness/oci_platform.py) the same server also plays the
Container Instances API (20210415), the VNIC read of the Core API (20160918) and the Load
Balancer API's backends and work requests (20170115), signed and checked the same way; a
principal reaches them only through its `PlatformGrant` (`Principal.platform`). Its module
docstring describes the routes and the simulation.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import importlib
import json
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from oci._vendor.httpsig_cffi.utils import parse_authorization_header
from oci._vendor.httpsig_cffi.verify import HeaderVerifier
from oci.base_client import BaseClient, merge_type_mappings
from oci.bastion import models

from tests.harness import local_http

if TYPE_CHECKING:
    from tests.harness.oci_platform import Platform, PlatformGrant

API_VERSION = "20210331"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
UPST_ISSUER = "authService.oracle.com"
TENANCY = "ocid1.tenancy.oc1..standin"
MIN_SESSION_TTL = 1800
MAX_SESSION_TTL = 10800
"""What OCI allows for a bastion's maxSessionTtlInSeconds, and so for any session's TTL."""
MAX_DATE_SKEW = 300
GENERIC_HEADERS = ("date", "(request-target)", "host")
BODY_HEADERS = ("content-length", "content-type", "x-content-sha256")
"""The headers `oci.signer.Signer` signs: every request, and in addition requests with a body."""
BODY_METHODS = ("POST", "PUT", "PATCH")
TOKEN_EXCHANGE_FORM = {
    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
    "requested_token_type": "urn:oci:token-type:oci-upst",
    "subject_token_type": "jwt",
}
"""The fixed fields of `TokenExchangeSigner`'s form; `subject_token` and `public_key` vary."""
NOT_AUTHENTICATED = "The required information to complete authentication was not provided or was incorrect."
NOT_FOUND = "Authorization failed or requested resource not found."


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def fingerprint(public_pem: str) -> str:
    """OCI's fingerprint of an API key: MD5 of the DER SubjectPublicKeyInfo, colon-separated hex."""
    der = serialization.load_pem_public_key(public_pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.md5(der).hexdigest()  # noqa: S324 - OCI's fingerprint format, not a security check
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True)
class ApiKey:
    """An OCI API signing key pair (PEM)."""

    private_pem: str
    public_pem: str

    @classmethod
    def generate(cls) -> ApiKey:
        key = _rsa_key()
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return cls(private, _public_pem(key))

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_pem)


@dataclass(frozen=True)
class Principal:
    """An OCI user and what its IAM policy allows: creating, reading and deleting sessions on
    `bastions`, port forwarding to `target` (private IP, port) only; and, with `platform`,
    container instances, VNICs and load balancer backends as the grant says."""

    user: str
    """The user's OCID."""
    bastions: Iterable[str] = ()
    """Bastion OCIDs (kept as a frozenset)."""
    target: tuple[str, int] | None = None
    """None: no session target at all."""
    api_key: ApiKey | None = None
    """None: the user has no API key (a service user reached through the token exchange)."""
    tenancy: str = TENANCY
    platform: PlatformGrant | None = None
    """What it may do on the Container Instances, VNIC and Load Balancer routes; None: nothing
    (every such request is 404 NotAuthorizedOrNotFound)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "bastions", frozenset(self.bastions))

    @property
    def key_id(self) -> str:
        """The keyId its API key signs with: `<tenancy>/<user>/<fingerprint>`."""
        if self.api_key is None:
            raise ValueError(f"{self.user} has no API key")
        return f"{self.tenancy}/{self.user}/{self.api_key.fingerprint}"

    def sdk_config(self, region: str) -> dict[str, str]:
        """An OCI SDK config for its API key, with the key inline (`key_content`)."""
        if self.api_key is None:
            raise ValueError(f"{self.user} has no API key")
        return {
            "user": self.user,
            "tenancy": self.tenancy,
            "fingerprint": self.api_key.fingerprint,
            "key_content": self.api_key.private_pem,
            "region": region,
        }


class Issuer:
    """GitHub's Actions OIDC issuer for one job: RS256 tokens of its own key."""

    def __init__(
        self,
        repository: str,
        environment: str,
        request_token: str | None = None,
        subject: str | None = None,
        lifetime: int = 300,
    ) -> None:
        """`request_token`: the job's ACTIONS_ID_TOKEN_REQUEST_TOKEN (random when None);
        `subject`: the `sub` claim, by default GitHub's for a job in an environment."""
        self.repository = repository
        self.environment = environment
        self.request_token = request_token or secrets.token_urlsafe(24)
        self.subject = subject or f"repo:{repository}:environment:{environment}"
        self.lifetime = lifetime
        self.key = _rsa_key()
        self.kid = secrets.token_hex(8)

    @property
    def default_audience(self) -> str:
        """What GitHub puts in `aud` when the request names none: the owner's URL."""
        return f"https://github.com/{self.repository.split('/')[0]}"

    def token(self, audience: str | None = None, **claims: Any) -> str:
        """A signed JWT for `audience`; `claims` replace the standard ones (None removes one)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "iss": GITHUB_ISSUER,
            "aud": audience or self.default_audience,
            "sub": self.subject,
            "repository": self.repository,
            "repository_owner": self.repository.split("/")[0],
            "environment": self.environment,
            "ref": "refs/heads/main",
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        key = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**key, "kid": self.kid, "alg": "RS256", "use": "sig"}]}


@dataclass(frozen=True)
class Trust:
    """An identity domain's OAuth client and its one identity propagation trust: JWTs from the
    `Issuer` for `audience` whose `sub` equals `subject` (rule `sub eq <subject>`) act as the
    service user `user`."""

    client_id: str
    client_secret: str
    audience: str
    subject: str
    user: str
    """OCID of the service user, a `Principal` of the stand-in."""
    upst_lifetime: int = 3600
    """Seconds a UPST is valid (its `exp` - `iat`)."""

    @property
    def rule(self) -> str:
        return f"sub eq {self.subject}"


@dataclass(frozen=True)
class Upst:
    """A user principal session token the exchange issued."""

    token: str
    user: str
    public_pem: str
    expires: float
    """time.time() from which it is refused."""


@dataclass(frozen=True)
class BastionSpec:
    """A bastion the stand-in hosts, and how its sessions behave."""

    name: str = "deploy-bastion"
    max_session_ttl: int = MAX_SESSION_TTL
    user_name: str | None = None
    """The session's bastionUserName; None: the session's OCID, as OCI answers."""
    host_key: str | None = None
    """bastionPublicHostKeyInfo: the bastion sshd's host public key line."""
    gets_until_active: int = 1
    outcome: str | None = "ACTIVE"
    """What CREATING turns into: ACTIVE, FAILED, or None (stays CREATING)."""

    def __post_init__(self) -> None:
        if not MIN_SESSION_TTL <= self.max_session_ttl <= MAX_SESSION_TTL:
            raise ValueError(f"maxSessionTtlInSeconds must be within {MIN_SESSION_TTL}..{MAX_SESSION_TTL}")
        if self.gets_until_active < 1:
            raise ValueError("gets_until_active must be 1 or more")
        if self.outcome not in ("ACTIVE", "FAILED", None):
            raise ValueError(f"unknown outcome {self.outcome!r}")


@dataclass
class BastionSession:
    """A session as the stand-in keeps it."""

    id: str
    bastion_id: str
    display_name: str | None
    public_key: str
    target: tuple[str, int]
    ttl: int
    principal: str
    """OCID of the user that created it."""
    state: str = "CREATING"
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated: datetime | None = None
    gets: int = 0
    activated: bool = False
    """Whether on_active ran for it."""


@dataclass(frozen=True)
class Request:
    """One request as the stand-in received it, and what it answered."""

    method: str
    target: str
    """The request target as sent: path and query."""
    path: str
    route: str | None
    headers: dict[str, str]
    """Lowercase names."""
    body: bytes
    principal: str | None
    """OCID of the user it acted as (bastion calls, and the user a token exchange issued for)."""
    status: int
    code: str | None
    """The error code it answered (OCI `code`, OAuth `error`), None on success."""
    detail: str | None
    """Why it was refused, when the answer does not say (OCI's 401 and 404 never do)."""
    time: float
    """time.monotonic() when it arrived."""


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    code: str | None = None
    detail: str | None = None


@dataclass
class _Call:
    """What a route handler gets; it sets `principal` once it knows who is calling."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    param: str | None
    """The first path parameter: the session id of /sessions/{id}."""
    principal: str | None = None
    params: tuple[str, ...] = ()
    """Every path parameter, URL-decoded, in order."""


class _RefusalError(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.detail or reply.code)
        self.reply = reply


def _oci_error(status: int, code: str, message: str, detail: str | None = None) -> _RefusalError:
    return _RefusalError(Reply(status, {"code": code, "message": message}, code=code, detail=detail or message))


def _not_authenticated(detail: str) -> _RefusalError:
    return _oci_error(401, "NotAuthenticated", NOT_AUTHENTICATED, detail)


def _not_found(detail: str) -> _RefusalError:
    return _oci_error(404, "NotAuthorizedOrNotFound", NOT_FOUND, detail)


def _oauth_error(status: int, error: str, description: str) -> _RefusalError:
    return _RefusalError(
        Reply(status, {"error": error, "error_description": description}, code=error, detail=description)
    )


@cache
def serializer(type_mapping_name: str = "bastion") -> BaseClient:
    """The SDK's (de)serializer for one service's models (`bastion`, `container_instances`,
    `load_balancer`, `core`), without a client's connection or signer
    (`sanitize_for_serialization` reads the type mappings only)."""
    mapping = type_mapping(type_mapping_name)
    sdk = object.__new__(BaseClient)
    sdk.complex_type_mappings = mapping
    sdk.type_mappings = merge_type_mappings(BaseClient.primitive_type_map, mapping)
    return sdk


@cache
def type_mapping(name: str) -> dict[str, type]:
    """`oci.<name>.models.<name>_type_mapping`: the SDK's models of one service, by type name."""
    module = importlib.import_module(f"oci.{name}.models")
    return getattr(module, f"{name}_type_mapping")


_SDK = serializer("bastion")
"""The bastion models' serializer."""

_PRIMITIVES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}


def sdk_model(data: Any, type_name: str, where: str = "", type_mapping: Mapping[str, type] | None = None) -> Any:
    """`data` (parsed JSON) as the SDK's model `type_name` of `type_mapping` (by default the
    bastion's, `oci.bastion.models.bastion_type_mapping`), refused as OCI refuses a body: 400
    InvalidParameter for an unknown field, a wrong type or enum value (the SDK's enum setters),
    an unknown polymorphic type, 400 MissingParameter for a missing required field (the
    SDK's `[Required]` marks) or discriminator. Nested models, lists and maps of them are
    checked the same way; `where` prefixes the field names in the messages."""
    mapping = models.bastion_type_mapping if type_mapping is None else type_mapping
    cls = mapping[type_name]
    if not isinstance(data, dict):
        raise _oci_error(400, "InvalidParameter", f"{where or 'body'} must be a JSON object")
    if hasattr(cls, "get_subtype"):  # polymorphic: the discriminator names the concrete model
        discriminator = _discriminator(_polymorphic_base(cls))
        if data.get(discriminator) is None:
            raise _oci_error(400, "MissingParameter", f"Missing required field {where}{discriminator}")
        concrete = mapping.get(cls.get_subtype(data))
        if concrete is None or "get_subtype" in vars(concrete) or not issubclass(concrete, cls):
            raise _oci_error(
                400, "InvalidParameter", f"Invalid value for {where}{discriminator}: {data[discriminator]!r}"
            )
        cls = concrete
    instance = cls()
    by_json = {name: attr for attr, name in instance.attribute_map.items()}
    unknown = sorted(set(data) - set(by_json))
    if unknown:
        raise _oci_error(400, "InvalidParameter", f"Unknown field {where}{unknown[0]}")
    for attr, swagger_type in instance.swagger_types.items():
        name = instance.attribute_map[attr]
        value = data.get(name)
        if value is None:
            if "[Required]" in (getattr(cls, attr).__doc__ or ""):
                raise _oci_error(400, "MissingParameter", f"Missing required field {where}{name}")
            continue
        value = _sdk_value(value, swagger_type, f"{where}{name}", mapping)
        try:
            setattr(instance, attr, value)
        except ValueError as error:
            raise _oci_error(400, "InvalidParameter", f"Invalid value for {where}{name}: {error}") from None
    return instance


def _sdk_value(value: Any, swagger_type: str, where: str, mapping: Mapping[str, type]) -> Any:
    if swagger_type in mapping:
        return sdk_model(value, swagger_type, f"{where}.", mapping)
    if swagger_type.startswith("list[") and _has_model(swagger_type, mapping):
        if not isinstance(value, list):
            raise _oci_error(400, "InvalidParameter", f"{where} must be of type {swagger_type}")
        inner = _SDK.extract_list_item_type_from_swagger_type(swagger_type)
        return [_sdk_value(item, inner, f"{where}[{i}]", mapping) for i, item in enumerate(value)]
    if swagger_type.startswith("dict(") and _has_model(swagger_type, mapping):
        if not isinstance(value, dict):
            raise _oci_error(400, "InvalidParameter", f"{where} must be of type {swagger_type}")
        inner = _SDK.extract_dict_value_type_from_swagger_type(swagger_type)
        return {key: _sdk_value(item, inner, f"{where}.{key}", mapping) for key, item in value.items()}
    if not _of_type(value, swagger_type):
        raise _oci_error(400, "InvalidParameter", f"{where} must be of type {swagger_type}")
    return value


def _has_model(swagger_type: str, mapping: Mapping[str, type]) -> bool:
    """Whether a list or dict type holds models (checked field by field) rather than primitives."""
    inner = swagger_type
    while inner.startswith(("list[", "dict(")):
        if inner.startswith("list["):
            inner = _SDK.extract_list_item_type_from_swagger_type(inner)
        else:
            inner = _SDK.extract_dict_value_type_from_swagger_type(inner)
    return inner in mapping


def _polymorphic_base(cls: type) -> type:
    """The class that defines `get_subtype` (the model named by the API's field type)."""
    return next(klass for klass in cls.__mro__ if "get_subtype" in vars(klass))


@cache
def _discriminator(base: type) -> str:
    """The JSON field `base.get_subtype` reads: found by letting it read a dict that records."""

    class _Probe(dict):
        read: str | None = None

        def __getitem__(self, key: str) -> Any:
            self.read = key
            raise KeyError(key)

        def get(self, key: str, default: Any = None) -> Any:
            self.read = key
            raise KeyError(key)

    probe = _Probe()
    with contextlib.suppress(KeyError):
        base.get_subtype(probe)
    if probe.read is None:
        raise ValueError(f"cannot tell the discriminator of {base.__name__}")
    return probe.read


def _of_type(value: Any, swagger_type: str) -> bool:
    if swagger_type == "object":
        return True
    if swagger_type in _PRIMITIVES:
        return isinstance(value, _PRIMITIVES[swagger_type]) and not (isinstance(value, bool) and swagger_type != "bool")
    if swagger_type.startswith("dict("):
        inner = _SDK.extract_dict_value_type_from_swagger_type(swagger_type)
        return isinstance(value, dict) and all(isinstance(k, str) and _of_type(v, inner) for k, v in value.items())
    if swagger_type.startswith("list["):
        inner = _SDK.extract_list_item_type_from_swagger_type(swagger_type)
        return isinstance(value, list) and all(_of_type(v, inner) for v in value)
    raise ValueError(f"the stand-in does not check type {swagger_type}")


def _ocid(kind: str, region: str) -> str:
    return f"ocid1.{kind}.oc1.{region}.{secrets.token_hex(30)}"


CONTAINER_INSTANCES_VERSION = "20210415"
CORE_VERSION = "20160918"
LOAD_BALANCER_VERSION = "20170115"
_BACKENDS = f"/{LOAD_BALANCER_VERSION}/loadBalancers/{{}}/backendSets/{{}}/backends"

_ROUTES: list[tuple[str, str, str]] = [
    ("id-token", "GET", "/_apis/idtoken"),
    ("jwks", "GET", "/.well-known/jwks"),
    ("token-exchange", "POST", "/oauth2/v1/token"),
    ("create-session", "POST", f"/{API_VERSION}/sessions"),
    ("get-session", "GET", f"/{API_VERSION}/sessions/{{}}"),
    ("delete-session", "DELETE", f"/{API_VERSION}/sessions/{{}}"),
    ("create-container-instance", "POST", f"/{CONTAINER_INSTANCES_VERSION}/containerInstances"),
    ("list-container-instances", "GET", f"/{CONTAINER_INSTANCES_VERSION}/containerInstances"),
    ("get-container-instance", "GET", f"/{CONTAINER_INSTANCES_VERSION}/containerInstances/{{}}"),
    ("delete-container-instance", "DELETE", f"/{CONTAINER_INSTANCES_VERSION}/containerInstances/{{}}"),
    ("get-container", "GET", f"/{CONTAINER_INSTANCES_VERSION}/containers/{{}}"),
    ("get-container-work-request", "GET", f"/{CONTAINER_INSTANCES_VERSION}/workRequests/{{}}"),
    ("get-vnic", "GET", f"/{CORE_VERSION}/vnics/{{}}"),
    ("create-backend", "POST", _BACKENDS),
    ("list-backends", "GET", _BACKENDS),
    ("get-backend", "GET", f"{_BACKENDS}/{{}}"),
    ("update-backend", "PUT", f"{_BACKENDS}/{{}}"),
    ("delete-backend", "DELETE", f"{_BACKENDS}/{{}}"),
    ("get-backend-health", "GET", f"{_BACKENDS}/{{}}/health"),
    ("get-lb-work-request", "GET", f"/{LOAD_BALANCER_VERSION}/loadBalancerWorkRequests/{{}}"),
]
"""(name, method, path); `{}` is one path segment, a parameter (URL-decoded: a backend's
`10.0.1.5%3A8080` is `10.0.1.5:8080`)."""
_BASTION_ROUTES = ("create-session", "get-session", "delete-session")
PLATFORM_ROUTES = tuple(
    name
    for name, _, path in _ROUTES
    if path.startswith((f"/{CONTAINER_INSTANCES_VERSION}/", f"/{CORE_VERSION}/", f"/{LOAD_BALANCER_VERSION}/"))
)
"""The routes `Platform` answers (tests/harness/oci_platform.py)."""
_OCI_ROUTES = frozenset(_BASTION_ROUTES + PLATFORM_ROUTES)
"""Routes that answer OCI's error format and an opc-request-id."""


def _route(method: str, path: str) -> tuple[str, tuple[str, ...]] | None:
    segments = path.split("/")
    for name, route_method, route_path in _ROUTES:
        pattern = route_path.split("/")
        if method != route_method or len(pattern) != len(segments):
            continue
        params = []
        for want, got in zip(pattern, segments, strict=True):
            if want == "{}":
                if not got:
                    break
                params.append(unquote(got))
            elif want != got:
                break
        else:
            return name, tuple(params)
    return None


class OciApi:
    """The stand-in server; a context manager that starts and stops it."""

    def __init__(
        self,
        *,
        bastions: Mapping[str, BastionSpec] | None = None,
        principals: Iterable[Principal] = (),
        trust: Trust | None = None,
        issuer: Issuer | None = None,
        region: str = "eu-frankfurt-1",
        on_active: Callable[[BastionSession], None] | None = None,
        on_deleted: Callable[[BastionSession], None] | None = None,
        platform: Platform | None = None,
        startup_timeout: float = 5.0,
    ) -> None:
        """`platform`: the Container Instances, VNIC and Load Balancer state the platform routes
        answer from (None: they answer 404 NotAuthorizedOrNotFound to everyone)."""
        self.region = region
        self.bastions = dict(bastions or {})
        self.principals = {p.user: p for p in principals}
        if trust is not None and trust.user not in self.principals:
            raise ValueError(f"the trust's service user {trust.user} is not one of the principals")
        if trust is not None and issuer is None:
            raise ValueError("a trust needs the issuer whose tokens it accepts")
        self.trust = trust
        self.issuer = issuer
        self.on_active = on_active
        self.on_deleted = on_deleted
        self.platform = platform
        if platform is not None:
            platform.attach(region)
        self.sessions: dict[str, BastionSession] = {}
        self.tokens: dict[str, Upst] = {}
        """UPSTs the exchange issued, by token."""
        self.requests: list[Request] = []
        self.errors: list[Exception] = []
        """What hooks (or the stand-in itself) raised; each such request answered 500."""
        self._faults: dict[str, deque[Reply]] = {}
        self._domain_key: rsa.RSAPrivateKey | None = None
        """What the identity domain signs UPSTs with, made at the first exchange."""
        self._lock = threading.RLock()
        self._startup_timeout = startup_timeout
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of every route: the identity domain's URL and every service's endpoint
        (the SDK clients' `service_endpoint`)."""
        if self._server is None:
            raise RuntimeError("the OCI API stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def oidc_request_url(self) -> str:
        """ACTIONS_ID_TOKEN_REQUEST_URL: a client appends `&audience=...`."""
        return f"{self.url}/_apis/idtoken?api-version=2.0"

    def requests_for(self, route: str, status: int | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.route == route and (status is None or r.status == status)]

    def fail_next(
        self,
        route: str,
        status: int,
        code: str,
        message: str | None = None,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next `times` requests to `route` answer `status` with error `code`, in the route's
        error format (OCI's `{"code", "message"}`, OAuth's `{"error", "error_description"}` on
        the token exchange, `{"message"}` on GitHub's routes)."""
        if route not in {name for name, _, _ in _ROUTES}:
            raise ValueError(f"unknown route {route!r}")
        message = message or code
        if route in _OCI_ROUTES:
            body: dict[str, str] = {"code": code, "message": message}
        elif route == "token-exchange":
            body = {"error": code, "error_description": message}
        else:
            body = {"message": message}
        with self._lock:
            queue = self._faults.setdefault(route, deque())
            for _ in range(times):
                queue.append(Reply(status, body, dict(headers or {}), code=code, detail="injected fault"))

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> OciApi:
        api = self

        class Handler(_Handler):
            pass

        Handler.api = api
        self._server, self._thread = local_http.start(_Server, Handler, "OCI API", 0.01, self._startup_timeout)
        return self

    def __exit__(self, *exc: object) -> None:
        local_http.stop(self._server, self._thread, "OCI API", self._startup_timeout)
        self._server = None

    # --- dispatching ----------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """Answer one request (headers with lowercase names) and record it."""
        arrived = time.monotonic()
        path = urlsplit(target).path
        matched = _route(method, path)
        params = matched[1] if matched else ()
        call = _Call(method, target, headers, body, params[0] if params else None, params=params)
        if matched is None:
            reply = _not_found(f"no route for {method} {path}").reply
        else:
            with self._lock:
                queue = self._faults.get(matched[0])
                reply = queue.popleft() if queue else None
            if reply is None:
                try:
                    if matched[0] in PLATFORM_ROUTES:
                        reply = self._platform_call(matched[0], call)
                    else:
                        reply = getattr(self, "_" + matched[0].replace("-", "_"))(call)
                except _RefusalError as refused:
                    reply = refused.reply
                except Exception as error:  # a fault of the stand-in or a hook: kept for the test to see
                    self.errors.append(error)
                    reply = _oci_error(500, "InternalServerError", "Internal server error", repr(error)).reply
        if matched is None or matched[0] in _OCI_ROUTES or matched[0] == "token-exchange":
            reply.headers.setdefault("opc-request-id", uuid.uuid4().hex.upper())
        with self._lock:
            self.requests.append(
                Request(
                    method=method,
                    target=target,
                    path=path,
                    route=matched[0] if matched else None,
                    headers=headers,
                    body=body,
                    principal=call.principal,
                    status=reply.status,
                    code=reply.code,
                    detail=reply.detail,
                    time=arrived,
                )
            )
        return reply

    def _platform_call(self, route: str, call: _Call) -> Reply:
        """A platform route: signed by a principal with a grant, answered by the platform."""
        caller = self._authenticate(call)
        if self.platform is None or caller.platform is None:
            raise _not_found(f"{caller.user} has no grant on the platform")
        return self.platform.answer(route, call, caller.platform)

    # --- GitHub's OIDC endpoint -------------------------------------------------------------

    def _id_token(self, call: _Call) -> Reply:
        if self.issuer is None:
            raise _not_found("no issuer configured")
        scheme, _, value = call.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or value != self.issuer.request_token:
            return Reply(401, {"message": "Bad credentials"}, code="Unauthorized", detail="not the request token")
        query = parse_qs(urlsplit(call.target).query)
        audience = query.get("audience", [None])[-1]
        return Reply(200, {"value": self.issuer.token(audience)})

    def _jwks(self, call: _Call) -> Reply:
        if self.issuer is None:
            raise _not_found("no issuer configured")
        return Reply(200, self.issuer.jwks())

    # --- the identity domain ----------------------------------------------------------------

    def _token_exchange(self, call: _Call) -> Reply:
        trust = self.trust
        if trust is None or self.issuer is None:
            raise _not_found("no trust configured")
        scheme, _, encoded = call.headers.get("authorization", "").partition(" ")
        try:
            client = base64.b64decode(encoded, validate=True).decode() if scheme.lower() == "basic" else ""
        except ValueError:
            client = ""
        if client != f"{trust.client_id}:{trust.client_secret}":
            raise _oauth_error(401, "invalid_client", "Client authentication failed.")
        if call.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            raise _oauth_error(400, "invalid_request", "The request must be application/x-www-form-urlencoded.")
        try:
            form = parse_qs(call.body.decode(), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise _oauth_error(400, "invalid_request", "The request body cannot be parsed.") from None
        expected = {*TOKEN_EXCHANGE_FORM, "subject_token", "public_key"}
        if set(form) != expected or any(len(values) != 1 for values in form.values()):
            raise _oauth_error(400, "invalid_request", f"The request must have exactly the fields {sorted(expected)}.")
        fields = {key: values[0] for key, values in form.items()}
        if fields["grant_type"] != TOKEN_EXCHANGE_FORM["grant_type"]:
            raise _oauth_error(400, "unsupported_grant_type", f"Grant type {fields['grant_type']} is not supported.")
        for key in ("requested_token_type", "subject_token_type"):
            if fields[key] != TOKEN_EXCHANGE_FORM[key]:
                raise _oauth_error(400, "invalid_request", f"Unsupported {key} {fields[key]}.")
        try:
            der = base64.b64decode(fields["public_key"], validate=True)
            public_key = serialization.load_der_public_key(der)
        except ValueError:
            raise _oauth_error(400, "invalid_request", "public_key is not a base64 DER public key.") from None
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise _oauth_error(400, "invalid_request", "public_key must be an RSA key.")
        try:
            claims = jwt.decode(
                fields["subject_token"],
                self.issuer.key.public_key(),
                algorithms=["RS256"],
                audience=trust.audience,
                issuer=GITHUB_ISSUER,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.PyJWTError as error:
            raise _oauth_error(400, "invalid_grant", f"The subject token is invalid: {error}") from None
        if claims["sub"] != trust.subject:
            raise _oauth_error(400, "invalid_grant", f"No identity propagation trust rule matches sub {claims['sub']}.")
        now = int(time.time())
        with self._lock:
            self._domain_key = self._domain_key or _rsa_key()
        token = jwt.encode(
            {
                "iss": UPST_ISSUER,
                "sub": trust.user,
                "aud": "oci",
                "ttype": "upst",
                "ptype": "user",
                "tenant": self.principals[trust.user].tenancy,
                "jwk": json.dumps(RSAAlgorithm.to_jwk(public_key, as_dict=True)),
                "iat": now,
                "exp": now + trust.upst_lifetime,
                "jti": str(uuid.uuid4()),
            },
            self._domain_key,
            algorithm="RS256",
        )
        public_pem = public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        with self._lock:
            self.tokens[token] = Upst(token, trust.user, public_pem, now + trust.upst_lifetime)
        call.principal = trust.user
        return Reply(200, {"token": token})

    # --- the Bastion API ----------------------------------------------------------------------

    def _authenticate(self, call: _Call) -> Principal:
        """The principal whose key signed the call (recorded on it), or 401 NotAuthenticated."""
        method, headers, body = call.method, call.headers, call.body
        header = headers.get("authorization")
        if not header or not header.startswith("Signature "):
            raise _not_authenticated("no Signature authorization header")
        try:
            auth = dict(parse_authorization_header(header)[1])  # parameter names lowercased
        except ValueError:
            raise _not_authenticated("malformed authorization header") from None
        if auth.get("version") != "1" or auth.get("algorithm") != "rsa-sha256":
            raise _not_authenticated("signature version must be 1 and algorithm rsa-sha256")
        if not auth.get("keyid") or not auth.get("signature"):
            raise _not_authenticated("keyId or signature missing")
        signed = auth.get("headers", "date").split(" ")
        required = GENERIC_HEADERS + (BODY_HEADERS if method in BODY_METHODS else ())
        unsigned = [h for h in required if h not in signed]
        if unsigned:
            raise _not_authenticated(f"headers not signed: {' '.join(unsigned)}")
        absent = [h for h in signed if h != "(request-target)" and h not in headers]
        if absent:
            raise _not_authenticated(f"signed headers not sent: {' '.join(absent)}")
        try:
            date = email.utils.parsedate_to_datetime(headers["date"])
        except (TypeError, ValueError):
            raise _not_authenticated("unreadable Date") from None
        if date.tzinfo is None or abs(time.time() - date.timestamp()) > MAX_DATE_SKEW:
            raise _not_authenticated("Date not within 5 minutes of the server's clock")
        if method in BODY_METHODS:
            if headers["content-length"] != str(len(body)):
                raise _not_authenticated("content-length does not match the body")
            digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
            if headers["x-content-sha256"] != digest:
                raise _not_authenticated("x-content-sha256 does not match the body")
        principal, public_pem = self._signing_key(auth["keyid"])
        try:
            verified = HeaderVerifier(headers, public_pem, list(required), method=method, path=call.target).verify()
        except Exception as error:  # the verifier raises bare Exceptions for what it cannot read
            raise _not_authenticated(f"signature not verifiable: {error}") from None
        if not verified:
            raise _not_authenticated("signature does not match")
        call.principal = principal.user
        return principal

    def _signing_key(self, key_id: str) -> tuple[Principal, str]:
        if key_id.startswith("ST$"):
            with self._lock:
                upst = self.tokens.get(key_id.removeprefix("ST$"))
            if upst is None:
                raise _not_authenticated("unknown security token")
            if time.time() >= upst.expires:
                raise _not_authenticated("security token expired")
            return self.principals[upst.user], upst.public_pem
        tenancy, _, rest = key_id.partition("/")
        user, _, key_fingerprint = rest.partition("/")
        principal = self.principals.get(user)
        if (
            principal is None
            or principal.api_key is None
            or principal.tenancy != tenancy
            or principal.api_key.fingerprint != key_fingerprint
        ):
            raise _not_authenticated(f"unknown API key {key_id}")
        return principal, principal.api_key.public_pem

    def _create_session(self, call: _Call) -> Reply:
        caller = self._authenticate(call)
        try:
            data = json.loads(call.body)
        except ValueError:
            raise _oci_error(400, "CannotParseRequest", "The request body is not valid JSON.") from None
        details = sdk_model(data, "CreateSessionDetails")
        bastion = self.bastions.get(details.bastion_id)
        if bastion is None or details.bastion_id not in caller.bastions:
            raise _not_found(f"{caller.user} may not create sessions on {details.bastion_id}")
        forward = details.target_resource_details
        if not isinstance(forward, models.CreatePortForwardingSessionTargetResourceDetails):
            raise _not_found(f"{caller.user} may not create {forward.session_type} sessions")
        asked = (forward.target_resource_private_ip_address, forward.target_resource_port)
        if forward.target_resource_id or forward.target_resource_fqdn or asked != caller.target:
            raise _not_found(f"{caller.user} may forward to {caller.target} only")
        ttl = details.session_ttl_in_seconds
        ttl = bastion.max_session_ttl if ttl is None else ttl
        if not MIN_SESSION_TTL <= ttl <= bastion.max_session_ttl:
            raise _oci_error(
                400,
                "InvalidParameter",
                f"sessionTtlInSeconds must be between {MIN_SESSION_TTL} and {bastion.max_session_ttl}",
            )
        public_key = details.key_details.public_key_content
        try:
            serialization.load_ssh_public_key(public_key.strip().encode())
        except (ValueError, UnsupportedAlgorithm):
            raise _oci_error(
                400, "InvalidParameter", "keyDetails.publicKeyContent is not an OpenSSH public key"
            ) from None
        session = BastionSession(
            id=_ocid("bastionsession", self.region),
            bastion_id=details.bastion_id,
            display_name=details.display_name,
            public_key=public_key,
            target=caller.target,
            ttl=ttl,
            principal=caller.user,
        )
        with self._lock:
            self.sessions[session.id] = session
        return self._session_reply(session)

    def _session_for(self, caller: Principal, session_id: str) -> BastionSession:
        with self._lock:
            session = self.sessions.get(session_id)
        if session is None or session.bastion_id not in caller.bastions:
            raise _not_found(f"no session {session_id} that {caller.user} may see")
        return session

    def _get_session(self, call: _Call) -> Reply:
        caller = self._authenticate(call)
        session = self._session_for(caller, call.param)
        spec = self.bastions[session.bastion_id]
        with self._lock:
            if session.state == "DELETING":
                self._move(session, "DELETED")
            elif session.state == "CREATING" and spec.outcome is not None:
                session.gets += 1
                if session.gets >= spec.gets_until_active:
                    if spec.outcome == "ACTIVE":
                        self._hook(self.on_active, session)
                        session.activated = True
                    self._move(session, spec.outcome)
        return self._session_reply(session)

    def _delete_session(self, call: _Call) -> Reply:
        caller = self._authenticate(call)
        session = self._session_for(caller, call.param)
        with self._lock:
            if session.state in ("DELETING", "DELETED"):
                raise _oci_error(409, "IncorrectState", f"The session is in state {session.state}.")
            self._hook(self.on_deleted, session)
            self._move(session, "DELETING")
        return Reply(202, None, {"opc-work-request-id": _ocid("bastionworkrequest", self.region)})

    @staticmethod
    def _hook(hook: Callable[[BastionSession], None] | None, session: BastionSession) -> None:
        if hook is not None:
            hook(session)

    @staticmethod
    def _move(session: BastionSession, state: str) -> None:
        session.state = state
        session.updated = datetime.now(UTC)

    def session_model(self, session: BastionSession) -> models.Session:
        """The session as the SDK's `Session` model."""
        spec = self.bastions[session.bastion_id]
        ip, port = session.target
        host = f"host.bastion.{self.region}.oci.oraclecloud.com"
        return models.Session(
            id=session.id,
            display_name=session.display_name,
            bastion_id=session.bastion_id,
            bastion_name=spec.name,
            bastion_user_name=spec.user_name or session.id,
            target_resource_details=models.PortForwardingSessionTargetResourceDetails(
                target_resource_private_ip_address=ip, target_resource_port=port
            ),
            ssh_metadata={"command": f"ssh -i <privateKey> -N -L <localPort>:{ip}:{port} -p 22 {session.id}@{host}"},
            key_type="PUB",
            key_details=models.PublicKeyDetails(public_key_content=session.public_key),
            bastion_public_host_key_info=spec.host_key,
            time_created=session.created,
            time_updated=session.updated,
            lifecycle_state=session.state,
            lifecycle_details="The session could not be created." if session.state == "FAILED" else None,
            session_ttl_in_seconds=session.ttl,
        )

    def _session_reply(self, session: BastionSession) -> Reply:
        with self._lock:
            body = _SDK.sanitize_for_serialization(self.session_model(session), "Session")
        etag = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return Reply(200, body, {"etag": etag})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    api: OciApi
    protocol_version = "HTTP/1.1"
    server_version = "oci-standin"
    sys_version = ""
    timeout = 10
    disable_nagle_algorithm = True
    """Headers and body go out in two writes; without TCP_NODELAY each answer waits on a delayed ACK."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.api.handle(self.command, self.path, headers, body)
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815 - http.server's method names

    def log_message(self, format: str, *args: Any) -> None:
        pass
