"""The environment's VM and reserved IP as each stack registers them."""

from __future__ import annotations

import base64
import gzip
import ipaddress
import os

import pytest
import yaml

from components.environment import cloudinit, instance
from components.settings import ConfigError
from tests.conftest import only
from tools import offline

STACKS = ["dev", "staging", "production"]
INSTANCE = "oci:Core/instance:Instance"
PUBLIC_IP = "oci:Core/publicIp:PublicIp"
IMAGES = "oci:Core/getImages:getImages"
DOMAINS = "oci:Identity/getAvailabilityDomains:getAvailabilityDomains"
PRIVATE_IPS = "oci:Core/getPrivateIps:getPrivateIps"


def calls(mocks: offline.OfflineMocks, token: str) -> list[dict]:
    return [args for tok, args in mocks.calls if tok == token]


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[offline.Plan, offline.OfflineMocks]]:
    """Each stack run with its own recording mocks, so the invokes can be read back."""
    out = {}
    for stack in STACKS:
        mocks = offline.OfflineMocks()
        out[stack] = (offline.run(stack, mocks=mocks), mocks)
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_instance_inputs_follow_the_stack_config(stack, runs, stack_config) -> None:
    plan, _ = runs[stack]
    oci = stack_config(stack)["oci"]
    vm = only(plan, INSTANCE)
    assert vm.plain("shape") == oci["shape"]
    assert vm.plain("compartmentId") == oci["compartmentId"]
    assert vm.plain("sourceDetails")["sourceType"] == "image"
    assert vm.plain("sourceDetails")["bootVolumeSizeInGbs"] == str(oci["bootVolumeGbs"])
    if oci["shape"].endswith(".Flex"):
        assert vm.plain("shapeConfig") == {"ocpus": oci["ocpus"], "memoryInGbs": oci["memoryGbs"]}
    else:
        assert vm.plain("shapeConfig") is None  # a fixed shape refuses a shape config


@pytest.mark.parametrize("stack", STACKS)
def test_primary_vnic_has_no_ephemeral_public_ip_and_sits_in_the_nsg(stack, runs) -> None:
    plan, _ = runs[stack]
    vnic = only(plan, INSTANCE).plain("createVnicDetails")
    assert vnic["assignPublicIp"] == "false"  # the string: pulumi-oci declares it so
    assert vnic["subnetId"] == only(plan, "oci:Core/subnet:Subnet").id
    assert vnic["nsgIds"] == [only(plan, "oci:Core/networkSecurityGroup:NetworkSecurityGroup").id]
    assert only(plan, INSTANCE).outputs["publicIp"] == ""


@pytest.mark.parametrize("stack", STACKS)
def test_cis_items_legacy_metadata_off_and_boot_volume_encrypted_in_transit(stack, runs) -> None:
    vm = only(runs[stack][0], INSTANCE)
    assert vm.plain("instanceOptions") == {"areLegacyImdsEndpointsDisabled": True}
    assert vm.plain("isPvEncryptionInTransitEnabled") is True
    # Only the create-time flag: the provider documents launch_options' twin as update-only.
    assert vm.plain("launchOptions") is None


@pytest.mark.parametrize("stack", STACKS)
def test_newest_ubuntu_image_for_the_shape_is_looked_up(stack, runs, stack_config) -> None:
    plan, mocks = runs[stack]
    (lookup,) = calls(mocks, IMAGES)
    assert lookup["shape"] == stack_config(stack)["oci"]["shape"]
    assert lookup["operatingSystem"] == "Canonical Ubuntu"
    assert lookup["operatingSystemVersion"] == "24.04"
    assert (lookup["sortBy"], lookup["sortOrder"], lookup["state"]) == ("TIMECREATED", "DESC", "AVAILABLE")
    answer = mocks.oci.images(lookup)["images"]
    newest = max(answer, key=lambda i: i["timeCreated"])
    assert only(plan, INSTANCE).plain("sourceDetails")["sourceId"] == newest["id"]


def test_of_two_images_the_newer_one_is_chosen_whatever_the_order(run_with) -> None:
    older = {"id": "ocid1.image.oc1.eu-frankfurt-1.older", "timeCreated": "2026-03-01T00:00:00.000Z"}
    newer = {"id": "ocid1.image.oc1.eu-frankfurt-1.newer", "timeCreated": "2026-05-01T00:00:00.000Z"}
    for order in ([older, newer], [newer, older]):
        mocks = offline.OfflineMocks()
        real = mocks.oci.images

        def answer(args, order=order, real=real):
            template = real(args)["images"][0]
            return {**args, "id": "images", "images": [{**template, **image} for image in order]}

        mocks.call_answers[IMAGES] = answer
        plan = run_with("production", mocks=mocks)
        assert only(plan, INSTANCE).plain("sourceDetails")["sourceId"] == newer["id"]


