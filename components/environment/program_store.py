"""Where the VM gets the deploy program at first boot: an Object Storage object.

    bucket  dreamscape-<env>-deploy   (no public access)
    object  dreamscape-deploy         (deploy_program.program_text())
    read    a pre-authenticated request for that object alone, read only

OCI caps an instance's metadata at 32,000 bytes, and the program would take most of it. So
user_data carries the request's URL and the program's SHA-256 instead: cloud-init downloads
the object and installs it only if the hash matches (`cloudinit.program_install`). The hash
in user_data still ties each VM to one program: a change of the program replaces the VM, as
a change of anything else in user_data does, and never alters the program of a running one.

The URL is a bearer credential for that one object (which holds nothing secret: the program
is this repository's file), kept secret all the same: it lives in user_data, which only root
on the VM reads (containers cannot reach the metadata service). Object Storage's Always Free
allowance is 20 GB and 50,000 requests a month; this takes one object of about 60 KB and one
request per VM launch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_oci as oci

from components.environment import deploy_program

OBJECT = "dreamscape-deploy"
READ_EXPIRES = "2100-01-01T00:00:00Z"
"""The request must name an end; a VM launched years from now still reads its program."""


def bucket_name(environment: str) -> str:
    return f"dreamscape-{environment}-deploy"


def endpoint(region: str) -> str:
    """Object Storage's endpoint in `region`, which a pre-authenticated request's path completes."""
    return f"https://objectstorage.{region}.oraclecloud.com"


@dataclass(frozen=True)
class ProgramStoreArgs:
    environment: str
    compartment_id: str
    region: str
    freeform_tags: Mapping[str, str] = field(default_factory=dict)


class ProgramStore(pulumi.ComponentResource):
    url: pulumi.Output[str]
    """Secret: where cloud-init downloads the program."""
    sha256: str
    """The program's SHA-256 (hex), which cloud-init checks the download against."""

    def __init__(self, name: str, args: ProgramStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dreamscape:environment:ProgramStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        text = deploy_program.program_text()
        namespace = oci.objectstorage.get_namespace_output(
            compartment_id=args.compartment_id, opts=pulumi.InvokeOutputOptions(parent=self)
        ).namespace
        bucket = oci.objectstorage.Bucket(
            f"{name}-bucket",
            compartment_id=args.compartment_id,
            namespace=namespace,
            name=bucket_name(args.environment),
            access_type="NoPublicAccess",
            storage_tier="Standard",
            # CIS OCI 5.1.3: every version of the program stays readable to an operator.
            versioning="Enabled",
            freeform_tags=dict(args.freeform_tags),
            opts=child,
        )
        program = oci.objectstorage.StorageObject(
            f"{name}-object",
            namespace=namespace,
            bucket=bucket.name,
            object=OBJECT,
            content=text,
            content_type="text/x-python; charset=utf-8",
            opts=child,
        )
        read = oci.objectstorage.Preauthrequest(
            f"{name}-read",
            namespace=namespace,
            bucket=bucket.name,
            object_name=program.object,
            name=f"dreamscape-{args.environment}-deploy-program",
            access_type="ObjectRead",
            time_expires=READ_EXPIRES,
            opts=child,
        )
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()
        self.url = pulumi.Output.secret(pulumi.Output.concat(endpoint(args.region), read.access_uri))
        self.register_outputs({"sha256": self.sha256})
