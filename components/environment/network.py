"""The environment's network: a VCN with one public subnet, reachable on 22 from the
environment's OCI Bastion (and from the configured CIDRs, none by default) and on 80/443
from anywhere, open outbound.

The bastion's private endpoint lives in the subnet and the NSG admits SSH from its address, so
an administrator (and, next, the pipeline) reaches the VM through a port-forwarding session
that needs an OCI credential and a per-session key; with no configured CIDR, port 22 faces no
address outside the VCN.

The subnet names its own security list. A subnet that names none gets the VCN's default
security list, which OCI creates letting 22 in from 0.0.0.0/0: it would bypass the NSG's SSH
rules. The subnet's own list carries ICMP for path MTU discovery and lets the bastion's
endpoint (a VNIC of the subnet without an NSG) send SSH into the subnet; the VM's traffic rules
live in a network security group attached to its VNIC.

The default list, attached to nothing, is still managed, with no rule: CIS OCI Foundations
2.1 and 2.5 flag OCI's rules on any list, attached or not, and a subnet added by hand would
carry them.

With `oci.target: containerInstances` there is no VM, no bastion and no SSH at all: two NSGs
instead of the VM's. The load balancer's (`nsg_id`) admits the web from anywhere on 80; the
containers' (`app_nsg_id`) admits the load balancer on the components' ports and its own
members (a release's instance reaching an accessory's), nothing else. Container instances pull
their images over their own VNIC, through the internet gateway: their VNICs have public
addresses, which this NSG keeps closed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_oci as oci

from components.settings import HTTP_PORT, WEB_PORTS

ANYWHERE = "0.0.0.0/0"
TCP = "6"
ICMP = "1"
ALL_PROTOCOLS = "all"
SSH_PORT = 22
NSG_PEER = "NETWORK_SECURITY_GROUP"


@dataclass(frozen=True)
class NetworkArgs:
    environment: str
    compartment_id: str
    vcn_cidr: str
    subnet_cidr: str
    ssh_allowed_cidrs: tuple[str, ...] = ()
    """Sources allowed on port 22 besides the bastion. 0.0.0.0/0 opens SSH to the internet: only when configured."""
    bastion_client_cidrs: tuple[str, ...] = (ANYWHERE,)
    """Who may connect to the bastion's sessions; opening one also takes an OCI credential."""
    bastion_session_ttl_seconds: int = 1800
    """The longest a bastion session may stay open."""
    container_ports: tuple[int, ...] = ()
    """Container instances target: the components' ports, which the load balancer reaches; empty
    for a VM (then the VM's rules, the bastion and SSH)."""
    freeform_tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """One NSG rule as data: the component turns each into a resource."""

    suffix: str
    direction: str
    protocol: str
    peer: pulumi.Input[str]
    port: int | None = None
    description: str = ""
    peer_type: str = "CIDR_BLOCK"
    """Or NETWORK_SECURITY_GROUP, the peer then an NSG's OCID."""


def rules_for(args: NetworkArgs, bastion_endpoint: pulumi.Input[str]) -> tuple[Rule, ...]:
    """The NSG rules: SSH from the bastion's private endpoint (a /32) and from each configured
    CIDR, the web from anywhere, all egress."""
    rules = [Rule("ssh-bastion", "INGRESS", TCP, bastion_endpoint, SSH_PORT, "SSH from the bastion's sessions")]
    rules += [
        Rule(f"ssh-{i}", "INGRESS", TCP, cidr, SSH_PORT, f"SSH from {cidr}")
        for i, cidr in enumerate(args.ssh_allowed_cidrs)
    ]
    rules += [Rule(f"tcp-{port}", "INGRESS", TCP, ANYWHERE, port, f"web traffic on {port}") for port in WEB_PORTS]
    rules.append(Rule("egress", "EGRESS", ALL_PROTOCOLS, ANYWHERE, None, "all outbound traffic"))
    return tuple(rules)


def load_balancer_rules(vcn_cidr: str) -> tuple[Rule, ...]:
    """The load balancer's NSG: the web from anywhere on 80; out to the VCN (its backends)."""
    return (
        Rule("lb-http", "INGRESS", TCP, ANYWHERE, HTTP_PORT, "web traffic on 80"),
        Rule("lb-egress", "EGRESS", TCP, vcn_cidr, None, "to the backends in the VCN"),
    )


def container_rules(ports: tuple[int, ...], load_balancer_nsg: pulumi.Input[str], own_nsg: pulumi.Input[str]):
    """The containers' NSG: the load balancer on each component's port, its own members on any
    TCP port (an accessory), all egress (image pulls)."""
    rules = [
        Rule(f"app-{port}", "INGRESS", TCP, load_balancer_nsg, port, f"the load balancer to {port}", NSG_PEER)
        for port in sorted(set(ports))
    ]
    rules.append(Rule("app-members", "INGRESS", TCP, own_nsg, None, "releases to accessories", NSG_PEER))
    rules.append(Rule("app-egress", "EGRESS", ALL_PROTOCOLS, ANYWHERE, None, "all outbound traffic"))
    return tuple(rules)