def test_newest_image_skips_images_that_are_not_available() -> None:
    images = [
        {"id": "a", "state": "AVAILABLE", "time_created": "2026-01-01T00:00:00Z"},
        {"id": "b", "state": "DISABLED", "time_created": "2026-02-01T00:00:00Z"},
    ]
    assert instance.newest_image(images, "VM.Standard.A1.Flex", "24.04") == "a"
    with pytest.raises(ValueError, match=r"no available Canonical Ubuntu 24\.04 image for VM\.Standard\.A1\.Flex"):
        instance.newest_image(images[1:], "VM.Standard.A1.Flex", "24.04")


@pytest.mark.parametrize("stack", STACKS)
def test_a_looked_up_image_and_domain_are_ignored_after_creation(stack, runs) -> None:
    vm = only(runs[stack][0], INSTANCE)
    assert vm.options["ignoreChanges"] == ["sourceDetails.sourceId", "availabilityDomain"]
    assert vm.options["deleteBeforeReplace"] is True


def test_a_pinned_image_is_used_without_lookup_and_changing_the_pin_replaces(run_with, stack_config) -> None:
    pinned = "ocid1.image.oc1.eu-frankfurt-1.aaaaaaaapinnedubuntu"
    mocks = offline.OfflineMocks()
    plan = run_with("staging", mocks=mocks, oci={**stack_config("staging")["oci"], "imageId": pinned})
    vm = only(plan, INSTANCE)
    assert vm.plain("sourceDetails")["sourceId"] == pinned
    assert calls(mocks, IMAGES) == []
    assert vm.options["ignoreChanges"] == ["availabilityDomain"]


def test_ubuntu_release_comes_from_config(run_with, stack_config) -> None:
    mocks = offline.OfflineMocks()
    run_with("dev", mocks=mocks, oci={**stack_config("dev")["oci"], "ubuntuVersion": "22.04"})
    assert [c["operatingSystemVersion"] for c in calls(mocks, IMAGES)] == ["22.04"]


SHAPES = "oci:Core/getShapes:getShapes"


@pytest.mark.parametrize("stack", STACKS)
def test_the_first_domain_that_offers_the_shape_is_chosen(stack, runs, stack_config) -> None:
    plan, mocks = runs[stack]
    oci = stack_config(stack)["oci"]
    (lookup,) = calls(mocks, DOMAINS)
    assert lookup["compartmentId"] == oci["compartmentId"]
    domains = [d["name"] for d in mocks.oci.availability_domains(lookup)["availabilityDomains"]]
    offering = [d for d in domains if mocks.oci.shapes({"availabilityDomain": d, "shape": oci["shape"]})["shapes"]]
    chosen = only(plan, INSTANCE).plain("availabilityDomain")
    assert chosen == offering[0]
    asked = [(c["availabilityDomain"], c["shape"], c["compartmentId"]) for c in calls(mocks, SHAPES)]
    assert asked == [(d, oci["shape"], oci["compartmentId"]) for d in domains[: domains.index(chosen) + 1]]
    assert plan.outputs["availabilityDomain"] == chosen


def test_the_micro_shape_lands_in_the_one_domain_that_has_it(runs) -> None:
    """The offline region offers E2.1.Micro in its third domain only, as Always Free home regions do."""
    plan, mocks = runs["dev"]
    assert only(plan, INSTANCE).plain("availabilityDomain") == mocks.oci.domain_name(3)


def test_no_domain_with_the_shape_is_refused_before_anything_is_registered(run_with) -> None:
    mocks = offline.OfflineMocks()
    mocks.oci.shape_domains["VM.Standard.A1.Flex"] = ()
    with pytest.raises(
        ConfigError,
        match=r"^dreamscape-infra:oci\.shape: no availability domain of this region "
        r"offers VM\.Standard\.A1\.Flex to this compartment \(tried kIdk:EU-FRANKFURT-1-AD-1, ",
    ):
        run_with("production", mocks=mocks)
    assert not [token for token, _ in mocks.calls if "getImages" in token]  # stopped before the VM's lookups
    assert list(mocks.created) == ["github-id"]  # and before any resource but the provider, which writes nothing


