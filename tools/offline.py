"""Run the real Pulumi program under the Python SDK's mock engine: no CLI, no cloud, no network.

Used by `tools/plan.py` and by the tests. It does what the engine would do with a stack:
merges `Pulumi.yaml` and `Pulumi.<stack>.yaml` into the config map (`secure:` values become
placeholders, marked secret), runs `__main__.py`, waits for every registration, and records
each resource with its parent, inputs and options. Provider functions are answered with
realistic shapes; an unknown one is an error, so a new invoke cannot slip through unanswered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import hashlib
import ipaddress
import json
import logging
import re
import runpy
import string
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.sync_await import _ensure_event_loop

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components import settings as settings_module  # noqa: E402

SECRET = "[secret]"  # noqa: S105 - the mask printed in place of a secret
PLACEHOLDER_PREFIX = "offline-placeholder-"


@dataclass
class Registered:
    """One resource as the engine saw it."""

    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    """Inputs as sent; secret values stay wrapped (see `is_secret`)."""
    outputs: dict[str, Any]
    options: dict[str, Any]
    id: str | None = None
    """The provider's id (an OCID for OCI resources); None for components."""

    @property
    def parent_name(self) -> str | None:
        return self.parent.rsplit("::", 1)[-1] if self.parent else None

    def plain(self, key: str) -> Any:
        """An input with any secret wrapping removed (tests read secret inputs this way)."""
        return _unwrap(self.inputs.get(key))


@dataclass
class Plan:
    stack: str
    resources: list[Registered] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    """What the program logged with `pulumi.log.warn` (a preview shows these as warnings)."""

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Registered:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    def children_of(self, parent: Registered) -> list[Registered]:
        return [r for r in self.resources if r.parent == parent.urn]


def is_secret(value: Any) -> bool:
    return rpc.is_rpc_secret(value)


