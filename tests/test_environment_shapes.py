"""Shapes and the cost guard: the three stack files together stay inside Oracle's Always Free allowance."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import settings
from components.environment import shapes
from components.settings import ConfigError
from tests.conftest import ROOT, copy_project
from tools import offline

STACKS = ("dev", "staging", "production")


def stack_files() -> dict[str, dict[str, Any]]:
    """The three shipped stacks' merged plain config, read from the stack files."""
    return {stack: copy.deepcopy(settings.merged_plain_config(stack)) for stack in STACKS}


def parse(stack: str, configs: dict[str, dict[str, Any]]) -> settings.Settings:
    siblings = {name: raw for name, raw in configs.items() if name != stack}
    return settings.parse(configs[stack], stack, sibling_stacks=siblings)


def with_oci(configs: dict[str, dict[str, Any]], stack: str, **oci: Any) -> dict[str, dict[str, Any]]:
    configs = copy.deepcopy(configs)
    configs[stack]["oci"].update(oci)
    return configs


def test_platform_follows_the_shape_family() -> None:
    assert shapes.platform_of("VM.Standard.A1.Flex") == "linux/arm64"
    for name in ("VM.Standard.E2.1.Micro", "VM.Standard.E3.Flex", "VM.Standard.E4.Flex", "VM.Standard.E5.Flex"):
        assert shapes.platform_of(name) == "linux/amd64"
    with pytest.raises(KeyError, match=r"unknown shape 'VM\.Standard3\.Flex'"):
        shapes.platform_of("VM.Standard3.Flex")


def test_the_three_stack_files_fit_the_allowance_as_shipped() -> None:
    report = settings.stack_allowance_report("production")
    assert report.within
    assert [r.environment for r in report.rows] == list(STACKS)
    totals = report.totals()
    # DESIGN's defaults: 2 OCPU and 12 GB of A1, one micro, three 50 GB boot volumes.
    assert (totals["a1_ocpus"], totals["a1_memory_gbs"]) == (2, 12)
    assert totals["micro_instances"] == 1
    assert totals["boot_volume_gbs"] == 150
    assert totals["a1_ocpu_hours"] <= shapes.ALWAYS_FREE.a1_ocpu_hours
    assert totals["a1_memory_gb_hours"] <= shapes.ALWAYS_FREE.a1_memory_gb_hours
    for stack in STACKS:
        parse(stack, stack_files())  # every stack accepts the set


def test_the_allowance_table_names_its_source_and_date() -> None:
    free = shapes.ALWAYS_FREE
    assert free.source.startswith("https://docs.oracle.com/")
    assert re.fullmatch(r"\d{4}-\d{2}", free.as_of)
    # Oracle's June 2026 figures: 1,500 OCPU-hours is 2 OCPUs over a month, 9,000 GB-hours 12 GB.
    assert free.a1_ocpu_hours / 750 == 2 and free.a1_memory_gb_hours / 750 == 12
    assert (free.micro_instances, free.block_volume_gbs, free.min_boot_volume_gbs) == (2, 200, 50)


def test_a_third_a1_ocpu_is_refused_in_every_a1_stack_and_priced() -> None:
    configs = with_oci(stack_files(), "staging", ocpus=2, memoryGbs=6)
    for stack in ("staging", "production"):  # both draw on the A1 pool
        with pytest.raises(
            ConfigError,
            match=r"allowPaidShapes: the stacks together exceed Oracle's Always Free allowance of 2026-06: "
            r"A1\.Flex OCPU-hours 2,232 of 1,500 a month free \(about \$7\.32/month\)",
        ):
            parse(stack, configs)
    # 3 OCPU x 744 h = 2,232 OCPU-hours; 732 over at $0.01 = $7.32.
    parse("dev", configs)  # the micro draws on nothing that is exceeded


def test_memory_over_the_a1_pool_is_refused() -> None:
    configs = with_oci(stack_files(), "production", memoryGbs=8)
    with pytest.raises(ConfigError, match=r"A1\.Flex GB-hours 10,416 of 9,000 a month free \(about \$2\.12/month\)"):
        parse("production", configs)  # 14 GB x 744 h = 10,416; 1,416 over at $0.0015 = $2.124


def test_allow_paid_shapes_accepts_the_cost_and_the_report_prices_it() -> None:
    configs = with_oci(stack_files(), "production", shape="VM.Standard.E4.Flex", ocpus=1, memoryGbs=8)
    with pytest.raises(ConfigError, match=r"VM\.Standard\.E4\.Flex \(production\) 744 of 0 OCPU-hours free"):
        parse("production", configs)
    parse("staging", configs)  # production's paid shape is production's choice alone
    configs["production"]["allowPaidShapes"] = True
    s = parse("production", configs)
    report = settings.allowance_report("production", s.oci, {k: v for k, v in configs.items() if k != "production"}, 0)
    # (1 OCPU x $0.025 + 8 GB x $0.0015) x 744 h = $27.528 a month.
    assert report.monthly_usd == pytest.approx(27.528)
    assert "Paid usage at list price: about $27.53/month (prices of 2026-06)." in report.lines()


