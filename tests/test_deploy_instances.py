"""The deploy to container instances (ci/instances.py) against the strict local stand-in of OCI's
Container Instances, VNIC and Load Balancer APIs (tests/harness/oci_platform.py): healthy,
unhealthy and interrupted deploys, and where the load balancer's traffic went meanwhile.

The variable the client reads is the one the staging stack writes with `oci.target:
containerInstances` (its ids swapped for the stand-in's), so the stack and the client are
checked against each other.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from ci import deploy, instances, oci
from components.environment import names
from components.workflows import central
from tests.central_support import deploy_checkout
from tests.harness import workflow
from tests.harness.oci_api import ApiKey, OciApi, Principal
from tests.harness.oci_platform import DEFAULT_AVAILABILITY_DOMAINS, BackendSetSpec, Platform, PlatformGrant
from tests.harness.workflow import RUNNER_PYTHON
from tests.test_ci_deploy import data_file

REGION = "eu-frankfurt-1"
COMPARTMENT = "ocid1.compartment.oc1..staging"
SUBNET = "ocid1.subnet.oc1.eu-frankfurt-1.staging"
NSG = "ocid1.networksecuritygroup.oc1.eu-frankfurt-1.containers"
LB = "ocid1.loadbalancer.oc1.eu-frankfurt-1.staging"
TENANCY = "ocid1.tenancy.oc1..aaaaaaaadreamscape"
DIGEST = "@sha256:" + "a" * 64
SECRETS = {"JWT_SIGNING_KEY": "jwt-signing-value-4f9c2e", "POSTGRES_PASSWORD": "postgres-password-value-77ab1"}
ALL = " ".join(
    f"{c}=ghcr.io/dreamscape-ai/{c}:1{DIGEST}" for c in ("auth-service", "user-service", "web-client", "gateway")
)


@cache
def stack_variable() -> dict[str, Any]:
    """DEPLOY_OCI_STAGING as the staging stack on container instances writes it."""
    from tests.test_container_platform import containers_plan, variable

    return json.loads(variable(containers_plan(), names.oci_variable("staging")))


class Clock:
    """Monotonic time that moves only when the client sleeps; `stop_at` raises SystemExit(143)
    (what the runner's SIGTERM becomes) at that sleep, as a cancelled job would."""

    def __init__(self, stop_at: Callable[[], bool] | None = None) -> None:
        self.now = 1000.0
        self.sleeps = 0
        self.stop_at = stop_at

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        if self.stop_at is not None and self.stop_at():
            self.stop_at = None  # one signal; the clean-up that follows runs to its end
            raise SystemExit(143)
        if self.sleeps > 2000:
            raise AssertionError("the client kept polling")


@pytest.fixture(scope="module")
def key() -> ApiKey:
    return ApiKey.generate()


@pytest.fixture
def deployer(key: ApiKey) -> Principal:
    grant = PlatformGrant(COMPARTMENT, subnet_ids=[SUBNET], nsg_ids=[NSG], load_balancer_ids=[LB])
    return Principal("ocid1.user.oc1..deployer", api_key=key, platform=grant, tenancy=TENANCY)


@pytest.fixture
def stand_in(deployer: Principal) -> Iterator[Callable[..., tuple[OciApi, Platform]]]:
    servers: list[OciApi] = []

    def start(**kwargs: Any) -> tuple[OciApi, Platform]:
        options = {
            "healthy": lambda image: ":broken" not in image,
            "load_balancers": {LB: {"gateway": BackendSetSpec(policy="ROUND_ROBIN")}},
            **kwargs,
        }
        platform = Platform(subnets={SUBNET: "10.20.1.0/24"}, **options)
        api = OciApi(region=REGION, principals=[deployer], platform=platform)
        servers.append(api.__enter__())
        return api, platform

    yield start
    for api in servers:
        api.__exit__(None, None, None)


def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    root.mkdir(exist_ok=True)
    deploy_checkout(root, {central.DATA_PATH: data_file(), "deploy/compose.staging.yml": "services: {}\n"})
    return root


def environment(api: OciApi, deployer: Principal, key: ApiKey, **changes: str) -> dict[str, str]:
    platform_ = stack_variable()
    domain = DEFAULT_AVAILABILITY_DOMAINS[0]
    variable = {
        **{k: v for k, v in platform_.items() if k not in ("domainUrl", "clientId")},
        "region": REGION,
        "compartmentId": COMPARTMENT,
        "availabilityDomain": domain,
        "subnetId": SUBNET,
        "nsgId": NSG,
        "loadBalancerId": LB,
        "auth": oci.API_KEY,
        "tenancy": TENANCY,
        "user": deployer.user,
        "fingerprint": key.fingerprint,
    }
    return {
        deploy.OCI_ACCESS: json.dumps(variable),
        deploy.OCI_CREDENTIAL: key.private_pem,
        deploy.APP_SECRETS: json.dumps(SECRETS),
        deploy.IMAGES: ALL,
        instances.API_OVERRIDE: api.url,
        "GITHUB_RUN_ID": "4242",
        **changes,
    }


def deploy_once(tmp_path: Path, env: dict[str, str], clock: Clock | None = None) -> int:
    clock = clock or Clock()
    req = instances.request(env, workspace(tmp_path))
    return instances.run(req, env, oci.Client(sleep=clock.sleep, base_delay=0), clock)


def live(platform: Platform) -> list[Any]:
    return [i for i in platform.live_instances() if i.state not in ("DELETING", "DELETED")]


def gateway_backends(platform: Platform) -> list[str]:
    return sorted(f"{b.ip_address}:{b.port}" for b in platform.backends(LB, "gateway"))


def created_bodies(api: OciApi) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in api.requests_for("create-container-instance", status=200)]


