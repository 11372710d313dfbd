"""The deploy on a real Docker Engine behind the VM's edge proxy: how long deploys and rollbacks
take, how many requests fail while they run, and when the new release serves all traffic.

Runs the real program behind the e2e tests' sshd and Caddy (tests/harness/) on the local Docker
Engine, with the production stack's compose file (four services, production's health checks;
the gateway published through the edge on 127.0.0.1) and busybox images pushed to a registry on
127.0.0.1 (tests/harness/engine.py). Each deploy is a new release of all four services (new
tags, pulled as on a VM); consecutive releases answer with different bodies. During each one,
steady traffic (tests/harness/traffic.py): a GET every 20 ms on new connections, one every
20 ms on a keep-alive connection, one-second requests from four clients. Reports medians of:
- deploy: `ssh ... deploy` of a healthy release, as the pipeline's step sees it;
- serving all traffic: from the deploy command to the first answer of the new release after
  which no request was answered by the old one;
- failed requests during each deploy, each rollback (`ssh ... rollback`), each release whose
  gateway crash-loops (restored) and one whose gateway never answers, with production's
  health wait (`deploy.waitTimeoutSeconds`), once. A refused or reset connection, a timeout or
  a status other than 200 is a failure.

Needs what the e2e tests need (root, openssh-server, caddy, the Docker engine, docker-registry,
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.environment import compose  # noqa: E402
from tests.central_support import settings_of  # noqa: E402
from tests.harness import engine  # noqa: E402
from tests.harness.sshd import DeployServer, missing_prerequisites  # noqa: E402
from tests.harness.traffic import Traffic  # noqa: E402

VARIANTS = ("healthy", "slow-0")
"""Two images that answer alike but say which they are: consecutive releases alternate, so each
answer tells which release served it."""


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
    caddy = subprocess.run(["caddy", "version"], capture_output=True, text=True, check=False).stdout.split()[0]
    load = os.getloadavg()[0]
    return (
        f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, {ssh}, {docker}, "
        f"Compose {plugin}, Caddy {caddy}, load {load:.2f} at start"
    )


def serving_all(load: Traffic, began: float, new_body: str) -> float | None:
    """Seconds from `began` to the first request answered by the new release after which no
    request was answered by another one."""
    answers = [a for a in load.of("fresh") + load.of("kept") if a.ok]
    last_other = max((a.began for a in answers if a.body != new_body), default=began)
    first_new_after = min((a.began for a in answers if a.body == new_body and a.began >= last_other), default=None)
    return None if first_new_after is None else first_new_after - began


def run(runs: int, rollback_runs: int, machine_info: str) -> dict:
    settings = settings_of("production")
    local_engine = engine.Engine().start()
    server = DeployServer(local_engine).start()
    measured: dict[str, list] = {
        "deploy": [], "deploy_failed": [], "deploy_requests": [], "serving_all": [],
        "rollback": [], "rollback_failed": [], "rollback_requests": [],
        "rollback_crash": [], "rollback_crash_failed": [],
    }  # fmt: skip
    try:
        production = server.local(compose.render(settings.source_repositories))
        services = [c.name for r in settings.source_repositories if r.deployable for c in r.components]

        def release(tag: str, variant: str, gateway: str | None = None) -> dict[str, str]:
            pairs = {name: local_engine.registry.image(f"dreamscape/{name}", tag) for name in services}
            for name, reference in pairs.items():
                local_engine.publish(reference, gateway if gateway and name == "gateway" else variant)
            return pairs

        wait = ("--wait-timeout", str(settings.deploy.wait_timeout_seconds))

        def measure(action, failed_key: str, requests_key: str | None = None) -> tuple[float, Traffic, float, object]:
            with Traffic("127.0.0.1", server.http_port) as load:
                time.sleep(0.5)
                began = time.monotonic()
                result = action()
                seconds = time.monotonic() - began
                time.sleep(0.5)
            measured[failed_key].append(len(load.failed()))
            if requests_key:
                measured[requests_key].append(len(load.answers))
            return seconds, load, began, result

        def expect(result: subprocess.CompletedProcess, code: int, what: str) -> None:
            if result.returncode != code:
                raise RuntimeError(f"{what} exited {result.returncode}, not {code}: {result.stderr.decode()[-2000:]}")

        first = server.deploy(release("warm-up", VARIANTS[0]), production, flags=wait, timeout=900)
        expect(first, 0, "the first deploy")
        for n in range(runs):
            variant = VARIANTS[(n + 1) % 2]
            pairs = release(f"bench-{n}", variant)
            seconds, load, began, result = measure(
                lambda pairs=pairs: server.deploy(pairs, production, flags=wait, timeout=900),
                "deploy_failed",
                "deploy_requests",
            )
            expect(result, 0, f"deploy {n}")
            measured["deploy"].append(seconds)
            measured["serving_all"].append(serving_all(load, began, variant))
        for n in range(rollback_runs):
            seconds, _, _, result = measure(
                lambda: server.ssh("rollback", *wait, timeout=900), "rollback_failed", "rollback_requests"
            )
            expect(result, 0, f"rollback {n}")
            measured["rollback"].append(seconds)
        for n in range(rollback_runs):
            pairs = release(f"crash-{n}", "healthy", gateway="crash")
            seconds, _, _, result = measure(
                lambda pairs=pairs: server.deploy(pairs, production, flags=wait, timeout=900), "rollback_crash_failed"
            )
            expect(result, 5, f"crash rollback {n}")
            measured["rollback_crash"].append(seconds)
        never = release("never-healthy", "healthy", gateway="unhealthy")
        began = time.monotonic()
        with Traffic("127.0.0.1", server.http_port) as load:
            result = server.deploy(never, production, flags=wait, timeout=900)
        never_healthy = time.monotonic() - began
        expect(result, 5, "the never-healthy rollback")
        never_failed = len(load.failed())
    finally:
        server.stop()
        local_engine.stop()
    median = {key: statistics.median(v for v in values if v is not None) for key, values in measured.items() if values}
    return {
        "runs": runs,
        "rollback_runs": rollback_runs,
        "wait_timeout": settings.deploy.wait_timeout_seconds,
        "machine": machine_info,
        **measured,
        "rollback_never_healthy": never_healthy,
        "rollback_never_healthy_failed": never_failed,
        "median": median,
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

    def runs(key: str, unit: str = "") -> str:
        return ", ".join(f"{v:.1f}{unit}" if isinstance(v, float) else str(v) for v in report[key])

    def failures(failed: str, total: str) -> str:
        return ", ".join(f"{f}/{t}" for f, t in zip(report[failed], report[total], strict=True))

    print(f"the deploy on a real Docker Engine behind the edge: production's compose file, {report['runs']} deploys")
    print(f"machine: {report['machine']}")
    print("| measure | median | all runs |")
    print("| --- | --- | --- |")
    print(
        f"| healthy deploy (4 services, new images), `ssh ... deploy` | {median['deploy']:.1f} s | {runs('deploy')} |"
    )
    print(
        f"| from the deploy command to the new release serving all traffic | {median['serving_all']:.1f} s | "
        f"{runs('serving_all')} |"
    )
    print(
        f"| failed requests during a deploy | {median['deploy_failed']:.0f} of {median['deploy_requests']:.0f} | "
        f"{failures('deploy_failed', 'deploy_requests')} |"
    )
    print(f"| rollback to the release before, `ssh ... rollback` | {median['rollback']:.1f} s | {runs('rollback')} |")
    print(
        f"| failed requests during a rollback | {median['rollback_failed']:.0f} of {median['rollback_requests']:.0f} | "
        f"{failures('rollback_failed', 'rollback_requests')} |"
    )
    print(
        f"| the new gateway crash-loops, the running release keeps the traffic | {median['rollback_crash']:.1f} s, "
        f"{median['rollback_crash_failed']:.0f} failed | {runs('rollback_crash')} |"
    )
    print(
        f"| the new gateway never answers (`--wait-timeout {report['wait_timeout']}`) | "
        f"{report['rollback_never_healthy']:.1f} s, {report['rollback_never_healthy_failed']} failed | one run |"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
