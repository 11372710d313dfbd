"""Stack configuration, read once and validated into typed settings.

This is the only module that reads `pulumi.Config`. Components take the dataclasses below,
so tests build them directly. Validation is strict: an unknown key, a wrong type or an
impossible value stops the program before any resource is registered, with one message
that names the key path (`dreamscape-infra:oci.vcnCidr`) and what was expected.

Project-wide defaults live in `Pulumi.yaml`, per-environment values in `Pulumi.<stack>.yaml`.
Some checks look across stacks, since no single stack can see them otherwise: exactly one
environment owns the shared wiring, every environment's deploy job authenticates to OCI the
same way (`ociDeployAuth`, which the one central pipeline grants for), no two environments
share an identity domain for workload identity, no two environments' networks overlap, and
the environments together stay within Oracle's Always Free allowance unless paid usage is
accepted (`allowPaidShapes`). They read the sibling stack files next to `Pulumi.yaml`
(plain values only, never secrets).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pulumi
import yaml

import ci.deploy
import ci.oci
from components import delivery, rules
from components.environment import deploy_program, shapes
from components.workflows import credentials

PROJECT = "dreamscape-infra"
PROJECT_DIR = Path(__file__).resolve().parent.parent


VM = "vm"
CONTAINER_INSTANCES = "containerInstances"
TARGETS = (VM, CONTAINER_INSTANCES)
"""`oci.target`: what runs an environment's containers (docs/environment.md compares them)."""

WEB_PORTS = (80, 443)
"""The ports each environment's network opens to the internet: the edge proxy's HTTP and HTTPS."""
HTTP_PORT = 80
"""The one port a component publishes on (`hostPort`); with `edge.domain`, 443 serves it over HTTPS."""


class ConfigError(pulumi.RunError):
    """Bad stack configuration. A RunError, so `pulumi up` prints it without a traceback."""


# --- typed settings ------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    name: str
    port: int | None = None
    """Container port; required for a deployable repository's components."""
    health_path: str | None = None
    """HTTP path the container answers on when healthy."""
    host_port: int | None = None
    """Published on the VM at this port (80/443 are open to the internet); None: not published."""
    env: tuple[tuple[str, str], ...] = ()
    """Plain environment variables (name, value), sorted: the project's `env`, then the stack's
    `componentEnv` over it. Never secrets."""
    volumes: tuple[tuple[str, str], ...] = ()
    """Named volumes (name, container path), kept across deploys and rollbacks."""
    secrets: tuple[str, ...] = ()
    """Names of the environment's secrets (`secrets`) it gets as files, `<NAME>_FILE` pointing at each."""
    accessories: tuple[str, ...] = ()
    """Accessories it reaches: their network, and their secrets as its own."""

    def volume(self, name: str) -> str:
        """The compose volume of one of its volumes: `<component>-<name>`."""
        return f"{self.name}-{name}"


@dataclass(frozen=True)
class Accessory:
    """A stateful service beside the components (a database, a cache): started by the first
    deploy, then never recreated or stopped by a deploy or a rollback."""

    name: str
    image: str
    """Pinned by digest: `registry/path:tag@sha256:<64 hex>`."""
    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()
    """Its secrets; every component that names the accessory gets them too."""
    volumes: tuple[tuple[str, str], ...] = ()
    health_check: str | None = None
    """A shell command run in the container; exit 0 is healthy."""

    def volume(self, name: str) -> str:
        return f"{self.name}-{name}"


@dataclass(frozen=True)
class SourceRepository:
    name: str
    kind: str
    deployable: bool
    build_command: str
    test_command: str
    components: tuple[Component, ...]
    artifacts: tuple[str, ...] = ()
    """Paths (globs allowed) inside a component's folder that the pipeline keeps as artifacts."""

    @property
    def event_type(self) -> str:
        return rules.event_type(self.kind)

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)


SKIP_MARKERS = ("[skip ci]", "[ci skip]", "[no ci]", "[skip actions]", "[actions skip]")
"""What GitHub reads in a pushed commit's message to start no workflow for that push."""


@dataclass(frozen=True)
class Commit:
    message: str
    """Always carries a skip marker: the program's own commits start no pipeline."""
    author_name: str | None
    """None (with `author_email`): GitHub records the credential's identity, and signs the
    commit when that identity is a GitHub App."""
    author_email: str | None

    @classmethod
    def with_skip_marker(cls, message: str, author_name: str | None, author_email: str | None) -> Commit:
        """The configured message, with `[skip ci]` added when it names no skip marker.

        The provider's token is not a workflow's GITHUB_TOKEN, so its pushes start workflows:
        without a marker, writing a trigger to `main` would start a production deploy, and every
        file written to the infra repository's default branch would start another apply.
        """
        if not any(marker in message for marker in SKIP_MARKERS):
            message = f"{message.rstrip()} {SKIP_MARKERS[0]}"
        return cls(message, author_name, author_email)


@dataclass(frozen=True)
class Deploy:
    """What the pipeline sends the deploy program with every call (its options, same bounds)."""

    lock_wait_seconds: int
    """`--lock-wait`: how long a deploy waits for another one's lock."""
    wait_timeout_seconds: int
    """`--wait-timeout`: how long a release may take to become healthy."""
    keep_releases: int
    """`--keep`: releases kept on the VM."""


LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


@dataclass(frozen=True)
class Edge:
    """HTTPS at the VM's edge proxy: the environment's domain and where its certificate comes from."""

    domain: str | None = None
    """The DNS name served over HTTPS (its A record: the environment's reserved IP); None: plain HTTP on the IP."""
    acme_directory: str = LETS_ENCRYPT
    """The ACME server the edge gets the certificate from (Let's Encrypt's production directory by default)."""
    acme_email: str | None = None
    """The ACME account's contact: where the CA writes about expiring or revoked certificates."""

    def url(self, public_ip: str) -> str:
        """The environment's address: `https://<domain>`, or `http://<ip>` without a domain."""
        return f"https://{self.domain}" if self.domain else f"http://{public_ip}"


@dataclass(frozen=True)
class OciSettings:
    compartment_id: str
    shape: str
    ocpus: float
    memory_gbs: float
    boot_volume_gbs: int
    vcn_cidr: str
    subnet_cidr: str
    admin_ssh_keys: tuple[str, ...]
    ssh_allowed_cidrs: tuple[str, ...] = ()
    """Sources allowed on 22 besides the bastion; none by default."""
    bastion_client_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    """Who may connect to the bastion's sessions (OCI's client CIDR block allowlist)."""
    bastion_session_ttl_seconds: int = 1800
    """The longest a bastion session may stay open (OCI accepts 1800 to 10800)."""
    boot_volume_backups: int = 0
    """Weekly backups of the boot volume kept (its Docker volumes included); 0: none."""
    image_id: str | None = None
    """Pinned image OCID; None: the newest Canonical Ubuntu `ubuntu_version` image for the shape."""
    availability_domain: str | None = None
    """None: the compartment's first availability domain."""
    ubuntu_version: str = "24.04"
    """Canonical Ubuntu release looked up when no image is pinned."""
    identity_domain_url: str | None = None
    """`ociDeployAuth: workloadIdentity`: the identity domain holding the deploy job's service
    user, OAuth client and trust for the GitHub issuer (one such trust per domain)."""
    ci_user_email: str | None = None
    """`ociDeployAuth: apiKey`: the e-mail address of the dedicated CI user (identity domains
    require a primary e-mail address unless told otherwise)."""
    target: str = "vm"
    """What runs the containers: `vm` (one VM, deploys over SSH through the bastion) or
    `containerInstances` (a container instance per release behind a load balancer)."""

    @property
    def container_instances(self) -> bool:
        return self.target == CONTAINER_INSTANCES


@dataclass(frozen=True)
class Protection:
    reviewers: tuple[str, ...] = ()
    """GitHub user logins or `org/team` slugs that must approve a deploy."""
    wait_timer: int = 0
    """Minutes to wait before a deploy job starts (0 to 43200)."""
    waive_reviewers: bool = False
    """Production without reviewers, on purpose (production is reviewed by default)."""


ACTOR_PATTERN = r"^(role:(admin|maintain)|team:[A-Za-z0-9._-]+|user:[A-Za-z0-9][A-Za-z0-9-]{0,38}|app:[0-9]{1,12})$"
"""A ruleset bypass actor: a repository role, a team of githubOwner, a user, or a GitHub App id."""


@dataclass(frozen=True)
class RepositoryRules:
    """The rulesets the wiring stack puts on every source repository and the infra repository."""

    enabled: bool = True
    approvals: int = 1
    """Approving reviews a pull request into main or develop needs."""
    production_pushers: tuple[str, ...] = ("role:admin",)
    """Who may create or update a branch that deploys to production without a review (hotfix/*)."""
    pulumi_bypass: tuple[str, ...] = ("role:admin",)
    """The identity `pulumi up` runs with: it commits the files it writes past the review rule."""
    allow_unreviewed_production: bool = False
    """The documented opt-out: rules that let someone outside `production_pushers` reach production unreviewed."""