# --- healthy ------------------------------------------------------------------------------------


def test_a_first_deploy_makes_an_instance_and_sends_the_traffic_to_it(tmp_path, stand_in, deployer, key, capsys):
    api, platform = stand_in()
    assert deploy_once(tmp_path, environment(api, deployer, key)) == instances.DEPLOYED
    [instance] = live(platform)
    assert instance.state == "ACTIVE"
    assert gateway_backends(platform) == [f"{instance.private_ip}:8080"]
    assert platform.serving("gateway") == frozenset({f"{instance.private_ip}:8080"})
    [body] = created_bodies(api)
    by_name = {c["displayName"]: c for c in body["containers"]}
    assert by_name["gateway"]["imageUrl"] == f"ghcr.io/dreamscape-ai/gateway:1{DIGEST}"
    assert by_name["auth-service"]["environmentVariables"]["PGHOST"] == "postgres"
    assert body["dnsConfig"] == {"searches": [stack_variable()["dnsSearch"]]}
    assert body["vnics"][0]["nsgIds"] == [NSG]
    out = capsys.readouterr().out
    assert "Deploy to staging (container instances): deployed" in out
    assert "| auth-service |" in out and "JWT_SIGNING_KEY, POSTGRES_PASSWORD" in out


def test_each_container_reads_exactly_its_secrets_and_no_value_travels_elsewhere(
    tmp_path, stand_in, deployer, key, capsys
):
    api, _ = stand_in()
    assert deploy_once(tmp_path, environment(api, deployer, key)) == instances.DEPLOYED
    [body] = created_bodies(api)
    volumes = {v["name"]: v for v in body["volumes"]}
    for container in body["containers"]:
        mounts = container.get("volumeMounts") or []
        wanted = {"auth-service": SECRETS, "user-service": SECRETS}.get(container["displayName"], {})
        if not wanted:
            assert not mounts
            continue
        [mount] = mounts
        assert (mount["mountPath"], mount["isReadOnly"]) == ("/run/secrets", True)
        files = {c["fileName"]: base64.b64decode(c["data"]).decode() for c in volumes[mount["volumeName"]]["configs"]}
        assert files == wanted
        assert container["environmentVariables"]["JWT_SIGNING_KEY_FILE"] == "/run/secrets/JWT_SIGNING_KEY"
    out = capsys.readouterr().out
    for value in SECRETS.values():
        assert value not in out
        assert value not in json.dumps([c["environmentVariables"] for c in body["containers"]])
        for request in api.requests:
            assert value.encode() not in request.body and value not in request.target


