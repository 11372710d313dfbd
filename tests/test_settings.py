"""Stack configuration: the shipped stacks validate, and every bad value fails with its key path."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from components import settings
from components.environment import deploy_program
from components.settings import ConfigError
from tools import offline


def raw(stack: str) -> dict[str, Any]:
    """The shipped stack's merged plain config, as `load()` would hand it to `parse()`."""
    return copy.deepcopy(settings.merged_plain_config(stack))


def parse(stack: str, config: dict[str, Any], siblings: dict | None = None) -> settings.Settings:
    return settings.parse(config, stack, sibling_stacks=siblings or {})


@pytest.mark.parametrize("stack", ["dev", "staging", "production"])
def test_shipped_stacks_validate(stack: str) -> None:
    s = settings.parse(raw(stack), stack, sibling_stacks=settings.sibling_stacks(stack))
    assert s.environment == stack
    assert s.owns_wiring is (stack == "production")
    assert [r.name for r in s.source_repositories] == [
        "dreamscape-services",
        "dreamscape-frontend",
        "dreamscape-tests",
        "dreamscape-docs",
    ]
    assert s.registry == "ghcr.io/dreamscape-ai"
    assert s.deploy.keep_releases == 5


def test_seed_repositories_and_event_types() -> None:
    s = parse("dev", raw("dev"))
    by_name = {r.name: r for r in s.source_repositories}
    assert by_name["dreamscape-services"].event_type == "services-changed"
    assert by_name["dreamscape-services"].component_names == ("auth-service", "user-service")
    assert by_name["dreamscape-frontend"].deployable
    assert not by_name["dreamscape-docs"].deployable
    assert all(c.port and c.health_path for c in by_name["dreamscape-frontend"].components)


def test_defaults_fill_optional_keys() -> None:
    config = raw("staging")
    for key in ("deploy", "protection", "scanSeverity", "dispatchTokenScope", "deploySecretLayout"):
        config.pop(key, None)
    s = parse("staging", config)
    assert s.deploy == settings.Deploy(lock_wait_seconds=300, wait_timeout_seconds=180, keep_releases=5)
    assert s.protection == settings.Protection()
    assert (s.scan_severity, s.dispatch_token_scope, s.deploy_secret_layout) == ("HIGH", "repository", "repository")


def test_ssh_and_bastion_defaults_with_the_keys_removed() -> None:
    """No SSH source but the bastion unless the config names one; sessions from anywhere, 30 minutes."""
    config = raw("dev")
    for key in ("sshAllowedCidrs", "bastionClientCidrs", "bastionSessionTtlSeconds"):
        config["oci"].pop(key, None)
    oci = parse("dev", config).oci
    assert oci.ssh_allowed_cidrs == ()
    assert oci.bastion_client_cidrs == ("0.0.0.0/0",)
    assert oci.bastion_session_ttl_seconds == 1800
    assert parse("dev", edit(config, "oci.sshAllowedCidrs", [])).oci.ssh_allowed_cidrs == ()


def test_bastion_keys_accept_what_oci_accepts() -> None:
    """OCI's CreateBastionDetails: 1 to 20 client CIDR blocks, a session TTL of 1800 to 10800 seconds."""
    config = raw("staging")
    twenty = [f"192.0.2.{i}/32" for i in range(20)]
    oci = parse("staging", edit(edit(config, "oci.bastionClientCidrs", twenty), "oci.bastionSessionTtlSeconds", 10800))
    assert oci.oci.bastion_client_cidrs == tuple(twenty)
    assert oci.oci.bastion_session_ttl_seconds == 10800
    assert parse("staging", edit(config, "oci.bastionSessionTtlSeconds", 1800)).oci.bastion_session_ttl_seconds == 1800
    for value in (1799, 10801):
        with pytest.raises(
            ConfigError, match=r"oci\.bastionSessionTtlSeconds: expected a whole number from 1800 to 10800"
        ):
            parse("staging", edit(config, "oci.bastionSessionTtlSeconds", value))
    for value in ([], [*twenty, "192.0.2.20/32"]):
        with pytest.raises(ConfigError, match=r"oci\.bastionClientCidrs: expected a list of at least 1 and at most 20"):
            parse("staging", edit(config, "oci.bastionClientCidrs", value))
    with pytest.raises(ConfigError, match=r"oci\.bastionClientCidrs\[0\]: expected an IPv4 or IPv6 CIDR"):
        parse("staging", edit(config, "oci.bastionClientCidrs", ["my-laptop"]))