def _unwrap(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return _unwrap(value["value"])
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def masked(value: Any) -> Any:
    """The value with every secret replaced by `[secret]`, for printing."""
    if rpc.is_rpc_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


# --- provider stand-ins --------------------------------------------------------------------


def _throwaway_ed25519(seed: str) -> dict[str, str]:
    """A real ed25519 key pair derived from the resource name: stable across runs, never real."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"offline:{seed}".encode()).digest())
    public_openssh = (
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    )
    blob = base64.b64decode(public_openssh.split()[1])
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return {
        "algorithm": "ED25519",
        "publicKeyOpenssh": public_openssh + "\n",
        "publicKeyPem": key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        "privateKeyOpenssh": _openssh_private_key(
            key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            ),
            blob,
        ),
        "privateKeyPem": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "publicKeyFingerprintSha256": fingerprint,
        "publicKeyFingerprintMd5": hashlib.md5(blob, usedforsecurity=False).hexdigest(),
    }


def _throwaway_key(a: pulumi_mocks.MockResourceArgs) -> dict[str, str]:
    """What `tls.PrivateKey` computes, for its algorithm: ED25519 (the default here) or RSA."""
    algorithm = str(a.inputs.get("algorithm", "ED25519")).upper()
    if algorithm == "RSA":
        return _throwaway_rsa(a.name, int(a.inputs.get("rsaBits") or 2048))
    if algorithm != "ED25519":
        raise ValueError(f"the offline engine makes ED25519 and RSA keys, not {algorithm}")
    return _throwaway_ed25519(a.name)


def _throwaway_password(a: pulumi_mocks.MockResourceArgs) -> dict[str, str]:
    """What `random.RandomPassword` computes (letters and digits here), derived from the resource
    name: stable across runs, never real."""
    alphabet = string.ascii_letters + string.digits
    source = _stream(f"password:{a.name}")
    result = "".join(alphabet[next(source) % len(alphabet)] for _ in range(int(a.inputs.get("length") or 16)))
    return {"result": result, "bcryptHash": "$2a$10$offline" + hashlib.sha256(result.encode()).hexdigest()[:46]}


def _stream(seed: str):
    """Endless bytes derived from `seed` (SHA-256 in counter mode): reproducible, never secret."""
    counter = 0
    while True:
        yield from hashlib.sha256(f"offline:{seed}:{counter}".encode()).digest()
        counter += 1


def _integer(source, bits: int) -> int:
    return int.from_bytes(bytes(next(source) for _ in range(bits // 8)), "big")


_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p**0.5) + 1, 2))]


def _probable_prime(n: int, source) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(32):
        x = pow(2 + _integer(source, 64) % (n - 3), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


_RSA_KEYS: dict[tuple[str, int], dict[str, str]] = {}


def _throwaway_rsa(seed: str, bits: int) -> dict[str, str]:
    """A real RSA key pair derived from the resource name: stable across runs, never real."""
    if (seed, bits) in _RSA_KEYS:
        return _RSA_KEYS[(seed, bits)]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    source = _stream(f"rsa:{seed}:{bits}")
    exponent = 65537

    def prime() -> int:
        while True:
            candidate = _integer(source, bits // 2) | (3 << (bits // 2 - 2)) | 1
            if candidate % exponent != 1 and _probable_prime(candidate, source):
                return candidate

    p, q = prime(), prime()
    d = pow(exponent, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(exponent, p * q),
    )
    key = numbers.private_key()
    public = key.public_key()
    openssh = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    blob = base64.b64decode(openssh.split()[1])
    none = serialization.NoEncryption()
    _RSA_KEYS[(seed, bits)] = {
        "algorithm": "RSA",
        "rsaBits": bits,
        "privateKeyPem": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, none
        ).decode(),
        "privateKeyPemPkcs8": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, none
        ).decode(),
        "privateKeyOpenssh": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, none
        ).decode(),
        "publicKeyPem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        "publicKeyOpenssh": openssh + "\n",
        "publicKeyFingerprintSha256": "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="),
        "publicKeyFingerprintMd5": _md5_fingerprint(blob),
    }
    return _RSA_KEYS[(seed, bits)]


def _md5_fingerprint(data: bytes) -> str:
    """`aa:bb:...`: an MD5 digest as OCI shows an API key's fingerprint (of the key's DER)."""
    return ":".join(f"{b:02x}" for b in hashlib.md5(data, usedforsecurity=False).digest())


def _openssh_private_key(seed: bytes, public_blob: bytes) -> str:
    """An unencrypted OpenSSH ed25519 private key, byte-stable for a given key.

    The format's two "check" integers are random when OpenSSH or `cryptography` write it;
    here they come from the seed, so rendered files holding a throwaway key never drift.
    """

    def string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    public = public_blob[-32:]
    check = hashlib.sha256(b"check:" + seed).digest()[:4] * 2
    private = check + string(b"ssh-ed25519") + string(public) + string(seed + public) + string(b"")
    private += bytes(range(1, 1 + (-len(private) % 8)))
    body = (
        b"openssh-key-v1\0"
        + string(b"none")
        + string(b"none")
        + string(b"")
        + (1).to_bytes(4, "big")
        + string(public_blob)
        + string(private)
    )
    text = base64.b64encode(body).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]  # PEM line length, as Go writes it
    return "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END OPENSSH PRIVATE KEY-----\n"


def _ocid(kind: str, name: str, region: str = "eu-frankfurt-1") -> str:
    return f"ocid1.{kind}.oc1.{region}.offline{hashlib.sha256(name.encode()).hexdigest()[:24]}"


def _number(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:7], 16)


ResourceAnswer = Callable[[pulumi_mocks.MockResourceArgs], dict[str, Any]]
CallAnswer = Callable[[dict[str, Any]], dict[str, Any]]


class InvokeFailedError(Exception):
    """Raised by a call answer to fail the invoke as the provider would (the program sees an error)."""

    def __init__(self, reason: str, property_name: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.property_name = property_name


class OfflineMocks(pulumi.runtime.Mocks):
    """Answers for the engine: resource outputs echo inputs plus what the provider computes."""

    def __init__(self, region: str = "eu-frankfurt-1") -> None:
        self.region = region
        self.resource_answers: dict[str, ResourceAnswer] = {
            "tls:index/privateKey:PrivateKey": _throwaway_key,
            "random:index/randomPassword:RandomPassword": _throwaway_password,
            "github:index/branch:Branch": self._new_branch,
            "github:index/repositoryPullRequest:RepositoryPullRequest": self._new_pull_request,
        }
        self.call_answers: dict[str, CallAnswer] = {
            "github:index/getRepository:getRepository": self._repository,
            "github:index/getBranch:getBranch": self._branch,
            "github:index/getOrganization:getOrganization": self._organization,
        }
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.user_accounts: set[str] = set()
        """Logins that are user accounts, not organizations (GitHub answers 404 on /orgs/<login>)."""
        self.organization_plan = "team"
        """The plan `getOrganization` reports for every organization."""
        self.public_repositories: set[str] = set()
        """`OWNER/NAME`s that `getRepository` reports as public; every other one is private."""
        self.missing_repositories: set[str] = set()
        """`OWNER/NAME`s the token cannot see: `getRepository` answers empty, as the provider does on a 404."""
        self.missing_branches: set[str] = set()
        """`NAME@BRANCH`es that do not exist: `getBranch` answers with no sha, as the provider does on a 404."""
        self.created: dict[str, dict[str, Any]] = {}
        """Outputs of each resource by id, for answers that depend on other resources."""
        self.branches_created: set[str] = set()
        """`NAME@BRANCH` of each branch a `Branch` resource created in this run."""
        self.pull_requests: dict[str, list[tuple[str, str]]] = {}
        """Each repository's pull requests opened in this run, as (head, base)."""
        self.oci = OciAnswers(self)
        self.resource_answers.update(self.oci.resource_answers())
        self.call_answers.update(self.oci.call_answers())
        self.call_answers.update(
            {
                "github:index/getUser:getUser": _github_user,
                "github:index/getTeam:getTeam": _github_team,
            }
        )

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict]:
        outputs = dict(args.inputs)
        answer = self.resource_answers.get(args.typ)
        if answer is not None:
            outputs.update(answer(args))
        resource_id = outputs.get("id") or (
            _ocid(args.typ.rsplit(":", 1)[-1].lower(), args.name, self.region)
            if args.typ.startswith("oci:")
            else f"{args.name}-id"
        )
        self.created[resource_id] = outputs
        return resource_id, outputs

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict, list]:
        self.calls.append((args.token, dict(args.args)))
        answer = self.call_answers.get(args.token)
        if answer is None:
            raise NotImplementedError(f"the offline engine has no answer for {args.token}; add one to tools/offline.py")
        try:
            return answer(dict(args.args)), []
        except InvokeFailedError as failure:
            return {}, [(failure.property_name, failure.reason)]

    def _repository(self, args: dict[str, Any]) -> dict[str, Any]:
        full = args.get("fullName") or args.get("name")
        if full in self.missing_repositories:
            # The provider logs "Missing GitHub repository", clears the id and returns no error.
            return {"fullName": full, "id": ""}
        name = full.split("/")[-1]
        number = int(hashlib.sha256(full.encode()).hexdigest()[:7], 16)
        return {
            "id": name,
            "name": name,
            "fullName": full if "/" in full else f"offline/{name}",
            "repoId": number,
            "nodeId": f"R_offline{number}",
            "defaultBranch": "main",
            "visibility": "public" if full in self.public_repositories else "private",
            "archived": False,
        }

    def _branch(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /repos/<owner>/<repo>/git/ref/heads/<branch>, as the provider's getBranch reads it."""
        repository, branch = args["repository"], args["branch"]
        if f"{repository}@{branch}" in self.missing_branches:
            # The provider logs "Missing GitHub branch", clears the id and returns no error.
            return {"repository": repository, "branch": branch, "id": ""}
        sha = hashlib.sha1(f"{repository}@{branch}".encode(), usedforsecurity=False).hexdigest()
        return {
            "id": f"{repository}:{branch}",
            "repository": repository,
            "branch": branch,
            "etag": f'W/"{sha[:32]}"',
            "ref": f"refs/heads/{branch}",
            "sha": sha,
        }

    def _new_branch(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """POST /repos/<owner>/<repo>/git/refs from the source branch's head, as the provider creates it."""
        repository, branch = a.inputs["repository"], a.inputs["branch"]
        source = a.inputs.get("sourceBranch") or "main"
        if f"{repository}@{source}" in self.missing_branches:
            raise ValueError(f"GET /repos/{repository}/git/ref/heads/{source}: 404 Not Found (the source branch)")
        key = f"{repository}@{branch}"
        if key in self.branches_created:
            raise ValueError(f"POST /repos/{repository}/git/refs: 422 Reference already exists ({branch})")
        self.branches_created.add(key)
        source_sha = self._branch({"repository": repository, "branch": source})["sha"]
        return {
            "id": f"{repository}:{branch}",
            "sourceBranch": source,
            "ref": f"refs/heads/{branch}",
            "sha": source_sha,
            "sourceSha": source_sha,
            "etag": f'W/"{source_sha[:32]}"',
        }

    def _new_pull_request(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """POST /repos/<owner>/<repo>/pulls: GitHub's 422s for a head that does not exist, a base that
        does not, and a second open pull request between the same branches."""
        repository, head, base = a.inputs["baseRepository"], a.inputs["headRef"], a.inputs["baseRef"]
        if f"{repository}@{head}" not in self.branches_created:
            raise ValueError(f"POST /repos/{repository}/pulls: 422 head {head!r} does not exist")
        if f"{repository}@{base}" in self.missing_branches or head == base:
            raise ValueError(
                f"POST /repos/{repository}/pulls: 422 base {base!r} is not a branch to merge {head!r} into"
            )
        opened = self.pull_requests.setdefault(repository, [])
        if (head, base) in opened:
            raise ValueError(f"POST /repos/{repository}/pulls: 422 A pull request already exists for {head}")
        opened.append((head, base))
        # Registrations run concurrently: a number from the branches, not the order, stays stable.
        number = _number(f"{repository}:{head}->{base}") % 10000 + 1
        return {
            "number": number,
            "state": "open",
            "draft": False,
            "labels": [],
            "openedBy": "offline",
            "baseSha": self._branch({"repository": repository, "branch": base})["sha"],
            "headSha": hashlib.sha1(f"{repository}@{head}#{number}".encode(), usedforsecurity=False).hexdigest(),
            "maintainerCanModify": bool(a.inputs.get("maintainerCanModify")),
        }

    def _organization(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /orgs/<name>, as the provider reads it; a user account is a 404, as on GitHub."""
        login = args["name"]
        if login in self.user_accounts:
            raise InvokeFailedError(f"GET https://api.github.com/orgs/{login}: 404 Not Found []")
        number = int(hashlib.sha256(login.encode()).hexdigest()[:7], 16)
        return {
            "id": str(number),
            "login": login,
            "name": login,
            "orgname": login,
            "nodeId": f"O_offline{number}",
            "description": "",
            "plan": self.organization_plan,
            "summaryOnly": bool(args.get("summaryOnly")),
            "ignoreArchivedRepos": False,
            "repositories": [],
            "members": [],
            "users": [],
        }


_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?")


def _github_user(args: dict[str, Any]) -> dict[str, Any]:
    """getUser: the user's numeric id as a string, as the provider sets it."""
    login = args.get("username") or ""
    if not _LOGIN.fullmatch(login):
        raise ValueError(f"GET /users/{login}: 404 Not Found")
    number = _number(f"user:{login}")
    return {
        "id": str(number),
        "login": login,
        "username": login,
        "name": login,
        "nodeId": f"U_offline{number}",
        "gpgKeys": [],
        "sshKeys": [],
        "siteAdmin": False,
    }


def _github_team(args: dict[str, Any]) -> dict[str, Any]:
    """getTeam (in the provider's organization): the team's numeric id as a string."""
    slug = args.get("slug") or ""
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", slug):
        raise ValueError(f"GET /orgs/<owner>/teams/{slug}: 404 Not Found")
    number = _number(f"team:{slug}")
    return {
        "id": str(number),
        "slug": slug,
        "name": slug,
        "nodeId": f"T_offline{number}",
        "description": "",
        "privacy": "closed",
        "permission": "pull",
        "members": [],
        "repositories": [],
        "repositoriesDetaileds": [],
        "membershipType": "all",
        "summaryOnly": False,
        "resultsPerPage": 100,
        "notificationSetting": "notifications_enabled",
    }


class OciAnswers:
    """What the OCI provider computes, shaped as its API returns it (camelCase keys).

    Addresses come from documentation ranges (198.51.100.0/24 for public IPs), images and
    availability domains look like Frankfurt's, every id is a well-formed OCID.
    """

    IMAGE_DATES = (("2026.04.29-0", "2026-04-30T10:12:44.123Z"), ("2026.05.28-0", "2026-05-29T09:01:02.456Z"))
    """Two image builds per shape, a month apart: the lookup must pick the later one."""
    DOMAINS = (1, 2, 3)
    """The region's availability domains, `<prefix>:<REGION>-AD-<n>`."""

    def __init__(self, mocks: OfflineMocks) -> None:
        self.mocks = mocks
        self.identity = IdentityAnswers(mocks)
        self.shape_domains: dict[str, tuple[int, ...]] = {"VM.Standard.E2.1.Micro": (3,)}
        """Domains that offer a shape, where not all do: the micro shape lives in one domain of the
        home region, as in Oracle's Always Free terms. Tests change this to play other regions."""

    def resource_answers(self) -> dict[str, ResourceAnswer]:
        return {
            "oci:Core/vcn:Vcn": self._vcn,
            "oci:Core/defaultSecurityList:DefaultSecurityList": self._default_security_list,
            "oci:Core/subnet:Subnet": self._subnet,
            "oci:Core/instance:Instance": self._instance,
            "oci:Core/publicIp:PublicIp": self._public_ip,
            "oci:Bastion/bastion:Bastion": self._bastion,
            "oci:Core/volumeBackupPolicy:VolumeBackupPolicy": self._backup_policy,
            "oci:Core/volumeBackupPolicyAssignment:VolumeBackupPolicyAssignment": self._backup_assignment,
            "oci:ObjectStorage/bucket:Bucket": self._bucket,
            "oci:ObjectStorage/storageObject:StorageObject": self._object,
            "oci:ObjectStorage/preauthrequest:Preauthrequest": self._read_request,
            "oci:LoadBalancer/loadBalancer:LoadBalancer": self._load_balancer,
            "oci:LoadBalancer/backendSet:BackendSet": self._backend_set,
            "oci:LoadBalancer/listener:Listener": self._listener,
            "oci:ContainerEngine/containerInstance:ContainerInstance": self._container_instance,
            **self.identity.resource_answers(),
        }

    def call_answers(self) -> dict[str, CallAnswer]:
        return {
            "oci:Core/getImages:getImages": self.images,
            "oci:Identity/getAvailabilityDomains:getAvailabilityDomains": self.availability_domains,
            "oci:Core/getShapes:getShapes": self.shapes,
            "oci:Core/getPrivateIps:getPrivateIps": self.private_ips,
            "oci:ObjectStorage/getNamespace:getNamespace": self.namespace,
            "oci:ContainerInstances/getContainerInstanceShapes:getContainerInstanceShapes": self.container_shapes,
        }

    CONTAINER_SHAPES = ("CI.Standard.A1.Flex", "CI.Standard.E3.Flex", "CI.Standard.E4.Flex")

    def container_shapes(self, args: dict[str, Any]) -> dict[str, Any]:
        """ListContainerInstanceShapes in one availability domain."""
        domain = args.get("availabilityDomain")
        offered = [
            name
            for name in self.CONTAINER_SHAPES
            if domain is None or domain in {self.domain_name(n) for n in self.shape_domains.get(name, self.DOMAINS)}
        ]
        return {
            **{k: v for k, v in args.items() if v is not None},
            "id": "container-instance-shapes",
            "containerInstanceShapeCollections": [{"items": [{"name": name} for name in offered]}],
        }

    def _load_balancer(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """CreateLoadBalancer: a flexible shape within 10..8000 Mbps, subnets and reserved IPs that exist."""
        if a.inputs.get("shape") != "flexible":
            raise ValueError("CreateLoadBalancer: fixed shapes are deprecated; use shape flexible")
        details = a.inputs.get("shapeDetails") or {}
        low, high = details.get("minimumBandwidthInMbps"), details.get("maximumBandwidthInMbps")
        if not all(isinstance(v, (int, float)) and v == int(v) for v in (low, high)) or not 10 <= low <= high <= 8000:
            raise ValueError("CreateLoadBalancer: shapeDetails needs 10 <= minimum <= maximum <= 8000 Mbps")
        for subnet in a.inputs.get("subnetIds") or []:
            if "cidrBlock" not in self.mocks.created.get(subnet, {}):
                raise ValueError(f"CreateLoadBalancer: subnetIds names no subnet: {subnet}")
        addresses = []
        for reserved in a.inputs.get("reservedIps") or []:
            ip = self.mocks.created.get(reserved.get("id"), {})
            if ip.get("lifetime") != "RESERVED":
                raise ValueError("CreateLoadBalancer: reservedIps[].id names no reserved public IP")
            addresses.append({"ipAddress": ip["ipAddress"], "isPublic": True, "reservedIp": [reserved]})
        return {
            "state": "ACTIVE",
            "ipAddressDetails": addresses,
            "ipAddresses": [address["ipAddress"] for address in addresses],
            "timeCreated": "2026-06-01T08:00:00.000Z",
        }

    def _backend_set(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        balancer = self.mocks.created.get(a.inputs.get("loadBalancerId"), {})
        if balancer.get("shape") != "flexible":
            raise ValueError("CreateBackendSet: loadBalancerId names no load balancer")
        checker = a.inputs.get("healthChecker") or {}
        if checker.get("protocol") not in ("HTTP", "TCP"):
            raise ValueError("CreateBackendSet: healthChecker.protocol must be HTTP or TCP")
        return {"backends": [], "state": "SUCCEEDED"}

    def _listener(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        balancer_id = a.inputs.get("loadBalancerId")
        sets = [
            o.get("name")
            for o in list(self.mocks.created.values())
            if o.get("loadBalancerId") == balancer_id and "healthChecker" in o
        ]
        if a.inputs.get("defaultBackendSetName") not in sets:
            raise ValueError("CreateListener: defaultBackendSetName names no backend set of the load balancer")
        return {"state": "SUCCEEDED"}

    def _container_instance(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """CreateContainerInstance: a shape Container Instances offers, a VNIC in a subnet that exists."""
        if a.inputs.get("shape") not in self.CONTAINER_SHAPES:
            raise ValueError(f"CreateContainerInstance: shape {a.inputs.get('shape')!r} is not a container shape")
        [vnic] = a.inputs.get("vnics") or [{}]
        if "cidrBlock" not in self.mocks.created.get(vnic.get("subnetId"), {}):
            raise ValueError("CreateContainerInstance: vnics[0].subnetId names no subnet")
        declared = {v.get("name") for v in _unwrap(a.inputs.get("volumes")) or []}
        for container in a.inputs.get("containers") or []:
            for mount in container.get("volumeMounts") or []:
                if mount.get("volumeName") not in declared:
                    raise ValueError(f"CreateContainerInstance: volume {mount.get('volumeName')!r} is not declared")
        return {
            "state": "ACTIVE",
            "containerCount": len(a.inputs.get("containers") or []),
            "vnics": [{**vnic, "vnicId": self._ocid("vnic", a.name)}],
            "timeCreated": "2026-06-01T08:00:00.000Z",
        }

    def _ocid(self, kind: str, name: str) -> str:
        return _ocid(kind, name, self.mocks.region)

    def _backup_policy(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """CreateVolumeBackupPolicy: each schedule's values among those the OCI SDK's model allows."""
        from oci.core.models import VolumeBackupSchedule

        for schedule in a.inputs.get("schedules") or []:
            for key, prefix in (
                ("backupType", "BACKUP_TYPE_"),
                ("period", "PERIOD_"),
                ("dayOfWeek", "DAY_OF_WEEK_"),
                ("offsetType", "OFFSET_TYPE_"),
                ("timeZone", "TIME_ZONE_"),
            ):
                allowed = {v for k, v in vars(VolumeBackupSchedule).items() if k.startswith(prefix)}
                if key in schedule and schedule[key] not in allowed:
                    raise ValueError(f"CreateVolumeBackupPolicy: schedules[].{key} {schedule[key]!r} not in {allowed}")
            if not 0 <= int(schedule.get("hourOfDay", 0)) <= 23 or int(schedule.get("retentionSeconds", 0)) <= 0:
                raise ValueError("CreateVolumeBackupPolicy: hourOfDay 0-23 and a positive retentionSeconds")
        return {"destinationRegion": None, "timeCreated": "2026-06-01T08:00:00.000Z"}

    def _backup_assignment(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        asset, policy = a.inputs.get("assetId"), a.inputs.get("policyId")
        if not str(asset).startswith("ocid1.bootvolume.") and not str(asset).startswith("ocid1.volume."):
            raise ValueError(f"CreateVolumeBackupPolicyAssignment: {asset!r} is no volume")
        if policy not in self.mocks.created:
            raise ValueError(f"CreateVolumeBackupPolicyAssignment: no policy {policy!r}")
        return {"timeCreated": "2026-06-01T08:00:00.000Z"}

    NAMESPACE = "offlinetenancy"
    """The tenancy's Object Storage namespace (a tenancy has one)."""

    def namespace(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"namespace": self.NAMESPACE, "id": self.NAMESPACE, **args}

    def _bucket(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """CreateBucket: its name unique in the namespace; the provider's id is `n/<ns>/b/<name>`."""
        namespace, name = a.inputs.get("namespace"), a.inputs.get("name")
        if namespace != self.NAMESPACE:
            raise ValueError(f"CreateBucket: namespace {namespace!r} is not the tenancy's ({self.NAMESPACE})")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,256}", name or ""):
            raise ValueError(f"CreateBucket: {name!r} is not a bucket name")
        if any(o.get("bucketId") and o.get("name") == name for o in list(self.mocks.created.values())):
            raise ValueError(f"CreateBucket: 409 BucketAlreadyExists ({name})")
        return {"id": f"n/{namespace}/b/{name}", "bucketId": self._ocid("bucket", a.name), "etag": "offline"}

    def _object(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        bucket, name = a.inputs.get("bucket"), a.inputs.get("object")
        if not any(o.get("bucketId") and o.get("name") == bucket for o in list(self.mocks.created.values())):
            raise ValueError(f"PutObject: 404 BucketNotFound ({bucket})")
        content = str(a.inputs.get("content") or "").encode()
        md5 = base64.b64encode(hashlib.md5(content, usedforsecurity=False).digest()).decode()
        return {"id": f"n/{self.NAMESPACE}/b/{bucket}/o/{name}", "contentMd5": md5, "contentLength": str(len(content))}

    def _read_request(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """CreatePreauthenticatedRequest: the path that, after the region's endpoint, reads the object."""
        bucket, name = a.inputs.get("bucket"), a.inputs.get("objectName")
        if f"n/{self.NAMESPACE}/b/{bucket}/o/{name}" not in self.mocks.created:
            raise ValueError(f"CreatePreauthenticatedRequest: 404 ObjectNotFound ({bucket}/{name})")
        token = hashlib.sha256(f"offline-par:{a.name}".encode()).hexdigest()
        return {
            "id": f"n/{self.NAMESPACE}/b/{bucket}/p/{token[:16]}",
            "accessUri": f"/p/{token}/n/{self.NAMESPACE}/b/{bucket}/o/{name}",
            "timeCreated": "2026-05-01T00:00:00Z",
        }

    def _vcn(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        return {
            "state": "AVAILABLE",
            "defaultSecurityListId": self._ocid("securitylist", a.name + "-default"),
            "defaultRouteTableId": self._ocid("routetable", a.name + "-default"),
            "defaultDhcpOptionsId": self._ocid("dhcpoptions", a.name + "-default"),
            "vcnDomainName": f"{a.inputs.get('dnsLabel', 'vcn')}.oraclevcn.com",
        }

    def _default_security_list(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """The provider adopts the list it is given: its id is that OCID, which must be a VCN's default list."""
        managed = a.inputs.get("manageDefaultResourceId")
        vcns = [o for o in list(self.mocks.created.values()) if o.get("defaultSecurityListId") == managed]
        if len(vcns) != 1:
            raise ValueError(f"UpdateSecurityList: {managed!r} is not the default security list of a VCN")
        return {
            "id": managed,
            "vcnId": next(i for i, o in list(self.mocks.created.items()) if o is vcns[0]),
            "compartmentId": vcns[0].get("compartmentId", ""),
            "state": "AVAILABLE",
            "timeCreated": "2026-06-01T08:00:00.000Z",
        }

    def _subnet(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        network = ipaddress.ip_network(a.inputs["cidrBlock"])
        return {
            "state": "AVAILABLE",
            "virtualRouterIp": str(network.network_address + 1),
            "subnetDomainName": f"{a.inputs.get('dnsLabel', 'subnet')}.vcn.oraclevcn.com",
        }

    def _instance(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        vnic = a.inputs.get("createVnicDetails") or {}
        subnet = self.mocks.created.get(vnic.get("subnetId"), {})
        if "cidrBlock" not in subnet:
            raise ValueError("LaunchInstance: createVnicDetails.subnetId names no subnet")
        # OCI keeps a subnet's first two addresses (network, gateway): the first VNIC gets .2.
        private_ip = str(ipaddress.ip_network(subnet["cidrBlock"]).network_address + 2)
        public_ip = "" if vnic.get("assignPublicIp") == "false" else f"198.51.100.{_number(a.name) % 200 + 20}"
        return {
            "state": "RUNNING",
            "privateIp": private_ip,
            "publicIp": public_ip,
            "region": self.mocks.region,
            "bootVolumeId": self._ocid("bootvolume", a.name),
            "faultDomain": "FAULT-DOMAIN-1",
            "launchMode": "PARAVIRTUALIZED",
            "timeCreated": "2026-06-01T08:00:00.000Z",
        }

    def _bastion(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """CreateBastion: its private endpoint takes an address of the target subnet."""
        subnet = self.mocks.created.get(a.inputs.get("targetSubnetId"), {})
        if "cidrBlock" not in subnet:
            raise ValueError("CreateBastion: targetSubnetId names no subnet")
        if str(a.inputs.get("bastionType", "")).upper() != "STANDARD":
            raise ValueError("CreateBastion: bastionType must be STANDARD")
        allowed = a.inputs.get("clientCidrBlockAllowLists") or []
        if not 1 <= len(allowed) <= 20:
            raise ValueError("CreateBastion: clientCidrBlockAllowList takes 1 to 20 CIDR blocks")
        if not 1800 <= a.inputs.get("maxSessionTtlInSeconds", 10800) <= 10800:
            raise ValueError("CreateBastion: maxSessionTtlInSeconds must be from 1800 to 10800")
        network = ipaddress.ip_network(subnet["cidrBlock"])
        # OCI keeps the first two and the last address; the VM's VNIC takes .2 (see _instance),
        # the endpoint the next one.
        endpoint = network.network_address + 3
        if endpoint >= network.broadcast_address:
            raise ValueError(f"CreateBastion: subnet {network} has no free address for the private endpoint")
        return {
            "state": "ACTIVE",
            "privateEndpointIpAddress": str(endpoint),
            "targetVcnId": subnet.get("vcnId", ""),
            "maxSessionTtlInSeconds": a.inputs.get("maxSessionTtlInSeconds", 10800),
            "dnsProxyStatus": "DISABLED",
            "timeCreated": "2026-06-01T08:00:00.000Z",
        }

    def _public_ip(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        if a.inputs.get("lifetime") not in ("RESERVED", "EPHEMERAL"):
            raise ValueError("CreatePublicIp: lifetime must be RESERVED or EPHEMERAL")
        assigned = a.inputs.get("privateIpId")
        return {
            "ipAddress": f"198.51.100.{_number(a.name) % 200 + 20}",
            "scope": "REGION",
            "state": "ASSIGNED" if assigned else "AVAILABLE",
            "assignedEntityId": assigned or "",
            "assignedEntityType": "PRIVATE_IP" if assigned else "",
            "timeCreated": "2026-06-01T08:00:00.000Z",
        }

    def images(self, args: dict[str, Any]) -> dict[str, Any]:
        """Platform images for the shape; Ampere shapes get aarch64 builds."""
        system = args.get("operatingSystem") or "Canonical Ubuntu"
        version = args.get("operatingSystemVersion") or "24.04"
        shape = args.get("shape") or ""
        arch = "aarch64-" if ".A1." in shape or ".A2." in shape else ""
        prefix = system.replace(" ", "-")
        images = []
        for build, created in self.IMAGE_DATES:
            name = f"{prefix}-{version}-{arch}{build}"
            images.append(_image(self._ocid("image", name), name, system, version, created, args))
        descending = (args.get("sortOrder") or "DESC") == "DESC"
        images.sort(key=lambda i: i["timeCreated"], reverse=descending)
        return {**{k: v for k, v in args.items() if v is not None}, "id": "images", "images": images}

    def availability_domains(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "compartmentId": args.get("compartmentId"),
            "id": "availability-domains",
            "availabilityDomains": [
                {
                    "compartmentId": args.get("compartmentId"),
                    "id": self._ocid("ad", str(n)),
                    "name": self.domain_name(n),
                }
                for n in self.DOMAINS
            ],
        }

    def domain_name(self, n: int) -> str:
        return f"kIdk:{self.mocks.region.upper()}-AD-{n}"

    def shapes(self, args: dict[str, Any]) -> dict[str, Any]:
        """ListShapes in one availability domain, filtered by name: an empty list where it is not offered."""
        wanted = args.get("shape")
        domain = args.get("availabilityDomain")
        names = [wanted] if wanted else ["VM.Standard.A1.Flex", "VM.Standard.E2.1.Micro"]
        offered = [
            name
            for name in names
            if domain is None or domain in {self.domain_name(n) for n in self.shape_domains.get(name, self.DOMAINS)}
        ]
        return {
            **{k: v for k, v in args.items() if v is not None},
            "id": "shapes",
            "shapes": [{"name": name, "isFlexible": name.endswith(".Flex")} for name in offered],
        }

    def private_ips(self, args: dict[str, Any]) -> dict[str, Any]:
        """Private IPs by address and subnet: the primary IP of the instance that holds it."""
        found = []
        for resource_id, outputs in list(self.mocks.created.items()):
            vnic = outputs.get("createVnicDetails") or {}
            if (
                outputs.get("privateIp") == args.get("ipAddress")
                and vnic.get("subnetId") == args.get("subnetId")
                and resource_id.startswith("ocid1.instance.")
            ):
                found.append(
                    {
                        "availabilityDomain": outputs.get("availabilityDomain", ""),
                        "cidrPrefixLength": 0,
                        "compartmentId": outputs.get("compartmentId", ""),
                        "definedTags": {},
                        "displayName": outputs.get("privateIp", ""),
                        "freeformTags": {},
                        "hostnameLabel": vnic.get("hostnameLabel", ""),
                        "id": self._ocid("privateip", resource_id),
                        "ipAddress": outputs["privateIp"],
                        "ipState": "ASSIGNED",
                        "ipv4subnetCidrAtCreation": "",
                        "isPrimary": True,
                        "isReserved": False,
                        "lifetime": "EPHEMERAL",
                        "routeTableId": "",
                        "subnetId": vnic["subnetId"],
                        "timeCreated": outputs.get("timeCreated", ""),
                        "vlanId": "",
                        "vnicId": self._ocid("vnic", resource_id),
                    }
                )
        return {**{k: v for k, v in args.items() if v is not None}, "id": "private-ips", "privateIps": found}


class IdentityAnswers:
    """OCI IAM (users, groups, API keys, policies) and an identity domain's SCIM resources (users,
    groups, applications, identity propagation trusts), with the refusals the services give."""

    TENANCY = "ocid1.tenancy.oc1..offline" + hashlib.sha256(b"tenancy").hexdigest()[:24]
    """The tenancy the provider's credential belongs to: users and groups land there."""
    DOMAIN_URL = re.compile(r"https://idcs-[0-9a-z]+\.identity\.[a-z0-9.-]+\.[a-z]+(:443)?")
    MAX_POLICY_STATEMENTS = 50
    """OCI's limit on the statements of one policy."""

    def __init__(self, mocks: OfflineMocks) -> None:
        self.mocks = mocks
        self.primary_email_required = True
        """The Default identity domain's "Primary email address required" setting (on by default)."""
        self.scim: dict[str, dict[str, str]] = {"user": {}, "app": {}, "trust": {}}
        """What each domain holds, by kind: user ids, application client ids, trust issuers (each to its domain)."""

    def resource_answers(self) -> dict[str, ResourceAnswer]:
        return {
            "oci:Identity/user:User": self._user,
            "oci:Identity/group:Group": self._group,
            "oci:Identity/userGroupMembership:UserGroupMembership": self._membership,
            "oci:Identity/userCapabilitiesManagement:UserCapabilitiesManagement": self._capabilities,
            "oci:Identity/apiKey:ApiKey": self._api_key,
            "oci:Identity/policy:Policy": self._policy,
            "oci:Identity/domainsUser:DomainsUser": self._domains_user,
            "oci:Identity/domainsGroup:DomainsGroup": self._domains_group,
            "oci:Identity/domainsApp:DomainsApp": self._domains_app,
            "oci:Identity/domainsIdentityPropagationTrust:DomainsIdentityPropagationTrust": self._trust,
        }

    def _created(self, resource_id: Any, prefix: str) -> dict[str, Any]:
        if (
            not isinstance(resource_id, str)
            or not resource_id.startswith(prefix)
            or resource_id not in self.mocks.created
        ):
            raise ValueError(f"{resource_id!r} names no {prefix.rstrip('.')} made in this run")
        return self.mocks.created[resource_id]

    def _tenancy_scoped(self, a: pulumi_mocks.MockResourceArgs, kind: str) -> dict[str, Any]:
        """Users and groups: the tenancy, from the provider's credential when the program gives none."""
        compartment = a.inputs.get("compartmentId") or self.TENANCY
        if not compartment.startswith("ocid1.tenancy."):
            raise ValueError(f"Create{kind}: 400 compartmentId must be the tenancy's OCID")
        if not a.inputs.get("description"):
            raise ValueError(f"Create{kind}: 400 description is required")
        return {
            "id": _ocid(kind.lower(), a.name, ""),
            "compartmentId": compartment,
            "state": "ACTIVE",
            "timeCreated": "2026-06-01T08:00:00.000Z",
        }

    def _user(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        if self.primary_email_required and not a.inputs.get("email"):
            raise ValueError("CreateUser: 400 IdcsConversionError: The primary email must be specified.")
        return {**self._tenancy_scoped(a, "User"), "emailVerified": False, "isMfaActivated": False}

    def _group(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        return self._tenancy_scoped(a, "Group")

    def _membership(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        user = self._created(a.inputs.get("userId"), "ocid1.user.")
        self._created(a.inputs.get("groupId"), "ocid1.group.")
        return {"compartmentId": user["compartmentId"], "state": "ACTIVE", "inactiveState": "0"}

    def _capabilities(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        self._created(a.inputs.get("userId"), "ocid1.user.")
        return {"state": "ACTIVE"}

    def _api_key(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """UploadApiKey: an RSA public key in PEM, 2048 bits or more; OCI computes its fingerprint."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        user = self._created(a.inputs.get("userId"), "ocid1.user.")
        try:
            public = serialization.load_pem_public_key(str(a.inputs.get("keyValue", "")).encode())
        except ValueError:
            raise ValueError("UploadApiKey: 400 the key is not a PEM public key") from None
        if not isinstance(public, rsa.RSAPublicKey) or public.key_size < 2048:
            raise ValueError("UploadApiKey: 400 the key must be RSA, 2048 bits or more")
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        fingerprint = _md5_fingerprint(der)
        user_id = a.inputs["userId"]
        return {
            "id": f"{user_id}/{fingerprint}",
            "keyId": f"{user['compartmentId']}/{user_id}/{fingerprint}",
            "fingerprint": fingerprint,
            "state": "ACTIVE",
            "timeCreated": "2026-06-01T08:00:00.000Z",
        }

    def _policy(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        statements = a.inputs.get("statements") or []
        if not 1 <= len(statements) <= self.MAX_POLICY_STATEMENTS:
            raise ValueError(f"CreatePolicy: 400 a policy holds 1 to {self.MAX_POLICY_STATEMENTS} statements")
        for statement in statements:
            if not re.match(r"(?i)(allow|endorse|admit|define) ", statement):
                raise ValueError(f"CreatePolicy: 400 InvalidParameter: {statement!r} is not a policy statement")
        if not a.inputs.get("name") or not a.inputs.get("description"):
            raise ValueError("CreatePolicy: 400 name and description are required")
        return {"id": _ocid("policy", a.name, ""), "state": "ACTIVE", "timeCreated": "2026-06-01T08:00:00.000Z"}

    # --- an identity domain's SCIM resources ---

    def _domain(self, a: pulumi_mocks.MockResourceArgs, schema: str) -> dict[str, Any]:
        url = a.inputs.get("idcsEndpoint", "")
        if not self.DOMAIN_URL.fullmatch(url):
            raise ValueError(f"{a.typ}: idcsEndpoint {url!r} is not an identity domain URL")
        if schema not in (a.inputs.get("schemas") or []):
            raise ValueError(f"{a.typ}: 400 schemas must include {schema}")
        scim_id = hashlib.sha256(f"scim:{a.name}".encode()).hexdigest()[:32]
        return {"id": scim_id, "idcsEndpoint": url, "domainOcid": _ocid("domain", url, "")}

    def _domains_user(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        answer = self._domain(a, "urn:ietf:params:scim:schemas:core:2.0:User")
        if not a.inputs.get("userName"):
            raise ValueError("POST /admin/v1/Users: 400 userName is required")
        extension = a.inputs.get("urnietfparamsscimschemasoracleidcsextensionuserUser") or {}
        if extension and "urn:ietf:params:scim:schemas:oracle:idcs:extension:user:User" not in a.inputs["schemas"]:
            raise ValueError("POST /admin/v1/Users: 400 the user extension needs its schema in schemas")
        if not extension.get("serviceUser") and self.primary_email_required and not a.inputs.get("emails"):
            raise ValueError("POST /admin/v1/Users: 400 The primary email must be specified.")
        self.scim["user"][answer["id"]] = a.inputs["idcsEndpoint"]
        return {**answer, "ocid": _ocid("user", a.name, ""), "active": True}

    def _domains_group(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        answer = self._domain(a, "urn:ietf:params:scim:schemas:core:2.0:Group")
        users = self.scim["user"]
        for member in a.inputs.get("members") or []:
            if member.get("type") != "User" or users.get(member.get("value")) != a.inputs["idcsEndpoint"]:
                raise ValueError(f"POST /admin/v1/Groups: 400 member {member!r} is no user of the domain")
        return {**answer, "ocid": _ocid("group", a.name, "")}

    def _domains_app(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        answer = self._domain(a, "urn:ietf:params:scim:schemas:oracle:idcs:App")
        if (a.inputs.get("basedOnTemplate") or {}).get("value") != "CustomWebAppTemplateId":
            raise ValueError("POST /admin/v1/Apps: 400 basedOnTemplate names no template this engine knows")
        if a.inputs.get("clientType") == "confidential" and not (
            a.inputs.get("isOauthClient") and a.inputs.get("allowedGrants")
        ):
            raise ValueError("POST /admin/v1/Apps: 400 a confidential client needs isOAuthClient and allowedGrants")
        client_id = hashlib.sha256(f"client:{a.name}".encode()).hexdigest()[:32]
        secret = "idcscs-" + hashlib.sha256(f"offline-secret:{a.name}".encode()).hexdigest()[:36]
        name = a.inputs.get("name") or client_id
        self.scim["app"][name] = a.inputs["idcsEndpoint"]
        return {**answer, "name": name, "clientSecret": secret}

    def _trust(self, a: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """POST /admin/v1/IdentityPropagationTrusts: one trust per issuer in a domain."""
        answer = self._domain(a, "urn:ietf:params:scim:schemas:oracle:idcs:IdentityPropagationTrust")
        url, issuer = a.inputs["idcsEndpoint"], a.inputs.get("issuer")
        if a.inputs.get("type") not in ("JWT", "SAML", "SPNEGO", "AWS_CREDENTIAL", "X509"):
            raise ValueError(f"{a.typ}: 400 type {a.inputs.get('type')!r} is not a token type")
        if not a.inputs.get("name"):
            raise ValueError(f"{a.typ}: 400 name is required")
        if self.scim["trust"].get(f"{url} {issuer}"):
            raise ValueError(f"{a.typ}: 409 a trust for issuer {issuer} already exists in {url}")
        clients = a.inputs.get("oauthClients") or []
        if not clients or any(self.scim["app"].get(c) != url for c in clients):
            raise ValueError(f"{a.typ}: 400 oauthClients must name client ids of the domain's applications")
        rules = a.inputs.get("impersonationServiceUsers") or []
        if a.inputs.get("allowImpersonation") and not rules:
            raise ValueError(f"{a.typ}: 400 impersonation is allowed but no service user is named")
        for rule in rules:
            if self.scim["user"].get(rule.get("value")) != url or not re.fullmatch(r"\S+ eq \S+", rule.get("rule", "")):
                raise ValueError(f"{a.typ}: 400 impersonation rule {rule!r} is malformed or names no user")
        self.scim["trust"][f"{url} {issuer}"] = answer["id"]
        return answer


def _image(ocid: str, name: str, system: str, version: str, created: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "agentFeatures": [],
        "baseImageId": "",
        "billableSizeInGbs": "0",
        "compartmentId": "",
        "createImageAllowed": True,
        "definedTags": {},
        "displayName": name,
        "freeformTags": {},
        "id": ocid,
        "imageSourceDetails": [],
        "instanceId": "",
        "launchMode": "PARAVIRTUALIZED",
        "launchOptions": [
            {
                "bootVolumeType": "PARAVIRTUALIZED",
                "firmware": "UEFI_64",
                "isConsistentVolumeNamingEnabled": True,
                "isPvEncryptionInTransitEnabled": True,
                "networkType": "PARAVIRTUALIZED",
                "remoteDataVolumeType": "PARAVIRTUALIZED",
            }
        ],
        "listingType": "NONE",
        "operatingSystem": system,
        "operatingSystemVersion": version,
        "sizeInMbs": "47694",
        "state": args.get("state") or "AVAILABLE",
        "timeCreated": created,
    }


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, plus what a plan needs: parents and options of each resource.

    Like the engine, it marks `additional_secret_outputs` as secret in what it returns.
    """

    def __init__(self, mocks: OfflineMocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []
        self.worker_loops: set[asyncio.AbstractEventLoop] = set()
        """Event loops the SDK's monitor made in executor threads; closed after the run."""

    def _note_loop(self) -> None:
        if threading.current_thread() is threading.main_thread():
            return
        with contextlib.suppress(RuntimeError):  # this thread made no loop
            self.worker_loops.add(asyncio.get_event_loop())

    def Invoke(self, request):  # noqa: N802 - the gRPC method name
        try:
            return super().Invoke(request)
        finally:
            self._note_loop()

    def RegisterResource(self, request):  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        self._note_loop()
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
        state = self.resources[response.urn].state
        secret_outputs = set(request.additionalSecretOutputs)
        if secret_outputs:
            state = {k: rpc.wrap_rpc_secret(v) if k in secret_outputs else v for k, v in state.items()}
            response.object.CopyFrom(_serialize(state))
        self.registered.append(
            Registered(
                urn=response.urn,
                id=response.id or None,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                custom=request.custom,
                inputs=inputs,
                outputs=state,
                options={
                    "protect": request.protect,
                    "ignoreChanges": list(request.ignoreChanges),
                    "replaceOnChanges": list(request.replaceOnChanges),
                    "deleteBeforeReplace": request.deleteBeforeReplace,
                    "retainOnDelete": request.retainOnDelete,
                    "additionalSecretOutputs": sorted(secret_outputs),
                    "dependsOn": sorted(request.dependencies),
                },
            )
        )
        return response


class _Warnings(logging.Handler):
    """The engine's log of this run: warnings kept for the plan, nothing printed."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []
        self.logger = logging.getLogger(f"dreamscape-offline-{id(self)}")
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _serialize(state: dict[str, Any]):
    from pulumi.runtime.sync_await import _sync_await

    return _sync_await(rpc.serialize_properties(state, {}))


# --- config --------------------------------------------------------------------------------


def stack_config(stack: str, project_dir: Path = ROOT) -> tuple[dict[str, str], list[str]]:
    """The config map the CLI would hand the program, and its secret keys.

    Scalars as text, objects and lists as JSON, exactly as `pulumi up` passes them.
    A `secure:` value cannot be decrypted here: it becomes a placeholder, marked secret.
    """
    project = settings_module.read_project_config(project_dir)
    values: dict[str, Any] = {f"{settings_module.PROJECT}:{k}": v for k, v in project.items()}
    for key, value in settings_module.read_stack_file(stack, project_dir).items():
        full = key if ":" in key else f"{settings_module.PROJECT}:{key}"
        values[full] = value
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[key] = PLACEHOLDER_PREFIX + key.split(":", 1)[1]
            secret_keys.append(key)
        elif isinstance(value, dict) and any(_is_secure(v) for v in value.values()):
            # `pulumi config set --secret --path 'key.NAME'`: the whole key is secret.
            name = key.split(":", 1)[1]
            placeholders = {k: PLACEHOLDER_PREFIX + f"{name}.{k}" if _is_secure(v) else v for k, v in value.items()}
            config[key] = json.dumps(placeholders)
            secret_keys.append(key)
        elif isinstance(value, str):
            config[key] = value
        else:
            config[key] = json.dumps(value)
    return config, secret_keys


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


# --- running -------------------------------------------------------------------------------


def run(
    stack: str,
    project_dir: Path = ROOT,
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    mocks: OfflineMocks | None = None,
) -> Plan:
    """Run `__main__.py` for `stack` and return what it registered and exported.

    `config` replaces the stack's merged config (tests pass generated ones). Each run gets a
    fresh context, so runs in one process do not see each other's resources.
    """
    if config is None:
        config, secret_keys = stack_config(stack, project_dir)
    if mocks is None:
        mocks = OfflineMocks(region=config.get("oci:region") or "eu-frankfurt-1")
    return contextvars.Context().run(_run, stack, project_dir, config, secret_keys or [], mocks)


def run_program(
    program: Callable[[], None],
    stack: str = "test",
    mocks: OfflineMocks | None = None,
    config: dict[str, str] | None = None,
) -> Plan:
    """Run `program` (a function that builds resources, e.g. one component) instead of `__main__.py`.

    For component tests that build a component directly from its typed args.
    """
    return contextvars.Context().run(_run, stack, ROOT, config or {}, [], mocks or OfflineMocks(), program)


def _run(
    stack: str,
    project_dir: Path,
    config: dict[str, str],
    secret_keys: list[str],
    mocks: OfflineMocks,
    program: Callable[[], None] | None = None,
) -> Plan:
    # The SDK's mock monitor leaves an event loop in each executor thread, whose finalizers
    # fail noisily at interpreter exit. Each run gets its own executor; its threads are ended
    # and their loops closed when the run is over.
    executor = ThreadPoolExecutor(thread_name_prefix="offline-engine")
    loop = _ensure_event_loop()
    loop.set_default_executor(executor)
    monitor = RecordingMonitor(mocks)
    try:
        return _run_with(monitor, stack, project_dir, config, secret_keys, mocks, program)
    finally:
        # A run that failed stops at its first failed registration and leaves the others'
        # tasks on the loop, which the next run in this process shares: end them here.
        leftover = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in leftover:
            task.cancel()
        if leftover:
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        executor.shutdown(wait=True)
        for loop in monitor.worker_loops:
            if not loop.is_closed():
                loop.close()


def _run_with(
    monitor: RecordingMonitor,
    stack: str,
    project_dir: Path,
    config: dict[str, str],
    secret_keys: list[str],
    mocks: OfflineMocks,
    program: Callable[[], None] | None,
) -> Plan:
    from pulumi.runtime.stack import wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    warnings = _Warnings()
    pulumi.runtime.set_mocks(
        mocks, project=settings_module.PROJECT, stack=stack, preview=False, monitor=monitor, logger=warnings.logger
    )
    # The SDK's mock settings leave the set of pending outputs to a process-wide default:
    # give each run its own, or a run that failed hands its failed outputs to the next one.
    pulumi_settings.SETTINGS.outputs = set()
    pulumi.runtime.set_all_config(config, secret_keys=secret_keys)
    if program is None:
        runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")
    else:
        program()
    _sync_await(wait_for_rpcs())
    plan = Plan(stack=stack, resources=monitor.registered, warnings=warnings.messages)
    root = pulumi.runtime.get_root_resource()
    for name, value in (root.outputs if root is not None else {}).items():
        output = pulumi.Output.from_input(value)
        plan.outputs[name] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            plan.secret_outputs.add(name)
    return plan