def test_a_second_deploy_replaces_the_instance_without_a_gap(tmp_path, stand_in, deployer, key):
    api, platform = stand_in()
    assert deploy_once(tmp_path, environment(api, deployer, key)) == instances.DEPLOYED
    [old] = live(platform)
    old_backend = f"{old.private_ip}:8080"
    change = f"gateway=ghcr.io/dreamscape-ai/gateway:2{DIGEST}"
    assert deploy_once(tmp_path, environment(api, deployer, key, DEPLOY_IMAGES=change)) == instances.DEPLOYED
    [new] = live(platform)
    assert new.id != old.id and platform.instances[old.id].state in ("DELETING", "DELETED")
    new_backend = f"{new.private_ip}:8080"
    assert gateway_backends(platform) == [new_backend]
    # The other components run the images that ran before; the gateway this run's.
    second = created_bodies(api)[-1]
    images = {c["displayName"]: c["imageUrl"] for c in second["containers"]}
    assert images["gateway"].startswith("ghcr.io/dreamscape-ai/gateway:2@")
    assert images["auth-service"] == f"ghcr.io/dreamscape-ai/auth-service:1{DIGEST}"
    # Traffic: from the old backend straight to the new one, never to nothing, never to both at
    # once before the new one was OK.
    history = platform.traffic("gateway")
    after_first = history[history.index(frozenset({old_backend})) :]
    assert frozenset() not in after_first
    assert after_first[-1] == frozenset({new_backend})
    assert all(old_backend in snapshot for snapshot in after_first[: after_first.index(frozenset({new_backend}))])


# --- unhealthy ----------------------------------------------------------------------------------


def test_an_unhealthy_release_is_deleted_and_the_traffic_never_leaves_the_old_one(
    tmp_path, stand_in, deployer, key, capsys
):
    api, platform = stand_in()
    assert deploy_once(tmp_path, environment(api, deployer, key)) == instances.DEPLOYED
    [old] = live(platform)
    old_backend = f"{old.private_ip}:8080"
    before = len(platform.traffic("gateway"))
    broken = f"gateway=ghcr.io/dreamscape-ai/gateway:broken{DIGEST}"
    code = deploy_once(tmp_path, environment(api, deployer, key, DEPLOY_IMAGES=broken))
    assert code == instances.ROLLED_BACK == deploy_program_exit("ROLLED_BACK")
    assert [i.id for i in live(platform)] == [old.id]
    assert gateway_backends(platform) == [old_backend]
    assert set(platform.traffic("gateway")[before - 1 :]) == {frozenset({old_backend})}
    out = capsys.readouterr().out
    assert "rolled back" in out and "not healthy within 90s (deploy.waitTimeoutSeconds): gateway" in out
    assert "::error title=Deploy::" in out


def test_an_instance_that_fails_to_start_is_deleted(tmp_path, stand_in, deployer, key, capsys):
    broken = f"ghcr.io/dreamscape-ai/gateway:9{DIGEST}"
    api, platform = stand_in(unpullable_images=[broken])
    code = deploy_once(
        tmp_path, environment(api, deployer, key, DEPLOY_IMAGES=ALL.replace(f"gateway:1{DIGEST}", "gateway:9" + DIGEST))
    )
    assert code == instances.ROLLED_BACK
    assert live(platform) == [] and gateway_backends(platform) == []
    assert "the new instance is FAILED, not ACTIVE" in capsys.readouterr().out


def test_a_backend_the_load_balancer_never_reports_ok_is_removed_with_its_instance(tmp_path, stand_in, deployer, key):
    api, platform = stand_in()
    assert deploy_once(tmp_path, environment(api, deployer, key)) == instances.DEPLOYED
    [old] = live(platform)
    # Every health read of the new backend says UNKNOWN: the stand-in keeps it unpolled.
    platform.health_unknown_polls = 10_000
    change = f"gateway=ghcr.io/dreamscape-ai/gateway:3{DIGEST}"
    assert deploy_once(tmp_path, environment(api, deployer, key, DEPLOY_IMAGES=change)) == instances.ROLLED_BACK
    assert [i.id for i in live(platform)] == [old.id]
    assert gateway_backends(platform) == [f"{old.private_ip}:8080"]
    assert api.requests_for("delete-backend", status=204)