@dataclass(frozen=True)
class Settings:
    stack: str
    environment: str
    github_owner: str
    infra_repository: str
    wiring_stack: str
    dispatch_token_scope: str
    deploy_secret_layout: str
    commit: Commit
    registry: str
    scan_severity: str
    arm_runner_label: str | None
    source_repositories: tuple[SourceRepository, ...]
    deploy: Deploy
    oci: OciSettings
    protection: Protection
    allow_paid_shapes: bool
    edge: Edge = field(default_factory=Edge)
    """HTTPS for the environment's domain, when it has one (the VM's edge proxy)."""
    infra_ruleset: bool = True
    """Rulesets that keep every identity but admins and maintainers from writing the infra repository's refs."""
    artifact_retention_days: int = 7
    """Days GitHub keeps each run's test reports."""
    create_missing_branches: bool = False
    """Create a source repository's missing `main`/`develop` from its default branch (else refuse)."""
    actions_settings: bool = True
    """Manage each wired repository's Actions settings: a read-only workflow token, and only the
    pinned actions of the rendered workflows allowed to run."""
    file_delivery: str = delivery.DIRECT
    """`direct`: files are committed to their target branches; `pullRequest`: to the program's own
    branches, proposed in one pull request per repository and target branch (components/delivery.py)."""
    oci_deploy_auth: str = ci.oci.WORKLOAD_IDENTITY
    """How the deploy job authenticates to OCI: `workloadIdentity` (its GitHub OIDC token exchanged
    for a short-lived OCI session token) or `apiKey` (a CI user's API key, the fallback)."""
    oci_region: str | None = None
    """The OCI provider's region (`oci:region`): where the deploy job calls the bastion."""
    dispatch_token: pulumi.Output[str] | None = field(default=None, compare=False)
    """Secret, held by every source repository: may only create dispatch events on the infra
    repository. Required on the stack that owns the wiring."""
    pipeline_token: pulumi.Output[str] | None = field(default=None, compare=False)
    """Secret, held by the infra repository only: reads the source repositories and posts their
    commit statuses. Required on the stack that owns the wiring."""
    repository_rules: RepositoryRules = field(default_factory=RepositoryRules)
    github_auth: str = "token"
    """`token`: the two tokens above; `app`: two GitHub Apps, a token minted per run."""
    dispatch_app_client_id: str | None = None
    pipeline_app_client_id: str | None = None
    dispatch_app_private_key: pulumi.Output[str] | None = field(default=None, compare=False)
    """App mode: the dispatch App's private key, held by every source repository."""
    pipeline_app_private_key: pulumi.Output[str] | None = field(default=None, compare=False)
    """App mode: the pipeline App's private key, held by the infra repository only."""
    secrets: tuple[tuple[str, str], ...] = ()
    """The environment's secrets for its containers: (name, `generated` or `config`), sorted."""
    secret_values: Mapping[str, pulumi.Output[str]] = field(default_factory=dict, compare=False)
    """The stack's `secretValues`: each `config` secret's value (secret Outputs)."""
    accessories: tuple[Accessory, ...] = ()

    @property
    def unused(self) -> list[str]:
        """Declared secrets and accessories that nothing names: made and started all the same."""
        items = (*self.deployed_components, *self.accessories)
        secrets = {n for item in items for n in granted_secrets(item, self.accessories)}
        named = {a for c in self.deployed_components for a in c.accessories}
        return [f"secrets.{n}" for n, _ in self.secrets if n not in secrets] + [
            f"accessories: {a.name}" for a in self.accessories if a.name not in named
        ]

    @property
    def deployed_components(self) -> tuple[Component, ...]:
        return tuple(c for r in self.source_repositories if r.deployable for c in r.components)

    def secrets_of(self, name: str) -> tuple[str, ...]:
        """The secrets a deployed component or an accessory gets, sorted."""
        items = (*self.deployed_components, *self.accessories)
        return granted_secrets(next(i for i in items if i.name == name), self.accessories)

    @property
    def auth(self) -> credentials.Auth:
        return credentials.Auth(self.github_auth, self.dispatch_app_client_id, self.pipeline_app_client_id)

    @property
    def dispatch_secret(self) -> pulumi.Output[str] | None:
        """The value of the secret the source repositories hold (the token, or the App's key)."""
        return self.dispatch_app_private_key if self.auth.apps else self.dispatch_token

    @property
    def pipeline_secret(self) -> pulumi.Output[str] | None:
        """The value of the secret the infra repository holds (the token, or the App's key)."""
        return self.pipeline_app_private_key if self.auth.apps else self.pipeline_token

    @property
    def owns_wiring(self) -> bool:
        return self.environment == self.wiring_stack


def granted_secrets(item: Component | Accessory, accessories: tuple[Accessory, ...]) -> tuple[str, ...]:
    """The secrets a component or an accessory gets, sorted: its own, and a component's accessories'."""
    names = set(item.secrets)
    for accessory in accessories:
        if accessory.name in getattr(item, "accessories", ()):
            names |= set(accessory.secrets)
    return tuple(sorted(names))


# --- a small strict schema -----------------------------------------------------------------

Check = Callable[[Any, str], Any]


def _fail(path: str, expected: str, value: Any) -> ConfigError:
    shown = json.dumps(value) if not isinstance(value, str) else repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ConfigError(f"{PROJECT}:{path}: expected {expected}, got {shown}")


def _string(pattern: str | None = None, what: str = "a string", choices: tuple[str, ...] = ()) -> Check:
    def check(value: Any, path: str) -> str:
        if choices:
            if value not in choices:
                raise _fail(path, "one of " + ", ".join(choices), value)
            return value
        if not isinstance(value, str) or not value.strip():
            raise _fail(path, what, value)
        if pattern is not None and not rules._matches(pattern, value):
            raise _fail(path, what, value)
        return value

    return check


def _integer(low: int, high: int) -> Check:
    def check(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _fail(path, f"a whole number from {low} to {high}", value)
        return value

    return check


def _host_port(value: Any, path: str) -> int:
    """A component's published port: HTTP on 80. The edge proxy serves HTTPS on 443 itself, for
    the component on 80, once `edge.domain` is set (plain HTTP on 443 is no web server's convention)."""
    if isinstance(value, bool) or value != HTTP_PORT:
        raise _fail(path, f"{HTTP_PORT} (HTTP; set edge.domain for HTTPS on 443)", value)
    return value


def _number(low: float, high: float) -> Check:
    def check(value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise _fail(path, f"a number from {low:g} to {high:g}", value)
        return float(value)

    return check


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "true or false", value)
    return value


def _cidr(value: Any, path: str) -> str:
    try:
        if not isinstance(value, str) or "/" not in value:
            raise ValueError
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise _fail(path, "an IPv4 or IPv6 CIDR like 10.0.0.0/16 (host bits zero)", value) from None


VCN_PREFIXES = (16, 30)
"""The IPv4 prefix lengths OCI accepts for a VCN's and a subnet's CIDR block: /16 to /30."""


BASTION_CLIENT_CIDRS_MAX = 20
"""OCI accepts at most 20 client CIDR blocks per bastion."""
BASTION_SESSION_TTL_SECONDS = (1800, 10800)
"""The session TTL bounds OCI accepts for a bastion: 30 minutes to 3 hours."""
SUBNET_MIN_ADDRESSES = 8
"""A /29: OCI keeps a subnet's first two and last addresses, and the subnet holds the VM and the
bastion's private endpoint."""


def _oci_cidr(value: Any, path: str) -> str:
    """A VCN or subnet CIDR block as OCI's API accepts it: IPv4, /16 to /30, host bits zero."""
    low, high = VCN_PREFIXES
    what = f"an IPv4 CIDR from /{low} to /{high} like 10.0.0.0/16 (host bits zero; OCI's limits)"
    try:
        if not isinstance(value, str) or "/" not in value:
            raise ValueError
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise _fail(path, what, value) from None
    if network.version != 4 or not low <= network.prefixlen <= high:
        raise _fail(path, what, value)
    return str(network)


def _ssh_public_key(value: Any, path: str) -> str:
    parts = value.split() if isinstance(value, str) else []
    if len(parts) < 2 or parts[0] not in ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256") or "\n" in value:
        raise _fail(path, "an OpenSSH public key line (ssh-ed25519 AAAA... comment)", value)
    return value.strip()


def _artifact_path(value: Any, path: str) -> str:
    what = "a relative path inside the component's folder, like dist or reports/*.xml"
    if not isinstance(value, str) or not rules._matches(ARTIFACT_PATH_PATTERN, value):
        raise _fail(path, what, value)
    if any(segment in ("", ".", "..") for segment in value.rstrip("/").split("/")):
        raise _fail(path, what, value)
    return value


def _object_of(item: Check) -> Check:
    """`{key: value}` with free keys, each value checked by `item`."""

    def check(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _fail(path, "a map", value)
        return {key: item(entry, f"{path}.{key}") for key, entry in value.items()}

    return check


def _list(item: Check, min_items: int = 0, max_items: int | None = None) -> Check:
    """A list of `item`s, none twice: a repeated CIDR, key, name or path is always a mistake."""

    def check(value: Any, path: str) -> tuple:
        if not isinstance(value, list) or len(value) < min_items or (max_items is not None and len(value) > max_items):
            bounds = [f"at least {min_items}" if min_items else "", f"at most {max_items}" if max_items else ""]
            raise _fail(path, f"a list{' of ' + ' and '.join(b for b in bounds if b) if any(bounds) else ''}", value)
        items = tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))
        seen: set = set()
        for i, v in enumerate(items):
            key = getattr(v, "name", v)
            if key in seen:
                raise ConfigError(f"{PROJECT}:{path}[{i}]: duplicate {key!r}")
            seen.add(key)
        return items

    return check


