"""GitHub REST calls from the central pipeline's jobs, with the retries every call needs.

The same behaviour as the bash helper the trigger uses (components/workflows/shell.py, which
takes its constants from here): the token travels in a header only, never in a command line
or a log line; the API version is pinned; 429, 5xx, no answer at all and rate-limit 403s are
retried with exponential backoff, honouring `Retry-After` and `X-RateLimit-Reset`, within a
total wait budget.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ci import runner

API_VERSION = "2026-03-10"
"""`X-GitHub-Api-Version` of every call; the test stand-in validates bodies against this version's models."""

USER_AGENT = "dreamscape-infra-workflow"

MAX_ATTEMPTS = 5
MAX_TOTAL_WAIT_SECONDS = 120
"""A call gives up rather than wait longer than this in all (it leaves room in the job's timeout)."""

BASE_DELAY_SECONDS = 2
BASE_DELAY_ENV = "DREAMSCAPE_RETRY_BASE_SECONDS"
"""Overrides the backoff's base delay. Only tests set it (to 0), so they do not sleep for real."""

TIMEOUT_SECONDS = 30
"""Each attempt's limit, as `curl --max-time` in the bash helper."""

TOKEN_VARIABLE = "PIPELINE_TOKEN"  # noqa: S105 - a variable name, not a credential
"""The environment variable a job hands the pipeline's credential in (the secret of that name)."""

STATUS_CONTEXT = "central-cicd"
"""The context of every commit status this pipeline posts (one line in the source commit's checks)."""
MAX_DESCRIPTION = 139
"""GitHub refuses a status description over 140 characters."""


@dataclass(frozen=True)
class Answer:
    status: int
    """The HTTP status; 0 when nothing answered."""
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Lowercase names."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def message(self) -> str:
        """GitHub's `message`, printable characters only (it ends up in a log line)."""
        data = self.json()
        text = data.get("message") if isinstance(data, dict) else None
        if not isinstance(text, str):
            return ""
        return runner.printable(text.split("\n")[0])


def _header(headers: Mapping[str, str], name: str) -> str:
    return headers.get(name, "").strip()


class GitHub:
    """One credential against the REST API at `api_url` (the runner's GITHUB_API_URL)."""

    def __init__(
        self,
        token: str,
        api_url: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] = print,
    ) -> None:
        env = os.environ if env is None else env
        self._token = token
        self.api_url = (api_url or env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
        base = env.get(BASE_DELAY_ENV, "")
        self.base_delay = int(base) if base.isdigit() else BASE_DELAY_SECONDS
        self._sleep = sleep
        self._log = log

    def call(self, method: str, path: str, data: Any = None) -> Answer:
        """One REST call, retried as the module says; the last answer, whatever it was."""
        attempt, waited = 1, 0
        while True:
            answer = self._once(method, path, data)
            if answer.ok:
                return answer
            retry_after = _header(answer.headers, "retry-after")
            remaining = _header(answer.headers, "x-ratelimit-remaining")
            reset = _header(answer.headers, "x-ratelimit-reset")
            rate_limited = answer.status == 403 and (retry_after != "" or remaining == "0")
            if not (answer.status in (0, 429) or 500 <= answer.status <= 599 or rate_limited):
                return answer
            if attempt >= MAX_ATTEMPTS:
                self._log(f"HTTP {answer.status:03d} from {method} {path}: giving up after {MAX_ATTEMPTS} attempts")
                return answer
            if retry_after.isdigit():
                pause = int(retry_after)
            elif remaining == "0" and reset.isdigit():
                pause = max(int(reset) - int(time.time()) + 1, 1)
            else:
                pause = self.base_delay * (1 << (attempt - 1))
            if waited + pause > MAX_TOTAL_WAIT_SECONDS:
                self._log(
                    f"HTTP {answer.status:03d} from {method} {path}: GitHub asks to wait {pause}s;"
                    f" that is more than the {MAX_TOTAL_WAIT_SECONDS}s retry budget allows"
                )
                return answer
            self._log(
                f"HTTP {answer.status:03d} from {method} {path} (attempt {attempt} of {MAX_ATTEMPTS}):"
                f" retrying in {pause}s"
            )
            self._sleep(pause)
            waited += pause
            attempt += 1

    def _once(self, method: str, path: str, data: Any) -> Answer:
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self._token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
        }
        body = None
        if data is not None:
            body = json.dumps(data).encode()
            headers["Content-Type"] = "application/json"
        return send(method, self.api_url + path, headers, body)

    def post_status(self, repository: str, sha: str, state: str, description: str, target_url: str) -> Answer:
        """A commit status of this pipeline's context on `repository` at `sha`."""
        return self.call(
            "POST",
            f"/repos/{repository}/statuses/{sha}",
            {
                "state": state,
                "target_url": target_url,
                "description": description[:MAX_DESCRIPTION],
                "context": STATUS_CONTEXT,
            },
        )


def send(
    method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float = TIMEOUT_SECONDS
) -> Answer:
    """One HTTP request, whatever the answer (status 0: none came within `timeout` seconds)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)  # noqa: S310 - https APIs, or the tests' stand-ins
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return Answer(response.status, response.read(), _lowercase(response.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read(), _lowercase(error.headers))
    except (urllib.error.URLError, OSError, ValueError):
        return Answer(0)


def _lowercase(headers: Any) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in headers.items()} if headers else {}


def run_url(env: Mapping[str, str]) -> str:
    """This run's page, from the runner's variables."""
    return f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
