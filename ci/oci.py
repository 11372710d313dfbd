"""OCI calls from the deploy job: signed requests, the workload identity exchange, bastion sessions.

The deploy job reaches a VM through its environment's OCI Bastion: it opens a port-forwarding
session to the VM's private address and port 22, SSHes through the bastion to the VM, and
deletes the session. What it needs to know comes from the repository variable
`DEPLOY_OCI_<ENV>` (`access`), written by the environment's stack; what it signs with, from
the deploy secret `OCI_DEPLOY_CREDENTIAL`:

- `workloadIdentity`: nothing long-lived reaches OCI. The job asks the runner for its GitHub
  OIDC token (the job needs `id-token: write`; GitHub sets `sub` to
  `repo:<owner>/<repo>:environment:<env>`), and the identity domain exchanges it, with the
  OAuth client's id and secret, for a session token (UPST) bound to a key pair made for this
  run. Only the deploy job of that environment matches the domain's trust; the token lives an
  hour at most and the key pair dies with the job.
- `apiKey`: the CI user's API key signs every call (the fallback for tenancies without
  identity domains' token exchange).

Calls are signed as OCI's SDKs sign them (HTTP signatures, `rsa-sha256`, over `date
(request-target) host`, plus `content-length content-type x-content-sha256` for a body), with
the runner's `openssl`: the job stays on the runner's own Python and installs nothing. The
tests check each signature with the OCI SDK's own verifier. 429, 5xx and no answer are
retried (a create carries an `opc-retry-token`, so a retry never makes a second session).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci import runner
from ci.github import Answer, send

BASTION_API_VERSION = "20210331"
WORKLOAD_IDENTITY = "workloadIdentity"
API_KEY = "apiKey"
AUTH_MODES = (WORKLOAD_IDENTITY, API_KEY)

SESSION_TTL_SECONDS = 1800
MAX_SESSION_TTL_SECONDS = 10800
"""OCI's shortest and longest session TTL; a session is deleted as soon as its deploy ends."""
ACTIVE_WAIT_SECONDS = 300
"""How long a new session may take to become ACTIVE (OCI takes about a minute)."""
POLL_SECONDS = 3
TIMEOUT_SECONDS = 30
LAST_CHANCE_SECONDS = 5
"""The one attempt to delete a session when the job is being cancelled (the runner sends SIGINT,
then SIGTERM 7.5 s later, then kills)."""
TOKEN_REFRESH_SECONDS = 50 * 60
"""A session token older than this is exchanged again before the session is deleted (it lives an hour)."""
MAX_ATTEMPTS = 4
BASE_DELAY_SECONDS = 2

REGION_PATTERN = r"^[a-z]{2,}(-[a-z]+)+-[0-9]{1,2}$"
"""An OCI region identifier, such as eu-frankfurt-1 (settings checks `oci:region` with it too)."""
_REGION = re.compile(REGION_PATTERN.strip("^$"), re.ASCII)
_OCID = re.compile(r"ocid1\.[a-z0-9]+\.[a-z0-9-]+\.[a-z0-9-]*\.[a-z0-9._-]{1,255}", re.ASCII)
DOMAIN_URL_PATTERN = r"^https://idcs-[0-9a-z]+\.identity\.[a-z0-9.-]+\.[a-z]+(:443)?$"
"""An identity domain's URL (settings checks `oci.identityDomainUrl` with it too)."""
_DOMAIN_URL = re.compile(DOMAIN_URL_PATTERN.strip("^$") + r"|http://127\.0\.0\.1:[0-9]{1,5}", re.ASCII)
"""An identity domain's URL, as settings admits it; or a local stand-in on the loopback address
(the tests'): the client secret and the job's OIDC token never travel in clear to another host."""
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}", re.ASCII)
_FINGERPRINT = re.compile(r"([0-9a-f]{2}:){15}[0-9a-f]{2}", re.ASCII)
_HOST_KEY = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,2}", re.ASCII)
_USER = re.compile(r"[A-Za-z0-9._-]{1,255}", re.ASCII)


def commercial(region: str) -> bool:
    """Whether the region is in OCI's commercial realm (oc1, `oraclecloud.com`), whose endpoint
    names `Access` derives; government realms have domains of their own."""
    return "-gov-" not in region


