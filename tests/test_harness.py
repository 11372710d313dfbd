"""The test harness itself: the GitHub API stand-in is as strict as GitHub, the runner as a runner.

Other tests trust these stand-ins; here they are held to what the real things do.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.harness.expressions import Evaluator, ExpressionError
from tests.harness.github_api import GitHubAPI, Reply, Ruleset
from tests.harness.workflow import (
    RUNNER_PYTHON,
    Context,
    HarnessError,
    assert_guarded,
    dispatch_context,
    guard_trips,
    guarded_client_env,
    parse_file_commands,
    push_context,
    run_job,
)

TOKEN = "ghp_harness"
REPO = "acme/app"
SHA = "a" * 40


def _call(api: GitHubAPI, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
    """(status, parsed JSON or None, headers) of one request to the stand-in, headers exactly as given."""
    sent = {"User-Agent": "harness-test", "Authorization": f"Bearer {TOKEN}", **(headers or {})}
    sent = {k: v for k, v in sent.items() if v is not None}
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    host, port = api.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in {**sent, "Content-Length": str(len(data or b""))}.items():
            connection.putheader(name, value)
        connection.endheaders(data)
        response = connection.getresponse()
        text = response.read()
        return response.status, json.loads(text) if text else None, dict(response.headers)
    finally:
        connection.close()


@pytest.fixture
def api():
    with GitHubAPI(repositories=[REPO, "acme/infra"]) as server:
        server.add_token(TOKEN)
        yield server


# --- the GitHub API stand-in --------------------------------------------------------------------


def test_requests_need_a_known_token(api):
    status, body, _ = _call(api, "POST", f"/repos/{REPO}/dispatches", {"event_type": "x"}, {"Authorization": None})
    assert (status, body["message"]) == (401, "Requires authentication")
    status, body, _ = _call(
        api, "POST", f"/repos/{REPO}/dispatches", {"event_type": "x"}, {"Authorization": "Bearer no"}
    )
    assert (status, body["message"], body["status"]) == (401, "Bad credentials", "401")
    status, _, _ = _call(
        api, "POST", f"/repos/{REPO}/dispatches", {"event_type": "x"}, {"Authorization": f"token {TOKEN}"}
    )
    assert status == 204
    assert [r.status for r in api.requests] == [401, 401, 204]
    assert api.requests[1].token == "no"


def test_user_agent_and_api_version_are_checked(api):
    status, body, _ = _call(api, "GET", f"/repos/{REPO}/commits/{SHA}/statuses", headers={"User-Agent": None})
    assert status == 403 and "User-Agent" in body["message"]
    status, body, _ = _call(
        api, "GET", f"/repos/{REPO}/commits/{SHA}/statuses", headers={"X-GitHub-Api-Version": "2021-01-01"}
    )
    assert status == 400 and "X-GitHub-Api-Version" in body["message"]
    status, _, headers = _call(
        api, "GET", f"/repos/{REPO}/commits/{SHA}/statuses", headers={"X-GitHub-Api-Version": "2026-03-10"}
    )
    assert status == 200 and headers["X-GitHub-Api-Version-Selected"] == "2026-03-10"


def test_repository_access_follows_the_token(api):
    api.add_token("ghs_other", repositories=["acme/infra"], write=False)
    auth = {"Authorization": "Bearer ghs_other"}
    assert _call(api, "POST", f"/repos/{REPO}/dispatches", {"event_type": "x"}, auth)[0] == 404
    assert _call(api, "POST", "/repos/acme/infra/dispatches", {"event_type": "x"}, auth)[0] == 403
    assert _call(api, "POST", "/repos/acme/unknown/dispatches", {"event_type": "x"})[0] == 404
    assert _call(api, "GET", "/repos/acme/infra/nothing-here")[0] == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"event_type": 5},
        {"event_type": ""},
        {"event_type": "x" * 101},
        {"event_type": "x", "client_payload": "text"},
        {"event_type": "x", "client_payload": [1]},
        {"event_type": "x", "client_payload": {f"k{i}": i for i in range(11)}},
        {"event_type": "x", "client_payload": {"big": "x" * 70_000}},
        ["event_type"],
    ],
)
def test_invalid_dispatch_bodies_get_422(api, body):
    status, answer, _ = _call(api, "POST", f"/repos/{REPO}/dispatches", body)
    assert status == 422
    assert set(answer) == {"message", "documentation_url", "status"}
    assert api.dispatches == []


def test_a_valid_dispatch_gets_204_and_is_recorded(api):
    body = {"event_type": "x-changed", "client_payload": {f"k{i}": str(i) for i in range(10)}}
    status, answer, headers = _call(api, "POST", f"/repos/{REPO}/dispatches", body)
    assert (status, answer) == (204, None)
    assert "X-GitHub-Request-Id" in headers
    assert api.dispatches == [(REPO, body)]
    assert api.requests[0].json == body and api.requests[0].route == "dispatches"


def test_unparsable_json_gets_400(api):
    status, answer, _ = _call(api, "POST", f"/repos/{REPO}/dispatches", raw=b"{not json")
    assert (status, answer["message"]) == (400, "Problems parsing JSON")


def test_commit_statuses_are_validated_and_listed(api):
    ok = {"state": "pending", "target_url": "https://example.com/run/1", "description": "queued", "context": "ci"}
    status, answer, _ = _call(api, "POST", f"/repos/{REPO}/statuses/{SHA}", ok)
    assert status == 201 and answer["state"] == "pending" and answer["context"] == "ci"
    assert _call(api, "POST", f"/repos/{REPO}/statuses/{SHA}", {"state": "done"})[0] == 422
    assert _call(api, "POST", f"/repos/{REPO}/statuses/{SHA}", {"state": "error", "description": "x" * 141})[0] == 422
    assert _call(api, "POST", f"/repos/{REPO}/statuses/abc", {"state": "success"})[0] == 422
    status, listed, _ = _call(api, "GET", f"/repos/{REPO}/commits/{SHA}/statuses")
    assert status == 200 and [s["state"] for s in listed] == ["pending"]


def test_comparisons_answer_github_shapes(api):
    api.add_comparison(REPO, SHA, "b" * 40, files=["a/x", ("b/y", "c/y")])
    status, answer, _ = _call(api, "GET", f"/repos/{REPO}/compare/{SHA}...{'b' * 40}")
    assert status == 200
    assert [(f["filename"], f.get("previous_filename")) for f in answer["files"]] == [("a/x", None), ("b/y", "c/y")]
    assert answer["status"] == "ahead"
    assert _call(api, "GET", f"/repos/{REPO}/compare/{SHA}..{'b' * 40}")[0] == 404
    assert _call(api, "GET", f"/repos/{REPO}/compare/{'c' * 40}...{'b' * 40}")[0] == 404


def test_scripted_replies_come_first_in_order(api):
    api.script("dispatches", Reply.server_error(503), Reply.rate_limited(retry_after=7))
    body = {"event_type": "x"}
    first = _call(api, "POST", f"/repos/{REPO}/dispatches", body)
    second = _call(api, "POST", f"/repos/{REPO}/dispatches", body)
    third = _call(api, "POST", f"/repos/{REPO}/dispatches", body)
    assert [first[0], second[0], third[0]] == [503, 429, 204]
    assert second[2]["Retry-After"] == "7"
    with pytest.raises(KeyError):
        api.script("no-such-route", Reply.not_found())


def test_branch_rules_come_from_the_rulesets_that_name_the_branch(api):
    api.add_ruleset(REPO, Ruleset("branch", frozenset({"creation", "update"}), frozenset(), ("refs/heads/hotfix/*",)))
    api.add_ruleset(REPO, Ruleset("branch", frozenset({"deletion"}), frozenset()))  # every branch
    api.add_ruleset(REPO, Ruleset("tag", frozenset({"update"}), frozenset()))

    def types(branch: str) -> list[tuple[str, int]]:
        status, answer, _ = _call(api, "GET", f"/repos/{REPO}/rules/branches/{branch}")
        assert status == 200
        assert all(rule["ruleset_source_type"] == "Repository" and rule["ruleset_source"] == REPO for rule in answer)
        return [(rule["type"], rule["ruleset_id"]) for rule in answer]

    assert types("hotfix/x") == [("creation", 1), ("update", 1), ("deletion", 2)]
    assert types("hotfix%2Fx") == [("creation", 1), ("update", 1), ("deletion", 2)]
    # `*` stops at a slash, as GitHub's File::FNM_PATHNAME matching does; the branch need not exist.
    assert types("hotfix/a/b") == [("deletion", 2)]
    assert types("main") == [("deletion", 2)]
    assert _call(api, "GET", f"/repos/{REPO}/rules/branches/hotfix/x?per_page=2&page=2")[1] == [
        {"type": "deletion", "ruleset_source_type": "Repository", "ruleset_source": REPO, "ruleset_id": 2}
    ]
    assert _call(api, "GET", "/repos/acme/unknown/rules/branches/main")[0] == 404


def test_branch_rules_need_only_metadata_which_every_token_has(api):
    api.add_token("github_pat_statuses", repositories=[REPO], permissions={"statuses": "write"})
    api.add_token("github_pat_elsewhere", repositories=["acme/infra"], permissions={"contents": "read"})
    assert _call(
        api, "GET", f"/repos/{REPO}/rules/branches/main", headers={"Authorization": "Bearer github_pat_statuses"}
    )[:2] == (200, [])
    elsewhere = {"Authorization": "Bearer github_pat_elsewhere"}
    assert _call(api, "GET", f"/repos/{REPO}/rules/branches/main", headers=elsewhere)[0] == 404


def test_a_ruleset_limits_writes_to_the_refs_it_includes(api):
    api.add_token("ghp_writer", actor="writer")
    api.add_ruleset(REPO, Ruleset("branch", frozenset({"creation"}), frozenset({"admin"}), ("refs/heads/hotfix/*",)))
    writer = {"Authorization": "Bearer ghp_writer"}
    refused = _call(api, "POST", f"/repos/{REPO}/git/refs", {"ref": "refs/heads/hotfix/x", "sha": SHA}, writer)
    assert refused[0] == 422 and "creations being restricted" in refused[1]["message"]
    assert _call(api, "POST", f"/repos/{REPO}/git/refs", {"ref": "refs/heads/feature/x", "sha": SHA}, writer)[0] == 201
    assert _call(api, "POST", f"/repos/{REPO}/git/refs", {"ref": "refs/tags/hotfix/x", "sha": SHA}, writer)[0] == 201


def test_the_server_stops_on_exit():
    with GitHubAPI() as server:
        url = server.url
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/", timeout=2)  # noqa: S310 - the local stand-in


# --- expressions -----------------------------------------------------------------------------------


def _eval(text: str, **contexts):
    return Evaluator({"github": {}, "env": {}, **contexts}).expression(text)


def test_expressions_follow_github_semantics():
    steps = {"decide": {"outputs": {"send": "true", "n": "3"}}}
    assert _eval("steps.decide.outputs.send == 'TRUE'", steps=steps) is True  # strings ignore case
    assert _eval("steps.decide.outputs.n == 3", steps=steps) is True  # loose: compared as numbers
    assert _eval("steps.missing.outputs.x == ''", steps=steps) is True  # null == '' (both 0)
    assert _eval("steps.decide.outputs.send && 'yes'", steps=steps) == "yes"  # && returns an operand
    assert _eval("'' || 'fallback'") == "fallback"
    assert _eval("!null") is True
    assert _eval("Github.Event_Name", github={"event_name": "push"}) == "push"  # names ignore case
    assert _eval("format('{0}-{{x}}-{1}', 'a', 2)") == "a-{x}-2"
    assert _eval("fromJSON('[1, 2]')") == [1, 2]
    assert _eval("contains(fromJSON('[\"a\", \"b\"]'), 'B')") is True
    assert _eval("startsWith(github.ref, 'refs/heads/')", github={"ref": "refs/heads/x"}) is True
    assert _eval("toJSON(github.event)", github={"event": {"a": 1}}) == '{\n  "a": 1\n}'
    assert _eval("'it''s'") == "it's"


@pytest.mark.parametrize(
    "text",
    ["github.event['x']", "1 < 2", "hashFiles('x')", "unknown.x", "github.*", "'open", "a ==", "github.ref }}"],
)
def test_unsupported_or_invalid_expressions_raise(text):
    with pytest.raises(ExpressionError):
        _eval(text)


def test_templates_and_conditions():
    evaluator = Evaluator({"github": {"ref": "refs/heads/main", "n": 2}, "env": {}}, status=lambda s: s != "failure")
    assert evaluator.template("ref=${{ github.ref }} n=${{ github.n }}") == "ref=refs/heads/main n=2"
    assert evaluator.template("${{ github.n }}") == 2
    assert evaluator.template("${{ '}}' }}") == "}}"
    assert evaluator.condition("github.ref == 'refs/heads/main'") is True
    assert evaluator.condition("${{ failure() }}") is False
    failed = Evaluator({"github": {}, "env": {}}, status=lambda s: s in ("failure", "always"))
    assert failed.condition("true") is False  # implicit success()
    assert failed.condition("always()") is True


def test_file_commands_parse_like_the_runner():
    text = "a=1\nb<<EOF\nline 1\nline 2\nEOF\nc=x=y\n"
    assert parse_file_commands(text, "output") == {"a": "1", "b": "line 1\nline 2", "c": "x=y"}
    with pytest.raises(HarnessError):
        parse_file_commands("no separator\n", "output")
    with pytest.raises(HarnessError):
        parse_file_commands("b<<EOF\nnever closed\n", "output")


# --- the runner ------------------------------------------------------------------------------------


def _workflow(steps: list, **job) -> dict:
    return {
        "name": "t",
        "on": {"push": {}},
        "env": {"TOP": "top"},
        "jobs": {"j": {"runs-on": "ubuntu-24.04", "env": {"JOB": "${{ github.ref }}"}, "steps": steps, **job}},
    }


def test_steps_run_in_bash_with_runner_env_outputs_and_summary():
    steps = [
        {"id": "one", "shell": "bash", "env": {"REF": "${{ github.ref }}"}, "run": 'echo "x=$REF" >> "$GITHUB_OUTPUT"'},
        {
            "id": "two",
            "shell": "bash",
            "env": {"X": "${{ steps.one.outputs.x }}"},
            "run": 'echo "NEXT=$X/$TOP/$JOB" >> "$GITHUB_ENV"; echo "## hi" >> "$GITHUB_STEP_SUMMARY"',
        },
        {"id": "three", "shell": "bash", "run": 'echo "$NEXT $GITHUB_REPOSITORY $CI"; echo "$-" >&2'},
    ]
    result = run_job(_workflow(steps), "j", Context(github=push_context(REPO, "refs/heads/main", SHA, "b" * 40)))
    assert result.status == "success"
    assert result.step("one").outputs == {"x": "refs/heads/main"}
    assert result.step("three").stdout == f"refs/heads/main/top/refs/heads/main {REPO} true\n"
    assert "e" in result.step("three").stderr  # bash -e, as `shell: bash` runs
    assert result.summary == "## hi\n"


def test_conditions_failures_and_continue_on_error():
    steps = [
        {"id": "bad", "run": "exit 3", "continue-on-error": True},
        {"id": "fails", "run": "exit 4"},
        {"id": "skipped", "run": "echo no"},
        {"id": "cleanup", "if": "always()", "run": "echo cleanup"},
        {"id": "on-failure", "if": "failure()", "run": "echo failed"},
    ]
    result = run_job(_workflow(steps), "j", Context(github=dispatch_context(REPO, "refs/heads/main", SHA)))
    assert result.status == "failure"
    assert (result.step("bad").outcome, result.step("bad").conclusion) == ("failure", "success")
    assert result.step("fails").exit_code == 4
    assert result.step("skipped").ran is False
    assert result.step("cleanup").stdout == "cleanup\n"
    assert result.step("on-failure").stdout == "failed\n"


def test_uses_steps_are_skipped_unless_given_a_stand_in():
    steps = [
        {"id": "co", "uses": "actions/checkout@" + "0" * 40, "with": {"ref": "${{ github.sha }}"}},
        {"id": "after", "shell": "bash", "env": {"GOT": "${{ steps.co.outputs.ref }}"}, "run": 'echo "$GOT"'},
    ]
    context = Context(github=dispatch_context(REPO, "refs/heads/main", SHA))
    skipped = run_job(_workflow(steps), "j", context)
    assert skipped.step("co").ran is False and skipped.step("after").stdout == "\n"
    seen = []

    def checkout(step, with_, env):
        seen.append(with_)
        return {"ref": with_["ref"]}

    ran = run_job(_workflow(steps), "j", context, uses={"actions/checkout": checkout})
    assert seen == [{"ref": SHA}] and ran.step("after").stdout == f"{SHA}\n"


def test_a_job_if_and_job_outputs():
    workflow = _workflow(
        [{"id": "s", "run": 'echo "v=1" >> "$GITHUB_OUTPUT"'}],
        outputs={"value": "${{ steps.s.outputs.v }}"},
    )
    workflow["jobs"]["j"]["if"] = "needs.resolve.outputs.deploy == 'true'"
    yes = Context(
        github=dispatch_context(REPO, "refs/heads/main", SHA), needs={"resolve": {"outputs": {"deploy": "true"}}}
    )
    no = Context(
        github=dispatch_context(REPO, "refs/heads/main", SHA), needs={"resolve": {"outputs": {"deploy": "false"}}}
    )
    assert run_job(workflow, "j", yes).outputs == {"value": "1"}
    assert run_job(workflow, "j", no).status == "skipped"


def test_a_step_that_runs_too_long_is_stopped():
    with pytest.raises(HarnessError, match="ran longer than"):
        run_job(_workflow([{"run": "sleep 30"}]), "j", Context(github={}), step_timeout=0.5)


def test_what_the_harness_does_not_model_raises():
    with pytest.raises(HarnessError):
        run_job(_workflow([{"run": "true", "shell": "pwsh"}]), "j", Context(github={}))
    with pytest.raises(HarnessError):
        run_job(_workflow([], container="node:22"), "j", Context(github={}))


def test_a_python_step_cannot_pass_a_secret_to_a_command_it_starts_with_a_path_of_its_own() -> None:
    """ci/oci.py starts openssl and ssh-keygen with a fixed PATH, past the guard scripts: the
    guard inside the runner's Python sees every process it starts."""
    secret = "ghp_a_secret_of_the_run_654321"
    program = (
        "import subprocess, sys\n"
        "done = subprocess.run(['/bin/echo', 'on stdin'], input=sys.argv[1], text=True, env={'PATH': '/bin'})\n"
        "print(done.returncode)\n"
        "subprocess.run(['/bin/echo', '--pass', sys.argv[1]], env={'PATH': '/bin'})\n"
    )
    steps = [
        {"env": {"TOKEN": "${{ secrets.API_TOKEN }}", "PROGRAM": program}, "run": 'python3 -c "$PROGRAM" "$TOKEN"'}
    ]
    context = Context(github=push_context(REPO, "refs/heads/main", SHA, "b" * 40), secrets={"API_TOKEN": secret})
    result = run_job(_workflow(steps), "j", context, refusals_expected=True)
    assert "on stdin\n0" in result.log
    assert result.status == "failure"
    assert "PermissionError: harness: a secret of the run is on echo's command line" in result.log
    assert secret not in result.log


