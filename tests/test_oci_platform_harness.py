"""The Container Instances, VNIC and Load Balancer routes of the OCI stand-in
(tests/harness/oci_platform.py) are strict and right: the OCI SDK's clients, well-behaved,
get through a blue/green deploy; what OCI refuses, the stand-in refuses with OCI's status and
code; and the simulation shows where a deploy's traffic went."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import oci
import pytest
from oci._vendor import requests

from tests.harness.oci_api import ApiKey, OciApi, Principal, sdk_model, type_mapping
from tests.harness.oci_platform import (
    DEFAULT_AVAILABILITY_DOMAINS,
    BackendSetSpec,
    Platform,
    PlatformGrant,
)

REGION = "eu-frankfurt-1"
COMPARTMENT = "ocid1.compartment.oc1..staging"
OTHER_COMPARTMENT = "ocid1.compartment.oc1..production"
SUBNET = "ocid1.subnet.oc1.eu-frankfurt-1.app"
OTHER_SUBNET = "ocid1.subnet.oc1.eu-frankfurt-1.database"
NSG = "ocid1.networksecuritygroup.oc1.eu-frankfurt-1.app"
OTHER_NSG = "ocid1.networksecuritygroup.oc1.eu-frankfurt-1.database"
SECRET = "ocid1.vaultsecret.oc1.eu-frankfurt-1.registry"
LB = "ocid1.loadbalancer.oc1.eu-frankfurt-1.staging"
OTHER_LB = "ocid1.loadbalancer.oc1.eu-frankfurt-1.production"
AD = DEFAULT_AVAILABILITY_DOMAINS[0]
IMAGE = "ghcr.io/owner/app:2"
OLD_IMAGE = "ghcr.io/owner/app:1"
BROKEN = "ghcr.io/owner/app:broken"
PORT = 8080
TIMEOUT = (2, 5)


@pytest.fixture(scope="module")
def ci_key() -> ApiKey:
    return ApiKey.generate()


@pytest.fixture
def ci(ci_key: ApiKey) -> Principal:
    grant = PlatformGrant(COMPARTMENT, subnet_ids=[SUBNET], nsg_ids=[NSG], load_balancer_ids=[LB], secret_ids=[SECRET])
    return Principal("ocid1.user.oc1..ci", api_key=ci_key, platform=grant)


@pytest.fixture
def outsider(ci_key: ApiKey) -> Principal:
    """A user with an API key and no grant on the platform (a bastion user, say)."""
    return Principal(
        "ocid1.user.oc1..outsider", bastions=["ocid1.bastion.oc1..x"], target=("10.0.1.5", 22), api_key=ci_key
    )


@pytest.fixture
def make_api(ci: Principal, outsider: Principal) -> Iterator[Callable[..., OciApi]]:
    """Starts a stand-in (stopped after the test) whose platform has the app and database
    subnets, the staging load balancer (backend sets `web` and `sticky`, IP_HASH) and the
    production one; `kwargs` go to `Platform`."""

    def make(**kwargs: Any) -> OciApi:
        platform = Platform(
            subnets={SUBNET: "10.0.1.0/24", OTHER_SUBNET: "10.0.2.0/24"},
            load_balancers={
                LB: {"web": BackendSetSpec(), "sticky": BackendSetSpec(policy="IP_HASH")},
                OTHER_LB: {"web-production": BackendSetSpec()},
            },
            **kwargs,
        )
        return servers.enter_context(OciApi(region=REGION, principals=[ci, outsider], platform=platform))

    with contextlib.ExitStack() as servers:
        yield make


@pytest.fixture
def api(make_api: Callable[..., OciApi]) -> OciApi:
    return make_api()


@functools.cache
def _signer(tenancy: str, user: str, fingerprint: str, private_pem: str) -> oci.signer.Signer:
    """Loading an RSA private key checks it, which takes tens of milliseconds: once per key."""
    return oci.signer.Signer(tenancy, user, fingerprint, None, private_key_content=private_pem)


def signer(principal: Principal) -> oci.signer.Signer:
    assert principal.api_key is not None
    return _signer(principal.tenancy, principal.user, principal.api_key.fingerprint, principal.api_key.private_pem)


def clients(api: OciApi, principal: Principal) -> SimpleNamespace:
    """The SDK's three clients as the principal, against the stand-in."""
    options = {
        "signer": signer(principal),
        "service_endpoint": api.url,
        "retry_strategy": oci.retry.NoneRetryStrategy(),
        "circuit_breaker_strategy": oci.circuit_breaker.NoCircuitBreakerStrategy(),
        "timeout": TIMEOUT,
    }
    config = principal.sdk_config(api.region)
    return SimpleNamespace(
        ci=oci.container_instances.ContainerInstanceClient(config, **options),
        lb=oci.load_balancer.LoadBalancerClient(config, **options),
        vn=oci.core.VirtualNetworkClient(config, **options),
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def container(image: str = IMAGE, name: str = "app", **changes: Any) -> dict[str, Any]:
    body = {
        "displayName": name,
        "imageUrl": image,
        "environmentVariables": {"APP_ENV": "staging"},
        "volumeMounts": [{"mountPath": "/etc/app", "volumeName": "config"}],
        "healthChecks": [
            {"healthCheckType": "HTTP", "name": "http", "path": "/healthz", "port": PORT, "intervalInSeconds": 10}
        ],
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def instance_details(*containers: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A CreateContainerInstanceDetails body as a deploy client sends it; `changes` replace
    top-level fields (None removes one)."""
    body = {
        "displayName": "app-staging",
        "compartmentId": COMPARTMENT,
        "availabilityDomain": AD,
        "shape": "CI.Standard.A1.Flex",
        "shapeConfig": {"ocpus": 1, "memoryInGBs": 6},
        "containers": list(containers) or [container()],
        "vnics": [{"subnetId": SUBNET, "nsgIds": [NSG]}],
        "volumes": [
            {"name": "config", "volumeType": "CONFIGFILE", "configs": [{"fileName": "app.conf", "data": b64("x=1")}]}
        ],
        "imagePullSecrets": [
            {"secretType": "BASIC", "registryEndpoint": "ghcr.io", "username": b64("ci"), "password": b64("t")}
        ],
        "containerRestartPolicy": "ALWAYS",
        "freeformTags": {"environment": "staging"},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def send(api: OciApi, method: str, path: str, principal: Principal | None, body: Any = None) -> tuple[int, Any]:
    """One request signed as the principal (None: unsigned), with `body` as JSON: status and JSON."""
    data = body if body is None or isinstance(body, str) else json.dumps(body)
    prepared = requests.Request(
        method, api.url + path, data=data, headers={"content-type": "application/json"}
    ).prepare()
    if principal is not None:
        signer(principal)(prepared)
    with requests.Session() as session:
        response = session.send(prepared, timeout=TIMEOUT)
    assert response.headers.get("opc-request-id")
    return response.status_code, response.json() if response.content else None


def create(sdk: SimpleNamespace, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    return sdk.ci.create_container_instance(body or instance_details(), **kwargs)


def until_active(sdk: SimpleNamespace, instance_id: str, polls: int = 5) -> Any:
    for _ in range(polls):
        instance = sdk.ci.get_container_instance(instance_id).data
        if instance.lifecycle_state != "CREATING":
            return instance
    raise AssertionError(f"{instance_id} is still CREATING")


def finish(sdk: SimpleNamespace, change: Any, polls: int = 5) -> list[str]:
    """Polls the load balancer work request of `change` (a response, or the work request's
    OCID) until it is done: the states it answered."""
    if not isinstance(change, str):
        assert change.status == 204
        change = change.headers["opc-work-request-id"]
    states = []
    for _ in range(polls):
        states.append(sdk.lb.get_work_request(change).data.lifecycle_state)
        if states[-1] in ("SUCCEEDED", "FAILED"):
            return states
    raise AssertionError(f"work request still {states[-1]}")


def backend(ip: str, port: int = PORT, **flags: bool) -> dict[str, Any]:
    return {"ipAddress": ip, "port": port, **flags}


def update(weight: int = 1, backup: bool = False, drain: bool = False, offline: bool = False) -> dict[str, Any]:
    return {"weight": weight, "backup": backup, "drain": drain, "offline": offline}


def until_health(sdk: SimpleNamespace, set_name: str, name: str, polls: int = 5) -> list[str]:
    states = []
    for _ in range(polls):
        states.append(sdk.lb.get_backend_health(LB, set_name, name).data.status)
        if states[-1] != "UNKNOWN":
            return states
    return states


# --- container instances -------------------------------------------------------------------------


def test_the_sdk_creates_reads_lists_and_deletes_a_container_instance(api, ci):
    sdk = clients(api, ci)
    created = create(sdk)
    assert created.status == 200
    assert created.data.lifecycle_state == "CREATING"
    assert created.data.id.startswith(f"ocid1.computecontainerinstance.oc1.{REGION}.")
    assert created.data.vnics == []
    assert created.headers["etag"]
    create_work = created.headers["opc-work-request-id"]
    assert api.platform.work_requests[create_work].status == "ACCEPTED"

    assert sdk.ci.get_container_instance(created.data.id).data.lifecycle_state == "CREATING"
    active = sdk.ci.get_container_instance(created.data.id).data
    assert active.lifecycle_state == "ACTIVE"
    assert (active.shape, active.shape_config.ocpus, active.shape_config.memory_in_gbs) == ("CI.Standard.A1.Flex", 1, 6)
    assert active.image_pull_secrets[0].registry_endpoint == "ghcr.io"
    status, raw = send(api, "GET", f"/20210415/containerInstances/{created.data.id}", ci)
    assert status == 200
    assert raw["imagePullSecrets"] == [{"secretType": "BASIC", "registryEndpoint": "ghcr.io"}]  # no credentials
    assert raw["volumes"][0]["configs"] == [{"fileName": "app.conf", "data": b64("x=1")}]
    work = sdk.ci.get_work_request(create_work).data
    assert (work.status, work.operation_type, work.resources[0].identifier) == (
        "SUCCEEDED",
        "CREATE_CONTAINER_INSTANCE",
        created.data.id,
    )

    vnic = sdk.vn.get_vnic(active.vnics[0].vnic_id).data
    assert (vnic.private_ip, vnic.subnet_id, vnic.nsg_ids, vnic.lifecycle_state) == (
        "10.0.1.2",
        SUBNET,
        [NSG],
        "AVAILABLE",
    )
    assert vnic.public_ip is None
    [app] = active.containers
    got = sdk.ci.get_container(app.container_id).data
    assert (got.display_name, got.image_url, got.container_instance_id) == ("app", IMAGE, created.data.id)
    assert got.environment_variables == {"APP_ENV": "staging"}
    assert got.volume_mounts[0].volume_name == "config"
    assert got.health_checks[0].status == "HEALTHY"

    listed = sdk.ci.list_container_instances(COMPARTMENT).data.items
    assert [(i.id, i.lifecycle_state, i.display_name) for i in listed] == [(created.data.id, "ACTIVE", "app-staging")]

    deleted = sdk.ci.delete_container_instance(created.data.id)
    assert deleted.status == 202
    delete_work = deleted.headers["opc-work-request-id"]
    assert api.platform.instances[created.data.id].state == "DELETING"
    with pytest.raises(oci.exceptions.ServiceError) as again:
        sdk.ci.delete_container_instance(created.data.id)
    assert (again.value.status, again.value.code) == (409, "IncorrectState")
    assert sdk.ci.get_container_instance(created.data.id).data.lifecycle_state == "DELETED"
    assert sdk.ci.get_work_request(delete_work).data.status == "SUCCEEDED"
    assert sdk.ci.get_container(app.container_id).data.lifecycle_state == "DELETED"
    assert [i.lifecycle_state for i in sdk.ci.list_container_instances(COMPARTMENT).data.items] == ["DELETED"]
    assert api.platform.live_instances() == []
    assert {r.principal for r in api.requests} == {ci.user}


def test_instances_become_what_the_predicates_say(make_api, ci):
    api = make_api(
        gets_until_active=1,
        unpullable_images=[BROKEN],
        fails=lambda details: details.shape_config.ocpus > 4 and "out of capacity",
    )
    sdk = clients(api, ci)
    unpullable = create(sdk, instance_details(container(), container(BROKEN, name="worker")))
    failed = until_active(sdk, unpullable.data.id)
    assert (failed.lifecycle_state, failed.lifecycle_details) == ("FAILED", f"Failed to pull image {BROKEN}.")
    assert failed.vnics == []
    worker = sdk.ci.get_container(failed.containers[1].container_id).data
    assert (worker.lifecycle_state, worker.lifecycle_details) == ("FAILED", f"Failed to pull image {BROKEN}.")
    assert sdk.ci.get_work_request(unpullable.headers["opc-work-request-id"]).data.status == "FAILED"

    large = create(sdk, instance_details(shapeConfig={"ocpus": 8}))
    assert until_active(sdk, large.data.id).lifecycle_details == "out of capacity"


def test_the_work_request_is_a_poll_too_and_never_ending_creation_can_be_asked_for(make_api, ci):
    api = make_api(gets_until_active=2)
    sdk = clients(api, ci)
    created = create(sdk)
    work = created.headers["opc-work-request-id"]
    assert [sdk.ci.get_work_request(work).data.status for _ in range(3)] == ["IN_PROGRESS", "SUCCEEDED", "SUCCEEDED"]

    api = make_api(gets_until_active=None)
    sdk = clients(api, ci)
    created = create(sdk)
    assert {sdk.ci.get_container_instance(created.data.id).data.lifecycle_state for _ in range(5)} == {"CREATING"}


def test_container_health_is_unknown_until_active_then_what_the_image_gives(make_api, ci):
    api = make_api(healthy=lambda image: image != BROKEN)
    sdk = clients(api, ci)
    created = create(sdk, instance_details(container(), container(BROKEN, name="worker")))
    app, worker = (c.container_id for c in created.data.containers)
    assert sdk.ci.get_container(app).data.health_checks[0].status == "UNKNOWN"
    until_active(sdk, created.data.id)
    assert sdk.ci.get_container(app).data.health_checks[0].status == "HEALTHY"
    first = sdk.ci.get_container(worker).data
    assert (first.health_checks[0].status, first.container_restart_attempt_count) == ("UNHEALTHY", 1)
    assert first.health_checks[0].status_details == f"HTTP GET http://localhost:{PORT}/healthz answered 503"
    assert sdk.ci.get_container(worker).data.container_restart_attempt_count == 2


def test_private_ips_are_distinct_and_a_chosen_one_must_be_free(make_api, ci):
    api = make_api(gets_until_active=1)
    sdk = clients(api, ci)
    first = until_active(sdk, create(sdk).data.id)
    second_body = instance_details(vnics=[{"subnetId": SUBNET, "isPublicIpAssigned": True}])
    second = until_active(sdk, create(sdk, second_body).data.id)
    vnic = sdk.vn.get_vnic(second.vnics[0].vnic_id).data
    assert (api.platform.instances[first.id].private_ip, vnic.private_ip) == ("10.0.1.2", "10.0.1.3")
    assert vnic.public_ip == "203.0.113.10"

    status, error = send(
        api,
        "POST",
        "/20210415/containerInstances",
        ci,
        instance_details(vnics=[{"subnetId": SUBNET, "privateIp": "10.0.1.3"}]),
    )
    assert (status, error["code"]) == (409, "Conflict")
    sdk.ci.delete_container_instance(first.id)
    sdk.ci.get_container_instance(first.id)
    third = until_active(sdk, create(sdk).data.id)
    assert api.platform.instances[third.id].private_ip == "10.0.1.4"  # never-used addresses first
    chosen = create(sdk, instance_details(vnics=[{"subnetId": SUBNET, "privateIp": "10.0.1.2"}]))
    assert api.platform.instances[chosen.data.id].private_ip == "10.0.1.2"


def _two_vnics(body: dict[str, Any]) -> None:
    body["vnics"] = [{"subnetId": SUBNET}, {"subnetId": SUBNET}]


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        (lambda b: b.update(unknownField=1), 400, "InvalidParameter"),
        (lambda b: b["containers"][0].update(imageUrl=None), 400, "MissingParameter"),
        (lambda b: b.pop("shapeConfig"), 400, "MissingParameter"),
        (lambda b: b["containers"][0].update(extra="x"), 400, "InvalidParameter"),
        (lambda b: b["containers"][0]["healthChecks"][0].update(healthCheckType="GRPC"), 400, "InvalidParameter"),
        (lambda b: b["containers"][0]["healthChecks"][0].pop("healthCheckType"), 400, "MissingParameter"),
        (lambda b: b["containers"][0]["healthChecks"][0].pop("path"), 400, "MissingParameter"),
        (lambda b: b["containers"][0]["healthChecks"][0].update(failureAction="RESTART"), 400, "InvalidParameter"),
        (lambda b: b["containers"][0]["healthChecks"][0].update(port=0), 400, "InvalidParameter"),
        (lambda b: b["containers"][0]["healthChecks"][0].update(port=65536), 400, "InvalidParameter"),
        (lambda b: b["containers"][0]["healthChecks"][0].update(port="8080"), 400, "InvalidParameter"),
        (lambda b: b.update(containerRestartPolicy="SOMETIMES"), 400, "InvalidParameter"),
        (lambda b: b["volumes"][0]["configs"][0].update(data="not base64!"), 400, "InvalidParameter"),
        (lambda b: b["volumes"][0].update(volumeType="HOSTPATH"), 400, "InvalidParameter"),
        (
            lambda b: b["volumes"].append({"name": "cache", "volumeType": "EMPTYDIR", "backingStore": "DISK"}),
            400,
            "InvalidParameter",
        ),
        (lambda b: b["volumes"].append({"name": "config", "volumeType": "EMPTYDIR"}), 400, "InvalidParameter"),
        (lambda b: b["containers"][0]["volumeMounts"][0].update(volumeName="secrets"), 400, "InvalidParameter"),
        (lambda b: b["imagePullSecrets"][0].update(password="plain text"), 400, "InvalidParameter"),
        (lambda b: b["imagePullSecrets"][0].pop("username"), 400, "MissingParameter"),
        (lambda b: b["containers"].append(container(name="app")), 400, "InvalidParameter"),
        (lambda b: b["containers"][0].update(environmentVariables={"A": 1}), 400, "InvalidParameter"),
        (lambda b: b["containers"][0].update(environmentVariables={"A": "x" * 65536}), 400, "InvalidParameter"),
        (lambda b: b.update(shape="CI.Standard.E5.Flex"), 400, "InvalidParameter"),
        (lambda b: b.update(shapeConfig={"ocpus": 0}), 400, "InvalidParameter"),
        (lambda b: b.update(containers=[]), 400, "InvalidParameter"),
        (_two_vnics, 400, "InvalidParameter"),
        (lambda b: b.update(vnics=[]), 400, "InvalidParameter"),
        (lambda b: b["vnics"][0].update(privateIp="10.0.2.9"), 400, "InvalidParameter"),
        (lambda b: b.update(dnsConfig={"nameservers": "1.1.1.1"}), 400, "InvalidParameter"),
        (lambda b: b.update(compartmentId=OTHER_COMPARTMENT), 404, "NotAuthorizedOrNotFound"),
        (lambda b: b.update(availabilityDomain="Uocm:US-ASHBURN-AD-1"), 404, "NotAuthorizedOrNotFound"),
        (lambda b: b["vnics"][0].update(subnetId=OTHER_SUBNET), 404, "NotAuthorizedOrNotFound"),
        (lambda b: b["vnics"][0].update(subnetId="ocid1.subnet.oc1..unknown"), 404, "NotAuthorizedOrNotFound"),
        (lambda b: b["vnics"][0].update(nsgIds=[NSG, OTHER_NSG]), 404, "NotAuthorizedOrNotFound"),
        (
            lambda b: b.update(
                imagePullSecrets=[
                    {"secretType": "VAULT", "registryEndpoint": "ghcr.io", "secretId": "ocid1.vaultsecret..x"}
                ]
            ),
            404,
            "NotAuthorizedOrNotFound",
        ),
    ],
    ids=[
        "unknown-field",
        "no-image",
        "no-shape-config",
        "unknown-container-field",
        "unknown-health-check-type",
        "no-health-check-type",
        "http-check-without-path",
        "unknown-failure-action",
        "port-0",
        "port-65536",
        "port-string",
        "restart-policy",
        "config-not-base64",
        "unknown-volume-type",
        "unknown-backing-store",
        "duplicate-volume",
        "mount-names-no-volume",
        "password-not-base64",
        "no-username",
        "duplicate-container-name",
        "environment-not-strings",
        "environment-too-large",
        "unknown-shape",
        "no-ocpus",
        "no-containers",
        "two-vnics",
        "no-vnic",
        "ip-outside-subnet",
        "nameservers-not-a-list",
        "other-compartment",
        "unknown-availability-domain",
        "other-subnet",
        "unknown-subnet",
        "other-nsg",
        "other-secret",
    ],
)
def test_bodies_the_service_refuses_create_nothing(api, ci, change, status, code):
    body = instance_details()
    change(body)
    answer = send(api, "POST", "/20210415/containerInstances", ci, body)
    assert (answer[0], answer[1]["code"]) == (status, code)
    assert api.platform.instances == {}


def test_a_vault_pull_secret_the_grant_covers_is_accepted(api, ci):
    body = instance_details(
        imagePullSecrets=[{"secretType": "VAULT", "registryEndpoint": "ghcr.io", "secretId": SECRET}]
    )
    status, created = send(api, "POST", "/20210415/containerInstances", ci, body)
    assert status == 200
    assert created["imagePullSecrets"] == [{"secretType": "VAULT", "registryEndpoint": "ghcr.io", "secretId": SECRET}]


def test_unparsable_json_cannot_be_parsed(api, ci):
    status, body = send(api, "POST", "/20210415/containerInstances", ci, "{not json")
    assert (status, body["code"]) == (400, "CannotParseRequest")


def test_a_retry_token_answers_the_same_instance_for_the_same_body_only(api, ci):
    sdk = clients(api, ci)
    first = create(sdk, opc_retry_token="deploy-42")
    again = create(sdk, opc_retry_token="deploy-42")
    assert again.data.id == first.data.id
    assert again.headers["opc-work-request-id"] == first.headers["opc-work-request-id"]
    assert len(api.platform.instances) == 1
    with pytest.raises(oci.exceptions.ServiceError) as conflict:
        create(sdk, instance_details(displayName="other"), opc_retry_token="deploy-42")
    assert (conflict.value.status, conflict.value.code) == (409, "Conflict")
    assert create(sdk, opc_retry_token="deploy-43").data.id != first.data.id
    assert len(api.platform.instances) == 2


def test_listing_needs_an_allowed_compartment_and_filters_and_pages(make_api, ci):
    api = make_api(gets_until_active=1)
    sdk = clients(api, ci)
    ids = [create(sdk, instance_details(displayName=f"app-{n}")).data.id for n in range(3)]
    until_active(sdk, ids[0])

    status, body = send(api, "GET", "/20210415/containerInstances", ci)
    assert (status, body["code"]) == (400, "MissingParameter")
    status, body = send(api, "GET", f"/20210415/containerInstances?compartmentId={OTHER_COMPARTMENT}", ci)
    assert (status, body["code"]) == (404, "NotAuthorizedOrNotFound")
    status, body = send(
        api, "GET", f"/20210415/containerInstances?compartmentId={COMPARTMENT}&lifecycleState=RUNNING", ci
    )
    assert (status, body["code"]) == (400, "InvalidParameter")

    newest_first = [i.id for i in sdk.ci.list_container_instances(COMPARTMENT).data.items]
    assert newest_first == ids[::-1]
    active = sdk.ci.list_container_instances(COMPARTMENT, lifecycle_state="ACTIVE").data.items
    assert [i.id for i in active] == [ids[0]]
    assert [i.id for i in sdk.ci.list_container_instances(COMPARTMENT, display_name="app-1").data.items] == [ids[1]]
    page = sdk.ci.list_container_instances(COMPARTMENT, limit=2)
    assert len(page.data.items) == 2
    assert page.next_page
    rest = sdk.ci.list_container_instances(COMPARTMENT, limit=2, page=page.next_page)
    assert [i.id for i in rest.data.items] == [ids[0]]
    assert rest.next_page is None
    everything = oci.pagination.list_call_get_all_results(sdk.ci.list_container_instances, COMPARTMENT, limit=1)
    assert sorted(i.id for i in everything.data) == sorted(ids)


def test_resources_outside_the_grant_are_not_found(make_api, ci):
    api = make_api(gets_until_active=1)
    foreign = api.platform.seed_instance(instance_details(compartmentId=OTHER_COMPARTMENT))
    sdk = clients(api, ci)
    for call in (
        lambda: sdk.ci.get_container_instance(foreign.id),
        lambda: sdk.ci.delete_container_instance(foreign.id),
        lambda: sdk.ci.get_container(foreign.containers[0].id),
        lambda: sdk.ci.get_work_request(foreign.work_requests[0]),
        lambda: sdk.vn.get_vnic(foreign.vnic.id),
        lambda: sdk.lb.list_backends(OTHER_LB, "web-production"),
        lambda: sdk.lb.create_backend(backend("10.0.1.9"), OTHER_LB, "web-production"),
        lambda: sdk.lb.list_backends(LB, "no-such-set"),
        lambda: sdk.ci.get_container_instance("ocid1.computecontainerinstance.oc1.eu-frankfurt-1.nothing"),
    ):
        with pytest.raises(oci.exceptions.ServiceError) as refused:
            call()
        assert (refused.value.status, refused.value.code) == (404, "NotAuthorizedOrNotFound")
    assert foreign.state == "ACTIVE"


def test_a_principal_without_a_grant_finds_nothing_and_unsigned_requests_are_not_authenticated(make_api, ci, outsider):
    api = make_api(gets_until_active=1)
    instance = api.platform.seed_instance(instance_details())
    api.platform.seed_backend(LB, "web", instance.private_ip, PORT)
    paths = [
        ("POST", "/20210415/containerInstances", instance_details()),
        ("GET", f"/20210415/containerInstances?compartmentId={COMPARTMENT}", None),
        ("GET", f"/20210415/containerInstances/{instance.id}", None),
        ("DELETE", f"/20210415/containerInstances/{instance.id}", None),
        ("GET", f"/20210415/containers/{instance.containers[0].id}", None),
        ("GET", f"/20210415/workRequests/{instance.work_requests[0]}", None),
        ("GET", f"/20160918/vnics/{instance.vnic.id}", None),
        ("POST", f"/20170115/loadBalancers/{LB}/backendSets/web/backends", backend("10.0.1.9")),
        ("GET", f"/20170115/loadBalancers/{LB}/backendSets/web/backends", None),
        ("PUT", f"/20170115/loadBalancers/{LB}/backendSets/web/backends/{instance.private_ip}%3A{PORT}", update()),
        ("GET", f"/20170115/loadBalancers/{LB}/backendSets/web/backends/{instance.private_ip}%3A{PORT}/health", None),
        ("DELETE", f"/20170115/loadBalancers/{LB}/backendSets/web/backends/{instance.private_ip}%3A{PORT}", None),
        ("GET", "/20170115/loadBalancerWorkRequests/ocid1.loadbalancerworkrequest.oc1..x", None),
    ]
    for method, path, body in paths:
        status, error = send(api, method, path, outsider, body)
        assert (status, error["code"]) == (404, "NotAuthorizedOrNotFound"), path
        status, error = send(api, method, path, None, body)
        assert (status, error["code"]) == (401, "NotAuthenticated"), path
    assert {r.detail for r in api.requests if r.status == 401} == {"no Signature authorization header"}
    assert {r.principal for r in api.requests if r.status == 404} == {outsider.user}
    assert instance.state == "ACTIVE"
    assert len(api.platform.instances) == 1
    assert [b.name for b in api.platform.backends(LB, "web")] == [f"{instance.private_ip}:{PORT}"]


def test_hooks_run_before_the_state_changes_and_a_failing_one_keeps_it(make_api, ci):
    events: list[tuple[str, str]] = []

    def refuse(instance: Any) -> None:
        events.append(("active", instance.id))
        if len(events) == 1:
            raise OSError("cannot start the containers")

    api = make_api(gets_until_active=1, on_active=refuse, on_deleted=lambda i: events.append(("deleted", i.id)))
    sdk = clients(api, ci)
    created = create(sdk)
    with pytest.raises(oci.exceptions.ServiceError) as failed:
        sdk.ci.get_container_instance(created.data.id)
    assert (failed.value.status, failed.value.code) == (500, "InternalServerError")
    assert api.platform.instances[created.data.id].state == "CREATING"
    assert [str(e) for e in api.errors] == ["cannot start the containers"]
    assert sdk.ci.get_container_instance(created.data.id).data.lifecycle_state == "ACTIVE"
    sdk.ci.delete_container_instance(created.data.id)
    assert events == [("active", created.data.id), ("active", created.data.id), ("deleted", created.data.id)]


# --- load balancer backends ----------------------------------------------------------------------


def test_backend_changes_apply_when_their_work_request_completes(api, ci):
    sdk = clients(api, ci)
    added = sdk.lb.create_backend(backend("10.0.1.7", backup=True), LB, "web")
    assert added.status == 204
    work = added.headers["opc-work-request-id"]
    assert work.startswith(f"ocid1.loadbalancerworkrequest.oc1.{REGION}.")
    assert sdk.lb.list_backends(LB, "web").data == []

    with pytest.raises(oci.exceptions.ServiceError) as busy:
        sdk.lb.create_backend(backend("10.0.1.8"), LB, "web")
    assert (busy.value.status, busy.value.code) == (409, "Conflict")
    with pytest.raises(oci.exceptions.ServiceError) as busy_other_set:
        sdk.lb.create_backend(backend("10.0.1.8"), LB, "sticky")
    assert busy_other_set.value.status == 409  # the whole load balancer is busy, not just the set

    accepted = sdk.lb.get_work_request(work).data
    assert (accepted.lifecycle_state, accepted.type, accepted.load_balancer_id) == ("ACCEPTED", "CreateBackend", LB)
    assert accepted.error_details == []
    assert sdk.lb.list_backends(LB, "web").data == []
    done = sdk.lb.get_work_request(work).data
    assert (done.lifecycle_state, done.time_finished is not None) == ("SUCCEEDED", True)
    [listed] = sdk.lb.list_backends(LB, "web").data
    assert (listed.name, listed.ip_address, listed.port, listed.backup, listed.drain, listed.weight) == (
        "10.0.1.7:8080",
        "10.0.1.7",
        PORT,
        True,
        False,
        1,
    )

    with pytest.raises(oci.exceptions.ServiceError) as duplicate:
        sdk.lb.create_backend(backend("10.0.1.7"), LB, "web")
    assert (duplicate.value.status, duplicate.value.code) == (409, "Conflict")

    promoted = sdk.lb.update_backend(update(), LB, "web", "10.0.1.7:8080")
    assert api.requests[-1].path.endswith("/backends/10.0.1.7%3A8080")
    assert finish(sdk, promoted) == ["ACCEPTED", "SUCCEEDED"]
    assert sdk.lb.get_backend(LB, "web", "10.0.1.7:8080").data.backup is False
    status, _ = send(
        api, "PUT", f"/20170115/loadBalancers/{LB}/backendSets/web/backends/10.0.1.7:8080", ci, update(drain=True)
    )
    assert status == 204  # an unencoded colon too
    [pending] = [w for w in api.platform.lb_work_requests.values() if not w.done]
    assert finish(sdk, pending.id)[-1] == "SUCCEEDED"
    assert sdk.lb.get_backend(LB, "web", "10.0.1.7:8080").data.drain is True

    with pytest.raises(oci.exceptions.ServiceError) as unknown:
        sdk.lb.delete_backend(LB, "web", "10.0.1.9:8080")
    assert (unknown.value.status, unknown.value.code) == (404, "NotAuthorizedOrNotFound")
    assert finish(sdk, sdk.lb.delete_backend(LB, "web", "10.0.1.7:8080"))[-1] == "SUCCEEDED"
    assert sdk.lb.list_backends(LB, "web").data == []


@pytest.mark.parametrize(
    ("method", "suffix", "body", "status", "code"),
    [
        ("POST", "", {"ipAddress": "10.0.1.7"}, 400, "MissingParameter"),
        ("POST", "", {"ipAddress": "10.0.1.7", "port": 8080, "primary": True}, 400, "InvalidParameter"),
        ("POST", "", {"ipAddress": "10.0.1.700", "port": 8080}, 400, "InvalidParameter"),
        ("POST", "", {"ipAddress": "10.0.1.7", "port": 70000}, 400, "InvalidParameter"),
        ("POST", "", {"ipAddress": "10.0.1.7", "port": 8080, "maxConnections": 10}, 400, "InvalidParameter"),
        ("PUT", "/10.0.1.2%3A8080", {"weight": 1, "backup": False, "drain": True}, 400, "MissingParameter"),
        (
            "PUT",
            "/10.0.1.2%3A8080",
            {"weight": 1, "backup": "no", "drain": False, "offline": False},
            400,
            "InvalidParameter",
        ),
        (
            "PUT",
            "/10.0.1.9%3A8080",
            {"weight": 1, "backup": False, "drain": False, "offline": False},
            404,
            "NotAuthorizedOrNotFound",
        ),
        ("GET", "/10.0.1.9%3A8080/health", None, 404, "NotAuthorizedOrNotFound"),
        ("GET", "/10.0.1.9%3A8080", None, 404, "NotAuthorizedOrNotFound"),
    ],
    ids=[
        "no-port",
        "unknown-field",
        "bad-ip",
        "bad-port",
        "few-max-connections",
        "no-offline",
        "backup-string",
        "unknown-update",
        "unknown-health",
        "unknown-get",
    ],
)
def test_backend_requests_the_service_refuses_change_nothing(make_api, ci, method, suffix, body, status, code):
    api = make_api()
    api.platform.seed_backend(LB, "web", "10.0.1.2", PORT)
    answer = send(api, method, f"/20170115/loadBalancers/{LB}/backendSets/web/backends{suffix}", ci, body)
    assert (answer[0], answer[1]["code"]) == (status, code)
    assert api.platform.lb_work_requests == {}


def test_a_retried_backend_change_answers_its_first_work_request(api, ci):
    sdk = clients(api, ci)
    first = sdk.lb.create_backend(backend("10.0.1.7"), LB, "web", opc_retry_token="add-7")
    again = sdk.lb.create_backend(backend("10.0.1.7"), LB, "web", opc_retry_token="add-7")
    assert again.headers["opc-work-request-id"] == first.headers["opc-work-request-id"]
    assert len(api.platform.lb_work_requests) == 1
    with pytest.raises(oci.exceptions.ServiceError) as conflict:
        sdk.lb.create_backend(backend("10.0.1.8"), LB, "web", opc_retry_token="add-7")
    assert (conflict.value.status, conflict.value.code) == (409, "Conflict")
    finish(sdk, first)
    assert [b.name for b in sdk.lb.list_backends(LB, "web").data] == ["10.0.1.7:8080"]


def test_a_backup_backend_cannot_join_an_ip_hash_set(api, ci):
    sdk = clients(api, ci)
    with pytest.raises(oci.exceptions.ServiceError) as refused:
        sdk.lb.create_backend(backend("10.0.1.7", backup=True), LB, "sticky")
    assert (refused.value.status, refused.value.code) == (400, "InvalidParameter")
    assert finish(sdk, sdk.lb.create_backend(backend("10.0.1.7"), LB, "sticky"))[-1] == "SUCCEEDED"
    with pytest.raises(oci.exceptions.ServiceError) as refused:
        sdk.lb.update_backend(update(backup=True), LB, "sticky", "10.0.1.7:8080")
    assert refused.value.status == 400


def test_a_failed_work_request_applies_nothing(make_api, ci):
    api = make_api(lb_work_request_gets=2)
    api.platform.fail_next_lb_work_request("BAD_INPUT", "All non-reserved IP addresses are allocated.")
    sdk = clients(api, ci)
    added = sdk.lb.create_backend(backend("10.0.1.7"), LB, "web")
    assert finish(sdk, added) == ["ACCEPTED", "IN_PROGRESS", "FAILED"]
    failed = sdk.lb.get_work_request(added.headers["opc-work-request-id"]).data
    assert [(e.error_code, e.message) for e in failed.error_details] == [
        ("BAD_INPUT", "All non-reserved IP addresses are allocated.")
    ]
    assert sdk.lb.list_backends(LB, "web").data == []
    assert finish(sdk, sdk.lb.create_backend(backend("10.0.1.7"), LB, "web"))[-1] == "SUCCEEDED"


def test_backend_health_is_unknown_first_then_ok_for_a_healthy_instance_and_critical_otherwise(make_api, ci):
    api = make_api(gets_until_active=1, healthy=lambda image: image != BROKEN)
    sdk = clients(api, ci)
    good = until_active(sdk, create(sdk).data.id)
    bad = until_active(sdk, create(sdk, instance_details(container(BROKEN))).data.id)
    good_ip, bad_ip = (sdk.vn.get_vnic(i.vnics[0].vnic_id).data.private_ip for i in (good, bad))
    for ip in (good_ip, bad_ip, "10.0.1.200"):
        finish(sdk, sdk.lb.create_backend(backend(ip, backup=True), LB, "web"))
    finish(sdk, sdk.lb.create_backend(backend(good_ip, 9090), LB, "web"))

    assert until_health(sdk, "web", f"{good_ip}:{PORT}") == ["UNKNOWN", "OK"]
    healthy = sdk.lb.get_backend_health(LB, "web", f"{good_ip}:{PORT}").data
    assert [r.health_check_status for r in healthy.health_check_results] == ["OK"]
    assert until_health(sdk, "web", f"{bad_ip}:{PORT}") == ["UNKNOWN", "CRITICAL"]
    unhealthy = sdk.lb.get_backend_health(LB, "web", f"{bad_ip}:{PORT}").data
    assert [r.health_check_status for r in unhealthy.health_check_results] == ["INVALID_STATUS_CODE"]
    nobody = until_health(sdk, "web", f"10.0.1.200:{PORT}")
    assert nobody == ["UNKNOWN", "CRITICAL"]
    nothing = sdk.lb.get_backend_health(LB, "web", f"10.0.1.200:{PORT}").data
    assert [r.health_check_status for r in nothing.health_check_results] == ["CONNECT_FAILED"]
    assert until_health(sdk, "web", f"{good_ip}:9090")[-1] == "CRITICAL"  # no container checks that port

    sdk.ci.delete_container_instance(good.id)
    assert api.platform.backend_health(LB, "web", f"{good_ip}:{PORT}") == "CRITICAL"


def test_traffic_moves_to_the_new_instance_without_a_gap_in_a_blue_green_deploy(make_api, ci):
    api = make_api()
    old = api.platform.seed_instance(instance_details(container(OLD_IMAGE)))
    old_backend = f"{old.private_ip}:{PORT}"
    api.platform.seed_backend(LB, "web", old.private_ip, PORT)
    sdk = clients(api, ci)

    [live] = [i for i in sdk.ci.list_container_instances(COMPARTMENT).data.items if i.lifecycle_state == "ACTIVE"]
    live_container = sdk.ci.get_container_instance(live.id).data.containers[0].container_id
    assert sdk.ci.get_container(live_container).data.image_url == OLD_IMAGE
    new = until_active(sdk, create(sdk).data.id)
    ip = sdk.vn.get_vnic(new.vnics[0].vnic_id).data.private_ip
    for entry in new.containers:
        assert sdk.ci.get_container(entry.container_id).data.health_checks[0].status == "HEALTHY"
    new_backend = f"{ip}:{PORT}"
    finish(sdk, sdk.lb.create_backend(backend(ip, backup=True), LB, "web"))
    assert until_health(sdk, "web", new_backend)[-1] == "OK"
    assert api.platform.serving("web") == {old_backend}  # a backup while a primary is OK
    finish(sdk, sdk.lb.update_backend(update(), LB, "web", new_backend))
    finish(sdk, sdk.lb.update_backend(update(drain=True), LB, "web", old_backend))
    finish(sdk, sdk.lb.delete_backend(LB, "web", old_backend))
    sdk.ci.delete_container_instance(old.id)
    sdk.ci.get_container_instance(old.id)

    assert api.platform.traffic("web") == [{old_backend}, {old_backend, new_backend}, {new_backend}]
    assert [i.id for i in api.platform.live_instances()] == [new.id]
    assert [b.name for b in api.platform.backends(LB, "web")] == [new_backend]


def test_the_history_shows_a_gap_when_the_old_instance_goes_first(make_api, ci):
    api = make_api(gets_until_active=1, health_unknown_polls=0)
    old = api.platform.seed_instance(instance_details(container(OLD_IMAGE)))
    api.platform.seed_backend(LB, "web", old.private_ip, PORT)
    sdk = clients(api, ci)
    new = until_active(sdk, create(sdk).data.id)
    sdk.ci.delete_container_instance(old.id)
    finish(sdk, sdk.lb.create_backend(backend(api.platform.instances[new.id].private_ip), LB, "web"))
    assert api.platform.traffic("web") == [{f"{old.private_ip}:{PORT}"}, set(), {f"10.0.1.3:{PORT}"}]


def test_traffic_falls_back_to_healthy_backups_only_when_no_primary_is_ok(make_api, ci):
    api = make_api(gets_until_active=1, healthy=lambda image: image != BROKEN)
    platform = api.platform
    primary = platform.seed_instance(instance_details(container(BROKEN)))
    backup = platform.seed_instance(instance_details())
    platform.seed_backend(LB, "web", primary.private_ip, PORT)
    platform.seed_backend(LB, "web", backup.private_ip, PORT, backup=True)
    assert platform.serving("web") == {f"{backup.private_ip}:{PORT}"}
    platform.seed_backend(LB, "web", "10.0.1.250", PORT, backup=True)
    assert platform.serving("web") == {f"{backup.private_ip}:{PORT}"}


# --- faults, records and models ------------------------------------------------------------------


@pytest.mark.parametrize("route", ["create-container-instance", "get-vnic", "create-backend", "get-lb-work-request"])
def test_faults_answer_the_next_requests_of_a_platform_route_in_ocis_format(api, ci, route):
    api.fail_next(route, 429, "TooManyRequests", "slow down", headers={"retry-after": "1"})
    sdk = clients(api, ci)
    calls = {
        "create-container-instance": lambda: create(sdk),
        "get-vnic": lambda: sdk.vn.get_vnic("ocid1.vnic.oc1..x"),
        "create-backend": lambda: sdk.lb.create_backend(backend("10.0.1.7"), LB, "web"),
        "get-lb-work-request": lambda: sdk.lb.get_work_request("ocid1.loadbalancerworkrequest.oc1..x"),
    }
    with pytest.raises(oci.exceptions.ServiceError) as refused:
        calls[route]()
    assert (refused.value.status, refused.value.code, refused.value.message) == (429, "TooManyRequests", "slow down")
    assert refused.value.headers["retry-after"] == "1"
    [failed] = api.requests_for(route, status=429)
    assert failed.detail == "injected fault"
    with (
        pytest.raises(oci.exceptions.ServiceError)
        if route in ("get-vnic", "get-lb-work-request")
        else contextlib.nullcontext()
    ):
        calls[route]()
    assert [r.status for r in api.requests_for(route)][:1] == [429]
    assert len(api.requests_for(route)) == 2


def test_sdk_model_checks_any_services_models():
    lb_types = type_mapping("load_balancer")
    details = sdk_model({"ipAddress": "10.0.1.7", "port": 80}, "CreateBackendDetails", type_mapping=lb_types)
    assert (details.ip_address, details.port) == ("10.0.1.7", 80)
    check = sdk_model(
        {"healthCheckType": "TCP", "port": 80},
        "CreateContainerHealthCheckDetails",
        type_mapping=type_mapping("container_instances"),
    )
    assert type(check).__name__ == "CreateContainerTcpHealthCheckDetails"
    bastion = sdk_model(
        {"sessionType": "PORT_FORWARDING", "targetResourcePort": 22}, "CreateSessionTargetResourceDetails"
    )
    assert type(bastion).__name__ == "CreatePortForwardingSessionTargetResourceDetails"
