"""The deploy to an environment on OCI Container Instances: a new instance per release, blue/green
behind the environment's load balancer.

    python3 -m ci.deploy          (ci.deploy hands over when DEPLOY_OCI says containerInstances)

Inputs (environment): DEPLOY_OCI (the stack's `DEPLOY_OCI_<ENV>`: the deploy identity, where a
release's instance goes, the load balancer's backend sets and each component's container),
OCI_DEPLOY_CREDENTIAL and APP_SECRETS (deploy secrets), DEPLOY_IMAGES (`<component>=<image>`
pairs), optionally DEPLOY_REGISTRY, DEPLOY_REGISTRY_USER and DEPLOY_REGISTRY_TOKEN (the job's
own short-lived token, which the instance pulls this run's images with). The deploy settings
(health wait) come from the data file (ci/config.py).

One deploy, in order; every step must succeed before the next:

1. Read the live release: the environment's ACTIVE instance whose address is a backend of the
   load balancer. Its containers' images are the images of every component this run does not
   bring (a component that never ran and is not in the run has no image: refused).
2. Create the new instance (one container per component, by digest, with the component's
   variables; its secrets as files of a config-file volume at /run/secrets; an HTTP health check
   of its path and port; a VNIC in the environment's subnet and containers' NSG, searching the
   subnet's DNS domain so accessories resolve by name). Wait until it is ACTIVE and each
   container's health check HEALTHY.
3. Add it to each backend set as a *backup* backend: the load balancer health-checks it, and it
   takes no traffic while the live one is healthy. Wait until the load balancer reports it OK.
4. Move the traffic: the new backend becomes a normal one and the old one drains; then the old
   backend is deleted, then the old instance.

A new instance that fails (FAILED, a container unhealthy, the load balancer never reporting it
OK within the health wait) is taken out again, backends first, then the instance: the traffic
never left the old one (exit ROLLED_BACK). Stopped from outside before step 4 (a cancelled
job's SIGTERM), the same clean-up runs with signals held back. Instances a killed runner left
behind (not live, not this run's) are deleted at the next deploy's end. One deploy at a time
per environment: the job's concurrency group.

Calls are signed as ci/oci.py signs them, with the same identity modes. No secret value is
ever printed: the summary names secrets, never their values. Container instances keep their
variables and config-file contents with the instance (whoever may read container instances in
the compartment can read them): docs/environment.md compares this with the VM.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ci import config, oci, runner
from components import rules
from components.environment import deploy_program

TARGET = "containerInstances"
CONTAINERS_API = "20210415"
LOAD_BALANCER_API = "20170115"
CORE_API = "20160918"
API_OVERRIDE = "DEPLOY_OCI_API"
"""One base URL for every OCI API the deploy calls; only tests set it (a local stand-in)."""

CREATE_WAIT_SECONDS = 600
"""How long a new instance may take to become ACTIVE: placement, VNIC, and pulling every image."""
SWITCH_SECONDS = 300
"""What the load balancer changes of one deploy may take together (each a work request of
seconds), the waits for the new backend's health between them left out."""
POLL_SECONDS = 5
MAX_PAGES = 20
SECRETS_DIRECTORY = "/run/secrets"
TAG_ENVIRONMENT = "environment"
TAG_RELEASE = "dreamscape-release"
"""Freeform tags of a release's instance: its environment, and the run that made it."""
HEALTH = {"intervalInSeconds": 10, "timeoutInSeconds": 5, "failureThreshold": 3, "initialDelayInSeconds": 10}

DEPLOYED = deploy_program.EXIT["DEPLOYED"]
FAILED = deploy_program.EXIT["ERROR"]
BAD_INPUT = deploy_program.EXIT["BAD_INPUT"]
ROLLED_BACK = deploy_program.EXIT["ROLLED_BACK"]
ROLLBACK_FAILED = deploy_program.EXIT["ROLLBACK_FAILED"]
OCI_REFUSED = 10
"""OCI refused the credential or a call before anything changed."""

_OCID = re.compile(r"ocid1\.[a-z0-9]+\.[a-z0-9-]+\.[a-z0-9-]*\.[a-z0-9._-]{1,255}", re.ASCII)
_SHAPE = re.compile(r"CI\.[A-Za-z0-9.]{1,64}", re.ASCII)
_DOMAIN = re.compile(r"[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63}){1,6}", re.ASCII)
_AD = re.compile(r"[A-Za-z0-9]{1,8}:[A-Z0-9-]{1,64}", re.ASCII)
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}", re.ASCII)
_PATH = re.compile(r"/[A-Za-z0-9._~/-]*", re.ASCII)
_LOOPBACK = re.compile(r"http://127\.0\.0\.1:[0-9]{1,5}", re.ASCII)
"""The only base DEPLOY_OCI_API may name: the signed bodies carry the secrets and the token."""


