"""The pipeline's side of a deploy: one workflow step that runs dreamscape-deploy over SSH.

The central pipeline's `deploy` job includes `deploy_step(...)`. The step writes the CI key
and the pinned known-hosts line into a private temporary directory, checks the image list
against the program's own patterns, runs `deploy --lock-wait <s> --wait-timeout <s> --keep <n>
<component>=<image> ...` (the deploy settings travel with every call), sends the compose file
(and, when configured, a registry token) on stdin in the program's frame format, maps the
program's exit code to a message and appends the program's Markdown summary to the job summary.

Every value reaches the script through `env:`; the script itself is the same for every
environment except for the names of the variables it reads, which are checked identifiers.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components import rules
from components.environment import deploy_program

_ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"
SSH_FAILED = 255
"""What ssh itself exits with when it cannot connect, verify the host key or authenticate."""


OPTION_VARIABLES = (
    (deploy_program.LOCK_WAIT, "DEPLOY_LOCK_WAIT_SECONDS"),
    (deploy_program.WAIT_TIMEOUT, "DEPLOY_WAIT_TIMEOUT_SECONDS"),
    (deploy_program.KEEP, "DEPLOY_KEEP_RELEASES"),
)
"""Each option of the program's `deploy` and the step variable that carries its value."""


@dataclass(frozen=True)
class RegistryLogin:
    """Names of the variables carrying a registry login for the VM's pulls (the token is
    short-lived, e.g. the job's GITHUB_TOKEN with `packages: read` for ghcr.io)."""

    registry_var: str
    username_var: str
    token_var: str


def secret_env(*names: str) -> dict[str, str]:
    """`{NAME: "${{ secrets.NAME }}"}` for each name, for a step's `env:`."""
    return {name: f"${{{{ secrets.{_checked(name)} }}}}" for name in names}


def _checked(name: str) -> str:
    if not re.fullmatch(_ENV_NAME.strip("^$"), name):
        raise ValueError(f"not an environment variable name: {name!r}")
    return name


def deploy_step(
    *,
    host_var: str,
    private_key_var: str,
    known_hosts_var: str,
    images_var: str,
    compose_file: str,
    lock_wait_seconds: int,
    wait_timeout_seconds: int,
    keep_releases: int,
    env: Mapping[str, str] | None = None,
    login: RegistryLogin | None = None,
    secrets_as_env: bool = True,
    user: str = deploy_program.DEPLOY_USER,
    port: int = 22,
    name: str = "Deploy over SSH",
    timeout_minutes: int = 25,
) -> dict[str, Any]:
    """The step dict (name, env, shell, run).

    - `host_var`, `private_key_var`, `known_hosts_var`: the variables carrying the VM's
      address, the CI private key and the pinned known-hosts line; their names follow the
      deploy-secret layout (`VM_HOST_PRODUCTION` or `VM_HOST`...). With `secrets_as_env` the
      step binds each to the secret of the same name.
    - `images_var`: the variable carrying `<component>=<image>` pairs, separated by
      whitespace; it must be set in `env` or in the job's environment.
    - `compose_file`: path of the environment's compose file in the workspace (may hold
      `${{ }}` expressions: it goes through `env:`).
    - `lock_wait_seconds`, `wait_timeout_seconds`, `keep_releases`: sent with the call as the
      program's `--lock-wait`, `--wait-timeout` and `--keep` (config `deploy.*`), within the
      program's own bounds.
    - `login`: a registry login passed to the VM on stdin for its pulls.
    - `port`: the VM's SSH port (tests use a local sshd on another port).
    """
    names = {"host": host_var, "key": private_key_var, "known_hosts": known_hosts_var, "images": images_var}
    if login:
        names |= {"registry": login.registry_var, "registry_user": login.username_var, "token": login.token_var}
    for value in names.values():
        _checked(value)
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        raise ValueError(f"not a user name: {user!r}")
    if not 0 < port < 65536:
        raise ValueError(f"not a TCP port: {port}")
    values = {"lock_wait_seconds": lock_wait_seconds, "wait_timeout_seconds": wait_timeout_seconds}
    values |= {"keep_releases": keep_releases}
    for (option, _), (parameter, value) in zip(OPTION_VARIABLES, values.items(), strict=True):
        if isinstance(value, bool) or not isinstance(value, int) or not option.low <= value <= option.high:
            raise ValueError(f"{parameter}: expected {option.expected}, got {value!r}")
    step_env: dict[str, str] = {}
    if secrets_as_env:
        step_env |= secret_env(host_var, private_key_var, known_hosts_var)
    step_env |= dict(env or {})
    step_env |= {"DEPLOY_SSH_USER": user, "DEPLOY_SSH_PORT": str(port), "DEPLOY_COMPOSE_FILE": compose_file}
    step_env |= {variable: str(value) for (_, variable), value in zip(OPTION_VARIABLES, values.values(), strict=True)}
    return {
        "name": name,
        "timeout-minutes": timeout_minutes,
        "env": step_env,
        "shell": "bash",
        "run": _script(names, login is not None),
    }