class OciError(Exception):
    """OCI refused or failed a call: the deploy cannot reach the VM; the message says which call."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status OCI answered with; None when no answer came or the error is not a call's."""


@dataclass(frozen=True)
class Access:
    """How the deploy job reaches an environment's bastion (`DEPLOY_OCI_<ENV>`, nothing secret)."""

    region: str
    bastion_id: str
    auth: str
    domain_url: str = ""
    client_id: str = ""
    tenancy: str = ""
    user: str = ""
    fingerprint: str = ""

    @classmethod
    def of(cls, data: Mapping[str, Any], bastion_id: str = "") -> Access:
        """The identity fields of a variable already checked (`access`, or ci/instances.py's)."""
        return cls(
            region=data["region"],
            bastion_id=bastion_id,
            auth=data["auth"],
            domain_url=data.get("domainUrl", "").rstrip("/"),
            client_id=data.get("clientId", ""),
            tenancy=data.get("tenancy", ""),
            user=data.get("user", ""),
            fingerprint=data.get("fingerprint", ""),
        )

    @property
    def api_endpoint(self) -> str:
        return f"https://bastion.{self.region}.oci.oraclecloud.com"

    @property
    def ssh_host(self) -> str:
        """The bastion's SSH endpoint of the region (sessions are reached on port 22)."""
        return f"host.bastion.{self.region}.oci.oraclecloud.com"


AUTH_FIELDS = {
    WORKLOAD_IDENTITY: {"domainUrl": _DOMAIN_URL, "clientId": _CLIENT_ID},
    API_KEY: {"tenancy": _OCID, "user": _OCID, "fingerprint": _FINGERPRINT},
}


def access(text: str, variable: str) -> Access:
    """The variable's JSON checked field by field; ValueError naming the first problem."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"{variable} is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"{variable} is not a JSON object")
    auth = data.get("auth")
    if auth not in AUTH_MODES:
        raise ValueError(f"{variable}.auth is {auth!r}; expected one of {', '.join(AUTH_MODES)}")
    expected = {"region": _REGION, "bastionId": _OCID, "auth": re.compile(auth), **AUTH_FIELDS[auth]}
    for key in sorted(set(data) - set(expected)):
        raise ValueError(f"{variable}.{key} is not a field of auth {auth}")
    for key, pattern in expected.items():
        value = data.get(key)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"{variable}.{key} is missing or malformed")
    return Access.of(data, data["bastionId"])


# --- keys and signatures (the runner's openssl) ------------------------------------------------


TOOL_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C"}
"""The whole environment of openssl and ssh-keygen: none of the job's secrets."""


def tool(*args: str, data: bytes = b"") -> subprocess.CompletedProcess:
    """`openssl` or `ssh-keygen`, bounded in time, with TOOL_ENV; OciError when it cannot run."""
    try:
        return subprocess.run(list(args), input=data, capture_output=True, timeout=60, check=False, env=TOOL_ENV)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise OciError(f"{args[0]} could not run: {type(error).__name__}") from None


def _openssl(*args: str, data: bytes = b"") -> bytes:
    done = tool("openssl", *args, data=data)
    if done.returncode != 0:
        said = runner.printable(" ".join(done.stderr.decode("utf-8", "replace").split()), limit=200)
        raise OciError(f"openssl {args[0]} failed: {said}")
    return done.stdout


def new_rsa_key(path: Path) -> str:
    """A 2048-bit RSA key written to `path` (0600, in the job's private directory); returns the
    public key as base64 DER (SubjectPublicKeyInfo), as the token exchange wants it."""
    path.touch(mode=0o600, exist_ok=False)
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    return base64.b64encode(_openssl("pkey", "-in", str(path), "-pubout", "-outform", "DER")).decode()


class Signer:
    """Signs requests with `key_id` (`ST$<token>` or `<tenancy>/<user>/<fingerprint>`) and the
    RSA private key at `key_path`."""

    def __init__(self, key_id: str, key_path: Path) -> None:
        self.key_id = key_id
        self.key_path = key_path

    def headers(self, method: str, url: str, body: bytes | None) -> dict[str, str]:
        parts = urllib.parse.urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"date": email.utils.formatdate(usegmt=True), "(request-target)": f"{method.lower()} {target}"}
        headers["host"] = parts.netloc
        if method in ("POST", "PUT", "PATCH"):
            body = body or b""
            headers |= {
                "content-length": str(len(body)),
                "content-type": "application/json",
                "x-content-sha256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
            }
        signing = "\n".join(f"{name}: {value}" for name, value in headers.items())
        signature = base64.b64encode(_openssl("dgst", "-sha256", "-sign", str(self.key_path), data=signing.encode()))
        headers["authorization"] = (
            f'Signature algorithm="rsa-sha256",headers="{" ".join(headers)}",keyId="{self.key_id}",'
            f'signature="{signature.decode()}",version="1"'
        )
        del headers["(request-target)"]
        return headers


