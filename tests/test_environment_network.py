"""The environment's network as each stack registers it: VCN, gateway, routes, subnet, NSG."""

from __future__ import annotations

import ipaddress

import pytest

from components.settings import ConfigError
from tests.conftest import only
from tools import offline

STACKS = ["dev", "staging", "production"]
NETWORK_TYPES = {
    "oci:Core/vcn:Vcn",
    "oci:Core/internetGateway:InternetGateway",
    "oci:Core/routeTable:RouteTable",
    "oci:Core/securityList:SecurityList",
    "oci:Core/defaultSecurityList:DefaultSecurityList",
    "oci:Core/subnet:Subnet",
    "oci:Core/networkSecurityGroup:NetworkSecurityGroup",
    "oci:Core/networkSecurityGroupSecurityRule:NetworkSecurityGroupSecurityRule",
    "oci:Bastion/bastion:Bastion",
}
RULE = "oci:Core/networkSecurityGroupSecurityRule:NetworkSecurityGroupSecurityRule"
BASTION = "oci:Bastion/bastion:Bastion"
INSTANCE = "oci:Core/instance:Instance"


def ingress(plan: offline.Plan, port: int) -> list[str]:
    """Sources allowed in on a TCP port by the NSG."""
    sources = []
    for r in plan.of_type(RULE):
        rng = (r.plain("tcpOptions") or {}).get("destinationPortRange")
        if r.plain("direction") == "INGRESS" and rng and rng["min"] <= port <= rng["max"]:
            assert r.plain("protocol") == "6" and r.plain("sourceType") == "CIDR_BLOCK"
            sources.append(r.plain("source"))
    return sources