class InputError(Exception):
    """An input the deploy does not start with: exit BAD_INPUT, nothing called."""


class UnhealthyError(Exception):
    """The new release failed; the message says how (no secret in it)."""


@dataclass(frozen=True)
class Container:
    name: str
    port: int
    health_path: str
    env: Mapping[str, str]
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class Platform:
    """DEPLOY_OCI of a container instances environment, checked."""

    access: oci.Access
    environment: str
    compartment_id: str
    availability_domain: str
    subnet_id: str
    nsg_id: str
    dns_search: str
    shape: str
    ocpus: float
    memory_gbs: float
    load_balancer_id: str
    backend_sets: Mapping[str, int]
    """Backend set name (the published component's) -> the container port it sends to."""
    containers: tuple[Container, ...]


_DIGEST = re.compile(r".+@sha256:[0-9a-f]{64}", re.ASCII)


def pinned(image: str) -> bool:
    return deploy_program.is_image(image) and _DIGEST.fullmatch(image) is not None


def is_container_target(text: str) -> bool:
    """Whether DEPLOY_OCI describes a container instances environment (ci.deploy hands over)."""
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("target") == TARGET


def _number(value: Any, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def platform(text: str, variable: str) -> Platform:
    """The variable checked field by field; InputError naming the first problem."""
    try:
        data = json.loads(text)
    except ValueError:
        raise InputError(f"{variable} is not JSON") from None
    if not isinstance(data, dict) or data.get("target") != TARGET:
        raise InputError(f"{variable} is not a container instances environment")
    auth = data.get("auth")
    if auth not in oci.AUTH_MODES:
        raise InputError(f"{variable}.auth is {auth!r}; expected one of {', '.join(oci.AUTH_MODES)}")
    strings = {
        "region": re.compile(oci.REGION_PATTERN.strip("^$"), re.ASCII),
        "environment": re.compile("|".join(rules.ENVIRONMENTS)),
        "compartmentId": re.compile(r"ocid1\.(compartment|tenancy)\.[a-z0-9.-]+\.[A-Za-z0-9._-]+", re.ASCII),
        "availabilityDomain": _AD,
        "subnetId": _OCID,
        "nsgId": _OCID,
        "dnsSearch": _DOMAIN,
        "shape": _SHAPE,
        "loadBalancerId": _OCID,
        **oci.AUTH_FIELDS[auth],
    }
    others = {"target", "auth", "ocpus", "memoryGbs", "backendSets", "containers"}
    for key in sorted(set(data) - set(strings) - others):
        raise InputError(f"{variable}.{key} is not a field of a container instances environment with auth {auth}")
    for key, pattern in strings.items():
        value = data.get(key)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise InputError(f"{variable}.{key} is missing or malformed")
    if not _number(data.get("ocpus"), 1, 76) or not _number(data.get("memoryGbs"), 1, 1024):
        raise InputError(f"{variable}.ocpus or .memoryGbs is missing or out of range")
    containers = tuple(_container(c, f"{variable}.containers[{i}]") for i, c in enumerate(data.get("containers") or []))
    if not containers or len({c.name for c in containers}) != len(containers):
        raise InputError(f"{variable}.containers names no container, or one twice")
    sets = data.get("backendSets")
    ports = {c.port for c in containers}
    if (
        not isinstance(sets, dict)
        or not sets
        or not all(rules.is_component(name) and port in ports for name, port in sets.items())
    ):
        raise InputError(f"{variable}.backendSets must map each published component to a container's port")
    return Platform(
        access=oci.Access.of(data),
        environment=data["environment"],
        compartment_id=data["compartmentId"],
        availability_domain=data["availabilityDomain"],
        subnet_id=data["subnetId"],
        nsg_id=data["nsgId"],
        dns_search=data["dnsSearch"],
        shape=data["shape"],
        ocpus=float(data["ocpus"]),
        memory_gbs=float(data["memoryGbs"]),
        load_balancer_id=data["loadBalancerId"],
        backend_sets=dict(sets),
        containers=containers,
    )


def _container(data: Any, where: str) -> Container:
    if not isinstance(data, dict) or set(data) != {"name", "port", "healthPath", "env", "secrets"}:
        raise InputError(f"{where} must have exactly name, port, healthPath, env and secrets")
    env, secrets = data["env"], data["secrets"]
    if (
        not rules.is_component(data["name"])
        or not _number(data["port"], 1, 65535)
        or not isinstance(data["healthPath"], str)
        or not _PATH.fullmatch(data["healthPath"])
        or not isinstance(env, dict)
        or not all(_ENV_NAME.fullmatch(k) and isinstance(v, str) for k, v in env.items())
        or not isinstance(secrets, list)
        or not all(isinstance(s, str) and _ENV_NAME.fullmatch(s) for s in secrets)
    ):
        raise InputError(f"{where} is malformed")
    return Container(data["name"], int(data["port"]), data["healthPath"], dict(env), tuple(secrets))


@dataclass(frozen=True)
class Request:
    platform: Platform
    credential: str = field(repr=False)
    images: Mapping[str, str]
    """Component -> image of this run."""
    secrets: Mapping[str, str] = field(repr=False)
    login: tuple[str, str, str] | None = field(default=None, repr=False)
    """(registry, user, token) the instance pulls with, or None."""
    wait_timeout: int = 180
    run_name: str = "local"
    api_base: str | None = None
    """DEPLOY_OCI_API: a stand-in on the loopback address (tests); None: OCI's endpoints."""


def request(env: Mapping[str, str], root: Path | str = ".") -> Request:
    """Every input checked; InputError naming the first problem (never a secret's value)."""
    from ci import deploy  # the variable names and the shared checks

    found = platform(env.get(deploy.OCI_ACCESS, ""), deploy.OCI_ACCESS)
    credential = env.get(deploy.OCI_CREDENTIAL, "")
    if not credential.strip():
        raise InputError(f"{deploy.OCI_CREDENTIAL} is empty: check the deploy secrets of this environment")
    try:
        words = deploy.pairs(env.get(deploy.IMAGES, ""))
        text = deploy.app_secrets(env.get(deploy.APP_SECRETS, ""))
    except deploy.InputError as error:
        raise InputError(str(error)) from None
    images = dict(w.split("=", 1) for w in words)
    for component, image in images.items():
        if not pinned(image):
            raise InputError(f"{deploy.IMAGES}: {component}'s image is not pinned by digest (<image>@sha256:<64 hex>)")
    names = {c.name for c in found.containers}
    for component in sorted(set(images) - names):
        raise InputError(f"{deploy.IMAGES}: {component} is not a component of this environment")
    secrets = json.loads(text) if text else {}
    for container in found.containers:
        for name in container.secrets:
            if name not in secrets:
                raise InputError(f"{deploy.APP_SECRETS} has no {name}, which {container.name} gets")
    login = None
    if env.get(deploy.REGISTRY_TOKEN):
        login = (env.get(deploy.REGISTRY, ""), env.get(deploy.REGISTRY_USER, ""), env[deploy.REGISTRY_TOKEN])
        if not deploy._matches(deploy_program.REGISTRY_PATTERN, login[0]):
            raise InputError(f"{deploy.REGISTRY} is not a registry host")
        if not deploy._matches(deploy_program.USERNAME_PATTERN, login[1]):
            raise InputError(f"{deploy.REGISTRY_USER} is not a user name")
    try:
        settings = config.load(root)
    except config.ConfigError as error:
        raise InputError(str(error)) from None
    api_base = env.get(API_OVERRIDE) or None
    if api_base is not None and not _LOOPBACK.fullmatch(api_base):
        raise InputError(f"{API_OVERRIDE} may only name a stand-in on http://127.0.0.1:<port>")
    return Request(
        api_base=api_base,
        platform=found,
        credential=credential,
        images=images,
        secrets=secrets,
        login=login,
        wait_timeout=settings.deploy.wait_timeout_seconds,
        run_name=deploy.session_name(env).removeprefix("dreamscape-deploy-"),
    )


# --- the OCI calls ---------------------------------------------------------------------------


@dataclass
class Api:
    """Signed calls to Container Instances, Load Balancing and the VCN's VNICs of one region."""

    region: str
    signer: oci.Signer
    client: oci.Client
    base: str | None = None
    """One base URL for every API (tests); None: the region's endpoints."""

    def url(self, service: str, path: str) -> str:
        if self.base:
            return f"{self.base.rstrip('/')}{path}"
        host = (
            f"compute-containers.{self.region}.oci.oraclecloud.com"
            if service == "containers"
            else f"iaas.{self.region}.oraclecloud.com"
        )
        return f"https://{host}{path}"

    def call(
        self,
        what: str,
        service: str,
        method: str,
        path: str,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        client: oci.Client | None = None,
    ) -> tuple[Any, Mapping[str, str]]:
        """The answer's JSON and headers; OciError on a refusal."""
        url = self.url(service, path)
        body = None if data is None else json.dumps(data).encode()
        signed = {**self.signer.headers(method, url, body), **(headers or {}), "accept": "application/json"}
        answer = (client or self.client).answer(what, method, url, signed, body)
        return (answer.json() if answer.body else None), answer.headers

    # Container Instances
    def instances(self, compartment_id: str, client: oci.Client | None = None) -> list[dict[str, Any]]:
        """Every container instance of the compartment, page after page (deleted ones too)."""
        found: list[dict[str, Any]] = []
        page = ""
        for _ in range(MAX_PAGES):
            path = f"/{CONTAINERS_API}/containerInstances?compartmentId={quote(compartment_id)}&limit=100{page}"
            data, headers = self.call("List the container instances", "containers", "GET", path, client=client)
            items = data.get("items") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise oci.OciError("List the container instances: the answer holds no items")
            found += [i for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)]
            following = headers.get("opc-next-page")
            if not following:
                return found
            page = f"&page={quote(following)}"
        raise oci.OciError(f"List the container instances: more than {MAX_PAGES} pages")

    def instance(self, instance_id: str) -> dict[str, Any]:
        data, _ = self.call(
            "Read the container instance", "containers", "GET", f"/{CONTAINERS_API}/containerInstances/{instance_id}"
        )
        if not isinstance(data, dict):
            raise oci.OciError("Read the container instance: the answer is not an instance")
        return data

    def container(self, container_id: str) -> dict[str, Any]:
        data, _ = self.call("Read a container", "containers", "GET", f"/{CONTAINERS_API}/containers/{container_id}")
        if not isinstance(data, dict):
            raise oci.OciError("Read a container: the answer is not a container")
        return data

    def create_instance(self, details: Mapping[str, Any]) -> str:
        data, _ = self.call(
            "Create the container instance",
            "containers",
            "POST",
            f"/{CONTAINERS_API}/containerInstances",
            details,
            {"opc-retry-token": uuid.uuid4().hex},
        )
        instance_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(instance_id, str) or not _OCID.fullmatch(instance_id):
            raise oci.OciError("Create the container instance: the answer holds no instance id")
        return instance_id

    def delete_instance(self, instance_id: str, client: oci.Client | None = None) -> None:
        """Delete it (OCI answers 202 and deletes it in the background); one already going is as good."""
        try:
            self.call(
                "Delete the container instance",
                "containers",
                "DELETE",
                f"/{CONTAINERS_API}/containerInstances/{instance_id}",
                client=client,
            )
        except oci.OciError as error:
            if error.status not in (404, 409):
                raise

    def private_ip(self, vnic_id: str) -> str:
        data, _ = self.call("Read the instance's VNIC", "core", "GET", f"/{CORE_API}/vnics/{vnic_id}")
        address = data.get("privateIp") if isinstance(data, dict) else None
        if not isinstance(address, str) or not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", address):
            raise oci.OciError("Read the instance's VNIC: the answer holds no private IP")
        return address

    # Load Balancing
    def _backends_path(self, lb: str, backend_set: str) -> str:
        return f"/{LOAD_BALANCER_API}/loadBalancers/{lb}/backendSets/{quote(backend_set, safe='')}/backends"

    def backends(self, lb: str, backend_set: str) -> list[dict[str, Any]]:
        data, _ = self.call("List the backends", "lb", "GET", self._backends_path(lb, backend_set))
        if not isinstance(data, list):
            raise oci.OciError("List the backends: the answer is not a list")
        return [b for b in data if isinstance(b, dict)]

    def change_backend(
        self,
        what: str,
        method: str,
        lb: str,
        backend_set: str,
        backend: str | None,
        data: Any,
        client: oci.Client | None = None,
    ) -> str:
        """Send one backend change; the id of the work request that applies it."""
        path = self._backends_path(lb, backend_set) + (f"/{quote(backend, safe='')}" if backend else "")
        _, headers = self.call(what, "lb", method, path, data, client=client)
        work = headers.get("opc-work-request-id")
        if not work:
            raise oci.OciError(f"{what}: the answer names no work request")
        return work

    def work_request(self, work_id: str) -> dict[str, Any]:
        data, _ = self.call(
            "Read the load balancer's work request",
            "lb",
            "GET",
            f"/{LOAD_BALANCER_API}/loadBalancerWorkRequests/{work_id}",
        )
        if not isinstance(data, dict):
            raise oci.OciError("Read the load balancer's work request: the answer is not a work request")
        return data

    def backend_health(self, lb: str, backend_set: str, backend: str) -> dict[str, Any]:
        path = self._backends_path(lb, backend_set) + f"/{quote(backend, safe='')}/health"
        data, _ = self.call("Read the backend's health", "lb", "GET", path)
        if not isinstance(data, dict):
            raise oci.OciError("Read the backend's health: the answer is not a health report")
        return data


