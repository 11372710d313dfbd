"""A local stand-in for the GitHub REST API, for running workflow shell steps against it.

    with GitHubAPI(repositories=["o/src", "o/infra"]) as api:
        api.add_token("ghp_dispatch", write=True)          # may use every repository
        api.add_token("ghs_job", repositories=["o/src"])   # read-only, one repository
        api.add_token("github_pat_x", repositories=["o/infra"], permissions={"contents": "write"}, actor="bot")
        api.add_comparison("o/src", base, head, files=["auth-service/a.ts"])
        api.script("dispatches", Reply.server_error(), Reply.rate_limited(retry_after=1))
        ... run something with GITHUB_API_URL=api.url ...
        [request] = api.requests_for("dispatches", status=204)

It listens on 127.0.0.1 (a free port) in a background thread and is strict the way GitHub
is: a request needs a User-Agent, `Authorization: Bearer <token>` (or `token <token>`) with a
known token, a supported `X-GitHub-Api-Version` when one is sent, and access to the
repository (a token that cannot see a repository gets 404). Each route names the
fine-grained permission GitHub documents for its endpoint; a token without it gets 403
("Resource not accessible by personal access token"), a classic read-only one 403 on a
write. Repository rulesets (`add_ruleset`) refuse ref creations and updates with 422 to any
actor outside their bypass list, on the refs their `includes` patterns name, and
`GET .../rules/branches/{branch}` lists the rules of those that name the branch (every token
has Metadata: read, as on GitHub). Request bodies are validated against githubkit's models of GitHub's OpenAPI
description (422 with GitHub's error body when invalid), and answers carry GitHub's status
codes and headers; the JSON answers are themselves validated against the response models.

Every request is recorded (`requests`): method, path, query, headers, raw and parsed body,
the route it matched, the token it carried and the status it got.

Adding a route: decorate a method taking (`Call`) and returning a `Reply` with
`@route(name, method, path_pattern, (permission, level))`; named groups of the pattern become `call.params`, a
group named `repo` is checked for access. `script(name, *replies)` queues answers a route
gives before its handler runs again: scripted failures (502, 429 with Retry-After, 401, ...).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union
from urllib.parse import parse_qs, unquote, urlsplit

import pydantic
from githubkit_schemas.v2026_03_10 import models

from tests.harness import local_http

API_VERSIONS = ("2022-11-28", "2026-03-10")
"""What GitHub accepts in X-GitHub-Api-Version; a request without the header gets the first."""
DOCS = "https://docs.github.com/rest"
MAX_CLIENT_PAYLOAD_KEYS = 10
MAX_CLIENT_PAYLOAD_BYTES = 64 * 1024
MAX_STATUS_DESCRIPTION = 140
SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class Reply:
    """One answer: status, JSON body (None: no body) and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, status: int, message: str, headers: dict[str, str] | None = None, docs: str = DOCS) -> Reply:
        """GitHub's error body."""
        return cls(status, {"message": message, "documentation_url": docs, "status": str(status)}, headers or {})

    @classmethod
    def server_error(cls, status: int = 502) -> Reply:
        return cls.error(status, "Server Error")

    @classmethod
    def rate_limited(cls, retry_after: int | None = 1, status: int = 429) -> Reply:
        """A secondary rate limit: 429 (or 403) with Retry-After."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return cls.error(
            status,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            headers,
            "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
        )

    @classmethod
    def unauthorized(cls) -> Reply:
        return cls.error(401, "Bad credentials")

    @classmethod
    def forbidden(cls, message: str = "Resource not accessible by personal access token") -> Reply:
        return cls.error(403, message)

    @classmethod
    def not_found(cls) -> Reply:
        return cls.error(404, "Not Found")


@dataclass(frozen=True)
class Token:
    value: str
    repositories: frozenset[str] | None
    """Lowercase `owner/name`s it can see; None: every repository the stand-in knows."""
    write: bool
    permissions: Mapping[str, str] | None = None
    """A fine-grained token's repository permissions (`contents: write`, `statuses: read`...);
    None: a classic token, every permission (write only when `write`)."""
    actor: str | None = None
    """The login the token acts as (what rulesets compare with their bypass list)."""

    def allows(self, permission: str, level: str) -> bool:
        if self.permissions is None:
            return self.write or level == "read"
        if (permission, level) == ("metadata", "read"):
            return True  # GitHub grants Metadata: read to every fine-grained token and App installation token
        granted = self.permissions.get(permission)
        return granted == "write" or (granted == "read" and level == "read")


@dataclass(frozen=True)
class Ruleset:
    """A repository ruleset as the stand-in enforces it on ref writes."""

    target: str
    """`branch` or `tag`."""
    rules: frozenset[str]
    """Of `creation`, `update`, `deletion`."""
    bypass: frozenset[str]
    """Logins that may bypass it (the stand-in's view of roles, teams and apps)."""
    includes: tuple[str, ...] = ("~ALL",)
    """The refs it applies to, as GitHub's `conditions.ref_name.includes`: `~ALL`, or fnmatch
    patterns over full ref names (`refs/heads/hotfix/*`), where `*` and `?` stop at `/` and `**`
    does not (GitHub matches with File::FNM_PATHNAME)."""

    def applies_to(self, ref: str) -> bool:
        """Whether `ref` (`refs/heads/...` or `refs/tags/...`) is one this ruleset's target and patterns name."""
        if not ref.startswith("refs/tags/" if self.target == "tag" else "refs/heads/"):
            return False
        return any(pattern == "~ALL" or _fnmatch(pattern, ref) for pattern in self.includes)


def _fnmatch(pattern: str, ref: str) -> bool:
    if pattern.startswith("~"):
        raise ValueError(f"the stand-in knows ~ALL only, not {pattern}")
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    wildcard = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.fullmatch("".join(wildcard.get(part, re.escape(part)) for part in parts), ref) is not None


@dataclass(frozen=True)
class Request:
    """One request as the stand-in received it, and the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Lowercase names."""
    body: bytes
    json: Any
    route: str | None
    token: str | None
    status: int
    time: float
    """time.monotonic() when it arrived."""


@dataclass
class Call:
    """What a route handler gets."""

    api: GitHubAPI
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any
    token: Token

    @property
    def repo(self) -> str:
        return f"{self.params['owner']}/{self.params['repo']}"


@dataclass
class Comparison:
    """What GET /repos/{repo}/compare/{base}...{head} answers."""

    files: list[tuple[str, str | None]]
    """(filename, previous_filename for a rename)."""
    status: str = "ahead"
    include_files: bool = True
    """False: the answer has no `files` key at all."""


@dataclass(frozen=True)
class _Route:
    name: str
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[GitHubAPI, Call], Reply]
    permission: tuple[str, str]


