"""An environment whose containers run as OCI Container Instances (`oci.target: containerInstances`).

What the stack owns:
- a flexible load balancer of 10 Mbps (the Always Free size), public, on the environment's
  reserved IP (kept across replacements, so the environment's address does not change), in
  the load balancer's NSG;
- one backend set per published component, named after it, whose HTTP health check asks the
  component's health path on its port, and a listener on 80 sending to it. The backends are
  the deploy job's: each deploy adds the new release's instance and removes the old one
  (ci/instances.py); Pulumi's backend set has no backends input, so `pulumi up` never
  touches them;
- one container instance per accessory, which deploys never replace: its VNIC's hostname label
  is the accessory's name, so a release reaches `postgres` by name in the subnet's DNS domain
  (the release instance searches it). Its volumes are the instance's ephemeral storage: they
  outlive a container's restart, not the instance (docs/environment.md, "Container instances").
  Its secrets are files in a config-file volume, mounted at /run/secrets as on a VM.

What it hands the pipeline: `release`, the JSON that `DEPLOY_OCI_<ENV>` carries besides the
deploy identity: where a release's instance goes (compartment, availability domain, subnet,
NSG, shape and size, the DNS domain to search), the load balancer and its backend sets, and
each component's container (port, health path, variables, secret names). No value of a secret.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_oci as oci

from components.environment import shapes
from components.settings import (
    HTTP_PORT,
    SECRET_FILE_SUFFIX,
    Accessory,
    Component,
    granted_secrets,
)

SECRETS_DIRECTORY = "/run/secrets"
"""Where a container finds its secrets, one file per name, as compose mounts them on a VM."""
SECRETS_VOLUME = "secrets"
POLICY = "ROUND_ROBIN"
LISTENER = "http"
HEALTH_CHECK = {"protocol": "HTTP", "return_code": 200, "interval_ms": 10000, "timeout_in_millis": 3000, "retries": 3}
"""The load balancer's health check of each published component: its path on its port, every 10 s."""
RESERVED_IP_PRIVATE_ID = "privateIpId"
"""The reserved IP's private IP: the load balancer's, which OCI sets; Pulumi must not undo it."""


@dataclass(frozen=True)
class ContainerPlatformArgs:
    environment: str
    compartment_id: str
    availability_domain: str
    shape: str
    ocpus: float
    memory_gbs: float
    subnet_id: pulumi.Input[str]
    subnet_domain: pulumi.Input[str]
    load_balancer_nsg_id: pulumi.Input[str]
    app_nsg_id: pulumi.Input[str]
    components: Sequence[Component]
    """The deployed components: one container each in every release's instance."""
    accessories: Sequence[Accessory] = ()
    app_secrets: pulumi.Input[str] = "{}"
    """Secret: every secret of the environment as `{NAME: value}` JSON; the accessories' go into
    their instances."""
    freeform_tags: Mapping[str, str] = field(default_factory=dict)


def secret_environment(names: Sequence[str]) -> dict[str, str]:
    """`<NAME>_FILE` for each secret: where the container reads it."""
    return {f"{n}{SECRET_FILE_SUFFIX}": f"{SECRETS_DIRECTORY}/{n}" for n in names}


def container_spec(component: Component, accessories: Sequence[Accessory]) -> dict[str, Any]:
    """One component's container as the deploy job makes it (the variable's `containers[]`)."""
    secrets = list(granted_secrets(component, tuple(accessories)))
    env = {"PORT": str(component.port), **dict(component.env), **secret_environment(secrets)}
    return {
        "name": component.name,
        "port": component.port,
        "healthPath": component.health_path or "/",
        "env": env,
        "secrets": secrets,
    }


def release_variable(
    args: ContainerPlatformArgs, subnet_id: str, subnet_domain: str, app_nsg_id: str, load_balancer_id: str
) -> dict[str, Any]:
    """What a deploy needs to make a release's instance and move the load balancer to it."""
    published = [c for c in args.components if c.host_port]
    return {
        "target": "containerInstances",
        "environment": args.environment,
        "compartmentId": args.compartment_id,
        "availabilityDomain": args.availability_domain,
        "subnetId": subnet_id,
        "nsgId": app_nsg_id,
        "dnsSearch": subnet_domain,
        "shape": args.shape,
        "ocpus": args.ocpus,
        "memoryGbs": args.memory_gbs,
        "loadBalancerId": load_balancer_id,
        "backendSets": {c.name: c.port for c in published},
        "containers": [container_spec(c, args.accessories) for c in args.components],
    }


def _config_files(names: Sequence[str], values_json: str) -> list[dict[str, str]]:
    values = json.loads(values_json)
    return [{"file_name": n, "data": base64.b64encode(values[n].encode()).decode()} for n in names]