def test_a_pinned_domain_is_used_as_it_is_and_changing_the_pin_moves_the_vm(run_with, stack_config) -> None:
    mocks = offline.OfflineMocks()
    pinned_domain = mocks.oci.domain_name(2)
    plan = run_with("staging", mocks=mocks, oci={**stack_config("staging")["oci"], "availabilityDomain": pinned_domain})
    vm = only(plan, INSTANCE)
    assert vm.plain("availabilityDomain") == pinned_domain
    assert vm.options["ignoreChanges"] == ["sourceDetails.sourceId"]  # the domain is not ignored


def test_a_pinned_domain_without_the_shape_is_refused_naming_those_that_have_it(run_with, stack_config) -> None:
    mocks = offline.OfflineMocks()
    oci = {**stack_config("dev")["oci"], "availabilityDomain": mocks.oci.domain_name(1)}
    with pytest.raises(
        ConfigError,
        match=r"oci\.availabilityDomain: 'kIdk:EU-FRANKFURT-1-AD-1' does not offer VM\.Standard\.E2\.1\.Micro "
        r"to this compartment; domains that do: kIdk:EU-FRANKFURT-1-AD-3$",
    ):
        run_with("dev", mocks=mocks, oci=oci)


@pytest.mark.parametrize("stack", STACKS)
def test_reserved_ip_is_bound_to_the_instance_primary_private_ip(stack, runs) -> None:
    plan, mocks = runs[stack]
    vm, ip = only(plan, INSTANCE), only(plan, PUBLIC_IP)
    assert ip.plain("lifetime") == "RESERVED"
    (lookup,) = calls(mocks, PRIVATE_IPS)
    assert lookup["ipAddress"] == vm.outputs["privateIp"]
    assert lookup["subnetId"] == vm.plain("createVnicDetails")["subnetId"]
    (primary,) = [p for p in mocks.oci.private_ips(lookup)["privateIps"] if p["isPrimary"]]
    assert ip.plain("privateIpId") == primary["id"]
    assert vm.urn in ip.options["dependsOn"]
    assert ip.options["protect"] is False and ip.options["deleteBeforeReplace"] is False


def test_reserved_ip_needs_exactly_one_primary_private_ip() -> None:
    primary = {"id": "ocid1.privateip.oc1..primary", "is_primary": True}
    secondary = {"id": "ocid1.privateip.oc1..secondary", "is_primary": False}
    assert instance.primary_private_ip_id([secondary, primary]) == primary["id"]
    for found in ([], [secondary], [primary, primary]):
        with pytest.raises(ValueError, match="expected the instance's one primary private IP"):
            instance.primary_private_ip_id(found)


@pytest.mark.parametrize("stack", STACKS)
def test_instance_and_ip_are_children_of_the_instance_component(stack, runs) -> None:
    plan = runs[stack][0]
    component = plan.named(f"{stack}-vm")
    assert component.type == "dreamscape:environment:Instance"
    backups = [f"{stack}-vm-backups", f"{stack}-vm-backups-boot"] if stack == "production" else []
    assert sorted(r.name for r in plan.children_of(component)) == [*backups, f"{stack}-vm-instance", f"{stack}-vm-ip"]


@pytest.mark.parametrize("stack", STACKS)
def test_user_data_is_secret_cloud_config(stack, runs) -> None:
    vm = only(runs[stack][0], INSTANCE)
    assert offline.is_secret(vm.inputs["metadata"])
    text = cloudinit.decode(vm.plain("metadata")["user_data"])
    assert text.startswith("#cloud-config\n")
    assert yaml.safe_load(text)["users"][1]["name"] == "deploy"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_outputs(stack, runs) -> None:
    plan = runs[stack][0]
    host = only(plan, PUBLIC_IP).outputs["ipAddress"]
    assert plan.outputs["host"] == host
    assert plan.outputs["sshCommand"] == f"ssh ubuntu@{host}"
    assert plan.outputs["instanceId"] == only(plan, INSTANCE).id
    assert plan.outputs["instanceId"].startswith("ocid1.instance.")
    # What a bastion session targets (--target-private-ip): the VM's address in its subnet.
    assert plan.outputs["privateIp"] == only(plan, INSTANCE).outputs["privateIp"]
    subnets = {"dev": "10.10.1.0/24", "staging": "10.20.1.0/24", "production": "10.30.1.0/24"}
    assert ipaddress.ip_address(plan.outputs["privateIp"]) in ipaddress.ip_network(subnets[stack])
    assert plan.outputs["environment"] == stack
    assert not {"host", "sshCommand", "instanceId", "privateIp"} & plan.secret_outputs