def test_deploy_keys_accept_exactly_what_the_deploy_program_accepts() -> None:
    """`deploy.*` travel to the VM as the program's options: same bounds, same defaults."""
    keys = {
        "lockWaitSeconds": (deploy_program.LOCK_WAIT, "lock_wait_seconds"),
        "waitTimeoutSeconds": (deploy_program.WAIT_TIMEOUT, "wait_timeout_seconds"),
        "keepReleases": (deploy_program.KEEP, "keep_releases"),
    }
    assert sorted(o.flag for o, _ in keys.values()) == sorted(o.flag for o in deploy_program.OPTIONS)
    config = raw("staging")
    config.pop("deploy", None)
    defaults = parse("staging", config).deploy
    # The longest deploy needs the longest bastion session (tested on its own below).
    config = edit(config, "oci.bastionSessionTtlSeconds", 10800)
    for key, (option, field) in keys.items():
        assert getattr(defaults, field) == option.default
        for value in (option.low, option.high):
            assert getattr(parse("staging", {**config, "deploy": {key: value}}).deploy, field) == value
            assert option.value(str(value)) == value
        for value in (option.low - 1, option.high + 1):
            expected = rf"deploy\.{key}: expected a whole number from {option.low} to {option.high}"
            with pytest.raises(ConfigError, match=expected):
                parse("staging", {**config, "deploy": {key: value}})
            assert option.value(str(value)) is None


def test_the_bastion_session_must_outlive_the_longest_deploy() -> None:
    config = edit(raw("staging"), "deploy", {"lockWaitSeconds": 1200})
    needed = 300 + 1200 + deploy_program.PULL_TIMEOUT_SECONDS + 2 * 180 + 60
    with pytest.raises(ConfigError, match=rf"oci\.bastionSessionTtlSeconds: 1800 is shorter .* \({needed} s"):
        parse("staging", config)
    assert parse("staging", edit(config, "oci.bastionSessionTtlSeconds", needed)).oci.bastion_session_ttl_seconds == (
        needed
    )
    with pytest.raises(ConfigError, match=r"oci\.bastionSessionTtlSeconds: 2460 is shorter"):
        parse("staging", edit(config, "oci.bastionSessionTtlSeconds", needed - 60))
    # Past OCI's longest session no bastion setting helps: the deploy settings are refused.
    longest = edit(config, "deploy", {"lockWaitSeconds": 3600, "waitTimeoutSeconds": 3600})
    with pytest.raises(ConfigError, match=r"^dreamscape-infra:deploy: a deploy may take 11760 s .* 10800 s"):
        parse("staging", edit(longest, "oci.bastionSessionTtlSeconds", 10800))


