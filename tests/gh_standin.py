"""A stand-in for the `gh` CLI, for running this repository's workflow steps on this machine.

It covers exactly the commands the preview-comment and drift-report steps use, and refuses
anything else (exit 2, as gh does on an unknown flag): `gh api` on issue comments, `gh run
download`, `gh issue list|create|edit|comment|close`, `gh label create`. State (comments,
issues, labels, artifacts, the calls made) lives in the JSON file named by GH_STANDIN_STATE.
It answers as GitHub does where the steps depend on it: `--jq` is evaluated by the real `jq`,
a comment body over 65,536 characters is refused (422), only the token's own comments can be
edited (403), `gh issue create --label` fails for a label that does not exist, `gh run
download` fails when no artifact matches.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

MAX_BODY = 65_536
BOT = "github-actions[bot]"


class RefusedError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _load() -> tuple[Path, dict[str, Any]]:
    path = Path(os.environ["GH_STANDIN_STATE"])
    return path, json.loads(path.read_text())


def _options(args: list[str], flags: dict[str, bool]) -> tuple[list[str], dict[str, Any]]:
    """Split argv into positionals and options; `flags` maps each allowed option to takes-a-value."""
    positional: list[str] = []
    options: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            name, _, inline = arg.partition("=")
            if name not in flags:
                raise RefusedError(f"unknown flag: {name}", 2)
            if flags[name]:
                if inline:
                    options[name] = inline
                else:
                    i += 1
                    if i >= len(args):
                        raise RefusedError(f"flag needs an argument: {name}", 2)
                    options[name] = args[i]
            else:
                options[name] = True
        else:
            positional.append(arg)
        i += 1
    return positional, options


def _jq(data: Any, program: str | None) -> str:
    if program is None:
        return json.dumps(data) + "\n"
    result = subprocess.run(["jq", "-r", program], input=json.dumps(data), capture_output=True, text=True, check=False)
    if result.returncode:
        raise RefusedError(f"jq: {result.stderr.strip()}")
    return result.stdout


def _body(text: str) -> str:
    if len(text) > MAX_BODY:
        raise RefusedError(f"HTTP 422: Validation Failed (body is too long, maximum is {MAX_BODY} characters)")
    return text


def _repo(state: dict[str, Any], options: dict[str, Any]) -> str:
    repo = options.get("--repo") or os.environ.get("GH_REPO")
    if repo != state["repo"]:
        raise RefusedError(f"HTTP 404: Not Found (repository {repo!r})")
    return repo


def api(state: dict[str, Any], args: list[str]) -> str:
    positional, options = _options(args, {"--method": True, "--paginate": False, "--jq": True, "--input": True})
    if len(positional) != 1:
        raise RefusedError("gh api takes one endpoint", 2)
    method = options.get("--method", "GET")
    path = positional[0]
    repo = re.escape(state["repo"])
    listing = re.fullmatch(rf"repos/{repo}/issues/(\d+)/comments", path)
    single = re.fullmatch(rf"repos/{repo}/issues/comments/(\d+)", path)
    payload: dict[str, Any] = {}
    if "--input" in options:
        payload = json.loads(Path(options["--input"]).read_text())
        if set(payload) != {"body"} or not isinstance(payload["body"], str):
            raise RefusedError("HTTP 422: Validation Failed (expected exactly a string body)")
    if listing and method == "GET":
        number = int(listing.group(1))
        return _jq([c for c in state["comments"] if c["issue"] == number], options.get("--jq"))
    if listing and method == "POST":
        state["next_id"] += 1
        comment = {"id": state["next_id"], "issue": int(listing.group(1)), "user": {"login": BOT}}
        comment["body"] = _body(payload["body"])
        state["comments"].append(comment)
        return json.dumps(comment) + "\n"
    if single and method == "PATCH":
        matches = [c for c in state["comments"] if c["id"] == int(single.group(1))]
        if not matches:
            raise RefusedError("HTTP 404: Not Found")
        if matches[0]["user"]["login"] != BOT:
            raise RefusedError("HTTP 403: Resource not accessible by integration")
        matches[0]["body"] = _body(payload["body"])
        return json.dumps(matches[0]) + "\n"
    raise RefusedError(f"HTTP 404: Not Found ({method} {path})")


def run_download(state: dict[str, Any], args: list[str]) -> str:
    positional, options = _options(args, {"--repo": True, "--dir": True, "--pattern": True, "--name": True})
    if positional != [os.environ["GITHUB_RUN_ID"]]:
        raise RefusedError(f"run {positional} not found")
    _repo(state, options)
    source = Path(state["artifacts"])
    names = sorted(p.name for p in source.iterdir() if p.is_dir())
    pattern = options.get("--pattern", "*")
    chosen = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if not chosen:
        raise RefusedError("no valid artifacts found to download")
    for name in chosen:
        shutil.copytree(source / name, Path(options.get("--dir", ".")) / name)
    return ""


def _issue(state: dict[str, Any], number: str) -> dict[str, Any]:
    for issue in state["issues"]:
        if str(issue["number"]) == number:
            return issue
    raise RefusedError(f"issue {number} not found")


def issue(state: dict[str, Any], args: list[str]) -> str:
    verb, rest = args[0], args[1:]
    if verb == "list":
        _, o = _options(rest, {"--state": True, "--label": True, "--limit": True, "--json": True, "--jq": True})
        _repo(state, o)
        found = [
            {"number": i["number"], "title": i["title"]}
            for i in state["issues"]
            if i["state"] == o.get("--state", "open") and ("--label" not in o or o["--label"] in i["labels"])
        ]
        return _jq(found[: int(o.get("--limit", 30))], o.get("--jq"))
    if verb == "create":
        _, o = _options(rest, {"--title": True, "--label": True, "--body-file": True})
        _repo(state, o)
        if o.get("--label") and o["--label"] not in state["labels"]:
            raise RefusedError(f"could not add label: '{o['--label']}' not found")
        number = len(state["issues"]) + 1
        state["issues"].append(
            {
                "number": number,
                "title": o["--title"],
                "state": "open",
                "labels": [o["--label"]] if o.get("--label") else [],
                "body": _body(Path(o["--body-file"]).read_text()),
                "comments": [],
            }
        )
        return f"https://github.com/{state['repo']}/issues/{number}\n"
    if verb == "edit":
        positional, o = _options(rest, {"--body-file": True})
        _repo(state, o)
        _issue(state, positional[0])["body"] = _body(Path(o["--body-file"]).read_text())
        return ""
    if verb == "comment":
        positional, o = _options(rest, {"--body": True, "--body-file": True})
        _repo(state, o)
        text = o["--body"] if "--body" in o else Path(o["--body-file"]).read_text()
        _issue(state, positional[0])["comments"].append(_body(text))
        return ""
    if verb == "close":
        positional, o = _options(rest, {})
        _repo(state, o)
        _issue(state, positional[0])["state"] = "closed"
        return ""
    raise RefusedError(f"unknown command: issue {verb}", 2)


def label(state: dict[str, Any], args: list[str]) -> str:
    if args[:1] != ["create"]:
        raise RefusedError(f"unknown command: label {args[:1]}", 2)
    positional, o = _options(args[1:], {"--color": True, "--description": True, "--force": False})
    _repo(state, o)
    if positional[0] in state["labels"] and "--force" not in o:
        raise RefusedError(f"label with name {positional[0]!r} already exists; use `--force` to update")
    state["labels"][positional[0]] = {"color": o.get("--color"), "description": o.get("--description")}
    return ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path, state = _load()
    state["calls"].append(argv)
    try:
        if not os.environ.get("GH_TOKEN"):
            raise RefusedError(
                "gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN environment variable.", 4
            )
        commands = {"api": api, "issue": issue, "label": label}
        if argv[:2] == ["run", "download"]:
            out = run_download(state, argv[2:])
        elif argv and argv[0] in commands:
            out = commands[argv[0]](state, argv[1:])
        else:
            raise RefusedError(f"unknown command: {argv[:2]}", 2)
    except RefusedError as refused:
        path.write_text(json.dumps(state))
        print(str(refused), file=sys.stderr)
        return refused.code
    path.write_text(json.dumps(state))
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
