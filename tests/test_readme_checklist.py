"""The README's "Zero to first deploy", followed as written, as far as it goes without a cloud.

Every `bash` block of the section runs, in order, in one bash, in a fresh copy of the project:
`make init` and `make plan` for real; `pulumi`, `git` and `curl` are shims that record each
call and refuse what the real tool would (a subcommand the CLI does not have, a config key
neither the program nor the OCI provider reads). Stdin answers the `read` lines and the
prompts, as a user types them. What runs after `pulumi up` (the pipeline, the deploy, the
commit status) is tested against its stand-ins elsewhere: test_central*.py, test_deploy*.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pulumi_oci.config.vars as oci_config
import yaml

from components import settings
from tests.conftest import copy_project

ROOT = Path(__file__).resolve().parent.parent
URL = "http://198.51.100.42"
TYPED = ["the-passphrase", "ghp_the_github_token", "github_pat_dispatch", "github_pat_pipeline"]
"""What the user types, in order: the two `read` lines and the two secret prompts."""
FLAGS = ("--secret", "--plaintext", "--path")
"""`pulumi config set`'s flags the checklist may use (a PEM value starts with dashes too)."""


def checklist() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Zero to first deploy\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def oci_keys() -> set[str]:
    """The OCI provider's config keys, as `pulumi config set oci:<key>` names them."""
    names = [n for n, v in vars(oci_config._ExportableConfig).items() if isinstance(v, property)]
    return {"oci:" + re.sub(r"_([a-z])", lambda m: m.group(1).upper(), n) for n in names}


PULUMI = r"""#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
allowed = {("login",), ("stack", "select"), ("config", "set"), ("preview",), ("up",), ("stack", "output")}
if tuple(args[:1]) not in allowed and tuple(args[:2]) not in allowed:
    sys.exit(f"pulumi: unknown command {args[:2]}")
entry = {"argv": args, "passphrase": os.environ.get("PULUMI_CONFIG_PASSPHRASE", ""),
         "github_token": os.environ.get("GITHUB_TOKEN", "")}
if args[:2] == ["config", "set"]:
    words = [a for a in args[2:] if a not in ("--secret", "--plaintext", "--path")]
    if len(words) == 1:  # the value is prompted for, as the CLI does for --secret
        typed = b""  # one byte at a time, as a shell's `read`: the next line is the next prompt's
        while not typed.endswith(b"\n") and (byte := os.read(0, 1)):
            typed += byte
        entry["typed"] = typed.decode().rstrip("\n")
if args[:3] == ["stack", "output", "url"]:
    print(os.environ["SHIM_URL"])
with open(os.environ["SHIM_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\n")
"""

RECORDER = r"""#!/usr/bin/env python3
import json, os, sys
with open(os.environ["SHIM_LOG"], "a") as log:
    log.write(json.dumps({"tool": os.path.basename(sys.argv[0]), "argv": sys.argv[1:]}) + "\n")
"""


def follow(tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path, list[dict]]:
    (tmp_path / "acme-infra").mkdir()
    project = copy_project(tmp_path / "acme-infra")
    shutil.copy(ROOT / "Makefile", project / "Makefile")
    # The program's environment is this one: make finds it installed (its marker newer than the
    # requirements) and installs nothing.
    (project / ".venv").symlink_to(ROOT / ".venv")
    os.utime(project / "requirements.txt", (0, 0))
    (tmp_path / "acme-api").mkdir()
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, text in (("pulumi", PULUMI), ("git", RECORDER), ("curl", RECORDER)):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    home = tmp_path / "home"
    (home / ".oci").mkdir(parents=True)
    (home / ".oci" / "oci_api_key.pem").write_text("-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n")
    log = tmp_path / "calls.jsonl"
    script = "set -euo pipefail\n" + "\n".join(textwrap.dedent(block) for block in checklist())
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=project,
        input="\n".join(TYPED) + "\n",
        env={
            "PATH": f"{shims}:{os.environ['PATH']}",
            "HOME": str(home),
            "SHIM_LOG": str(log),
            "SHIM_URL": URL,
            "LC_ALL": "C.UTF-8",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, project, calls


def test_the_checklist_runs_from_init_to_the_first_request(tmp_path: Path) -> None:
    result, project, calls = follow(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # Step 1, for real: init wrote the files, the plan ran with no example value left.
    assert "wrote Pulumi.production.yaml" in result.stdout
    assert "Offline plan of stack production" in result.stdout
    assert "still at their example values" not in result.stdout + result.stderr
    assert "githubTokenNeeds" in result.stdout
    config = yaml.safe_load((project / "Pulumi.yaml").read_text())["config"]
    repositories = [r["name"] for r in config["dreamscape-infra:sourceRepositories"]["value"]]

    # Steps 2 to 5: the CLI calls, in order, each one the real CLI has, with keys that are read.
    pulumi = [c for c in calls if "tool" not in c]
    commands = [" ".join(c["argv"][:2]) for c in pulumi]
    assert commands[0] == "login --local" and commands[1] == "stack select"
    assert commands[-4:] == ["preview", "up", "stack output", "stack output"]  # step 5, then step 7's URL
    known = oci_keys() | {f"dreamscape-infra:{k}" for k in settings._TOP}
    set_keys = []
    for call in pulumi:
        if call["argv"][:2] == ["config", "set"]:
            key = next(a for a in call["argv"][2:] if a not in FLAGS)
            full = key if ":" in key else f"dreamscape-infra:{key}"
            assert full in known, f"pulumi config set {key}: neither the program nor the OCI provider reads it"
            set_keys.append(full)
    assert set_keys == [
        "oci:tenancyOcid",
        "oci:userOcid",
        "oci:fingerprint",
        "oci:privateKey",
        "dreamscape-infra:dispatchToken",
        "dreamscape-infra:pipelineToken",
    ]
    secret = {next(a for a in c["argv"][2:] if a not in FLAGS) for c in pulumi if "--secret" in c["argv"]}
    assert secret == {"oci:privateKey", "dispatchToken", "pipelineToken"}
    typed = [c["typed"] for c in pulumi if "typed" in c]
    assert typed == ["github_pat_dispatch", "github_pat_pipeline"]
    # The passphrase and the GitHub token reached the CLI's environment, as the steps meant.
    up = next(c for c in pulumi if c["argv"] == ["up"])
    assert (up["passphrase"], up["github_token"]) == ("the-passphrase", "ghp_the_github_token")

    # Step 7: a push to main of a configured deployable repository, then the site.
    tools = [c for c in calls if "tool" in c]
    pushes = [c["argv"] for c in tools if c["tool"] == "git" and "push" in c["argv"]]
    assert len(pushes) == 1
    directory = pushes[0][pushes[0].index("-C") + 1]
    assert Path(directory).name in repositories and pushes[0][-2:] == ["origin", "main"]
    [curl] = [c["argv"] for c in tools if c["tool"] == "curl"]
    assert curl[-1] == f"{URL}/"
