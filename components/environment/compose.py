"""The environment's compose file, and the component that writes it into the infra repository.

    deploy/compose.<env>.yml   on the infra repository's default branch

One service per component of every deployable repository. A service's image is never written
here: it comes from a variable the deploy program sets for each release
(`deploy_program.image_variable`), so an app change never rewrites this file, and the file
travels to the VM on the deploy's stdin, so it never needs re-creating the VM either. Each
service gets a health check on its own port and path (`docker compose up --wait` waits for
it), a restart policy, bounded logs, and a published port only when the config names one.

Each environment stack writes its own environment's file; the central pipeline's deploy job
reads it from a checkout of the infra repository. With `fileDelivery: pullRequest` the file
joins the stack's proposal for that branch (components/delivery.py) and acts once merged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pulumi

from components import delivery
from components.environment import deploy_program
from components.settings import (
    SECRET_FILE_SUFFIX,
    Accessory,
    Commit,
    Component,
    Edge,
    SourceRepository,
    granted_secrets,
)
from components.workflows import emit

SOURCE = "components/environment/compose.py"
DIRECTORY = "deploy"

RESTART = "unless-stopped"
"""Restarted after a crash and after a reboot of the VM, unless someone stopped it on purpose."""

HEALTH = {"interval": "10s", "timeout": "5s", "retries": 3, "start_period": "30s", "start_interval": "1s"}
"""Each service's health check, which `docker compose up --wait` waits for.

- `start_interval: 1s`: while a container starts, Docker probes it every second, so a release
  is seen healthy about a second after it answers. Without it the first probe comes one
  `interval` after start, and the shortest health wait the program accepts (10 s,
  `deploy.waitTimeoutSeconds`) failed every healthy release. It needs Docker Engine 25 (API
  1.44); Compose refuses it on an older engine rather than ignoring it (docker/compose#11360).
  The VMs run Ubuntu 24.04's `docker.io` from noble-updates (cloud-init updates the package
  lists first): 26.1 and later since 2024, 29.1 with `docker-compose-v2` 2.40 in 2026.
- `start_period: 30s`: how long a service may take to start: probes run every
  `start_interval` and failures do not count. It also bounds how long a release that never
  answers stays "starting": after it, `retries` failures `interval` apart make it unhealthy
  (about 60 s), unless the deploy's health wait runs out first.
- `interval: 10s`, `timeout: 5s`, `retries: 3`: once healthy, a probe every 10 s; three
  failures in a row (30 s) mark the container unhealthy.
"""
LOGS = {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}
"""At most 30 MB of logs per service, so a chatty service cannot fill the boot volume."""


def path(environment: str) -> str:
    """Where the environment's compose file lives in the infra repository."""
    return f"{DIRECTORY}/compose.{environment}.yml"


PROBE_SOURCE = "/bin/busybox"
"""The VM's statically linked busybox (cloud-init installs `busybox-static`): it needs no library
of the image, and has the VM's architecture, which is the images' (DEPLOY_PLATFORM_<ENV>)."""
PROBE = "/run/dreamscape/busybox"
"""Where each component's container sees it, read-only. Named `busybox`: busybox picks the
applet from its own name unless that is `busybox`, then from its first argument."""


def probe_mount() -> dict[str, Any]:
    return {"type": "bind", "source": PROBE_SOURCE, "target": PROBE, "read_only": True}


def health_test(port: int, health_path: str) -> list[str]:
    """Healthy when the service answers 2xx/3xx at its path on its port.

    The client is the VM's busybox `wget`, mounted into the container, not one of the image:
    any image that serves HTTP on its port passes, a distroless or `FROM scratch` one too. It
    runs in the container's network namespace, so it asks the service itself, on 127.0.0.1.
    Docker's own `timeout` bounds it (busybox 1.35's `wget -T` crashes in its static build).
    """
    return ["CMD", PROBE, "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{health_path}"]


SECRETS_DIRECTORY = "./secrets"
"""Where the deploy program writes each secret's file, in the release's directory (relative to it)."""


def secret_files(names: Iterable[str]) -> dict[str, Any]:
    """A service's secrets: each mounted at /run/secrets/<NAME>, `<NAME>_FILE` naming the path."""
    names = sorted(names)
    return {
        "environment": {f"{n}{SECRET_FILE_SUFFIX}": f"/run/secrets/{n}" for n in names},
        "secrets": [{"source": n, "target": n} for n in names],
    }


def service(component: Component, accessories: tuple[Accessory, ...] = ()) -> dict[str, Any]:
    if component.port is None or component.health_path is None:
        raise ValueError(f"component {component.name} has no port or healthPath: it cannot be deployed")
    variable = deploy_program.image_variable(component.name)
    spec: dict[str, Any] = {
        # Required: a deploy that does not name this component carries its running image over,
        # and the deploy program leaves a component never deployed out of the release. Only
        # the file run by hand without the variable stops with this message.
        "image": f"${{{variable}:?{component.name} has no image yet: this environment never deployed it}}",
        "restart": RESTART,
        # Compose interpolates `$` in values: `$$` is a literal dollar sign.
        "environment": {"PORT": str(component.port), **{k: v.replace("$", "$$") for k, v in component.env}},
        "healthcheck": {"test": health_test(component.port, component.health_path), **HEALTH},
        "logging": LOGS,
        "volumes": [probe_mount(), *(f"{component.volume(name)}:{path}" for name, path in component.volumes)],
    }
    if component.host_port is not None:
        spec["ports"] = [f"{component.host_port}:{component.port}"]
    _add_secrets(spec, granted_secrets(component, accessories))
    if component.accessories:
        spec["networks"] = ["default", *sorted(component.accessories)]
    return spec


