"""The shapes an environment can use (VMs and container instances), Oracle's Always Free
allowance, and what the rest costs.

Pure Python, no Pulumi. Settings validation and the offline plan both call
`allowance_report()`, so the figures the plan prints are the figures the cost guard enforces.

Oracle changes the allowance and its prices without notice. Each table below names its
source and the date its figures were read; to update one, edit the numbers and the date,
run `make test` and `make plan`, and review what the report now says.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

HOURS_PER_MONTH = 744
"""Hours in the longest month (31 days): the allowance must hold in every month."""


# --- shapes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A processor family: what images it runs and what an hour of it costs."""

    name: str
    platform: str
    """Docker platform of the images this family runs (`docker buildx --platform`)."""
    ocpu_hour_usd: float | None
    """List price of one OCPU for one hour; None when Oracle does not sell it (free only)."""
    memory_gb_hour_usd: float | None
    """List price of one GB of memory for one hour; None as above."""


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("A1", "linux/arm64", 0.01, 0.0015),
        Family("E2", "linux/amd64", None, None),
        Family("E3", "linux/amd64", 0.025, 0.0015),
        Family("E4", "linux/amd64", 0.025, 0.0015),
        Family("E5", "linux/amd64", 0.03, 0.002),
    )
}

PRICES_SOURCE = "https://www.oracle.com/cloud/compute/pricing/ and https://www.oracle.com/cloud/storage/pricing/"
PRICES_AS_OF = "2026-06"
BLOCK_VOLUME_GB_MONTH_USD = 0.0425
BACKUP_GB_MONTH_USD = 0.0255
"""Volume backups are billed as Object Storage Standard; an incremental one holds what changed,
so pricing each at its whole volume overestimates."""
"""Balanced block volume (the boot volume default): $0.0255 storage + 10 VPUs x $0.0017, per GB-month."""


@dataclass(frozen=True)
class Shape:
    name: str
    family: str
    ocpus: tuple[float, float]
    """Smallest and largest OCPU count the shape accepts (equal for a fixed shape)."""
    memory_gbs: tuple[float, float]
    """Smallest and largest total memory, in GB."""
    memory_per_ocpu_gbs: tuple[float, float] | None = None
    """For a flexible shape, the memory-to-OCPU ratio it accepts."""
    pv_encryption_in_transit: bool = True
    """Whether the boot volume's paravirtualized attachment can be encrypted in transit."""
    free_pool: str | None = None
    """Which Always Free allowance the shape draws on: "A1", "E2.1.Micro" or none."""

    @property
    def flexible(self) -> bool:
        return self.ocpus[0] != self.ocpus[1]

    @property
    def platform(self) -> str:
        return FAMILIES[self.family].platform

    def problems(self, ocpus: float, memory_gbs: float) -> list[tuple[str, str]]:
        """What this shape refuses in (ocpus, memory): a list of (config key, message)."""
        found = []
        low, high = self.ocpus
        if not self.flexible:
            if ocpus != low:
                found.append(("ocpus", f"{self.name} is a fixed shape of {low:g} OCPU, got {ocpus:g}"))
            if memory_gbs != self.memory_gbs[0]:
                found.append(
                    ("memoryGbs", f"{self.name} is a fixed shape of {self.memory_gbs[0]:g} GB, got {memory_gbs:g}")
                )
            return found
        if not (low <= ocpus <= high and ocpus == int(ocpus)):
            found.append(("ocpus", f"{self.name} accepts {low:g} to {high:g} whole OCPUs, got {ocpus:g}"))
        mem_low, mem_high = self.memory_gbs
        if not (mem_low <= memory_gbs <= mem_high and memory_gbs == int(memory_gbs)):
            found.append(("memoryGbs", f"{self.name} accepts {mem_low:g} to {mem_high:g} whole GB, got {memory_gbs:g}"))
        elif self.memory_per_ocpu_gbs and ocpus > 0:
            per_low, per_high = self.memory_per_ocpu_gbs
            if not per_low * ocpus <= memory_gbs <= per_high * ocpus:
                found.append(
                    (
                        "memoryGbs",
                        f"{self.name} accepts {per_low:g} to {per_high:g} GB per OCPU, "
                        f"{per_low * ocpus:g} to {min(per_high * ocpus, mem_high):g} GB for {ocpus:g} OCPU, "
                        f"got {memory_gbs:g}",
                    )
                )
        return found


