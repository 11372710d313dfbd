"""The settings' checks at their edges: the last value each accepts and the first it refuses,
for the keys that open access (admin keys, CIDRs) or bound a resource, and how a refused value
is shown. Each case is the staging stack's config with one value changed."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from components import settings as settings_module

Config = dict[str, Any]
KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIJ4nP0Wc1VtqZ0mXyB0hR8pUo4z3rB1c2d3e4f5g6h7i"


def staging(**oci: Any) -> Config:
    config = copy.deepcopy(settings_module.merged_plain_config("staging"))
    config["oci"] = {**config["oci"], **oci}
    return config


def parse(config: Config) -> settings_module.Settings:
    return settings_module.parse(config, "staging", oci_region="eu-frankfurt-1")


def refusal(config: Config) -> str:
    with pytest.raises(settings_module.ConfigError) as refused:
        parse(config)
    return str(refused.value)


@pytest.mark.parametrize(
    "line",
    [
        f"ssh-ed25519 {KEY} alice@laptop",
        f"ssh-ed25519 {KEY}",
        f"ssh-rsa {KEY} bob",
        f"ecdsa-sha2-nistp256 {KEY} carol",
        f"  ssh-ed25519 {KEY} alice  ",
    ],
)
def test_an_admin_key_is_one_openssh_public_key_line(line: str) -> None:
    assert parse(staging(adminSshKeys=[line])).oci.admin_ssh_keys == (line.strip(),)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "ssh-ed25519",
        KEY,
        f"ssh-dss {KEY} old",
        f"{KEY} ssh-ed25519",
        f"ssh-ed25519 {KEY} a\nssh-ed25519 {KEY} b",
        f"ssh-ed25519 {KEY}\n",
        f"SSH-ED25519 {KEY}",
        42,
    ],
)
def test_anything_else_is_refused_as_an_admin_key(line: Any) -> None:
    message = refusal(staging(adminSshKeys=[line]))
    assert message.startswith(
        "dreamscape-infra:oci.adminSshKeys[0]: expected an OpenSSH public key line (ssh-ed25519 AAAA... comment), got "
    ), message


@pytest.mark.parametrize(
    ("cidr", "accepted"),
    [
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("203.0.113.7/32", "203.0.113.7/32"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_an_ssh_cidr_is_a_network_written_exactly(cidr: str, accepted: str) -> None:
    assert parse(staging(sshAllowedCidrs=[cidr])).oci.ssh_allowed_cidrs == (accepted,)


@pytest.mark.parametrize("cidr", ["203.0.113.7/24", "203.0.113.7", "2001:db8::1/32", "any", "203.0.113.0/33", ""])
def test_a_cidr_with_host_bits_or_no_prefix_is_refused(cidr: str) -> None:
    """`203.0.113.7/24` is most likely a typo for one address; widening it silently would open
    port 22 to 255 other hosts."""
    assert refusal(staging(sshAllowedCidrs=[cidr])) == (
        f"dreamscape-infra:oci.sshAllowedCidrs[0]: expected an IPv4 or IPv6 CIDR like 10.0.0.0/16 (host bits zero), "
        f"got {cidr!r}"
    )


@pytest.mark.parametrize(
    ("key", "values", "shown"),
    [
        ("sshAllowedCidrs", ["203.0.113.0/24", "198.51.100.0/24", "203.0.113.0/24"], "'203.0.113.0/24'"),
        # Written two ways, still one network.
        ("sshAllowedCidrs", ["2001:db8::/32", "2001:0db8::/32"], "'2001:db8::/32'"),
        ("bastionClientCidrs", ["198.51.100.0/24", "198.51.100.0/24"], "'198.51.100.0/24'"),
        ("adminSshKeys", [f"ssh-ed25519 {KEY} a", f" ssh-ed25519 {KEY} a"], f"'ssh-ed25519 {KEY} a'"),
    ],
)
def test_a_range_or_key_listed_twice_is_refused_where_it_repeats(key: str, values: list[str], shown: str) -> None:
    """A repeat is a copy-and-paste slip: the second entry was meant to be another range or key."""
    assert refusal(staging(**{key: values})) == f"dreamscape-infra:oci.{key}[{len(values) - 1}]: duplicate {shown}"


def test_a_refused_value_is_shown_whole_up_to_80_characters_then_cut() -> None:
    shown = "x" * 78  # repr adds the quotes
    assert len(repr(shown)) == 80
    assert refusal(staging(sshAllowedCidrs=[shown])).endswith(f"got '{shown}'")
    longer = "x" * 79
    cut = refusal(staging(sshAllowedCidrs=[longer])).rpartition("got ")[2]
    assert cut == "'" + "x" * 76 + "..." and len(cut) == 77 + 3, "77 characters of the repr, then ..."
    # Not a string: shown as JSON, cut the same way.
    assert refusal(staging(sshAllowedCidrs=[["a"] * 30])).endswith("got [" + '"a", ' * 15 + '"...')
    assert refusal(staging(sshAllowedCidrs=[None])).endswith("got null")


@pytest.mark.parametrize(("subnet", "refused"), [("10.0.0.0/29", False), ("10.0.0.0/30", True)])
def test_the_subnet_holds_at_least_eight_addresses(subnet: str, refused: bool) -> None:
    assert ipaddress.ip_network(subnet).num_addresses == (4 if refused else 8)
    config = staging(vcnCidr="10.0.0.0/16", subnetCidr=subnet)
    if refused:
        assert refusal(config).startswith(f"dreamscape-infra:oci.subnetCidr: {subnet} is too small")
    else:
        assert parse(config).oci.subnet_cidr == subnet


@pytest.mark.parametrize(("lock_wait", "refused"), [(2640, False), (2641, True)])
def test_a_deploy_may_take_as_long_as_a_bastion_session_lasts_and_no_longer(lock_wait: int, refused: bool) -> None:
    """960 s of session, pull and spare, the lock wait, twice the health wait: 10800 s at most."""
    config = staging(bastionSessionTtlSeconds=10800)
    config["deploy"] = {"lockWaitSeconds": lock_wait, "waitTimeoutSeconds": 3600}
    if refused:
        assert refusal(config).startswith("dreamscape-infra:deploy: a deploy may take 10801 s with these settings")
    else:
        assert parse(config).deploy.lock_wait_seconds == lock_wait


# --- checks across the stacks of the project ------------------------------------------------------


def sibling(**oci: Any) -> Config:
    """Another stack's plain config as `sibling_stacks` reads it (Pulumi.yaml and its stack file
    merged), with none of the keys a project may leave to their defaults."""
    return {"oci": {"vcnCidr": "10.30.0.0/16", "compartmentId": "ocid1.compartment.oc1..aaaaaaaaother", **oci}}


def across(config: Config, siblings: dict[str, Config]) -> str:
    try:
        settings_module.parse(config, "staging", sibling_stacks=siblings, oci_region="eu-frankfurt-1")
    except settings_module.ConfigError as error:
        return str(error)
    return "accepted"


def test_a_stack_that_does_not_name_the_wiring_stack_means_production() -> None:
    assert across(staging(), {"dev": sibling()}) == "accepted"
    mine = {**staging(), "wiringStack": "dev"}
    assert across(mine, {"dev": sibling()}) == (
        "dreamscape-infra:wiringStack: stacks disagree on who owns the shared wiring (Pulumi.dev.yaml says "
        "production, Pulumi.staging.yaml says dev); exactly one stack may own it: set wiringStack once, in "
        "Pulumi.yaml"
    )
    assert across(mine, {"dev": {**sibling(), "wiringStack": "dev"}}) == "accepted"


def test_a_stack_that_does_not_name_the_deploy_auth_means_workload_identity() -> None:
    assert across(staging(), {"dev": sibling()}) == "accepted"
    mine = {**staging(), "ociDeployAuth": "apiKey"}
    mine["oci"] = {k: v for k, v in mine["oci"].items() if k != "identityDomainUrl"} | {"ciUserEmail": "ci@example.com"}
    assert across(mine, {"dev": sibling()}).startswith(
        "dreamscape-infra:ociDeployAuth: stacks disagree on how the deploy job authenticates to OCI (Pulumi.dev.yaml "
        "says workloadIdentity, Pulumi.staging.yaml says apiKey)"
    )


SHARED = "ocid1.compartment.oc1..aaaaaaaadreamscapestaging"


@pytest.mark.parametrize(
    ("mine", "theirs", "runs"),
    [
        ("vm", "containerInstances", "dev"),
        ("containerInstances", "vm", "staging"),
        ("containerInstances", "containerInstances", "staging"),
        ("vm", "vm", None),
    ],
)
def test_a_container_instances_environment_has_its_compartment_to_itself(mine, theirs, runs) -> None:
    config = staging()
    if mine == "containerInstances":
        config["oci"] = {
            k: v for k, v in config["oci"].items() if k not in ("sshAllowedCidrs", "adminSshKeys", "imageId")
        } | {"target": "containerInstances", "shape": "CI.Standard.A1.Flex"}
        config["allowPaidShapes"] = True
    other = sibling(compartmentId=SHARED, target=theirs)
    if runs is None:
        assert across(config, {"dev": other}) == "accepted"
        return
    assert across(config, {"dev": other}) == (
        f"dreamscape-infra:oci.compartmentId: stack dev uses {SHARED} too, and stack {runs} runs container "
        "instances, whose deploy identity may act on every container instance, subnet and NSG of its compartment; "
        "give each of them a compartment of its own"
    )
    assert across(config, {"dev": sibling(target=theirs)}) == "accepted"  # a compartment of its own


def test_a_stack_whose_own_vcn_range_is_bad_is_left_to_report_it() -> None:
    overlapping = "dreamscape-infra:oci.vcnCidr: 10.20.0.0/16 overlaps stack production's 10.20.128.0/17"
    assert across(
        staging(), {"dev": sibling(vcnCidr="bad"), "production": sibling(vcnCidr="10.20.128.0/17")}
    ).startswith(overlapping)
    # 169082880 would be 10.20.0.0 as a number: not a range, so not compared.
    assert across(staging(), {"dev": sibling(vcnCidr=169082880)}) == "accepted"


# --- one stack's own checks ------------------------------------------------------------------------------


def test_a_token_key_on_an_app_mode_stack_is_refused_as_written_nowhere() -> None:
    config = {
        **staging(),
        "githubAuth": "app",
        "dispatchAppClientId": "Iv23liABCDEF",
        "pipelineAppClientId": "Iv23liABCDEG",
        "pipelineToken": "[secret]",
    }
    assert refusal(config) == (
        "dreamscape-infra:pipelineToken: used only with githubAuth: token, and this stack has githubAuth: app; "
        "remove it (pulumi config rm pipelineToken) or set githubAuth"
    )


@pytest.mark.parametrize(("count", "refused"), [(6, False), (7, True)])
def test_an_environment_takes_at_most_six_reviewers(count: int, refused: bool) -> None:
    config = {**staging(), "protection": {"reviewers": [f"user{i}" for i in range(count)]}}
    if refused:
        assert refusal(config) == "dreamscape-infra:protection.reviewers: GitHub accepts at most 6 reviewers, got 7"
    else:
        assert len(parse(config).protection.reviewers) == count


@pytest.mark.parametrize(("last_label", "refused"), [(61, False), (62, True)])
def test_a_domain_is_at_most_253_characters(last_label: int, refused: bool) -> None:
    domain = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * last_label])
    config = {**staging(), "edge": {"domain": domain}}
    if refused:
        assert refusal(config) == "dreamscape-infra:edge.domain: longer than DNS allows (253 characters)"
    else:
        assert len(parse(config).edge.domain) == 253


@pytest.mark.parametrize(
    "theirs",
    [
        "https://idcs-dreamscapestaging.identity.oraclecloud.com/",
        "https://IDCS-DreamscapeStaging.identity.oraclecloud.com",
        "https://idcs-dreamscapestaging.identity.oraclecloud.com:443",
        " https://idcs-dreamscapestaging.identity.oraclecloud.com:443/ ",
    ],
)
def test_one_identity_domain_written_two_ways_is_still_one(theirs: str) -> None:
    assert across(staging(), {"dev": sibling(identityDomainUrl=theirs)}).startswith(
        "dreamscape-infra:oci.identityDomainUrl: https://idcs-dreamscapestaging.identity.oraclecloud.com is stack "
        "dev's identity domain too"
    )
    assert across(staging(), {"dev": sibling(identityDomainUrl="https://idcs-dev.identity.oraclecloud.com")}) == (
        "accepted"
    )


# --- what the plan prints about money and placeholders -------------------------------------------


def project_copy(tmp_path, **changes: dict[str, Any]) -> Any:
    """Pulumi.yaml and the stack files in a directory of their own, each stack's `oci` changed."""
    import shutil
    from pathlib import Path

    import yaml

    for path in Path(settings_module.PROJECT_DIR).glob("Pulumi*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    for stack, oci in changes.items():
        path = tmp_path / f"Pulumi.{stack}.yaml"
        document = yaml.safe_load(path.read_text())
        current = document["config"]["dreamscape-infra:oci"]
        document["config"]["dreamscape-infra:oci"] = {k: v for k, v in {**current, **oci}.items() if v is not None}
        path.write_text(yaml.safe_dump(document))
    return tmp_path


def test_the_plans_allowance_report_reads_the_stack_and_its_siblings_from_the_project_directory(tmp_path) -> None:
    vm_only = dict.fromkeys(("sshAllowedCidrs", "adminSshKeys", "imageId"))
    project = project_copy(
        tmp_path,
        staging={**vm_only, "target": "containerInstances", "shape": "CI.Standard.A1.Flex"},
        production={"ocpus": 2, "memoryGbs": 12},
    )
    lines = settings_module.stack_allowance_report("staging", project).lines()
    # The service's instance (1 OCPU, 6 GB) and the postgres accessory's (1 OCPU, 2 GB).
    assert "staging      CI.Standard.A1.Flex          2      8        0      1,488     5,952" in lines
    assert "production   VM.Standard.A1.Flex          2     12       50      1,488     8,928" in lines
    assert "Load balancers: 1 of 1 (flexible, 10 Mbps)" in lines
    assert any(line.startswith("Paid usage at list price: about $") for line in lines), lines


def test_a_sibling_whose_oci_does_not_validate_is_left_out_of_the_report() -> None:
    production = settings_module.merged_plain_config("production")
    broken = {**production, "oci": {"shape": "VM.Standard.A1.Flex"}}
    mine = parse(staging())
    report = settings_module.allowance_report("staging", mine.oci, {"dev": broken, "production": production}, 0)
    assert [row.environment for row in report.rows] == ["staging", "production"]


def test_the_shipped_placeholders_are_named_and_refused_under_the_real_engine() -> None:
    shipped = parse(staging())
    assert settings_module.example_keys(shipped) == ["oci.compartmentId", "oci.identityDomainUrl"]
    assert settings_module.check_examples(shipped, offline=True) == (
        "still at their example values, which `pulumi up` refuses: dreamscape-infra:oci.compartmentId, "
        "dreamscape-infra:oci.identityDomainUrl"
    )
    with pytest.raises(settings_module.ConfigError) as refused:
        settings_module.check_examples(shipped, offline=False)
    assert str(refused.value) == (
        "dreamscape-infra:oci.compartmentId, dreamscape-infra:oci.identityDomainUrl: still at the example values "
        "this repository ships; set your own (README, Configuration)"
    )
    own = parse(
        staging(
            compartmentId="ocid1.compartment.oc1..aaaaaaaaacmestaging",
            identityDomainUrl="https://idcs-acme.identity.oraclecloud.com",
        )
    )
    assert settings_module.example_keys(own) == []
    assert settings_module.check_examples(own, offline=False) is None


def test_a_repository_that_says_only_its_name_kind_and_components_is_not_deployed() -> None:
    config = staging()
    docs = config["sourceRepositories"][3]
    config["sourceRepositories"][3] = {key: docs[key] for key in ("name", "kind", "components")}
    (repository,) = [r for r in parse(config).source_repositories if r.name == docs["name"]]
    assert (repository.deployable, repository.build_command, repository.test_command) == (False, "true", "true")
    assert repository.artifacts == ("reports", "test-results")


@pytest.mark.parametrize("name", ["acme/docs", "-docs", ".docs", "docs app", ""])
def test_a_repository_name_is_one_github_name(name: str) -> None:
    config = staging()
    config["sourceRepositories"][3]["name"] = name
    assert refusal(config) == (
        f"dreamscape-infra:sourceRepositories[3].name: expected a GitHub repository name, got {name!r}"
    )


def test_each_top_level_choice_reaches_the_settings() -> None:
    chosen = {
        **staging(),
        "armRunnerLabel": "ubuntu-24.04-arm",
        "createMissingBranches": True,
        "fileDelivery": "pullRequest",
        "infraRuleset": False,
        "actionsSettings": False,
    }
    settings = parse(chosen)
    assert settings.arm_runner_label == "ubuntu-24.04-arm"
    assert settings.create_missing_branches is True
    assert settings.file_delivery == "pullRequest"
    assert settings.infra_ruleset is False
    assert settings.actions_settings is False
    keys = ("armRunnerLabel", "createMissingBranches", "fileDelivery", "infraRuleset", "actionsSettings")
    defaults = parse({k: v for k, v in staging().items() if k not in keys})
    assert defaults.arm_runner_label is None
    assert (defaults.create_missing_branches, defaults.file_delivery) == (False, "direct")
    assert (defaults.infra_ruleset, defaults.actions_settings) == (True, True)


# --- size limits: the last size accepted, the first refused -----------------------------------------


def web(config: Config) -> dict[str, Any]:
    """The web-client component of the staging config (deployable, published)."""
    return config["sourceRepositories"][1]["components"][0]


@pytest.mark.parametrize(("count", "refused"), [(100, False), (101, True)])
def test_a_component_takes_at_most_100_variables(count: int, refused: bool) -> None:
    config = staging()
    web(config)["env"] = {f"V{i}": "x" for i in range(count)}
    if refused:
        assert "env: 101 variables; at most 100" in refusal(config)
    else:
        parse(config)


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ("x" * 4096, False),
        ("x" * 4097, True),
        ("two words\tand a tab", False),
        ("line\nbreak", True),
        ("unit\x1fseparator", True),
        ("carriage\rreturn", True),
    ],
    ids=["4096", "4097", "space-tab", "newline", "unit-separator", "carriage-return"],
)
def test_a_variables_value_is_one_line_of_at_most_4096_characters(value: str, refused: bool) -> None:
    config = staging()
    web(config)["env"] = {"GREETING": value}
    if refused:
        assert refusal(config).endswith("components[0].env.GREETING: at most 4096 characters on one line")
    else:
        parse(config)