def test_a_third_micro_is_refused_even_when_paying() -> None:
    configs = stack_files()
    for stack in ("staging", "production"):
        configs = with_oci(configs, stack, shape="VM.Standard.E2.1.Micro", ocpus=1, memoryGbs=1)
        configs[stack]["allowPaidShapes"] = True
    configs["dev"]["allowPaidShapes"] = True
    with pytest.raises(ConfigError, match=r"oci\.shape: E2\.1\.Micro instances 3 of 2 instances free \(not sold"):
        parse("dev", configs)


def test_block_volume_over_200_gb_is_refused() -> None:
    parse("dev", with_oci(stack_files(), "production", bootVolumeGbs=100))  # 200 GB: at the limit
    with pytest.raises(ConfigError, match=r"Block volume GB 201 of 200 GB free \(about \$0\.04/month\)"):
        parse("dev", with_oci(stack_files(), "production", bootVolumeGbs=101))


@pytest.mark.parametrize("gbs", [40, 47, 49])
def test_boot_volume_under_oracles_minimum_is_refused(gbs) -> None:
    """LaunchInstance refuses a boot volume under 50 GB, the size of Canonical's images included."""
    with pytest.raises(ConfigError, match=rf"oci\.bootVolumeGbs: expected a whole number from 50 to 32768, got {gbs}"):
        parse("dev", with_oci(stack_files(), "dev", bootVolumeGbs=gbs))
    parse("dev", with_oci(stack_files(), "dev", bootVolumeGbs=50))


@pytest.mark.parametrize(
    ("oci", "message"),
    [
        ({"ocpus": 81}, r"oci\.ocpus: VM\.Standard\.A1\.Flex accepts 1 to 80 whole OCPUs, got 81"),
        ({"ocpus": 1.5, "memoryGbs": 6}, r"oci\.ocpus: .* whole OCPUs, got 1\.5"),
        (
            {"ocpus": 2, "memoryGbs": 1},
            r"oci\.memoryGbs: VM\.Standard\.A1\.Flex accepts 1 to 64 GB per OCPU, 2 to 128 GB",
        ),
        ({"ocpus": 10, "memoryGbs": 600}, r"oci\.memoryGbs: VM\.Standard\.A1\.Flex accepts 1 to 512 whole GB, got 600"),
        (
            {"shape": "VM.Standard.E2.1.Micro", "memoryGbs": 6},
            r"oci\.memoryGbs: .*E2\.1\.Micro is a fixed shape of 1 GB, got 6",
        ),
        ({"shape": "BM.Standard.E4.128"}, r"oci\.shape: expected an OCI VM shape"),
    ],
)
def test_sizes_the_shape_does_not_accept(oci, message) -> None:
    configs = with_oci(stack_files(), "staging", **oci)
    with pytest.raises(ConfigError, match=message) as error:
        parse("staging", configs)
    assert "\n" not in str(error.value)


def test_cost_guard_stops_the_program_before_any_resource(run_with, stack_config) -> None:
    mocks = offline.OfflineMocks()
    with pytest.raises(ConfigError, match="exceed Oracle's Always Free allowance"):
        run_with("production", mocks=mocks, oci={**stack_config("production")["oci"], "ocpus": 2, "memoryGbs": 6})
    assert mocks.created == {}


def test_pure_report_counts_hours_and_names_contributors() -> None:
    class Oci:
        def __init__(self, shape: str, ocpus: float, memory: float, boot: int) -> None:
            self.shape, self.ocpus, self.memory_gbs, self.boot_volume_gbs = shape, ocpus, memory, boot
            self.boot_volume_backups = 0
            self.target = "vm"

    report = shapes.allowance_report(
        [("a", Oci("VM.Standard.A1.Flex", 2, 12, 50)), ("b", Oci("VM.Standard.A1.Flex", 1, 1, 50))]
    )
    (ocpu,) = [e for e in report.excesses if e.what == "A1.Flex OCPU-hours"]
    assert (ocpu.used, ocpu.free, ocpu.environments) == (3 * 744, 1500, ("a", "b"))
    assert ocpu.monthly_usd == pytest.approx((3 * 744 - 1500) * 0.01)
    assert report.excesses_of("a") and report.excesses_of("b") and not report.excesses_of("c")


# --- the offline plan prints the same report ------------------------------------------------


def plan_cli(project: Path, stack: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(project / "tools" / "plan.py"), "--stack", stack],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plan_prints_usage_against_the_allowance_per_environment_and_total(tmp_path) -> None:
    result = plan_cli(ROOT, "dev")
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("Always Free allowance:\n", 1)[1].splitlines()
    assert re.match(r"\s+environment\s+shape\s+OCPU\s+GB\s+boot GB\s+OCPU-h/mo\s+GB-h/mo$", section[0])
    assert re.match(r"\s+dev\s+VM\.Standard\.E2\.1\.Micro\s+1\s+1\s+50\s+744\s+744$", section[1])
    assert re.match(r"\s+staging\s+VM\.Standard\.A1\.Flex\s+1\s+6\s+50\s+744\s+4,464$", section[2])
    assert re.match(r"\s+production\s+VM\.Standard\.A1\.Flex\s+1\s+6\s+50\s+744\s+4,464$", section[3])
    assert re.match(r"\s+total\s+3\s+13\s+150$", section[4])
    text = "\n".join(section)
    assert "A1.Flex: 1,488 of 1,500 OCPU-hours, 8,928 of 9,000 GB-hours a month" in text
    assert "E2.1.Micro: 1 of 2 instances" in text
    assert "Block volume: 150 of 200 GB" in text
    assert "Within Oracle's Always Free allowance: $0.00/month." in text
    assert shapes.ALWAYS_FREE.source in text