def edit(config: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set `a.b[0].c` in a copy of config; value `...` deletes the key."""
    config = copy.deepcopy(config)
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    node: Any = config
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    last = parts[-1]
    key: Any = int(last[1:-1]) if last.startswith("[") else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return config


BAD = [
    # (what, stack, path to change, value, message pattern)
    ("unknown top-level key", "dev", "ociRegion", "x", r"dreamscape-infra:ociRegion: unknown key"),
    (
        "unknown nested key",
        "dev",
        "oci.cpu",
        2,
        r"dreamscape-infra:oci\.cpu: unknown key; expected one of compartmentId",
    ),
    (
        "unknown key in a repository",
        "dev",
        "sourceRepositories[1].language",
        "ts",
        r"sourceRepositories\[1\]\.language: unknown key",
    ),
    (
        "wrong type: number as text",
        "dev",
        "oci.ocpus",
        "two",
        r"oci\.ocpus: expected a number from 0\.125 to 128, got 'two'",
    ),
    (
        "wrong type: boolean as text",
        "dev",
        "sourceRepositories[0].deployable",
        "yes",
        r"sourceRepositories\[0\]\.deployable: expected true or false",
    ),
    ("wrong type: list as object", "dev", "sourceRepositories", {"name": "x"}, r"sourceRepositories: expected a list"),
    (
        "wrong type: port out of range",
        "dev",
        "sourceRepositories[0].components[0].port",
        70000,
        r"components\[0\]\.port: expected a whole number from 1 to 65535",
    ),
    (
        "unknown kind",
        "dev",
        "sourceRepositories[2].kind",
        "mobile",
        r"sourceRepositories\[2\]\.kind: expected one of services, frontend, tests, docs, got 'mobile'",
    ),
    (
        "duplicate repository",
        "dev",
        "sourceRepositories[1].name",
        "dreamscape-services",
        r"sourceRepositories\[1\]: duplicate 'dreamscape-services'",
    ),
    (
        "duplicate component in a repository",
        "dev",
        "sourceRepositories[0].components[1].name",
        "auth-service",
        r"sourceRepositories\[0\]\.components\[1\]: duplicate 'auth-service'",
    ),
    (
        "duplicate component across deployable repositories",
        "dev",
        "sourceRepositories[1].components[0].name",
        "auth-service",
        r"sourceRepositories\[1\]\.components\[0\]\.name: duplicate 'auth-service', "
        r"already a component of dreamscape-services",
    ),
    (
        "component name with a shell metacharacter",
        "dev",
        "sourceRepositories[0].components[0].name",
        "auth;id",
        r"components\[0\]\.name: expected a component name",
    ),
    (
        "deployable component without a port",
        "dev",
        "sourceRepositories[0].components[0].port",
        ...,
        r"components\[0\]\.port: required, missing \(the repository is deployable\)",
    ),
    (
        "subnet outside its VCN",
        "dev",
        "oci.subnetCidr",
        "10.99.1.0/24",
        r"oci\.subnetCidr: expected a range inside oci\.vcnCidr 10\.10\.0\.0/16",
    ),
    (
        "SSH CIDR that is not a CIDR",
        "dev",
        "oci.sshAllowedCidrs",
        ["203.0.113.7"],
        r"oci\.sshAllowedCidrs\[0\]: expected an IPv4 or IPv6 CIDR",
    ),
    (
        "CIDR with host bits",
        "dev",
        "oci.vcnCidr",
        "10.10.0.1/16",
        r"oci\.vcnCidr: expected an IPv4 CIDR from /16 to /30",
    ),
    (
        "VCN larger than OCI allows",
        "dev",
        "oci.vcnCidr",
        "10.0.0.0/8",
        r"oci\.vcnCidr: expected an IPv4 CIDR from /16 to /30",
    ),
    (
        "VCN smaller than OCI allows",
        "dev",
        "oci.vcnCidr",
        "10.10.0.0/31",
        r"oci\.vcnCidr: expected an IPv4 CIDR from /16",
    ),
    ("IPv6 VCN", "dev", "oci.vcnCidr", "fd00:10::/48", r"oci\.vcnCidr: expected an IPv4 CIDR from /16 to /30"),
    (
        "subnet smaller than OCI allows",
        "dev",
        "oci.subnetCidr",
        "10.10.1.0/31",
        r"oci\.subnetCidr: expected an IPv4 CIDR",
    ),
    (
        "subnet without room for the VM and the bastion's endpoint",
        "dev",
        "oci.subnetCidr",
        "10.10.1.0/30",
        r"oci\.subnetCidr: 10\.10\.1\.0/30 is too small: .* use /29 or larger",
    ),
    (
        "admin key that is not a key",
        "dev",
        "oci.adminSshKeys",
        ["hunter2"],
        r"oci\.adminSshKeys\[0\]: expected an OpenSSH public key line",
    ),
    (
        "environment outside the three",
        "dev",
        "environment",
        "qa",
        r"dreamscape-infra:environment: expected one of dev, staging, production",
    ),
    (
        "unknown token scope",
        "dev",
        "dispatchTokenScope",
        "enterprise",
        r"dispatchTokenScope: expected one of repository, organization",
    ),
    (
        "unknown secret layout",
        "dev",
        "deploySecretLayout",
        "vault",
        r"deploySecretLayout: expected one of repository, environment",
    ),
    ("missing required key", "dev", "oci.compartmentId", ..., r"oci\.compartmentId: required, missing"),
    (
        "unknown OCI deploy auth mode",
        "dev",
        "ociDeployAuth",
        "oidc",
        r"dreamscape-infra:ociDeployAuth: expected one of workloadIdentity, apiKey, got 'oidc'",
    ),
    (
        "identity domain URL that is not one",
        "dev",
        "oci.identityDomainUrl",
        "https://login.example.com",
        r"oci\.identityDomainUrl: expected an identity domain URL like https://idcs-<id>\.identity\.oraclecloud\.com",
    ),
    (
        "identity domain URL with a path",
        "staging",
        "oci.identityDomainUrl",
        "https://idcs-0a1b2c.identity.oraclecloud.com/ui/v1/signin",
        r"oci\.identityDomainUrl: expected an identity domain URL",
    ),
    (
        "workload identity without its identity domain",
        "staging",
        "oci.identityDomainUrl",
        ...,
        r"oci\.identityDomainUrl: required with ociDeployAuth: workloadIdentity; the URL of the identity domain",
    ),
    (
        "API key mode without the CI user's address",
        "dev",
        "ociDeployAuth",
        "apiKey",
        r"oci\.ciUserEmail: required with ociDeployAuth: apiKey; an e-mail address for the environment's CI user",
    ),
    (
        "CI user's address in workload identity mode",
        "production",
        "oci.ciUserEmail",
        "ci@dreamscape.example",
        r"oci\.ciUserEmail: used only with ociDeployAuth: apiKey, and this stack has ociDeployAuth: workloadIdentity",
    ),
    (
        "CI user's address that is not one",
        "dev",
        "oci.ciUserEmail",
        "dreamscape-ci",
        r"oci\.ciUserEmail: expected an e-mail address, got 'dreamscape-ci'",
    ),
    ("bad owner", "dev", "githubOwner", "-bad owner", r"githubOwner: expected a GitHub user or organization login"),
    (
        "wiring owner without token",
        "production",
        "dispatchToken",
        ...,
        r"dispatchToken: required on the stack that owns the shared wiring",
    ),
    (
        "wiring owner without the pipeline token",
        "production",
        "pipelineToken",
        ...,
        r"pipelineToken: required on the stack that owns the shared wiring \(production\): a token that reads "
        r"the source repositories and posts their commit statuses",
    ),
    (
        "edge domain not a DNS name",
        "dev",
        "edge",
        {"domain": "Dreamscape_App"},
        r"edge\.domain: expected a lowercase DNS name",
    ),
    (
        "edge ACME directory not https",
        "dev",
        "edge",
        {"domain": "dev.dreamscape.example", "acmeDirectory": "http://acme.example/dir"},
        r"edge\.acmeDirectory: expected an ACME directory URL",
    ),
    (
        "edge ACME account without a domain",
        "dev",
        "edge",
        {"acmeEmail": "ops@dreamscape.example"},
        r"edge\.domain: required with",
    ),
    (
        "env not a map",
        "dev",
        "sourceRepositories[0].components[0].env",
        ["LOG_LEVEL=info"],
        r"components\[0\]\.env: expected a map of NAME: value",
    ),
    (
        "env name lower case",
        "dev",
        "sourceRepositories[0].components[0].env",
        {"log_level": "x"},
        r"env\.log_level: not a variable name",
    ),
    (
        "env PORT",
        "dev",
        "sourceRepositories[0].components[0].env",
        {"PORT": "1"},
        r"env\.PORT: set by the deploy from the component's port",
    ),
    (
        "env names a secret",
        "dev",
        "sourceRepositories[0].components[0].env",
        {"DB_PASSWORD": "x"},
        r"env\.DB_PASSWORD: names a secret",
    ),
    (
        "env holds a token",
        "dev",
        "sourceRepositories[0].components[0].env",
        {"GH": "ghp_" + "a" * 36},
        r"env\.GH: holds a credential",
    ),
    (
        "env value a number",
        "dev",
        "sourceRepositories[0].components[0].env",
        {"WORKERS": 4},
        r"env\.WORKERS: expected a string \(quote numbers and booleans\)",
    ),
    (
        "env value two lines",
        "dev",
        "sourceRepositories[0].components[0].env",
        {"A": "x\ny"},
        r"env\.A: at most 4096 characters on one line",
    ),
    (
        "volume not a path",
        "dev",
        "sourceRepositories[0].components[0].volumes",
        {"data": "data"},
        r"volumes\.data: expected an absolute path inside the container",
    ),
    (
        "volume bad name",
        "dev",
        "sourceRepositories[0].components[0].volumes",
        {"Data": "/data"},
        r"volumes\.Data: not a volume name",
    ),
    (
        "env on a component that never runs",
        "dev",
        "sourceRepositories[2].components[0].env",
        {"A": "b"},
        r"sourceRepositories\[2\]\.components\[0\]\.env: dreamscape-tests is not deployable",
    ),
    (
        "componentEnv of no component",
        "dev",
        "componentEnv",
        {"billing": {"A": "b"}},
        r"componentEnv\.billing: not a component of a deployable repository",
    ),
    (
        "componentEnv names a secret",
        "dev",
        "componentEnv",
        {"auth-service": {"API_TOKEN": "b"}},
        r"componentEnv\.auth-service\.API_TOKEN: names a secret",
    ),
    (
        "secret of no kind",
        "dev",
        "secrets",
        {"JWT_SIGNING_KEY": "random"},
        r"secrets\.JWT_SIGNING_KEY: expected one of",
    ),
    ("secret bad name", "dev", "secrets", {"jwt": "generated"}, r"secrets\.jwt: not a variable name"),
    (
        "config secret without its value",
        "dev",
        "secrets",
        {"JWT_SIGNING_KEY": "generated", "POSTGRES_PASSWORD": "config"},
        r"secretValues\.POSTGRES_PASSWORD: required, missing; pulumi config set --secret --path "
        r"'secretValues\.POSTGRES_PASSWORD' <value>",
    ),
    (
        "component names an undeclared secret",
        "dev",
        "sourceRepositories[0].components[0].secrets",
        ["STRIPE_API_KEY"],
        r"components\[0\]\.secrets\[0\]: STRIPE_API_KEY is not one of the environment's secrets; declare it",
    ),
    (
        "component names an unknown accessory",
        "dev",
        "sourceRepositories[0].components[0].accessories",
        ["redis"],
        r"components\[0\]\.accessories\[0\]: no accessory 'redis' \(accessories: postgres\)",
    ),
    (
        "secrets on a component that never runs",
        "dev",
        "sourceRepositories[2].components[0].secrets",
        ["JWT_SIGNING_KEY"],
        r"sourceRepositories\[2\]\.components\[0\]\.secrets: dreamscape-tests is not deployable",
    ),
    (
        "accessory image by tag only",
        "dev",
        "accessories[0].image",
        "docker.io/library/postgres:17-alpine",
        r"accessories\[0\]\.image: expected an image pinned by digest",
    ),
    (
        "accessory image without its registry",
        "dev",
        "accessories[0].image",
        "postgres@sha256:" + "a" * 64,
        r"accessories\[0\]\.image: expected an image pinned by digest, registry included",
    ),
    (
        "accessory named like a component",
        "dev",
        "accessories[0].name",
        "gateway",
        r"accessories\[0\]\.name: 'gateway' is also a component's name",
    ),
    (
        "accessory names an undeclared secret",
        "dev",
        "accessories[0].secrets",
        ["REDIS_PASSWORD"],
        r"accessories\[0\]\.secrets\[0\]: REDIS_PASSWORD is not one of the environment's secrets",
    ),
    (
        "accessory health check on two lines",
        "dev",
        "accessories[0].healthCheck",
        "true\nfalse",
        r"accessories\[0\]\.healthCheck: expected a one-line shell command",
    ),
    ("accessory unknown key", "dev", "accessories[0].ports", ["5432:5432"], r"accessories\[0\]\.ports: unknown key"),
]


@pytest.mark.parametrize(("what", "stack", "path", "value", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_the_key(what: str, stack: str, path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(stack, edit(raw(stack), path, value))


def test_stack_name_outside_the_environments() -> None:
    with pytest.raises(
        ConfigError,
        match=r"environment: expected one of dev, staging, production \(it defaults to the stack name\), got 'qa'",
    ):
        parse("qa", raw("dev"))


def test_stack_name_can_map_to_an_environment() -> None:
    s = parse("dev-eu", edit(raw("dev"), "environment", "dev"))
    assert (s.stack, s.environment) == ("dev-eu", "dev")


def test_second_stack_claiming_the_wiring() -> None:
    dev = edit(raw("dev"), "wiringStack", "dev")
    dev["dispatchToken"] = dev["pipelineToken"] = "[secret]"
    siblings = {"staging": raw("staging"), "production": raw("production")}
    with pytest.raises(
        ConfigError,
        match=r"wiringStack: stacks disagree on who owns the shared wiring "
        r"\(Pulumi\.dev\.yaml says dev, Pulumi\.production\.yaml says production",
    ):
        parse("dev", dev, siblings)


def test_overlapping_networks_across_stacks() -> None:
    staging = edit(raw("staging"), "oci.vcnCidr", "10.10.128.0/17")
    staging = edit(staging, "oci.subnetCidr", "10.10.129.0/24")
    with pytest.raises(ConfigError, match=r"oci\.vcnCidr: 10\.10\.128\.0/17 overlaps stack dev's 10\.10\.0\.0/16"):
        parse("staging", staging, {"dev": raw("dev"), "production": raw("production")})


def test_oci_deploy_auth_defaults_to_workload_identity() -> None:
    config = raw("dev")
    config.pop("ociDeployAuth", None)
    s = parse("dev", config)
    assert s.oci_deploy_auth == "workloadIdentity"
    assert s.oci.identity_domain_url == "https://idcs-dreamscapedev.identity.oraclecloud.com"
    assert s.oci.ci_user_email is None


def as_api_key(config: dict[str, Any], email: str = "dreamscape-ci@example.com") -> dict[str, Any]:
    """A stack's config in apiKey mode: the CI user's address instead of the identity domain."""
    config = edit(edit(config, "ociDeployAuth", "apiKey"), "oci.identityDomainUrl", ...)
    return edit(config, "oci.ciUserEmail", email)


def test_api_key_mode_takes_the_ci_users_address_and_refuses_an_identity_domain() -> None:
    s = parse("staging", as_api_key(raw("staging")))
    assert (s.oci_deploy_auth, s.oci.ci_user_email, s.oci.identity_domain_url) == (
        "apiKey",
        "dreamscape-ci@example.com",
        None,
    )
    with_domain = edit(as_api_key(raw("staging")), "oci.identityDomainUrl", "https://idcs-abc.identity.oraclecloud.com")
    with pytest.raises(
        ConfigError,
        match=r"oci\.identityDomainUrl: used only with ociDeployAuth: workloadIdentity, and this stack has "
        r"ociDeployAuth: apiKey; remove it",
    ):
        parse("staging", with_domain)


@pytest.mark.parametrize(
    "url",
    [
        "https://idcs-0a1b2c3d4e5f60718293a4b5c6d7e8f9.identity.oraclecloud.com",
        "https://idcs-0a1b2c3d4e5f60718293a4b5c6d7e8f9.identity.oraclecloud.com:443",
    ],
)
def test_identity_domain_urls_as_oci_shows_them(url: str) -> None:
    assert parse("dev", edit(raw("dev"), "oci.identityDomainUrl", url)).oci.identity_domain_url == url


def test_the_oci_region_is_checked_when_given() -> None:
    for region in ("eu-frankfurt-1", "us-ashburn-1", "ap-chuncheon-1", "us-sanjose-1"):
        assert settings.parse(raw("dev"), "dev", oci_region=region).oci_region == region
    for region in ("Frankfurt", "eu-frankfurt", "eu_frankfurt_1", "FRA"):
        with pytest.raises(ConfigError, match=r"^oci:region: expected an OCI region identifier like eu-frankfurt-1"):
            settings.parse(raw("dev"), "dev", oci_region=region)
    # A government realm has endpoints of its own, which the deploy job does not know.
    for region in ("uk-gov-london-1", "us-gov-ashburn-1"):
        with pytest.raises(ConfigError, match=rf"^oci:region: {region} is outside OCI's commercial realm"):
            settings.parse(raw("dev"), "dev", oci_region=region)


def test_the_program_needs_the_oci_region() -> None:
    """The deploy job calls the bastion in the stack's region: `pulumi up` without it stops first."""
    config, secret_keys = offline.stack_config("dev")
    del config["oci:region"]
    with pytest.raises(ConfigError, match=r"^oci:region: required, missing; the region of the stack's resources"):
        offline.run("dev", config=config, secret_keys=secret_keys)


def test_stacks_disagreeing_on_the_oci_deploy_auth() -> None:
    siblings = {"staging": raw("staging"), "production": raw("production")}
    with pytest.raises(
        ConfigError,
        match=r"ociDeployAuth: stacks disagree on how the deploy job authenticates to OCI \(Pulumi\.dev\.yaml says "
        r"apiKey, Pulumi\.production\.yaml says workloadIdentity, Pulumi\.staging\.yaml says workloadIdentity\)",
    ):
        parse("dev", as_api_key(raw("dev")), siblings)
    every = {name: as_api_key(raw(name), f"ci-{name}@example.com") for name in ("staging", "production")}
    assert parse("dev", as_api_key(raw("dev")), every).oci_deploy_auth == "apiKey"


@pytest.mark.parametrize(
    "url",
    [
        "https://idcs-dreamscapedev.identity.oraclecloud.com",
        "https://idcs-dreamscapedev.identity.oraclecloud.com:443",
    ],
)
def test_two_environments_sharing_an_identity_domain(url: str) -> None:
    """An identity domain holds one trust for GitHub's token issuer: one domain per environment."""
    staging = edit(raw("staging"), "oci.identityDomainUrl", url)
    with pytest.raises(
        ConfigError,
        match=r"oci\.identityDomainUrl: .* is stack dev's identity domain too; an identity domain holds one trust "
        r"for GitHub's token issuer",
    ):
        parse("staging", staging, {"dev": raw("dev"), "production": raw("production")})
    # The API key fallback has no trust, and no identity domain at all.
    api = {name: as_api_key(raw(name), f"ci-{name}@example.com") for name in ("dev", "production")}
    assert parse("staging", as_api_key(staging), api).oci.identity_domain_url is None


def test_one_message_no_traceback_text() -> None:
    with pytest.raises(ConfigError) as error:
        parse("dev", edit(raw("dev"), "oci.ocpus", True))
    assert str(error.value).count("\n") == 0
    assert str(error.value).startswith("dreamscape-infra:oci.ocpus:")


def test_a_domain_serves_the_one_component_published_on_80() -> None:
    config = edit(raw("dev"), "edge", {"domain": "dev.dreamscape.example"})
    assert parse("dev", config).edge.domain == "dev.dreamscape.example"
    assert parse("dev", config).edge.url("192.0.2.1") == "https://dev.dreamscape.example"
    assert parse("dev", raw("dev")).edge.url("192.0.2.1") == "http://192.0.2.1"
    [(i, j)] = [
        (i, j)
        for i, repo in enumerate(config["sourceRepositories"])
        for j, component in enumerate(repo["components"])
        if component.get("hostPort") == 80
    ]
    unpublished = edit(config, f"sourceRepositories[{i}].components[{j}].hostPort", ...)
    with pytest.raises(ConfigError, match=r"published now: none"):
        parse("dev", unpublished)
    too_long = ".".join(["a" * 63] * 4)  # 255 characters, each label valid
    with pytest.raises(ConfigError, match=r"edge\.domain: longer than DNS allows"):
        parse("dev", edit(config, "edge.domain", too_long))


def test_the_shipped_components_get_the_signing_key_and_the_accessorys_password() -> None:
    s = parse("production", raw("production"))
    assert s.secrets == (("JWT_SIGNING_KEY", "generated"), ("POSTGRES_PASSWORD", "generated"))
    assert [a.name for a in s.accessories] == ["postgres"]
    assert s.accessories[0].image.startswith("docker.io/library/postgres:17-alpine@sha256:")
    assert s.secrets_of("auth-service") == s.secrets_of("user-service") == ("JWT_SIGNING_KEY", "POSTGRES_PASSWORD")
    assert s.secrets_of("postgres") == ("POSTGRES_PASSWORD",)
    assert s.secrets_of("gateway") == ()
    assert s.unused == []


def test_a_variable_cannot_take_the_name_of_a_secrets_path() -> None:
    config = raw("dev")
    config["secrets"]["DATABASE_URL"] = "generated"
    services = config["sourceRepositories"][0]["components"][0]
    services["secrets"] = ["DATABASE_URL"]
    services["env"] = {"DATABASE_URL_FILE": "/etc/db"}
    with pytest.raises(ConfigError, match=r"components\[0\]\.env\.DATABASE_URL_FILE: set by the deploy"):
        parse("dev", config)


def test_what_nothing_names_is_reported_unused() -> None:
    config = raw("dev")
    config["secrets"]["SPARE_KEY"] = "generated"
    for component in config["sourceRepositories"][0]["components"]:
        component.pop("accessories")
    # The accessory still gets its password: only the spare key and the accessory are unnamed.
    assert parse("dev", config).unused == ["secrets.SPARE_KEY", "accessories: postgres"]


SECRET_VALUE = "sk_live_0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "encrypted", "message"),
    [
        (json.dumps({"STRIPE_API_KEY": SECRET_VALUE}), False, r"secretValues: set in plain text; remove it"),
        ("not json " + SECRET_VALUE, True, r"secretValues: expected a map of NAME: value"),
        (json.dumps({"stripe": SECRET_VALUE}), True, r"secretValues\.stripe: not a variable name"),
        ('{"STRIPE_API_KEY": 5}', True, r"secretValues\.STRIPE_API_KEY: expected a non-empty string"),
        (
            json.dumps({"STRIPE_API_KEY": "x" * 16385}),
            True,
            r"secretValues\.STRIPE_API_KEY: 16385 bytes; at most 16384",
        ),
        (
            "{" + ", ".join(f'"K{i}": "{"x" * 16000}"' for i in range(3)) + "}",
            True,
            r"secretValues: 48000 bytes in all; at most 40960",
        ),
    ],
)
def test_secret_values_are_checked_by_name_and_size_never_shown(text: str, encrypted: bool, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        settings.secret_values(text, encrypted)
    assert SECRET_VALUE not in str(raised.value)


def test_a_value_for_a_generated_secret_is_refused() -> None:
    values = settings.secret_values(json.dumps({"JWT_SIGNING_KEY": SECRET_VALUE}))
    with pytest.raises(ConfigError, match=r"secretValues\.JWT_SIGNING_KEY: not a `config` secret") as raised:
        settings.parse(raw("dev"), "dev", secret_values=values)
    assert SECRET_VALUE not in str(raised.value)