def test_user_data_is_gzip_compressed_and_stable() -> None:
    encoded = cloudinit.encode("#cloud-config\n")
    assert base64.b64decode(encoded)[:2] == b"\x1f\x8b"
    assert gzip.decompress(base64.b64decode(encoded)) == b"#cloud-config\n"
    assert cloudinit.encode("#cloud-config\n") == encoded  # no timestamp in the gzip header
    assert cloudinit.decode(encoded) == "#cloud-config\n"


def test_user_data_over_the_metadata_limit_is_refused() -> None:
    too_big = os.urandom(cloudinit.MAX_USER_DATA_BYTES).hex()  # does not compress below the limit
    with pytest.raises(ValueError, match=r"OCI accepts at most 32000 bytes of instance metadata"):
        cloudinit.encode(too_big)


@pytest.mark.parametrize("stack", STACKS)
def test_user_data_fits_the_metadata_limit_with_room(stack, runs) -> None:
    encoded = only(runs[stack][0], INSTANCE).plain("metadata")["user_data"]
    # The deploy program is most of it; keep a quarter of OCI's limit free for admin keys and growth.
    assert len(encoded) < cloudinit.MAX_USER_DATA_BYTES * 3 // 4


@pytest.mark.parametrize(
    ("oci_change", "message"),
    [
        ({"ocpus": 0.5}, r"oci\.ocpus: VM\.Standard\.A1\.Flex accepts 1 to 80 whole OCPUs, got 0\.5"),
        ({"ocpus": 1, "memoryGbs": 100}, r"oci\.memoryGbs: VM\.Standard\.A1\.Flex accepts 1 to 64 GB per OCPU"),
        (
            {"shape": "VM.Standard.E2.1.Micro", "ocpus": 2},
            r"oci\.ocpus: VM\.Standard\.E2\.1\.Micro is a fixed shape of 1",
        ),
        (
            {"shape": "VM.Standard3.Flex"},
            r"oci\.shape: expected one of VM\.Standard\.A1\.Flex, .*got 'VM\.Standard3\.Flex'",
        ),
        ({"ubuntuVersion": "noble"}, r"oci\.ubuntuVersion: expected an Ubuntu release like 24\.04, got 'noble'"),
    ],
)
def test_shape_sizes_outside_what_oracle_accepts_stop_before_any_resource(
    oci_change, message, run_with, stack_config
) -> None:
    mocks = offline.OfflineMocks()
    with pytest.raises(ConfigError, match=message):
        run_with("production", mocks=mocks, oci={**stack_config("production")["oci"], **oci_change})
    assert mocks.created == {}
    assert mocks.calls == []


POLICY = "oci:Core/volumeBackupPolicy:VolumeBackupPolicy"
ASSIGNMENT = "oci:Core/volumeBackupPolicyAssignment:VolumeBackupPolicyAssignment"


def test_production_backs_its_boot_volume_up_weekly_keeping_four(runs) -> None:
    plan = runs["production"][0]
    policy = only(plan, POLICY)
    assert policy.plain("schedules") == [
        {
            "backupType": "INCREMENTAL",
            "period": "ONE_WEEK",
            "dayOfWeek": "SUNDAY",
            "hourOfDay": 3,
            "offsetType": "STRUCTURED",
            "timeZone": "UTC",
            "retentionSeconds": 4 * 7 * 24 * 3600,
        }
    ]
    assignment = only(plan, ASSIGNMENT)
    assert assignment.plain("assetId") == only(plan, INSTANCE).outputs["bootVolumeId"]
    assert assignment.plain("policyId") == policy.id
    for stack in ("dev", "staging"):
        assert runs[stack][0].of_type(POLICY) == [] and runs[stack][0].of_type(ASSIGNMENT) == []


def test_the_offline_engine_refuses_a_schedule_oci_would_refuse() -> None:
    import pulumi_oci as oci

    def program() -> None:
        schedule = {**instance.backup_schedule(2), "period": "WEEKLY"}
        oci.core.VolumeBackupPolicy("bad", compartment_id="ocid1.compartment.oc1..x", schedules=[schedule])

    with pytest.raises(ValueError, match=r"schedules\[\]\.period 'WEEKLY' not in"):
        offline.run_program(program)
