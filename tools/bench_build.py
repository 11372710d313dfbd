"""build-test's image build on a real Docker Engine, cold and warm from the environment's layer cache.

Runs the central pipeline's own "Build the image" step (the rendered bash, as build-test runs
it) on a component whose Dockerfile has a CPU-bound `RUN` step, on a fresh runner each time
(the run's images and the engine's build cache removed first). Cold: no cache for the
environment yet. Warm: after `ci.publish` pushed the previous build's image and its cache tag
to a registry on 127.0.0.1, as a deploying run's publish job does. Reports the median seconds
of each, and the ratio.

Needs root, the Docker engine, docker-registry and busybox-static (`.ci/run` installs them).
Usage: .venv/bin/python tools/bench_build.py [--runs 3] [--work 3000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ci import plan, publish, scan  # noqa: E402
from components.workflows import central  # noqa: E402
from tests.central_support import settings_of  # noqa: E402
from tests.harness import engine  # noqa: E402

COMPONENT = "auth-service"


def build_step_body(settings) -> str:
    document = central.document(central.CentralArgs.from_settings(settings))
    steps = document["jobs"]["build-test"]["steps"]
    return next(s for s in steps if s.get("name") == "Build the image (never pushed from here)")["run"]


def fresh_runner(registry: str) -> None:
    gone = set()
    for line in engine.docker("images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}").splitlines():
        repository, tag, image = line.split()
        if repository.startswith(("dreamscape-build/", registry + "/")):
            gone.add(image if tag == "<none>" else f"{repository}:{tag}")
    if gone:
        engine.docker("rmi", "--force", *sorted(gone))
    engine.docker("builder", "prune", "--all", "--force")


def run(runs: int, work: int) -> dict[str, list[float]]:
    local = engine.Engine().start()
    try:
        base = local.build("healthy").local
        registry = f"{local.registry.host}/dreamscape"
        body = build_step_body(settings_of("production", registry=registry))
        timings: dict[str, list[float]] = {"cold": [], "warm": []}
        with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
            workspace = Path(tmp)
            folder = workspace / plan.SOURCE_DIR / COMPONENT
            folder.mkdir(parents=True)
            (folder / "index.js").write_text("console.log('auth')\n")
            (workspace / "temp").mkdir()
            for n in range(runs):
                for kind in ("cold", "warm"):
                    environment = f"bench{n}"  # a cache of its own per round: the first build is cold
                    (folder / "Dockerfile").write_text(
                        f"FROM {base}\n"
                        f"RUN i=0; while [ $i -lt {work} ]; do i=$((i+1)); done; echo {n} > /built\n"
                        "COPY . /app/\n"
                    )
                    fresh_runner(local.registry.host)
                    sha = f"{n:040x}" if kind == "cold" else f"{n + 1000:040x}"
                    env = {
                        **os.environ,
                        "COMPONENT": COMPONENT,
                        "SHA": sha,
                        "PLATFORM": "",
                        "CACHE": plan.cache_ref(registry, COMPONENT, environment),
                        "RUNNER_TEMP": str(workspace / "temp"),
                    }
                    began = time.perf_counter()
                    subprocess.run(["bash", "-c", body], cwd=workspace, env=env, check=True, capture_output=True)
                    timings[kind].append(time.perf_counter() - began)
                    if kind == "cold":
                        # The deploying run's publish: the image, and the environment's cache tag.
                        archive = workspace / "temp" / scan.IMAGES_DIR / f"{COMPONENT}.tar"
                        tag = publish.tag_for(registry, COMPONENT, sha, "linux/amd64", f"{n}.1")
                        publish.publish(
                            COMPONENT,
                            archive,
                            scan.sha256_of(archive),
                            "linux/amd64",
                            tag,
                            registry,
                            plan.cache_ref(registry, COMPONENT, environment),
                        )
        fresh_runner(local.registry.host)
        return timings
    finally:
        local.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=int, default=3_000_000, help="iterations of the RUN step's shell loop")
    args = parser.parse_args()
    problems = engine.missing_prerequisites()
    if problems:
        print("bench_build: " + "; ".join(problems), file=sys.stderr)
        return 2
    timings = run(args.runs, args.work)
    cold, warm = statistics.median(timings["cold"]), statistics.median(timings["warm"])
    print(f"build-test's image build on a fresh runner, {args.runs} rounds (a RUN step of {args.work} loop turns)")
    print("| build | median | all runs |")
    print("| --- | --- | --- |")
    for kind, label in (("cold", "cold: no layer cache yet"), ("warm", "warm: the environment's layer cache")):
        print(
            f"| {label} | {statistics.median(timings[kind]):.2f} s | {', '.join(f'{s:.2f}' for s in timings[kind])} |"
        )
    print(f"warm / cold: {warm / cold:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