@pytest.mark.parametrize("stack", STACKS)
def test_network_resources_follow_the_stack_config(stack, plan_of, stack_config) -> None:
    plan, oci = plan_of(stack), stack_config(stack)["oci"]
    vcn = only(plan, "oci:Core/vcn:Vcn")
    assert vcn.plain("cidrBlocks") == [oci["vcnCidr"]]
    assert vcn.plain("compartmentId") == oci["compartmentId"]
    subnet = only(plan, "oci:Core/subnet:Subnet")
    assert subnet.plain("cidrBlock") == oci["subnetCidr"]
    assert subnet.plain("vcnId") == vcn.id
    assert subnet.plain("prohibitPublicIpOnVnic") is False
    gateway = only(plan, "oci:Core/internetGateway:InternetGateway")
    assert gateway.plain("enabled") is True and gateway.plain("vcnId") == vcn.id
    routes = only(plan, "oci:Core/routeTable:RouteTable")
    assert subnet.plain("routeTableId") == routes.id
    assert routes.plain("routeRules") == [
        {"destination": "0.0.0.0/0", "destinationType": "CIDR_BLOCK", "networkEntityId": gateway.id}
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_subnet_names_its_own_security_list_not_the_vcn_default(stack, plan_of) -> None:
    plan = plan_of(stack)
    vcn = only(plan, "oci:Core/vcn:Vcn")
    own = only(plan, "oci:Core/securityList:SecurityList")
    listed = only(plan, "oci:Core/subnet:Subnet").plain("securityListIds")
    assert listed == [own.id]
    assert vcn.outputs["defaultSecurityListId"] not in listed
    # The list admits nothing but ICMP: every TCP rule lives in the NSG.
    assert {r["protocol"] for r in own.plain("ingressSecurityRules")} == {"1"}
    # It lets out only what the bastion's private endpoint (a VNIC of the subnet, without an NSG)
    # needs for its sessions: SSH into the subnet.
    subnet_cidr = only(plan, "oci:Core/subnet:Subnet").plain("cidrBlock")
    assert [
        (r["protocol"], r["destination"], r["destinationType"], r["tcpOptions"])
        for r in own.plain("egressSecurityRules")
    ] == [("6", subnet_cidr, "CIDR_BLOCK", {"min": 22, "max": 22})]


def bastion_source(plan: offline.Plan) -> str:
    """The /32 of the plan's one bastion's private endpoint."""
    return only(plan, BASTION).outputs["privateEndpointIpAddress"] + "/32"


@pytest.mark.parametrize("stack", STACKS)
def test_vcn_default_security_list_is_managed_with_no_rule(stack, plan_of) -> None:
    # As OCI creates it, the default list admits 22 from 0.0.0.0/0 (CIS OCI 2.1, 2.5).
    plan = plan_of(stack)
    vcn = only(plan, "oci:Core/vcn:Vcn")
    default = only(plan, "oci:Core/defaultSecurityList:DefaultSecurityList")
    assert default.name == f"{stack}-network-default-seclist"
    assert default.plain("manageDefaultResourceId") == vcn.outputs["defaultSecurityListId"]
    assert default.id == vcn.outputs["defaultSecurityListId"]
    # Empty lists, not absent ones: the provider then removes every rule OCI put there.
    assert default.plain("ingressSecurityRules") == []
    assert default.plain("egressSecurityRules") == []


def test_offline_engine_refuses_a_default_list_that_is_no_vcns() -> None:
    import pulumi_oci as oci

    def program() -> None:
        oci.core.DefaultSecurityList("stray", manage_default_resource_id="ocid1.securitylist.oc1..notdefault")

    with pytest.raises(ValueError, match="is not the default security list of a VCN"):
        offline.run_program(program)


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stacks_admit_ssh_from_their_bastion_only(stack, plan_of, stack_config) -> None:
    plan, oci = plan_of(stack), stack_config(stack)["oci"]
    assert "sshAllowedCidrs" not in oci
    nsg = only(plan, "oci:Core/networkSecurityGroup:NetworkSecurityGroup")
    for rule in plan.of_type(RULE):
        assert rule.plain("networkSecurityGroupId") == nsg.id
        assert rule.plain("stateless") is False
    sources = ingress(plan, 22)
    assert sources == [bastion_source(plan)]
    # That one source is a single address inside the VCN: port 22 faces nothing outside it.
    vcn = ipaddress.ip_network(oci["vcnCidr"])
    (source,) = sources
    assert ipaddress.ip_network(source).prefixlen == 32
    assert ipaddress.ip_network(source).subnet_of(vcn)
    assert ingress(plan, 80) == ["0.0.0.0/0"]
    assert ingress(plan, 443) == ["0.0.0.0/0"]
    assert ingress(plan, 3306) == []
    egress = [r for r in plan.of_type(RULE) if r.plain("direction") == "EGRESS"]
    assert [(r.plain("protocol"), r.plain("destination")) for r in egress] == [("all", "0.0.0.0/0")]


@pytest.mark.parametrize("stack", STACKS)
def test_each_stack_has_one_bastion_on_its_subnet(stack, plan_of, stack_config) -> None:
    plan, oci = plan_of(stack), stack_config(stack)["oci"]
    bastion = only(plan, BASTION)
    subnet = only(plan, "oci:Core/subnet:Subnet")
    assert bastion.plain("targetSubnetId") == subnet.id
    assert bastion.plain("compartmentId") == oci["compartmentId"]
    assert bastion.plain("bastionType") == "STANDARD"
    assert bastion.plain("name") == f"dreamscape-{stack}"
    # The shipped stacks leave both keys out: the defaults, pinned here.
    assert bastion.plain("clientCidrBlockAllowLists") == ["0.0.0.0/0"]
    assert bastion.plain("maxSessionTtlInSeconds") == 1800
    endpoint = ipaddress.ip_address(bastion.outputs["privateEndpointIpAddress"])
    assert endpoint in ipaddress.ip_network(oci["subnetCidr"])
    assert str(endpoint) != only(plan, INSTANCE).outputs["privateIp"]
    assert plan.outputs["bastionId"] == bastion.id and bastion.id.startswith("ocid1.bastion.")
    assert "bastionId" not in plan.secret_outputs


def test_bastion_inputs_follow_the_config(run_with, stack_config) -> None:
    oci = stack_config("production")["oci"]
    clients = ["198.51.100.0/24", "192.0.2.7/32"]
    plan = run_with("production", oci={**oci, "bastionClientCidrs": clients, "bastionSessionTtlSeconds": 3600})
    bastion = only(plan, BASTION)
    assert bastion.plain("clientCidrBlockAllowLists") == clients
    assert bastion.plain("maxSessionTtlInSeconds") == 3600
    # Who may open sessions says nothing about who reaches port 22: still the endpoint alone.
    assert ingress(plan, 22) == [bastion_source(plan)]


def test_the_bastion_endpoint_follows_the_subnet(run_with, stack_config) -> None:
    oci = stack_config("staging")["oci"]
    plan = run_with("staging", oci={**oci, "subnetCidr": "10.20.7.0/29"})
    endpoint = only(plan, BASTION).outputs["privateEndpointIpAddress"]
    assert ipaddress.ip_address(endpoint) in ipaddress.ip_network("10.20.7.0/29")
    assert ingress(plan, 22) == [f"{endpoint}/32"]


def test_ssh_opens_to_the_internet_only_when_the_config_says_so(run_with, stack_config) -> None:
    oci = stack_config("dev")["oci"]
    assert not [w for w in run_with("dev").warnings if "SSH is open" in w]
    plan = run_with("dev", oci={**oci, "sshAllowedCidrs": ["0.0.0.0/0"]})
    assert sorted(ingress(plan, 22)) == sorted(["0.0.0.0/0", bastion_source(plan)])
    assert any("dev: SSH is open to 0.0.0.0/0 (oci.sshAllowedCidrs)" in w for w in plan.warnings)


def test_each_ssh_cidr_gets_its_own_rule_beside_the_bastion(run_with, stack_config) -> None:
    oci = stack_config("staging")["oci"]
    cidrs = ["198.51.100.0/24", "192.0.2.7/32", "2001:db8::/32"]
    plan = run_with("staging", oci={**oci, "sshAllowedCidrs": cidrs})
    assert sorted(ingress(plan, 22)) == sorted([*cidrs, bastion_source(plan)])
    assert not [w for w in plan.warnings if "SSH is open" in w]


def test_ssh_cidrs_absent_or_empty_leave_the_bastion_alone(run_with, stack_config) -> None:
    oci = stack_config("dev")["oci"]
    for value in (None, []):
        changed = {k: v for k, v in oci.items() if k != "sshAllowedCidrs"}
        if value is not None:
            changed["sshAllowedCidrs"] = value
        plan = run_with("dev", oci=changed)
        assert ingress(plan, 22) == [bastion_source(plan)]


@pytest.mark.parametrize("stack", STACKS)
def test_network_resources_are_children_of_the_network_component(stack, plan_of) -> None:
    plan = plan_of(stack)
    component = plan.named(f"{stack}-network")
    assert component.type == "dreamscape:environment:Network"
    children = plan.children_of(component)
    assert {r.type for r in children} == NETWORK_TYPES
    assert all(r.name.startswith(f"{stack}-network-") for r in children)
    assert all(r.parent == component.urn for r in plan.resources if r.type in NETWORK_TYPES)


def test_an_ssh_cidr_that_is_not_a_cidr_stops_before_any_resource(run_with, stack_config) -> None:
    oci = stack_config("production")["oci"]
    mocks = offline.OfflineMocks()
    with pytest.raises(ConfigError, match=r"dreamscape-infra:oci\.sshAllowedCidrs\[1\]: expected an IPv4 or IPv6 CIDR"):
        run_with("production", mocks=mocks, oci={**oci, "sshAllowedCidrs": ["203.0.113.0/24", "my-office"]})
    assert mocks.created == {}
