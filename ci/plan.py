"""The central pipeline's build plan: one `build-test` job per component, and what each one builds.

    python3 -m ci.plan

Runs in `resolve` once the source is checked out at SOURCE_DIR, before anything of it runs
(nothing here executes the source; it only looks at which folders and files exist). Each
component gets one matrix entry: its build and test commands (the stack config's), whether it
builds an image (components of deployable repositories do), for which platform and on which
runner. A component the source commit lacks, or whose Dockerfile is missing, gets a `problem`
that fails its own build-test job, so the report judges it as the source's failure.

Inputs (environment): resolve's `SOURCE_REPO`, `ENVIRONMENT`, `DEPLOY`, `COMPONENTS_JSON`, and
the infra repository's variable `DEPLOY_PLATFORM_<ENV>` of each environment. Outputs: `builds`
(`{"include": [...]}` for the matrix) and `platform` (the deploy platform, empty when the run
builds natively).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ci import config, runner
from components import rules
from components.environment import names

SOURCE_DIR = "source"
PLATFORM_ARCHITECTURES = {"linux/amd64": "X64", "linux/arm64": "ARM64"}
"""Each deploy platform and the runner architecture (`runner.arch`) that builds it natively."""


class PlanError(Exception):
    pass


def cache_ref(registry: str, component: str, environment: str) -> str:
    """Where the layer cache of a component's builds for one environment lives.

    `publish` (gate tier) pushes each image it published there too, with its inline cache
    metadata; build-test (untrusted) only reads it. One per environment, so a build for
    production reads only layers of images built from production's branches.
    """
    return f"{registry}/cache/{component}:{environment}"


def deploy_platform(environment: str, env: Mapping[str, str]) -> str:
    variable = names.platform_variable(environment)
    platform = env.get(variable, "")
    if platform not in PLATFORM_ARCHITECTURES:
        raise PlanError(
            f"the infra repository variable {variable} is missing or not"
            f" {' or '.join(PLATFORM_ARCHITECTURES)}: pulumi up on the {environment} stack sets it"
        )
    return platform


def entries(
    repo: config.Repository,
    components: tuple[str, ...],
    source: Path,
    platform: str,
    settings: config.Config,
    environment: str,
) -> list[dict[str, str]]:
    """One matrix entry per component; `platform` is empty when the run builds natively."""
    runs_on = settings.runner
    if platform == "linux/arm64" and settings.arm_runner_label:
        runs_on = settings.arm_runner_label
    planned = []
    for name in components:
        if not rules.is_component(name):
            raise PlanError(f"{name!r} is not a component name")
        problem = ""
        folder = source / name
        if not folder.is_dir():
            problem = f"the source repository has no folder {name}: a component is a top-level folder"
        elif repo.deployable and not (folder / "Dockerfile").is_file():
            problem = f"{name}/Dockerfile is missing: each component of a deployable repository builds an image"
        planned.append(
            {
                "component": name,
                "build": repo.build,
                "test": repo.test,
                "image": "true" if repo.deployable else "false",
                "platform": platform,
                "arch": PLATFORM_ARCHITECTURES.get(platform, ""),
                "runs-on": runs_on,
                "cache": cache_ref(settings.registry, name, environment) if repo.deployable else "",
                "problem": problem,
            }
        )
    return planned


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        settings = config.load()
        repo = settings.repository(env["SOURCE_REPO"])
        if repo is None:
            raise PlanError(f"{env['SOURCE_REPO']} is not a configured repository")
        components = tuple(json.loads(env["COMPONENTS_JSON"]))
        # A run that deploys builds its images for the environment's platform; any other, natively.
        deploys = env.get("DEPLOY") == "true" and repo.deployable
        platform = deploy_platform(env["ENVIRONMENT"], env) if deploys else ""
        planned = entries(repo, components, Path(SOURCE_DIR), platform, settings, env["ENVIRONMENT"])
    except (PlanError, config.ConfigError) as error:
        runner.annotate("error", "Build plan", str(error))
        return 1
    for entry in planned:
        what = f"image for {entry['platform'] or 'the runner'}" if entry["image"] == "true" else "no image"
        print(f"{entry['component']}: {entry['problem'] or what}, on {entry['runs-on']}")
    runner.set_outputs({"builds": json.dumps({"include": planned}, separators=(",", ":")), "platform": platform}, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
