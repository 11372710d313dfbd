"""An environment on OCI Container Instances (`oci.target: containerInstances`): what its stack
plans, what it refuses, what it costs, and the variable its deploy job reads."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pulumi_oci
import pytest
import yaml

from ci import instances
from components import settings as settings_module
from components.environment import container_platform, names, shapes
from tests.conftest import copy_project, only, plan_with
from tests.test_plan import plan_cli, write_stack
from tools import offline

LOAD_BALANCER = "oci:LoadBalancer/loadBalancer:LoadBalancer"
BACKEND_SET = "oci:LoadBalancer/backendSet:BackendSet"
LISTENER = "oci:LoadBalancer/listener:Listener"
CONTAINER_INSTANCE = "oci:ContainerEngine/containerInstance:ContainerInstance"
VARIABLE = "github:index/actionsVariable:ActionsVariable"


def containers_oci(**changes: Any) -> dict[str, Any]:
    """Staging's `oci` on container instances: the A1 container shape, and the same size."""
    oci = dict(settings_module.merged_plain_config("staging")["oci"])
    oci.pop("bootVolumeGbs", None)
    return {**oci, "target": "containerInstances", "shape": "CI.Standard.A1.Flex", **changes}


@cache
def containers_plan() -> offline.Plan:
    return plan_with("staging", oci=containers_oci(), allowPaidShapes=True)


def variable(plan: offline.Plan, name: str) -> str:
    [found] = [r for r in plan.of_type(VARIABLE) if r.inputs["variableName"] == name]
    return offline._unwrap(found.inputs["value"])


# --- the plan ------------------------------------------------------------------------------------


def test_the_plan_has_a_load_balancer_and_no_vm_bastion_ssh_or_keys() -> None:
    plan = containers_plan()
    types = {r.type for r in plan.resources}
    assert {LOAD_BALANCER, BACKEND_SET, LISTENER, CONTAINER_INSTANCE} <= types
    for gone in (
        "oci:Core/instance:Instance",
        "oci:Bastion/bastion:Bastion",
        "tls:index/privateKey:PrivateKey",
        "oci:ObjectStorage/bucket:Bucket",
    ):
        assert gone not in types, gone
    secrets = {r.inputs["secretName"] for r in plan.of_type("github:index/actionsSecret:ActionsSecret")}
    assert secrets == {"OCI_DEPLOY_CREDENTIAL_STAGING", "APP_SECRETS_STAGING"}
    rules = plan.of_type("oci:Core/networkSecurityGroupSecurityRule:NetworkSecurityGroupSecurityRule")
    ports = {r.inputs.get("tcpOptions", {}).get("destinationPortRange", {}).get("min") for r in rules}
    assert 22 not in ports
    assert plan.outputs["target"] == "containerInstances"
    assert "sshCommand" not in plan.outputs and "bastionId" not in plan.outputs


def test_the_load_balancer_is_the_free_flexible_size_on_the_reserved_ip() -> None:
    plan = containers_plan()
    balancer = only(plan, LOAD_BALANCER)
    assert balancer.inputs["shape"] == "flexible"
    assert balancer.inputs["shapeDetails"] == {"minimumBandwidthInMbps": 10, "maximumBandwidthInMbps": 10}
    assert balancer.inputs["isPrivate"] is False
    [reserved] = [r for r in plan.of_type("oci:Core/publicIp:PublicIp")]
    assert reserved.inputs["lifetime"] == "RESERVED" and "privateIpId" not in reserved.inputs
    assert plan.outputs["url"] == f"http://{plan.outputs['host']}"


def test_each_published_component_has_a_health_checked_backend_set_and_port_80_listens() -> None:
    plan = containers_plan()
    [backend_set] = plan.of_type(BACKEND_SET)
    assert backend_set.inputs["name"] == "gateway"
    assert backend_set.inputs["healthChecker"] == {
        "protocol": "HTTP",
        "port": 8080,
        "urlPath": "/health",
        "returnCode": 200,
        "intervalMs": 10000,
        "timeoutInMillis": 3000,
        "retries": 3,
    }
    listener = only(plan, LISTENER)
    assert (listener.inputs["port"], listener.inputs["protocol"]) == (80, "HTTP")
    assert listener.inputs["defaultBackendSetName"] == "gateway"


