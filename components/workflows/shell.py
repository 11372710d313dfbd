"""Bash for workflow `run:` steps, rendered from data: the branch decision and GitHub API calls.

The branch decision is rendered from `rules.BRANCH_RULES` and `rules.MAX_REF_LENGTH`, so the
shell and `rules.classify_ref` cannot drift apart (the tests run both on a corpus of refs).
The API helper is one bash function shared by every step that calls the GitHub REST API: it
sends the token from stdin (never on a command line), pins the API version, and retries on
429/5xx and on rate-limit 403s with exponential backoff, honouring `Retry-After`.
"""

from __future__ import annotations

import shlex

import ci.github
from components import rules

# The API's version, the retry policy and its test override: one set for the bash helper here
# and the Python client the central pipeline's jobs use.
API_VERSION = ci.github.API_VERSION
USER_AGENT = ci.github.USER_AGENT
MAX_ATTEMPTS = ci.github.MAX_ATTEMPTS
MAX_TOTAL_WAIT_SECONDS = ci.github.MAX_TOTAL_WAIT_SECONDS
BASE_DELAY_SECONDS = ci.github.BASE_DELAY_SECONDS
BASE_DELAY_ENV = ci.github.BASE_DELAY_ENV

STRICT = "set -euo pipefail\nexport LC_ALL=C"
"""First lines of every body: fail on errors and unset names; byte semantics for patterns."""


def quote(value: str) -> str:
    """A bash word for a literal: bare when safe, in double quotes when that needs no escape."""
    if value and all(c.isalnum() or c in "/._-=,:@%+" for c in value) and value.isascii():
        return value
    if not any(c in value for c in '$`"\\!'):
        return f'"{value}"'
    return shlex.quote(value)


COMPONENT_LIST_PATTERN = rules.COMPONENT_LIST_PATTERN


def _refused_reason() -> str:
    names = [rule.branch for rule in rules.BRANCH_RULES]
    return f"not a {', '.join(names[:-1])} or {names[-1]} branch"


def ref_decision(ref_var: str) -> str:
    """Sets `environment`, `deploy` (true/false) and `reason` from the ref in `$ref_var`.

    Same order and meaning as `rules.classify_ref`. Lengths are counted in bytes (LC_ALL=C): a
    ref with non-ASCII characters never matches a rule, so this only changes the reason given.
    """
    ref = f'"${{{ref_var}}}"'
    too_long = f"ref longer than {rules.MAX_REF_LENGTH} characters"
    dots = "ref contains '..'"
    lines = [
        "# Branch rules, rendered from components/rules.py (BRANCH_RULES, MAX_REF_LENGTH).",
        "environment='' deploy=false reason=''",
    ]
    for i, rule in enumerate(rules.BRANCH_RULES, 1):
        lines.append(f"branch_rule_{i}={quote(rule.pattern)}")
    lines += [
        f"if (( ${{#{ref_var}}} > {rules.MAX_REF_LENGTH} )); then",
        f"  reason={quote(too_long)}",
        f"elif [[ {ref} == *..* ]]; then",
        f"  reason={quote(dots)}",
    ]
    for i, rule in enumerate(rules.BRANCH_RULES, 1):
        lines += [
            f"elif [[ {ref} =~ $branch_rule_{i} ]]; then",
            f"  environment={rule.environment} deploy={'true' if rule.deploy else 'false'}"
            f" reason={quote(f'branch rule {rule.branch}')}",
        ]
    lines += ["else", f"  reason={quote(_refused_reason())}", "fi"]
    return "\n".join(lines)


PRINTABLE = """\
# printable VALUE: VALUE with every byte outside [A-Za-z0-9/._-] shown as '?', at most 120 of them.
# Event data goes through it before reaching the log or the summary, so a hostile ref cannot
# inject workflow commands (::...::) or markdown.
printable() {
  local shown="${1//[^A-Za-z0-9\\/._-]/?}"
  printf '%s' "${shown:0:120}"
}"""