@pytest.mark.parametrize(("count", "refused"), [(1, False), (10, False), (11, True), (0, True)])
def test_a_component_mounts_one_to_ten_volumes(count: int, refused: bool) -> None:
    config = staging()
    web(config)["volumes"] = {f"v{i}": f"/data/v{i}" for i in range(count)}
    if refused:
        assert ".volumes: expected a map of 1 to 10 name: /container/path" in refusal(config)
    else:
        parse(config)


@pytest.mark.parametrize(
    ("target", "refused"),
    [("/var/lib/Data", False), ("/srv/app.d/x_y-z", False), ("/", True), ("/a/../b", True), ("data", True)],
)
def test_a_volume_is_mounted_at_an_absolute_path_inside_the_container(target: str, refused: bool) -> None:
    config = staging()
    web(config)["volumes"] = {"data": target}
    if refused:
        assert ".volumes.data: expected an absolute path inside the container, not /" in refusal(config)
    else:
        parse(config)


@pytest.mark.parametrize(("count", "refused"), [(1, False), (20, False), (21, True), (0, True)])
def test_the_bastion_admits_one_to_twenty_client_ranges(count: int, refused: bool) -> None:
    cidrs = [f"198.51.100.{i}/32" for i in range(count)]
    if refused:
        assert refusal(staging(bastionClientCidrs=cidrs)).startswith(
            "dreamscape-infra:oci.bastionClientCidrs: expected a list of at least 1 and at most 20, got "
        )
    else:
        assert parse(staging(bastionClientCidrs=cidrs)).oci.bastion_client_cidrs == tuple(cidrs)