@dataclass(frozen=True)
class _Field:
    check: Check
    required: bool = True
    default: Any = None


def _object(fields: Mapping[str, _Field], build: Callable[..., Any] = dict) -> Check:
    """An object with exactly these camelCase keys; builds `build(**snake_case_values)`."""

    def check(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise _fail(path, "an object", value)
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ConfigError(f"{PROJECT}:{path}.{unknown[0]}: unknown key; expected one of {', '.join(fields)}")
        out = {}
        for key, spec in fields.items():
            sub = f"{path}.{key}" if path else key
            if key in value and value[key] is not None:
                out[_snake(key)] = spec.check(value[key], sub)
            elif spec.required:
                raise ConfigError(f"{PROJECT}:{sub}: required, missing")
            else:
                out[_snake(key)] = spec.default
        return build(**out)

    return check


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


# --- the schema ----------------------------------------------------------------------------

ARTIFACT_PATH_PATTERN = r"^[A-Za-z0-9_.*][A-Za-z0-9_.*/-]*$"
DEFAULT_ARTIFACTS = ("reports", "test-results")
"""Where test runners usually write their reports. Build outputs and coverage (which embeds the
source) are left out by default: artifacts of a public infra repository are public."""

ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,127}$"
MAX_ENV = 100
MAX_ENV_VALUE = 4096
RESERVED_ENV = ("PORT",)
"""Set by the program itself: `PORT` is the component's `port`."""
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE_KEY|API_KEY|ACCESS_KEY|SIGNING_KEY|CREDENTIAL")
SECRET_VALUE = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\b(ghp_|gho_|ghs_|github_pat_|xox[abp]-|AKIA[0-9A-Z]{16})"
)
"""A value that is a secret whatever its name: a private key, a GitHub, Slack or AWS credential."""


def _env_map(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    """`{NAME: value}`: plain configuration, never a secret (refused by name or by shape)."""
    if not isinstance(value, dict):
        raise _fail(path, "a map of NAME: value", value)
    if len(value) > MAX_ENV:
        raise ConfigError(f"{PROJECT}:{path}: {len(value)} variables; at most {MAX_ENV}")
    for name, text in value.items():
        where = f"{PROJECT}:{path}.{name}"
        if not isinstance(name, str) or not rules._matches(ENV_NAME_PATTERN, name):
            raise ConfigError(f"{where}: not a variable name (upper case letters, digits and _, {ENV_NAME_PATTERN})")
        if name in RESERVED_ENV:
            raise ConfigError(f"{where}: set by the deploy from the component's port; remove it")
        if SECRET_NAME.search(name):
            raise ConfigError(f"{where}: names a secret; plain config is committed and printed, secrets never are")
        if not isinstance(text, str):
            raise _fail(f"{path}.{name}", "a string (quote numbers and booleans)", text)
        if len(text) > MAX_ENV_VALUE or any(ord(c) < 32 and c != "\t" for c in text):
            raise ConfigError(f"{where}: at most {MAX_ENV_VALUE} characters on one line")
        if SECRET_VALUE.search(text):
            raise ConfigError(f"{where}: holds a credential; plain config is committed and printed, secrets never are")
    return tuple(sorted(value.items()))


VOLUME_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,30}$"
MAX_VOLUMES = 10


