"""The bounds components/settings.py writes inline (number ranges, list sizes, the lengths its
name patterns allow), each at its edge: the last value accepted and the first refused, with the
message that refuses it. tests/test_settings_edges.py pins the others. Each case is the staging
stack's config with one value changed; the numbers are written here, never read from the code."""

from __future__ import annotations

import json

import pytest

from components import settings as settings_module
from tests.test_settings_edges import Config, json_or_repr, parse, refusal, staging, web

# --- numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("port", "refused"), [(1, False), (65535, False), (0, True), (65536, True)])
def test_a_component_port_is_from_1_to_65535(port: int, refused: bool) -> None:
    config = staging()
    web(config)["port"] = port
    if refused:
        assert refusal(config) == (
            f"dreamscape-infra:sourceRepositories[1].components[0].port: expected a whole number from 1 to 65535, "
            f"got {port}"
        )
    else:
        assert parse(config).source_repositories[1].components[0].port == port


@pytest.mark.parametrize(
    ("key", "value", "refused"),
    [
        ("ocpus", 0.125, "dreamscape-infra:oci.ocpus: VM.Standard.A1.Flex accepts 1 to 80 whole OCPUs, got 0.125"),
        ("ocpus", 128, "dreamscape-infra:oci.ocpus: VM.Standard.A1.Flex accepts 1 to 80 whole OCPUs, got 128"),
        ("ocpus", 0.12, "dreamscape-infra:oci.ocpus: expected a number from 0.125 to 128, got 0.12"),
        ("ocpus", 128.5, "dreamscape-infra:oci.ocpus: expected a number from 0.125 to 128, got 128.5"),
        ("memoryGbs", 1, None),
        ("memoryGbs", 2048, "dreamscape-infra:oci.memoryGbs: VM.Standard.A1.Flex accepts 1 to 512 whole GB, got 2048"),
        ("memoryGbs", 0.9, "dreamscape-infra:oci.memoryGbs: expected a number from 1 to 2048, got 0.9"),
        ("memoryGbs", 2048.5, "dreamscape-infra:oci.memoryGbs: expected a number from 1 to 2048, got 2048.5"),
    ],
)
def test_ocpus_are_from_0_125_to_128_and_memory_from_1_to_2048_gb(key: str, value: float, refused: str | None) -> None:
    """Every shape's values pass these ranges first; A1.Flex's own limits then refuse the far ends."""
    config = staging(**{key: value})
    if refused:
        assert refusal(config) == refused
    else:
        assert parse(config).oci.memory_gbs == value


@pytest.mark.parametrize(("size", "refused"), [(50, False), (32768, False), (49, True), (32769, True)])
def test_a_boot_volume_is_from_50_to_32768_gb(size: int, refused: bool) -> None:
    config = {**staging(bootVolumeGbs=size), "allowPaidShapes": True}  # past the 200 free GB
    if refused:
        assert refusal(config) == (
            f"dreamscape-infra:oci.bootVolumeGbs: expected a whole number from 50 to 32768, got {size}"
        )
    else:
        assert parse(config).oci.boot_volume_gbs == size


@pytest.mark.parametrize(
    ("key", "value", "refused"),
    [
        ("lockWaitSeconds", 0, None),
        ("lockWaitSeconds", 3600, None),
        ("lockWaitSeconds", -1, "0 to 3600"),
        ("lockWaitSeconds", 3601, "0 to 3600"),
        ("waitTimeoutSeconds", 10, None),
        ("waitTimeoutSeconds", 3600, None),
        ("waitTimeoutSeconds", 9, "10 to 3600"),
        ("waitTimeoutSeconds", 3601, "10 to 3600"),
    ],
)
def test_a_deploy_waits_0_to_3600_s_for_the_lock_and_10_to_3600_s_for_health(
    key: str, value: int, refused: str | None
) -> None:
    config = staging(bastionSessionTtlSeconds=10800)  # long enough for the longest deploy these allow
    config["deploy"] = {key: value}
    if refused:
        assert refusal(config) == f"dreamscape-infra:deploy.{key}: expected a whole number from {refused}, got {value}"
    else:
        deploy = parse(config).deploy
        assert (deploy.lock_wait_seconds if key == "lockWaitSeconds" else deploy.wait_timeout_seconds) == value


@pytest.mark.parametrize(("days", "refused"), [(1, False), (90, False), (0, True), (91, True)])
def test_test_reports_are_kept_1_to_90_days(days: int, refused: bool) -> None:
    config = {**staging(), "artifactRetentionDays": days}
    if refused:
        assert (
            refusal(config)
            == f"dreamscape-infra:artifactRetentionDays: expected a whole number from 1 to 90, got {days}"
        )
    else:
        assert parse(config).artifact_retention_days == days