@pytest.mark.parametrize(
    ("sizes", "refused"),
    [
        ((16384,), None),
        ((16385,), "dreamscape-infra:secretValues.S0: 16385 bytes; at most 16384"),
        ((16384, 16384, 8192), None),
        ((16384, 16384, 8193), "dreamscape-infra:secretValues: 40961 bytes in all; at most 40960"),
    ],
)
def test_secret_values_are_at_most_16_kib_each_and_40_kib_together(sizes, refused) -> None:
    import json

    text = json.dumps({f"S{i}": "s" * size for i, size in enumerate(sizes)})
    if refused is None:
        assert sorted(settings_module.secret_values(text)) == [f"S{i}" for i in range(len(sizes))]
        return
    with pytest.raises(settings_module.ConfigError) as error:
        settings_module.secret_values(text)
    assert str(error.value).startswith(refused), str(error.value)


def test_deploy_options_left_out_take_the_programs_defaults() -> None:
    config = staging()
    config.pop("deploy", None)
    deploy = parse(config).deploy
    assert (deploy.lock_wait_seconds, deploy.wait_timeout_seconds, deploy.keep_releases) == (300, 180, 5)
    config["deploy"] = {"keepReleases": 2}
    deploy = parse(config).deploy
    assert (deploy.lock_wait_seconds, deploy.wait_timeout_seconds, deploy.keep_releases) == (300, 180, 2)