SHAPES_SOURCE = "https://docs.oracle.com/en-us/iaas/Content/Compute/References/computeshapes.htm"
SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape("VM.Standard.A1.Flex", "A1", (1, 80), (1, 512), (1, 64), free_pool="A1"),
        # Sold only as Always Free: 1/8 OCPU baseline, bursting; the API reports 1 OCPU, 1 GB.
        Shape("VM.Standard.E2.1.Micro", "E2", (1, 1), (1, 1), free_pool="E2.1.Micro"),
        Shape("VM.Standard.E3.Flex", "E3", (1, 100), (1, 1024), (1, 64)),
        Shape("VM.Standard.E4.Flex", "E4", (1, 114), (1, 1760), (1, 64)),
        Shape("VM.Standard.E5.Flex", "E5", (1, 94), (1, 1049), (1, 64)),
        # Container instances (oci.target: containerInstances), billed at their family's compute
        # rates: no Always Free allowance covers them, A1 included.
        Shape("CI.Standard.A1.Flex", "A1", (1, 76), (1, 488), (1, 64)),
        Shape("CI.Standard.E3.Flex", "E3", (1, 64), (1, 1024), (1, 64)),
        Shape("CI.Standard.E4.Flex", "E4", (1, 64), (1, 1024), (1, 64)),
    )
}
CONTAINER_SHAPES_SOURCE = "https://docs.oracle.com/en-us/iaas/Content/container-instances/container-instance-shapes.htm"
CONTAINER_PRICES_SOURCE = "https://www.oracle.com/cloud/cloud-native/container-instances/pricing/"
"""Container instances cost the OCPU and memory of their shape at Compute's rates, nothing more."""

ACCESSORY_OCPUS = 1
ACCESSORY_MEMORY_GBS = 2
"""The size of each accessory's own container instance (oci.target: containerInstances)."""

LOAD_BALANCER_BANDWIDTH_MBPS = 10
"""The flexible load balancer's bandwidth, minimum and maximum: the Always Free size."""
LOAD_BALANCER_HOUR_USD = 0.0113
LOAD_BALANCER_MBPS_HOUR_USD = 0.0001
"""List prices of a flexible load balancer beyond the free one: an hour of it, and an hour of
each Mbps of its bandwidth (https://www.oracle.com/cloud/networking/load-balancing/pricing/)."""


def shape(name: str) -> Shape:
    if name not in SHAPES:
        raise KeyError(f"unknown shape {name!r}; known: {', '.join(SHAPES)} (add a row to SHAPES in {__name__})")
    return SHAPES[name]


def platform_of(shape_name: str) -> str:
    """The Docker platform an environment of this shape runs: `linux/arm64` or `linux/amd64`."""
    return shape(shape_name).platform


# --- the Always Free allowance ---------------------------------------------------------------


@dataclass(frozen=True)
class Allowance:
    source: str
    as_of: str
    a1_ocpu_hours: float
    """VM.Standard.A1.Flex OCPU-hours free per month, across the tenancy."""
    a1_memory_gb_hours: float
    """VM.Standard.A1.Flex GB-hours free per month, across the tenancy."""
    micro_instances: int
    """VM.Standard.E2.1.Micro instances free (Oracle sells no more than these)."""
    block_volume_gbs: float
    """Block volume storage free, boot volumes included."""
    min_boot_volume_gbs: float
    """The smallest boot volume Oracle creates (LaunchInstance refuses less); each instance has one."""
    volume_backups: int = 5
    """Block and boot volume backups kept free, across the tenancy."""
    load_balancers: int = 1
    """Flexible load balancers of 10 Mbps free, across the tenancy."""


ALWAYS_FREE = Allowance(
    source="https://docs.oracle.com/en-us/iaas/Content/FreeTier/freetier_topic-Always_Free_Resources.htm",
    as_of="2026-06",
    a1_ocpu_hours=1500,
    a1_memory_gb_hours=9000,
    micro_instances=2,
    block_volume_gbs=200,
    min_boot_volume_gbs=50,
)
"""The one table of Oracle's Always Free figures (halved in June 2026). Update it here."""


# --- the report ------------------------------------------------------------------------------


class Sized(Protocol):
    """What the report needs of an environment's OCI settings (settings.OciSettings has it)."""

    shape: str
    ocpus: float
    memory_gbs: float
    boot_volume_gbs: int
    boot_volume_backups: int
    target: str


@dataclass(frozen=True)
class Row:
    environment: str
    shape: str
    ocpus: float
    memory_gbs: float
    boot_volume_gbs: float
    backups: int = 0
    """Boot volume backups the environment keeps (`oci.bootVolumeBackups`)."""
    load_balancers: int = 0
    """Load balancers the environment has: one for container instances, none for a VM."""

    @property
    def ocpu_hours(self) -> float:
        return self.ocpus * HOURS_PER_MONTH

    @property
    def memory_gb_hours(self) -> float:
        return self.memory_gbs * HOURS_PER_MONTH


