#!/usr/bin/python3 -I
"""A `docker` command for the deploy tests: no engine here, so this plays one, strictly.

Installed as `docker` on the deploy user's PATH, it records every call (argv, the stdin it
reads, a few environment variables, exit code, time) and acts on a small world kept in
files: images present locally, the containers of each compose project and their health.

It models what dreamscape-deploy uses and refuses the rest as docker would:
- `docker [--config DIR] login --username U --password-stdin REGISTRY` (writes DIR/config.json
  as docker does; a password on the command line or an interactive login is refused);
- `docker compose [-p|--project-name N] [--project-directory D] [-f|--file F] [--env-file E]`
  with `config [--format json|yaml] [-q|--quiet] [--services] [--no-interpolate]`,
  `pull [-q|--quiet]`, `up [-d|--detach] [--wait] [--wait-timeout N] [--remove-orphans]
  [--pull P]`, `ps [-a|--all]`.
  The compose file is interpolated from the env file and the environment (`${X}`, `${X:-d}`,
  `${X:?msg}`, `$$`...), parsed as YAML, validated against the Compose specification's JSON
  schema and normalized (`depends_on` as a mapping, with the dependencies links, `service:`
  namespaces and `volumes_from` imply; the implicit `default` network), like compose-go; an
  interpolated model must be consistent (a service needs an image, and every service,
  network, volume, config and secret it refers to must exist). `config` prints the model with
  each `$` escaped as `$$` (unless `--no-interpolate`), so its output reads back as itself;
  `up` starts the model's services, and `--remove-orphans` removes the project's containers
  of services the model does not have.
Unknown commands and flags fail with docker's own messages; commands docker has but this
stand-in does not model fail with exit 99 so a test notices.

Behaviour comes from `control.json` in its data directory (written by the test):
`{"unhealthy": [image...], "pull_fail": [image...], "slow": {image: seconds},
  "registry_tokens": {registry: token}}`: an image in `unhealthy` never gets healthy, one in
`pull_fail` cannot be pulled, `slow` delays `up` (past `--wait-timeout` it times out), and a
registry in `registry_tokens` answers pulls only with a login holding that token.

The data directory is `<dir of this file>/../docker-standin`; it runs under the system
python3 (python3-yaml, python3-jsonschema).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "docker-standin"
CALLS = DATA / "calls.jsonl"
CONTROL = DATA / "control.json"
WORLD = DATA / "world.json"
SCHEMA = DATA / "compose-spec.json"
RECORDED_ENV = ("DOCKER_CONFIG", "SSH_AUTH_SOCK", "SSH_TTY", "HOME")
NOT_MODELED = 99


class DockerError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def control() -> dict:
    return json.loads(CONTROL.read_text()) if CONTROL.exists() else {}


@contextlib.contextmanager
def world():
    """The engine's state, read and written under an exclusive lock."""
    with open(DATA / "world.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(WORLD.read_text()) if WORLD.exists() else {"images": [], "projects": {}}
        yield state
        temporary = WORLD.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(temporary, WORLD)


# --- argument parsing, cobra style --------------------------------------------------------


def parse_flags(args: list[str], spec: dict[str, str], command: str) -> tuple[dict[str, list[str]], list[str]]:
    """`spec` maps every accepted flag spelling to its canonical name; a trailing `=` in the
    canonical name means the flag takes a value. Returns (flags, positional)."""
    flags: dict[str, list[str]] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positional += args[i + 1 :]
            break
        if arg.startswith("-") and arg != "-":
            name, eq, inline = arg.partition("=")
            if name not in spec:
                raise DockerError(f"unknown flag: {name}\nSee '{command} --help'.")
            canonical = spec[name]
            if canonical.endswith("="):
                if eq:
                    value = inline
                else:
                    i += 1
                    if i >= len(args):
                        raise DockerError(f"flag needs an argument: {name}")
                    value = args[i]
                flags.setdefault(canonical[:-1], []).append(value)
            else:
                if eq:
                    raise DockerError(f"flag {name} takes no value")
                flags.setdefault(canonical, []).append("true")
        else:
            positional.append(arg)
        i += 1
    return flags, positional


def split_command(args: list[str], spec: dict[str, str], command: str) -> tuple[dict[str, list[str]], list[str]]:
    """Global flags up to the first positional word (the subcommand), then the rest."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        name = args[i].partition("=")[0]
        i += 2 if spec.get(name, "").endswith("=") and "=" not in args[i] else 1
    flags, _ = parse_flags(args[:i], spec, command)
    return flags, args[i:]


# --- compose ------------------------------------------------------------------------------------

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_BRACED = re.compile(rf"\$\{{({_NAME})(?:(:?[-?+])([^}}]*))?\}}")
_BARE = re.compile(rf"\$({_NAME})")


def parse_env_file(path: Path) -> dict[str, str]:
    values = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq or not re.fullmatch(_NAME, key):
            raise DockerError(f"failed to read {path}: line {number}: unexpected character in variable name {key!r}")
        values[key] = value
    return values


def interpolate(value, env: dict[str, str], where: str):
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, where) for v in value]
    if not isinstance(value, str):
        return value
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if value.startswith("${", i):
            match = _BRACED.match(value, i)
            if not match:
                raise DockerError(
                    f"invalid interpolation format for {where}: {value!r}; you may need to escape any $ with another $"
                )
            name, op, arg = match.group(1), match.group(2), match.group(3) or ""
            present = name in env
            filled = present and env[name] != ""
            if op is None:
                if not present:
                    print(
                        f'WARN[0000] The "{name}" variable is not set. Defaulting to a blank string.', file=sys.stderr
                    )
                out.append(env.get(name, ""))
            elif op in (":-", "-"):
                out.append(env[name] if (filled if op == ":-" else present) else arg)
            elif op in (":?", "?"):
                if not (filled if op == ":?" else present):
                    raise DockerError(f"required variable {name} is missing a value: {arg}")
                out.append(env[name])
            else:
                out.append(arg if (filled if op == ":+" else present) else "")
            i = match.end()
            continue
        match = _BARE.match(value, i)
        if match:
            out.append(env.get(match.group(1), ""))
            i = match.end()
            continue
        out.append(value[i])
        i += 1
    return "".join(out)


def validate(document: dict, path: Path) -> None:
    """Against the Compose specification's schema; documents that passed once are remembered
    by digest (importing jsonschema costs more than the rest of a call)."""
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    passed = DATA / "validated" / digest
    if passed.exists():
        return
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path) or "(root)"
        raise DockerError(f"validating {path}: {where} {errors[0].message}")
    passed.parent.mkdir(exist_ok=True)
    passed.touch()


_SHARED_NAMESPACES = ("network_mode", "ipc", "pid", "uts", "cgroup")


def _implied(dependencies: dict, name: str, restart: bool) -> None:
    dependencies.setdefault(name, {"condition": "service_started", "restart": restart, "required": True})


def normalize(document: dict, project: str) -> dict:
    """What compose-go does to every model it loads (`transform.Canonical`, `Normalize`):
    `depends_on` as a mapping with its defaults, plus the dependencies that links, `service:`
    namespaces and `volumes_from` imply; the implicit `default` network; resources named
    `<project>_<key>` unless they say otherwise."""
    document = {**document, "name": project}
    uses_default = False
    for service in (document.get("services") or {}).values():
        declared = service.get("depends_on")
        if isinstance(declared, list):
            dependencies = {name: {"condition": "service_started", "required": True} for name in declared}
        else:
            dependencies = {
                k: {"condition": "service_started", "required": True, **v} for k, v in (declared or {}).items()
            }
        for link in service.get("links") or []:
            _implied(dependencies, link.split(":")[0], True)
        for namespace in _SHARED_NAMESPACES:
            if str(service.get(namespace, "")).startswith("service:"):
                _implied(dependencies, service[namespace].removeprefix("service:"), True)
        for source in service.get("volumes_from") or []:
            if not source.startswith("container:"):
                _implied(dependencies, source.split(":")[0], False)
        if dependencies:
            service["depends_on"] = dependencies
        if "network_mode" not in service and not service.get("networks"):
            service["networks"] = {"default": None}
        if isinstance(service.get("networks"), list):
            service["networks"] = dict.fromkeys(service["networks"])
        uses_default = uses_default or "default" in (service.get("networks") or {})
    if uses_default:
        document["networks"] = {"default": None, **(document.get("networks") or {})}
    for kind in ("networks", "volumes", "configs", "secrets"):
        if kind in document:
            document[kind] = {
                key: {"name": key if (resource or {}).get("external") else f"{project}_{key}", **(resource or {})}
                for key, resource in document[kind].items()
            }
    return document


def _named_volume(entry) -> str | None:
    """The named volume a service's volume entry mounts, if any (short or long syntax)."""
    if isinstance(entry, dict):
        return entry.get("source") if entry.get("type") == "volume" else None
    source, sep, _ = entry.partition(":")
    return source if sep and not source.startswith(("/", ".", "~")) else None


def check_consistency(project: dict) -> None:
    """compose-go's checkConsistency, for what a deploy can get wrong: the references between
    services and to top-level resources."""
    services = project["services"]
    for name, service in services.items():
        if not service.get("image"):
            if service.get("build"):
                raise DockerError(f"stand-in: service {name} builds its image; building is not modeled", NOT_MODELED)
            raise DockerError(
                f'service "{name}" has neither an image nor a build context specified: invalid compose project'
            )
        for dependency in service.get("depends_on") or {}:
            if dependency not in services:
                raise DockerError(
                    f'service "{name}" depends on undefined service "{dependency}": invalid compose project'
                )
        for network in service.get("networks") or {}:
            if network not in (project.get("networks") or {}):
                raise DockerError(f'service "{name}" refers to undefined network {network}: invalid compose project')
        volumes = [_named_volume(v) for v in service.get("volumes") or []]
        for volume in filter(None, volumes):
            if volume not in (project.get("volumes") or {}):
                raise DockerError(f'service "{name}" refers to undefined volume {volume}: invalid compose project')
        for kind in ("configs", "secrets"):
            for entry in service.get(kind) or []:
                source = entry.get("source") if isinstance(entry, dict) else entry
                if source not in (project.get(kind) or {}):
                    raise DockerError(
                        f'service "{name}" refers to undefined {kind[:-1]} {source}: invalid compose project'
                    )


def load_project(flags: dict[str, list[str]], interpolation: bool = True) -> dict:
    """The compose model, as compose loads it: interpolated (unless `--no-interpolate`),
    validated against the specification, normalized, and (when interpolated) consistent."""
    import yaml

    files = flags.get("file", [])
    if len(files) != 1:
        raise DockerError("stand-in: exactly one --file is modeled", NOT_MODELED)
    path = Path(files[0])
    if not path.is_file():
        raise DockerError(f"open {path}: no such file or directory")
    env = {}
    for env_file in flags.get("env-file", []):
        env.update(parse_env_file(Path(env_file)))
    env.update(os.environ)  # the process environment wins over the env file, as in compose
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise DockerError(f"yaml: {error}") from None
    if not isinstance(document, dict):
        raise DockerError(f"{path}: top-level object must be a mapping")
    if interpolation:
        document = interpolate(document, env, "")
    validate(document, path)
    if not document.get("services"):
        raise DockerError("no service selected")
    directory = flags.get("project-directory", [str(path.parent)])[-1]
    name = flags.get("project-name", [document.get("name") or Path(directory).name])[-1]
    project = normalize(document, name)
    if interpolation:
        check_consistency(project)
    return project


def registry_of(image: str) -> str:
    return image.split("/", 1)[0]


def credentials_for(registry: str) -> str | None:
    directory = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    path = Path(directory) / "config.json"
    if not path.exists():
        return None
    auth = json.loads(path.read_text()).get("auths", {}).get(registry, {}).get("auth")
    return base64.b64decode(auth).decode().partition(":")[2] if auth else None


def pull_image(image: str, state: dict) -> None:
    settings = control()
    tokens = settings.get("registry_tokens", {})
    registry = registry_of(image)
    if registry in tokens and credentials_for(registry) != tokens[registry]:
        raise DockerError(f'Error response from daemon: Head "https://{registry}/v2/": unauthorized')
    if image in settings.get("pull_fail", []):
        raise DockerError(f"Error response from daemon: manifest for {image} not found: manifest unknown")
    print(f" {image} Pulled")
    if image not in state["images"]:
        state["images"].append(image)


def compose(args: list[str]) -> int:
    spec = {
        "-p": "project-name=",
        "--project-name": "project-name=",
        "--project-directory": "project-directory=",
        "-f": "file=",
        "--file": "file=",
        "--env-file": "env-file=",
    }
    flags, rest = split_command(args, spec, "docker compose")
    if not rest:
        raise DockerError("stand-in: `docker compose` without a command prints help", NOT_MODELED)
    command, rest = rest[0], rest[1:]
    known = {"attach", "build", "config", "cp", "create", "down", "events", "exec", "images", "kill", "logs", "ls"}
    known |= {"pause", "port", "ps", "pull", "push", "restart", "rm", "run", "scale", "start", "stats", "stop"}
    known |= {"top", "unpause", "up", "version", "wait", "watch", "commit", "export", "volumes", "alpha"}
    if command not in known:
        raise DockerError(f'unknown docker command: "compose {command}"')
    if command == "config":
        sub, _ = parse_flags(
            rest,
            {
                "--format": "format=",
                "-q": "quiet",
                "--quiet": "quiet",
                "--services": "services",
                "--no-interpolate": "no-interpolate",
            },
            "docker compose config",
        )
        fmt = sub.get("format", ["yaml"])[-1]
        if fmt not in ("yaml", "json"):
            raise DockerError(f"unsupported format {fmt!r}")
        interpolation = "no-interpolate" not in sub
        project = load_project(flags, interpolation)
        if "quiet" in sub:
            return 0
        if "services" in sub:
            print("\n".join(project["services"]))
            return 0
        if fmt == "json":
            content = json.dumps(project, indent=2) + "\n"
        else:
            import yaml

            content = yaml.safe_dump(project, sort_keys=False)
        # compose escapes every `$` of an interpolated model, so that it reads back as printed.
        print(content.replace("$", "$$") if interpolation else content, end="")
        return 0
    if command == "pull":
        parse_flags(rest, {"-q": "quiet", "--quiet": "quiet"}, "docker compose pull")
        project = load_project(flags)
        with world() as state:
            for service in project["services"].values():
                pull_image(service["image"], state)
        return 0
    if command == "up":
        sub, positional = parse_flags(
            rest,
            {
                "-d": "detach",
                "--detach": "detach",
                "--wait": "wait",
                "--wait-timeout": "wait-timeout=",
                "--remove-orphans": "remove-orphans",
                "--pull": "pull=",
            },
            "docker compose up",
        )
        if positional:
            raise DockerError("stand-in: `up` of selected services is not modeled", NOT_MODELED)
        if "wait" not in sub or "detach" not in sub:
            raise DockerError("stand-in: only `up --detach --wait` is modeled", NOT_MODELED)
        timeout = int(sub.get("wait-timeout", ["0"])[-1])
        policy = sub.get("pull", ["missing"])[-1]
        if policy not in ("always", "missing", "never", "build"):
            raise DockerError(f"invalid --pull option {policy!r}")
        project = load_project(flags)
        settings = control()
        images = {name: service["image"] for name, service in project["services"].items()}
        with world() as state:
            for image in images.values():
                if policy == "always" or image not in state["images"]:
                    if policy == "never":
                        raise DockerError(f"Error response from daemon: No such image: {image}")
                    pull_image(image, state)
            running = state["projects"].setdefault(project["name"], {})
            if "remove-orphans" in sub:
                for orphan in set(running) - set(images):
                    print(f" Container {project['name']}-{orphan}-1 Removed")
                    del running[orphan]
            for name, image in images.items():
                running[name] = {"image": image, "health": "starting"}
                print(f" Container {project['name']}-{name}-1 Started")
        delay = max(float(settings.get("slow", {}).get(image, 0)) for image in images.values())
        time.sleep(min(delay, timeout) if timeout else delay)
        unhealthy = [n for n, i in images.items() if i in settings.get("unhealthy", [])]
        with world() as state:
            running = state["projects"][project["name"]]
            for name in images:
                if running.get(name, {}).get("image") == images[name]:
                    running[name]["health"] = "unhealthy" if name in unhealthy else "healthy"
        if timeout and delay > timeout:
            raise DockerError(f"timeout waiting for {project['name']}: context deadline exceeded")
        if unhealthy:
            raise DockerError(f"dependency failed to start: container {project['name']}-{unhealthy[0]}-1 is unhealthy")
        return 0
    if command == "ps":
        parse_flags(rest, {"-a": "all", "--all": "all"}, "docker compose ps")
        name = flags.get("project-name", [""])[-1]
        with world() as state:
            running = state["projects"].get(name, {})
        print("NAME\tIMAGE\tSERVICE\tSTATUS")
        for service, info in sorted(running.items()):
            print(f"{name}-{service}-1\t{info['image']}\t{service}\tUp ({info['health']})")
        return 0
    raise DockerError(f"stand-in: `docker compose {command}` is not modeled", NOT_MODELED)


def login(args: list[str], config_dir: str | None) -> tuple[int, str | None]:
    flags, positional = parse_flags(
        args,
        {
            "-u": "username=",
            "--username": "username=",
            "-p": "password=",
            "--password": "password=",
            "--password-stdin": "password-stdin",
        },
        "docker login",
    )
    if len(positional) > 1:
        raise DockerError('"docker login" requires at most 1 argument.')
    if "password" in flags:
        raise DockerError(
            "stand-in: a password on the command line is what dreamscape-deploy must never do", NOT_MODELED
        )
    if "password-stdin" not in flags:
        raise DockerError("Error: Cannot perform an interactive login from a non TTY device")
    if "username" not in flags:
        raise DockerError("Must provide --username with --password-stdin")
    token = sys.stdin.read()
    secret = token.rstrip("\n")
    if not secret:
        raise DockerError("Error: Password Required")
    registry = positional[0] if positional else "https://index.docker.io/v1/"
    expected = control().get("registry_tokens", {}).get(registry)
    if expected is not None and expected != secret:
        raise DockerError(f'Error response from daemon: Get "https://{registry}/v2/": unauthorized: bad credentials')
    directory = Path(config_dir or os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    auth = base64.b64encode(f"{flags['username'][-1]}:{secret}".encode()).decode()
    config.setdefault("auths", {})[registry] = {"auth": auth}
    path.write_text(json.dumps(config, indent=1))
    print("Login Succeeded")
    return 0, token


def run(args: list[str]) -> tuple[int, str | None]:
    spec = {"--config": "config=", "-c": "context=", "--context": "context=", "-H": "host=", "--host": "host="}
    flags, rest = split_command(args, spec, "docker")
    if {"context", "host"} & set(flags):
        raise DockerError("stand-in: docker contexts and hosts are not modeled", NOT_MODELED)
    if not rest:
        raise DockerError("stand-in: `docker` without a command prints help", NOT_MODELED)
    command, rest = rest[0], rest[1:]
    if command == "login":
        return login(rest, flags.get("config", [None])[-1])
    if command == "compose":
        if "config" in flags:
            os.environ["DOCKER_CONFIG"] = flags["config"][-1]
        return compose(rest), None
    real = {"build", "buildx", "container", "image", "images", "info", "inspect", "logout", "logs", "network"}
    real |= {"ps", "pull", "push", "rm", "rmi", "run", "start", "stop", "system", "tag", "version", "volume"}
    if command in real:
        raise DockerError(f"stand-in: `docker {command}` is not modeled", NOT_MODELED)
    raise DockerError(f"docker: '{command}' is not a docker command.\nSee 'docker --help'")


def main() -> int:
    began = time.time()
    args = sys.argv[1:]
    stdin = None
    try:
        code, stdin = run(args)
    except DockerError as error:
        print(error, file=sys.stderr)
        code = error.code
    record = {
        "argv": args,
        "stdin": stdin,
        "env": {k: os.environ[k] for k in RECORDED_ENV if k in os.environ},
        "uid": os.getuid(),
        "rc": code,
        "start": began,
        "end": time.time(),
    }
    with open(CALLS, "a") as log:
        log.write(json.dumps(record) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