@pytest.mark.parametrize(
    ("message", "written"),
    [
        ("ci: dreamscape wiring", "ci: dreamscape wiring [skip ci]"),
        ("ci: dreamscape wiring  \n", "ci: dreamscape wiring [skip ci]"),
        ("ci: wiring [ci skip]", "ci: wiring [ci skip]"),
        ("ci: wiring [no ci]", "ci: wiring [no ci]"),
        ("[skip actions] ci: wiring", "[skip actions] ci: wiring"),
    ],
)
def test_every_commit_the_program_writes_skips_workflows(message: str, written: str) -> None:
    """A file the provider writes to a deploying branch must not start a deploy by itself."""
    config = {**staging(), "commit": {"message": message, "authorName": "infra-bot", "authorEmail": "bot@acme.io"}}
    commit = parse(config).commit
    assert (commit.message, commit.author_name, commit.author_email) == (written, "infra-bot", "bot@acme.io")


@pytest.mark.parametrize(("given", "missing"), [("authorName", "authorEmail"), ("authorEmail", "authorName")])
def test_a_commit_author_is_both_a_name_and_an_address(given: str, missing: str) -> None:
    value = "infra-bot" if given == "authorName" else "bot@acme.io"
    config = {**staging(), "commit": {"message": "ci: wiring", given: value}}
    assert refusal(config).startswith(f"dreamscape-infra:commit.{missing}: required with the other author field")