def api_function() -> str:
    """`github_api METHOD PATH TOKEN [JSON_FILE]`: one REST call, with retries.

    Sets `api_status` (the HTTP code, 000 when nothing answered) and leaves the answer in the
    file `$api_body`. Returns 0 on a 2xx answer, 1 otherwise. The token goes to curl on stdin
    (`--header @-`), so it never appears in a process list or a log line.
    """
    return f"""\
# GitHub REST API helper, rendered from components/workflows/shell.py.
api_body="$(mktemp)"
api_headers="$(mktemp)"
api_status=000
api_header() {{
  awk -v name="$1" -F ': *' 'tolower($1) == name {{ value = $2 }} END {{ sub(/\\r$/, "", value); print value }}' \\
    "$api_headers"
}}
github_api() {{
  local method="$1" path="$2" token="$3" data="${{4:-}}"
  local base="${{{BASE_DELAY_ENV}:-{BASE_DELAY_SECONDS}}}" attempt=1 waited=0 pause retry_after remaining reset
  [[ "$base" =~ ^[0-9]+$ ]] || base={BASE_DELAY_SECONDS}
  local -a args=(
    --silent --show-error --max-time {ci.github.TIMEOUT_SECONDS} --request "$method"
    --header @-
    --header 'Accept: application/vnd.github+json'
    --header 'X-GitHub-Api-Version: {API_VERSION}'
    --user-agent '{USER_AGENT}'
    --output "$api_body" --dump-header "$api_headers" --write-out '%{{http_code}}'
  )
  if [[ -n "$data" ]]; then
    args+=(--header 'Content-Type: application/json' --data-binary "@$data")
  fi
  while true; do
    : > "$api_body"
    : > "$api_headers"
    api_status="$(printf 'Authorization: Bearer %s\\n' "$token" |
      curl "${{args[@]}}" "${{GITHUB_API_URL}}${{path}}")" || true
    [[ "$api_status" =~ ^[0-9]{{3}}$ ]] || api_status=000
    if [[ "$api_status" == 2?? ]]; then
      return 0
    fi
    retry_after="$(api_header retry-after)"
    remaining="$(api_header x-ratelimit-remaining)"
    reset="$(api_header x-ratelimit-reset)"
    if [[ "$api_status" == 000 || "$api_status" == 429 || "$api_status" == 5?? ]]; then
      :
    elif [[ "$api_status" == 403 && ( -n "$retry_after" || "$remaining" == 0 ) ]]; then
      :  # a rate limit, not a permission problem
    else
      return 1
    fi
    if (( attempt >= {MAX_ATTEMPTS} )); then
      echo "HTTP $api_status from $method $path: giving up after {MAX_ATTEMPTS} attempts"
      return 1
    fi
    if [[ "$retry_after" =~ ^[0-9]+$ ]]; then
      pause="$retry_after"
    elif [[ "$remaining" == 0 && "$reset" =~ ^[0-9]+$ ]]; then
      pause=$(( reset - $(date +%s) + 1 ))
      (( pause > 0 )) || pause=1
    else
      pause=$(( base * (1 << (attempt - 1)) ))
    fi
    if (( waited + pause > {MAX_TOTAL_WAIT_SECONDS} )); then
      echo "HTTP $api_status from $method $path: GitHub asks to wait ${{pause}}s;" \\
        "that is more than the {MAX_TOTAL_WAIT_SECONDS}s retry budget allows"
      return 1
    fi
    echo "HTTP $api_status from $method $path (attempt $attempt of {MAX_ATTEMPTS}): retrying in ${{pause}}s"
    sleep "$pause"
    waited=$(( waited + pause ))
    attempt=$(( attempt + 1 ))
  done
}}
api_message() {{
  jq -r '.message? // empty' "$api_body" 2>/dev/null | head -n 1 | tr -cd '[:print:]' || true
}}"""