@pytest.mark.parametrize(("approvals", "refused"), [(1, False), (0, True)])
def test_a_pull_request_into_main_needs_at_least_1_approval_unless_opted_out(approvals: int, refused: bool) -> None:
    config = {**staging(), "repositoryRules": {"approvals": approvals}}
    if refused:
        assert refusal(config) == (
            "dreamscape-infra:repositoryRules.approvals: 0 lets a pull request into main, which deploys to production, "
            "merge without a review; set 1 or more, or repositoryRules.allowUnreviewedProduction: true"
        )
    else:
        assert parse(config).repository_rules.approvals == approvals


# --- list sizes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "count", "refused"),
    [
        ("sourceRepositories", 1, False),
        ("sourceRepositories", 0, True),
        ("sourceRepositories[3].components", 1, False),  # the docs site has one
        ("sourceRepositories[3].components", 0, True),
    ],
)
def test_a_project_lists_at_least_1_repository_and_a_repository_at_least_1_component(
    where: str, count: int, refused: bool
) -> None:
    config = staging()
    owner = config if where == "sourceRepositories" else config["sourceRepositories"][3]
    key = where.rpartition(".")[2]
    owner[key] = owner[key][:count]
    if refused:
        assert refusal(config) == f"dreamscape-infra:{where}: expected a list of at least 1, got []"
    else:
        settings = parse(config)
        listed = (
            settings.source_repositories if key == "sourceRepositories" else settings.source_repositories[3].components
        )
        assert len(listed) == 1


# --- the lengths the name patterns allow -------------------------------------------------------------


@pytest.mark.parametrize(("name", "refused"), [("A", False), ("A" * 128, False), ("A" * 129, True)])
def test_an_env_variable_name_is_at_most_128_characters(name: str, refused: bool) -> None:
    config = staging()
    web(config)["env"] = {name: "x"}
    if refused:
        assert refusal(config) == (
            f"dreamscape-infra:sourceRepositories[1].components[0].env.{name}: not a variable name (upper case "
            "letters, digits and _, ^[A-Z_][A-Z0-9_]{0,127}$)"
        )
    else:
        assert parse(config).source_repositories[1].components[0].env == ((name, "x"),)


@pytest.mark.parametrize(("name", "refused"), [("S", False), ("S" * 128, False), ("S" * 129, True)])
def test_a_secret_name_is_at_most_128_characters_where_declared_named_and_given_a_value(
    name: str, refused: bool
) -> None:
    declared = staging()
    declared["secrets"][name] = "generated"
    named = staging()
    named["secrets"][name] = "generated"
    web(named)["secrets"] = [name]
    value = json.dumps({name: "v"})
    if refused:
        assert refusal(declared) == (
            f"dreamscape-infra:secrets.{name}: not a variable name (upper case letters, digits and _)"
        )
        assert refusal(named) == (
            "dreamscape-infra:sourceRepositories[1].components[0].secrets[0]: expected a secret's name (upper case "
            f"letters, digits and _), got '{'S' * 76}..."
        )
        with pytest.raises(settings_module.ConfigError) as error:
            settings_module.secret_values(value)
        assert str(error.value) == (
            f"dreamscape-infra:secretValues.{name}: not a variable name (upper case letters, digits and _)"
        )
    else:
        assert (name, "generated") in parse(declared).secrets
        assert parse(named).secrets_of("web-client") == (name,)
        assert list(settings_module.secret_values(value)) == [name]


@pytest.mark.parametrize(("name", "refused"), [("v", False), ("v" * 31, False), ("v" * 32, True)])
def test_a_volume_name_is_at_most_31_characters(name: str, refused: bool) -> None:
    config = staging()
    web(config)["volumes"] = {name: "/data"}
    if refused:
        assert refusal(config) == (
            f"dreamscape-infra:sourceRepositories[1].components[0].volumes.{name}: not a volume name (lowercase "
            "letters, digits, '-')"
        )
    else:
        assert parse(config).source_repositories[1].components[0].volumes == ((name, "/data"),)


@pytest.mark.parametrize(("name", "refused"), [("w", False), ("w" * 63, False), ("w" * 64, True)])
def test_a_component_name_is_at_most_63_characters(name: str, refused: bool) -> None:
    config = staging()
    web(config)["name"] = name
    if refused:
        assert refusal(config) == (
            "dreamscape-infra:sourceRepositories[1].components[0].name: expected a component name: lowercase "
            f"letters, digits, '-', got '{name}'"
        )
    else:
        assert parse(config).source_repositories[1].components[0].name == name


def renamed_postgres(name: str, named: bool) -> Config:
    """The staging config with its accessory renamed; the services' components name it, or not."""
    config = staging()
    config["accessories"][0]["name"] = name
    for component in config["sourceRepositories"][0]["components"]:
        if named:
            component["accessories"] = [name]
        else:
            component.pop("accessories")
    return config