def test_project_defaults_are_read_in_each_form_pulumi_yaml_allows(tmp_path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: dreamscape-infra\n"
        "runtime: python\n"
        "config:\n"
        "  dreamscape-infra:githubOwner: acme\n"
        "  dreamscape-infra:infraRepository: {value: acme-infra}\n"
        "  dreamscape-infra:wiringStack: {default: staging}\n"
        "  dreamscape-infra:registry: {type: string}\n"
        "  oci:region: eu-frankfurt-1\n"
        "  dreamscape-infra:scanSeverity: CRITICAL\n"
    )
    assert settings_module.read_project_config(tmp_path) == {
        "githubOwner": "acme",
        "infraRepository": "acme-infra",
        "wiringStack": "staging",
        "scanSeverity": "CRITICAL",
    }


# --- reading the stack's config under the engine (settings.load, through the offline plan) -----------


def load_stack(stack: str = "staging", **changes: Any):
    from tools import offline

    config, secret_keys = offline.stack_config(stack)
    for key, value in changes.items():
        config[key] = value
    return offline.run(stack, config=config, secret_keys=secret_keys)


def test_the_engines_region_is_checked_like_a_given_one() -> None:
    with pytest.raises(settings_module.ConfigError, match=r"^oci:region: uk-gov-london-1 is outside OCI's commercial"):
        load_stack(**{"oci:region": "uk-gov-london-1"})