def test_plan_of_a_paid_shape_says_what_it_costs(tmp_path) -> None:
    project = copy_project(tmp_path)
    doc = yaml.safe_load((project / "Pulumi.production.yaml").read_text())
    doc["config"]["dreamscape-infra:oci"].update({"shape": "VM.Standard.E5.Flex", "ocpus": 2, "memoryGbs": 16})
    doc["config"]["dreamscape-infra:allowPaidShapes"] = True
    (project / "Pulumi.production.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = plan_cli(project, "production")
    assert result.returncode == 0, result.stderr
    assert "DEPLOY_PLATFORM_PRODUCTION" in result.stdout
    # (2 OCPU x $0.03 + 16 GB x $0.002) x 744 h = $68.448 a month.
    assert "Over: VM.Standard.E5.Flex (production) 1,488 of 0 OCPU-hours free (about $68.45/month)" in result.stdout
    assert "Paid usage at list price: about $68.45/month" in result.stdout
    # Another stack that did not opt in still plans: production's cost is production's choice.
    assert plan_cli(project, "staging").returncode == 0


def test_volume_backups_past_the_five_free_are_refused_and_priced() -> None:
    configs = with_oci(stack_files(), "staging", bootVolumeBackups=2)  # production keeps 4
    for stack in ("staging", "production"):
        with pytest.raises(
            ConfigError,
            match=r"allowPaidShapes: .*Volume backups 6 of 5 kept free \(about \$1\.27/month\)",
        ):
            parse(stack, configs)
    parse("dev", configs)  # dev keeps none: not its excess to fix
    paid = copy.deepcopy(configs)
    for stack in STACKS:
        paid[stack]["allowPaidShapes"] = True
    report = settings.stack_allowance_report("production")
    assert "Volume backups: 4 of 5 kept (boot volumes, weekly)" in report.lines()
    parse("staging", paid)


def test_no_backups_unless_a_stack_asks() -> None:
    configs = stack_files()
    del configs["production"]["oci"]["bootVolumeBackups"]
    assert parse("production", configs).oci.boot_volume_backups == 0
    assert parse("production", stack_files()).oci.boot_volume_backups == 4


SHAPE_LIMITS = {
    "VM.Standard.A1.Flex": ((1, 80), (1, 512)),
    "VM.Standard.E2.1.Micro": ((1, 1), (1, 1)),
    "VM.Standard.E3.Flex": ((1, 100), (1, 1024)),
    "VM.Standard.E4.Flex": ((1, 114), (1, 1760)),
    "VM.Standard.E5.Flex": ((1, 94), (1, 1049)),
    "CI.Standard.A1.Flex": ((1, 76), (1, 488)),
    "CI.Standard.E3.Flex": ((1, 64), (1, 1024)),
    "CI.Standard.E4.Flex": ((1, 64), (1, 1024)),
}
"""(OCPUs, total GB) each shape accepts, from Oracle's shape references; every flexible shape
takes 1 to 64 GB per OCPU."""


def test_every_shape_the_program_knows_has_its_limits_here() -> None:
    assert sorted(shapes.SHAPES) == sorted(SHAPE_LIMITS)


@pytest.mark.parametrize("name", sorted(SHAPE_LIMITS))
def test_a_shape_takes_its_ocpus_and_memory_to_the_last_and_no_further(name: str) -> None:
    shape = shapes.SHAPES[name]
    (low, high), (least, most) = SHAPE_LIMITS[name]

    def refused(ocpus: float, memory: float) -> list[str]:
        return [key for key, _ in shape.problems(ocpus, memory)]

    if low == high:
        assert refused(1, 1) == []
        assert refused(2, 1) == ["ocpus"] and refused(1, 2) == ["memoryGbs"] and refused(0, 1) == ["ocpus"]
        return
    assert refused(low, least) == [] and refused(high, most) == []
    assert refused(low - 1, least) == ["ocpus"] and refused(high + 1, most) == ["ocpus"]
    assert refused(high, most + 1) == ["memoryGbs"] and refused(high, least - 1) == ["memoryGbs"]
    # 1 to 64 GB per OCPU: 2 OCPUs take 2 to 128 GB.
    assert refused(2, 2) == [] and refused(2, 128) == []
    assert refused(2, 1) == ["memoryGbs"] and refused(2, 129) == ["memoryGbs"]
    assert refused(2.5, 4) == ["ocpus"] and refused(2, 4.5) == ["memoryGbs"], "whole numbers only"
