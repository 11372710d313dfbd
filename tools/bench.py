"""What the program costs as source repositories grow, and what a first `pulumi up` writes to GitHub.

    make bench                      # 4, 40 and 400 repositories, 5 runs each
    python tools/bench.py --sizes 4,40 --runs 3

For each size, the wiring owner's stack (production) is planned offline with a generated
config of N source repositories, in a fresh process per run (interpreter start and imports
included, as `pulumi up` pays them). Beside it, in the same run, a bare program registers the
very same resources (types, names, parents, inputs) with no logic at all: the ratio of the two
is what the program's own logic costs. The table goes to stdout and to bench/results.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STACK = "production"
KINDS = ("services", "frontend", "tests", "docs")
WRITE_DELAY_MS = 1000
"""pulumi-github's default `write_delay_ms` between writes with its legacy client."""


def generated_repositories(count: int) -> list[dict[str, Any]]:
    """`count` source repositories of every kind, two components each."""
    repos = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        deployable = kind in ("services", "frontend")
        components = []
        for j, role in enumerate(("api", "worker")):
            component: dict[str, Any] = {"name": f"r{i}-{role}"}
            if deployable:
                component |= {"port": 3000 + j, "healthPath": "/health"}
            components.append(component)
        repos.append(
            {
                "name": f"bench-repo-{i:03d}",
                "kind": kind,
                "deployable": deployable,
                "build": "npm ci",
                "test": "npm test",
                "components": components,
            }
        )
    return repos


def config_for(count: int, scope: str) -> tuple[dict[str, str], list[str]]:
    from tools import offline

    config, secret_keys = offline.stack_config(STACK)
    config["dreamscape-infra:sourceRepositories"] = json.dumps(generated_repositories(count))
    config["dreamscape-infra:dispatchTokenScope"] = scope
    return config, secret_keys


# --- the two programs, each run in its own process ----------------------------------------


def child_program(count: int, scope: str, record: Path | None) -> dict[str, Any]:
    from tools import offline

    config, secret_keys = config_for(count, scope)
    if scope == "organization":
        mocks = offline.OfflineMocks()
        mocks.call_answers.setdefault(
            "github:index/getOrganization:getOrganization", lambda a: {"login": a.get("name"), "id": "1"}
        )
    else:
        mocks = None
    plan = offline.run(STACK, config=config, secret_keys=secret_keys, mocks=mocks)
    if record is not None:
        record.write_text(
            json.dumps(
                [
                    {
                        "type": r.type,
                        "name": r.name,
                        "urn": r.urn,
                        "parent": r.parent,
                        "custom": r.custom,
                        "inputs": r.inputs,
                        "depends": r.options["dependsOn"],
                    }
                    for r in plan.resources
                ]
            )
        )
    github = [r for r in plan.resources if r.custom and r.type.startswith("github:")]
    per_type: dict[str, int] = {}
    for r in github:
        per_type[r.type] = per_type.get(r.type, 0) + 1
    return {"resources": sum(r.custom for r in plan.resources), "github": len(github), "github_by_type": per_type}


def _sdk_class(token: str) -> type | None:
    """The SDK class a hand-written program would construct for a type token, if any.

    `oci:Core/vcn:Vcn` is `pulumi_oci.core.Vcn`; `pulumi:providers:github` is
    `pulumi_github.Provider`.
    """
    import importlib

    package, module, name = token.split(":")
    module = module.split("/")[0]
    if package == "pulumi" and module == "providers":
        return getattr(importlib.import_module(f"pulumi_{name}"), "Provider", None)
    path = f"pulumi_{package}" if module == "index" else f"pulumi_{package}.{module.lower()}"
    return getattr(importlib.import_module(path), name, None)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _as_arguments(value: Any, top: bool = True) -> Any:
    """Recorded wire inputs as SDK keyword arguments: snake_case keys, secrets as secret Outputs."""
    import pulumi
    from pulumi.runtime import rpc

    if rpc.is_rpc_secret(value):
        return pulumi.Output.secret(_as_arguments(value["value"], top=False))
    if isinstance(value, dict):
        # Nested objects are the SDK's typed args (snake_case keys); maps such as tags keep theirs.
        keys_are_names = all(re.fullmatch(r"[a-z][A-Za-z0-9]*", k) for k in value)
        return {(_snake(k) if keys_are_names else k): _as_arguments(v, top=False) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_arguments(v, top=False) for v in value]
    return value


