"""The central pipeline's publish step: push each scanned image archive under a new tag, output digests.

    python3 -m ci.publish

Runs in `publish`, the only job with a write scope, only for runs that deploy, and runs nothing
of the source: `docker load`, `tag` and `push` on the archives build-test left. For each
component of the run, the archive must be the one the scan passed (its sha256), hold exactly one
image, and be built for the environment's platform. It goes to
`<registry>/<component>:<sha>-<os>-<arch>-<run id>.<attempt>`, a tag that must not exist yet: a
tag is never moved to another image. Output `images`: `<component>=<registry>/<component>@sha256:...`
for each, what the deploy job hands the VM.

Each image also goes to its environment's layer cache (`ci.plan.cache_ref`), which build-test
reads and only this job writes.

Inputs (environment): `COMPONENTS_JSON`, `SHA` and `ENVIRONMENT` (resolve's), `PLATFORM` (the build plan's),
`SCANNED_ARCHIVES` (security-scan's `scanned`), the runner's `GITHUB_RUN_ID` and
`GITHUB_RUN_ATTEMPT`; the registry comes from the data file. The job logged in beforehand.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ci import config, runner
from ci.plan import cache_ref
from ci.scan import IMAGES_DIR, sha256_of
from components import rules

ABSENT = re.compile(r"manifest unknown|not found|denied", re.IGNORECASE)
"""What `docker pull` says of a tag that does not exist. GitHub's registry answers "denied" for
a package that does not exist yet (a first push), as for credentials it refuses, whose push
then fails the same way."""


class PublishError(Exception):
    pass


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [""]
        raise PublishError(f"docker {args[0]} failed (exit {result.returncode}): {last[0]}")
    return result


def passed_archives(scanned: str) -> dict[str, str]:
    """security-scan's output, `<component>=sha256:<sum> ...`, as a mapping."""
    return dict(pair.split("=", 1) for pair in scanned.split() if "=" in pair)


def tag_for(registry: str, component: str, sha: str, platform: str, run: str) -> str:
    return f"{registry}/{component}:{sha}-{platform.replace('/', '-')}-{run}"


def publish(
    component: str, archive: Path, passed: str | None, platform: str, tag: str, registry: str, cache: str = ""
) -> str:
    """Push one archive under `tag`; returns `<registry>/<component>@sha256:...`.

    With `cache`, the image also becomes the environment's layer cache (ci.plan.cache_ref): a
    tag outside the component's repository, moved on every publish and never deployed. A
    failed cache push is a warning: the next build is only colder.
    """
    if not archive.is_file():
        raise PublishError(f"no image archive for {component}")
    if sha256_of(archive) != passed:
        raise PublishError(f"the archive of {component} is not the one the scan passed")
    loaded = [
        line.removeprefix("Loaded image: ")
        for line in docker("load", "--quiet", "--input", str(archive)).stdout.splitlines()
        if line.startswith("Loaded image: ")
    ]
    # Exactly one image: the scan read one, and the one pushed must be that one.
    if len(loaded) != 1:
        raise PublishError(f"the archive of {component} must hold exactly one tagged image")
    [image] = loaded
    built = docker("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", image).stdout.strip()
    if built != platform:
        raise PublishError(f"the image of {component} is built for {built}, the environment runs {platform}")
    # A tag is never moved to another image: this run's tags are new, or the run stops. The
    # engine asks the registry (TLS as configured); any answer but "absent" stops the run.
    pull = docker("pull", "--quiet", tag, check=False)
    if pull.returncode == 0:
        raise PublishError(f"{tag} already exists; it is never replaced")
    said = (pull.stderr + pull.stdout).strip()
    if not ABSENT.search(said):
        raise PublishError(f"could not tell whether {tag} exists: {said.splitlines()[-1] if said else 'no answer'}")
    docker("tag", image, tag)
    docker("push", "--quiet", tag)
    digests = docker("image", "inspect", "--format", '{{join .RepoDigests "\\n"}}', tag).stdout.split()
    reference = next((d for d in digests if d.startswith(f"{registry}/{component}@sha256:")), None)
    if reference is None:
        raise PublishError(f"no digest for {tag} after the push")
    print(f"Pushed {tag} as {reference}", flush=True)
    if cache:
        docker("tag", image, cache)
        pushed = docker("push", "--quiet", cache, check=False)
        if pushed.returncode == 0:
            print(f"Layer cache: {cache}", flush=True)
        else:
            said = (pushed.stderr.strip() or pushed.stdout.strip()).splitlines()[-1:] or ["no answer"]
            runner.annotate("warning", "Layer cache", f"could not push {cache}: {said[0]}")
    return reference


def publish_all(components: Sequence[str], env: Mapping[str, str], registry: str) -> list[str]:
    platform = env.get("PLATFORM", "")
    if not platform:
        raise PublishError("the build plan named no platform for this deploying run")
    passed = passed_archives(env.get("SCANNED_ARCHIVES", ""))
    run = f"{env['GITHUB_RUN_ID']}.{env['GITHUB_RUN_ATTEMPT']}"
    sha = env.get("SHA", "")
    if not rules.is_sha(sha):
        raise PublishError("SHA is not a commit sha")
    environment = env.get("ENVIRONMENT", "")
    if environment not in rules.ENVIRONMENTS:
        raise PublishError("ENVIRONMENT is not an environment")
    pairs = []
    for component in components:
        if not rules.is_component(component):
            raise PublishError(f"{component!r} is not a component name")
        tag = tag_for(registry, component, sha, platform, run)
        archive = Path(IMAGES_DIR) / f"{component}.tar"
        cache = cache_ref(registry, component, environment)
        reference = publish(component, archive, passed.get(component), platform, tag, registry, cache)
        pairs.append(f"{component}={reference}")
    return pairs


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        registry = config.load().registry
        components = json.loads(env.get("COMPONENTS_JSON", "[]"))
        if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
            raise PublishError("COMPONENTS_JSON is not a list of names")
        pairs = publish_all(components, env, registry)
    except (PublishError, config.ConfigError, ValueError) as error:
        runner.annotate("error", "Publish", str(error))
        return 1
    runner.set_outputs({"images": " ".join(pairs)}, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