class ContainerPlatform(pulumi.ComponentResource):
    load_balancer_id: pulumi.Output[str]
    public_ip: pulumi.Output[str]
    """The reserved address: the load balancer's, the environment's host."""
    release: pulumi.Output[dict[str, Any]]
    """The release part of `DEPLOY_OCI_<ENV>` (`release_variable`)."""
    accessory_ids: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: ContainerPlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dreamscape:environment:ContainerPlatform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.freeform_tags)
        display = f"dreamscape-{args.environment}"

        reserved = oci.core.PublicIp(
            f"{name}-ip",
            compartment_id=args.compartment_id,
            lifetime="RESERVED",
            display_name=display,
            freeform_tags=tags,
            # OCI assigns it to the load balancer's private IP: the provider documents ignoring
            # that field, else every preview would show a diff to undo the assignment.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=[RESERVED_IP_PRIVATE_ID]),
        )
        bandwidth = shapes.LOAD_BALANCER_BANDWIDTH_MBPS
        balancer = oci.loadbalancer.LoadBalancer(
            f"{name}-lb",
            compartment_id=args.compartment_id,
            display_name=display,
            shape="flexible",
            shape_details={"minimum_bandwidth_in_mbps": bandwidth, "maximum_bandwidth_in_mbps": bandwidth},
            subnet_ids=[args.subnet_id],
            is_private=False,
            network_security_group_ids=[args.load_balancer_nsg_id],
            reserved_ips=[{"id": reserved.id}],
            freeform_tags=tags,
            opts=child,
        )
        published = [c for c in args.components if c.host_port]
        for component in published:
            backend_set = oci.loadbalancer.BackendSet(
                f"{name}-{component.name}",
                name=component.name,
                load_balancer_id=balancer.id,
                policy=POLICY,
                health_checker={**HEALTH_CHECK, "port": component.port, "url_path": component.health_path or "/"},
                opts=child,
            )
            if component.host_port == HTTP_PORT:
                oci.loadbalancer.Listener(
                    f"{name}-{LISTENER}",
                    name=LISTENER,
                    load_balancer_id=balancer.id,
                    default_backend_set_name=backend_set.name,
                    port=HTTP_PORT,
                    protocol="HTTP",
                    opts=child,
                )

        self.accessory_ids = {}
        for accessory in args.accessories:
            self.accessory_ids[accessory.name] = self._accessory(name, args, accessory, tags).id

        self.load_balancer_id = balancer.id
        self.public_ip = reserved.ip_address
        self.release = pulumi.Output.all(args.subnet_id, args.subnet_domain, args.app_nsg_id, balancer.id).apply(
            lambda v: release_variable(args, *v)
        )
        self.register_outputs({"loadBalancerId": self.load_balancer_id, "publicIp": self.public_ip})

    def _accessory(
        self, name: str, args: ContainerPlatformArgs, accessory: Accessory, tags: Mapping[str, str]
    ) -> oci.containerengine.ContainerInstance:
        secrets = list(accessory.secrets)
        mounts: list[dict[str, Any]] = [
            {"mount_path": path, "volume_name": accessory.volume(volume)} for volume, path in accessory.volumes
        ]
        volumes: list[Any] = [
            {"name": accessory.volume(volume), "volume_type": "EMPTYDIR", "backing_store": "EPHEMERAL_STORAGE"}
            for volume, _ in accessory.volumes
        ]
        if secrets:
            mounts.append({"mount_path": SECRETS_DIRECTORY, "volume_name": SECRETS_VOLUME, "is_read_only": True})
            volumes.append(
                pulumi.Output.secret(args.app_secrets).apply(
                    lambda text: {
                        "name": SECRETS_VOLUME,
                        "volume_type": "CONFIGFILE",
                        "configs": _config_files(secrets, text),
                    }
                )
            )
        return oci.containerengine.ContainerInstance(
            f"{name}-{accessory.name}",
            compartment_id=args.compartment_id,
            availability_domain=args.availability_domain,
            display_name=f"dreamscape-{args.environment}-{accessory.name}",
            shape=args.shape,
            shape_config={"ocpus": shapes.ACCESSORY_OCPUS, "memory_in_gbs": shapes.ACCESSORY_MEMORY_GBS},
            containers=[
                {
                    "display_name": accessory.name,
                    "image_url": accessory.image,
                    "environment_variables": {**dict(accessory.env), **secret_environment(secrets)},
                    "volume_mounts": mounts,
                    "is_resource_principal_disabled": True,
                }
            ],
            volumes=volumes,
            vnics=[
                {
                    "subnet_id": args.subnet_id,
                    "nsg_ids": [args.app_nsg_id],
                    # Egress to its registry through the internet gateway; its NSG admits no one
                    # from outside.
                    "is_public_ip_assigned": True,
                    "hostname_label": accessory.name,
                    "display_name": f"dreamscape-{args.environment}-{accessory.name}",
                }
            ],
            container_restart_policy="ALWAYS",
            freeform_tags={**tags, "accessory": accessory.name},
            opts=pulumi.ResourceOptions(
                parent=self,
                additional_secret_outputs=["volumes"],
                # Its hostname label is unique in the subnet: the old one goes first.
                delete_before_replace=True,
            ),
        )