# --- interrupted --------------------------------------------------------------------------------


def answered(api: OciApi, route: str, target: str = "") -> int:
    return len([r for r in api.requests_for(route) if 200 <= r.status < 300 and target in r.target])


STOPS = {
    # A new instance CREATING: it is deleted.
    "creating": ("create-container-instance", ""),
    # Its backend added as a backup, not yet OK: both go.
    "joining": ("create-backend", ""),
    # OK on the gateway's set, still checked on the web client's: both go, and no request ever
    # reached the new release (a backup takes nothing while the live one is healthy).
    "checking": ("get-backend-health", "/backendSets/web-client/"),
}


@pytest.mark.parametrize("stage", sorted(STOPS))
def test_a_deploy_stopped_before_the_switch_takes_the_new_release_out(tmp_path, stand_in, deployer, key, stage):
    sets = {"gateway": BackendSetSpec(), "web-client": BackendSetSpec()}
    api, platform = stand_in(load_balancers={LB: sets})
    variable = {**json.loads(environment(api, deployer, key)[deploy.OCI_ACCESS])}
    variable["backendSets"] = {"gateway": 8080, "web-client": 3000}
    env = environment(api, deployer, key, **{deploy.OCI_ACCESS: json.dumps(variable)})
    assert deploy_once(tmp_path, env) == instances.DEPLOYED
    [old] = live(platform)
    olds = {name: frozenset({f"{old.private_ip}:{port}"}) for name, port in variable["backendSets"].items()}
    before = {name: len(platform.traffic(name)) for name in sets}
    route, target = STOPS[stage]
    made = answered(api, route, target)
    clock = Clock(stop_at=lambda: answered(api, route, target) > made)
    change = env | {deploy.IMAGES: f"gateway=ghcr.io/dreamscape-ai/gateway:4{DIGEST}"}
    with pytest.raises(SystemExit) as stopped:
        deploy_once(tmp_path, change, clock)
    assert stopped.value.code == 143
    assert [i.id for i in live(platform)] == [old.id]
    for name in sets:
        # A backend the stopped job had no time to remove is a backup of a deleted instance.
        assert all(b.backup for b in platform.backends(LB, name) if b.name not in olds[name])
        assert set(platform.traffic(name)[before[name] - 1 :]) == {olds[name]}, name
    # The next deploy prunes what is left.
    platform.settle()
    assert deploy_once(tmp_path, env) == instances.DEPLOYED
    [newest] = live(platform)
    for name, port in variable["backendSets"].items():
        assert [b.name for b in platform.backends(LB, name)] == [f"{newest.private_ip}:{port}"]


def test_a_deploy_stopped_after_the_switch_began_leaves_no_gap_and_the_next_one_tidies_up(
    tmp_path, stand_in, deployer, key
):
    api, platform = stand_in()
    env = environment(api, deployer, key)
    assert deploy_once(tmp_path, env) == instances.DEPLOYED
    [old] = live(platform)
    promoted = answered(api, "update-backend")
    clock = Clock(stop_at=lambda: answered(api, "update-backend") > promoted)
    with pytest.raises(SystemExit):
        deploy_once(tmp_path, env | {deploy.IMAGES: f"gateway=ghcr.io/dreamscape-ai/gateway:5{DIGEST}"}, clock)
    # Both releases are healthy; the promotion was under way, so the new one is kept. OCI ends the
    # promotion on its own.
    platform.settle()
    assert len(live(platform)) == 2
    first = frozenset({f"{old.private_ip}:8080"})
    history = platform.traffic("gateway")
    assert frozenset() not in history[history.index(first) :]
    assert deploy_once(tmp_path, env | {deploy.IMAGES: f"gateway=ghcr.io/dreamscape-ai/gateway:6{DIGEST}"}) == 0
    [newest] = live(platform)
    assert old.id != newest.id
    assert gateway_backends(platform) == [f"{newest.private_ip}:8080"]
    history = platform.traffic("gateway")
    assert frozenset() not in history[history.index(first) :]