def test_the_deploy_clients_guard_refuses_each_secret_it_is_given_and_notes_it(tmp_path) -> None:
    """guarded_client_env: the deploy job's secrets (a JSON one value by value) are refused on any
    command line the client's Python starts, and each refusal is noted for the test to see."""
    credential = json.dumps({"type": "apiKey", "privateKey": "-----BEGIN PRIVATE KEY-----\nMIIEvQ-key-body\n"})
    env = guarded_client_env(
        {"PATH": "/usr/bin:/bin", "OCI_DEPLOY_CREDENTIAL": credential, "DEPLOY_REGISTRY_TOKEN": "ghs_registry_token"},
        tmp_path / "guard",
    )
    script = "from ci import oci; import sys; print(oci.tool('echo', sys.argv[1]).stdout.decode().strip())"

    def run(argument: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [RUNNER_PYTHON, "-c", script, argument], env=env, capture_output=True, text=True, timeout=30, check=False
        )

    assert run("ordinary").stdout == "ordinary\n"
    assert (tmp_path / "guard" / "loaded").exists() and guard_trips(tmp_path / "guard") == []
    for secret in ("MIIEvQ-key-body", "x=ghs_registry_token"):
        refused = run(secret)
        assert "OciError: echo could not run: PermissionError" in refused.stderr, refused.stderr
    assert guard_trips(tmp_path / "guard") == ["echo", "echo"]
    # On the job's PATH too: the guard scripts stand before the commands the PATH has, and only those.
    assert (tmp_path / "guard" / "curl").exists() and not (tmp_path / "guard" / "oci").exists()
    curl = subprocess.run(["curl", "-H", "Authorization: ghs_registry_token"], env=env, capture_output=True, timeout=30)
    assert curl.returncode == 97 and guard_trips(tmp_path / "guard") == ["echo", "echo", "curl"]