def _add_secrets(spec: dict[str, Any], names: tuple[str, ...]) -> None:
    if names:
        files = secret_files(names)
        spec["environment"] = {**spec.get("environment", {}), **files["environment"]}
        spec["secrets"] = files["secrets"]


def accessory_service(accessory: Accessory) -> dict[str, Any]:
    """An accessory: its pinned image, on its own network, which only the components naming it join."""
    spec: dict[str, Any] = {"image": accessory.image, "restart": RESTART}
    if accessory.env:
        spec["environment"] = {k: v.replace("$", "$$") for k, v in accessory.env}
    _add_secrets(spec, tuple(sorted(accessory.secrets)))
    if accessory.health_check:
        spec["healthcheck"] = {"test": ["CMD-SHELL", accessory.health_check], **HEALTH}
    spec["logging"] = LOGS
    if accessory.volumes:
        spec["volumes"] = [f"{accessory.volume(name)}:{path}" for name, path in accessory.volumes]
    spec["networks"] = [accessory.name]
    return spec


def has_services(repositories: Iterable[SourceRepository]) -> bool:
    """Whether any repository is deployable: without one there is nothing to deploy, and no file."""
    return any(repo.deployable for repo in repositories)


def edge_extension(edge: Edge) -> dict[str, Any]:
    """`x-dreamscape-edge`: the domain the VM's edge proxy serves over HTTPS, and its ACME account."""
    extension: dict[str, Any] = {"domain": edge.domain, "acmeDirectory": edge.acme_directory}
    if edge.acme_email:
        extension["acmeEmail"] = edge.acme_email
    return extension


def document(
    repositories: Iterable[SourceRepository], edge: Edge | None = None, accessories: tuple[Accessory, ...] = ()
) -> dict[str, Any]:
    repositories = tuple(repositories)
    components = [c for repo in repositories if repo.deployable for c in repo.components]
    known = {a.name for a in accessories}
    for component in components:
        missing = sorted(set(component.accessories) - known)
        if missing:
            raise ValueError(f"component {component.name} names accessories that are not given: {', '.join(missing)}")
    services = {c.name: service(c, accessories) for c in components}
    if not services:
        raise ValueError("no deployable component: the environment's compose file would be empty")
    document: dict[str, Any] = {}
    if edge is not None and edge.domain:
        document[deploy_program.EDGE_EXTENSION] = edge_extension(edge)
    if accessories:
        document[deploy_program.ACCESSORIES_EXTENSION] = [a.name for a in accessories]
        services |= {a.name: accessory_service(a) for a in accessories}
        document["networks"] = {a.name: {} for a in accessories}
    document["services"] = services
    # Named volumes: the deploy program gives each one name shared by both slots, and never
    # removes one (a release's `down` keeps volumes), so data outlives every release.
    volumes = {item.volume(name): {} for item in (*components, *accessories) for name, _ in item.volumes}
    if volumes:
        document["volumes"] = volumes
    # The values never appear here: the deploy sends them, and the program writes each file.
    secrets = sorted({n for item in (*components, *accessories) for n in granted_secrets(item, accessories)})
    if secrets:
        document["secrets"] = {n: {"file": f"{SECRETS_DIRECTORY}/{n}"} for n in secrets}
    return document


def render(
    repositories: Iterable[SourceRepository], edge: Edge | None = None, accessories: tuple[Accessory, ...] = ()
) -> str:
    return emit.dump(document(repositories, edge, accessories), SOURCE)


@dataclass(frozen=True)
class ComposeFileArgs:
    infra_repository: str
    environment: str
    source_repositories: tuple[SourceRepository, ...]
    commit: Commit
    """Message and author of the commit that writes the file."""
    branch: str
    """The infra repository's default branch, where the central pipeline reads the file."""
    proposal: delivery.Proposal | None = None
    """With `fileDelivery: pullRequest`: the proposal for `branch` the file joins (the caller opens it)."""
    edge: Edge | None = None
    """The environment's domain for HTTPS, if it has one."""
    accessories: tuple[Accessory, ...] = ()


class ComposeFile(pulumi.ComponentResource):
    """The environment's compose file on the infra repository's default branch."""

    def __init__(self, name: str, args: ComposeFileArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("dreamscape:environment:ComposeFile", name, None, opts)
        self.path = path(args.environment)
        self.file = delivery.repository_file(
            f"{name}-file",
            args.infra_repository,
            args.branch,
            self.path,
            render(args.source_repositories, args.edge, args.accessories),
            args.commit,
            self,
            proposal=args.proposal,
        )
        self.location = f"{args.infra_repository}@{delivery.written_branch(args.branch, args.proposal)}:{self.path}"
        self.register_outputs({"location": self.location})