@dataclass(frozen=True)
class Excess:
    """One way the environments together go past the allowance."""

    what: str
    used: float
    free: float
    unit: str
    monthly_usd: float | None
    """What the excess costs a month at list price; None when Oracle does not sell it."""
    environments: tuple[str, ...]
    """The environments that draw on it: any of them could bring the total back under."""

    def describe(self) -> str:
        cost = "not sold at any price" if self.monthly_usd is None else f"about ${self.monthly_usd:.2f}/month"
        return f"{self.what} {_n(self.used)} of {_n(self.free)} {self.unit} free ({cost})"


@dataclass(frozen=True)
class AllowanceReport:
    rows: tuple[Row, ...]
    excesses: tuple[Excess, ...]
    allowance: Allowance = ALWAYS_FREE

    @property
    def within(self) -> bool:
        return not self.excesses

    @property
    def monthly_usd(self) -> float:
        return sum(e.monthly_usd or 0.0 for e in self.excesses)

    def excesses_of(self, environment: str) -> tuple[Excess, ...]:
        return tuple(e for e in self.excesses if environment in e.environments)

    def totals(self) -> dict[str, float]:
        a1 = [r for r in self.rows if SHAPES[r.shape].free_pool == "A1"]
        return {
            "a1_ocpus": sum(r.ocpus for r in a1),
            "a1_memory_gbs": sum(r.memory_gbs for r in a1),
            "a1_ocpu_hours": sum(r.ocpu_hours for r in a1),
            "a1_memory_gb_hours": sum(r.memory_gb_hours for r in a1),
            "micro_instances": sum(1 for r in self.rows if SHAPES[r.shape].free_pool == "E2.1.Micro"),
            "boot_volume_gbs": sum(r.boot_volume_gbs for r in self.rows),
            "backups": sum(r.backups for r in self.rows),
            "load_balancers": sum(r.load_balancers for r in self.rows),
            "ocpus": sum(r.ocpus for r in self.rows),
            "memory_gbs": sum(r.memory_gbs for r in self.rows),
        }

    def lines(self) -> list[str]:
        """The report as the offline plan prints it."""
        free = self.allowance
        t = self.totals()
        header = (
            f"{'environment':<12} {'shape':<24} {'OCPU':>5} {'GB':>6} {'boot GB':>8} {'OCPU-h/mo':>10} {'GB-h/mo':>9}"
        )
        out = [header]
        for r in self.rows:
            out.append(
                f"{r.environment:<12} {r.shape:<24} {_n(r.ocpus):>5} {_n(r.memory_gbs):>6} "
                f"{_n(r.boot_volume_gbs):>8} {_n(r.ocpu_hours):>10} {_n(r.memory_gb_hours):>9}"
            )
        out.append(f"{'total':<12} {'':<24} {_n(t['ocpus']):>5} {_n(t['memory_gbs']):>6} {_n(t['boot_volume_gbs']):>8}")
        out.append(
            f"A1.Flex: {_n(t['a1_ocpu_hours'])} of {_n(free.a1_ocpu_hours)} OCPU-hours, "
            f"{_n(t['a1_memory_gb_hours'])} of {_n(free.a1_memory_gb_hours)} GB-hours a month "
            f"({_n(t['a1_ocpus'])} OCPU, {_n(t['a1_memory_gbs'])} GB over {HOURS_PER_MONTH} hours)"
        )
        out.append(f"E2.1.Micro: {t['micro_instances']} of {free.micro_instances} instances")
        out.append(f"Block volume: {_n(t['boot_volume_gbs'])} of {_n(free.block_volume_gbs)} GB (boot volumes)")
        out.append(f"Volume backups: {t['backups']} of {free.volume_backups} kept (boot volumes, weekly)")
        out.append(
            f"Load balancers: {t['load_balancers']} of {free.load_balancers} "
            f"(flexible, {LOAD_BALANCER_BANDWIDTH_MBPS} Mbps)"
        )
        if self.within:
            out.append("Within Oracle's Always Free allowance: $0.00/month.")
        else:
            for excess in self.excesses:
                out.append(f"Over: {excess.describe()}; environments: {', '.join(excess.environments)}")
            out.append(f"Paid usage at list price: about ${self.monthly_usd:.2f}/month (prices of {PRICES_AS_OF}).")
        out.append(f"Allowance of {free.as_of}: {free.source}")
        return out