def test_the_network_admits_the_load_balancer_to_the_containers_ports_only() -> None:
    plan = containers_plan()
    groups = {r.name: r for r in plan.of_type("oci:Core/networkSecurityGroup:NetworkSecurityGroup")}
    assert set(groups) == {"staging-network-lb-nsg", "staging-network-app-nsg"}
    rules = {
        r.name: r.inputs
        for r in plan.of_type("oci:Core/networkSecurityGroupSecurityRule:NetworkSecurityGroupSecurityRule")
    }
    internet = [r for r in rules.values() if r.get("direction") == "INGRESS" and r.get("source") == "0.0.0.0/0"]
    assert [r["tcpOptions"]["destinationPortRange"] for r in internet] == [{"min": 80, "max": 80}]
    app = [r for n, r in rules.items() if n.startswith("staging-network-app-") and r["direction"] == "INGRESS"]
    by_port = {r.get("tcpOptions", {}).get("destinationPortRange", {}).get("min"): r["sourceType"] for r in app}
    assert by_port == {
        3000: "NETWORK_SECURITY_GROUP",
        3001: "NETWORK_SECURITY_GROUP",
        3002: "NETWORK_SECURITY_GROUP",
        8080: "NETWORK_SECURITY_GROUP",
        None: "NETWORK_SECURITY_GROUP",
    }