def test_a_cancelled_job_deletes_the_instance_it_made(tmp_path, stand_in, deployer, key):
    """The real signal, through `python3 -m ci.deploy` as the job runs it: the runner's SIGTERM."""
    api, platform = stand_in(gets_until_active=None)  # stays CREATING
    env = environment(api, deployer, key)
    guard = tmp_path / "guard"
    process = subprocess.Popen(
        [RUNNER_PYTHON, "-m", "ci.deploy"],
        cwd=workspace(tmp_path),
        env=workflow.guarded_client_env({"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env}, guard),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not api.requests_for("create-container-instance", status=200):
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, (out, err)
    workflow.assert_guarded(guard)
    [instance] = platform.instances.values()
    assert instance.state in ("DELETING", "DELETED")
    assert gateway_backends(platform) == []


# --- leftovers, bad inputs, refusals --------------------------------------------------------------


def test_leftovers_of_a_killed_runner_are_deleted_by_the_next_deploy(tmp_path, stand_in, deployer, key):
    api, platform = stand_in()
    body = created_bodies_template()
    leftover = platform.seed_instance(body, state="ACTIVE")
    other = platform.seed_instance({**body, "freeformTags": {"environment": "production", "dreamscape-release": "1"}})
    assert deploy_once(tmp_path, environment(api, deployer, key)) == instances.DEPLOYED
    assert platform.instances[leftover.id].state in ("DELETING", "DELETED")
    assert platform.instances[other.id].state == "ACTIVE"


def created_bodies_template() -> dict[str, Any]:
    return {
        "compartmentId": COMPARTMENT,
        "availabilityDomain": DEFAULT_AVAILABILITY_DOMAINS[0],
        "shape": "CI.Standard.A1.Flex",
        "shapeConfig": {"ocpus": 1, "memoryInGBs": 2},
        "containers": [{"imageUrl": f"ghcr.io/dreamscape-ai/gateway:0{DIGEST}", "displayName": "gateway"}],
        "vnics": [{"subnetId": SUBNET}],
        "freeformTags": {"environment": "staging", "dreamscape-release": "0"},
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({deploy.APP_SECRETS: json.dumps({"JWT_SIGNING_KEY": "x" * 20})}, "APP_SECRETS has no POSTGRES_PASSWORD"),
        ({deploy.IMAGES: f"billing=ghcr.io/o/billing:1{DIGEST}"}, "billing is not a component of this environment"),
        ({deploy.OCI_CREDENTIAL: ""}, "OCI_DEPLOY_CREDENTIAL is empty"),
    ],
)
def test_bad_inputs_stop_before_any_call(tmp_path, stand_in, deployer, key, changes, message):
    api, _ = stand_in()
    with pytest.raises(instances.InputError, match=message):
        instances.request(environment(api, deployer, key, **changes), workspace(tmp_path))
    assert api.requests == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda v: {**v, "shape": "VM.Standard.A1.Flex"}, "DEPLOY_OCI.shape is missing or malformed"),
        (lambda v: {**v, "bastionId": "ocid1.bastion.oc1..x"}, "DEPLOY_OCI.bastionId is not a field"),
        (lambda v: {**v, "backendSets": {"gateway": 9999}}, "backendSets must map each published component"),
        (lambda v: {**v, "containers": []}, "containers names no container"),
    ],
)
def test_a_variable_the_client_does_not_understand_is_refused(edit, message):
    with pytest.raises(instances.InputError, match=message):
        instances.platform(json.dumps(edit(stack_variable())), "DEPLOY_OCI")


def test_a_component_that_never_ran_and_is_not_in_the_run_is_refused_before_anything_is_made(
    tmp_path, stand_in, deployer, key, capsys
):
    api, platform = stand_in()
    code = deploy_once(tmp_path, environment(api, deployer, key, DEPLOY_IMAGES=f"gateway=ghcr.io/o/gateway:1{DIGEST}"))
    assert code == instances.BAD_INPUT
    assert platform.instances == {}
    assert "auth-service has no image yet" in capsys.readouterr().out