_ROUTES: list[_Route] = []


def route(name: str, method: str, pattern: str, permission: tuple[str, str]):
    """Register a handler for `method` on paths matching `pattern` (named groups become params).

    `permission` is what GitHub documents for the endpoint: the fine-grained repository
    permission and the level (`read` or `write`) a token needs.
    """

    def register(handler: Callable[[GitHubAPI, Call], Reply]):
        _ROUTES.append(_Route(name, method, re.compile(f"^{pattern}$"), handler, permission))
        return handler

    return register


_NAME = r"[A-Za-z0-9_.-]+"
_REPO = rf"/repos/(?P<owner>{_NAME})/(?P<repo>{_NAME})"


class GitHubAPI:
    """The stand-in server; a context manager that starts and stops it."""

    def __init__(self, repositories: Iterable[str] = (), startup_timeout: float = 5.0) -> None:
        self.repositories: set[str] = {r.lower() for r in repositories}
        self.tokens: dict[str, Token] = {}
        self.requests: list[Request] = []
        self.comparisons: dict[tuple[str, str, str], Comparison] = {}
        self.dispatches: list[tuple[str, dict[str, Any]]] = []
        """(`owner/name`, body) of each accepted repository_dispatch."""
        self.statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        """(`owner/name`, sha) -> the statuses created, newest last."""
        self.rulesets: dict[str, list[Ruleset]] = {}
        """Lowercase `owner/name` -> its rulesets, enforced on ref creation, update and deletion."""
        self.branch_heads: dict[tuple[str, str], str] = {}
        """(`owner/name`, branch) -> the commit the branch points to; any other branch is a 404."""
        self._scripts: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._startup_timeout = startup_timeout
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._next_id = 1

    # --- set-up ---------------------------------------------------------------------------

    def add_repository(self, full_name: str) -> None:
        self.repositories.add(full_name.lower())

    def add_token(
        self,
        value: str,
        repositories: Iterable[str] | None = None,
        write: bool = True,
        permissions: Mapping[str, str] | None = None,
        actor: str | None = None,
    ) -> None:
        scope = frozenset(r.lower() for r in repositories) if repositories is not None else None
        self.tokens[value] = Token(value, scope, write, dict(permissions) if permissions is not None else None, actor)

    def add_ruleset(self, repo: str, ruleset: Ruleset) -> None:
        self.rulesets.setdefault(repo.lower(), []).append(ruleset)

    def add_comparison(
        self,
        repo: str,
        base: str,
        head: str,
        files: Iterable[str | tuple[str, str | None]] = (),
        status: str = "ahead",
        include_files: bool = True,
    ) -> None:
        listed = [(f, None) if isinstance(f, str) else (f[0], f[1]) for f in files]
        self.comparisons[(repo.lower(), base, head)] = Comparison(listed, status, include_files)

    def script(self, route_name: str, *replies: Reply) -> None:
        """Queue answers the route gives, in order, before its handler answers again."""
        if route_name not in {r.name for r in _ROUTES}:
            raise KeyError(f"no route named {route_name!r}")
        with self._lock:
            self._scripts.setdefault(route_name, deque()).extend(replies)

    # --- reading what happened ------------------------------------------------------------

    def requests_for(self, route_name: str, status: int | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.route == route_name and (status is None or r.status == status)]

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> GitHubAPI:
        api = self

        class Handler(_Handler):
            pass

        Handler.api = api
        self._server, self._thread = local_http.start(_Server, Handler, "GitHub API", 0.05, self._startup_timeout)
        return self

    def __exit__(self, *exc: object) -> None:
        local_http.stop(self._server, self._thread, "GitHub API", self._startup_timeout)
        self._server = None

    # --- dispatching ----------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[Reply, str | None]:
        """Answer one request; returns the reply and the name of the route it matched."""
        split = urlsplit(target)
        path, query = split.path, parse_qs(split.query)
        parsed = None
        matched: tuple[_Route, dict[str, str]] | None = None
        for candidate in _ROUTES:
            m = candidate.pattern.match(path)
            if m and candidate.method == method:
                # GitHub decodes each path parameter: `feature%2Fx...<sha>` compares branch feature/x.
                matched = (candidate, {k: unquote(v) for k, v in m.groupdict().items()})
                break
        reply, token = self._answer(method, path, query, headers, body, matched)
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        with self._lock:
            self.requests.append(
                Request(
                    method=method,
                    path=path,
                    query=query,
                    headers=headers,
                    body=body,
                    json=parsed,
                    route=matched[0].name if matched else None,
                    token=token,
                    status=reply.status,
                    time=time.monotonic(),
                )
            )
        return reply, matched[0].name if matched else None

    def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
        matched: tuple[_Route, dict[str, str]] | None,
    ) -> tuple[Reply, str | None]:
        if not headers.get("user-agent"):
            return Reply.error(
                403,
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
            ), None
        version = headers.get("x-github-api-version")
        if version is not None and version not in API_VERSIONS:
            return Reply.error(
                400,
                f"Unsupported 'X-GitHub-Api-Version' header: {version}. "
                f"Supported versions are: {', '.join(API_VERSIONS)}",
                docs="https://docs.github.com/rest/overview/api-versions",
            ), None
        token_value = _bearer(headers.get("authorization", ""))
        if token_value is None:
            return Reply.error(401, "Requires authentication"), None
        token = self.tokens.get(token_value)
        if token is None:
            return Reply.unauthorized(), token_value
        if matched is None:
            return Reply.not_found(), token_value
        spec, params = matched
        if "repo" in params:
            full = f"{params['owner']}/{params['repo']}".lower()
            if full not in self.repositories or (token.repositories is not None and full not in token.repositories):
                return Reply.not_found(), token_value
        with self._lock:
            queue = self._scripts.get(spec.name)
            scripted = queue.popleft() if queue else None
        if scripted is not None:
            return scripted, token_value
        if not token.allows(*spec.permission):
            message = (
                "Resource not accessible by personal access token"
                if token.permissions is not None
                else "Resource not accessible by integration"
            )
            return Reply.forbidden(message), token_value
        parsed = None
        if method in ("POST", "PATCH", "PUT"):
            try:
                parsed = json.loads(body or b"null")
            except ValueError:
                return Reply.error(400, "Problems parsing JSON"), token_value
        call = Call(self, method, path, params, query, headers, parsed, token)
        return spec.handler(self, call), token_value

    def _id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    # --- routes ---------------------------------------------------------------------------

    @route("compare", "GET", rf"{_REPO}/compare/(?P<basehead>[^/]+)", ("contents", "read"))
    def _compare(self, call: Call) -> Reply:
        base, sep, head = call.params["basehead"].partition("...")
        if not sep or not base or not head:
            return Reply.not_found()
        found = self.comparisons.get((call.repo.lower(), base, head))
        if found is None:
            return Reply.error(404, f"No common ancestor between {base} and {head}.")
        return Reply(200, _validated(models.CommitComparison, _comparison(call.repo, base, head, found)))

    @route("dispatches", "POST", rf"{_REPO}/dispatches", ("contents", "write"))
    def _dispatch(self, call: Call) -> Reply:
        invalid = _invalid(models.ReposOwnerRepoDispatchesPostBody, call.json)
        if invalid:
            return _unprocessable(invalid, "repos/repos#create-a-repository-dispatch-event")
        payload = call.json.get("client_payload")
        if isinstance(payload, dict):
            if len(payload) > MAX_CLIENT_PAYLOAD_KEYS:
                return _unprocessable(
                    f"No more than {MAX_CLIENT_PAYLOAD_KEYS} properties are allowed; {len(payload)} were supplied.",
                    "repos/repos#create-a-repository-dispatch-event",
                )
            if len(json.dumps(payload).encode()) >= MAX_CLIENT_PAYLOAD_BYTES:
                return _unprocessable("client_payload is too large", "repos/repos#create-a-repository-dispatch-event")
        with self._lock:
            self.dispatches.append((call.repo, call.json))
        return Reply(204)

    @route("statuses", "POST", rf"{_REPO}/statuses/(?P<sha>[^/]+)", ("statuses", "write"))
    def _create_status(self, call: Call) -> Reply:
        sha = call.params["sha"]
        invalid = _invalid(models.ReposOwnerRepoStatusesShaPostBody, call.json)
        if invalid:
            return _unprocessable(invalid, "commits/statuses#create-a-commit-status")
        if not SHA.match(sha):
            return _unprocessable(f"No commit found for SHA: {sha}", "commits/statuses#create-a-commit-status")
        description = call.json.get("description")
        if isinstance(description, str) and len(description) > MAX_STATUS_DESCRIPTION:
            return _unprocessable(
                f"description is too long (maximum is {MAX_STATUS_DESCRIPTION} characters)",
                "commits/statuses#create-a-commit-status",
            )
        number = self._id()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {
            "url": f"https://api.github.com/repos/{call.repo}/statuses/{sha}",
            "avatar_url": None,
            "id": number,
            "node_id": f"SC_offline{number}",
            "state": call.json["state"],
            "description": call.json.get("description"),
            "target_url": call.json.get("target_url"),
            "context": call.json.get("context") or "default",
            "created_at": now,
            "updated_at": now,
            "creator": None,
        }
        with self._lock:
            self.statuses.setdefault((call.repo.lower(), sha), []).append(status)
        return Reply(201, _validated(models.Status, status))

    @route("git-ref", "GET", rf"{_REPO}/git/ref/heads/(?P<branch>.+)", ("contents", "read"))
    def _git_ref(self, call: Call) -> Reply:
        """GET /repos/{repo}/git/ref/heads/{branch}: the branch and the commit it points to."""
        branch = call.params["branch"]
        with self._lock:
            sha = self.branch_heads.get((call.repo.lower(), branch))
        if sha is None:
            return Reply.not_found()
        url = f"https://api.github.com/repos/{call.repo}"
        ref = {
            "ref": f"refs/heads/{branch}",
            "node_id": f"REF_offline_{sha[:12]}",
            "url": f"{url}/git/refs/heads/{branch}",
            "object": {"type": "commit", "sha": sha, "url": f"{url}/git/commits/{sha}"},
        }
        return Reply(200, _validated(models.GitRef, ref))

    @route("create-ref", "POST", rf"{_REPO}/git/refs", ("contents", "write"))
    def _create_ref(self, call: Call) -> Reply:
        """POST /repos/{repo}/git/refs: a new branch or tag, unless a ruleset restricts creations."""
        invalid = _invalid(models.ReposOwnerRepoGitRefsPostBody, call.json)
        if invalid:
            return _unprocessable(invalid, "git/refs#create-a-reference")
        return self._ref_write(call, call.json["ref"], "creation", call.json["sha"])

    @route("update-ref", "PATCH", rf"{_REPO}/git/refs/(?P<ref>(heads|tags)/.+)", ("contents", "write"))
    def _update_ref(self, call: Call) -> Reply:
        """PATCH /repos/{repo}/git/refs/{ref}: moves a branch or tag, unless a ruleset restricts updates."""
        invalid = _invalid(models.ReposOwnerRepoGitRefsRefPatchBody, call.json)
        if invalid:
            return _unprocessable(invalid, "git/refs#update-a-reference")
        return self._ref_write(call, "refs/" + call.params["ref"], "update", call.json["sha"])

    def _ref_write(self, call: Call, ref: str, rule: str, sha: str) -> Reply:
        target = "tag" if ref.startswith("refs/tags/") else "branch"
        with self._lock:
            rulesets = list(self.rulesets.get(call.repo.lower(), []))
        for ruleset in rulesets:
            if ruleset.applies_to(ref) and rule in ruleset.rules and call.token.actor not in ruleset.bypass:
                return _unprocessable(
                    f"Repository rule violations found\n\nCannot {'create' if rule == 'creation' else 'update'} "
                    f"ref due to {rule}s being restricted.\n",
                    "repos/rules#about-rulesets",
                )
        if target == "branch":
            with self._lock:
                self.branch_heads[(call.repo.lower(), ref.removeprefix("refs/heads/"))] = sha
        url = f"https://api.github.com/repos/{call.repo}"
        answer = {
            "ref": ref,
            "node_id": f"REF_offline_{sha[:12]}",
            "url": f"{url}/git/{ref}",
            "object": {"type": "commit", "sha": sha, "url": f"{url}/git/commits/{sha}"},
        }
        return Reply(201 if rule == "creation" else 200, _validated(models.GitRef, answer))

    @route("branch-rules", "GET", rf"{_REPO}/rules/branches/(?P<branch>.+)", ("metadata", "read"))
    def _branch_rules(self, call: Call) -> Reply:
        """GET /repos/{repo}/rules/branches/{branch}: the rules of the active rulesets that name the branch
        (whether it exists or not), one entry per rule and ruleset, `per_page` (at most 100) a page."""
        with self._lock:
            rulesets = list(self.rulesets.get(call.repo.lower(), []))
        found = [
            {"type": rule, "ruleset_source_type": "Repository", "ruleset_source": call.repo, "ruleset_id": number}
            for number, ruleset in enumerate(rulesets, 1)
            if ruleset.applies_to(f"refs/heads/{call.params['branch']}")
            for rule in sorted(ruleset.rules)
        ]
        per_page = min(_number(call.query, "per_page", 30), 100)
        page = _number(call.query, "page", 1)
        return Reply(200, _validated_list(_BRANCH_RULES, found[(page - 1) * per_page : page * per_page]))

    @route("list-statuses", "GET", rf"{_REPO}/commits/(?P<ref>[^/]+)/statuses", ("statuses", "read"))
    def _list_statuses(self, call: Call) -> Reply:
        with self._lock:
            found = list(reversed(self.statuses.get((call.repo.lower(), call.params["ref"]), [])))
        return Reply(200, found)


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() not in ("bearer", "token") or not value.strip():
        return None
    return value.strip()


