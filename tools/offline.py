"""Run the real Pulumi program under the Python SDK's mock engine: no CLI, no cloud, no network.

Used by `tools/plan.py` and by the tests. It does what the engine would do with a stack:
merges `Pulumi.yaml` and `Pulumi.<stack>.yaml` into the config map (`secure:` values become
placeholders, marked secret), runs `__main__.py`, waits for every registration, and records
each resource with its parent, inputs and options. Provider functions are answered with
realistic shapes; an unknown one is an error, so a new invoke cannot slip through unanswered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import hashlib
import json
import runpy
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.sync_await import _ensure_event_loop

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components import settings as settings_module  # noqa: E402

SECRET = "[secret]"  # noqa: S105 - the mask printed in place of a secret
PLACEHOLDER_PREFIX = "offline-placeholder-"


@dataclass
class Registered:
    """One resource as the engine saw it."""

    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    """Inputs as sent; secret values stay wrapped (see `is_secret`)."""
    outputs: dict[str, Any]
    options: dict[str, Any]

    @property
    def parent_name(self) -> str | None:
        return self.parent.rsplit("::", 1)[-1] if self.parent else None

    def plain(self, key: str) -> Any:
        """An input with any secret wrapping removed (tests read secret inputs this way)."""
        return _unwrap(self.inputs.get(key))


@dataclass
class Plan:
    stack: str
    resources: list[Registered] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Registered:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    def children_of(self, parent: Registered) -> list[Registered]:
        return [r for r in self.resources if r.parent == parent.urn]


def is_secret(value: Any) -> bool:
    return rpc.is_rpc_secret(value)


def _unwrap(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return _unwrap(value["value"])
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def masked(value: Any) -> Any:
    """The value with every secret replaced by `[secret]`, for printing."""
    if rpc.is_rpc_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


# --- provider stand-ins --------------------------------------------------------------------


def _throwaway_ed25519(seed: str) -> dict[str, str]:
    """A real ed25519 key pair derived from the resource name: stable across runs, never real."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"offline:{seed}".encode()).digest())
    public_openssh = (
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    )
    blob = base64.b64decode(public_openssh.split()[1])
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return {
        "algorithm": "ED25519",
        "publicKeyOpenssh": public_openssh + "\n",
        "publicKeyPem": key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        "privateKeyOpenssh": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode(),
        "privateKeyPem": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "publicKeyFingerprintSha256": fingerprint,
        "publicKeyFingerprintMd5": hashlib.md5(blob, usedforsecurity=False).hexdigest(),
    }


def _ocid(kind: str, name: str) -> str:
    return f"ocid1.{kind}.oc1.eu-frankfurt-1.offline{hashlib.sha256(name.encode()).hexdigest()[:24]}"


ResourceAnswer = Callable[[pulumi_mocks.MockResourceArgs], dict[str, Any]]
CallAnswer = Callable[[dict[str, Any]], dict[str, Any]]