def dns_label(environment: str) -> str:
    """A VCN DNS label: a letter first, letters and digits only, at most 15 characters."""
    return ("ds" + "".join(c for c in environment if c.isalnum()))[:15]


class Network(pulumi.ComponentResource):
    vcn_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]
    nsg_id: pulumi.Output[str]
    """The VM's NSG; with container instances, the load balancer's."""
    app_nsg_id: pulumi.Output[str] | None
    """Container instances only: the NSG of every container instance."""
    bastion_id: pulumi.Output[str] | None
    """The OCID sessions are opened on (`oci bastion session create-port-forwarding --bastion-id`); VM only."""
    bastion_endpoint_ip: pulumi.Output[str] | None
    """The bastion's private endpoint in the subnet: where sessions reach the VM from; VM only."""
    subnet_domain: pulumi.Output[str]
    """The subnet's DNS domain (`public.<vcn label>.oraclevcn.com`): a VNIC's hostname label resolves in it."""

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
            # The bastion's private endpoint is a VNIC of this subnet without an NSG, so this list
            # decides what it may send: SSH to the subnet, where its sessions lead.
            egress_security_rules=[]
            if args.container_ports
            else [
                {
                    "protocol": TCP,
                    "destination": args.subnet_cidr,
                    "destination_type": "CIDR_BLOCK",
                    "tcp_options": {"min": SSH_PORT, "max": SSH_PORT},
                    "description": "bastion sessions to SSH in the subnet",
                },
            ],
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

        def security_group(suffix: str, display: str) -> oci.core.NetworkSecurityGroup:
            return oci.core.NetworkSecurityGroup(
                f"{name}-{suffix}",
                compartment_id=compartment,
                vcn_id=vcn.id,
                display_name=f"dreamscape-{args.environment}-{display}",
                freeform_tags=tags,
                opts=child,
            )

        def add(group: pulumi.Input[str], rule: Rule) -> None:
            peer_key = "source" if rule.direction == "INGRESS" else "destination"
            oci.core.NetworkSecurityGroupSecurityRule(
                f"{name}-{rule.suffix}",
                network_security_group_id=group,
                direction=rule.direction,
                protocol=rule.protocol,
                description=rule.description,
                stateless=False,
                tcp_options=(
                    {"destination_port_range": {"min": rule.port, "max": rule.port}} if rule.port is not None else None
                ),
                **{peer_key: rule.peer, f"{peer_key}_type": rule.peer_type},
                opts=child,
            )

        self.app_nsg_id: pulumi.Output[str] | None = None
        self.bastion_id: pulumi.Output[str] | None = None
        self.bastion_endpoint_ip: pulumi.Output[str] | None = None
        if args.container_ports:
            nsg = security_group("lb-nsg", "lb")
            app = security_group("app-nsg", "containers")
            for rule in load_balancer_rules(args.vcn_cidr):
                add(nsg.id, rule)
            for rule in container_rules(args.container_ports, nsg.id, app.id):
                add(app.id, rule)
            self.app_nsg_id = app.id
        else:
            nsg = security_group("nsg", "vm")
            bastion = oci.bastion.Bastion(
                f"{name}-bastion",
                bastion_type="STANDARD",
                compartment_id=compartment,
                target_subnet_id=subnet.id,
                client_cidr_block_allow_lists=list(args.bastion_client_cidrs),
                max_session_ttl_in_seconds=args.bastion_session_ttl_seconds,
                name=f"dreamscape-{args.environment}",
                freeform_tags=tags,
                opts=child,
            )
            endpoint_cidr = bastion.private_endpoint_ip_address.apply(lambda ip: f"{ip}/32")
            for rule in rules_for(args, endpoint_cidr):
                if (
                    rule.direction == "INGRESS"
                    and rule.port == SSH_PORT
                    and isinstance(rule.peer, str)
                    and _is_anywhere(rule.peer)
                ):
                    pulumi.log.warn(
                        f"{args.environment}: SSH is open to {rule.peer} (oci.sshAllowedCidrs); "
                        "only keys can log in, see the README on what that costs",
                        resource=self,
                    )
                add(nsg.id, rule)
            self.bastion_id = bastion.id
            self.bastion_endpoint_ip = bastion.private_endpoint_ip_address

        self.vcn_id = vcn.id
        self.subnet_id = subnet.id
        self.nsg_id = nsg.id
        self.subnet_domain = subnet.subnet_domain_name
        self.register_outputs(
            {
                "vcnId": self.vcn_id,
                "subnetId": self.subnet_id,
                "nsgId": self.nsg_id,
                "appNsgId": self.app_nsg_id,
                "bastionId": self.bastion_id,
                "bastionEndpointIp": self.bastion_endpoint_ip,
            }
        )


def _is_anywhere(cidr: str) -> bool:
    return ipaddress.ip_network(cidr).prefixlen == 0
