"""The Container Instances, VNIC and Load Balancer APIs of the OCI stand-in, for a blue/green
deploy client: strict the way OCI is, simulated step by step as the client polls.

    grant = PlatformGrant(COMPARTMENT, subnet_ids=[SUBNET], load_balancer_ids=[LB])
    ci = Principal("ocid1.user.oc1..ci", api_key=ApiKey.generate(), platform=grant)
    platform = Platform(subnets={SUBNET: "10.0.1.0/24"},
                        load_balancers={LB: {"web": BackendSetSpec(policy="ROUND_ROBIN")}},
                        healthy=lambda image: not image.endswith(":broken"))
    with OciApi(principals=[ci], platform=platform) as api:
        ... oci.container_instances.ContainerInstanceClient(config, service_endpoint=api.url) ...
        platform.traffic("web")  # [frozenset({"10.0.1.2:8080"}), frozenset({"10.0.1.3:8080"})]

Routes (every one signed as tests/harness/oci_api.py checks, 401 NotAuthenticated otherwise;
the principal must hold a `PlatformGrant`, 404 NotAuthorizedOrNotFound otherwise):

- Container Instances 20210415: `create-container-instance` POST /containerInstances,
  `list-container-instances` GET /containerInstances?compartmentId=..., `get-container-instance`
  and `delete-container-instance` GET / DELETE /containerInstances/{id}, `get-container` GET
  /containers/{id}, `get-container-work-request` GET /workRequests/{id}.
- Core 20160918: `get-vnic` GET /vnics/{id}.
- Load Balancer 20170115, under /loadBalancers/{lb}/backendSets/{set}/backends:
  `create-backend` POST, `list-backends` GET, `get-backend` / `update-backend` /
  `delete-backend` GET / PUT / DELETE /{ip:port}, `get-backend-health` GET /{ip:port}/health;
  `get-lb-work-request` GET /20170115/loadBalancerWorkRequests/{id}.

Bodies are checked against the SDK's models (`sdk_model` with the service's type mapping),
then as the service checks them (`_check_instance`); what the grant does not cover (another
compartment, subnet, NSG, load balancer, vault secret, any file system, an unknown availability
domain) is 404 NotAuthorizedOrNotFound. Answers are the SDK's camelCase JSON of its models.

Simulation, deterministic and driven by the client's requests only:

- A container instance is CREATING, then on its `gets_until_active`-th poll (a GET of it or of
  its create work request; None: never) ACTIVE, or FAILED when an image is in
  `unpullable_images` or `fails(details)` says so (a str is the lifecycleDetails).
  `on_active(instance)` runs before it turns ACTIVE. DELETE answers 202 and turns it DELETING
  (`on_deleted(instance)` first), DELETED on the `gets_until_deleted`-th poll after; its private
  IP is free again from then on (new instances get never-used addresses first). Deleted ones
  stay listed. Containers follow their instance's state.
- The VNIC (in the instance's `vnics` from ACTIVE on) has the next free private IP of its
  subnet's CIDR (OCI keeps the first two and the last address), or the `privateIp` asked for.
- A container's health checks answer UNKNOWN until its instance is ACTIVE, then, from its
  `container_gets_until_healthy`-th GET while ACTIVE, HEALTHY if `healthy(image_url)` else
  UNHEALTHY (and with failureAction KILL, the default, containerRestartAttemptCount grows by
  one on each such GET).
- Load balancer changes are work requests: the change applies (or fails, see
  `fail_next_lb_work_request`) when the work request answers SUCCEEDED, on its
  `lb_work_request_gets + 1`-th GET (ACCEPTED, IN_PROGRESS..., SUCCEEDED). Until then the
  load balancer takes no other change: 409 Conflict.
- An `opc-retry-token` (create-container-instance, create-backend, update-backend) sent again
  with the same request answers the first answer's resource and work request, and creates
  nothing; with another request, 409 Conflict.
- A backend's health is UNKNOWN until, and on, its `health_unknown_polls`-th health GET (none
  when 0), then OK when an ACTIVE instance has its IP and a container with an HTTP or TCP
  health check on the checked port (the backend set's `port`, else the backend's) that is
  `healthy`, else CRITICAL (CONNECT_FAILED, or INVALID_STATUS_CODE for an unhealthy HTTP check).
- Traffic: what a backend set sends new connections to, the primaries (not backup, drain or
  offline) whose health is OK, else the backups that are OK. `traffic(set)` is its history,
  taken before and after every request the platform answers, without repeats.

The stand-in's lock is held while hooks and predicates run: they must not call it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from threading import RLock
from typing import Any
from urllib.parse import parse_qs, urlsplit

from oci.container_instances import models as ci_models
from oci.core import models as core_models
from oci.load_balancer import models as lb_models

from tests.harness.oci_api import (
    CONTAINER_INSTANCES_VERSION,
    Reply,
    _Call,
    _not_found,
    _oci_error,
    _ocid,
    sdk_model,
    serializer,
)

CI_TYPES = ci_models.container_instances_type_mapping
LB_TYPES = lb_models.load_balancer_type_mapping
DEFAULT_SHAPES = ("CI.Standard.A1.Flex", "CI.Standard.E3.Flex", "CI.Standard.E4.Flex")
DEFAULT_AVAILABILITY_DOMAINS = ("Uocm:EU-FRANKFURT-1-AD-1", "Uocm:EU-FRANKFURT-1-AD-2", "Uocm:EU-FRANKFURT-1-AD-3")
DEFAULT_SUBNET = "ocid1.subnet.oc1.eu-frankfurt-1.standin-private"
DEFAULT_SUBNET_CIDR = "10.0.1.0/24"
LB_SUBNET = "ocid1.subnet.oc1.eu-frankfurt-1.standin-lb"
"""The subnet the load balancer's health checks come from (`healthCheckResults[].subnetId`)."""
LB_SOURCE_IP = "10.0.0.2"
PUBLIC_CIDR = "203.0.113.0/24"
"""Where public IPs come from (TEST-NET-3)."""
POLICIES = ("ROUND_ROBIN", "LEAST_CONNECTIONS", "IP_HASH")
LIFECYCLE_STATES = ("CREATING", "UPDATING", "ACTIVE", "INACTIVE", "DELETING", "DELETED", "FAILED")
RESTART_POLICIES = ("ALWAYS", "NEVER", "ON_FAILURE")
BACKING_STORES = ("EPHEMERAL_STORAGE", "MEMORY")
MAX_VOLUMES = 32
MAX_ENVIRONMENT_BYTES = 64 * 1024
"""What all environment variables of a container (names and values), or all its arguments, may
take together."""
MAX_LIST_LIMIT = 1000
PROCESSORS = {
    "CI.Standard.A1.Flex": "3.0 GHz Ampere® Altra™",
    "CI.Standard.E3.Flex": "2.25 GHz AMD EPYC™ 7742 (Rome)",
    "CI.Standard.E4.Flex": "2.55 GHz AMD EPYC™ 7J13 (Milan)",
}
LB_CONFLICT = "Invalid State Transition of LB lifeCycle state from Updating to Updating"
"""What OCI answers (409 Conflict) to a change while another one is in progress."""


