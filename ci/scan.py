"""The central pipeline's image scan: each image archive through trivy, at the configured severity.

    python3 -m ci.scan

Runs in `security-scan` after the trivy action has scanned the source tree and installed trivy
(fresh from upstream, no Actions cache). Every archive build-test left (`images/<component>.tar`,
downloaded merged) is scanned for vulnerabilities and secrets at the stack's `scanSeverity` and
above; the first finding fails the job. Output `scanned`: `<component>=sha256:<sum>` of each
archive that passed, the only archives `publish` will push.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ci import config, runner

IMAGES_DIR = "images"
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
"""Trivy's severities, lowest first; the scan fails on the configured one and every one above."""


def severities_from(threshold: str) -> str:
    """`HIGH` -> `HIGH,CRITICAL`: the severities at or above the threshold."""
    if threshold not in SEVERITIES:
        raise ValueError(f"unknown severity {threshold!r}; expected one of {', '.join(SEVERITIES)}")
    return ",".join(SEVERITIES[SEVERITIES.index(threshold) :])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def trivy_command(archive: Path, severities: str) -> list[str]:
    return [
        "trivy",
        "image",
        "--input",
        str(archive),
        "--scanners",
        "vuln,secret",
        "--severity",
        severities,
        "--exit-code",
        "1",
        "--no-progress",
        "--format",
        "table",
    ]


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        severities = severities_from(config.load().scan_severity)
    except (config.ConfigError, ValueError) as error:
        runner.annotate("error", "Image scan", str(error))
        return 1
    scanned = []
    for archive in sorted(Path(IMAGES_DIR).glob("*.tar")):
        component = archive.stem
        print(f"Scanning the image of {component}", flush=True)
        # trivy reads only the archive; its report goes to the log as it comes.
        result = subprocess.run(trivy_command(archive, severities), check=False)
        if result.returncode != 0:
            runner.annotate(
                "error",
                "Image scan",
                f"the image of {component} has findings at {severities} (trivy exit {result.returncode})",
            )
            return 1
        scanned.append(f"{component}={sha256_of(archive)}")
    runner.set_outputs({"scanned": " ".join(scanned)}, env)
    print(f"Passed: {' '.join(scanned) or 'no image in this run'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