def _volume_map(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    """`{name: /container/path}`: named volumes, kept across releases."""
    if not isinstance(value, dict) or not value or len(value) > MAX_VOLUMES:
        raise _fail(path, f"a map of 1 to {MAX_VOLUMES} name: /container/path", value)
    for name, target in value.items():
        if not isinstance(name, str) or not rules._matches(VOLUME_NAME_PATTERN, name):
            raise ConfigError(f"{PROJECT}:{path}.{name}: not a volume name (lowercase letters, digits, '-')")
        if (
            not isinstance(target, str)
            or not re.fullmatch(r"/[A-Za-z0-9._/-]*[A-Za-z0-9._-]", target)
            or ".." in target
        ):
            raise _fail(f"{path}.{name}", "an absolute path inside the container, not /", target)
    return tuple(sorted(value.items()))


SECRET_KINDS = ("generated", "config")
"""`generated`: a random value the stack makes once and keeps; `config`: set with
`pulumi config set --secret --path 'secretValues.<NAME>' <value>` per stack."""
MAX_SECRETS = 50
MAX_SECRET_BYTES = 16 * 1024
MAX_SECRETS_BYTES = 40 * 1024
"""All of an environment's secret values together: they travel as one GitHub secret (48 KB at most)."""
GENERATED_SECRET_LENGTH = 48
"""Letters and digits: about 285 bits, and safe in a URL or a connection string."""


def _secret_kinds(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or len(value) > MAX_SECRETS:
        raise _fail(path, f"a map of at most {MAX_SECRETS} NAME: generated | config", value)
    for name, kind in value.items():
        if not isinstance(name, str) or not rules._matches(ENV_NAME_PATTERN, name):
            raise ConfigError(f"{PROJECT}:{path}.{name}: not a variable name (upper case letters, digits and _)")
        _string(choices=SECRET_KINDS)(kind, f"{path}.{name}")
    return tuple(sorted(value.items()))


_SECRET_NAMES = _list(_string(ENV_NAME_PATTERN, "a secret's name (upper case letters, digits and _)"))
_ACCESSORY_NAMES = _list(_string(rules.COMPONENT_PATTERN, "an accessory's name"))

_COMPONENT = _object(
    {
        "name": _Field(_string(rules.COMPONENT_PATTERN, "a component name: lowercase letters, digits, '-'")),
        "port": _Field(_integer(1, 65535), required=False),
        "healthPath": _Field(_string(r"^/[A-Za-z0-9._~/-]*$", "an absolute URL path like /health"), required=False),
        "hostPort": _Field(_host_port, required=False),
        "env": _Field(_env_map, required=False, default=()),
        "volumes": _Field(_volume_map, required=False, default=()),
        "secrets": _Field(_SECRET_NAMES, required=False, default=()),
        "accessories": _Field(_ACCESSORY_NAMES, required=False, default=()),
    },
    Component,
)


def _pinned_image(value: Any, path: str) -> str:
    if not isinstance(value, str) or not deploy_program.is_image(value) or "@sha256:" not in value:
        raise _fail(
            path, "an image pinned by digest, registry included (docker.io/library/postgres:17@sha256:...)", value
        )
    return value


_ACCESSORY = _object(
    {
        "name": _Field(_string(rules.COMPONENT_PATTERN, "an accessory name: lowercase letters, digits, '-'")),
        "image": _Field(_pinned_image),
        "env": _Field(_env_map, required=False, default=()),
        "secrets": _Field(_SECRET_NAMES, required=False, default=()),
        "volumes": _Field(_volume_map, required=False, default=()),
        "healthCheck": _Field(_string(r"^[^\n]{1,1000}$", "a one-line shell command"), required=False),
    },
    Accessory,
)


def _repository(value: Any, path: str) -> SourceRepository:
    repo = _object(
        {
            "name": _Field(_string(rules.REPOSITORY_PATTERN, "a GitHub repository name")),
            "kind": _Field(_string(choices=rules.KINDS)),
            "deployable": _Field(_boolean, required=False, default=False),
            "build": _Field(_string(what="a shell command"), required=False, default="true"),
            "test": _Field(_string(what="a shell command"), required=False, default="true"),
            "components": _Field(_list(_COMPONENT, min_items=1)),
            "artifacts": _Field(_list(_artifact_path), required=False, default=DEFAULT_ARTIFACTS),
        },
        lambda **kw: SourceRepository(
            name=kw["name"],
            kind=kw["kind"],
            deployable=kw["deployable"],
            build_command=kw["build"],
            test_command=kw["test"],
            components=kw["components"],
            artifacts=kw["artifacts"],
        ),
    )(value, path)
    if repo.deployable:
        for i, c in enumerate(repo.components):
            if c.port is None or c.health_path is None:
                missing = "port" if c.port is None else "healthPath"
                raise ConfigError(
                    f"{PROJECT}:{path}.components[{i}].{missing}: required, missing (the repository is deployable)"
                )
    return repo


_COMMIT = _object(
    {
        "message": _Field(_string(what="a commit message")),
        "authorName": _Field(_string(what="a name"), required=False),
        "authorEmail": _Field(_string(r"^[^@\s]+@[^@\s]+$", "an e-mail address"), required=False),
    },
    lambda **kw: _commit(**kw),
)


def _commit(message: str, author_name: str | None, author_email: str | None) -> Commit:
    """Both author fields or neither: GitHub needs both to record an author, and signs an App's
    commit only when neither is set."""
    if (author_name is None) != (author_email is None):
        missing = "commit.authorEmail" if author_email is None else "commit.authorName"
        raise ConfigError(
            f"{PROJECT}:{missing}: required with the other author field; set both, or remove both to let "
            "GitHub record (and, for a GitHub App, sign) the commits as the credential's identity"
        )
    return Commit.with_skip_marker(message, author_name, author_email)


def _option(option: Any) -> _Field:
    """A key the pipeline sends to the deploy program as an option: the program's bounds and default."""
    return _Field(_integer(option.low, option.high), required=False, default=option.default)


_DEPLOY = _object(
    {
        "lockWaitSeconds": _option(deploy_program.LOCK_WAIT),
        "waitTimeoutSeconds": _option(deploy_program.WAIT_TIMEOUT),
        "keepReleases": _option(deploy_program.KEEP),
    },
    Deploy,
)

DOMAIN_PATTERN = deploy_program.DOMAIN_PATTERN
ACME_DIRECTORY_PATTERN = deploy_program.ACME_PATTERN
_EDGE = _object(
    {
        "domain": _Field(_string(DOMAIN_PATTERN, "a lowercase DNS name like app.example.com"), required=False),
        "acmeDirectory": _Field(
            _string(ACME_DIRECTORY_PATTERN, "an ACME directory URL (https://...)"), required=False, default=LETS_ENCRYPT
        ),
        "acmeEmail": _Field(_string(deploy_program.EMAIL_PATTERN, "an e-mail address"), required=False),
    },
    Edge,
)

IDENTITY_DOMAIN_URL_PATTERN = ci.oci.DOMAIN_URL_PATTERN
"""An identity domain's URL as its details page shows it (`Domain URL`), with no path."""
REGION_PATTERN = ci.oci.REGION_PATTERN
"""An OCI region identifier, like eu-frankfurt-1 or uk-gov-london-1."""

_OCI = _object(
    {
        "compartmentId": _Field(
            _string(r"^ocid1\.(compartment|tenancy)\.[a-z0-9.-]+\.[A-Za-z0-9._-]+$", "a compartment OCID")
        ),
        "shape": _Field(
            _string(
                r"^(VM|CI)\.[A-Za-z0-9.]+$",
                "an OCI VM shape like VM.Standard.A1.Flex, or a container instance shape like CI.Standard.A1.Flex",
            )
        ),
        "target": _Field(_string(choices=TARGETS), required=False, default=VM),
        "ocpus": _Field(_number(0.125, 128)),
        "memoryGbs": _Field(_number(1, 2048)),
        "bootVolumeGbs": _Field(
            _integer(int(shapes.ALWAYS_FREE.min_boot_volume_gbs), 32768), required=False, default=50
        ),
        "imageId": _Field(_string(r"^ocid1\.image\.[a-z0-9.-]+\.[A-Za-z0-9._-]+$", "an image OCID"), required=False),
        "ubuntuVersion": _Field(
            _string(r"^[0-9]{2}\.(04|10)$", "an Ubuntu release like 24.04"), required=False, default="24.04"
        ),
        "availabilityDomain": _Field(_string(what="an availability domain name"), required=False),
        "vcnCidr": _Field(_oci_cidr),
        "subnetCidr": _Field(_oci_cidr),
        "sshAllowedCidrs": _Field(_list(_cidr), required=False, default=()),
        "adminSshKeys": _Field(_list(_ssh_public_key), required=False, default=()),
        # OCI's CreateBastionDetails: 1 to 20 client CIDR blocks, a session TTL from 30 minutes to 3 hours.
        "bastionClientCidrs": _Field(
            _list(_cidr, min_items=1, max_items=BASTION_CLIENT_CIDRS_MAX), required=False, default=("0.0.0.0/0",)
        ),
        "bastionSessionTtlSeconds": _Field(_integer(*BASTION_SESSION_TTL_SECONDS), required=False, default=1800),
        "bootVolumeBackups": _Field(_integer(0, 52), required=False, default=0),
        "identityDomainUrl": _Field(
            _string(
                IDENTITY_DOMAIN_URL_PATTERN, "an identity domain URL like https://idcs-<id>.identity.oraclecloud.com"
            ),
            required=False,
        ),
        "ciUserEmail": _Field(_string(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "an e-mail address"), required=False),
    },
    OciSettings,
)

_PROTECTION = _object(
    {
        "reviewers": _Field(
            _list(_string(r"^[A-Za-z0-9][A-Za-z0-9-]*(/[A-Za-z0-9._-]+)?$", "a login or org/team")),
            required=False,
            default=(),
        ),
        "waitTimer": _Field(_integer(0, 43200), required=False, default=0),
        "waiveReviewers": _Field(_boolean, required=False, default=False),
    },
    Protection,
)

_ACTORS = _list(_string(ACTOR_PATTERN, "role:admin, role:maintain, team:<slug>, user:<login> or app:<id>"))

_RULES = _object(
    {
        "enabled": _Field(_boolean, required=False, default=True),
        "approvals": _Field(_integer(0, 10), required=False, default=1),
        "productionPushers": _Field(_ACTORS, required=False, default=("role:admin",)),
        "pulumiBypass": _Field(_ACTORS, required=False, default=("role:admin",)),
        "allowUnreviewedProduction": _Field(_boolean, required=False, default=False),
    },
    RepositoryRules,
)

CLIENT_ID_PATTERN = r"^Iv[A-Za-z0-9.]{4,40}$"
"""A GitHub App's client id, as its settings page shows it."""

_TOP: dict[str, _Field] = {
    "environment": _Field(_string(choices=rules.ENVIRONMENTS), required=False),
    "githubOwner": _Field(_string(rules.OWNER_PATTERN, "a GitHub user or organization login")),
    "infraRepository": _Field(_string(rules.REPOSITORY_PATTERN, "a GitHub repository name")),
    "wiringStack": _Field(_string(choices=rules.ENVIRONMENTS), required=False, default="production"),
    "dispatchToken": _Field(_string(what="a token"), required=False),
    "pipelineToken": _Field(_string(what="a token"), required=False),
    "dispatchTokenScope": _Field(_string(choices=("repository", "organization")), required=False, default="repository"),
    "githubAuth": _Field(_string(choices=credentials.MODES), required=False, default="token"),
    "dispatchAppClientId": _Field(_string(CLIENT_ID_PATTERN, "a GitHub App client id (Iv...)"), required=False),
    "pipelineAppClientId": _Field(_string(CLIENT_ID_PATTERN, "a GitHub App client id (Iv...)"), required=False),
    "dispatchAppPrivateKey": _Field(_string(what="a private key"), required=False),
    "pipelineAppPrivateKey": _Field(_string(what="a private key"), required=False),
    "deploySecretLayout": _Field(_string(choices=("repository", "environment")), required=False, default="repository"),
    "commit": _Field(_COMMIT),
    "registry": _Field(
        _string(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*$", "a registry like ghcr.io/owner"), required=False
    ),
    "scanSeverity": _Field(_string(choices=("CRITICAL", "HIGH", "MEDIUM", "LOW")), required=False, default="HIGH"),
    "armRunnerLabel": _Field(_string(r"^[A-Za-z0-9._-]+$", "a runner label"), required=False),
    "sourceRepositories": _Field(_list(_repository, min_items=1)),
    "deploy": _Field(_DEPLOY, required=False),
    "edge": _Field(_EDGE, required=False),
    "oci": _Field(_OCI),
    "protection": _Field(_PROTECTION, required=False),
    "allowPaidShapes": _Field(_boolean, required=False, default=False),
    "createMissingBranches": _Field(_boolean, required=False, default=False),
    "fileDelivery": _Field(_string(choices=delivery.MODES), required=False, default=delivery.DIRECT),
    "infraRuleset": _Field(_boolean, required=False, default=True),
    "repositoryRules": _Field(_RULES, required=False),
    "actionsSettings": _Field(_boolean, required=False, default=True),
    "artifactRetentionDays": _Field(_integer(1, 90), required=False, default=7),
    "componentEnv": _Field(_object_of(_env_map), required=False),
    "secrets": _Field(_secret_kinds, required=False, default=()),
    "accessories": _Field(_list(_ACCESSORY, max_items=10), required=False, default=()),
    "ociDeployAuth": _Field(_string(choices=ci.oci.AUTH_MODES), required=False, default=ci.oci.WORKLOAD_IDENTITY),
}
"""Every key of the `dreamscape-infra:` namespace. Any other key is an error."""

SECRET_KEYS = ("dispatchToken", "pipelineToken", "dispatchAppPrivateKey", "pipelineAppPrivateKey")
SECRET_VALUES = "secretValues"  # noqa: S105 - a config key
"""`{NAME: value}`, set with `pulumi config set --secret --path 'secretValues.NAME'`: the values of
the environment's `config` secrets. Read on its own (`secret_values`); its values are never shown."""
SECRET_FILE_SUFFIX = "_FILE"  # noqa: S105 - a variable name suffix
"""A secret reaches a container as a file; `<NAME>_FILE` names its path (the official images' convention)."""
WIRING_SECRETS = {
    "token": {
        "dispatchToken": "a token that creates dispatch events on the infra repository, and nothing else",
        "pipelineToken": "a token that reads the source repositories and posts their commit statuses",
    },
    "app": {
        "dispatchAppPrivateKey": "the private key of the dispatch App (installed on the infra repository)",
        "pipelineAppPrivateKey": "the private key of the pipeline App (installed on the source repositories)",
    },
}
"""The secrets the stack that owns the wiring needs in each `githubAuth` mode, and what each one is."""
APP_KEYS = ("dispatchAppClientId", "pipelineAppClientId", "dispatchAppPrivateKey", "pipelineAppPrivateKey")
"""The keys of app mode, and of app mode only."""


# --- example values --------------------------------------------------------------------------

EXAMPLES: dict[str, tuple[str, ...]] = {
    "oci.compartmentId": tuple(f"ocid1.compartment.oc1..aaaaaaaadreamscape{env}" for env in rules.ENVIRONMENTS),
    "oci.identityDomainUrl": tuple(
        f"https://idcs-dreamscape{env}.identity.oraclecloud.com" for env in rules.ENVIRONMENTS
    ),
}
"""The values the shipped stack files carry in place of a tenancy's own: the offline plan plans
them (reviews, tests, this repository's preview) and warns; the real engine refuses them. The
GitHub names (`githubOwner`, reviewers, teams) are Dreamscape's own, and the real engine's
lookups refuse a repository or team the credential cannot see."""


def example_keys(settings: Settings) -> list[str]:
    """The keys still at one of their example values, in EXAMPLES' order."""
    values: dict[str, tuple[str, ...]] = {
        "oci.compartmentId": (settings.oci.compartment_id,),
        "oci.identityDomainUrl": (settings.oci.identity_domain_url or "",),
    }
    return [key for key, examples in EXAMPLES.items() if set(values[key]) & set(examples)]


def check_examples(settings: Settings, offline: bool) -> str | None:
    """The warning to print offline; under the real engine, a ConfigError naming each example."""
    keys = example_keys(settings)
    if not keys:
        return None
    listed = ", ".join(f"{PROJECT}:{key}" for key in keys)
    if offline:
        return f"still at their example values, which `pulumi up` refuses: {listed}"
    raise ConfigError(
        f"{listed}: still at the example values this repository ships; set your own (README, Configuration)"
    )


def engine_is_offline() -> bool:
    """Whether the program runs under the SDK's mock engine (the offline plan and the tests)
    rather than the Pulumi engine of `pulumi preview` and `pulumi up`."""
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.settings import SETTINGS

    return isinstance(SETTINGS.monitor, MockMonitor)


# --- reading -------------------------------------------------------------------------------


def parse(
    raw: Mapping[str, Any],
    stack: str,
    dispatch_token: pulumi.Output[str] | None = None,
    sibling_stacks: Mapping[str, Mapping[str, Any]] | None = None,
    pipeline_token: pulumi.Output[str] | None = None,
    app_private_keys: Mapping[str, pulumi.Output[str] | None] | None = None,
    oci_region: str | None = None,
    secret_values: Mapping[str, pulumi.Output[str]] | None = None,
) -> Settings:
    """Validate a stack's merged config (keys without namespace, values decoded).

    `sibling_stacks` maps each other stack's name to its merged plain config; it feeds the
    checks that span environments. `oci_region` is the OCI provider's `oci:region`, when known.
    `secret_values` is the stack's `secretValues`, name by name (read by `load`, never printed).
    """
    unknown = sorted(set(raw) - set(_TOP))
    if unknown:
        raise ConfigError(f"{PROJECT}:{unknown[0]}: unknown key; expected one of {', '.join(_TOP)}")
    environment = raw.get("environment", stack)
    if environment not in rules.ENVIRONMENTS:
        raise ConfigError(
            f"{PROJECT}:environment: expected one of {', '.join(rules.ENVIRONMENTS)} "
            f"(it defaults to the stack name), got {environment!r}"
        )
    values = _object(_TOP, dict)({k: v for k, v in raw.items() if k not in (*SECRET_KEYS, SECRET_VALUES)}, "")
    settings = Settings(
        stack=stack,
        environment=environment,
        github_owner=values["github_owner"],
        infra_repository=values["infra_repository"],
        wiring_stack=values["wiring_stack"],
        dispatch_token_scope=values["dispatch_token_scope"],
        deploy_secret_layout=values["deploy_secret_layout"],
        commit=values["commit"],
        registry=values["registry"] or f"ghcr.io/{values['github_owner'].lower()}",
        scan_severity=values["scan_severity"],
        arm_runner_label=values["arm_runner_label"],
        source_repositories=values["source_repositories"],
        deploy=values["deploy"] or _DEPLOY({}, "deploy"),
        edge=values["edge"] or Edge(),
        oci=values["oci"],
        protection=values["protection"] or Protection(),
        allow_paid_shapes=values["allow_paid_shapes"],
        create_missing_branches=values["create_missing_branches"],
        file_delivery=values["file_delivery"],
        artifact_retention_days=values["artifact_retention_days"],
        infra_ruleset=values["infra_ruleset"],
        actions_settings=values["actions_settings"],
        dispatch_token=dispatch_token,
        pipeline_token=pipeline_token,
        repository_rules=values["repository_rules"] or RepositoryRules(),
        github_auth=values["github_auth"],
        dispatch_app_client_id=values["dispatch_app_client_id"],
        pipeline_app_client_id=values["pipeline_app_client_id"],
        dispatch_app_private_key=(app_private_keys or {}).get("dispatchAppPrivateKey"),
        pipeline_app_private_key=(app_private_keys or {}).get("pipelineAppPrivateKey"),
        oci_deploy_auth=values["oci_deploy_auth"],
        oci_region=_region(oci_region),
        secrets=values["secrets"],
        secret_values=dict(secret_values or {}),
        accessories=values["accessories"],
    )
    _check_components_unique(settings)
    _check_app_secrets(settings)
    settings = _with_component_env(settings, values["component_env"] or {})
    _check_edge(settings)
    _check_network(settings.oci)
    _check_target(settings)
    if not settings.oci.container_instances:
        _check_session_ttl(settings)
    _check_shape(settings.oci)
    _check_protection(settings)
    _check_auth(settings, raw)
    _check_oci_deploy_auth(settings)
    _check_rules(settings)
    if sibling_stacks:
        _check_across_stacks(settings, sibling_stacks)
    _check_allowance(
        settings, allowance_report(environment, settings.oci, sibling_stacks or {}, len(settings.accessories))
    )
    return settings


def _check_auth(settings: Settings, raw: Mapping[str, Any]) -> None:
    """Each mode's keys, and no key of the other mode (it would be written nowhere)."""
    mode = settings.github_auth
    if mode == "app":
        for key in ("dispatchAppClientId", "pipelineAppClientId"):
            if key not in raw:
                raise ConfigError(
                    f"{PROJECT}:{key}: required with githubAuth: app; the client id on the App's settings page"
                )
        unused = [key for key in WIRING_SECRETS["token"] if key in raw]
    else:
        unused = [key for key in APP_KEYS if key in raw]
    if unused:
        other = "token" if mode == "app" else "app"
        raise ConfigError(
            f"{PROJECT}:{unused[0]}: used only with githubAuth: {other}, and this stack has githubAuth: {mode};"
            f" remove it (pulumi config rm {unused[0]}) or set githubAuth"
        )
    for key, what in WIRING_SECRETS[mode].items():
        if settings.owns_wiring and key not in raw:
            raise ConfigError(
                f"{PROJECT}:{key}: required on the stack that owns the shared wiring "
                f"({settings.wiring_stack}): {what}; set it with "
                f"`pulumi config set --secret {key}`"
            )


def _region(value: str | None) -> str | None:
    if value is not None and not rules._matches(REGION_PATTERN, value):
        raise ConfigError(f"oci:region: expected an OCI region identifier like eu-frankfurt-1, got {value!r}")
    if value is not None and not ci.oci.commercial(value):
        raise ConfigError(
            f"oci:region: {value} is outside OCI's commercial realm (oraclecloud.com), the only one whose "
            "bastion endpoints the deploy job knows"
        )
    return value


OCI_DEPLOY_AUTH_KEYS = {
    ci.oci.WORKLOAD_IDENTITY: (
        "identityDomainUrl",
        "the URL of the identity domain that holds the deploy job's service user (Identity & Security, "
        "Domains, <domain>: Domain URL), its own for this environment",
    ),
    ci.oci.API_KEY: (
        "ciUserEmail",
        "an e-mail address for the environment's CI user (identity domains require one), unique in the tenancy",
    ),
}
"""The `oci` key each `ociDeployAuth` mode needs, and what it is; each is refused in the other mode."""


def _check_oci_deploy_auth(settings: Settings) -> None:
    """The deploy credential's mode has its key, and no key of the other mode (it would be used nowhere)."""
    mode = settings.oci_deploy_auth
    given = {"identityDomainUrl": settings.oci.identity_domain_url, "ciUserEmail": settings.oci.ci_user_email}
    needed, what = OCI_DEPLOY_AUTH_KEYS[mode]
    if given[needed] is None:
        raise ConfigError(f"{PROJECT}:oci.{needed}: required with ociDeployAuth: {mode}; {what}")
    for other, (key, _) in OCI_DEPLOY_AUTH_KEYS.items():
        if other != mode and given[key] is not None:
            raise ConfigError(
                f"{PROJECT}:oci.{key}: used only with ociDeployAuth: {other}, and this stack has "
                f"ociDeployAuth: {mode}; remove it or set ociDeployAuth"
            )


def _check_rules(settings: Settings) -> None:
    """No path to production without a review for anyone outside productionPushers, unless opted out."""
    rules_ = settings.repository_rules
    if rules_.allow_unreviewed_production:
        return
    if not rules_.enabled:
        raise ConfigError(
            f"{PROJECT}:repositoryRules.enabled: false leaves every branch of the source repositories open, "
            "and anyone who can push a hotfix/* branch deploys to production unreviewed; keep the rules, or set "
            "repositoryRules.allowUnreviewedProduction: true to accept that"
        )
    if rules_.approvals < 1:
        raise ConfigError(
            f"{PROJECT}:repositoryRules.approvals: 0 lets a pull request into main, which deploys to production, "
            "merge without a review; set 1 or more, or repositoryRules.allowUnreviewedProduction: true"
        )


def _check_components_unique(settings: Settings) -> None:
    """Components become compose services and image names: one name, one owner."""
    owner: dict[str, str] = {}
    for i, repo in enumerate(settings.source_repositories):
        for j, comp in enumerate(repo.components):
            if comp.name in owner and repo.deployable:
                raise ConfigError(
                    f"{PROJECT}:sourceRepositories[{i}].components[{j}].name: duplicate "
                    f"{comp.name!r}, already a component of {owner[comp.name]}"
                )
            if repo.deployable:
                owner[comp.name] = repo.name
    ports: dict[int, str] = {}
    for i, repo in enumerate(settings.source_repositories):
        for j, comp in enumerate(repo.components):
            if repo.deployable and comp.host_port is not None:
                if comp.host_port in ports:
                    raise ConfigError(
                        f"{PROJECT}:sourceRepositories[{i}].components[{j}].hostPort: "
                        f"{comp.host_port} is already published by {ports[comp.host_port]}"
                    )
                ports[comp.host_port] = comp.name


def _check_app_secrets(settings: Settings) -> None:
    """Every secret and accessory named is declared, and each `config` secret has its value in
    this stack (`secretValues`); no value is ever shown."""
    declared = dict(settings.secrets)
    accessories = {a.name for a in settings.accessories}
    places: list[tuple[str, Any]] = []
    for i, repo in enumerate(settings.source_repositories):
        for j, component in enumerate(repo.components):
            where = f"sourceRepositories[{i}].components[{j}]"
            if (component.secrets or component.accessories) and not repo.deployable:
                key = "secrets" if component.secrets else "accessories"
                raise ConfigError(
                    f"{PROJECT}:{where}.{key}: {repo.name} is not deployable; its components never run on the VMs"
                )
            places.append((where, component))
    places += [(f"accessories[{i}]", a) for i, a in enumerate(settings.accessories)]
    components = {c.name for c in settings.deployed_components}
    for i, accessory in enumerate(settings.accessories):
        if accessory.name in components:
            raise ConfigError(f"{PROJECT}:accessories[{i}].name: {accessory.name!r} is also a component's name")
    for where, item in places:
        for k, name in enumerate(item.secrets):
            if name not in declared:
                raise ConfigError(
                    f"{PROJECT}:{where}.secrets[{k}]: {name} is not one of the environment's secrets; declare it "
                    f"under secrets ({name}: generated, or {name}: config)"
                )
        for k, name in enumerate(getattr(item, "accessories", ())):
            if name not in accessories:
                raise ConfigError(
                    f"{PROJECT}:{where}.accessories[{k}]: no accessory {name!r} "
                    f"(accessories: {', '.join(sorted(accessories)) or 'none'})"
                )
        env_names = {key for key, _ in item.env}
        for name in settings.secrets_of(item.name) if item.name in components | accessories else ():
            if f"{name}{SECRET_FILE_SUFFIX}" in env_names:
                raise ConfigError(
                    f"{PROJECT}:{where}.env.{name}{SECRET_FILE_SUFFIX}: set by the deploy (the path of secret {name})"
                )
    for name in settings.secret_values:
        if declared.get(name) != "config":
            raise ConfigError(
                f"{PROJECT}:secretValues.{name}: not a `config` secret of secrets "
                f"({name} is {declared.get(name, 'not declared')}); pulumi config rm --path secretValues.{name}"
            )
    for name, kind in settings.secrets:
        if kind == "config" and name not in settings.secret_values:
            raise ConfigError(
                f"{PROJECT}:secretValues.{name}: required, missing; "
                f"pulumi config set --secret --path 'secretValues.{name}' <value> (or pipe it on stdin)"
            )


def _with_component_env(settings: Settings, overrides: Mapping[str, tuple[tuple[str, str], ...]]) -> Settings:
    """The stack's `componentEnv` over each deployable component's project-wide `env`."""
    deployable = {c.name for r in settings.source_repositories if r.deployable for c in r.components}
    for i, repo in enumerate(settings.source_repositories):
        for j, component in enumerate(repo.components):
            for key, given in (("env", component.env), ("volumes", component.volumes)):
                if given and not repo.deployable:
                    raise ConfigError(
                        f"{PROJECT}:sourceRepositories[{i}].components[{j}].{key}: {repo.name} is not deployable; "
                        "its components never run on the VMs"
                    )
    for name in overrides:
        if name not in deployable:
            raise ConfigError(
                f"{PROJECT}:componentEnv.{name}: not a component of a deployable repository "
                f"({', '.join(sorted(deployable)) or 'none'})"
            )
    if not overrides:
        return settings

    def merged(component: Component) -> Component:
        if component.name not in overrides:
            return component
        env = dict(component.env) | dict(overrides[component.name])
        if len(env) > MAX_ENV:
            raise ConfigError(
                f"{PROJECT}:componentEnv.{component.name}: {len(env)} variables with env; at most {MAX_ENV}"
            )
        return replace(component, env=tuple(sorted(env.items())))

    repositories = tuple(
        replace(r, components=tuple(merged(c) for c in r.components)) if r.deployable else r
        for r in settings.source_repositories
    )
    return replace(settings, source_repositories=repositories)


def _check_edge(settings: Settings) -> None:
    """With a domain the edge serves one component over HTTPS on 443 (HTTP on 80 redirects to it)."""
    if settings.edge.domain is not None and len(settings.edge.domain) > 253:
        raise ConfigError(f"{PROJECT}:edge.domain: longer than DNS allows (253 characters)")
    if settings.edge.domain is None:
        if settings.edge.acme_email is not None or settings.edge.acme_directory != LETS_ENCRYPT:
            raise ConfigError(f"{PROJECT}:edge.domain: required with edge.acmeDirectory or edge.acmeEmail")
        return
    published = [c for r in settings.source_repositories if r.deployable for c in r.components if c.host_port]
    if not published:
        raise ConfigError(
            f"{PROJECT}:edge.domain: serves the component published on hostPort 80 over HTTPS "
            "(443, with 80 redirecting to it); published now: none"
        )


def _check_network(oci: OciSettings) -> None:
    vcn = ipaddress.ip_network(oci.vcn_cidr)
    subnet = ipaddress.ip_network(oci.subnet_cidr)
    if subnet.version != vcn.version or not subnet.subnet_of(vcn):  # type: ignore[arg-type]
        raise ConfigError(
            f"{PROJECT}:oci.subnetCidr: expected a range inside oci.vcnCidr {oci.vcn_cidr}, got {oci.subnet_cidr!r}"
        )
    if subnet.num_addresses < SUBNET_MIN_ADDRESSES:
        raise ConfigError(
            f"{PROJECT}:oci.subnetCidr: {oci.subnet_cidr} is too small: OCI keeps 3 addresses of a subnet, and it "
            "holds the VM and the bastion's private endpoint; use /29 or larger"
        )


VM_ONLY_KEYS = (
    ("sshAllowedCidrs", "ssh_allowed_cidrs"),
    ("adminSshKeys", "admin_ssh_keys"),
    ("bootVolumeBackups", "boot_volume_backups"),
    ("imageId", "image_id"),
)
"""`oci` keys about the VM: with `target: containerInstances` there is no VM for them to act on."""


def _check_target(settings: Settings) -> None:
    """The shape matches the target; a container instance target has what its load balancer and
    its one network namespace need, and nothing that only a VM has."""
    oci = settings.oci
    kind = "CI." if oci.container_instances else "VM."
    if not oci.shape.startswith(kind):
        like = [name for name in shapes.SHAPES if name.startswith(kind)]
        raise ConfigError(
            f"{PROJECT}:oci.shape: {oci.shape} does not run oci.target {oci.target}; expected one of {', '.join(like)}"
        )
    if not oci.container_instances:
        return
    if oci.compartment_id.startswith("ocid1.tenancy."):
        raise ConfigError(
            f"{PROJECT}:oci.compartmentId: the tenancy; with oci.target {CONTAINER_INSTANCES} the deploy identity "
            "may act on every container instance, subnet and NSG of its compartment: give it a compartment of its own"
        )
    for key, attribute in VM_ONLY_KEYS:
        if getattr(oci, attribute):
            raise ConfigError(
                f"{PROJECT}:oci.{key}: acts on the VM, and oci.target {CONTAINER_INSTANCES} has none; remove it"
            )
    if settings.edge.domain is not None:
        raise ConfigError(
            f"{PROJECT}:edge.domain: HTTPS is served by the VM's edge proxy; with oci.target "
            f"{CONTAINER_INSTANCES} the load balancer serves plain HTTP on 80 (docs/environment.md)"
        )
    published = [c.name for c in settings.deployed_components if c.host_port]
    if not published:
        raise ConfigError(
            f"{PROJECT}:sourceRepositories: oci.target {CONTAINER_INSTANCES} serves the component published on "
            "hostPort 80 through the load balancer; publish one"
        )
    # One container instance holds every component, in one network namespace.
    ports: dict[int, str] = {}
    for component in settings.deployed_components:
        if component.port in ports:
            raise ConfigError(
                f"{PROJECT}:sourceRepositories: {component.name} and {ports[component.port]} both listen on "
                f"{component.port}; with oci.target {CONTAINER_INSTANCES} the components share one network "
                "namespace, so each needs a port of its own"
            )
        if component.port is not None:
            ports[component.port] = component.name


def _check_session_ttl(settings: Settings) -> None:
    """The bastion lets a session live as long as a deploy through it can take."""
    longest = ci.deploy.session_seconds(settings.deploy)
    if longest > ci.oci.MAX_SESSION_TTL_SECONDS:
        raise ConfigError(
            f"{PROJECT}:deploy: a deploy may take {longest} s with these settings (the session becoming "
            "active, lockWaitSeconds, the pull, twice waitTimeoutSeconds), longer than the "
            f"{ci.oci.MAX_SESSION_TTL_SECONDS} s an OCI bastion session can last; lower lockWaitSeconds or "
            "waitTimeoutSeconds"
        )
    needed = ci.deploy.session_ttl(settings.deploy)
    if settings.oci.bastion_session_ttl_seconds < needed:
        raise ConfigError(
            f"{PROJECT}:oci.bastionSessionTtlSeconds: {settings.oci.bastion_session_ttl_seconds} is shorter than a "
            f"deploy may take with these deploy settings ({needed} s: the session becoming active, "
            "deploy.lockWaitSeconds, the pull, twice deploy.waitTimeoutSeconds); raise it to at least that"
        )


def _check_shape(oci: OciSettings) -> None:
    """The shape is one the program knows, sized within what Oracle accepts for it."""
    try:
        shape = shapes.shape(oci.shape)
    except KeyError:
        raise ConfigError(
            f"{PROJECT}:oci.shape: expected one of {', '.join(shapes.SHAPES)}, got {oci.shape!r} "
            f"(another shape needs a row in {shapes.__name__}.SHAPES)"
        ) from None
    for key, message in shape.problems(oci.ocpus, oci.memory_gbs):
        raise ConfigError(f"{PROJECT}:oci.{key}: {message}")


def _check_protection(settings: Settings) -> None:
    reviewers = settings.protection.reviewers
    if settings.environment == "production" and not reviewers and not settings.protection.waive_reviewers:
        raise ConfigError(
            f"{PROJECT}:protection.reviewers: production is reviewed by default; name the users or org/team "
            "that approve its deploys, or set protection.waiveReviewers: true to deploy unreviewed (GitHub "
            "enforces reviewers on public repositories, and on private ones with GitHub Enterprise only)"
        )
    if reviewers and settings.protection.waive_reviewers:
        raise ConfigError(f"{PROJECT}:protection.waiveReviewers: true, with reviewers named: choose one")
    if len(reviewers) > MAX_REVIEWERS:
        raise ConfigError(
            f"{PROJECT}:protection.reviewers: GitHub accepts at most {MAX_REVIEWERS} reviewers, got {len(reviewers)}"
        )
    for i, reviewer in enumerate(reviewers):
        org, _, team = reviewer.rpartition("/")
        if team and org and org.lower() != settings.github_owner.lower():
            raise ConfigError(
                f"{PROJECT}:protection.reviewers[{i}]: team {reviewer!r} is not a team of githubOwner "
                f"{settings.github_owner}; an environment's reviewers come from its own organization"
            )


MAX_REVIEWERS = 6
"""GitHub's limit on an environment's required reviewers (users and teams together)."""


def allowance_report(
    environment: str, oci: OciSettings, siblings: Mapping[str, Mapping[str, Any]], accessories: int
) -> shapes.AllowanceReport:
    """This environment and its sibling stacks against the Always Free allowance (`accessories`:
    how many the project declares, each an instance of its own with container instances).

    A sibling whose `oci` object does not validate is left out: its own stack reports it.
    """
    usage: dict[str, OciSettings] = {environment: oci}
    for name, raw in siblings.items():
        try:
            sibling = _OCI(raw.get("oci"), "oci")
        except ConfigError:
            continue
        if sibling.shape in shapes.SHAPES:
            usage.setdefault(raw.get("environment", name), sibling)
    order = {env: i for i, env in enumerate(rules.ENVIRONMENTS)}
    return shapes.allowance_report(
        sorted(usage.items(), key=lambda item: (order.get(item[0], 99), item[0])), accessories=accessories
    )


def stack_allowance_report(stack: str, project_dir: Path = PROJECT_DIR) -> shapes.AllowanceReport:
    """The report of a stack file and its siblings, as the offline plan prints it."""
    raw = merged_plain_config(stack, project_dir)
    accessories = raw.get("accessories")
    return allowance_report(
        raw.get("environment", stack),
        _OCI(raw.get("oci"), "oci"),
        sibling_stacks(stack, project_dir),
        len(accessories) if isinstance(accessories, list) else 0,
    )


def _check_allowance(settings: Settings, report: shapes.AllowanceReport) -> None:
    """Stay within Oracle's Always Free allowance unless this stack accepts paying for more."""
    mine = report.excesses_of(settings.environment)
    unsold = [e for e in mine if e.monthly_usd is None]
    if unsold:
        raise ConfigError(
            f"{PROJECT}:oci.shape: {unsold[0].describe()}; choose another shape for "
            f"{' or '.join(unsold[0].environments)}"
        )
    if mine and not settings.allow_paid_shapes:
        over = "; ".join(e.describe() for e in mine)
        raise ConfigError(
            f"{PROJECT}:allowPaidShapes: the stacks together exceed Oracle's Always Free allowance "
            f"of {report.allowance.as_of}: {over}; shrink an environment or set allowPaidShapes: true "
            "(in Pulumi.yaml for every stack) to accept the cost"
        )


def _check_across_stacks(settings: Settings, siblings: Mapping[str, Mapping[str, Any]]) -> None:
    owners = {settings.stack: settings.wiring_stack}
    for name, raw in sorted(siblings.items()):
        owners[name] = raw.get("wiringStack", "production")
    if len(set(owners.values())) > 1:
        claims = ", ".join(f"Pulumi.{s}.yaml says {o}" for s, o in sorted(owners.items()))
        raise ConfigError(
            f"{PROJECT}:wiringStack: stacks disagree on who owns the shared wiring ({claims}); "
            "exactly one stack may own it: set wiringStack once, in Pulumi.yaml"
        )
    modes = {settings.stack: settings.oci_deploy_auth}
    for name, raw in sorted(siblings.items()):
        modes[name] = raw.get("ociDeployAuth", ci.oci.WORKLOAD_IDENTITY)
    if len(set(modes.values())) > 1:
        claims = ", ".join(f"Pulumi.{s}.yaml says {m}" for s, m in sorted(modes.items()))
        raise ConfigError(
            f"{PROJECT}:ociDeployAuth: stacks disagree on how the deploy job authenticates to OCI ({claims}); "
            "the one central pipeline grants its deploy job what that mode needs: set ociDeployAuth once, "
            "in Pulumi.yaml"
        )
    _check_identity_domains(settings, siblings)
    _check_container_compartments(settings, siblings)
    mine = ipaddress.ip_network(settings.oci.vcn_cidr)
    for name, raw in sorted(siblings.items()):
        other = (raw.get("oci") or {}).get("vcnCidr")
        try:
            theirs = ipaddress.ip_network(other) if isinstance(other, str) else None
        except ValueError:
            continue  # that stack reports its own bad value
        if theirs is not None and theirs.version == mine.version and mine.overlaps(theirs):
            raise ConfigError(
                f"{PROJECT}:oci.vcnCidr: {settings.oci.vcn_cidr} overlaps stack {name}'s {other}; "
                "each environment needs its own range"
            )


def _check_container_compartments(settings: Settings, siblings: Mapping[str, Mapping[str, Any]]) -> None:
    """A container instances environment has its compartment to itself: its deploy identity may
    manage every container instance there and use every subnet, NSG and VNIC of it."""
    mine = settings.oci.compartment_id
    for name, raw in sorted(siblings.items()):
        oci = raw.get("oci") or {}
        theirs_containers = oci.get("target") == CONTAINER_INSTANCES
        if oci.get("compartmentId") == mine and (settings.oci.container_instances or theirs_containers):
            which = settings.stack if settings.oci.container_instances else name
            raise ConfigError(
                f"{PROJECT}:oci.compartmentId: stack {name} uses {mine} too, and stack {which} runs container "
                "instances, whose deploy identity may act on every container instance, subnet and NSG of its "
                "compartment; give each of them a compartment of its own"
            )


def _check_identity_domains(settings: Settings, siblings: Mapping[str, Mapping[str, Any]]) -> None:
    """One identity domain per environment with workload identity: a domain takes one trust per
    token issuer, and each environment's trust maps its own deploy job onto its own user."""
    url = settings.oci.identity_domain_url
    if settings.oci_deploy_auth != ci.oci.WORKLOAD_IDENTITY or url is None:
        return
    for name, raw in sorted(siblings.items()):
        other = (raw.get("oci") or {}).get("identityDomainUrl")
        if isinstance(other, str) and _same_domain(url, other):
            raise ConfigError(
                f"{PROJECT}:oci.identityDomainUrl: {url} is stack {name}'s identity domain too; an identity domain "
                "holds one trust for GitHub's token issuer, so each environment needs its own domain (or set "
                "ociDeployAuth: apiKey)"
            )


def _same_domain(a: str, b: str) -> bool:
    def key(url: str) -> str:
        url = url.strip().lower().rstrip("/")
        return url[: -len(":443")] if url.endswith(":443") else url

    return key(a) == key(b)


def read_project_config(project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """Project-level defaults of our namespace from Pulumi.yaml (`key: v` or `key: {value: v}`)."""
    doc = yaml.safe_load((project_dir / "Pulumi.yaml").read_text()) or {}
    out: dict[str, Any] = {}
    for key, value in (doc.get("config") or {}).items():
        name = _own_key(key)
        if name is None:
            continue
        if isinstance(value, dict):
            if "value" in value:
                value = value["value"]
            elif "default" in value:
                value = value["default"]
            else:
                continue
        out[name] = value
    return out


def read_stack_file(stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """A stack file's own config entries, full keys as written (`oci:region` too)."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    doc = yaml.safe_load(path.read_text()) if path.exists() else None
    return dict((doc or {}).get("config") or {})


def _own_key(key: str) -> str | None:
    if ":" not in key:
        return key
    namespace, name = key.split(":", 1)
    return name if namespace == PROJECT else None


def merged_plain_config(stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """Pulumi.yaml defaults overlaid with one stack file; our namespace only, no secrets."""
    merged = read_project_config(project_dir)
    for key, value in read_stack_file(stack, project_dir).items():
        name = _own_key(key)
        if name is not None:
            merged[name] = value
    return merged


def sibling_stacks(stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, dict[str, Any]]:
    """The other environment stacks' plain config, for the checks that span stacks."""
    out = {}
    for path in sorted(project_dir.glob("Pulumi.*.yaml")):
        name = path.name[len("Pulumi.") : -len(".yaml")]
        if name != stack and name in rules.ENVIRONMENTS:
            out[name] = merged_plain_config(name, project_dir)
    return out


def load() -> Settings:
    """Read and validate the running stack's config through pulumi.Config."""
    config = pulumi.Config(PROJECT)
    raw: dict[str, Any] = {}
    for key in _config_keys():
        if key == SECRET_VALUES:
            continue
        if key in SECRET_KEYS:
            raw[key] = "[secret]"
            continue
        text = config.get(key)
        raw[key] = text if key in _STRING_KEYS else _decode(text)
    secrets = {key: config.get_secret(key) if key in raw else None for key in SECRET_KEYS}
    stack = pulumi.get_stack()
    region = pulumi.Config("oci").get("region")
    if region is None:
        raise ConfigError(
            "oci:region: required, missing; the region of the stack's resources, where the deploy job "
            "opens its bastion sessions (pulumi config set oci:region eu-frankfurt-1)"
        )
    return parse(
        raw,
        stack,
        secrets["dispatchToken"],
        sibling_stacks(stack),
        pipeline_token=secrets["pipelineToken"],
        app_private_keys={key: secrets[key] for key in ("dispatchAppPrivateKey", "pipelineAppPrivateKey")},
        oci_region=region,
        secret_values=secret_values(
            pulumi.runtime.get_config(f"{PROJECT}:{SECRET_VALUES}"),
            pulumi.runtime.is_config_secret(f"{PROJECT}:{SECRET_VALUES}"),
        ),
    )


def secret_values(text: str | None, encrypted: bool = True) -> dict[str, pulumi.Output[str]]:
    """The stack's `secretValues` (its config text, decrypted by the engine) as secret Outputs.

    Checked by name and size only: an error names the key, never the value. Read from the raw
    config so that `pulumi.Config` does not warn about reading a secret as plain text.
    """
    if text is None:
        return {}
    if not encrypted:
        raise ConfigError(
            f"{PROJECT}:{SECRET_VALUES}: set in plain text; remove it from the stack file and set each value "
            f"with pulumi config set --secret --path '{SECRET_VALUES}.<NAME>' <value>"
        )
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, dict):
        raise ConfigError(
            f"{PROJECT}:{SECRET_VALUES}: expected a map of NAME: value; set each with "
            f"pulumi config set --secret --path '{SECRET_VALUES}.<NAME>' <value>"
        )
    total = 0
    for name, value in values.items():
        where = f"{PROJECT}:{SECRET_VALUES}.{name}"
        if not rules._matches(ENV_NAME_PATTERN, name):
            raise ConfigError(f"{where}: not a variable name (upper case letters, digits and _)")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a non-empty string (set it with --secret)")
        size = len(value.encode())
        if size > MAX_SECRET_BYTES:
            raise ConfigError(f"{where}: {size} bytes; at most {MAX_SECRET_BYTES}")
        total += size
    if total > MAX_SECRETS_BYTES:
        raise ConfigError(f"{PROJECT}:{SECRET_VALUES}: {total} bytes in all; at most {MAX_SECRETS_BYTES}")
    return {name: pulumi.Output.secret(value) for name, value in sorted(values.items())}


_STRING_KEYS = frozenset(
    (
        "environment",
        "githubOwner",
        "infraRepository",
        "wiringStack",
        "dispatchTokenScope",
        "githubAuth",
        "dispatchAppClientId",
        "pipelineAppClientId",
        "deploySecretLayout",
        "registry",
        "scanSeverity",
        "armRunnerLabel",
        "fileDelivery",
        "ociDeployAuth",
    )
)
"""Keys whose text is the value; every other key carries JSON (objects, lists, numbers, booleans)."""


def _decode(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # validation then names the key and shows the text


def _config_keys() -> list[str]:
    """Every key of our namespace the engine passed to this run."""
    from pulumi.runtime import config as runtime_config

    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    return sorted(name for key in keys if (name := _own_key(key)) is not None and ":" in key)