def test_oci_refusing_the_identity_changes_nothing(tmp_path, stand_in, key, capsys):
    outsider = Principal("ocid1.user.oc1..outsider", api_key=key, tenancy=TENANCY)
    api, platform = stand_in()
    api.principals[outsider.user] = outsider
    code = deploy_once(tmp_path, environment(api, outsider, key))
    assert code == instances.OCI_REFUSED
    assert platform.instances == {}
    assert "NotAuthorizedOrNotFound" in capsys.readouterr().out


def test_the_vm_client_hands_a_container_instances_environment_over(tmp_path, stand_in, deployer, key):
    """`python3 -m ci.deploy`, as the job runs it, with no SSH secret at all."""
    api, platform = stand_in(gets_until_active=1, lb_work_request_gets=0, health_unknown_polls=0)
    env = environment(api, deployer, key)
    guard = tmp_path / "guard"
    result = subprocess.run(
        [RUNNER_PYTHON, "-m", "ci.deploy"],
        cwd=workspace(tmp_path),
        env=workflow.guarded_client_env({"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env}, guard),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    workflow.assert_guarded(guard)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Deploy to staging (container instances): deployed" in result.stdout
    [instance] = live(platform)
    assert gateway_backends(platform) == [f"{instance.private_ip}:8080"]


def deploy_program_exit(name: str) -> int:
    from components.environment import deploy_program

    return deploy_program.EXIT[name]


# --- what a careful review asked for -------------------------------------------------------------


def test_a_promotion_that_fails_keeps_both_releases(tmp_path, stand_in, deployer, key, capsys):
    api, platform = stand_in()
    env = environment(api, deployer, key)
    assert deploy_once(tmp_path, env) == instances.DEPLOYED
    [old] = live(platform)
    added = answered(api, "create-backend")
    armed = []

    def fail_the_promotion() -> bool:
        # The backup backend is in; the next load balancer change is the promotion: it fails.
        if answered(api, "create-backend") > added and not armed:
            armed.append(True)
            platform.fail_next_lb_work_request()
        return False

    change = env | {deploy.IMAGES: f"gateway=ghcr.io/dreamscape-ai/gateway:7{DIGEST}"}
    assert deploy_once(tmp_path, change, Clock(stop_at=fail_the_promotion)) == instances.ROLLBACK_FAILED
    assert armed
    states = {i.id: i.state for i in platform.instances.values()}
    assert states[old.id] == "ACTIVE" and list(states.values()).count("ACTIVE") == 2
    assert f"{old.private_ip}:8080" in platform.serving("gateway")
    assert "after the switch began" in capsys.readouterr().out


def test_an_answer_the_client_cannot_read_takes_the_new_release_out(tmp_path, stand_in, deployer, key, capsys):
    api, platform = stand_in()
    api.fail_next("get-vnic", 200, "Odd")
    assert deploy_once(tmp_path, environment(api, deployer, key)) == instances.ROLLED_BACK
    assert live(platform) == []
    assert "the answer holds no private IP" in capsys.readouterr().out


def test_leftovers_past_the_first_page_are_found(tmp_path, stand_in, deployer, key):
    api, platform = stand_in()
    leftovers = [platform.seed_instance(created_bodies_template()).id for _ in range(105)]
    assert deploy_once(tmp_path, environment(api, deployer, key)) == instances.DEPLOYED
    assert {platform.instances[i].state for i in leftovers} <= {"DELETING", "DELETED"}
    assert len([r for r in api.requests_for("list-container-instances") if "page=" in r.target]) >= 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({deploy.IMAGES: "gateway=ghcr.io/dreamscape-ai/gateway:latest"}, "gateway's image is not pinned by digest"),
        ({instances.API_OVERRIDE: "https://evil.example.com"}, "DEPLOY_OCI_API may only name a stand-in"),
    ],
)
def test_a_tag_or_another_api_is_refused(tmp_path, stand_in, deployer, key, changes, message):
    api, _ = stand_in()
    with pytest.raises(instances.InputError, match=message):
        instances.request(environment(api, deployer, key, **changes), workspace(tmp_path))
