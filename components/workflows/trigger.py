"""The trigger workflow every source repository carries: a push becomes one repository_dispatch.

    .github/workflows/trigger-central-cicd.yml

What differs per repository (the central repository, the event type, the known components)
is rendered into the file as literals of the job's `env:`, so a source repository needs no
GitHub resource besides its two trigger files (and its `DISPATCH_TOKEN` secret with
`repository` scope); adding a component rewrites the trigger files of that repository on main
and develop. Three steps, no third-party action in token mode (curl and jq are on every
GitHub-hosted runner); in GitHub App mode a pinned `actions/create-github-app-token` step
before the dispatch mints its token from the dispatch App's key:

1. `decide`: decides environment and deploy from the ref with bash rendered from
   `rules.BRANCH_RULES`; a ref the rules refuse sends nothing and says why.
2. `components`: which known components the push touched, from the compare API (with the
   job's own read-only token); a new branch, a manual run, a rewritten history or a failed or
   truncated comparison means all components. None touched: nothing is sent, and the summary
   says so.
3. `dispatch`: builds the payload with `jq -n --arg` and POSTs it to the central repository
   with `DISPATCH_TOKEN`, retrying on 429/5xx; on 401/403/404 it names the secret and the
   permission to check.
"""

from __future__ import annotations

from typing import Any

from components import rules
from components.workflows import actions, credentials, emit, shell

PATH = ".github/workflows/trigger-central-cicd.yml"
NAME = "Trigger central CI/CD"
SOURCE = "components/workflows/trigger.py"

BRANCHES = tuple(rule.branch for rule in rules.BRANCH_RULES if "*" not in rule.branch)
"""The long-lived branches: each needs its own copy, since a push runs the file from its own tree."""

SECRET = credentials.DISPATCH.secret
"""The token that may create dispatch events on the central repository, and nothing else."""

MAX_COMPARE_FILES = 300
"""GitHub lists at most this many files in a comparison; a list this long may be cut short."""

TIMEOUT_MINUTES = 10

PAYLOAD_ENV = {
    "source_repo": "SOURCE_REPO",
    "ref": "REF",
    "sha": "SHA",
    "component": "COMPONENTS",
    "environment": "ENVIRONMENT",
}
"""Each `client_payload` key and the step variable it is read from."""
if tuple(PAYLOAD_ENV) != rules.PAYLOAD_KEYS:
    raise AssertionError("PAYLOAD_ENV must list exactly rules.PAYLOAD_KEYS, in order")


def _expr(expression: str) -> str:
    return "${{ " + expression + " }}"


_SUMMARY = """\
summary() {
  printf '%s\\n' "$@" >> "$GITHUB_STEP_SUMMARY"
}"""

_NOTHING_SENT = """\
nothing_sent() {
  echo "Nothing sent to the central pipeline: $1"
  summary '### Nothing sent to the central pipeline' '' "$1"
}"""


def _decide_body() -> str:
    return "\n".join(
        [
            shell.STRICT,
            _SUMMARY,
            _NOTHING_SENT,
            shell.PRINTABLE,
            "",
            shell.ref_decision("REF"),
            'ref_shown="$(printable "$REF")"',
            "zero=0000000000000000000000000000000000000000",
            'if [[ -n "$environment" && ( ! "$SHA" =~ ^[0-9a-f]{40}$ || "$SHA" == "$zero" ) ]]; then',
            '  environment="" deploy=false reason="no commit to build (the branch was deleted)"',
            "fi",
            'if [[ -z "$environment" ]]; then',
            '  nothing_sent "${ref_shown} is refused: ${reason}."',
            "  send=false",
            "else",
            '  echo "${ref_shown}: environment ${environment}, deploy ${deploy} (${reason})"',
            "  send=true",
            "fi",
            "{",
            '  echo "send=${send}"',
            '  echo "environment=${environment}"',
            '  echo "deploy=${deploy}"',
            '  echo "reason=${reason}"',
            '} >> "$GITHUB_OUTPUT"',
        ]
    )