# --- HTTP ------------------------------------------------------------------------------------------


def _retried(call: Callable[[], Answer], attempts: int, sleep: Callable[[float], None], base_delay: float) -> Answer:
    for attempt in range(1, attempts + 1):
        answer = call()
        if not (answer.status in (0, 429) or answer.status >= 500) or attempt == attempts:
            return answer
        sleep(base_delay * (1 << (attempt - 1)))
    raise AssertionError("unreachable")


def _problem(answer: Answer) -> str:
    """OCI's `code` and `message` (or OAuth's `error`), printable, one line."""
    data = answer.json()
    words = []
    if isinstance(data, dict):
        for key in ("code", "error", "message", "error_description"):
            if isinstance(data.get(key), str):
                words.append(data[key])
    text = ": ".join(words)
    return runner.printable(text.split("\n")[0], limit=300)


class Client:
    """Calls with retries: `attempts` in all, each within `timeout` seconds; `sleep` and
    `base_delay` are for tests."""

    def __init__(
        self,
        sleep: Callable[[float], None] = time.sleep,
        base_delay: float = BASE_DELAY_SECONDS,
        attempts: int = MAX_ATTEMPTS,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.sleep = sleep
        self.base_delay = base_delay
        self.attempts = attempts
        self.timeout = timeout

    def last_chance(self) -> Client:
        """One short attempt: what a cancelled job has time for before the runner kills it."""
        return Client(self.sleep, self.base_delay, attempts=1, timeout=LAST_CHANCE_SECONDS)

    def answer(self, what: str, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Answer:
        """The successful answer, headers included; OciError naming `what` otherwise."""
        answer = _retried(
            lambda: send(method, url, headers, body, self.timeout), self.attempts, self.sleep, self.base_delay
        )
        if not answer.ok:
            status = f"HTTP {answer.status}" if answer.status else "no answer"
            raise OciError(f"{what}: {status} {_problem(answer)}".rstrip(), answer.status or None)
        return answer

    def call(self, what: str, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Any:
        answer = self.answer(what, method, url, headers, body)
        return answer.json() if answer.body else None


# --- credentials -----------------------------------------------------------------------------------

ID_TOKEN_URL = "ACTIONS_ID_TOKEN_REQUEST_URL"  # noqa: S105 - the runner's variable names
ID_TOKEN_TOKEN = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105


def github_oidc_token(env: Mapping[str, str], audience: str, client: Client) -> str:
    """This job's GitHub OIDC token for `audience` (the runner sets the two variables only for a
    job with `id-token: write`)."""
    url, token = env.get(ID_TOKEN_URL, ""), env.get(ID_TOKEN_TOKEN, "")
    if not url or not token:
        raise OciError("no GitHub OIDC token: the deploy job needs `permissions: id-token: write`")
    separator = "&" if "?" in url else "?"
    answer = client.call(
        "GitHub OIDC token",
        "GET",
        f"{url}{separator}audience={urllib.parse.quote(audience, safe='')}",
        {"Authorization": f"bearer {token}", "Accept": "application/json"},
    )
    value = answer.get("value") if isinstance(answer, dict) else None
    if not isinstance(value, str) or not value:
        raise OciError("GitHub OIDC token: the answer holds no token")
    return value


def exchange(access_: Access, client_secret: str, jwt: str, public_key: str, client: Client) -> str:
    """The identity domain's session token (UPST) for the GitHub token, bound to `public_key`."""
    basic = base64.b64encode(f"{access_.client_id}:{client_secret}".encode()).decode()
    form = urllib.parse.urlencode(
        {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "requested_token_type": "urn:oci:token-type:oci-upst",
            "subject_token": jwt,
            "subject_token_type": "jwt",
            "public_key": public_key,
        }
    ).encode()
    answer = client.call(
        "OCI token exchange",
        "POST",
        f"{access_.domain_url}/oauth2/v1/token",
        {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        form,
    )
    token = answer.get("token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise OciError("OCI token exchange: the answer holds no token")
    return token


def signer(access_: Access, credential: str, work: Path, env: Mapping[str, str], client: Client) -> Signer:
    """The run's signer: a session token for a key made here, or the CI user's API key."""
    key = work / f"oci_api_key-{uuid.uuid4().hex[:8]}.pem"
    if access_.auth == API_KEY:
        key.touch(mode=0o600, exist_ok=False)
        key.write_text(credential.strip() + "\n")
        return Signer(f"{access_.tenancy}/{access_.user}/{access_.fingerprint}", key)
    public_key = new_rsa_key(key)
    jwt = github_oidc_token(env, access_.domain_url, client)
    return Signer(f"ST${exchange(access_, credential, jwt, public_key, client)}", key)


# --- bastion sessions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    id: str
    user: str
    """The user to log in to the bastion as (OCI: the session's id)."""
    host_key: str | None
    """The bastion's host key (`<type> <base64>`) when OCI gives it."""


class Bastion:
    """Port-forwarding sessions on one bastion."""

    def __init__(self, endpoint: str, signer_: Signer, client: Client) -> None:
        self.base = f"{endpoint.rstrip('/')}/{BASTION_API_VERSION}/sessions"
        self.signer = signer_
        self.client = client

    def _call(
        self,
        what: str,
        method: str,
        url: str,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        client: Client | None = None,
    ) -> Any:
        body = None if data is None else json.dumps(data).encode()
        signed = {**self.signer.headers(method, url, body), **(headers or {}), "accept": "application/json"}
        return (client or self.client).call(what, method, url, signed, body)

    def create(self, bastion_id: str, ip: str, port: int, public_key: str, name: str, ttl: int) -> str:
        details = {
            "bastionId": bastion_id,
            "displayName": name,
            "keyType": "PUB",
            "keyDetails": {"publicKeyContent": public_key},
            "sessionTtlInSeconds": ttl,
            "targetResourceDetails": {
                "sessionType": "PORT_FORWARDING",
                "targetResourcePrivateIpAddress": ip,
                "targetResourcePort": port,
            },
        }
        retry = {"opc-retry-token": uuid.uuid4().hex}
        answer = self._call("Create the bastion session", "POST", self.base, details, retry)
        session_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(session_id, str) or not _OCID.fullmatch(session_id):
            raise OciError("Create the bastion session: the answer holds no session id")
        return session_id

    def get(self, session_id: str) -> dict[str, Any]:
        answer = self._call("Read the bastion session", "GET", f"{self.base}/{session_id}")
        if not isinstance(answer, dict):
            raise OciError("Read the bastion session: the answer is not a session")
        return answer

    def wait_active(self, session_id: str, clock: Callable[[], float] = time.monotonic) -> Session:
        """The session once ACTIVE; OciError when it fails or takes longer than ACTIVE_WAIT_SECONDS."""
        deadline = clock() + ACTIVE_WAIT_SECONDS
        while True:
            session = self.get(session_id)
            state = session.get("lifecycleState")
            if state == "ACTIVE":
                return _session(session_id, session)
            if state != "CREATING":
                details = runner.printable(str(session.get("lifecycleDetails") or ""), limit=200)
                raise OciError(f"the bastion session is {state}, not ACTIVE {details}".rstrip())
            if clock() >= deadline:
                raise OciError(f"the bastion session was not ACTIVE within {ACTIVE_WAIT_SECONDS}s")
            self.client.sleep(POLL_SECONDS)

    def delete(self, session_id: str, client: Client | None = None) -> None:
        """Delete the session (OCI answers 202 and deletes it in the background); one already
        DELETING or DELETED (409 IncorrectState) is as good."""
        try:
            self._call("Delete the bastion session", "DELETE", f"{self.base}/{session_id}", client=client)
        except OciError as error:
            if error.status != 409:
                raise


def _session(session_id: str, data: Mapping[str, Any]) -> Session:
    user = data.get("bastionUserName") or session_id
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise OciError("the bastion session names no user to log in as")
    match = _HOST_KEY.search(str(data.get("bastionPublicHostKeyInfo") or ""))
    return Session(id=session_id, user=user, host_key=match.group(0) if match else None)