def test_the_accessory_gets_an_instance_of_its_own_with_its_secret_as_a_file() -> None:
    plan = containers_plan()
    accessory = only(plan, CONTAINER_INSTANCE)
    [container] = accessory.inputs["containers"]
    assert container["imageUrl"].startswith("docker.io/library/postgres:17-alpine@sha256:")
    assert container["environmentVariables"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/POSTGRES_PASSWORD"
    assert "POSTGRES_PASSWORD" not in container["environmentVariables"]
    [vnic] = accessory.inputs["vnics"]
    assert vnic["hostnameLabel"] == "postgres"
    assert offline.is_secret(accessory.inputs["volumes"])
    volumes = offline._unwrap(accessory.inputs["volumes"])
    assert [v["volumeType"] for v in volumes] == ["EMPTYDIR", "CONFIGFILE"]
    assert [c["fileName"] for c in volumes[1]["configs"]] == ["POSTGRES_PASSWORD"]


def test_no_secret_value_is_printed(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    _edit_staging(project)
    result = plan_cli("--stack", "staging", cwd=project)
    assert result.returncode == 0, result.stderr
    plan = offline.run("staging", project_dir=project)
    values = json.loads(offline._unwrap(app_secrets_value(plan)))
    assert values
    for value in values.values():
        assert value not in result.stdout


def app_secrets_value(plan: offline.Plan) -> Any:
    [found] = [
        r for r in plan.of_type("github:index/actionsSecret:ActionsSecret") if r.inputs["secretName"].startswith("APP_")
    ]
    return found.inputs["value"]


# --- inputs against pulumi-oci's own types -----------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower().replace("in_g_bs", "in_gbs")


@cache
def _args_dict(name: str) -> tuple[dict[str, str], set[str]] | None:
    """A pulumi-oci input type's fields (annotation text) and its required ones."""
    for module in (pulumi_oci.containerengine._inputs, pulumi_oci.loadbalancer._inputs, pulumi_oci.core._inputs):
        found = getattr(module, f"{name}Dict", None)
        if found is not None:
            hints = found.__annotations__
            return {k: str(v) for k, v in hints.items()}, {k for k, v in hints.items() if "NotRequired" not in str(v)}
    return None


def _check(value: Any, annotation: str, where: str) -> None:
    value = offline._unwrap(value)
    nested = re.findall(r"'(\w+Args)'", annotation)
    if not nested:
        return
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        fields, required = _args_dict(nested[0]) or ({}, set())
        assert isinstance(item, dict), f"{where}[{i}] is not an object"
        for key, inner in item.items():
            assert _snake(key) in fields, f"{where}.{key} is not a field of {nested[0]}"
            _check(inner, fields[_snake(key)], f"{where}.{key}")
        missing = {k for k in required if not any(_snake(key) == k for key in item)}
        assert not missing, f"{where} lacks {missing} ({nested[0]})"


@pytest.mark.parametrize(
    ("type_", "cls"),
    [
        (LOAD_BALANCER, pulumi_oci.loadbalancer.LoadBalancerArgs),
        (BACKEND_SET, pulumi_oci.loadbalancer.BackendSetArgs),
        (LISTENER, pulumi_oci.loadbalancer.ListenerArgs),
        (CONTAINER_INSTANCE, pulumi_oci.containerengine.ContainerInstanceArgs),
    ],
)
def test_inputs_are_pulumi_ocis_types(type_: str, cls: type) -> None:
    """Every nested input is a field of the provider's input type, and none it requires is missing."""
    hints = {k: str(v) for k, v in cls.__init__.__annotations__.items()}
    for resource in containers_plan().of_type(type_):
        for key, value in resource.inputs.items():
            assert _snake(key) in hints, f"{resource.name}: {key} is not an argument of {cls.__name__}"
            _check(value, hints[_snake(key)], f"{resource.name}.{key}")


# --- the contract with the deploy job ----------------------------------------------------------


def test_the_deploy_variable_is_what_the_deploy_job_accepts() -> None:
    plan = containers_plan()
    text = variable(plan, names.oci_variable("staging"))
    found = instances.platform(text, "DEPLOY_OCI")
    assert found.environment == "staging"
    assert found.shape == "CI.Standard.A1.Flex" and (found.ocpus, found.memory_gbs) == (1, 6)
    assert found.backend_sets == {"gateway": 8080}
    assert [c.name for c in found.containers] == ["auth-service", "user-service", "web-client", "gateway"]
    auth = next(c for c in found.containers if c.name == "auth-service")
    assert auth.secrets == ("JWT_SIGNING_KEY", "POSTGRES_PASSWORD")
    assert auth.env["PGHOST"] == "postgres" and auth.env["PORT"] == "3001"
    assert found.dns_search.startswith("public.")
    assert "secret" not in text.lower() or "SECRET" not in json.dumps(json.loads(text)["containers"]).replace(
        "_FILE", ""
    )


def test_the_policy_reaches_container_instances_and_this_load_balancer_only() -> None:
    plan = containers_plan()
    statements = plan.outputs["deployPolicy"]
    balancer = plan.outputs["loadBalancerId"]
    where = f"in compartment id {containers_oci()['compartmentId']}"
    assert [s.split(" to ", 1)[1] for s in statements] == [
        f"manage compute-container-family {where}",
        f"use vnics {where}",
        f"use subnets {where}",
        f"use network-security-groups {where}",
        f"use load-balancers {where} where target.loadbalancer.id = '{balancer}'",
    ]
    assert not any("bastion" in s for s in statements)


# --- refusals and costs -------------------------------------------------------------------------

REFUSALS = [
    (
        {"shape": "VM.Standard.A1.Flex"},
        {},
        r"oci.shape: VM.Standard.A1.Flex does not run oci.target containerInstances",
    ),
    ({"sshAllowedCidrs": ["203.0.113.0/24"]}, {}, r"oci.sshAllowedCidrs: acts on the VM"),
    ({"bootVolumeBackups": 2}, {}, r"oci.bootVolumeBackups: acts on the VM"),
    ({"target": "vm"}, {}, r"oci.shape: CI.Standard.A1.Flex does not run oci.target vm"),
    ({"target": "kubernetes"}, {}, r"oci.target: expected one of vm, containerInstances"),
    ({}, {"edge": {"domain": "staging.example.com"}}, r"edge.domain: HTTPS is served by the VM's edge proxy"),
    ({}, {"allowPaidShapes": False}, r"allowPaidShapes: .*CI.Standard.A1.Flex \(staging\)"),
]


@pytest.mark.parametrize(("oci", "top", "message"), REFUSALS)
def test_what_container_instances_refuse(oci: dict, top: dict, message: str) -> None:
    with pytest.raises(settings_module.ConfigError, match=message):
        plan_with("staging", oci=containers_oci(**oci), **{"allowPaidShapes": True, **top})


def test_components_sharing_a_port_are_refused(stack_config) -> None:
    repositories = stack_config("staging")["sourceRepositories"]
    repositories[1]["components"][0]["port"] = 3001  # web-client on auth-service's port
    with pytest.raises(settings_module.ConfigError, match="web-client and auth-service both listen on 3001"):
        plan_with("staging", oci=containers_oci(), allowPaidShapes=True, sourceRepositories=repositories)


def test_the_cost_counts_the_release_the_accessories_and_the_load_balancers() -> None:
    class Oci:
        def __init__(self, target: str, shape: str) -> None:
            self.target, self.shape, self.ocpus, self.memory_gbs = target, shape, 1, 6
            self.boot_volume_gbs, self.boot_volume_backups = 50, 0

    report = shapes.allowance_report([("staging", Oci("containerInstances", "CI.Standard.A1.Flex"))], accessories=1)
    [row] = report.rows
    assert (row.ocpus, row.memory_gbs, row.boot_volume_gbs, row.load_balancers) == (2, 8, 0, 1)
    [excess] = report.excesses
    assert excess.what == "CI.Standard.A1.Flex (staging)"
    assert excess.monthly_usd == pytest.approx((2 * 0.01 + 8 * 0.0015) * 744)
    two = shapes.allowance_report(
        [
            ("staging", Oci("containerInstances", "CI.Standard.A1.Flex")),
            ("dev", Oci("containerInstances", "CI.Standard.E4.Flex")),
        ]
    )
    [balancers] = [e for e in two.excesses if e.what == "Flexible load balancers"]
    assert (balancers.used, balancers.free) == (2, 1)
    assert balancers.monthly_usd == pytest.approx((0.0113 + 10 * 0.0001) * 744)
    assert "Load balancers: 2 of 1 (flexible, 10 Mbps)" in two.lines()


# --- the acceptance: a copy of the stack file, planned by the CLI ----------------------


def _edit_staging(project: Path) -> None:
    raw = yaml.safe_load((project / "Pulumi.staging.yaml").read_text())["config"]
    ours = {k.removeprefix("dreamscape-infra:"): v for k, v in raw.items() if k.startswith("dreamscape-infra:")}
    ours["oci"] = {**ours["oci"], "target": "containerInstances", "shape": "CI.Standard.A1.Flex"}
    ours["allowPaidShapes"] = True
    write_stack(project, "staging", ours)


def test_make_plan_of_a_container_instances_copy_shows_the_load_balancer_and_no_vm(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    _edit_staging(project)
    result = plan_cli("--stack", "staging", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "oci:LoadBalancer/loadBalancer:LoadBalancer  staging-containers-lb" in result.stdout
    assert "oci:Core/instance:Instance" not in result.stdout
    assert "Load balancers: 1 of 1 (flexible, 10 Mbps)" in result.stdout
    assert re.search(r"Over: CI.Standard.A1.Flex \(staging\) .* \(about \$23\.81/month\)", result.stdout)
    assert container_platform.SECRETS_DIRECTORY in result.stdout


def test_the_cis_report_names_the_public_ips_of_container_instances() -> None:
    from tools import cis

    [design] = [c for c in cis.checks(containers_plan()) if c.ref == "design"]
    assert design.problems == (
        "staging-containers-postgres has an ephemeral public IP (its pulls use it; its NSG admits no one)",
    )


def test_the_tenancy_or_a_shared_compartment_is_refused(stack_config) -> None:
    with pytest.raises(settings_module.ConfigError, match=r"oci\.compartmentId: the tenancy"):
        plan_with(
            "staging", oci=containers_oci(compartmentId="ocid1.tenancy.oc1..aaaaaaaaexample"), allowPaidShapes=True
        )
    production = stack_config("production")["oci"]["compartmentId"]
    with pytest.raises(settings_module.ConfigError, match=r"stack production uses .* too, and stack staging runs"):
        plan_with("staging", oci=containers_oci(compartmentId=production), allowPaidShapes=True)
