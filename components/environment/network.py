"""The environment's network: a VCN with one public subnet, reachable on 22 (from the
configured CIDRs only) and on 80/443 (from anywhere), open outbound.

The subnet names its own security list. A subnet that names none gets the VCN's default
security list, which OCI creates letting 22 in from 0.0.0.0/0: it would bypass the SSH CIDRs.
The subnet's own list carries only ICMP for path MTU discovery; the traffic rules live in a
network security group attached to the instance's VNIC.

The default list, attached to nothing, is still managed, with no rule: CIS OCI Foundations
2.1 and 2.5 flag OCI's rules on any list, attached or not, and a subnet added by hand would
carry them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_oci as oci

from components.settings import WEB_PORTS

ANYWHERE = "0.0.0.0/0"
TCP = "6"
ICMP = "1"
ALL_PROTOCOLS = "all"
SSH_PORT = 22


@dataclass(frozen=True)
class NetworkArgs:
    environment: str
    compartment_id: str
    vcn_cidr: str
    subnet_cidr: str
    ssh_allowed_cidrs: tuple[str, ...]
    """Sources allowed on port 22. 0.0.0.0/0 opens SSH to the internet: only when configured."""
    freeform_tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """One NSG rule as data: the component turns each into a resource."""

    suffix: str
    direction: str
    protocol: str
    peer: str
    port: int | None = None
    description: str = ""


def rules_for(args: NetworkArgs) -> tuple[Rule, ...]:
    """The NSG rules: SSH from each configured CIDR, the web from anywhere, all egress."""
    rules = [
        Rule(f"ssh-{i}", "INGRESS", TCP, cidr, SSH_PORT, f"SSH from {cidr}")
        for i, cidr in enumerate(args.ssh_allowed_cidrs)
    ]
    rules += [Rule(f"tcp-{port}", "INGRESS", TCP, ANYWHERE, port, f"web traffic on {port}") for port in WEB_PORTS]
    rules.append(Rule("egress", "EGRESS", ALL_PROTOCOLS, ANYWHERE, None, "all outbound traffic"))
    return tuple(rules)


def dns_label(environment: str) -> str:
    """A VCN DNS label: a letter first, letters and digits only, at most 15 characters."""
    return ("ds" + "".join(c for c in environment if c.isalnum()))[:15]


class Network(pulumi.ComponentResource):
    vcn_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    nsg_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dreamscape:environment:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.freeform_tags)
        compartment = args.compartment_id

        vcn = oci.core.Vcn(
            f"{name}-vcn",
            compartment_id=compartment,
            cidr_blocks=[args.vcn_cidr],
            display_name=f"dreamscape-{args.environment}",
            dns_label=dns_label(args.environment),
            freeform_tags=tags,
            opts=child,
        )
        gateway = oci.core.InternetGateway(
            f"{name}-igw",
            compartment_id=compartment,
            vcn_id=vcn.id,
            enabled=True,
            display_name=f"dreamscape-{args.environment}-igw",
            freeform_tags=tags,
            opts=child,
        )
        routes = oci.core.RouteTable(
            f"{name}-routes",
            compartment_id=compartment,
            vcn_id=vcn.id,
            display_name=f"dreamscape-{args.environment}-public",
            route_rules=[
                {"destination": ANYWHERE, "destination_type": "CIDR_BLOCK", "network_entity_id": gateway.id},
            ],
            freeform_tags=tags,
            opts=child,
        )
        # Only what path MTU discovery needs: "fragmentation needed" from anywhere, and
        # unreachable messages from inside the VCN. Everything else is the NSG's.
        icmp_only = oci.core.SecurityList(
            f"{name}-icmp",
            compartment_id=compartment,
            vcn_id=vcn.id,
            display_name=f"dreamscape-{args.environment}-icmp",
            ingress_security_rules=[
                {
                    "protocol": ICMP,
                    "source": ANYWHERE,
                    "source_type": "CIDR_BLOCK",
                    "icmp_options": {"type": 3, "code": 4},
                    "description": "path MTU discovery",
                },
                {
                    "protocol": ICMP,
                    "source": args.vcn_cidr,
                    "source_type": "CIDR_BLOCK",
                    "icmp_options": {"type": 3},
                    "description": "destination unreachable from inside the VCN",
                },
            ],
            egress_security_rules=[],
            freeform_tags=tags,
            opts=child,
        )
        # No rule at all, in or out: the subnet names its own list and the VNIC its NSG, so no
        # traffic relies on this one. A default list lives as long as its VCN: dropping this
        # resource later leaves the list as it was last set, not as OCI first made it.
        oci.core.DefaultSecurityList(
            f"{name}-default-seclist",
            manage_default_resource_id=vcn.default_security_list_id,
            display_name=f"dreamscape-{args.environment}-default",
            ingress_security_rules=[],
            egress_security_rules=[],
            freeform_tags=tags,
            opts=child,
        )
        subnet = oci.core.Subnet(
            f"{name}-subnet",
            compartment_id=compartment,
            vcn_id=vcn.id,
            cidr_block=args.subnet_cidr,
            display_name=f"dreamscape-{args.environment}-public",
            dns_label="public",
            prohibit_public_ip_on_vnic=False,
            route_table_id=routes.id,
            security_list_ids=[icmp_only.id],
            freeform_tags=tags,
            opts=child,
        )
        nsg = oci.core.NetworkSecurityGroup(
            f"{name}-nsg",
            compartment_id=compartment,
            vcn_id=vcn.id,
            display_name=f"dreamscape-{args.environment}-vm",
            freeform_tags=tags,
            opts=child,
        )
        for rule in rules_for(args):
            if rule.direction == "INGRESS" and rule.port == SSH_PORT and _is_anywhere(rule.peer):
                pulumi.log.warn(
                    f"{args.environment}: SSH is open to {rule.peer} (oci.sshAllowedCidrs); "
                    "only keys can log in, see the README on what that costs",
                    resource=self,
                )
            peer_key = "source" if rule.direction == "INGRESS" else "destination"
            oci.core.NetworkSecurityGroupSecurityRule(
                f"{name}-{rule.suffix}",
                network_security_group_id=nsg.id,
                direction=rule.direction,
                protocol=rule.protocol,
                description=rule.description,
                stateless=False,
                tcp_options=(
                    {"destination_port_range": {"min": rule.port, "max": rule.port}} if rule.port is not None else None
                ),
                **{peer_key: rule.peer, f"{peer_key}_type": "CIDR_BLOCK"},
                opts=child,
            )

        self.vcn_id = vcn.id
        self.subnet_id = subnet.id
        self.nsg_id = nsg.id
        self.register_outputs({"vcnId": self.vcn_id, "subnetId": self.subnet_id, "nsgId": self.nsg_id})


def _is_anywhere(cidr: str) -> bool:
    return ipaddress.ip_network(cidr).prefixlen == 0
