"""GitHub Apps and `actions/create-github-app-token` (v3.1.1) in front of the GitHub API stand-in.

An `App` has a client id, a private key, the permissions its owner granted and the repositories
it is installed on. The action's stand-in does what the action's code does
(`main.js`, `lib/main.js`, `lib/get-permissions-from-inputs.js` of v3.1.1), and what GitHub
answers to it:

- `client-id` (or the deprecated `app-id`) and `private-key` must be set; a key that is not
  the App's is refused, as GitHub refuses the JWT it signs;
- `owner` and `repositories` (comma or newline separated names): neither set means the
  current repository; `owner` alone means every repository of the installation; names without
  `owner` take `GITHUB_REPOSITORY_OWNER`;
- each named repository must be one the App is installed on, and the `permission-*` inputs
  must be within the App's own permissions (GitHub answers 422 otherwise); no `permission-*`
  input at all means every permission of the App;
- the token is registered with the API stand-in, limited to those repositories and
  permissions, acting as `<slug>[bot]`; outputs `token`, `installation-id`, `app-slug`.

Every mint is recorded (`App.minted`), so a test can say which job minted what.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.harness.github_api import GitHubAPI

LEVELS = {"read": 1, "write": 2}


@dataclass(frozen=True)
class Minted:
    token: str
    repositories: tuple[str, ...]
    """Lowercase `owner/name`s."""
    permissions: Mapping[str, str]
    job: str
    """GITHUB_JOB of the step that minted it."""


@dataclass
class App:
    slug: str
    client_id: str
    private_key: str
    permissions: Mapping[str, str]
    """What the App's owner granted it (metadata read is implied, as on GitHub)."""
    installed_on: Iterable[str]
    """`owner/name`s of the repositories its installation may reach."""
    installation_id: int = 4242
    minted: list[Minted] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.installed_on = frozenset(r.lower() for r in self.installed_on)


def app_key() -> str:
    """A stand-in private key, shaped as GitHub hands them out (PEM)."""
    body = secrets.token_urlsafe(48)
    return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n"


class CreateAppToken:
    """The action as a `uses:` stand-in for tests/harness/workflow.py."""

    def __init__(self, api: GitHubAPI | None, *apps: App, fixed_token: str | None = None) -> None:
        """`fixed_token`: mint that value, which the test has registered with the API stand-in
        itself (with the grants it wants to test), instead of a new token of the App's grants."""
        self.api = api
        self.apps = {app.client_id: app for app in apps}
        self.fixed_token = fixed_token

    def __call__(self, step: Mapping[str, Any], with_: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
        client_id = str(with_.get("client-id") or with_.get("app-id") or "")
        if not client_id:
            raise RuntimeError("The 'client-id' (or deprecated 'app-id') input must be set to a non-empty string.")
        private_key = str(with_.get("private-key") or "")
        if not private_key:
            raise RuntimeError("Input required and not supplied: private-key")
        app = self.apps.get(client_id)
        if app is None or private_key != app.private_key:
            raise RuntimeError("HttpError: A JSON web token could not be decoded (401)")
        owner = str(with_.get("owner") or "")
        names = [n.strip() for n in re.split(r"[\n,]+", str(with_.get("repositories") or "")) if n.strip()]
        if not owner and not names:
            owner, name = env["GITHUB_REPOSITORY"].split("/")
            names = [name]
        elif not owner:
            owner = env["GITHUB_REPOSITORY_OWNER"]
        if names:
            wanted = [f"{owner}/{name}".lower() for name in names]
        else:
            wanted = sorted(r for r in app.installed_on if r.startswith(owner.lower() + "/"))
        outside = [r for r in wanted if r not in app.installed_on]
        if outside:
            raise RuntimeError(f"HttpError: Not Found (404): {app.slug} is not installed on {outside[0]}")
        requested = {
            key.removeprefix("permission-").replace("-", "_"): str(value)
            for key, value in with_.items()
            if key.startswith("permission-") and value
        }
        for scope, level in requested.items():
            granted = app.permissions.get(scope)
            if level not in LEVELS or granted is None or LEVELS[level] > LEVELS[granted]:
                raise RuntimeError(
                    f"HttpError: The permissions requested are not granted to this installation. (422): {scope}"
                )
        permissions = requested or dict(app.permissions)
        token = self.fixed_token or "ghs_" + secrets.token_hex(18)
        if self.fixed_token is None:
            assert self.api is not None, "a minted token needs the API stand-in to hold it"
            self.api.add_token(
                token, repositories=wanted, permissions={"metadata": "read", **permissions}, actor=f"{app.slug}[bot]"
            )
        app.minted.append(Minted(token, tuple(wanted), permissions, env.get("GITHUB_JOB", "")))
        return {"token": token, "installation-id": str(app.installation_id), "app-slug": app.slug}