def _components_body() -> str:
    # One jq run reads the comparison: its status, how many files it lists (-1: no list), and
    # the known components among the first path segments (a rename counts both of its paths).
    jq_reading = "\n".join(
        [
            "",
            'if type != "object" then empty else',
            '  ($known | split(",")) as $names',
            '  | (if (.files | type) == "array" then .files else [] end) as $files',
            "  | [$files[] | .filename, (.previous_filename // empty)",
            '     | strings | select(contains("/")) | split("/")[0]] as $touched',
            '  | [(.status // "" | tostring | gsub("[^a-z]"; "")),',
            '     (if (.files | type) == "array" then .files | length else -1 end),',
            '     ([$names[] | select(. as $name | any($touched[]; . == $name))] | join(","))]',
            '  | map(tostring) | join("|")',
            "end",
        ]
    )
    return "\n".join(
        [
            shell.STRICT,
            _SUMMARY,
            _NOTHING_SENT,
            shell.api_function(),
            "",
            "all_components() {",
            '  echo "All components (${KNOWN_COMPONENTS}): $1"',
            '  echo "components=${KNOWN_COMPONENTS}" >> "$GITHUB_OUTPUT"',
            '  echo "basis=all components: $1" >> "$GITHUB_OUTPUT"',
            "  exit 0",
            "}",
            "zero=0000000000000000000000000000000000000000",
            'if [[ "$EVENT_NAME" != push ]]; then',
            '  all_components "a manual run sends every component"',
            "fi",
            'if [[ ! "$BEFORE" =~ ^[0-9a-f]{40}$ || "$BEFORE" == "$zero" ]]; then',
            '  all_components "a new branch, nothing to compare with"',
            "fi",
            'if ! github_api GET "/repos/${GITHUB_REPOSITORY}/compare/${BEFORE}...${SHA}" "$GITHUB_TOKEN"; then',
            '  all_components "the comparison failed (HTTP ${api_status}: $(api_message))"',
            "fi",
            f'reading="$(jq -r --arg known "$KNOWN_COMPONENTS" \'{jq_reading}\' "$api_body" 2> /dev/null)" ||'
            " reading=''",
            'if [[ -z "$reading" ]]; then',
            '  all_components "the comparison answer is not a JSON object"',
            "fi",
            "IFS='|' read -r status count touched <<< \"$reading\"",
            'case "$status" in',
            "  ahead | identical) ;;",
            '  *) all_components "the history was rewritten (comparison status ${status:-missing})" ;;',
            "esac",
            "if (( count < 0 )); then",
            '  all_components "the comparison lists no files"',
            "fi",
            f"if (( count >= {MAX_COMPARE_FILES} )); then",
            f"  all_components \"the comparison lists ${{count}} files, GitHub's limit is {MAX_COMPARE_FILES}:"
            ' the list may be cut short"',
            "fi",
            'echo "components=${touched}" >> "$GITHUB_OUTPUT"',
            'if [[ -z "$touched" ]]; then',
            '  echo "basis=none of ${count} changed files is in a component" >> "$GITHUB_OUTPUT"',
            '  nothing_sent "this push changes ${count} files, none of them in a component (${KNOWN_COMPONENTS})."',
            "else",
            '  echo "basis=changed files in ${touched}" >> "$GITHUB_OUTPUT"',
            '  echo "Changed components: ${touched} (from ${count} changed files)"',
            "fi",
        ]
    )


def _dispatch_body(auth: credentials.Auth) -> str:
    args = " ".join(f'--arg {key} "${env}"' for key, env in PAYLOAD_ENV.items())
    fields = ", ".join(f"{key}: ${key}" for key in PAYLOAD_ENV)
    program = f"{{event_type: $event_type, client_payload: {{{fields}}}}}"
    if auth.apps:
        key = auth.dispatch.secret
        missing = f"No token was minted with the {key} secret"
        check = (
            f"The token minted with {key} may not create dispatch events on ${{CENTRAL_REPOSITORY}}:"
            " check that the dispatch App is installed on that repository with Contents: read and write."
        )
        refused = (
            f"GitHub does not accept the token minted with the {key} secret. Check the App's key, set it"
            f" with pulumi config set --secret {auth.dispatch.config_key} on the wiring stack and run pulumi up."
        )
    else:
        missing = f"The {SECRET} secret is empty or not visible to ${{GITHUB_REPOSITORY}}"
        check = (
            f"The token in the {SECRET} secret may not create dispatch events on ${{CENTRAL_REPOSITORY}}:"
            f" check that {SECRET} can write to that repository (classic token: the repo scope;"
            " fine-grained token: access to that repository with Contents: read and write)."
        )
        refused = (
            f"GitHub does not accept the token in the {SECRET} secret; it is wrong, expired or revoked."
            " Create a new one, set it with pulumi config set --secret dispatchToken on the wiring stack"
            " and run pulumi up."
        )
    return "\n".join(
        [
            shell.STRICT,
            _SUMMARY,
            shell.api_function(),
            "",
            "failed() {",
            '  echo "::error title=Dispatch failed::$1"',
            "  summary '### Dispatch to the central pipeline failed' '' \"$1\"",
            "  exit 1",
            "}",
            f'if [[ -z "${SECRET}" ]]; then',
            f'  failed "{missing}: set it (pulumi up on the'
            ' wiring stack), and with an organization secret add this repository to its selected repositories."',
            "fi",
            'payload="$(mktemp)"',
            f'jq -n --arg event_type "$EVENT_TYPE" {args} \\',
            f'  {shell.quote(program)} > "$payload"',
            f'if github_api POST "/repos/${{CENTRAL_REPOSITORY}}/dispatches" "${SECRET}" "$payload"; then',
            '  echo "Sent ${EVENT_TYPE} to ${CENTRAL_REPOSITORY}:" \\',
            '    "${REF} ${SHA}, ${ENVIRONMENT}, components ${COMPONENTS}"',
            "  summary '### Sent to the central pipeline' '' '| | |' '| --- | --- |' \\",
            '    "| event | \\`${EVENT_TYPE}\\` to ${CENTRAL_REPOSITORY} |" \\',
            '    "| source | ${SOURCE_REPO} |" \\',
            '    "| ref | \\`${REF}\\` |" \\',
            '    "| sha | \\`${SHA}\\` |" \\',
            '    "| environment | ${ENVIRONMENT} (deploy: ${DEPLOY}) |" \\',
            '    "| components | ${COMPONENTS} |" \\',
            '    "| why these | ${BASIS} |"',
            "  exit 0",
            "fi",
            'message="$(api_message)"',
            'case "$api_status" in',
            "  401)",
            f'    failed "HTTP 401 (${{message}}): {refused}" ;;',
            "  403 | 404)",
            f'    failed "HTTP ${{api_status}} (${{message}}): {check}" ;;',
            "  422)",
            '    failed "HTTP 422 (${message}): GitHub refused the dispatch payload." ;;',
            "  *)",
            '    failed "HTTP ${api_status} (${message}): the dispatch to ${CENTRAL_REPOSITORY} failed." ;;',
            "esac",
        ]
    )


