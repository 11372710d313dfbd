"""Write Pulumi.yaml and the stack files for your own organization, repositories and tenancy.

    make init ARGS='--owner acme --infra-repository acme-infra \\
        --repository acme-api=services --component acme-api/api:3000:/health:public \\
        --repository acme-tests=tests --component acme-tests/unit \\
        --region eu-frankfurt-1 \\
        --stack production=ocid1.compartment.oc1..<...> \\
        --identity-domain production=https://idcs-<id>.identity.oraclecloud.com \\
        --admin-key ~/.ssh/id_ed25519.pub --reviewer acme/release-managers'

Each flag left out is asked for when stdin is a terminal, else named in an error. One stack
alone is a valid start: it owns the shared wiring (the trigger files, the central pipeline,
DISPATCH_TOKEN), the last of `production`, `staging`, `dev` given otherwise. Shipped stack files
of the stacks not given are removed, so that their example values cannot ship; a stack file
that no longer holds them is kept unless `--force`.

Everything is checked with the program's own schema (components/settings.py) before a file is
written: a bad value stops with the key it would set, and nothing changes. Then it prints what
to do next: the tokens to set, `make plan`, `pulumi up`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components import rules
from components import settings as settings_module
from components.settings import PROJECT, ConfigError

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("services", "frontend", "tests", "docs")
DEPLOYABLE = ("services", "frontend")
ORDER = ("production", "staging", "dev")
"""The wiring owner is the first of these the stacks include."""
SIZES = {
    # Together within Oracle's Always Free allowance: 2 A1 OCPU, 12 GB, one micro.
    "production": {"shape": "VM.Standard.A1.Flex", "ocpus": 1, "memoryGbs": 6},
    "staging": {"shape": "VM.Standard.A1.Flex", "ocpus": 1, "memoryGbs": 6},
    "dev": {"shape": "VM.Standard.E2.1.Micro", "ocpus": 1, "memoryGbs": 1},
}
NETWORKS = {"dev": "10.10", "staging": "10.20", "production": "10.30"}
BUILD = {"services": "npm ci && npm run build --if-present", "frontend": "npm ci && npm run build"}
TEST = "npm test"
PLACEHOLDER_TOKENS = {
    "dispatchToken": "v1:cGxhY2Vob2xkZXI=:cmVwbGFjZSB3aXRoIHB1bHVtaSBjb25maWcgc2V0IC0tc2VjcmV0IGRpc3BhdGNoVG9rZW4=",
    "pipelineToken": "v1:cGxhY2Vob2xkZXI=:cmVwbGFjZSB3aXRoIHB1bHVtaSBjb25maWcgc2V0IC0tc2VjcmV0IHBpcGVsaW5lVG9rZW4=",
}
"""What the wiring owner's file holds until `pulumi config set --secret` replaces it (as shipped)."""
COMPONENT = re.compile(r"(?P<repo>[^/]+)/(?P<name>[^:]+)(:(?P<port>[0-9]+))?(:(?P<path>/[^:]*))?(:(?P<public>public))?")


class InitError(Exception):
    """A value init cannot use; the message names the flag."""


def _ask(prompt: str, flag: str, interactive: bool) -> str:
    if not interactive:
        raise InitError(f"{flag} is required (stdin is not a terminal, so nothing is asked)")
    answer = input(f"{prompt}: ").strip()
    if not answer:
        raise InitError(f"{flag}: no answer")
    return answer


def _ask_list(prompt: str, flag: str, interactive: bool) -> list[str]:
    """A comma-separated answer, as its non-empty items."""
    return [item.strip() for item in _ask(prompt, flag, interactive).split(",") if item.strip()]


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise InitError(f"{flag} {value!r}: expected <name>=<value>")
        found[key.strip()] = rest.strip()
    return found


def gather(args: argparse.Namespace, interactive: bool) -> dict[str, Any]:
    """The answers, from the flags or asked for."""
    owner = args.owner or _ask("GitHub organization or user that owns the repositories", "--owner", interactive)
    infra = args.infra_repository or _ask(
        "the infra repository (this repository, pushed there)", "--infra-repository", interactive
    )
    repositories = _pairs(args.repository, "--repository") or _pairs(
        _ask_list(
            "source repositories, as name=kind, comma separated (kinds: services, frontend, tests, docs)",
            "--repository",
            interactive,
        ),
        "--repository",
    )
    components = list(args.component)
    for name, kind in repositories.items():
        if not any(c.startswith(f"{name}/") for c in components):
            how = "name:port:healthPath[:public]" if kind in DEPLOYABLE else "name"
            components += [
                f"{name}/{c}"
                for c in _ask_list(f"components of {name}, as {how}, comma separated", "--component", interactive)
            ]
    region = args.region or _ask("OCI region, e.g. eu-frankfurt-1", "--region", interactive)
    stacks = _pairs(args.stack, "--stack") or _pairs(
        _ask_list(
            "stacks, as environment=compartment OCID, comma separated (production alone is a start)",
            "--stack",
            interactive,
        ),
        "--stack",
    )
    unknown = sorted(set(stacks) - set(rules.ENVIRONMENTS))
    if unknown:
        raise InitError(f"--stack {unknown[0]}=...: the environments are {', '.join(rules.ENVIRONMENTS)}")
    domains = _pairs(args.identity_domain, "--identity-domain")
    for stack in stacks:
        if stack not in domains and not args.api_key_email:
            domains[stack] = _ask(f"identity domain URL of {stack}'s deploy identity", "--identity-domain", interactive)
    emails = _pairs(args.api_key_email, "--api-key-email")
    keys = []
    for key in args.admin_key:
        path = Path(key).expanduser()
        keys.append(path.read_text().strip() if path.is_file() else key.strip())
    return {
        "owner": owner,
        "infra": infra,
        "repositories": repositories,
        "components": components,
        "region": region,
        "stacks": stacks,
        "domains": domains,
        "emails": emails,
        "admin_keys": keys,
        "reviewers": list(args.reviewer),
        "pushers": list(args.production_pusher),
    }