# --- the deploy ------------------------------------------------------------------------------


def container_details(
    req: Request, live_images: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """Each component's CreateContainerDetails, the volumes they mount, and the images they run."""
    containers, volumes, images = [], [], {}
    for c in req.platform.containers:
        image = req.images.get(c.name) or live_images.get(c.name)
        if not image:
            raise InputError(
                f"{c.name} has no image yet: this environment never ran it, and this run does not build it"
            )
        images[c.name] = image
        details: dict[str, Any] = {
            "displayName": c.name,
            "imageUrl": image,
            "environmentVariables": dict(c.env),
            "isResourcePrincipalDisabled": True,
            "healthChecks": [
                {
                    "healthCheckType": "HTTP",
                    "name": f"{c.name}-http",
                    "path": c.health_path,
                    "port": c.port,
                    "failureAction": "KILL",
                    **HEALTH,
                }
            ],
        }
        if c.secrets:
            volume = f"secrets-{c.name}"
            details["volumeMounts"] = [{"mountPath": SECRETS_DIRECTORY, "volumeName": volume, "isReadOnly": True}]
            volumes.append(
                {
                    "name": volume,
                    "volumeType": "CONFIGFILE",
                    "configs": [
                        {"fileName": n, "data": base64.b64encode(req.secrets[n].encode()).decode()} for n in c.secrets
                    ],
                }
            )
        containers.append(details)
    return containers, volumes, images


def instance_details(req: Request, containers: list, volumes: list) -> dict[str, Any]:
    p = req.platform
    details: dict[str, Any] = {
        "compartmentId": p.compartment_id,
        "availabilityDomain": p.availability_domain,
        "displayName": f"dreamscape-{p.environment}-{req.run_name}",
        "shape": p.shape,
        "shapeConfig": {"ocpus": p.ocpus, "memoryInGBs": p.memory_gbs},
        "containers": containers,
        "vnics": [
            {
                "subnetId": p.subnet_id,
                "nsgIds": [p.nsg_id],
                # Egress to the registry through the internet gateway; the NSG admits only the
                # load balancer and the environment's own instances.
                "isPublicIpAssigned": True,
                "displayName": f"dreamscape-{p.environment}-{req.run_name}",
            }
        ],
        "dnsConfig": {"searches": [p.dns_search]},
        "containerRestartPolicy": "ALWAYS",
        "gracefulShutdownTimeoutInSeconds": 30,
        "freeformTags": {TAG_ENVIRONMENT: p.environment, TAG_RELEASE: req.run_name},
    }
    if volumes:
        details["volumes"] = volumes
    if req.login:
        registry, user, token = req.login
        details["imagePullSecrets"] = [
            {
                "secretType": "BASIC",
                "registryEndpoint": registry,
                "username": base64.b64encode(user.encode()).decode(),
                "password": base64.b64encode(token.encode()).decode(),
            }
        ]
    return details


@dataclass
class Live:
    instance_id: str
    ip: str
    images: dict[str, str]


@dataclass
class Deploy:
    """One deploy's state: what it made, so that a failure or a stop can take it out again."""

    req: Request
    api: Api
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))
    new_id: str | None = None
    new_ip: str | None = None
    added: list[str] = field(default_factory=list)
    """Backend sets the new backend was added to (and not yet promoted)."""
    promoted: bool = False
    pending: str | None = None
    """The load balancer work request this deploy sent and has not seen end (a stop may cut its wait)."""
    changes_took: float = 0.0
    """The seconds this deploy's load balancer changes have taken so far."""
    creating: bool = False
    """The create was sent (its answer may not have come)."""
    steps: list[str] = field(default_factory=list)

    @property
    def lb(self) -> str:
        return self.req.platform.load_balancer_id

    def say(self, line: str) -> None:
        self.steps.append(line)
        self.log(line)

    def sleep(self) -> None:
        self.api.client.sleep(POLL_SECONDS)

    def wait_work(self, work_id: str, deadline: float) -> None:
        while True:
            state = self.api.work_request(work_id).get("lifecycleState")
            if state == "SUCCEEDED":
                return
            if state == "FAILED":
                raise oci.OciError(f"the load balancer's work request {work_id} FAILED")
            if self.clock() >= deadline:
                raise oci.OciError(
                    f"the load balancer's work request {work_id} did not end within the {SWITCH_SECONDS}s "
                    "a deploy's load balancer changes may take together"
                )
            self.sleep()

    def change(
        self,
        what: str,
        method: str,
        backend_set: str,
        backend: str | None,
        data: Any,
        client: oci.Client | None = None,
        sent: Callable[[], None] | None = None,
    ) -> None:
        """One backend change, applied. The load balancer takes one change at a time and answers
        409 while another is under way (one a stopped deploy left, say): wait and send again.
        Every change of a deploy draws on SWITCH_SECONDS; the waits for health between them do
        not (the deploy step's timeout counts them apart)."""
        began = self.clock()
        deadline = began + SWITCH_SECONDS - self.changes_took
        try:
            while True:
                try:
                    work = self.api.change_backend(what, method, self.lb, backend_set, backend, data, client)
                    break
                except oci.OciError as error:
                    if method == "DELETE" and error.status == 404:
                        return  # already gone: what the removal wanted
                    if error.status != 409 or self.clock() >= deadline:
                        raise
                    pending, self.pending = self.pending, None
                    if pending is not None:
                        self.wait_work(pending, deadline)
                    self.sleep()
            self.pending = work
            if sent is not None:
                sent()
            self.wait_work(work, deadline)
            self.pending = None
        finally:
            self.changes_took += self.clock() - began

    def live(self) -> Live | None:
        """The release the load balancer sends traffic to, or None (the first deploy)."""
        p = self.req.platform
        addresses: set[str] = set()
        for name, port in p.backend_sets.items():
            for backend in self.api.backends(self.lb, name):
                primary = not (backend.get("backup") or backend.get("drain") or backend.get("offline"))
                if backend.get("port") == port and primary:
                    addresses.add(str(backend.get("ipAddress")))
        if not addresses:
            return None
        for summary in self.api.instances(p.compartment_id):
            tags = summary.get("freeformTags") or {}
            if summary.get("lifecycleState") != "ACTIVE" or tags.get(TAG_ENVIRONMENT) != p.environment:
                continue
            if TAG_RELEASE not in tags:
                continue
            instance = self.api.instance(summary["id"])
            vnics = instance.get("vnics") or []
            if not vnics:
                continue
            ip = self.api.private_ip(vnics[0]["vnicId"])
            if ip in addresses:
                images = {}
                for item in instance.get("containers") or []:
                    container = self.api.container(item["containerId"])
                    images[str(container.get("displayName"))] = str(container.get("imageUrl"))
                return Live(summary["id"], ip, images)
        raise oci.OciError(
            f"the load balancer sends traffic to {', '.join(sorted(addresses))}, which no ACTIVE instance of "
            f"{p.environment} holds: fix the backends by hand, then deploy again"
        )

    def wait_healthy(self) -> None:
        """The new instance ACTIVE and each container's health check HEALTHY; UnhealthyError otherwise."""
        assert self.new_id is not None
        created = self.clock() + CREATE_WAIT_SECONDS
        while True:
            instance = self.api.instance(self.new_id)
            state = instance.get("lifecycleState")
            if state == "ACTIVE":
                break
            if state != "CREATING":
                details = runner.printable(str(instance.get("lifecycleDetails") or ""), limit=200)
                raise UnhealthyError(f"the new instance is {state}, not ACTIVE {details}".rstrip())
            if self.clock() >= created:
                raise UnhealthyError(f"the new instance was not ACTIVE within {CREATE_WAIT_SECONDS}s")
            self.sleep()
        self.new_ip = self.api.private_ip(instance["vnics"][0]["vnicId"])
        self.say(f"Instance {self.new_id} is ACTIVE at {self.new_ip}")
        deadline = self.clock() + self.req.wait_timeout
        pending = {str(c["containerId"]): str(c.get("displayName")) for c in instance.get("containers") or []}
        while pending:
            for container_id, name in list(pending.items()):
                container = self.api.container(container_id)
                checks = [h.get("status") for h in container.get("healthChecks") or []]
                if container.get("lifecycleState") == "ACTIVE" and checks and all(s == "HEALTHY" for s in checks):
                    del pending[container_id]
                elif container.get("lifecycleState") not in ("CREATING", "ACTIVE"):
                    raise UnhealthyError(f"container {name} is {container.get('lifecycleState')}")
            if not pending:
                break
            if self.clock() >= deadline:
                names = ", ".join(sorted(pending.values()))
                wait = self.req.wait_timeout
                raise UnhealthyError(f"not healthy within {wait}s (deploy.waitTimeoutSeconds): {names}")
            self.sleep()
        self.say("Every container is healthy")

    def join(self) -> None:
        """The new instance as a backup backend of each set, then OK in the load balancer's eyes."""
        assert self.new_ip is not None
        p = self.req.platform
        for name, port in p.backend_sets.items():
            self.change(
                f"Add the new backend to {name}",
                "POST",
                name,
                None,
                {"ipAddress": self.new_ip, "port": port, "backup": True, "drain": False, "offline": False, "weight": 1},
                sent=lambda name=name: self.added.append(name),
            )
        deadline = self.clock() + self.req.wait_timeout
        for name, port in p.backend_sets.items():
            backend = f"{self.new_ip}:{port}"
            while True:
                status = self.api.backend_health(self.lb, name, backend).get("status")
                if status == "OK":
                    break
                if self.clock() >= deadline:
                    raise UnhealthyError(
                        f"the load balancer reports {name} {status}, not OK, after {self.req.wait_timeout}s"
                    )
                self.sleep()
        self.say("The load balancer reports the new release OK")

    def switch(self, live: Live | None) -> None:
        """Traffic to the new backends, the old ones draining, then deleted."""
        assert self.new_ip is not None
        p = self.req.platform
        flags = {"weight": 1, "backup": False, "drain": False, "offline": False}
        for name, port in p.backend_sets.items():
            # Once OCI has taken the first promotion, the new release may get traffic: from then
            # on it is not taken out again (a stop leaves both serving; the next deploy prunes).
            # Marked before it is sent: a stop while the request is under way must not take out
            # a release OCI may already be sending traffic to.
            self._promoted()
            self.change(f"Promote the new backend of {name}", "PUT", name, f"{self.new_ip}:{port}", flags)
        self.say("Traffic moved to the new release")
        for name, port in p.backend_sets.items():
            if live is not None:
                old = f"{live.ip}:{port}"
                self.change(f"Drain the old backend of {name}", "PUT", name, old, {**flags, "drain": True})
                self.change(f"Remove the old backend of {name}", "DELETE", name, old, None)
            for stale in self.api.backends(self.lb, name):
                if str(stale.get("name")) != f"{self.new_ip}:{port}":
                    self.change(f"Remove a stale backend of {name}", "DELETE", name, str(stale.get("name")), None)
                    self.say(f"Stale backend {stale.get('name')} of {name} removed")
        if live is not None:
            self.api.delete_instance(live.instance_id)
            self.say(f"Old instance {live.instance_id} deleted")

    def _promoted(self) -> None:
        self.promoted = True
        self.added.clear()

    def take_out(self) -> None:
        """The new release out again: its instance first (it holds the secrets), then its
        backends (a backup whose instance is gone takes no traffic meanwhile)."""
        if self.new_id is not None:
            self.api.delete_instance(self.new_id)
            self.say(f"New instance {self.new_id} deleted; the traffic stayed on the old release")
        if self.new_ip is not None:
            for name in list(self.added):
                port = self.req.platform.backend_sets[name]
                self.change(f"Remove the new backend from {name}", "DELETE", name, f"{self.new_ip}:{port}", None)
                self.added.remove(name)

    def take_out_stopped(self, client: oci.Client) -> None:
        """What a stopped job has time for (`client`: one short attempt a call): delete the new
        instance first, then ask once to remove its backends without waiting for the change.
        A backup backend whose instance is gone takes no traffic; the next deploy prunes it."""
        made = [self.new_id] if self.new_id is not None else self.made_by_this_run(client)
        for instance_id in made:
            self.api.delete_instance(instance_id, client)
            self.say(f"New instance {instance_id} deleted; the traffic stayed on the old release")
        if self.new_ip is not None:
            for name in list(self.added):
                backend = f"{self.new_ip}:{self.req.platform.backend_sets[name]}"
                try:
                    self.api.change_backend(
                        f"Remove the new backend from {name}", "DELETE", self.lb, name, backend, None, client
                    )
                except oci.OciError as error:
                    runner.annotate("warning", "Deploy", f"{error}; the next deploy removes {backend}")

    def made_by_this_run(self, client: oci.Client) -> list[str]:
        """Instances this run's create made, when it was stopped before the answer came."""
        if not self.creating:
            return []
        p = self.req.platform
        return [
            i["id"]
            for i in self.api.instances(p.compartment_id, client)
            if (i.get("freeformTags") or {}).get(TAG_RELEASE) == self.req.run_name
            and (i.get("freeformTags") or {}).get(TAG_ENVIRONMENT) == p.environment
            and i.get("lifecycleState") in ("CREATING", "ACTIVE", "FAILED", "INACTIVE")
        ]

    def sweep(self, keep: set[str]) -> None:
        """Delete the environment's release instances that are neither live nor this run's (a
        killed runner's leftovers); a failure here is a warning."""
        p = self.req.platform
        try:
            for summary in self.api.instances(p.compartment_id):
                tags = summary.get("freeformTags") or {}
                if (
                    tags.get(TAG_ENVIRONMENT) == p.environment
                    and TAG_RELEASE in tags
                    and summary.get("lifecycleState") in ("ACTIVE", "FAILED", "INACTIVE")
                    and summary.get("id") not in keep
                ):
                    self.api.delete_instance(summary["id"])
                    self.say(f"Leftover instance {summary['id']} deleted")
        except (oci.OciError, LookupError, TypeError, AttributeError) as error:
            runner.annotate("warning", "Deploy", f"leftover instances not cleaned up: {unexpected(error)}")