class InvokeFailedError(Exception):
    """Raised by a call answer to fail the invoke as the provider would (the program sees an error)."""

    def __init__(self, reason: str, property_name: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.property_name = property_name


class OfflineMocks(pulumi.runtime.Mocks):
    """Answers for the engine: resource outputs echo inputs plus what the provider computes."""

    def __init__(self) -> None:
        self.resource_answers: dict[str, ResourceAnswer] = {
            "tls:index/privateKey:PrivateKey": lambda a: _throwaway_ed25519(a.name),
        }
        self.call_answers: dict[str, CallAnswer] = {
            "github:index/getRepository:getRepository": self._repository,
            "github:index/getOrganization:getOrganization": self._organization,
        }
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.user_accounts: set[str] = set()
        """Logins that are user accounts, not organizations (GitHub answers 404 on /orgs/<login>)."""
        self.organization_plan = "team"
        """The plan `getOrganization` reports for every organization."""
        self.public_repositories: set[str] = set()
        """`OWNER/NAME`s that `getRepository` reports as public; every other one is private."""

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict]:
        outputs = dict(args.inputs)
        answer = self.resource_answers.get(args.typ)
        if answer is not None:
            outputs.update(answer(args))
        resource_id = outputs.get("id") or (
            _ocid("resource", args.name) if args.typ.startswith("oci:") else f"{args.name}-id"
        )
        return resource_id, outputs

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict, list]:
        self.calls.append((args.token, dict(args.args)))
        answer = self.call_answers.get(args.token)
        if answer is None:
            raise NotImplementedError(f"the offline engine has no answer for {args.token}; add one to tools/offline.py")
        try:
            return answer(dict(args.args)), []
        except InvokeFailedError as failure:
            return {}, [(failure.property_name, failure.reason)]

    def _repository(self, args: dict[str, Any]) -> dict[str, Any]:
        full = args.get("fullName") or args.get("name")
        name = full.split("/")[-1]
        number = int(hashlib.sha256(full.encode()).hexdigest()[:7], 16)
        return {
            "id": name,
            "name": name,
            "fullName": full if "/" in full else f"offline/{name}",
            "repoId": number,
            "nodeId": f"R_offline{number}",
            "defaultBranch": "main",
            "visibility": "public" if full in self.public_repositories else "private",
            "archived": False,
        }

    def _organization(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /orgs/<name>, as the provider reads it; a user account is a 404, as on GitHub."""
        login = args["name"]
        if login in self.user_accounts:
            raise InvokeFailedError(f"GET https://api.github.com/orgs/{login}: 404 Not Found []")
        number = int(hashlib.sha256(login.encode()).hexdigest()[:7], 16)
        return {
            "id": str(number),
            "login": login,
            "name": login,
            "orgname": login,
            "nodeId": f"O_offline{number}",
            "description": "",
            "plan": self.organization_plan,
            "summaryOnly": bool(args.get("summaryOnly")),
            "ignoreArchivedRepos": False,
            "repositories": [],
            "members": [],
            "users": [],
        }


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, plus what a plan needs: parents and options of each resource.

    Like the engine, it marks `additional_secret_outputs` as secret in what it returns.
    """

    def __init__(self, mocks: OfflineMocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []
        self.worker_loops: set[asyncio.AbstractEventLoop] = set()
        """Event loops the SDK's monitor made in executor threads; closed after the run."""

    def _note_loop(self) -> None:
        if threading.current_thread() is threading.main_thread():
            return
        with contextlib.suppress(RuntimeError):  # this thread made no loop
            self.worker_loops.add(asyncio.get_event_loop())

    def Invoke(self, request):  # noqa: N802 - the gRPC method name
        try:
            return super().Invoke(request)
        finally:
            self._note_loop()

    def RegisterResource(self, request):  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        self._note_loop()
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = rpc.deserialize_properties(request.object, keep_unknowns=True)
        state = self.resources[response.urn].state
        secret_outputs = set(request.additionalSecretOutputs)
        if secret_outputs:
            state = {k: rpc.wrap_rpc_secret(v) if k in secret_outputs else v for k, v in state.items()}
            response.object.CopyFrom(_serialize(state))
        self.registered.append(
            Registered(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                custom=request.custom,
                inputs=inputs,
                outputs=state,
                options={
                    "protect": request.protect,
                    "ignoreChanges": list(request.ignoreChanges),
                    "replaceOnChanges": list(request.replaceOnChanges),
                    "deleteBeforeReplace": request.deleteBeforeReplace,
                    "retainOnDelete": request.retainOnDelete,
                    "additionalSecretOutputs": sorted(secret_outputs),
                    "dependsOn": sorted(request.dependencies),
                },
            )
        )
        return response


def _serialize(state: dict[str, Any]):
    from pulumi.runtime.sync_await import _sync_await

    return _sync_await(rpc.serialize_properties(state, {}))


# --- config --------------------------------------------------------------------------------


def stack_config(stack: str, project_dir: Path = ROOT) -> tuple[dict[str, str], list[str]]:
    """The config map the CLI would hand the program, and its secret keys.

    Scalars as text, objects and lists as JSON, exactly as `pulumi up` passes them.
    A `secure:` value cannot be decrypted here: it becomes a placeholder, marked secret.
    """
    project = settings_module.read_project_config(project_dir)
    values: dict[str, Any] = {f"{settings_module.PROJECT}:{k}": v for k, v in project.items()}
    for key, value in settings_module.read_stack_file(stack, project_dir).items():
        full = key if ":" in key else f"{settings_module.PROJECT}:{key}"
        values[full] = value
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[key] = PLACEHOLDER_PREFIX + key.split(":", 1)[1]
            secret_keys.append(key)
        elif isinstance(value, str):
            config[key] = value
        else:
            config[key] = json.dumps(value)
    return config, secret_keys


# --- running -------------------------------------------------------------------------------


def run(
    stack: str,
    project_dir: Path = ROOT,
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    mocks: OfflineMocks | None = None,
) -> Plan:
    """Run `__main__.py` for `stack` and return what it registered and exported.

    `config` replaces the stack's merged config (tests pass generated ones). Each run gets a
    fresh context, so runs in one process do not see each other's resources.
    """
    if config is None:
        config, secret_keys = stack_config(stack, project_dir)
    return contextvars.Context().run(_run, stack, project_dir, config, secret_keys or [], mocks or OfflineMocks())


def run_program(
    program: Callable[[], None],
    stack: str = "test",
    mocks: OfflineMocks | None = None,
    config: dict[str, str] | None = None,
) -> Plan:
    """Run `program` (a function that builds resources, e.g. one component) instead of `__main__.py`.

    For component tests that build a component directly from its typed args.
    """
    return contextvars.Context().run(_run, stack, ROOT, config or {}, [], mocks or OfflineMocks(), program)


def _run(
    stack: str,
    project_dir: Path,
    config: dict[str, str],
    secret_keys: list[str],
    mocks: OfflineMocks,
    program: Callable[[], None] | None = None,
) -> Plan:
    # The SDK's mock monitor leaves an event loop in each executor thread, whose finalizers
    # fail noisily at interpreter exit. Each run gets its own executor; its threads are ended
    # and their loops closed when the run is over.
    executor = ThreadPoolExecutor(thread_name_prefix="offline-engine")
    _ensure_event_loop().set_default_executor(executor)
    monitor = RecordingMonitor(mocks)
    try:
        return _run_with(monitor, stack, project_dir, config, secret_keys, mocks, program)
    finally:
        executor.shutdown(wait=True)
        for loop in monitor.worker_loops:
            if not loop.is_closed():
                loop.close()


def _run_with(
    monitor: RecordingMonitor,
    stack: str,
    project_dir: Path,
    config: dict[str, str],
    secret_keys: list[str],
    mocks: OfflineMocks,
    program: Callable[[], None] | None,
) -> Plan:
    from pulumi.runtime.stack import wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    pulumi.runtime.set_mocks(mocks, project=settings_module.PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys=secret_keys)
    if program is None:
        runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")
    else:
        program()
    _sync_await(wait_for_rpcs())
    plan = Plan(stack=stack, resources=monitor.registered)
    root = pulumi.runtime.get_root_resource()
    for name, value in (root.outputs if root is not None else {}).items():
        output = pulumi.Output.from_input(value)
        plan.outputs[name] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            plan.secret_outputs.add(name)
    return plan