def test_a_string_key_stays_a_string_even_when_it_reads_as_json() -> None:
    plan = load_stack("production", **{"dreamscape-infra:armRunnerLabel": "1234"})
    import json

    (data,) = [r.inputs["content"] for r in plan.resources if r.inputs.get("file") == ".github/dreamscape/central.json"]
    assert json.loads(data)["arm_runner_label"] == "1234"


def test_secret_values_set_in_plain_text_stop_the_program() -> None:
    with pytest.raises(settings_module.ConfigError, match=r"^dreamscape-infra:secretValues: set in plain text"):
        load_stack(**{"dreamscape-infra:secretValues": '{"STRIPE_API_KEY": "sk_live_x"}'})


@pytest.mark.parametrize("key", ["env", "volumes", "secrets", "accessories"])
def test_a_component_of_a_repository_that_is_not_deployed_runs_nothing(key: str) -> None:
    config = staging()
    value = {
        "env": {"LOG_LEVEL": "debug"},
        "volumes": {"data": "/data"},
        "secrets": ["JWT_SIGNING_KEY"],
        "accessories": ["postgres"],
    }[key]
    config["sourceRepositories"][3]["components"][0][key] = value  # the docs site: not deployable
    assert refusal(config) == (
        f"dreamscape-infra:sourceRepositories[3].components[0].{key}: dreamscape-docs is not deployable; its "
        "components never run on the VMs"
    )


def test_the_stacks_component_env_is_laid_over_the_projects(tmp_path) -> None:
    config = staging()
    web(config)["env"] = {"LOG_LEVEL": "info", "GREETING": "hello"}
    config["componentEnv"] = {web(config)["name"]: {"LOG_LEVEL": "debug"}}
    (component,) = [c for r in parse(config).source_repositories for c in r.components if c.name == web(config)["name"]]
    assert component.env == (("GREETING", "hello"), ("LOG_LEVEL", "debug"))
    # Together at most 100 variables.
    web(config)["env"] = {f"V{i}": "x" for i in range(99)}
    config["componentEnv"] = {web(config)["name"]: {"EXTRA": "1"}}
    parse(config)
    config["componentEnv"] = {web(config)["name"]: {"EXTRA": "1", "MORE": "2"}}
    assert refusal(config).endswith(f"componentEnv.{web(config)['name']}: 101 variables with env; at most 100")