@dataclass(frozen=True)
class PlatformGrant:
    """What a principal's IAM policy allows on the platform: container instances, their
    containers, work requests and VNICs in `compartment_id`, on those subnets and NSGs, with
    those vault secrets as image pull secrets; backends and work requests of those load
    balancers."""

    compartment_id: str
    subnet_ids: Iterable[str] = ()
    nsg_ids: Iterable[str] = ()
    load_balancer_ids: Iterable[str] = ()
    secret_ids: Iterable[str] = ()

    def __post_init__(self) -> None:
        for name in ("subnet_ids", "nsg_ids", "load_balancer_ids", "secret_ids"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))


@dataclass(frozen=True)
class BackendSetSpec:
    """A backend set of a load balancer the stand-in hosts."""

    policy: str = "ROUND_ROBIN"
    port: int | None = None
    """The health checker's port; None (OCI's 0): each backend's own port."""
    backends: Iterable[str] = ()
    """Backends it starts with, `ip:port`, primary, their health known (see `seed_backend`)."""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}")
        object.__setattr__(self, "backends", tuple(self.backends))


@dataclass
class VnicState:
    id: str
    subnet_id: str
    private_ip: str
    public_ip: str | None
    nsg_ids: list[str]
    display_name: str | None
    hostname_label: str | None
    skip_source_dest_check: bool
    mac_address: str
    created: datetime


@dataclass
class ContainerState:
    id: str
    instance_id: str
    display_name: str
    details: Any
    """The CreateContainerDetails model it was created from."""
    created: datetime
    health_gets: int = 0
    """GETs of it while its instance was ACTIVE."""
    restarts: int = 0

    @property
    def image_url(self) -> str:
        return self.details.image_url


@dataclass
class InstanceState:
    """A container instance as the stand-in keeps it."""

    id: str
    sequence: int
    compartment_id: str
    availability_domain: str
    fault_domain: str
    display_name: str
    details: Any
    """The CreateContainerInstanceDetails model it was created from."""
    containers: list[ContainerState]
    vnic: VnicState
    principal: str | None
    outcome: str = "ACTIVE"
    """What CREATING turns into: ACTIVE or FAILED."""
    failure: str | None = None
    """lifecycleDetails once FAILED."""
    state: str = "CREATING"
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated: datetime | None = None
    polls: int = 0
    """Polls in the current transitional state (CREATING, DELETING)."""
    work_requests: list[str] = field(default_factory=list)

    @property
    def private_ip(self) -> str:
        return self.vnic.private_ip


@dataclass
class ContainerWorkRequest:
    id: str
    operation_type: str
    instance_id: str
    compartment_id: str
    accepted: datetime
    status: str = "ACCEPTED"
    started: datetime | None = None
    finished: datetime | None = None


@dataclass
class BackendState:
    name: str
    ip_address: str
    port: int
    weight: int = 1
    max_connections: int | None = None
    backup: bool = False
    drain: bool = False
    offline: bool = False
    health_polls: int = 0


@dataclass
class LbWorkRequest:
    id: str
    load_balancer_id: str
    type: str
    description: str
    apply: Callable[[], None]
    error: tuple[str, str] | None
    """(errorCode, message) it fails with instead of applying."""
    accepted: datetime = field(default_factory=lambda: datetime.now(UTC))
    state: str = "ACCEPTED"
    finished: datetime | None = None
    gets: int = 0

    @property
    def done(self) -> bool:
        return self.state in ("SUCCEEDED", "FAILED")


def _now() -> datetime:
    return datetime.now(UTC)


def _json(call: _Call) -> Any:
    try:
        return json.loads(call.body)
    except ValueError:
        raise _oci_error(400, "CannotParseRequest", "The request body is not valid JSON.") from None


def _invalid(message: str) -> Exception:
    return _oci_error(400, "InvalidParameter", message)


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _answer(value: Any) -> Any:
    """A request model as the service's answer model: `CreateXDetails` as `X`, with the fields
    they share (so a BASIC pull secret's credentials are not answered back)."""
    if isinstance(value, list):
        return [_answer(item) for item in value]
    if isinstance(value, dict):
        return {key: _answer(item) for key, item in value.items()}
    if not hasattr(value, "swagger_types"):
        return value
    name = type(value).__name__
    target = CI_TYPES.get(name[len("Create") : -len("Details")]) if name.startswith("Create") else None
    if target is None or not name.endswith("Details"):
        return value
    answer = target()
    for attr in answer.swagger_types:
        if attr in value.swagger_types and getattr(value, attr) is not None:
            setattr(answer, attr, _answer(getattr(value, attr)))
    return answer