def unexpected(error: BaseException) -> str:
    """What went wrong, for the log: an OCI error's message, or the kind of an answer the client
    could not read (never its content, which may hold what the instance carries)."""
    if isinstance(error, (oci.OciError, UnhealthyError, InputError)):
        return str(error)
    return f"OCI answered something the deploy cannot read ({type(error).__name__})"


@contextmanager
def _signals_held() -> Iterator[None]:
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def summary(req: Request, code: int, images: Mapping[str, str], steps: list[str], problem: str = "") -> str:
    title = {DEPLOYED: "deployed", ROLLED_BACK: "rolled back", ROLLBACK_FAILED: "switch failed"}.get(code, "failed")
    lines = [f"### Deploy to {req.platform.environment} (container instances): {title}", ""]
    if problem:
        lines += [f"**{problem}**", ""]
    if images:
        lines += ["| component | image | secrets |", "| --- | --- | --- |"]
        for c in req.platform.containers:
            lines.append(f"| {c.name} | `{images.get(c.name, '')}` | {', '.join(c.secrets) or '-'} |")
        lines.append("")
    lines += [f"- {s}" for s in steps]
    return "\n".join(lines) + "\n"


def run(
    req: Request,
    env: Mapping[str, str],
    client: oci.Client | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """The blue/green deploy; the exit code to end with."""
    client = client or oci.Client()
    images: dict[str, str] = {}
    with tempfile.TemporaryDirectory(dir=env.get("RUNNER_TEMP") or None) as work:
        try:
            signer = oci.signer(req.platform.access, req.credential, Path(work), env, client)
        except oci.OciError as error:
            return _end(req, env, OCI_REFUSED, images, [], f"OCI refused the deploy credential: {error}")
        api = Api(req.platform.access.region, signer, client, req.api_base)
        job = Deploy(req, api, clock)
        try:
            live = job.live()
            containers, volumes, images = container_details(req, live.images if live else {})
        except InputError as error:
            return _end(req, env, BAD_INPUT, images, job.steps, str(error))
        except (oci.OciError, LookupError, TypeError, AttributeError, ValueError) as error:
            return _end(req, env, OCI_REFUSED, images, job.steps, unexpected(error))
        stopped = False
        try:
            job.creating = True
            job.new_id = api.create_instance(instance_details(req, containers, volumes))
            job.say(f"Instance {job.new_id} created for {', '.join(sorted(req.images))}")
            job.wait_healthy()
            job.join()
            job.switch(live)
        except (KeyboardInterrupt, SystemExit):
            stopped = True
            raise
        except Exception as error:
            failure = unexpected(error)
            if job.promoted:
                job.sweep({job.new_id or "", live.instance_id if live else ""})
                return _end(req, env, ROLLBACK_FAILED, images, job.steps, f"after the switch began: {failure}")
            # The traffic never left the old release: whatever the clean-up manages, this is a
            # rollback; what it leaves (a backup backend, an instance) the next deploy removes.
            try:
                with _signals_held():
                    job.take_out()
            except (oci.OciError, LookupError, TypeError, AttributeError) as cleanup:
                runner.annotate(
                    "warning", "Deploy", f"clean-up incomplete, the next deploy finishes it: {unexpected(cleanup)}"
                )
                job.say(f"Clean-up incomplete: {unexpected(cleanup)}")
            return _end(req, env, ROLLED_BACK, images, job.steps, failure)
        finally:
            if stopped and not job.promoted:
                with _signals_held():
                    try:
                        job.take_out_stopped(client.last_chance())
                    except (oci.OciError, LookupError, TypeError, AttributeError) as error:
                        runner.annotate(
                            "warning", "Deploy", f"stopped; the new release not cleaned up: {unexpected(error)}"
                        )
        job.sweep({job.new_id or ""})
        return _end(req, env, DEPLOYED, images, job.steps)


def _end(
    req: Request, env: Mapping[str, str], code: int, images: Mapping[str, str], steps: list[str], problem: str = ""
) -> int:
    text = summary(req, code, images, steps, problem)
    print(text, end="", flush=True)
    if env.get("GITHUB_STEP_SUMMARY"):
        runner.add_summary(text, env)
    if code == DEPLOYED:
        return 0
    runner.annotate("error", "Deploy", problem or "the deploy failed")
    return code


def main(env: Mapping[str, str], root: Path | str = ".") -> int:
    try:
        req = request(env, root)
    except InputError as refused:
        runner.annotate("error", "Deploy", str(refused))
        return BAD_INPUT
    return run(req, env)