@pytest.mark.parametrize("vcn", [167772160, "10.0.0.1/16", "2001:db8::/56", "10.0.0.0/15", "10.0.0.0/31"])
def test_a_vcn_range_is_one_oci_accepts(vcn: Any) -> None:
    assert refusal(staging(vcnCidr=vcn)).startswith(
        "dreamscape-infra:oci.vcnCidr: expected an IPv4 CIDR from /16 to /30 like 10.0.0.0/16 (host bits zero; "
        "OCI's limits), got "
    )


def test_an_artifact_path_may_end_with_a_slash() -> None:
    config = staging()
    config["sourceRepositories"][0]["artifacts"] = ["reports/", "out/X", "coverage/*.xml"]
    (services,) = [r for r in parse(config).source_repositories if r.name == "dreamscape-services"]
    assert services.artifacts == ("reports/", "out/X", "coverage/*.xml")
    for bad in ("reports//x", "./reports", "a/../b", "/abs"):
        config["sourceRepositories"][0]["artifacts"] = [bad]
        assert "sourceRepositories[0].artifacts[0]: expected a relative path inside the component's folder" in (
            refusal(config)
        ), bad


@pytest.mark.parametrize(("added", "refused"), [(48, False), (49, True)])
def test_a_project_declares_at_most_50_secrets(added: int, refused: bool) -> None:
    config = staging()
    config["secrets"] = {**{f"S{i}": "generated" for i in range(added)}, **config["secrets"]}
    if refused:
        assert refusal(config).startswith("dreamscape-infra:secrets: expected a map of at most 50 NAME: generated")
    else:
        assert len(parse(config).secrets) == 50


def test_every_excess_over_the_allowance_is_named() -> None:
    assert refusal(staging(ocpus=4, memoryGbs=24)) == (
        "dreamscape-infra:allowPaidShapes: the stacks together exceed Oracle's Always Free allowance of 2026-06: "
        "A1.Flex OCPU-hours 2,976 of 1,500 a month free (about $14.76/month); A1.Flex GB-hours 17,856 of 9,000 a "
        "month free (about $13.28/month); shrink an environment or set allowPaidShapes: true (in Pulumi.yaml for "
        "every stack) to accept the cost"
    )


def test_the_report_names_each_stack_by_its_environment_and_puts_unknown_ones_last() -> None:
    production = settings_module.merged_plain_config("production")
    mine = parse(staging())
    siblings = {
        "dev": {**production, "environment": "zeta"},
        "production": {**production, "environment": "qa"},
        "sandbox": production,
    }
    report = settings_module.allowance_report("staging", mine.oci, siblings, 0)
    assert [row.environment for row in report.rows] == ["staging", "qa", "sandbox", "zeta"]


def test_a_project_without_accessories_counts_none(tmp_path) -> None:
    import yaml

    project = project_copy(
        tmp_path,
        staging={
            "sshAllowedCidrs": None,
            "adminSshKeys": None,
            "imageId": None,
            "target": "containerInstances",
            "shape": "CI.Standard.A1.Flex",
        },
    )
    document = yaml.safe_load((project / "Pulumi.yaml").read_text())
    document["config"].pop("accessories")
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(document))
    lines = settings_module.stack_allowance_report("staging", project).lines()
    assert "staging      CI.Standard.A1.Flex          1      6        0        744     4,464" in lines


def test_the_plans_report_labels_the_stack_with_its_environment(tmp_path) -> None:
    project = project_copy(tmp_path)
    path = project / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("config:\n", "config:\n  dreamscape-infra:environment: sandbox\n", 1))
    rows = settings_module.stack_allowance_report("dev", project).rows
    assert [row.environment for row in rows] == ["staging", "production", "sandbox"]


def test_an_artifact_path_of_one_letter_is_one_segment() -> None:
    config = staging()
    config["sourceRepositories"][0]["artifacts"] = ["X"]
    (services,) = [r for r in parse(config).source_repositories if r.name == "dreamscape-services"]
    assert services.artifacts == ("X",)


# --- the value checkers' types and bounds ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "refused"), [(2, False), (50, False), (1, True), (51, True), (True, True), ("5", True), (5.0, True)]
)
def test_a_whole_number_is_an_int_within_its_bounds(value: Any, refused: bool) -> None:
    config = staging()
    config["deploy"] = {"keepReleases": value}
    if refused:
        assert refusal(config) == (
            f"dreamscape-infra:deploy.keepReleases: expected a whole number from 2 to 50, got {json_or_repr(value)}"
        )
    else:
        assert parse(config).deploy.keep_releases == value


def json_or_repr(value: Any) -> str:
    import json

    return repr(value) if isinstance(value, str) else json.dumps(value)


