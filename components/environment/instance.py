"""The environment's VM and the reserved public IP that names it.

- Image: the newest Canonical Ubuntu image of the configured release for the shape, unless
  an image OCID is pinned. A looked-up image is ignored after creation: a newer one must not
  replace a running VM. Pinning `oci.imageId` is how an operator moves the VM to another image.
- Primary VNIC without an ephemeral public IP (`assign_public_ip` is the string "false" in
  pulumi-oci): a private IP holds at most one public IP, and OCI refuses to assign the
  reserved one to a private IP that already has one.
- Reserved public IP bound to the primary private IP, looked up by address in the subnet;
  it survives an instance replacement, so the host in CI's secrets stays valid.
- CIS OCI Foundations items: legacy (v1) metadata endpoints disabled, in-transit encryption
  of the boot volume attachment where the shape supports it.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_oci as oci

from components.environment import cloudinit, shapes

UBUNTU = "Canonical Ubuntu"
IMAGE_SOURCE_PATH = "sourceDetails.sourceId"
"""The engine's property path of the instance's image, as `ignore_changes` names it."""


@dataclass(frozen=True)
class InstanceArgs:
    environment: str
    compartment_id: str
    shape: str
    ocpus: float
    memory_gbs: float
    boot_volume_gbs: int
    subnet_id: pulumi.Input[str]
    nsg_ids: Sequence[pulumi.Input[str]]
    user_data: pulumi.Input[str]
    """The cloud-init text (secret: it holds the host private key); encoded here."""
    image_id: str | None = None
    ubuntu_version: str = "24.04"
    availability_domain: str | None = None
    freeform_tags: Mapping[str, str] = field(default_factory=dict)


def newest_image(images: Sequence[Any], shape: str, version: str) -> str:
    """The OCID of the most recently created image in a getImages answer."""
    available = [i for i in images if _get(i, "state") == "AVAILABLE"]
    if not available:
        raise ValueError(
            f"no available {UBUNTU} {version} image for {shape} in this compartment's region; pin one with oci.imageId"
        )
    return _get(max(available, key=lambda i: _get(i, "time_created")), "id")


def _get(item: Any, key: str) -> Any:
    return item[key] if isinstance(item, Mapping) else getattr(item, key)


AVAILABILITY_DOMAINS = "oci:Identity/getAvailabilityDomains:getAvailabilityDomains"


def first_availability_domain(compartment_id: str, opts: pulumi.InvokeOutputOptions) -> pulumi.Output[str]:
    """The compartment's first availability domain, from the provider's `getAvailabilityDomains`.

    Called by its token rather than through `oci.identity`: importing that package loads every
    identity-domains type in the SDK, over a second of each preview and plan for one function.
    The provider version is the installed SDK's, as the generated function would pin it.
    """
    pinned = pulumi.InvokeOutputOptions.merge(pulumi.InvokeOutputOptions(version=_OCI_VERSION), opts)
    result = pulumi.runtime.invoke_output(AVAILABILITY_DOMAINS, {"compartmentId": compartment_id}, opts=pinned)
    return result.apply(lambda r: r["availabilityDomains"][0]["name"])


_OCI_VERSION = importlib.metadata.version("pulumi_oci")


class Instance(pulumi.ComponentResource):
    instance_id: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    public_ip: pulumi.Output[str]
    """The reserved address: the environment's host."""
    image_id: pulumi.Output[str]
    availability_domain: pulumi.Output[str]

    def __init__(self, name: str, args: InstanceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dreamscape:environment:Instance", name, None, opts)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        shape = shapes.shape(args.shape)
        tags = dict(args.freeform_tags)

        if args.image_id:
            image_id: pulumi.Output[str] = pulumi.Output.from_input(args.image_id)
        else:
            found = oci.core.get_images_output(
                compartment_id=args.compartment_id,
                operating_system=UBUNTU,
                operating_system_version=args.ubuntu_version,
                shape=args.shape,
                state="AVAILABLE",
                sort_by="TIMECREATED",
                sort_order="DESC",
                opts=invoke,
            )
            image_id = found.images.apply(lambda images: newest_image(images, args.shape, args.ubuntu_version))

        if args.availability_domain:
            domain: pulumi.Output[str] = pulumi.Output.from_input(args.availability_domain)
        else:
            domain = first_availability_domain(args.compartment_id, invoke)

        vm = oci.core.Instance(
            f"{name}-instance",
            compartment_id=args.compartment_id,
            availability_domain=domain,
            display_name=f"dreamscape-{args.environment}",
            shape=args.shape,
            shape_config=({"ocpus": args.ocpus, "memory_in_gbs": args.memory_gbs} if shape.flexible else None),
            source_details={
                "source_type": "image",
                "source_id": image_id,
                "boot_volume_size_in_gbs": str(args.boot_volume_gbs),
            },
            create_vnic_details={
                "subnet_id": args.subnet_id,
                "nsg_ids": list(args.nsg_ids),
                "assign_public_ip": "false",
                "assign_private_dns_record": True,
                "hostname_label": f"dreamscape-{args.environment}",
            },
            metadata={"user_data": pulumi.Output.from_input(args.user_data).apply(cloudinit.encode)},
            instance_options={"are_legacy_imds_endpoints_disabled": True},
            # The create-time field and its updatable twin under launch_options, which is
            # also what CIS benchmark scanners read back from the instance.
            is_pv_encryption_in_transit_enabled=shape.pv_encryption_in_transit or None,
            launch_options=({"is_pv_encryption_in_transit_enabled": True} if shape.pv_encryption_in_transit else None),
            freeform_tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                # A newer image from the lookup must not replace a running VM: the engine
                # keeps the image it was created with. A pinned oci.imageId is a deliberate
                # choice, so changing the pin does replace the VM (the way to upgrade it).
                ignore_changes=[] if args.image_id else [IMAGE_SOURCE_PATH],
                # The Always Free allowance has no room for the old and the new VM at once,
                # so a replacement deletes first. The reserved IP and host key carry over.
                delete_before_replace=True,
            ),
        )

        primary = oci.core.get_private_ips_output(ip_address=vm.private_ip, subnet_id=args.subnet_id, opts=invoke)
        reserved = oci.core.PublicIp(
            f"{name}-ip",
            compartment_id=args.compartment_id,
            lifetime="RESERVED",
            display_name=f"dreamscape-{args.environment}",
            private_ip_id=primary.private_ips.apply(primary_private_ip_id),
            freeform_tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[vm]),
        )

        self.instance_id = vm.id
        self.private_ip = vm.private_ip
        self.public_ip = reserved.ip_address
        self.image_id = image_id
        self.availability_domain = domain
        self.register_outputs(
            {
                "instanceId": self.instance_id,
                "privateIp": self.private_ip,
                "publicIp": self.public_ip,
                "imageId": self.image_id,
                "availabilityDomain": self.availability_domain,
            }
        )


def primary_private_ip_id(private_ips: Sequence[Any]) -> str:
    primary = [p for p in private_ips if _get(p, "is_primary")]
    if len(primary) != 1:
        raise ValueError(f"expected the instance's one primary private IP, found {len(primary)}")
    return _get(primary[0], "id")