def _component(spec: str, kind: str) -> dict[str, Any]:
    match = COMPONENT.fullmatch(spec)
    if match is None:
        raise InitError(f"--component {spec!r}: expected <repository>/<name>[:<port>[:<healthPath>][:public]]")
    component: dict[str, Any] = {"name": match["name"]}
    if kind in DEPLOYABLE:
        if match["port"] is None:
            raise InitError(f"--component {spec!r}: a {kind} component is deployed: give its port (and health path)")
        component |= {"port": int(match["port"]), "healthPath": match["path"] or "/"}
        if match["public"]:
            component["hostPort"] = settings_module.HTTP_PORT
    elif match["port"] or match["public"]:
        raise InitError(f"--component {spec!r}: a {kind} repository is not deployed: give its name only")
    return component


def project_config(answers: dict[str, Any], wiring: str, root: Path = ROOT) -> dict[str, Any]:
    """Pulumi.yaml's `config:` (namespaced), from the shipped one: its defaults stay, Dreamscape's
    own organization, repositories, accessories and secrets go."""
    shipped = settings_module.read_project_config(root)
    keep = (
        "dispatchTokenScope",
        "deploySecretLayout",
        "ociDeployAuth",
        "scanSeverity",
        "allowPaidShapes",
        "commit",
        "deploy",
    )
    config = {f"{PROJECT}:{k}": shipped[k] for k in keep if k in shipped}
    repositories = []
    for name, kind in answers["repositories"].items():
        if kind not in KINDS:
            raise InitError(f"--repository {name}={kind}: the kind is one of {', '.join(KINDS)}")
        components = [_component(c, kind) for c in answers["components"] if c.split("/", 1)[0] == name]
        repository = {"name": name, "kind": kind, "deployable": kind in DEPLOYABLE, "components": components}
        repository |= {"build": BUILD.get(kind, "npm ci"), "test": TEST}
        repositories.append(repository)
    unknown = sorted({c.split("/", 1)[0] for c in answers["components"]} - set(answers["repositories"]))
    if unknown:
        raise InitError(f"--component {unknown[0]}/...: no --repository {unknown[0]}=<kind>")
    config |= {
        f"{PROJECT}:githubOwner": answers["owner"],
        f"{PROJECT}:infraRepository": answers["infra"],
        f"{PROJECT}:wiringStack": wiring,
        f"{PROJECT}:repositoryRules": {
            "approvals": 1,
            "productionPushers": answers["pushers"] or ["role:admin"],
            "pulumiBypass": ["role:admin"],
        },
        f"{PROJECT}:sourceRepositories": repositories,
    }
    if answers["emails"]:
        config[f"{PROJECT}:ociDeployAuth"] = "apiKey"
    return config


def stack_config(answers: dict[str, Any], stack: str, wiring: str) -> dict[str, Any]:
    prefix = NETWORKS[stack]
    oci: dict[str, Any] = {
        "compartmentId": answers["stacks"][stack],
        **SIZES[stack],
        "bootVolumeGbs": 50,
        "vcnCidr": f"{prefix}.0.0/16",
        "subnetCidr": f"{prefix}.1.0/24",
    }
    if answers["emails"]:
        oci["ciUserEmail"] = answers["emails"].get(stack) or _missing("--api-key-email", stack)
    else:
        oci["identityDomainUrl"] = answers["domains"].get(stack) or _missing("--identity-domain", stack)
    if answers["admin_keys"]:
        oci["adminSshKeys"] = answers["admin_keys"]
    config: dict[str, Any] = {"oci:region": answers["region"], f"{PROJECT}:oci": oci}
    if stack == wiring:
        config |= {f"{PROJECT}:{k}": {"secure": v} for k, v in PLACEHOLDER_TOKENS.items()}
    if stack == "production":
        reviewers = answers["reviewers"]
        config[f"{PROJECT}:protection"] = {"reviewers": reviewers} if reviewers else {"waiveReviewers": True}
    return config