@pytest.mark.parametrize("value", [0.1, 128.5, True, "1"])
def test_a_number_is_an_int_or_float_within_its_bounds(value: Any) -> None:
    assert refusal(staging(ocpus=value)) == (
        f"dreamscape-infra:oci.ocpus: expected a number from 0.125 to 128, got {json_or_repr(value)}"
    )


@pytest.mark.parametrize(("ocpus", "memory"), [(0.125, 1), (128, 768)])
def test_the_ends_of_a_numbers_range_pass_it_and_meet_the_shapes_own_limits(ocpus: float, memory: int) -> None:
    """0.125 and 128 OCPUs are within the range every shape's value is checked against first;
    A1.Flex's own limits then refuse both here."""
    message = refusal(staging(ocpus=ocpus, memoryGbs=memory))
    assert not message.startswith("dreamscape-infra:oci.ocpus: expected a number from"), message
    assert message.startswith("dreamscape-infra:oci.ocpus: "), message


@pytest.mark.parametrize("value", [5, True, ["acme"], "", "   "])
def test_a_string_key_refuses_anything_but_a_non_blank_string(value: Any) -> None:
    config = {**staging(), "commit": {"message": value}}
    assert refusal(config) == f"dreamscape-infra:commit.message: expected a commit message, got {json_or_repr(value)}"


def test_a_repository_has_at_least_one_component() -> None:
    config = staging()
    config["sourceRepositories"][3]["components"] = []
    assert refusal(config) == (
        "dreamscape-infra:sourceRepositories[3].components: expected a list of at least 1, got []"
    )


@pytest.mark.parametrize(("key", "missing"), [("port", "port"), ("healthPath", "healthPath")])
def test_a_deployable_component_says_its_port_and_health_path(key: str, missing: str) -> None:
    config = staging()
    web(config).pop(key)
    assert refusal(config) == (
        f"dreamscape-infra:sourceRepositories[1].components[0].{missing}: required, missing (the repository is "
        "deployable)"
    )


def test_a_stack_without_a_stack_file_has_the_projects_config_only(tmp_path) -> None:
    project = project_copy(tmp_path)
    assert settings_module.read_stack_file("qa", project) == {}
    assert settings_module.merged_plain_config("qa", project) == settings_module.read_project_config(project)


@pytest.mark.parametrize(
    ("key", "last", "get", "beside", "top"),
    [
        (("protection", "waitTimer"), 43200, lambda s: s.protection.wait_timer, {}, {}),
        # 0 approvals: only with the unreviewed-production switch; 52 backups: past the free 5.
        (
            ("repositoryRules", "approvals"),
            10,
            lambda s: s.repository_rules.approvals,
            {"allowUnreviewedProduction": True},
            {},
        ),
        (("oci", "bootVolumeBackups"), 52, lambda s: s.oci.boot_volume_backups, {}, {"allowPaidShapes": True}),
    ],
)
def test_a_bounded_number_takes_its_last_value_and_no_more(key, last: int, get, beside: Config, top: Config) -> None:
    """GitHub's 30 days of wait timer (43200 minutes) and 10 required approvals, a year of
    weekly boot volume backups (52); 0 is the lowest of each."""
    section, name = key

    def config_with(value: int) -> Config:
        config = {**staging(), **top}
        config[section] = {**(config.get(section) or {}), **beside, name: value}
        return config

    assert get(parse(config_with(last))) == last
    assert get(parse(config_with(0))) == 0
    for refused in (last + 1, -1):
        assert refusal(config_with(refused)) == (
            f"dreamscape-infra:{section}.{name}: expected a whole number from 0 to {last}, got {refused}"
        )


@pytest.mark.parametrize(("count", "refused"), [(10, False), (11, True)])
def test_a_project_runs_at_most_10_accessories(count: int, refused: bool) -> None:
    config = staging()
    postgres = config["accessories"][0]
    config["accessories"] = [postgres, *({**postgres, "name": f"db{i}"} for i in range(count - 1))]
    if refused:
        assert refusal(config).startswith("dreamscape-infra:accessories: expected a list of at most 10, got ")
    else:
        assert len(parse(config).accessories) == 10


@pytest.mark.parametrize(("length", "refused"), [(1000, False), (1001, True)])
def test_an_accessorys_health_check_is_one_line_of_at_most_1000_characters(length: int, refused: bool) -> None:
    config = staging()
    command = "true " + "x" * (length - 5)
    config["accessories"] = [{**config["accessories"][0], "healthCheck": command}]
    if refused:
        assert refusal(config).startswith(
            "dreamscape-infra:accessories[0].healthCheck: expected a one-line shell command, got "
        )
    else:
        assert parse(config).accessories[0].health_check == command