def row(environment: str, oci: Sized, accessories: int = 0) -> Row:
    """What an environment runs: its VM and boot volume; or its release's container instance,
    one instance per accessory and the load balancer (no boot volume, no backups)."""
    if oci.target == "containerInstances":
        return Row(
            environment,
            oci.shape,
            float(oci.ocpus) + accessories * ACCESSORY_OCPUS,
            float(oci.memory_gbs) + accessories * ACCESSORY_MEMORY_GBS,
            0.0,
            load_balancers=1,
        )
    return Row(
        environment,
        oci.shape,
        float(oci.ocpus),
        float(oci.memory_gbs),
        float(oci.boot_volume_gbs),
        oci.boot_volume_backups,
    )


LOAD_BALANCER_MONTH_USD = (
    LOAD_BALANCER_HOUR_USD + LOAD_BALANCER_BANDWIDTH_MBPS * LOAD_BALANCER_MBPS_HOUR_USD
) * HOURS_PER_MONTH


def allowance_report(
    environments: Iterable[tuple[str, Sized]], allowance: Allowance = ALWAYS_FREE, accessories: int = 0
) -> AllowanceReport:
    """Usage of every environment against the allowance, and what goes past it costs.

    `accessories`: how many the project declares; each is a container instance of its own in an
    environment whose target is container instances."""
    rows = tuple(row(env, oci, accessories) for env, oci in environments)
    excesses: list[Excess] = []
    a1 = [r for r in rows if shape(r.shape).free_pool == "A1"]
    a1_family = FAMILIES["A1"]
    excesses += _over(
        "A1.Flex OCPU-hours",
        sum(r.ocpu_hours for r in a1),
        allowance.a1_ocpu_hours,
        "a month",
        a1_family.ocpu_hour_usd or 0.0,
        a1,
    )
    excesses += _over(
        "A1.Flex GB-hours",
        sum(r.memory_gb_hours for r in a1),
        allowance.a1_memory_gb_hours,
        "a month",
        a1_family.memory_gb_hour_usd or 0.0,
        a1,
    )
    micro = [r for r in rows if shape(r.shape).free_pool == "E2.1.Micro"]
    if len(micro) > allowance.micro_instances:
        excesses.append(
            Excess("E2.1.Micro instances", len(micro), allowance.micro_instances, "instances", None, _names(micro))
        )
    for r in rows:
        s = shape(r.shape)
        if s.free_pool is None:
            family = FAMILIES[s.family]
            price = None
            if family.ocpu_hour_usd is not None and family.memory_gb_hour_usd is not None:
                price = (r.ocpus * family.ocpu_hour_usd + r.memory_gbs * family.memory_gb_hour_usd) * HOURS_PER_MONTH
            excesses.append(
                Excess(f"{r.shape} ({r.environment})", r.ocpu_hours, 0, "OCPU-hours", price, (r.environment,))
            )
    excesses += _over(
        "Block volume GB",
        sum(r.boot_volume_gbs for r in rows),
        allowance.block_volume_gbs,
        "GB",
        BLOCK_VOLUME_GB_MONTH_USD,
        rows,
    )
    backups = [r for r in rows if r.backups]
    kept = sum(r.backups for r in backups)
    if kept > allowance.volume_backups:
        # Priced at most: each extra backup as large as its whole boot volume.
        largest = max(r.boot_volume_gbs for r in backups)
        price = (kept - allowance.volume_backups) * largest * BACKUP_GB_MONTH_USD
        excesses.append(Excess("Volume backups", kept, allowance.volume_backups, "kept", price, _names(backups)))
    balanced = [r for r in rows if r.load_balancers]
    excesses += _over(
        "Flexible load balancers",
        sum(r.load_balancers for r in balanced),
        allowance.load_balancers,
        f"at {LOAD_BALANCER_BANDWIDTH_MBPS} Mbps",
        LOAD_BALANCER_MONTH_USD,
        balanced,
    )
    return AllowanceReport(rows=rows, excesses=tuple(excesses), allowance=allowance)


def _over(what: str, used: float, free: float, unit: str, unit_usd: float, rows: Sequence[Row]) -> list[Excess]:
    """The excess of a metered item over its free amount, priced at `unit_usd` a unit; or none."""
    if used <= free:
        return []
    return [Excess(what, used, free, unit, (used - free) * unit_usd, _names(rows))]


def _names(rows: Sequence[Row]) -> tuple[str, ...]:
    return tuple(r.environment for r in rows)


def _n(value: float) -> str:
    """A number as people write it: 1,488 or 0.5."""
    if math.isclose(value, round(value)):
        return f"{round(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")