def _script(names: dict[str, str], with_login: bool) -> str:
    q = shlex.quote
    lines = [
        "set -euo pipefail",
        "export LC_ALL=C",
        'fail() { echo "::error title=Deploy::$1"; exit "$2"; }',
        "",
        "# Inputs, read from the step's environment only.",
        f'host="${{{names["host"]}:-}}"',
        f'private_key="${{{names["key"]}:-}}"',
        f'known_hosts="${{{names["known_hosts"]}:-}}"',
        f'images="${{{names["images"]}:-}}"',
    ]
    if with_login:
        lines += [
            f'registry="${{{names["registry"]}:-}}"',
            f'registry_user="${{{names["registry_user"]}:-}}"',
            f'registry_token="${{{names["token"]}:-}}"',
        ]
    lines += [
        "",
        f'[ -n "$host" ] || fail {q(names["host"] + " is empty: check the deploy secrets of this environment")} 2',
        '[[ "$host" =~ ^[A-Za-z0-9][A-Za-z0-9.:-]*$ ]] || '
        f"fail {q(names['host'] + ' is not a host name or an IP address')} 2",
        f'[ -n "$private_key" ] || fail {q(names["key"] + " is empty: check the deploy secrets")} 2',
        f'[ -n "$known_hosts" ] || fail {q(names["known_hosts"] + " is empty: check the deploy secrets")} 2',
        '[[ "$DEPLOY_SSH_PORT" =~ ^[0-9]{1,5}$ ]] || fail "DEPLOY_SSH_PORT is not a port" 2',
        '[ -f "$DEPLOY_COMPOSE_FILE" ] || fail "compose file $DEPLOY_COMPOSE_FILE not found" 2',
        'compose_bytes="$(wc -c < "$DEPLOY_COMPOSE_FILE")"',
        f'if [ "$compose_bytes" -eq 0 ] || [ "$compose_bytes" -gt {deploy_program.MAX_COMPOSE_BYTES} ]; then',
        f'  fail "compose file is $compose_bytes bytes; 1 to {deploy_program.MAX_COMPOSE_BYTES} accepted" 2',
        "fi",
        "",
        "# The deploy settings, sent as the program's options; it checks the same bounds on its side.",
        "# option FLAG VARIABLE LOW HIGH UNIT: pass $VARIABLE as FLAG when it is a number in LOW..HIGH.",
        f"number_re={q(deploy_program.NUMBER_PATTERN)}",
        "options=()",
        "option() {",
        '  local value="${!2:-}"',
        '  if ! [[ "$value" =~ $number_re ]] || (( value < $3 || value > $4 )); then',
        '    fail "$2 is not a whole number of $5 from $3 to $4" 2',
        "  fi",
        '  options+=("$1" "$value")',
        "}",
        *(f"option {o.flag} {v} {o.low} {o.high} {o.unit}" for o, v in OPTION_VARIABLES),
    ]
    lines += [
        "",
        "# The deploy program's own patterns (POSIX ERE); it checks again on its side.",
        f"component_re={q(rules.COMPONENT_PATTERN)}",
        f"image_re={q(deploy_program.IMAGE_PATTERN)}",
    ]
    if with_login:
        lines += [
            f"registry_re={q(deploy_program.REGISTRY_PATTERN)}",
            f"user_re={q(deploy_program.USERNAME_PATTERN)}",
            'if [ -n "$registry_token" ]; then',
            f'  [[ "$registry" =~ $registry_re ]] || fail {q(names["registry"] + " is not a registry host")} 2',
            f'  [[ "$registry_user" =~ $user_re ]] || fail {q(names["registry_user"] + " is not a user name")} 2',
            "fi",
        ]
    lines += [
        "",
        "# <component>=<image> pairs, checked with the deploy program's own patterns.",
        "pairs=()",
        'while read -r -a words; do pairs+=("${words[@]}"); done <<< "$images"',
        f'[ "${{#pairs[@]}}" -gt 0 ] || fail {q(names["images"] + " names no <component>=<image>")} 2',
        "declare -A seen=()",
        'for pair in "${pairs[@]}"; do',
        '  component="${pair%%=*}"',
        '  image="${pair#*=}"',
        '  [[ "$pair" == *=* && "$component" =~ $component_re ]] || fail "not <component>=<image>: $pair" 2',
        f'  [[ "${{#image}}" -le {deploy_program.MAX_IMAGE_LENGTH} && "$image" =~ $image_re ]] || '
        'fail "not an image reference: $image" 2',
        '  [ -z "${seen[$component]:-}" ] || fail "component $component given twice" 2',
        "  seen[$component]=1",
        "done",
        "",
        "# The key and the pinned host key, readable by this job only, removed on exit.",
        "umask 077",
        'work="$(mktemp -d)"',
        "trap 'rm -rf -- \"$work\"' EXIT",
        'printf \'%s\\n\' "$private_key" > "$work/key"',
        'printf \'%s\\n\' "$known_hosts" > "$work/known_hosts"',
        "",
        "# The program's stdin: with a token, a `login <registry> <user> <length>` frame (written",
        "# by the printf builtin, never on a command line); then `compose <length>` and the file.",
        "send() {",
        *(
            [
                '  if [ -n "$registry_token" ]; then',
                "    printf 'login %s %s %d\\n%s' \\",
                '      "$registry" "$registry_user" "${#registry_token}" "$registry_token"',
                "  fi",
            ]
            if with_login
            else []
        ),
        "  printf 'compose %d\\n' \"$compose_bytes\"",
        '  cat -- "$DEPLOY_COMPOSE_FILE"',
        "}",
        "",
        "set +e",
        "send | ssh -F none -T \\",
        '  -p "$DEPLOY_SSH_PORT" -l "$DEPLOY_SSH_USER" -i "$work/key" \\',
        "  -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \\",
        '  -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$work/known_hosts" \\',
        "  -o GlobalKnownHostsFile=/dev/null -o UpdateHostKeys=no -o CheckHostIP=no \\",
        "  -o ConnectTimeout=20 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 \\",
        '  -- "$host" deploy "${options[@]}" "${pairs[@]}" > "$work/summary.md"',
        'status=("${PIPESTATUS[@]}")',
        "set -e",
        'rc="${status[1]}"',
        "",
        'cat "$work/summary.md"',
        'if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then',
        '  if [ -s "$work/summary.md" ]; then',
        '    cat "$work/summary.md" >> "$GITHUB_STEP_SUMMARY"',
        "  else",
        '    printf \'### Deploy: no answer from the VM (exit %s)\\n\' "$rc" >> "$GITHUB_STEP_SUMMARY"',
        "  fi",
        "fi",
        "",
        'case "$rc" in',
    ]
    for exit_code in deploy_program.EXIT_CODES:
        message = f"{exit_code.name.lower().replace('_', ' ')}: {exit_code.meaning}"
        if exit_code.success:
            lines.append(f"  {exit_code.code}) echo {q(message)} ;;")
        else:
            lines.append(f"  {exit_code.code}) fail {q(message)} {exit_code.code} ;;")
    ssh_message = (
        f"ssh failed before the deploy program answered: the VM is unreachable, its host key does not "
        f"match {names['known_hosts']}, or it refused the key in {names['key']}"
    )
    lines += [
        f"  {SSH_FAILED}) fail {q(ssh_message)} {SSH_FAILED} ;;",
        '  *) fail "unexpected exit code $rc from the deploy" "$rc" ;;',
        "esac",
    ]
    return "\n".join(lines) + "\n"