def _mint_step(central_repository: str, auth: credentials.Auth) -> dict[str, Any]:
    """App mode: a token of the dispatch App for this run, on the infra repository only, Contents write only."""
    owner, name = central_repository.split("/")
    return {
        "name": "Mint a token to dispatch with",
        "id": "token",
        "if": "steps.components.outputs.components != ''",
        "uses": actions.uses("actions/create-github-app-token"),
        "with": {
            "client-id": auth.dispatch_client_id,
            "private-key": _expr(f"secrets.{auth.dispatch.secret}"),
            "owner": owner,
            "repositories": name,
            "permission-contents": "write",
        },
    }


def document(
    central_repository: str,
    event_type: str,
    components: tuple[str, ...],
    auth: credentials.Auth = credentials.TOKENS,
) -> dict[str, Any]:
    """The workflow of one source repository as data; `render()` turns it into the file's text.

    `central_repository` is `OWNER/NAME` of the repository the dispatch goes to, `event_type`
    the repository's `<kind>-changed`, `components` its known components in config order. They
    come from validated settings and are written as literals: nothing is read at run time.
    With `auth` in app mode, a step mints the dispatch token from the App's key first.
    """
    token = _expr("steps.token.outputs.token") if auth.apps else _expr(f"secrets.{SECRET}")
    return {
        "name": NAME,
        "on": {
            "push": {"branches": list(rules.PUSH_BRANCH_FILTERS)},
            "workflow_dispatch": {},
        },
        "permissions": {},
        "jobs": {
            "dispatch": {
                "name": "Send to the central pipeline",
                "runs-on": "ubuntu-24.04",
                "timeout-minutes": TIMEOUT_MINUTES,
                # The compare API on this repository, with the job's own token.
                "permissions": {"contents": "read"},
                # What differs between two source repositories' files, rendered by the wiring stack.
                "env": {
                    "CENTRAL_REPOSITORY": central_repository,
                    "EVENT_TYPE": event_type,
                    "KNOWN_COMPONENTS": ",".join(components),
                },
                "steps": [
                    {
                        "name": "Decide environment and deploy from the branch",
                        "id": "decide",
                        "shell": "bash",
                        "env": {"REF": _expr("github.ref"), "SHA": _expr("github.sha")},
                        "run": _decide_body(),
                    },
                    {
                        "name": "Find the components this push changed",
                        "id": "components",
                        "if": "steps.decide.outputs.send == 'true'",
                        "shell": "bash",
                        "env": {
                            "EVENT_NAME": _expr("github.event_name"),
                            "BEFORE": _expr("github.event.before"),
                            "SHA": _expr("github.sha"),
                            "GITHUB_TOKEN": _expr("github.token"),
                        },
                        "run": _components_body(),
                    },
                    *([_mint_step(central_repository, auth)] if auth.apps else []),
                    {
                        "name": "Send the repository_dispatch event",
                        "id": "dispatch",
                        "if": "steps.components.outputs.components != ''",
                        "shell": "bash",
                        "env": {
                            SECRET: token,
                            "SOURCE_REPO": _expr("github.repository"),
                            "REF": _expr("github.ref"),
                            "SHA": _expr("github.sha"),
                            "COMPONENTS": _expr("steps.components.outputs.components"),
                            "BASIS": _expr("steps.components.outputs.basis"),
                            "ENVIRONMENT": _expr("steps.decide.outputs.environment"),
                            "DEPLOY": _expr("steps.decide.outputs.deploy"),
                        },
                        "run": _dispatch_body(auth),
                    },
                ],
            }
        },
    }


def render(
    central_repository: str,
    event_type: str,
    components: tuple[str, ...],
    auth: credentials.Auth = credentials.TOKENS,
) -> str:
    """The file's text for one source repository (see `document()`)."""
    return emit.dump(document(central_repository, event_type, components, auth), SOURCE)
