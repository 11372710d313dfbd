"""The CIS OCI Foundations Benchmark (2.0) networking, compute and storage items a stack's plan meets.

Each item is checked on the resources the program registered, with their inputs as sent, so
the summary follows the code and the config (`oci.sshAllowedCidrs: ["0.0.0.0/0"]` fails 2.3)
and never says "met" for a rule nobody looked at. An item that fails names the resources at
fault. The last item is this project's design rule, not a CIS one, checked the same way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tools import offline

VCN = "oci:Core/vcn:Vcn"
SECURITY_LIST = "oci:Core/securityList:SecurityList"
DEFAULT_SECURITY_LIST = "oci:Core/defaultSecurityList:DefaultSecurityList"
NSG_RULE = "oci:Core/networkSecurityGroupSecurityRule:NetworkSecurityGroupSecurityRule"
INSTANCE = "oci:Core/instance:Instance"
PUBLIC_IP = "oci:Core/publicIp:PublicIp"
BUCKET = "oci:ObjectStorage/bucket:Bucket"
TCP, ICMP, ALL = "6", "1", "all"
OCI_DEFAULT_INGRESS = ({"protocol": TCP, "source": "0.0.0.0/0", "tcpOptions": {"min": 22, "max": 22}},)
"""The TCP rule OCI puts in every VCN's default security list (besides ICMP): kept unless adopted."""


@dataclass(frozen=True)
class Check:
    ref: str
    title: str
    problems: tuple[str, ...]
    """Why the item is not met, one line per resource at fault; empty when it is met."""

    @property
    def met(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "title": self.title, "met": self.met, "problems": list(self.problems)}


def _anywhere(cidr: str | None) -> bool:
    try:
        return cidr is not None and ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _reaches(rule: dict[str, Any], port: int) -> bool:
    """Whether an ingress rule lets TCP reach `port` (all protocols do; no port range is every port)."""
    protocol = str(rule.get("protocol"))
    if protocol == ALL:
        return True
    if protocol != TCP:
        return False
    options = rule.get("tcpOptions") or {}
    span = options.get("destinationPortRange") or options  # NSG rules nest it; security lists do not
    low, high = span.get("min"), span.get("max")
    return low is None or high is None or low <= port <= high


def _open_to_internet(rule: dict[str, Any], port: int) -> bool:
    from_cidr = (rule.get("sourceType") or "CIDR_BLOCK") == "CIDR_BLOCK"
    return from_cidr and _anywhere(rule.get("source")) and _reaches(rule, port)


