"""The deploy on a real Docker Engine: a healthy deploy's time, a rollback's time, and the
requests that fail while a new release replaces the running one.

Runs the real program behind the e2e tests' sshd (tests/harness/sshd.py) on the local Docker
Engine, with the production stack's compose file (four services, production's health checks;
the gateway published on 127.0.0.1) and busybox images pushed to a registry on 127.0.0.1
(tests/harness/engine.py). Each deploy is a new release of all four services (new tags),
pulled from the registry as on a VM. Reports medians of:
- deploy: `ssh ... deploy` of a healthy release, as the pipeline's step sees it;
- rollback (crash): a release whose gateway crash-loops, restored to the one before;
- rollback (never healthy): a release whose gateway never answers its health check, with
  production's health wait (`deploy.waitTimeoutSeconds`), once;
- failed requests: a GET every 20 ms to the gateway's published port during each healthy
  deploy; a refused connection, a timeout (1 s) or a status other than 200 is a failure.

Needs what the e2e tests need (root, openssh-server, the Docker engine, docker-registry,
busybox-static; `.ci/run` installs them).
Usage: .venv/bin/python tools/bench_deploy.py [--runs 10] [--rollback-runs 3] [--json FILE]
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
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.environment import compose  # noqa: E402
from tests.central_support import settings_of  # noqa: E402
from tests.harness import engine  # noqa: E402
from tests.harness.sshd import DeployServer, missing_prerequisites  # noqa: E402

INTERVAL = 0.02
"""Seconds between two requests to the published port."""


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr.strip()
    docker = engine.docker("version", "--format", "Docker {{.Server.Version}}").strip()
    plugin = engine.docker("compose", "version", "--short").strip()
    load = os.getloadavg()[0]
    return (
        f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, {ssh}, {docker}, "
        f"Compose {plugin}, load {load:.2f} at start"
    )


class Prober(engine.Every):
    """A GET to the published port every INTERVAL seconds, counting what fails."""

    def __init__(self, port: int) -> None:
        super().__init__(INTERVAL, self._probe)
        self.url = f"http://127.0.0.1:{port}/"
        self.sent = 0
        self.failed = 0

    def _probe(self) -> None:
        self.sent += 1
        try:
            with urllib.request.urlopen(self.url, timeout=1) as response:  # noqa: S310 - 127.0.0.1
                ok = response.status == 200
        except OSError:
            ok = False
        self.failed += not ok


def run(runs: int, rollback_runs: int, machine_info: str) -> dict:
    settings = settings_of("production")
    local_engine = engine.Engine().start()
    server = DeployServer(local_engine).start()
    try:
        production = server.local(compose.render(settings.source_repositories))
        services = [c.name for r in settings.source_repositories if r.deployable for c in r.components]

        def release(tag: str, gateway: str = "healthy") -> dict[str, str]:
            pairs = {name: local_engine.registry.image(f"dreamscape/{name}", tag) for name in services}
            for name, reference in pairs.items():
                local_engine.publish(reference, gateway if name == "gateway" else "healthy")
            return pairs

        def deploy(pairs: dict[str, str], *flags: str) -> tuple[float, subprocess.CompletedProcess]:
            began = time.perf_counter()
            result = server.deploy(pairs, production, flags=flags, timeout=900)
            return time.perf_counter() - began, result

        def expect(result: subprocess.CompletedProcess, code: int, what: str) -> None:
            if result.returncode != code:
                raise RuntimeError(f"{what} exited {result.returncode}, not {code}: {result.stderr.decode()[-2000:]}")

        wait = ("--wait-timeout", str(settings.deploy.wait_timeout_seconds))
        _, first = deploy(release("warm-up"), *wait)  # the first release: nothing to replace yet
        expect(first, 0, "the first deploy")
        deploys, failed, sent = [], [], []
        for n in range(runs):
            pairs = release(f"bench-{n}")
            with Prober(server.http_port) as prober:
                seconds, result = deploy(pairs, *wait)
            expect(result, 0, f"deploy {n}")
            deploys.append(seconds)
            failed.append(prober.failed)
            sent.append(prober.sent)
        crash_rollbacks = []
        for n in range(rollback_runs):
            seconds, result = deploy(release(f"crash-{n}", "crash"), *wait)
            expect(result, 5, f"crash rollback {n}")
            crash_rollbacks.append(seconds)
        never_healthy, result = deploy(release("never-healthy", "unhealthy"), *wait)
        expect(result, 5, "the never-healthy rollback")
    finally:
        server.stop()
        local_engine.stop()
    return {
        "runs": runs,
        "rollback_runs": rollback_runs,
        "wait_timeout": settings.deploy.wait_timeout_seconds,
        "machine": machine_info,
        "deploy": deploys,
        "failed_requests": failed,
        "requests": sent,
        "rollback_crash": crash_rollbacks,
        "rollback_never_healthy": never_healthy,
        "median": {
            "deploy": statistics.median(deploys),
            "failed_requests": statistics.median(failed),
            "requests": statistics.median(sent),
            "rollback_crash": statistics.median(crash_rollbacks),
            "rollback_never_healthy": never_healthy,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rollback-runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    problems = missing_prerequisites()
    if problems:
        print("bench_deploy: " + "; ".join(problems), file=sys.stderr)
        return 2
    report = run(args.runs, args.rollback_runs, machine())
    median = report["median"]
    print(f"the deploy on a real Docker Engine: production's compose file, {report['runs']} deploys")
    print(f"machine: {report['machine']}")
    print("| measure | median | all runs |")
    print("| --- | --- | --- |")
    print(
        f"| healthy deploy (4 services, new images), `ssh ... deploy` | {median['deploy']:.1f} s | "
        + ", ".join(f"{s:.1f}" for s in report["deploy"])
        + " |"
    )
    print(
        f"| failed requests to the published port during a deploy (one every 20 ms) | "
        f"{median['failed_requests']:.0f} of {median['requests']:.0f} | "
        + ", ".join(f"{f}/{s}" for f, s in zip(report["failed_requests"], report["requests"], strict=True))
        + " |"
    )
    print(
        f"| rollback: the new gateway crash-loops | {median['rollback_crash']:.1f} s | "
        + ", ".join(f"{s:.1f}" for s in report["rollback_crash"])
        + " |"
    )
    print(
        f"| rollback: the new gateway never answers (`--wait-timeout {report['wait_timeout']}`) | "
        f"{median['rollback_never_healthy']:.1f} s | one run |"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