def _etag(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class Platform:
    """Container instances, their VNICs and load balancers' backend sets, served through an
    `OciApi(platform=...)`."""

    def __init__(
        self,
        *,
        subnets: Mapping[str, str] | None = None,
        availability_domains: Iterable[str] = DEFAULT_AVAILABILITY_DOMAINS,
        shapes: Iterable[str] = DEFAULT_SHAPES,
        load_balancers: Mapping[str, Mapping[str, BackendSetSpec]] | None = None,
        gets_until_active: int | None = 2,
        gets_until_deleted: int = 1,
        container_gets_until_healthy: int = 1,
        fails: Callable[[Any], bool | str | None] | None = None,
        unpullable_images: Iterable[str] = (),
        healthy: Callable[[str], bool] | None = None,
        lb_work_request_gets: int = 1,
        health_unknown_polls: int = 1,
        unique_container_names: bool = True,
        on_active: Callable[[InstanceState], None] | None = None,
        on_deleted: Callable[[InstanceState], None] | None = None,
        region: str = "eu-frankfurt-1",
    ) -> None:
        """`subnets`: subnet OCID -> CIDR (default DEFAULT_SUBNET, 10.0.1.0/24);
        `load_balancers`: load balancer OCID -> backend set name -> spec;
        `gets_until_active`: polls of a CREATING instance until it is ACTIVE (None: never);
        `gets_until_deleted`: polls of a DELETING one until it is DELETED;
        `container_gets_until_healthy`: GETs of a container of an ACTIVE instance until its
        health checks answer HEALTHY / UNHEALTHY; `fails(details)`: whether a new instance
        fails (a str: its lifecycleDetails); `unpullable_images`: image URLs whose instances
        fail; `healthy(image_url)`: whether a container is healthy (default: all are);
        `lb_work_request_gets`: GETs of a load balancer work request that answer ACCEPTED /
        IN_PROGRESS before the one that answers SUCCEEDED; `health_unknown_polls`: health GETs
        of a new backend that answer UNKNOWN; `unique_container_names`: refuse two containers
        of an instance with one displayName (the SDK's docs say OCI does not);
        `on_active` / `on_deleted`: hooks run before an instance turns ACTIVE / DELETING (one
        that raises leaves the state as it was and the request answers 500)."""
        if gets_until_active is not None and gets_until_active < 1:
            raise ValueError("gets_until_active must be 1 or more, or None")
        if min(gets_until_deleted, container_gets_until_healthy) < 1:
            raise ValueError("gets_until_deleted and container_gets_until_healthy must be 1 or more")
        if min(lb_work_request_gets, health_unknown_polls) < 0:
            raise ValueError("lb_work_request_gets and health_unknown_polls must be 0 or more")
        self.subnets = {
            k: ipaddress.ip_network(v) for k, v in (subnets or {DEFAULT_SUBNET: DEFAULT_SUBNET_CIDR}).items()
        }
        self.availability_domains = tuple(availability_domains)
        self.shapes = frozenset(shapes)
        self.load_balancers = {lb: dict(sets) for lb, sets in (load_balancers or {}).items()}
        self.gets_until_active = gets_until_active
        self.gets_until_deleted = gets_until_deleted
        self.container_gets_until_healthy = container_gets_until_healthy
        self.fails = fails
        self.unpullable_images = frozenset(unpullable_images)
        self.healthy = healthy or (lambda image_url: True)
        self.lb_work_request_gets = lb_work_request_gets
        self.health_unknown_polls = health_unknown_polls
        self.unique_container_names = unique_container_names
        self.on_active = on_active
        self.on_deleted = on_deleted
        self.region = region
        self.instances: dict[str, InstanceState] = {}
        """Every container instance, deleted ones too, by OCID."""
        self.containers: dict[str, ContainerState] = {}
        self.vnics: dict[str, InstanceState] = {}
        """The instance of each VNIC, by VNIC OCID."""
        self.work_requests: dict[str, ContainerWorkRequest] = {}
        """Container Instances work requests, by OCID."""
        self.lb_work_requests: dict[str, LbWorkRequest] = {}
        self._backends: dict[tuple[str, str], list[BackendState]] = {
            (lb, name): [] for lb, sets in self.load_balancers.items() for name in sets
        }
        self._history: dict[tuple[str, str], list[frozenset[str]]] = {key: [] for key in self._backends}
        self._retry_tokens: dict[tuple[str | None, str], tuple[str, str, str]] = {}
        """(user, opc-retry-token) -> (the request, the instance or load balancer, the work request)."""
        self._lb_failures: deque[tuple[str, str]] = deque()
        self._handed_out: set[str] = set()
        """Private IPs ever given to an instance."""
        self._public_ips = 0
        self._sequence = 0
        self._lock = RLock()
        for lb, name in self._backends:
            for backend in self.load_balancers[lb][name].backends:
                ip, _, port = backend.rpartition(":")
                self.seed_backend(lb, name, ip, int(port))

    def attach(self, region: str) -> None:
        """Called by `OciApi`: the region its OCIDs name."""
        self.region = region

    # --- what tests read and set --------------------------------------------------------------

    def live_instances(self) -> list[InstanceState]:
        """Container instances not DELETED, oldest first."""
        with self._lock:
            return [i for i in self._by_age() if i.state != "DELETED"]

    def backends(self, load_balancer_id: str, set_name: str) -> list[BackendState]:
        """The backends a backend set has (changes whose work request has not completed are not)."""
        with self._lock:
            return list(self._backends[(load_balancer_id, set_name)])

    def backend_health(self, load_balancer_id: str, set_name: str, name: str) -> str:
        """The backend's health as the load balancer sees it now (what traffic follows): UNKNOWN
        until more than `health_unknown_polls` health GETs, then a fresh check. Not a poll."""
        with self._lock:
            backend = next((b for b in self._backends[(load_balancer_id, set_name)] if b.name == name), None)
            if backend is None:
                raise KeyError(f"no backend {name} in {set_name}")
            return self._health(self.load_balancers[load_balancer_id][set_name], backend)[0]

    def serving(self, set_name: str, load_balancer_id: str | None = None) -> frozenset[str]:
        """The backends (`ip:port`) the set sends new connections to now."""
        with self._lock:
            return self._serving(self._set_key(set_name, load_balancer_id))

    def traffic(self, set_name: str, load_balancer_id: str | None = None) -> list[frozenset[str]]:
        """The history of `serving(set_name)`: before and after every request the platform
        answered, consecutive repeats collapsed (just the current value before any request)."""
        with self._lock:
            key = self._set_key(set_name, load_balancer_id)
            return list(self._history[key]) or [self._serving(key)]

    def fail_next_lb_work_request(
        self, code: str = "INTERNAL_ERROR", message: str = "The work request failed.", *, times: int = 1
    ) -> None:
        """The next `times` load balancer work requests end FAILED (errorDetails [{code, message}])
        without applying their change."""
        with self._lock:
            self._lb_failures.extend([(code, message)] * times)

    def seed_instance(
        self, body: Mapping[str, Any], *, state: str = "ACTIVE", principal: str | None = None
    ) -> InstanceState:
        """A container instance that exists before the test: `body` as a create request (checked
        as one, without IAM), already `state` (ACTIVE: health checks known; CREATING; FAILED)."""
        if state not in ("ACTIVE", "CREATING", "FAILED"):
            raise ValueError(f"cannot seed an instance {state}")
        with self._lock:
            details = sdk_model(dict(body), "CreateContainerInstanceDetails", type_mapping=CI_TYPES)
            unknown = [v.subnet_id for v in details.vnics if v.subnet_id not in self.subnets]
            if unknown:
                raise ValueError(f"no subnet {unknown[0]}")
            self._check_instance(details)
            instance = self._build(details, principal)
            if state == "FAILED":
                instance.failure = instance.failure or "The container instance could not be created."
            if state != "CREATING":
                instance.outcome = state
                self._move(instance, state)
            for container in instance.containers:
                container.health_gets = self.container_gets_until_healthy
            return instance

    def seed_backend(
        self,
        load_balancer_id: str,
        set_name: str,
        ip_address: str,
        port: int,
        *,
        weight: int = 1,
        backup: bool = False,
        drain: bool = False,
        offline: bool = False,
    ) -> BackendState:
        """A backend that exists before the test, its health already checked."""
        with self._lock:
            backend = BackendState(
                f"{ip_address}:{port}",
                ip_address,
                port,
                weight=weight,
                backup=backup,
                drain=drain,
                offline=offline,
                health_polls=self.health_unknown_polls + 1,
            )
            backends = self._backends[(load_balancer_id, set_name)]
            if any(b.name == backend.name for b in backends):
                raise ValueError(f"{backend.name} is already a backend of {set_name}")
            backends.append(backend)
            return backend

    # --- dispatching ----------------------------------------------------------------------------

    def answer(self, route: str, call: _Call, grant: PlatformGrant) -> Reply:
        """Called by `OciApi` for a platform route, once the caller is authenticated."""
        with self._lock:
            self._record_traffic()
            try:
                return getattr(self, "_" + route.replace("-", "_"))(call, grant)
            finally:
                self._record_traffic()

    def _record_traffic(self) -> None:
        for key, history in self._history.items():
            now = self._serving(key)
            if not history or history[-1] != now:
                history.append(now)

    def _set_key(self, set_name: str, load_balancer_id: str | None) -> tuple[str, str]:
        keys = [k for k in self._backends if k[1] == set_name and load_balancer_id in (None, k[0])]
        if len(keys) != 1:
            raise ValueError(f"{len(keys)} backend sets named {set_name!r}: name the load balancer")
        return keys[0]

    def _reply(self, model: Any, type_name: str, service: str, status: int = 200, **headers: str) -> Reply:
        body = serializer(service).sanitize_for_serialization(model, type_name)
        return Reply(status, body, {"etag": _etag(body), **headers} if status == 200 else headers)

    # --- Container Instances: create -------------------------------------------------------------

    def _create_container_instance(self, call: _Call, grant: PlatformGrant) -> Reply:
        data = _json(call)
        details = sdk_model(data, "CreateContainerInstanceDetails", type_mapping=CI_TYPES)
        if len(details.vnics) != 1:
            raise _invalid("A container instance must have exactly one VNIC.")
        self._check_grant(details, grant, call.principal)
        token = call.headers.get("opc-retry-token")
        body = json.dumps(data, sort_keys=True)
        if token:
            earlier = self._retry_tokens.get((call.principal, token))
            if earlier is not None:
                if earlier[0] != body:
                    raise _oci_error(409, "Conflict", "The retry token was used for a different request.")
                return self._instance_reply(self.instances[earlier[1]], **{"opc-work-request-id": earlier[2]})
        self._check_instance(details)
        instance = self._build(details, call.principal)
        [work_request] = instance.work_requests
        if token:
            self._retry_tokens[(call.principal, token)] = (body, instance.id, work_request)
        return self._instance_reply(instance, **{"opc-work-request-id": work_request})

    def _check_grant(self, details: Any, grant: PlatformGrant, user: str | None) -> None:
        """404 NotAuthorizedOrNotFound for what the grant does not cover."""
        [vnic] = details.vnics
        if details.compartment_id != grant.compartment_id:
            raise _not_found(f"{user} may not create container instances in {details.compartment_id}")
        if details.availability_domain not in self.availability_domains:
            raise _not_found(f"no availability domain {details.availability_domain}")
        if vnic.subnet_id not in grant.subnet_ids or vnic.subnet_id not in self.subnets:
            raise _not_found(f"{user} may not use subnet {vnic.subnet_id}")
        for nsg in vnic.nsg_ids or []:
            if nsg not in grant.nsg_ids:
                raise _not_found(f"{user} may not use network security group {nsg}")
        for secret in details.image_pull_secrets or []:
            if (
                isinstance(secret, ci_models.CreateVaultImagePullSecretDetails)
                and secret.secret_id not in grant.secret_ids
            ):
                raise _not_found(f"{user} may not read secret {secret.secret_id}")
        for volume in details.volumes or []:
            if isinstance(volume, ci_models.CreateContainerOciFssVolumeDetails):
                raise _not_found(f"{user} may not mount file systems (volume {volume.name})")

    def _check_instance(self, details: Any) -> None:
        """400 InvalidParameter (409 Conflict for a private IP in use) for what the service
        refuses in a body the models accept."""
        if details.shape not in self.shapes:
            raise _invalid(f"Shape {details.shape} is not supported; use one of {sorted(self.shapes)}.")
        shape = details.shape_config
        if shape.ocpus <= 0 or (shape.memory_in_gbs is not None and shape.memory_in_gbs <= 0):
            raise _invalid("shapeConfig.ocpus and shapeConfig.memoryInGBs must be positive.")
        if len(details.vnics) != 1:
            raise _invalid("A container instance must have exactly one VNIC.")
        if details.container_restart_policy not in (None, *RESTART_POLICIES):
            raise _invalid(f"containerRestartPolicy must be one of {list(RESTART_POLICIES)}.")
        if (details.graceful_shutdown_timeout_in_seconds or 0) < 0:
            raise _invalid("gracefulShutdownTimeoutInSeconds must not be negative.")
        if not details.containers:
            raise _invalid("A container instance must have at least one container.")
        volumes = details.volumes or []
        names = [v.name for v in volumes]
        if len(volumes) > MAX_VOLUMES:
            raise _invalid(f"A container instance can have at most {MAX_VOLUMES} volumes.")
        if len(set(names)) != len(names):
            raise _invalid("Volume names must be unique within a container instance.")
        for i, volume in enumerate(volumes):
            self._check_volume(volume, f"volumes[{i}]")
        for i, secret in enumerate(details.image_pull_secrets or []):
            basic = isinstance(secret, ci_models.CreateBasicImagePullSecretDetails)
            if basic and not (_is_base64(secret.username) and _is_base64(secret.password)):
                raise _invalid(f"imagePullSecrets[{i}]: username and password must be base64.")
        given = [c.display_name for c in details.containers if c.display_name is not None]
        if self.unique_container_names and len(set(given)) != len(given):
            raise _invalid("Container displayNames must be unique within a container instance.")
        for i, container in enumerate(details.containers):
            self._check_container(container, set(names), f"containers[{i}]")
        [vnic] = details.vnics
        if vnic.private_ip is not None:
            network = self.subnets[vnic.subnet_id]
            try:
                wanted = ipaddress.ip_address(vnic.private_ip)
            except ValueError:
                raise _invalid(f"vnics[0].privateIp {vnic.private_ip} is not an IP address.") from None
            if wanted not in set(self._usable(network)):
                raise _invalid(f"vnics[0].privateIp {wanted} is not an available address of {network}.")
            if str(wanted) in self._ips_in_use():
                raise _oci_error(409, "Conflict", f"The private IP {wanted} is already in use.")

    @staticmethod
    def _check_volume(volume: Any, where: str) -> None:
        empty_dir = isinstance(volume, ci_models.CreateContainerEmptyDirVolumeDetails)
        if empty_dir and volume.backing_store not in (None, *BACKING_STORES):
            raise _invalid(f"{where}.backingStore must be one of {list(BACKING_STORES)}.")
        if isinstance(volume, ci_models.CreateContainerConfigFileVolumeDetails):
            files = [f.file_name for f in volume.configs or []]
            if len(set(files)) != len(files):
                raise _invalid(f"{where}: fileNames must be unique within the volume.")
            for j, config in enumerate(volume.configs or []):
                if not _is_base64(config.data):
                    raise _invalid(f"{where}.configs[{j}].data is not valid base64.")

    @staticmethod
    def _check_container(container: Any, volumes: set[str], where: str) -> None:
        for j, mount in enumerate(container.volume_mounts or []):
            if mount.volume_name not in volumes:
                raise _invalid(f"{where}.volumeMounts[{j}].volumeName {mount.volume_name} names no volume.")
        environment = container.environment_variables or {}
        if sum(len(k.encode()) + len(v.encode()) for k, v in environment.items()) > MAX_ENVIRONMENT_BYTES:
            raise _invalid(f"{where}.environmentVariables take more than 64 KB.")
        if sum(len(a.encode()) for a in container.arguments or []) > MAX_ENVIRONMENT_BYTES:
            raise _invalid(f"{where}.arguments take more than 64 KB.")
        for j, check in enumerate(container.health_checks or []):
            if not 1 <= check.port <= 65535:
                raise _invalid(f"{where}.healthChecks[{j}].port must be within 1..65535.")
            for name in ("initial_delay_in_seconds", "interval_in_seconds", "timeout_in_seconds"):
                if (getattr(check, name) or 0) < 0:
                    raise _invalid(f"{where}.healthChecks[{j}]: {name} must not be negative.")
            for name in ("failure_threshold", "success_threshold"):
                if getattr(check, name) is not None and getattr(check, name) < 1:
                    raise _invalid(f"{where}.healthChecks[{j}]: {name} must be 1 or more.")
        resources = container.resource_config
        if resources is not None and any(
            v is not None and v <= 0 for v in (resources.vcpus_limit, resources.memory_limit_in_gbs)
        ):
            raise _invalid(f"{where}.resourceConfig limits must be positive.")

    def _build(self, details: Any, principal: str | None) -> InstanceState:
        now = _now()
        self._sequence += 1
        instance_id = _ocid("computecontainerinstance", self.region)
        containers = [
            ContainerState(
                id=_ocid("computecontainer", self.region),
                instance_id=instance_id,
                display_name=c.display_name or f"container-{now:%Y%m%d-%H%M}-{i + 1}",
                details=c,
                created=now,
            )
            for i, c in enumerate(details.containers)
        ]
        [asked] = details.vnics
        public_ip = None
        if asked.is_public_ip_assigned:
            self._public_ips += 1
            public_ip = str(ipaddress.ip_network(PUBLIC_CIDR)[9 + self._public_ips])
        vnic = VnicState(
            id=_ocid("vnic", self.region),
            subnet_id=asked.subnet_id,
            private_ip=self._allocate(asked.subnet_id, asked.private_ip),
            public_ip=public_ip,
            nsg_ids=list(asked.nsg_ids or []),
            display_name=asked.display_name,
            hostname_label=asked.hostname_label,
            skip_source_dest_check=bool(asked.skip_source_dest_check),
            mac_address="02:00:17:" + ":".join(f"{self._sequence >> shift & 255:02X}" for shift in (16, 8, 0)),
            created=now,
        )
        instance = InstanceState(
            id=instance_id,
            sequence=self._sequence,
            compartment_id=details.compartment_id,
            availability_domain=details.availability_domain,
            fault_domain=details.fault_domain or "FAULT-DOMAIN-1",
            display_name=details.display_name or f"container-instance-{now:%Y%m%d-%H%M}",
            details=details,
            containers=containers,
            vnic=vnic,
            principal=principal,
            created=now,
        )
        unpullable = [c.image_url for c in details.containers if c.image_url in self.unpullable_images]
        verdict = self.fails(details) if self.fails is not None else None
        if unpullable:
            instance.outcome, instance.failure = "FAILED", f"Failed to pull image {unpullable[0]}."
        elif verdict:
            instance.outcome = "FAILED"
            instance.failure = verdict if isinstance(verdict, str) else "The container instance could not be created."
        self.instances[instance.id] = instance
        self.vnics[vnic.id] = instance
        self.containers.update({c.id: c for c in containers})
        self._work_request(instance, "CREATE_CONTAINER_INSTANCE")
        return instance

    def _work_request(self, instance: InstanceState, operation: str) -> ContainerWorkRequest:
        work_request = ContainerWorkRequest(
            id=_ocid("computecontainerworkrequest", self.region),
            operation_type=operation,
            instance_id=instance.id,
            compartment_id=instance.compartment_id,
            accepted=_now(),
        )
        self.work_requests[work_request.id] = work_request
        instance.work_requests.append(work_request.id)
        return work_request

    @staticmethod
    def _usable(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Iterator[Any]:
        """Host addresses OCI hands out: all but the first two and the last."""
        first, last = int(network.network_address) + 2, int(network.broadcast_address) - 1
        return (ipaddress.ip_address(n) for n in range(first, last + 1))

    def _ips_in_use(self) -> set[str]:
        return {i.vnic.private_ip for i in self.instances.values() if i.state != "DELETED"}

    def _allocate(self, subnet_id: str, wanted: str | None) -> str:
        if wanted is not None:
            address = str(ipaddress.ip_address(wanted))
        else:
            in_use = self._ips_in_use()
            free = [str(a) for a in self._usable(self.subnets[subnet_id]) if str(a) not in in_use]
            if not free:
                raise _oci_error(409, "Conflict", f"No free private IP in subnet {subnet_id}.")
            address = next((a for a in free if a not in self._handed_out), free[0])
        self._handed_out.add(address)
        return address

    # --- Container Instances: lifecycle ----------------------------------------------------------

    def _poll(self, instance: InstanceState) -> None:
        """A GET of the instance or of its work request: where CREATING and DELETING move on."""
        if instance.state == "CREATING" and self.gets_until_active is not None:
            instance.polls += 1
            self._start(instance, "CREATE_CONTAINER_INSTANCE")
            if instance.polls >= self.gets_until_active:
                if instance.outcome == "ACTIVE" and self.on_active is not None:
                    self.on_active(instance)
                self._move(instance, instance.outcome)
        elif instance.state == "DELETING":
            instance.polls += 1
            self._start(instance, "DELETE_CONTAINER_INSTANCE")
            if instance.polls >= self.gets_until_deleted:
                self._move(instance, "DELETED")

    def _start(self, instance: InstanceState, operation: str) -> None:
        for work_request in self._work_requests_of(instance, operation):
            if work_request.status == "ACCEPTED":
                work_request.status, work_request.started = "IN_PROGRESS", _now()

    def _work_requests_of(self, instance: InstanceState, operation: str) -> list[ContainerWorkRequest]:
        return [
            self.work_requests[w]
            for w in instance.work_requests
            if self.work_requests[w].operation_type == operation and self.work_requests[w].finished is None
        ]

    def _move(self, instance: InstanceState, state: str) -> None:
        now = _now()
        instance.state, instance.updated, instance.polls = state, now, 0
        outcome = {"ACTIVE": "SUCCEEDED", "FAILED": "FAILED", "DELETING": "FAILED"}
        for work_request in self._work_requests_of(instance, "CREATE_CONTAINER_INSTANCE"):
            if state in outcome:
                work_request.status, work_request.finished = outcome[state], now
                work_request.started = work_request.started or now
        if state == "DELETED":
            for work_request in self._work_requests_of(instance, "DELETE_CONTAINER_INSTANCE"):
                work_request.status, work_request.finished = "SUCCEEDED", now
                work_request.started = work_request.started or now

    def _instance_for(self, instance_id: str, grant: PlatformGrant) -> InstanceState:
        instance = self.instances.get(instance_id)
        if instance is None or instance.compartment_id != grant.compartment_id:
            raise _not_found(f"no container instance {instance_id} the grant covers")
        return instance

    def _get_container_instance(self, call: _Call, grant: PlatformGrant) -> Reply:
        instance = self._instance_for(call.params[0], grant)
        self._poll(instance)
        return self._instance_reply(instance)

    def _delete_container_instance(self, call: _Call, grant: PlatformGrant) -> Reply:
        instance = self._instance_for(call.params[0], grant)
        if instance.state in ("DELETING", "DELETED"):
            raise _oci_error(409, "IncorrectState", f"The container instance is in state {instance.state}.")
        expected = call.headers.get("if-match")
        if expected is not None and expected != self._instance_reply(instance).headers["etag"]:
            raise _oci_error(412, "PreconditionFailed", "The resource's etag does not match if-match.")
        if self.on_deleted is not None:
            self.on_deleted(instance)
        self._move(instance, "DELETING")
        work_request = self._work_request(instance, "DELETE_CONTAINER_INSTANCE")
        return Reply(202, None, {"opc-work-request-id": work_request.id})

    def _list_container_instances(self, call: _Call, grant: PlatformGrant) -> Reply:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(call.target).query, keep_blank_values=True).items()}
        compartment = query.get("compartmentId")
        if not compartment:
            raise _oci_error(400, "MissingParameter", "Missing required parameter compartmentId.")
        if compartment != grant.compartment_id:
            raise _not_found(f"the grant does not cover compartment {compartment}")
        state = query.get("lifecycleState")
        if state is not None and state not in LIFECYCLE_STATES:
            raise _invalid(f"lifecycleState must be one of {list(LIFECYCLE_STATES)}.")
        sort_by = query.get("sortBy", "timeCreated")
        if sort_by not in ("timeCreated", "displayName"):
            raise _invalid("sortBy must be timeCreated or displayName.")
        order = query.get("sortOrder", "DESC" if sort_by == "timeCreated" else "ASC")
        if order not in ("ASC", "DESC"):
            raise _invalid("sortOrder must be ASC or DESC.")
        limit, start = self._page(query)
        found = [
            i
            for i in self.instances.values()
            if i.compartment_id == compartment
            and state in (None, i.state)
            and query.get("displayName") in (None, i.display_name)
            and query.get("availabilityDomain") in (None, i.availability_domain)
        ]
        found.sort(key=(lambda i: i.sequence) if sort_by == "timeCreated" else (lambda i: (i.display_name, i.sequence)))
        if order == "DESC":
            found.reverse()
        page = found[start : start + limit]
        collection = ci_models.ContainerInstanceCollection(items=[self._summary(i) for i in page])
        headers = {"opc-next-page": f"page-{start + limit}"} if start + limit < len(found) else {}
        body = serializer("container_instances").sanitize_for_serialization(collection, "ContainerInstanceCollection")
        return Reply(200, body, headers)

    @staticmethod
    def _page(query: Mapping[str, str]) -> tuple[int, int]:
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            raise _invalid("limit must be an integer.") from None
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise _invalid(f"limit must be within 1..{MAX_LIST_LIMIT}.")
        page = query.get("page")
        if page is None:
            return limit, 0
        if not page.startswith("page-") or not page.removeprefix("page-").isdigit():
            raise _invalid("page is not a page token this list answered.")
        return limit, int(page.removeprefix("page-"))

    def _get_container_work_request(self, call: _Call, grant: PlatformGrant) -> Reply:
        work_request = self.work_requests.get(call.params[0])
        if work_request is None or work_request.compartment_id != grant.compartment_id:
            raise _not_found(f"no work request {call.params[0]} the grant covers")
        instance = self.instances[work_request.instance_id]
        if work_request.finished is None:
            self._poll(instance)
        done = work_request.status in ("SUCCEEDED", "FAILED")
        action = {
            ("CREATE_CONTAINER_INSTANCE", "SUCCEEDED"): "CREATED",
            ("DELETE_CONTAINER_INSTANCE", "SUCCEEDED"): "DELETED",
        }.get((work_request.operation_type, work_request.status), "FAILED" if done else "IN_PROGRESS")
        model = ci_models.WorkRequest(
            id=work_request.id,
            operation_type=work_request.operation_type,
            status=work_request.status,
            compartment_id=work_request.compartment_id,
            resources=[
                ci_models.WorkRequestResource(
                    entity_type="ContainerInstance",
                    action_type=action,
                    identifier=instance.id,
                    entity_uri=f"/{CONTAINER_INSTANCES_VERSION}/containerInstances/{instance.id}",
                )
            ],
            percent_complete=100.0 if done else (50.0 if work_request.status == "IN_PROGRESS" else 0.0),
            time_accepted=work_request.accepted,
            time_started=work_request.started,
            time_finished=work_request.finished,
        )
        return self._reply(model, "WorkRequest", "container_instances")

    # --- Container Instances: answers ------------------------------------------------------------

    def _shape_config(self, instance: InstanceState) -> Any:
        asked = instance.details.shape_config
        return ci_models.ContainerInstanceShapeConfig(
            ocpus=float(asked.ocpus),
            memory_in_gbs=float(asked.memory_in_gbs if asked.memory_in_gbs is not None else asked.ocpus * 16),
            processor_description=PROCESSORS.get(instance.details.shape, instance.details.shape),
            networking_bandwidth_in_gbps=float(asked.ocpus),
        )

    def _lifecycle_details(self, instance: InstanceState) -> str | None:
        return instance.failure if instance.state == "FAILED" else None

    def instance_model(self, instance: InstanceState) -> Any:
        """The instance as the SDK's `ContainerInstance`."""
        details = instance.details
        attached = instance.state in ("ACTIVE", "DELETING")
        return ci_models.ContainerInstance(
            id=instance.id,
            display_name=instance.display_name,
            compartment_id=instance.compartment_id,
            freeform_tags=details.freeform_tags or {},
            defined_tags=details.defined_tags or {},
            system_tags={},
            availability_domain=instance.availability_domain,
            fault_domain=instance.fault_domain,
            lifecycle_state=instance.state,
            lifecycle_details=self._lifecycle_details(instance),
            volumes=_answer(details.volumes or []),
            volume_count=len(details.volumes or []),
            containers=[
                ci_models.ContainerInstanceContainer(container_id=c.id, display_name=c.display_name)
                for c in instance.containers
            ],
            container_count=len(instance.containers),
            time_created=instance.created,
            time_updated=instance.updated,
            shape=details.shape,
            shape_config=self._shape_config(instance),
            vnics=[ci_models.ContainerVnic(vnic_id=instance.vnic.id)] if attached else [],
            dns_config=_answer(details.dns_config),
            graceful_shutdown_timeout_in_seconds=details.graceful_shutdown_timeout_in_seconds or 0,
            image_pull_secrets=_answer(details.image_pull_secrets or []),
            container_restart_policy=details.container_restart_policy or "ALWAYS",
            security_context=_answer(details.security_context),
        )

    def _instance_reply(self, instance: InstanceState, **headers: str) -> Reply:
        return self._reply(self.instance_model(instance), "ContainerInstance", "container_instances", **headers)

    def _summary(self, instance: InstanceState) -> Any:
        details = instance.details
        return ci_models.ContainerInstanceSummary(
            id=instance.id,
            display_name=instance.display_name,
            compartment_id=instance.compartment_id,
            freeform_tags=details.freeform_tags or {},
            defined_tags=details.defined_tags or {},
            system_tags={},
            availability_domain=instance.availability_domain,
            fault_domain=instance.fault_domain,
            lifecycle_state=instance.state,
            lifecycle_details=self._lifecycle_details(instance),
            time_created=instance.created,
            time_updated=instance.updated,
            shape=details.shape,
            shape_config=self._shape_config(instance),
            container_count=len(instance.containers),
            graceful_shutdown_timeout_in_seconds=details.graceful_shutdown_timeout_in_seconds or 0,
            volume_count=len(details.volumes or []),
            container_restart_policy=details.container_restart_policy or "ALWAYS",
        )

    def _get_container(self, call: _Call, grant: PlatformGrant) -> Reply:
        container = self.containers.get(call.params[0])
        if container is None or self.instances[container.instance_id].compartment_id != grant.compartment_id:
            raise _not_found(f"no container {call.params[0]} the grant covers")
        instance = self.instances[container.instance_id]
        if instance.state == "ACTIVE":
            container.health_gets += 1
        status = self._container_status(container, instance)
        killing = any((c.failure_action or "KILL") == "KILL" for c in container.details.health_checks or [])
        if status == "UNHEALTHY" and killing:
            container.restarts += 1
        return self._reply(self.container_model(container), "Container", "container_instances")

    def _container_status(self, container: ContainerState, instance: InstanceState) -> str:
        if instance.state != "ACTIVE" or container.health_gets < self.container_gets_until_healthy:
            return "UNKNOWN"
        return "HEALTHY" if self.healthy(container.image_url) else "UNHEALTHY"

    def container_model(self, container: ContainerState) -> Any:
        """The container as the SDK's `Container` (its health as last evaluated)."""
        instance = self.instances[container.instance_id]
        details = container.details
        status = self._container_status(container, instance)
        checks = []
        for check in details.health_checks or []:
            answer = _answer(check)
            answer.failure_action = check.failure_action or "KILL"
            answer.status = status
            if status == "UNHEALTHY":
                answer.status_details = (
                    f"HTTP GET http://localhost:{check.port}{check.path} answered 503"
                    if check.health_check_type == "HTTP"
                    else f"TCP connect to port {check.port} refused"
                )
            checks.append(answer)
        failure = None
        if instance.state == "FAILED":
            failure = (
                f"Failed to pull image {container.image_url}."
                if container.image_url in self.unpullable_images
                else instance.failure
            )
        return ci_models.Container(
            id=container.id,
            display_name=container.display_name,
            compartment_id=instance.compartment_id,
            freeform_tags=details.freeform_tags or {},
            defined_tags=details.defined_tags or {},
            system_tags={},
            availability_domain=instance.availability_domain,
            fault_domain=instance.fault_domain,
            lifecycle_state=instance.state,
            lifecycle_details=failure,
            time_terminated=instance.updated if instance.state == "DELETED" else None,
            time_created=container.created,
            time_updated=instance.updated,
            container_instance_id=instance.id,
            image_url=details.image_url,
            command=details.command,
            arguments=details.arguments,
            working_directory=details.working_directory,
            environment_variables=details.environment_variables or {},
            volume_mounts=_answer(details.volume_mounts or []),
            health_checks=checks,
            is_resource_principal_disabled=bool(details.is_resource_principal_disabled),
            resource_config=_answer(details.resource_config),
            container_restart_attempt_count=container.restarts,
            security_context=_answer(details.security_context),
        )

    # --- Core: VNICs ---------------------------------------------------------------------------

    def _get_vnic(self, call: _Call, grant: PlatformGrant) -> Reply:
        instance = self.vnics.get(call.params[0])
        if (
            instance is None
            or instance.compartment_id != grant.compartment_id
            or instance.state not in ("ACTIVE", "DELETING", "DELETED")
        ):
            raise _not_found(f"no VNIC {call.params[0]} the grant covers")
        vnic = instance.vnic
        state = {"ACTIVE": "AVAILABLE", "DELETING": "TERMINATING", "DELETED": "TERMINATED"}[instance.state]
        model = core_models.Vnic(
            availability_domain=instance.availability_domain,
            compartment_id=instance.compartment_id,
            defined_tags={},
            display_name=vnic.display_name or instance.display_name,
            freeform_tags={},
            hostname_label=vnic.hostname_label,
            id=vnic.id,
            is_primary=True,
            lifecycle_state=state,
            mac_address=vnic.mac_address,
            nsg_ids=vnic.nsg_ids,
            private_ip=vnic.private_ip,
            public_ip=vnic.public_ip,
            skip_source_dest_check=vnic.skip_source_dest_check,
            subnet_id=vnic.subnet_id,
            time_created=vnic.created,
        )
        return self._reply(model, "Vnic", "core")

    # --- Load Balancer ---------------------------------------------------------------------------

    def _backend_set(self, call: _Call, grant: PlatformGrant) -> tuple[str, str, BackendSetSpec]:
        lb, set_name = call.params[:2]
        spec = self.load_balancers.get(lb, {}).get(set_name)
        if spec is None or lb not in grant.load_balancer_ids:
            raise _not_found(f"no backend set {set_name} of load balancer {lb} the grant covers")
        return lb, set_name, spec

    def _backend(self, lb: str, set_name: str, name: str) -> BackendState:
        backend = next((b for b in self._backends[(lb, set_name)] if b.name == name), None)
        if backend is None:
            raise _not_found(f"no backend {name} in backend set {set_name}")
        return backend

    def settle(self) -> None:
        """Every load balancer work request still under way ends, as OCI's do on their own within
        seconds whether anyone reads them or not (here they move only when read): what a test
        calls for time passing after a client stopped waiting."""
        with self._lock:
            for work_request in self.lb_work_requests.values():
                if not work_request.done:
                    if work_request.error is None:
                        work_request.apply()
                    work_request.state = "FAILED" if work_request.error else "SUCCEEDED"
                    work_request.finished = _now()
            self._record_traffic()

    def _idle(self, lb: str) -> None:
        busy = [w for w in self.lb_work_requests.values() if w.load_balancer_id == lb and not w.done]
        if busy:
            raise _oci_error(409, "Conflict", LB_CONFLICT, f"work request {busy[0].id} is {busy[0].state}")

    def _retried(self, call: _Call) -> Reply | None:
        """The answer to an earlier request with the same opc-retry-token (None: there is none);
        409 Conflict when that request was another one."""
        token = call.headers.get("opc-retry-token")
        earlier = self._retry_tokens.get((call.principal, token)) if token else None
        if earlier is None:
            return None
        if earlier[0] != f"{call.method} {call.target} {call.body.decode(errors='replace')}":
            raise _oci_error(409, "Conflict", "The retry token was used for a different request.")
        return Reply(204, None, {"opc-work-request-id": earlier[2]})

    def _change(self, call: _Call, lb: str, kind: str, description: str, apply: Callable[[], None]) -> Reply:
        """A load balancer work request that will `apply` the change, remembered under the
        request's opc-retry-token."""
        work_request = LbWorkRequest(
            id=_ocid("loadbalancerworkrequest", self.region),
            load_balancer_id=lb,
            type=kind,
            description=description,
            apply=apply,
            error=self._lb_failures.popleft() if self._lb_failures else None,
        )
        self.lb_work_requests[work_request.id] = work_request
        token = call.headers.get("opc-retry-token")
        if token:
            request = f"{call.method} {call.target} {call.body.decode(errors='replace')}"
            self._retry_tokens[(call.principal, token)] = (request, lb, work_request.id)
        return Reply(204, None, {"opc-work-request-id": work_request.id})

    @staticmethod
    def _check_backend(details: Any, spec: BackendSetSpec) -> None:
        if details.backup and spec.policy == "IP_HASH":
            raise _invalid("A backup backend cannot be added to a backend set with the IP_HASH policy.")
        if details.max_connections not in (None, 0) and details.max_connections < 256:
            raise _invalid("maxConnections must be 0 or at least 256.")
        if details.weight is not None and details.weight < 0:
            raise _invalid("weight must not be negative.")

    def _create_backend(self, call: _Call, grant: PlatformGrant) -> Reply:
        lb, set_name, spec = self._backend_set(call, grant)
        retried = self._retried(call)
        if retried is not None:
            return retried
        details = sdk_model(_json(call), "CreateBackendDetails", type_mapping=LB_TYPES)
        try:
            ip = str(ipaddress.ip_address(details.ip_address))
        except ValueError:
            raise _invalid(f"ipAddress {details.ip_address} is not an IP address.") from None
        if not 1 <= details.port <= 65535:
            raise _invalid("port must be within 1..65535.")
        self._check_backend(details, spec)
        self._idle(lb)
        name = f"{ip}:{details.port}"
        if any(b.name == name for b in self._backends[(lb, set_name)]):
            raise _oci_error(409, "Conflict", f"Backend {name} already exists in backend set {set_name}.")
        backend = BackendState(
            name,
            ip,
            details.port,
            weight=1 if details.weight is None else details.weight,
            max_connections=details.max_connections,
            backup=bool(details.backup),
            drain=bool(details.drain),
            offline=bool(details.offline),
        )
        return self._change(
            call,
            lb,
            "CreateBackend",
            f"Create backend {name} in {set_name}",
            lambda: self._backends[(lb, set_name)].append(backend),
        )

    def _list_backends(self, call: _Call, grant: PlatformGrant) -> Reply:
        lb, set_name, _ = self._backend_set(call, grant)
        models = [self._backend_model(b) for b in self._backends[(lb, set_name)]]
        return Reply(200, serializer("load_balancer").sanitize_for_serialization(models, "list[Backend]"))

    def _get_backend(self, call: _Call, grant: PlatformGrant) -> Reply:
        lb, set_name, _ = self._backend_set(call, grant)
        return self._reply(self._backend_model(self._backend(lb, set_name, call.params[2])), "Backend", "load_balancer")

    def _update_backend(self, call: _Call, grant: PlatformGrant) -> Reply:
        lb, set_name, spec = self._backend_set(call, grant)
        retried = self._retried(call)
        if retried is not None:
            return retried
        details = sdk_model(_json(call), "UpdateBackendDetails", type_mapping=LB_TYPES)
        self._check_backend(details, spec)
        self._idle(lb)
        backend = self._backend(lb, set_name, call.params[2])

        def apply() -> None:
            backend.weight, backend.backup, backend.drain, backend.offline = (
                details.weight,
                details.backup,
                details.drain,
                details.offline,
            )
            backend.max_connections = details.max_connections

        return self._change(call, lb, "UpdateBackend", f"Update backend {backend.name} in {set_name}", apply)

    def _delete_backend(self, call: _Call, grant: PlatformGrant) -> Reply:
        lb, set_name, _ = self._backend_set(call, grant)
        self._idle(lb)
        backend = self._backend(lb, set_name, call.params[2])
        return self._change(
            call,
            lb,
            "DeleteBackend",
            f"Delete backend {backend.name} from {set_name}",
            lambda: self._backends[(lb, set_name)].remove(backend),
        )

    def _get_backend_health(self, call: _Call, grant: PlatformGrant) -> Reply:
        lb, set_name, spec = self._backend_set(call, grant)
        backend = self._backend(lb, set_name, call.params[2])
        backend.health_polls += 1
        status, results = self._health(spec, backend)
        model = lb_models.BackendHealth(status=status, health_check_results=results)
        return self._reply(model, "BackendHealth", "load_balancer")

    def _get_lb_work_request(self, call: _Call, grant: PlatformGrant) -> Reply:
        work_request = self.lb_work_requests.get(call.params[0])
        if work_request is None or work_request.load_balancer_id not in grant.load_balancer_ids:
            raise _not_found(f"no load balancer work request {call.params[0]} the grant covers")
        if not work_request.done:
            work_request.gets += 1
            if work_request.gets > self.lb_work_request_gets:
                if work_request.error is None:
                    work_request.apply()
                work_request.state = "FAILED" if work_request.error else "SUCCEEDED"
                work_request.finished = _now()
            elif work_request.gets > 1:
                work_request.state = "IN_PROGRESS"
        outcome = {
            "ACCEPTED": "accepted",
            "IN_PROGRESS": "in progress",
            "SUCCEEDED": "completed successfully",
            "FAILED": f"failed: {work_request.error[1] if work_request.error else ''}",
        }[work_request.state]
        model = lb_models.WorkRequest(
            id=work_request.id,
            load_balancer_id=work_request.load_balancer_id,
            type=work_request.type,
            lifecycle_state=work_request.state,
            message=f"{work_request.type} {work_request.id} on {work_request.load_balancer_id}: "
            f"{work_request.description} {outcome}",
            time_accepted=work_request.accepted,
            time_finished=work_request.finished,
            error_details=[
                lb_models.WorkRequestError(error_code=code, message=message)
                for code, message in ([work_request.error] if work_request.error and work_request.done else [])
            ],
        )
        return self._reply(model, "WorkRequest", "load_balancer")

    @staticmethod
    def _backend_model(backend: BackendState) -> Any:
        return lb_models.Backend(
            name=backend.name,
            ip_address=backend.ip_address,
            port=backend.port,
            weight=backend.weight,
            max_connections=backend.max_connections,
            drain=backend.drain,
            backup=backend.backup,
            offline=backend.offline,
        )

    # --- health and traffic ----------------------------------------------------------------------

    def _probe(self, spec: BackendSetSpec, backend: BackendState) -> str:
        """What one health check of the backend finds (a HealthCheckResult status)."""
        port = spec.port or backend.port
        instance = next(
            (i for i in self.instances.values() if i.state == "ACTIVE" and i.vnic.private_ip == backend.ip_address),
            None,
        )
        if instance is None:
            return "CONNECT_FAILED"
        for container in instance.containers:
            for check in container.details.health_checks or []:
                if check.port == port:
                    if self.healthy(container.image_url):
                        return "OK"
                    return "INVALID_STATUS_CODE" if check.health_check_type == "HTTP" else "CONNECT_FAILED"
        return "CONNECT_FAILED"

    def _health(self, spec: BackendSetSpec, backend: BackendState) -> tuple[str, list[Any]]:
        """Its health as its last health GET answered it (UNKNOWN up to `health_unknown_polls`
        of them, a fresh check after that)."""
        if self.health_unknown_polls and backend.health_polls <= self.health_unknown_polls:
            return "UNKNOWN", []
        found = self._probe(spec, backend)
        result = lb_models.HealthCheckResult(
            subnet_id=LB_SUBNET, source_ip_address=LB_SOURCE_IP, timestamp=_now(), health_check_status=found
        )
        return ("OK" if found == "OK" else "CRITICAL"), [result]

    def _serving(self, key: tuple[str, str]) -> frozenset[str]:
        spec = self.load_balancers[key[0]][key[1]]
        healthy = [b for b in self._backends[key] if not (b.drain or b.offline) and self._health(spec, b)[0] == "OK"]
        primaries = frozenset(b.name for b in healthy if not b.backup)
        return primaries or frozenset(b.name for b in healthy if b.backup)

    def _by_age(self) -> list[InstanceState]:
        return sorted(self.instances.values(), key=lambda i: i.sequence)