def test_a_client_run_without_the_guard_inside_is_not_taken_for_a_clean_one(tmp_path) -> None:
    """`python3 -I` skips PYTHONPATH, and so the guard: assert_guarded says so."""
    env = guarded_client_env({"PATH": "/usr/bin:/bin"}, tmp_path / "guard")
    subprocess.run([RUNNER_PYTHON, "-I", "-c", "pass"], env=env, check=True, timeout=30)
    with pytest.raises(AssertionError, match="the argv guard was not loaded"):
        assert_guarded(tmp_path / "guard")
    subprocess.run([RUNNER_PYTHON, "-c", "pass"], env=env, check=True, timeout=30)
    assert_guarded(tmp_path / "guard")


def test_a_secret_on_a_guarded_commands_command_line_fails_the_step() -> None:
    """Any process on a runner can read another's command line: the harness refuses a secret
    there (curl, docker, ssh, oci, git, wget), and lets the same value through on stdin."""
    secret = "ghp_a_secret_of_the_run_123456"
    steps = [
        {
            "id": "stdin",
            "env": {"TOKEN": "${{ secrets.API_TOKEN }}"},
            "run": 'printf "Authorization: token %s\\n" "$TOKEN" | curl -sS --max-time 2 -H @- http://127.0.0.1:9/ '
            '|| echo "curl exited $?"',
        },
        {
            "env": {"TOKEN": "${{ secrets.API_TOKEN }}"},
            "run": 'curl -sS --max-time 2 -H "Authorization: token $TOKEN" http://127.0.0.1:9/',
        },
    ]
    context = Context(github=push_context(REPO, "refs/heads/main", SHA, "b" * 40), secrets={"API_TOKEN": secret})
    result = run_job(_workflow(steps), "j", context, refusals_expected=True)
    assert "curl exited 7" in result.log  # refused by nothing listening, not by the guard
    with pytest.raises(HarnessError, match="a secret of the run on the command line of curl"):
        run_job(_workflow(steps), "j", context)
    assert result.status == "failure"
    assert "a secret of the run is on curl's command line" in result.log
    assert secret not in result.log
