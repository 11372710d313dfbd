"""The CIS OCI items the offline plan reports (tools/cis.py), checked on registered resources."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from tests.conftest import only
from tests.test_plan import plan_cli
from tools import cis, offline
from tools import plan as plan_tool

STACKS = ["dev", "staging", "production"]
ITEMS = [
    "CIS 2.1",
    "CIS 2.2",
    "CIS 2.3",
    "CIS 2.4",
    "CIS 2.5",
    "CIS 3.1",
    "CIS 3.3",
    "CIS 5.1.1",
    "CIS 5.1.3",
    "design",
]


def unmet(plan: offline.Plan) -> dict[str, tuple[str, ...]]:
    return {c.ref: c.problems for c in cis.checks(plan) if not c.met}


def with_inputs(plan: offline.Plan, type_: str, **inputs) -> offline.Plan:
    """A copy of the plan in which the one resource of `type_` was registered with `inputs` changed."""
    target = only(plan, type_)
    changed = dataclasses.replace(target, inputs={**copy.deepcopy(target.inputs), **inputs})
    return dataclasses.replace(plan, resources=[changed if r is target else r for r in plan.resources])


def without(plan: offline.Plan, type_: str) -> offline.Plan:
    return dataclasses.replace(plan, resources=[r for r in plan.resources if r.type != type_])


@pytest.mark.parametrize("stack", STACKS)
def test_every_item_is_met_by_the_shipped_stacks(stack, plan_of) -> None:
    checks = cis.checks(plan_of(stack))
    assert [c.ref for c in checks] == ITEMS
    assert [c.ref for c in checks if not c.met] == []


def test_ssh_open_to_the_internet_fails_the_nsg_item_only(run_with, stack_config) -> None:
    oci = stack_config("dev")["oci"]
    plan = run_with("dev", oci={**oci, "sshAllowedCidrs": ["203.0.113.0/24", "0.0.0.0/0", "::/0"]})
    assert unmet(plan) == {
        "CIS 2.3": (
            "dev-network-ssh-1 admits 0.0.0.0/0 to port 22 (SSH from 0.0.0.0/0)",
            "dev-network-ssh-2 admits ::/0 to port 22 (SSH from ::/0)",
        )
    }


DEFAULT_LIST = "oci:Core/defaultSecurityList:DefaultSecurityList"
OWN_LIST = "oci:Core/securityList:SecurityList"
INSTANCE = "oci:Core/instance:Instance"
ANY_TCP = {"protocol": "6", "source": "0.0.0.0/0", "sourceType": "CIDR_BLOCK"}


def test_a_vcn_whose_default_list_nothing_adopts_fails_the_ssh_and_default_list_items(plan_of) -> None:
    found = unmet(without(plan_of("staging"), DEFAULT_LIST))
    assert set(found) == {"CIS 2.1", "CIS 2.5"}
    assert found["CIS 2.1"] == (
        "staging-network-vcn: its default security list keeps OCI's rule admitting 0.0.0.0/0 to port 22",
    )


@pytest.mark.parametrize(
    ("type_", "inputs", "failing"),
    [
        # The default list with any rule but ICMP inside the VCN.
        (DEFAULT_LIST, {"ingressSecurityRules": [{**ANY_TCP, "tcpOptions": {"min": 22, "max": 22}}]}, {"2.1", "2.5"}),
        (DEFAULT_LIST, {"ingressSecurityRules": [{"protocol": "all", "source": "0.0.0.0/0"}]}, {"2.1", "2.2", "2.5"}),
        (DEFAULT_LIST, {"ingressSecurityRules": [{"protocol": "1", "source": "0.0.0.0/0"}]}, {"2.5"}),
        (DEFAULT_LIST, {"egressSecurityRules": [{"protocol": "all", "destination": "0.0.0.0/0"}]}, {"2.5"}),
        # Any other list: a TCP rule with no port range opens every port.
        (OWN_LIST, {"ingressSecurityRules": [ANY_TCP]}, {"2.1", "2.2"}),
        (OWN_LIST, {"ingressSecurityRules": [{**ANY_TCP, "tcpOptions": {"min": 3000, "max": 3400}}]}, {"2.2"}),
        (INSTANCE, {"instanceOptions": {"areLegacyImdsEndpointsDisabled": False}}, {"3.1"}),
        (INSTANCE, {"isPvEncryptionInTransitEnabled": None}, {"3.3"}),
        (INSTANCE, {"createVnicDetails": {"assignPublicIp": "true"}}, {"design"}),
        ("oci:Core/publicIp:PublicIp", {"lifetime": "EPHEMERAL"}, {"design"}),
        ("oci:ObjectStorage/bucket:Bucket", {"accessType": "ObjectRead"}, {"5.1.1"}),
        ("oci:ObjectStorage/bucket:Bucket", {"versioning": "Disabled"}, {"5.1.3"}),
    ],
)
def test_each_item_fails_when_one_input_breaks_it(plan_of, type_, inputs, failing) -> None:
    found = unmet(with_inputs(plan_of("production"), type_, **inputs))
    assert {ref.removeprefix("CIS ") for ref in found} == failing
    assert all(problems for problems in found.values())


def test_icmp_within_the_vcn_keeps_the_default_list_item_met(plan_of) -> None:
    plan = plan_of("dev")
    inside = only(plan, "oci:Core/vcn:Vcn").plain("cidrBlocks")[0]
    rule = {"protocol": "1", "source": inside, "icmpOptions": {"type": 3}}
    assert unmet(with_inputs(plan, DEFAULT_LIST, ingressSecurityRules=[rule])) == {}


def test_nsg_ranges_that_cover_a_port_count(plan_of) -> None:
    plan = plan_of("dev")
    web = plan.named("dev-network-tcp-443")
    wide = dataclasses.replace(
        web, inputs={**web.inputs, "tcpOptions": {"destinationPortRange": {"min": 1, "max": 65535}}}
    )
    found = unmet(dataclasses.replace(plan, resources=[wide if r is web else r for r in plan.resources]))
    assert set(found) == {"CIS 2.3", "CIS 2.4"}
    assert found["CIS 2.3"] == ("dev-network-tcp-443 admits 0.0.0.0/0 to port 22 (web traffic on 443)",)


def test_plan_json_carries_the_checks(run_with, stack_config) -> None:
    oci = stack_config("staging")["oci"]
    data = plan_tool.as_json(run_with("staging", oci={**oci, "sshAllowedCidrs": ["0.0.0.0/0"]}))
    by_ref = {c["ref"]: c for c in data["cisChecks"]}
    assert list(by_ref) == ITEMS
    assert by_ref["CIS 2.3"]["met"] is False
    assert by_ref["CIS 2.3"]["problems"] == ["staging-network-ssh-0 admits 0.0.0.0/0 to port 22 (SSH from 0.0.0.0/0)"]
    assert all(c["met"] and c["problems"] == [] for ref, c in by_ref.items() if ref != "CIS 2.3")


def test_plan_prints_the_checks(tmp_path: Path) -> None:
    result = plan_cli("--stack", "dev", "--json", str(tmp_path / "plan.json"))
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("CIS OCI Foundations Benchmark 2.0 items, checked on the registered resources:\n")[1]
    lines = section.splitlines()
    assert lines[0] == "  met      CIS 2.1  no security list admits 0.0.0.0/0 to port 22"
    assert [line.split()[:3] for line in lines[:9]] == [["met", "CIS", ref[4:]] for ref in ITEMS[:9]]
    assert lines[9].split()[:2] == ["met", "design"]
    assert json.loads((tmp_path / "plan.json").read_text())["cisChecks"][0]["ref"] == "CIS 2.1"