def _invalid(model: type[pydantic.BaseModel], body: Any) -> str | None:
    """GitHub's wording of the first problem with a request body, or None when it is valid."""
    if not isinstance(body, dict):
        return "Invalid request.\n\nFor 'links/0/schema', nil is not an object."
    unset = [key for key, value in body.items() if value == "<UNSET>"]
    if unset:  # githubkit's marker for an omitted field: never a value a client means to send
        return f"Invalid request.\n\nFor 'properties/{unset[0]}', \"<UNSET>\" is not valid."
    try:
        model.model_validate(body, strict=True)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else ""
        if first["type"] == "missing":
            return f'Invalid request.\n\n"{where}" wasn\'t supplied.'
        shown = json.dumps(first.get("input"))
        return f"Invalid request.\n\nFor 'properties/{where}', {shown} is not valid: {first['msg']}."
    return None


def _unprocessable(message: str, doc_path: str) -> Reply:
    return Reply.error(422, message, docs=f"https://docs.github.com/rest/{doc_path}")


def _validated(model: type[pydantic.BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    """The stand-in's own answers must match GitHub's response schema too."""
    model.model_validate(body)
    return body


_BRANCH_RULES = pydantic.TypeAdapter(
    list[Union[tuple(getattr(models, f"RepositoryRuleDetailedOneof{i}") for i in range(25))]]  # noqa: UP007
)
"""githubkit's answer model of "Get rules for a branch": a list of `repository-rule-detailed`,
one of the 25 rule shapes of GitHub's OpenAPI description."""


def _validated_list(adapter: pydantic.TypeAdapter, body: list[dict[str, Any]]) -> list[dict[str, Any]]:
    adapter.validate_python(body)
    return body


def _number(query: dict[str, list[str]], name: str, default: int) -> int:
    """A positive integer query parameter, or `default` (GitHub ignores values it cannot read)."""
    value = query.get(name, [""])[-1]
    return int(value) if value.isdigit() and int(value) > 0 else default


def _commit(repo: str, sha: str) -> dict[str, Any]:
    api = f"https://api.github.com/repos/{repo}"
    person = {"name": "Dreamscape Developer", "email": "dev@example.com", "date": "2026-01-01T00:00:00Z"}
    return {
        "url": f"{api}/commits/{sha}",
        "sha": sha,
        "node_id": f"C_offline{sha[:12]}",
        "html_url": f"https://github.com/{repo}/commit/{sha}",
        "comments_url": f"{api}/commits/{sha}/comments",
        "commit": {
            "url": f"{api}/git/commits/{sha}",
            "author": person,
            "committer": person,
            "message": "change",
            "comment_count": 0,
            "tree": {"sha": sha, "url": f"{api}/git/trees/{sha}"},
        },
        "author": None,
        "committer": None,
        "parents": [],
    }


def _comparison(repo: str, base: str, head: str, found: Comparison) -> dict[str, Any]:
    api = f"https://api.github.com/repos/{repo}"
    body: dict[str, Any] = {
        "url": f"{api}/compare/{base}...{head}",
        "html_url": f"https://github.com/{repo}/compare/{base}...{head}",
        "permalink_url": f"https://github.com/{repo}/compare/{base}...{head}",
        "diff_url": f"https://github.com/{repo}/compare/{base}...{head}.diff",
        "patch_url": f"https://github.com/{repo}/compare/{base}...{head}.patch",
        "base_commit": _commit(repo, base),
        "merge_base_commit": _commit(repo, base),
        "status": found.status,
        "ahead_by": 0 if found.status == "identical" else 1,
        "behind_by": 1 if found.status in ("behind", "diverged") else 0,
        "total_commits": 0 if found.status == "identical" else 1,
        "commits": [] if found.status == "identical" else [_commit(repo, head)],
    }
    if found.include_files:
        body["files"] = [
            {
                "sha": uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:40].ljust(40, "0"),
                "filename": name,
                "status": "renamed" if previous else "modified",
                "additions": 1,
                "deletions": 1,
                "changes": 2,
                "blob_url": f"https://github.com/{repo}/blob/{head}/{name}",
                "raw_url": f"https://github.com/{repo}/raw/{head}/{name}",
                "contents_url": f"{api}/contents/{name}?ref={head}",
                **({"previous_filename": previous} if previous else {}),
            }
            for name, previous in found.files
        ]
    return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    api: GitHubAPI
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""
    timeout = 10

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply, _ = self.api.handle(self.command, self.path, headers, body)
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        version = headers.get("x-github-api-version")
        standard = {
            "X-GitHub-Api-Version-Selected": version if version in API_VERSIONS else API_VERSIONS[0],
            "X-GitHub-Request-Id": uuid.uuid4().hex[:20].upper(),
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "4999",
            "X-RateLimit-Used": "1",
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Resource": "core",
        }
        for name, value in {**standard, **reply.headers}.items():
            self.send_header(name, value)
        if reply.status != 204:
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if reply.status != 204:
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server's method names

    def log_message(self, format: str, *args: Any) -> None:
        pass