def _missing(flag: str, stack: str) -> str:
    raise InitError(f"{flag} {stack}=<value> is required")


def plain(config: dict[str, Any]) -> dict[str, Any]:
    """Our namespace's keys without it, secure values as the placeholders they are."""
    return {
        k.removeprefix(f"{PROJECT}:"): (v["secure"] if isinstance(v, dict) and set(v) == {"secure"} else v)
        for k, v in config.items()
        if k.startswith(f"{PROJECT}:")
    }


def check(project: dict[str, Any], stacks: dict[str, dict[str, Any]]) -> None:
    """Each stack's merged config through the program's own checks, siblings included."""
    merged = {stack: {**plain(project), **plain(config)} for stack, config in stacks.items()}
    for stack, raw in merged.items():
        siblings = {name: other for name, other in merged.items() if name != stack}
        region = stacks[stack].get("oci:region")
        settings = settings_module.parse(raw, stack, sibling_stacks=siblings, oci_region=region)
        left = settings_module.example_keys(settings)
        if left:
            raise InitError(f"{stack}: {', '.join(left)} still at the shipped example values")


HEADER = "# Written by `make init`; every key is documented in README.md (Configuration).\n"


def write(project: dict[str, Any], stacks: dict[str, dict[str, Any]], force: bool, root: Path = ROOT) -> list[str]:
    """The files, after every check; returns what it did, one line each."""
    done = []
    for stack in rules.ENVIRONMENTS:
        path = root / f"Pulumi.{stack}.yaml"
        if stack in stacks or not path.exists():
            continue
        text = path.read_text()
        if not force and not any(e in text for values in settings_module.EXAMPLES.values() for e in values):
            raise InitError(f"{path.name} holds values of its own: keep it with --stack {stack}=..., or pass --force")
    shipped = yaml.safe_load((root / "Pulumi.yaml").read_text())
    # In Pulumi.yaml an object or a list is given as `value:` (Pulumi's project config syntax).
    shipped["config"] = {k: {"value": v} if isinstance(v, (dict, list)) else v for k, v in project.items()}
    (root / "Pulumi.yaml").write_text(HEADER + yaml.safe_dump(shipped, sort_keys=False, width=1000))
    done.append("wrote Pulumi.yaml")
    for stack in rules.ENVIRONMENTS:
        path = root / f"Pulumi.{stack}.yaml"
        if stack in stacks:
            path.write_text(HEADER + yaml.safe_dump({"config": stacks[stack]}, sort_keys=False, width=1000))
            done.append(f"wrote {path.name}")
        elif path.exists():
            path.unlink()
            done.append(f"removed {path.name} (no --stack {stack}=...)")
    return done


def next_steps(stacks: dict[str, Any], wiring: str) -> list[str]:
    return [
        "",
        "Next:",
        f"  make plan STACK={wiring}                 # the offline plan, no credential needed",
        f"  pulumi stack select --create --secrets-provider passphrase {wiring}",
        "  pulumi config set --secret dispatchToken   # README: DISPATCH_TOKEN and PIPELINE_TOKEN",
        "  pulumi config set --secret pipelineToken",
        "  pulumi preview && pulumi up              # with the OCI and GitHub credentials (README)",
        *(f"  pulumi stack select --create {s} && pulumi up" for s in stacks if s != wiring),
        "  then push to a source repository and watch its commit status (README, zero to first deploy)",
    ]


def main(argv: list[str] | None = None, interactive: bool | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--owner")
    parser.add_argument("--infra-repository")
    parser.add_argument("--repository", action="append", default=[], metavar="NAME=KIND")
    parser.add_argument("--component", action="append", default=[], metavar="REPO/NAME[:PORT[:PATH][:public]]")
    parser.add_argument("--region")
    parser.add_argument("--stack", action="append", default=[], metavar="ENV=COMPARTMENT_OCID")
    parser.add_argument("--identity-domain", action="append", default=[], metavar="ENV=URL")
    parser.add_argument("--api-key-email", action="append", default=[], metavar="ENV=EMAIL")
    parser.add_argument("--admin-key", action="append", default=[], metavar="KEY_OR_FILE")
    parser.add_argument("--reviewer", action="append", default=[], metavar="LOGIN_OR_OWNER/TEAM")
    parser.add_argument("--production-pusher", action="append", default=[], metavar="ACTOR")
    parser.add_argument("--force", action="store_true", help="replace stack files that hold values of their own")
    args = parser.parse_args(argv)
    interactive = sys.stdin.isatty() if interactive is None else interactive
    try:
        answers = gather(args, interactive)
        wiring = next(s for s in ORDER if s in answers["stacks"])
        project = project_config(answers, wiring, root)
        stacks = {s: stack_config(answers, s, wiring) for s in rules.ENVIRONMENTS if s in answers["stacks"]}
        check(project, stacks)
        done = write(project, stacks, args.force, root)
    except (InitError, ConfigError, OSError) as error:
        print(f"make init: {error}", file=sys.stderr)
        return 2
    for line in [*done, *next_steps(stacks, wiring)]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
