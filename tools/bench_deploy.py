"""The deploy's own overhead: connect, lock, compose calls, summary, with docker's time taken out.

Runs the real program behind the e2e tests' sshd (tests/harness/sshd.py) with the docker
stand-in, deploys N times (each a new release, so none is a no-op) and reports medians:
- wall: the `ssh ... deploy` call as the pipeline's step sees it;
- docker: time spent inside the stand-in's calls (what a real engine replaces);
- overhead: wall minus docker, the part this project owns;
- refused: a refused command (`ssh ... id`): connection and program start alone.

Needs what the e2e tests need (root, openssh-server, python3-yaml, python3-jsonschema).
Usage: .venv/bin/python tools/bench_deploy.py [--runs 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.environment import deploy_program  # noqa: E402
from tests.harness.sshd import DeployServer, missing_prerequisites  # noqa: E402

COMPONENTS = ("auth-service", "gateway")
COMPOSE = "services:\n" + "".join(
    f"  {name}:\n    image: ${{{deploy_program.image_variable(name)}:?{name} has no image yet}}\n"
    for name in COMPONENTS
)


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr.strip()
    load = os.getloadavg()[0]
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, {ssh}, load {load:.2f} at start"


def timed(call) -> tuple[float, subprocess.CompletedProcess]:
    began = time.perf_counter()
    result = call()
    return time.perf_counter() - began, result


def run(runs: int) -> dict:
    server = DeployServer().start()
    try:
        samples = []
        for n in range(-2, runs):  # two warm-up deploys, not counted
            pairs = {name: f"ghcr.io/dreamscape/{name}:bench-{n + 2}" for name in COMPONENTS}
            before = len(server.calls())
            wall, result = timed(lambda pairs=pairs: server.deploy(pairs, COMPOSE))
            if result.returncode != 0:
                raise RuntimeError(f"deploy {n} exited {result.returncode}: {result.stderr.decode()}")
            docker = sum(c["end"] - c["start"] for c in server.calls()[before:])
            if n >= 0:
                samples.append({"wall": wall, "docker": docker, "overhead": wall - docker})
        refused = []
        for _ in range(runs):
            wall, result = timed(lambda: server.ssh("id"))
            assert result.returncode == deploy_program.EXIT["BAD_INPUT"]
            refused.append(wall)
    finally:
        server.stop()
    medians = {key: statistics.median(s[key] for s in samples) for key in ("wall", "docker", "overhead")}
    return {"runs": runs, "machine": machine(), "median": medians | {"refused": statistics.median(refused)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    problems = missing_prerequisites()
    if problems:
        print("bench_deploy: " + "; ".join(problems), file=sys.stderr)
        return 2
    report = run(args.runs)
    median = report["median"]
    print(f"deploy over sshd with the docker stand-in, median of {report['runs']} runs")
    print(f"machine: {report['machine']}")
    print("| measure | median |")
    print("| --- | --- |")
    for key, label in (
        ("wall", "`ssh ... deploy`, as the pipeline sees it"),
        ("docker", "inside the docker stand-in (two configs, pull, up)"),
        ("overhead", "the deploy's own overhead (wall - docker)"),
        ("refused", "a refused command: connect and program start"),
    ):
        print(f"| {label} | {median[key] * 1000:.0f} ms |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