def _within(cidr: str | None, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        peer = ipaddress.ip_network(cidr or "", strict=False)
    except ValueError:
        return False
    return any(peer.version == n.version and peer.subnet_of(n) for n in networks)


def _unadopted_defaults(plan: offline.Plan) -> list[offline.Registered]:
    """VCNs whose default security list no `DefaultSecurityList` manages: it keeps OCI's rules."""
    adopted = {r.plain("manageDefaultResourceId") for r in plan.of_type(DEFAULT_SECURITY_LIST)}
    return [vcn for vcn in plan.of_type(VCN) if vcn.outputs.get("defaultSecurityListId") not in adopted]


def security_lists_open(port: int) -> Callable[[offline.Plan], Iterator[str]]:
    def find(plan: offline.Plan) -> Iterator[str]:
        for r in plan.of_type(SECURITY_LIST) + plan.of_type(DEFAULT_SECURITY_LIST):
            for rule in r.plain("ingressSecurityRules") or []:
                if _open_to_internet(rule, port):
                    yield f"{r.name} admits {rule['source']} to port {port}"
        for vcn in _unadopted_defaults(plan):
            if any(_open_to_internet(rule, port) for rule in OCI_DEFAULT_INGRESS):
                yield f"{vcn.name}: its default security list keeps OCI's rule admitting 0.0.0.0/0 to port {port}"

    return find


def nsgs_open(port: int) -> Callable[[offline.Plan], Iterator[str]]:
    def find(plan: offline.Plan) -> Iterator[str]:
        for r in plan.of_type(NSG_RULE):
            rule = {k: r.plain(k) for k in ("protocol", "source", "sourceType", "tcpOptions")}
            if r.plain("direction") == "INGRESS" and _open_to_internet(rule, port):
                yield f"{r.name} admits {rule['source']} to port {port} ({r.plain('description')})"

    return find


def default_lists_closed(plan: offline.Plan) -> Iterator[str]:
    """Every VCN's default list adopted, with no rule but ICMP from or to the VCN itself."""
    for vcn in _unadopted_defaults(plan):
        yield f"{vcn.name}: no DefaultSecurityList adopts its default security list, which keeps OCI's rules"
    vcns = {vcn.outputs.get("defaultSecurityListId"): vcn for vcn in plan.of_type(VCN)}
    for r in plan.of_type(DEFAULT_SECURITY_LIST):
        vcn = vcns.get(r.plain("manageDefaultResourceId"))
        inside = [ipaddress.ip_network(c) for c in (vcn.plain("cidrBlocks") if vcn else None) or []]
        for key, peer in (("ingressSecurityRules", "source"), ("egressSecurityRules", "destination")):
            for rule in r.plain(key) or []:
                if not (str(rule.get("protocol")) == ICMP and _within(rule.get(peer), inside)):
                    yield f"{r.name}: {key} has a rule for protocol {rule.get('protocol')} with {rule.get(peer)}"


def legacy_metadata_off(plan: offline.Plan) -> Iterator[str]:
    for r in plan.of_type(INSTANCE):
        if (r.plain("instanceOptions") or {}).get("areLegacyImdsEndpointsDisabled") is not True:
            yield f"{r.name} leaves the legacy (v1) metadata endpoints on"


def boot_volume_encrypted_in_transit(plan: offline.Plan) -> Iterator[str]:
    for r in plan.of_type(INSTANCE):
        at_launch = (r.plain("launchOptions") or {}).get("isPvEncryptionInTransitEnabled")
        if r.plain("isPvEncryptionInTransitEnabled") is not True and at_launch is not True:
            yield f"{r.name} attaches its boot volume without in-transit encryption"


def buckets_private(plan: offline.Plan) -> Iterator[str]:
    for r in plan.of_type(BUCKET):
        if r.plain("accessType") != "NoPublicAccess":
            yield f"{r.name} is readable without a credential ({r.plain('accessType')})"


def buckets_versioned(plan: offline.Plan) -> Iterator[str]:
    for r in plan.of_type(BUCKET):
        if r.plain("versioning") != "Enabled":
            yield f"{r.name} keeps no earlier versions of its objects"


CONTAINER_INSTANCE = "oci:ContainerEngine/containerInstance:ContainerInstance"


def reserved_public_ips_only(plan: offline.Plan) -> Iterator[str]:
    for r in plan.of_type(INSTANCE):
        if (r.plain("createVnicDetails") or {}).get("assignPublicIp") != "false":
            yield f"{r.name} asks for an ephemeral public IP on its primary VNIC"
    for r in plan.of_type(PUBLIC_IP):
        if r.plain("lifetime") != "RESERVED":
            yield f"{r.name} is a {r.plain('lifetime')} public IP"
    for r in plan.of_type(CONTAINER_INSTANCE):
        if any(vnic.get("isPublicIpAssigned") for vnic in r.plain("vnics") or []):
            yield f"{r.name} has an ephemeral public IP (its pulls use it; its NSG admits no one)"


ITEMS: tuple[tuple[str, str, Callable[[offline.Plan], Iterator[str]]], ...] = (
    ("CIS 2.1", "no security list admits 0.0.0.0/0 to port 22", security_lists_open(22)),
    ("CIS 2.2", "no security list admits 0.0.0.0/0 to port 3389", security_lists_open(3389)),
    ("CIS 2.3", "no network security group admits 0.0.0.0/0 to port 22", nsgs_open(22)),
    ("CIS 2.4", "no network security group admits 0.0.0.0/0 to port 3389", nsgs_open(3389)),
    ("CIS 2.5", "every VCN's default security list admits nothing but ICMP within the VCN", default_lists_closed),
    ("CIS 3.1", "instances have the legacy (v1) metadata endpoints off", legacy_metadata_off),
    ("CIS 3.3", "instances encrypt the boot volume attachment in transit", boot_volume_encrypted_in_transit),
    ("CIS 5.1.1", "no Object Storage bucket is public", buckets_private),
    ("CIS 5.1.3", "every Object Storage bucket keeps versions", buckets_versioned),
    ("design", "no public IP but the reserved one", reserved_public_ips_only),
)


def checks(plan: offline.Plan) -> list[Check]:
    """Each item with its problems, sorted: resources register in no fixed order, the report does."""
    return [Check(ref, title, tuple(sorted(find(plan)))) for ref, title, find in ITEMS]