def child_baseline(record: Path) -> dict[str, Any]:
    """Register the recorded resources as a hand-written program would: the same SDK classes
    with the recorded inputs as literals, and no settings, rendering or other logic."""
    import contextvars

    import pulumi
    from pulumi.runtime.stack import wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    from tools import offline

    resources = json.loads(record.read_text())
    classes = {r["type"]: _sdk_class(r["type"]) for r in resources if r["custom"]}

    def run() -> None:
        mocks = offline.OfflineMocks()
        pulumi.runtime.set_mocks(mocks, project="dreamscape-infra", stack=STACK, preview=False)
        made: dict[str, pulumi.Resource] = {}
        for r in resources:
            # The same order the program's data flow imposed: each resource waits for those
            # its inputs came from (recorded by the engine), nothing else.
            depends = [made[urn] for urn in r["depends"] if urn in made]
            opts = pulumi.ResourceOptions(parent=made.get(r["parent"]), depends_on=depends)
            cls = classes.get(r["type"])
            if not r["custom"]:
                made[r["urn"]] = pulumi.ComponentResource(r["type"], r["name"], None, opts=opts)
            elif cls is None:
                made[r["urn"]] = pulumi.CustomResource(r["type"], r["name"], dict(r["inputs"]), opts=opts)
            else:
                arguments = {_snake(k): _as_arguments(v) for k, v in r["inputs"].items() if not k.startswith("__")}
                made[r["urn"]] = cls(r["name"], opts=opts, **arguments)
        _sync_await(wait_for_rpcs())

    contextvars.Context().run(run)
    return {"resources": sum(r["custom"] for r in resources)}


def measure(args: list[str]) -> tuple[float, float, dict[str, Any]]:
    """Wall seconds and peak RSS (MiB) of one child process, and what it printed."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=600, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"bench child {args} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, result.pop("maxrss_kib") / 1024, result


# --- the table ---------------------------------------------------------------------------


def bench(sizes: list[int], runs: int) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in sizes:
            record = Path(tmp) / f"resources-{count}.json"
            program = [
                measure(["--child", "program", "--count", str(count), "--record", str(record)]) for _ in range(runs)
            ]
            baseline = [measure(["--child", "baseline", "--record", str(record)]) for _ in range(runs)]
            org = measure(["--child", "program", "--count", str(count), "--scope", "organization"])[2]
            info = program[0][2]
            rows.append(
                {
                    "repositories": count,
                    "resources": info["resources"],
                    "program_s": statistics.median(w for w, _, _ in program),
                    "program_mib": statistics.median(m for _, m, _ in program),
                    "baseline_s": statistics.median(w for w, _, _ in baseline),
                    "baseline_mib": statistics.median(m for _, m, _ in baseline),
                    "github_repository_scope": info["github"],
                    "github_organization_scope": org["github"],
                    "github_by_type": info["github_by_type"],
                }
            )
    return {"runs": runs, "rows": rows, "machine": machine()}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"
    )


def table(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        f"Offline plan of the `{STACK}` stack (the wiring owner), median of {result['runs']} runs, "
        f"each in a fresh process. Machine: {result['machine']}.",
        "",
        "| repositories | resources | program s | program MiB | bare baseline s | baseline MiB | program / baseline "
        "| GitHub resources (repository scope) | per repository | GitHub resources (organization scope) "
        "| per repository | first `pulumi up` writes at 1 s each |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        n = r["repositories"]
        write_time = _duration(r["github_repository_scope"] * WRITE_DELAY_MS / 1000)
        lines.append(
            f"| {n} | {r['resources']} | {r['program_s']:.2f} | {r['program_mib']:.0f} | {r['baseline_s']:.2f} "
            f"| {r['baseline_mib']:.0f} | {r['program_s'] / r['baseline_s']:.2f} | {r['github_repository_scope']} "
            f"| {r['github_repository_scope'] / n:.2f} | {r['github_organization_scope']} "
            f"| {r['github_organization_scope'] / n:.2f} | {write_time} |"
        )
    by_size = {r["repositories"]: r for r in rows}
    lines.append("")
    lines.append("Targets:")
    if 4 in by_size:
        lines.append(
            f"- 4 repositories plan in ≤ 3 s: {by_size[4]['program_s']:.2f} s, {_verdict(by_size[4]['program_s'] <= 3)}"
        )
    if 40 in by_size and 400 in by_size:
        growth = by_size[400]["program_s"] / by_size[40]["program_s"]
        lines.append(f"- 400 repositories ≤ 12 × the cost of 40: {growth:.1f} ×, {_verdict(growth <= 12)}")
    worst = max(r["program_s"] / r["baseline_s"] for r in rows)
    lines.append(f"- program ≤ 1.5 × the bare baseline: at most {worst:.2f} ×, {_verdict(worst <= 1.5)}")
    rep = _marginal(rows, "github_repository_scope")
    org = _marginal(rows, "github_organization_scope")
    lines.append(f"- ≤ 3 GitHub resources per source repository, repository scope: {rep:.2f}, {_verdict(rep <= 3)}")
    lines.append(f"- ≤ 2 GitHub resources per source repository, organization scope: {org:.2f}, {_verdict(org <= 2)}")
    return "\n".join(lines) + "\n"


def _marginal(rows: list[dict[str, Any]], key: str) -> float:
    """GitHub resources each additional repository adds (the fixed ones of the infra repo excluded)."""
    first, last = rows[0], rows[-1]
    if first is last:
        return first[key] / first["repositories"]
    return (last[key] - first[key]) / (last["repositories"] - first["repositories"])


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4,40,400")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench")
    parser.add_argument("--child", choices=("program", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scope", default="repository", help=argparse.SUPPRESS)
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = (
            child_program(args.count, args.scope, args.record)
            if args.child == "program"
            else child_baseline(args.record)
        )
        result["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(result))
        return 0

    result = bench([int(s) for s in args.sizes.split(",")], args.runs)
    text = table(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