@pytest.mark.parametrize(("name", "refused"), [("p", False), ("p" * 63, False), ("p" * 64, True)])
def test_an_accessory_name_is_at_most_63_characters_where_declared_and_named(name: str, refused: bool) -> None:
    if refused:
        assert refusal(renamed_postgres(name, named=False)) == (
            f"dreamscape-infra:accessories[0].name: expected an accessory name: lowercase letters, digits, '-', "
            f"got '{name}'"
        )
        assert refusal(renamed_postgres(name, named=True)) == (
            f"dreamscape-infra:sourceRepositories[0].components[0].accessories[0]: expected an accessory's name, "
            f"got '{name}'"
        )
    else:
        assert parse(renamed_postgres(name, named=False)).accessories[0].name == name
        assert parse(renamed_postgres(name, named=True)).source_repositories[0].components[0].accessories == (name,)


@pytest.mark.parametrize(("name", "refused"), [("d", False), ("d" * 100, False), ("d" * 101, True)])
def test_a_repository_name_is_at_most_100_characters(name: str, refused: bool) -> None:
    source = staging()
    source["sourceRepositories"][3]["name"] = name
    infra = {**staging(), "infraRepository": name}
    if refused:
        shown = f"got '{'d' * 76}..."
        assert refusal(source) == (
            f"dreamscape-infra:sourceRepositories[3].name: expected a GitHub repository name, {shown}"
        )
        assert refusal(infra) == f"dreamscape-infra:infraRepository: expected a GitHub repository name, {shown}"
    else:
        assert parse(source).source_repositories[3].name == name
        assert parse(infra).infra_repository == name


@pytest.mark.parametrize(("login", "refused"), [("a", False), ("a" * 39, False), ("a" * 40, True)])
def test_the_github_owner_is_a_login_of_at_most_39_characters(login: str, refused: bool) -> None:
    config = {**staging(), "githubOwner": login}
    if refused:
        assert refusal(config) == (
            f"dreamscape-infra:githubOwner: expected a GitHub user or organization login, got '{login}'"
        )
    else:
        assert parse(config).github_owner == login


@pytest.mark.parametrize(
    ("client_id", "refused"),
    [("Iv" + "a" * 4, False), ("Iv" + "a" * 40, False), ("Iv" + "a" * 3, True), ("Iv" + "a" * 41, True)],
)
def test_a_github_app_client_id_is_iv_and_4_to_40_characters(client_id: str, refused: bool) -> None:
    config = {**staging(), "githubAuth": "app", "dispatchAppClientId": client_id, "pipelineAppClientId": "Iv23liABCDEF"}
    if refused:
        assert refusal(config) == (
            f"dreamscape-infra:dispatchAppClientId: expected a GitHub App client id (Iv...), got '{client_id}'"
        )
    else:
        assert parse(config).dispatch_app_client_id == client_id


@pytest.mark.parametrize(
    ("actor", "refused"),
    [
        ("user:a", False),
        ("user:" + "a" * 39, False),
        ("user:" + "a" * 40, True),
        ("app:1", False),
        ("app:" + "9" * 12, False),
        ("app:" + "9" * 13, True),
        ("app:", True),
    ],
)
def test_a_ruleset_actor_is_a_user_of_at_most_39_characters_or_an_app_id_of_1_to_12_digits(
    actor: str, refused: bool
) -> None:
    config = {**staging(), "repositoryRules": {"productionPushers": [actor]}}
    if refused:
        assert refusal(config) == (
            "dreamscape-infra:repositoryRules.productionPushers[0]: expected role:admin, role:maintain, team:<slug>, "
            f"user:<login> or app:<id>, got {json_or_repr(actor)}"
        )
    else:
        assert parse(config).repository_rules.production_pushers == (actor,)


@pytest.mark.parametrize(("release", "refused"), [("24.04", False), ("10.10", False), ("4.04", True), ("124.04", True)])
def test_an_ubuntu_release_has_a_2_digit_year(release: str, refused: bool) -> None:
    config = staging(ubuntuVersion=release)
    if refused:
        assert refusal(config) == (
            f"dreamscape-infra:oci.ubuntuVersion: expected an Ubuntu release like 24.04, got '{release}'"
        )
    else:
        assert parse(config).oci.ubuntu_version == release


@pytest.mark.parametrize(("value", "refused"), [("AKIA" + "A" * 15, False), ("AKIA" + "A" * 16, True)])
def test_akia_and_16_more_characters_in_a_variables_value_is_an_aws_credential(value: str, refused: bool) -> None:
    config = staging()
    web(config)["env"] = {"GREETING": value}
    if refused:
        assert refusal(config) == (
            "dreamscape-infra:sourceRepositories[1].components[0].env.GREETING: holds a credential; plain config is "
            "committed and printed, secrets never are"
        )
    else:
        assert parse(config).source_repositories[1].components[0].env == (("GREETING", value),)
