"""The environment's VM and the reserved public IP that names it.

- Image: the newest Canonical Ubuntu image of the configured release for the shape, unless
  an image OCID is pinned. A looked-up image is ignored after creation: a newer one must not
  replace a running VM. Pinning `oci.imageId` is how an operator moves the VM to another image.
- Availability domain: the configured one, or the first of the region that offers the shape,
  chosen before anything is registered and then kept (a later lookup never moves the VM).
- Primary VNIC without an ephemeral public IP (`assign_public_ip` is the string "false" in
  pulumi-oci): a private IP holds at most one public IP, and OCI refuses to assign the
  reserved one to a private IP that already has one.
- Reserved public IP bound to the primary private IP, looked up by address in the subnet;
  it survives an instance replacement, so the host in CI's secrets stays valid.
- CIS OCI Foundations items: legacy (v1) metadata endpoints disabled, in-transit encryption
  of the boot volume attachment where the shape supports it.
- Backups (`oci.bootVolumeBackups: N`): a policy that backs the boot volume up every Sunday at
  03:00 UTC, incrementally, keeping the last N, assigned to the VM's boot volume. The boot
  volume holds the Docker volumes (an accessory's database too), so a backup is a
  crash-consistent copy of the environment's data, as after a power cut.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_oci as oci

from components.environment import cloudinit, shapes
from components.settings import PROJECT, ConfigError

UBUNTU = "Canonical Ubuntu"
WEEK_SECONDS = 7 * 24 * 3600


def backup_schedule(kept: int) -> dict[str, Any]:
    """Every Sunday at 03:00 UTC, incremental, kept `kept` weeks (so `kept` backups at most)."""
    return {
        "backup_type": "INCREMENTAL",
        "period": "ONE_WEEK",
        "day_of_week": "SUNDAY",
        "hour_of_day": 3,
        "offset_type": "STRUCTURED",
        "time_zone": "UTC",
        "retention_seconds": kept * WEEK_SECONDS,
    }


IMAGE_SOURCE_PATH = "sourceDetails.sourceId"
"""The engine's property path of the instance's image, as `ignore_changes` names it."""
AVAILABILITY_DOMAIN_PATH = "availabilityDomain"


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
    availability_domain: str
    """From `availability_domain()`, looked up before anything is registered."""
    availability_domain_pinned: bool = False
    """True when `oci.availabilityDomain` names it: changing the pin then moves (replaces) the VM."""
    image_id: str | None = None
    ubuntu_version: str = "24.04"
    boot_volume_backups: int = 0
    """Weekly boot volume backups kept; 0: no backup policy."""
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
SHAPES = "oci:Core/getShapes:getShapes"
CONTAINER_SHAPES = "oci:ContainerInstances/getContainerInstanceShapes:getContainerInstanceShapes"


def availability_domain(compartment_id: str, shape: str, pinned: str | None, opts: pulumi.InvokeOptions) -> str:
    """The availability domain the VM (or the container instances) launch in: `pinned`, or the
    first one that offers `shape`.

    Shapes differ by domain (`VM.Standard.E2.1.Micro` exists only in some domains of the home
    region), so each domain's shapes are listed (`getShapes`) and the first that offers the
    shape wins; a pinned domain must offer it too. Looked up before anything is registered, so
    no domain at all stops the run with the domains that were tried.

    Called by token rather than through `oci.identity`: importing that package loads every
    identity-domains type in the SDK, over a second of each preview and plan for one function.
    The provider version is the installed SDK's, as the generated functions pin it.
    """
    pinned_opts = pulumi.InvokeOptions.merge(pulumi.InvokeOptions(version=_OCI_VERSION), opts)

    def invoke(token: str, args: dict[str, str]) -> dict[str, Any]:
        return pulumi.runtime.invoke(token, args, opts=pinned_opts).value or {}

    listed = invoke(AVAILABILITY_DOMAINS, {"compartmentId": compartment_id}).get("availabilityDomains") or []
    domains = [d["name"] for d in listed]

    def offers(domain: str) -> bool:
        if shape.startswith("CI."):  # a container instance shape: Container Instances lists its own
            found = invoke(CONTAINER_SHAPES, {"compartmentId": compartment_id, "availabilityDomain": domain})
            collections = found.get("containerInstanceShapeCollections") or []
            return any(s.get("name") == shape for c in collections for s in c.get("items") or [])
        found = invoke(SHAPES, {"compartmentId": compartment_id, "availabilityDomain": domain, "shape": shape})
        return any(s.get("name") == shape for s in found.get("shapes") or [])

    if pinned is not None:
        if pinned not in domains or not offers(pinned):
            offering = [d for d in domains if offers(d)]
            raise ConfigError(
                f"{PROJECT}:oci.availabilityDomain: {pinned!r} does not offer {shape} to this compartment; "
                f"domains that do: {', '.join(offering) or 'none'}"
            )
        return pinned
    for domain in domains:
        if offers(domain):
            return domain
    raise ConfigError(
        f"{PROJECT}:oci.shape: no availability domain of this region offers {shape} to this compartment "
        f"(tried {', '.join(domains) or 'none: the region lists no domain'}); choose another shape, or "
        "for VM.Standard.E2.1.Micro use the tenancy's home region"
    )


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

        vm = oci.core.Instance(
            f"{name}-instance",
            compartment_id=args.compartment_id,
            availability_domain=args.availability_domain,
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
            # The create-time flag only: the provider documents its twin under launch_options
            # as deprecated at create ("for update operation only").
            is_pv_encryption_in_transit_enabled=shape.pv_encryption_in_transit or None,
            freeform_tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                # A newer image from the lookup must not replace a running VM: the engine
                # keeps the image it was created with. A pinned oci.imageId is a deliberate
                # choice, so changing the pin does replace the VM (the way to upgrade it).
                # Likewise a looked-up availability domain: the provider warns that the order
                # of domains can change, and a new domain would replace the VM. A pinned
                # oci.availabilityDomain is deliberate, so changing it moves the VM.
                ignore_changes=[
                    *([] if args.image_id else [IMAGE_SOURCE_PATH]),
                    *([] if args.availability_domain_pinned else [AVAILABILITY_DOMAIN_PATH]),
                ],
                # The Always Free allowance has no room for the old and the new A1 VM at once
                # (production and staging use all 2 OCPUs and 12 GB), so a replacement deletes
                # first: minutes of downtime (a new boot, cloud-init, then a deploy), which a
                # create-first replacement would trade for a launch refused or billed. The
                # reserved IP and host key carry over. docs/environment.md says more.
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

        if args.boot_volume_backups:
            policy = oci.core.VolumeBackupPolicy(
                f"{name}-backups",
                compartment_id=args.compartment_id,
                display_name=f"dreamscape-{args.environment}-weekly",
                schedules=[backup_schedule(args.boot_volume_backups)],
                freeform_tags=tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            oci.core.VolumeBackupPolicyAssignment(
                f"{name}-backups-boot",
                asset_id=vm.boot_volume_id,
                policy_id=policy.id,
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.instance_id = vm.id
        self.private_ip = vm.private_ip
        self.public_ip = reserved.ip_address
        self.image_id = image_id
        self.availability_domain = vm.availability_domain
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
