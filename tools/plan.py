"""The offline plan: what `pulumi up` would register for a stack, without the CLI or a cloud.

    python tools/plan.py --stack S [--json FILE] [--render-dir DIR]

Runs the real program (`__main__.py` and the components) under Pulumi's mock engine with
the stack's config merged from `Pulumi.yaml` and `Pulumi.<S>.yaml`, then prints the
resource tree (type, name, parent) with key inputs and a count, the outputs, what the
deploy job's OCI identity may do (each statement of its policy, and the `DEPLOY_OCI_<ENV>`
variable the job reads), the OCI usage of every environment stack against the Always Free
allowance, and the CIS OCI items the registered resources meet or not (tools/cis.py). Secrets print as
`[secret]`. `--json` writes the same as data; `--render-dir` writes every generated file
exactly as it would be written (workflow and compose files at
`DIR/<repository>@<branch>/<path>`, cloud-init at `DIR/oci/<resource>/user-data.yaml`).

Exit codes: 0 planned, 2 bad configuration (the message names the key), 1 anything else.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components import settings as settings_module
from components.environment import cloudinit
from components.settings import ConfigError
from tools import cis, offline

REPOSITORY_FILE = "github:index/repositoryFile:RepositoryFile"
INSTANCE = "oci:Core/instance:Instance"
POLICY = "oci:Identity/policy:Policy"
VARIABLE = "github:index/actionsVariable:ActionsVariable"


def summarize(value: Any) -> str:
    """One short line for an input value; long text becomes its size and digest."""
    if value == offline.SECRET:
        return value
    if isinstance(value, str):
        if "\n" in value or len(value) > 72:
            digest = hashlib.sha256(value.encode()).hexdigest()[:12]
            return f"<{len(value.splitlines())} lines, {len(value)} bytes, sha256 {digest}>"
        return value
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 100 else text[:97] + "..."


def print_tree(plan: offline.Plan, out) -> None:
    children: dict[str | None, list[offline.Registered]] = {}
    urns = {r.urn for r in plan.resources}
    for r in plan.resources:
        parent = r.parent if r.parent in urns else None
        children.setdefault(parent, []).append(r)

    def walk(parent: str | None, depth: int) -> None:
        for r in children.get(parent, []):
            pad = "  " * depth
            print(f"{pad}{r.type}  {r.name}  (parent: {r.parent_name or 'stack'})", file=out)
            for key, value in sorted(offline.masked(r.inputs).items()):
                if key.startswith("__") or value in (None, "", [], {}):
                    continue
                print(f"{pad}    {key}: {summarize(value)}", file=out)
            walk(r.urn, depth + 1)

    walk(None, 0)


def as_json(plan: offline.Plan) -> dict[str, Any]:
    return {
        "stack": plan.stack,
        "resources": [
            {"type": r.type, "name": r.name, "parent": r.parent_name, "inputs": offline.masked(r.inputs)}
            for r in plan.resources
        ],
        "outputs": {k: offline.SECRET if k in plan.secret_outputs else v for k, v in plan.outputs.items()},
        "cisChecks": [check.as_json() for check in cis.checks(plan)],
    }


def print_deploy_identity(plan: offline.Plan, out) -> None:
    """Each statement of the deploy policy, as registered, and the variable naming the identity."""
    for policy in plan.of_type(POLICY):
        print(f"Policy {policy.plain('name')} ({policy.name}), in {policy.plain('compartmentId')}:", file=out)
        for statement in policy.plain("statements") or []:
            print(f"  {statement}", file=out)
    for variable in plan.of_type(VARIABLE):
        name = variable.plain("variableName") or ""
        if name.startswith("DEPLOY_OCI_") and not offline.is_secret(variable.inputs.get("value")):
            print(f"{name}: {variable.plain('value')}", file=out)


def render(plan: offline.Plan, directory: Path) -> list[Path]:
    """Write every generated file as `pulumi up` would write it; returns the paths."""
    written = []
    for r in plan.of_type(REPOSITORY_FILE):
        path = directory / f"{r.plain('repository')}@{r.plain('branch')}" / r.plain("file")
        written.append(_write(path, r.plain("content")))
    for r in plan.of_type(INSTANCE):
        user_data = (r.plain("metadata") or {}).get("user_data")
        if user_data:
            path = directory / "oci" / r.name / "user-data.yaml"
            written.append(_write(path, cloudinit.decode(user_data)))
    return written


def _write(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="dev, staging or production")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the plan as JSON here")
    parser.add_argument("--render-dir", type=Path, metavar="DIR", help="write every generated file under DIR")
    args = parser.parse_args(argv)

    stack_file = offline.ROOT / f"Pulumi.{args.stack}.yaml"
    if not stack_file.exists():
        print(f"error: no stack file {stack_file.name}; stacks are dev, staging and production", file=sys.stderr)
        return 2
    try:
        plan = offline.run(args.stack)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    out = sys.stdout
    print(f"Offline plan of stack {args.stack} (Pulumi mock engine: no CLI, no credentials, no network)\n", file=out)
    for warning in plan.warnings:
        print(f"warning: {warning}", file=out)
    if plan.warnings:
        print(file=out)
    print_tree(plan, out)
    custom = [r for r in plan.resources if r.custom]
    print(f"\n{len(custom)} resources in {len(plan.resources) - len(custom)} components\n", file=out)
    print("Outputs:", file=out)
    for key, value in as_json(plan)["outputs"].items():
        if isinstance(value, str) and "\n" in value:
            print(f"  {key}:", file=out)
            for line in value.splitlines():
                print(f"    {line}", file=out)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            print(f"  {key}:", file=out)
            for item in value:
                print(f"    - {item}", file=out)
        elif isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
            print(f"  {key}:", file=out)  # appSecrets: one line per component, its secrets' names
            for name, items in value.items():
                print(f"    {name}: {', '.join(map(str, items))}", file=out)
        else:
            print(f"  {key}: {summarize(value)}", file=out)

    print("\nWhat the deploy job's OCI identity may do:", file=out)
    print_deploy_identity(plan, out)

    # The same report the cost guard checked before any resource was registered.
    print("\nOCI usage of all environment stacks against Oracle's Always Free allowance:", file=out)
    for line in settings_module.stack_allowance_report(args.stack).lines():
        print(f"  {line}", file=out)

    print("\nCIS OCI Foundations Benchmark 2.0 items, checked on the registered resources:", file=out)
    for check in cis.checks(plan):
        print(f"  {'met' if check.met else 'NOT MET':7}  {check.ref:7}  {check.title}", file=out)
        for problem in check.problems:
            print(f"      {problem}", file=out)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(as_json(plan), indent=2, sort_keys=True) + "\n")
    if args.render_dir:
        written = render(plan, args.render_dir)
        print(f"\nWrote {len(written)} generated files under {args.render_dir}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
