"""The shared wiring under the mock engine: what the real program registers, for which config."""

from __future__ import annotations

import json

import pulumi
import pytest
import yaml

from components import wiring
from components.environment import compose
from components.preflight import GithubFacts, Repository
from components.settings import Commit, ConfigError, SourceRepository
from components.settings import Component as RepoComponent
from components.workflows import central, trigger
from tools import offline
from tools import plan as plan_tool

FILE = "github:index/repositoryFile:RepositoryFile"
SECRET = "github:index/actionsSecret:ActionsSecret"
ORG_SECRET = "github:index/actionsOrganizationSecret:ActionsOrganizationSecret"
WIRING = "dreamscape:wiring:SharedWiring"
REPO_WIRING = "dreamscape:wiring:SourceRepository"
GITHUB_TYPES = (FILE, SECRET, ORG_SECRET)


def _repos(count: int) -> list[dict]:
    return [
        {"name": f"svc-{i:02d}", "kind": "tests", "components": [{"name": f"part-{i}"}, {"name": "shared"}]}
        for i in range(count)
    ]


def _trigger_files(plan: offline.Plan) -> list[offline.Registered]:
    """The trigger files among the plan's files (the infra repository gets its own files too)."""
    return [r for r in plan.of_type(FILE) if r.plain("file") == trigger.PATH]


def _wired_values(config: dict, repo: dict) -> dict[str, str]:
    """What one repository's trigger must carry, straight from its config entry."""
    return {
        "CENTRAL_REPOSITORY": f"{config['githubOwner']}/{config['infraRepository']}",
        "EVENT_TYPE": f"{repo['kind']}-changed",
        "KNOWN_COMPONENTS": ",".join(c["name"] for c in repo["components"]),
    }


def _wired(plan: offline.Plan, type_: str) -> list[offline.Registered]:
    """Resources of a type that the shared wiring registered (the environment has its own)."""
    return [r for r in plan.of_type(type_) if "::dreamscape:wiring:" in r.urn]


def _by_repo(plan: offline.Plan, type_: str) -> dict[str, list[offline.Registered]]:
    out: dict[str, list[offline.Registered]] = {}
    for r in _wired(plan, type_):
        out.setdefault(r.plain("repository"), []).append(r)
    return out


def _check_repository_wiring(plan: offline.Plan, config: dict, repo: dict) -> None:
    """Everything one source repository must get, read back from what was registered."""
    name = repo["name"]
    group = plan.named(f"wiring-{name}")
    assert group.type == REPO_WIRING
    assert group.parent_name == "wiring"
    children = plan.children_of(group)

    files = sorted((r for r in children if r.type == FILE), key=lambda r: r.plain("branch"))
    assert [(f.plain("repository"), f.plain("branch"), f.plain("file")) for f in files] == [
        (name, "develop", ".github/workflows/trigger-central-cicd.yml"),
        (name, "main", ".github/workflows/trigger-central-cicd.yml"),
    ]
    commit = config["commit"]
    wired = _wired_values(config, repo)
    for f in files:
        assert f.name == f"wiring-{name}-trigger-{f.plain('branch')}"
        assert f.plain("content") == trigger.render(
            wired["CENTRAL_REPOSITORY"], wired["EVENT_TYPE"], tuple(c["name"] for c in repo["components"])
        )
        assert yaml.safe_load(f.plain("content"))["jobs"]["dispatch"]["env"] == wired
        marked = commit["message"] if "[skip ci]" in commit["message"] else commit["message"] + " [skip ci]"
        assert f.plain("commitMessage") == marked
        assert f.plain("commitAuthor") == commit["authorName"]
        assert f.plain("commitEmail") == commit["authorEmail"]
        assert f.plain("overwriteOnCreate") is True


# --- the default repositories -------------------------------------------------------------------


def test_each_default_repository_gets_trigger_files_and_a_secret(plan_of, stack_config):
    plan = plan_of("production")
    config = stack_config("production")
    repos = config["sourceRepositories"]
    assert len(repos) == 4
    for repo in repos:
        _check_repository_wiring(plan, config, repo)
    assert len(_trigger_files(plan)) == 8
    secrets = _by_repo(plan, SECRET)
    assert sorted(secrets) == sorted([r["name"] for r in repos] + [config["infraRepository"]])
    assert _wired(plan, ORG_SECRET) == []
    [top] = plan.of_type(WIRING)
    assert top.parent_name == "dreamscape-infra-production"


def test_the_wiring_goes_through_a_provider_for_the_configured_owner(plan_of, stack_config):
    plan = plan_of("production")
    [provider] = plan.of_type("pulumi:providers:github")
    assert provider.plain("owner") == stack_config("production")["githubOwner"]


def test_each_repository_gets_only_its_own_credential_and_it_stays_secret(plan_of):
    """Source repositories hold what can only start the pipeline; the infra repository holds the rest."""
    plan = plan_of("production")
    secrets = _wired(plan, SECRET)
    assert {r.plain("repository"): (r.plain("secretName"), r.plain("value")) for r in secrets} == {
        "dreamscape-services": ("DISPATCH_TOKEN", offline.PLACEHOLDER_PREFIX + "dispatchToken"),
        "dreamscape-frontend": ("DISPATCH_TOKEN", offline.PLACEHOLDER_PREFIX + "dispatchToken"),
        "dreamscape-tests": ("DISPATCH_TOKEN", offline.PLACEHOLDER_PREFIX + "dispatchToken"),
        "dreamscape-docs": ("DISPATCH_TOKEN", offline.PLACEHOLDER_PREFIX + "dispatchToken"),
        "dreamscape-infra": ("PIPELINE_TOKEN", offline.PLACEHOLDER_PREFIX + "pipelineToken"),
    }
    for r in secrets:
        assert offline.is_secret(r.inputs["value"]), r.name
        assert offline.is_secret(r.outputs["value"]), r.name
        assert "value" in r.options["additionalSecretOutputs"]


def test_workflow_files_output_lists_every_trigger_file(plan_of, stack_config):
    plan = plan_of("production")
    expected = [
        f"{repo['name']}@{branch}:.github/workflows/trigger-central-cicd.yml"
        for repo in stack_config("production")["sourceRepositories"]
        for branch in ("main", "develop")
    ]
    infra = [f"dreamscape-infra@main:{path}" for path in (central.PATH, central.DATA_PATH)]
    assert plan.outputs["workflowFiles"] == [*expected, *infra]
    assert "workflowFiles" not in plan.secret_outputs


def test_the_plan_names_the_token_permissions_the_wiring_needs(plan_of, run_with):
    needs = " ".join(plan_of("production").outputs["githubTokenNeeds"])
    assert "workflow" in needs and "Workflows: read and write" in needs
    assert "admin:org" not in needs
    org = " ".join(run_with("production", dispatchTokenScope="organization").outputs["githubTokenNeeds"])
    assert "admin:org" in org


@pytest.mark.parametrize("stack", ["dev", "staging"])
def test_a_stack_that_does_not_own_the_wiring_registers_none_of_it(plan_of, stack):
    plan = plan_of(stack)
    assert plan.outputs["ownsWiring"] is False
    assert [r.name for r in plan.resources if "::dreamscape:wiring:" in r.urn] == []
    # What the stack writes to GitHub: its own environment's deploy side and compose file.
    github = [r for r in plan.resources if r.type in GITHUB_TYPES]
    assert all("::dreamscape:environment:" in r.urn for r in github)
    files = [(r.plain("repository"), r.plain("file")) for r in github if r.type == FILE]
    assert files == [("dreamscape-infra", compose.path(stack))]
    assert plan.outputs["workflowFiles"] == []
    needs = " ".join(plan.outputs["githubTokenNeeds"])
    assert "workflow (classic)" not in needs and "Administration" in needs


def test_each_trigger_file_carries_exactly_its_own_repository_values(plan_of, stack_config):
    plan = plan_of("production")
    config = stack_config("production")
    repos = config["sourceRepositories"]
    assert len({r["kind"] for r in repos}) == len(repos), "the defaults must tell the repositories apart"
    files = {name: found for name, found in _by_repo(plan, FILE).items() if name != config["infraRepository"]}
    assert sorted(files) == sorted(r["name"] for r in repos)
    rest = []
    for repo in repos:
        assert len(files[repo["name"]]) == 2
        for f in files[repo["name"]]:
            content = f.plain("content")
            document = yaml.safe_load(content)
            assert document["jobs"]["dispatch"].pop("env") == _wired_values(config, repo)
            for other in repos:
                if other is not repo:
                    assert f"{other['kind']}-changed" not in content, (repo["name"], other["name"])
                    assert _wired_values(config, other)["KNOWN_COMPONENTS"] not in content, (
                        repo["name"],
                        other["name"],
                    )
            rest.append(document)
    # Apart from those three values, every repository's file is the same workflow.
    assert len(rest) == 8 and all(document == rest[0] for document in rest)


def _github_resources(plan: offline.Plan) -> list[offline.Registered]:
    """What `pulumi up` writes to GitHub (the provider itself is no write)."""
    return [r for r in plan.resources if r.type.startswith("github:")]


@pytest.mark.parametrize(
    ("scope", "actions_settings", "per_repository"),
    [("repository", True, 6), ("organization", True, 5), ("repository", False, 4), ("organization", False, 3)],
)
def test_github_resources_per_source_repository_stay_within_budget(run_with, scope, actions_settings, per_repository):
    """Each GitHub resource is a write on the first `pulumi up`, about a second apart.

    With `repository` scope a source repository costs its two trigger files, its secret and its
    review ruleset (repositoryRules); with `organization` scope the same without the secret;
    `actionsSettings` adds its two Actions settings. A deployable repository adds its
    production-branch ruleset (these are not deployable). The infra repository's PIPELINE_TOKEN,
    rulesets and settings, and the one organization secret, are there once however many
    repositories there are.
    """
    totals = {}
    for count in (1, 4, 30):
        plan = run_with(
            "production",
            sourceRepositories=_repos(count),
            dispatchTokenScope=scope,
            actionsSettings=actions_settings,
        )
        groups = plan.of_type(REPO_WIRING)
        assert len(groups) == count
        for group in groups:
            children = plan.children_of(group)
            assert all(r.type.startswith("github:") for r in children), group.name
            assert len(children) == per_repository, (group.name, [r.type for r in children])
        wiring_secrets = [r.type for r in plan.children_of(plan.named("wiring")) if r.type in (SECRET, ORG_SECRET)]
        assert sorted(wiring_secrets) == sorted([SECRET] if scope == "repository" else [ORG_SECRET, SECRET])
        totals[count] = len(_github_resources(plan))
    assert totals[4] - totals[1] == 3 * per_repository, totals
    assert totals[30] - totals[4] == 26 * per_repository, totals


# --- one and thirty repositories -------------------------------------------------------------------


def test_one_repository(run_with, stack_config):
    repos = _repos(1)
    plan = run_with("production", sourceRepositories=repos)
    config = {**stack_config("production"), "sourceRepositories": repos}
    _check_repository_wiring(plan, config, repos[0])
    assert len(_trigger_files(plan)) == 2
    assert sorted(_by_repo(plan, SECRET)) == sorted(["svc-00", config["infraRepository"]])
    assert len(plan.of_type(REPO_WIRING)) == 1


def test_thirty_repositories(run_with, stack_config):
    repos = _repos(30)
    plan = run_with("production", sourceRepositories=repos)
    config = {**stack_config("production"), "sourceRepositories": repos}
    for repo in repos:
        _check_repository_wiring(plan, config, repo)
    assert len(_trigger_files(plan)) == 60
    assert len(_wired(plan, SECRET)) == 31
    assert len([f for f in plan.outputs["workflowFiles"] if f.endswith(trigger.PATH)]) == 60


def test_a_repository_keeps_its_urns_when_another_one_is_removed(run_with):
    both = run_with("production", sourceRepositories=_repos(2))
    second_only = run_with("production", sourceRepositories=_repos(2)[1:])

    def urns(plan):
        return {r.urn for r in plan.resources if "svc-01" in r.name}

    assert urns(second_only) == urns(both)
    assert len(urns(both)) == 7  # component, 2 files, 1 secret, 1 ruleset, 2 Actions settings


# --- organization scope --------------------------------------------------------------------------


def test_organization_scope_gives_one_secret_limited_to_the_repositories(run_with, stack_config):
    mocks = offline.OfflineMocks()
    plan = run_with("production", mocks=mocks, dispatchTokenScope="organization")
    config = stack_config("production")
    [infra_secret] = _wired(plan, SECRET)
    assert (infra_secret.plain("repository"), infra_secret.plain("secretName")) == (
        "dreamscape-infra",
        "PIPELINE_TOKEN",
    )
    [secret] = _wired(plan, ORG_SECRET)
    assert secret.parent_name == "wiring"
    assert secret.plain("secretName") == "DISPATCH_TOKEN"
    assert secret.plain("visibility") == "selected"
    assert offline.is_secret(secret.inputs["value"])
    looked_up = [args["fullName"] for token, args in mocks.calls if token.endswith("getRepository")]
    owner = config["githubOwner"]
    sources = [f"{owner}/{r['name']}" for r in config["sourceRepositories"]]
    assert sorted(set(looked_up)) == sorted([*sources, f"{owner}/{config['infraRepository']}"])
    answered = [mocks._repository({"fullName": name})["repoId"] for name in sources]  # not the infra repository
    assert sorted(int(i) for i in secret.plain("selectedRepositoryIds")) == sorted(answered)
    [(_, org_args)] = [c for c in mocks.calls if c[0].endswith("getOrganization")]
    assert org_args["name"] == owner and org_args["summaryOnly"] is True
    # The repositories still get their trigger files.
    assert len(_trigger_files(plan)) == 8


def test_organization_scope_with_a_user_account_is_a_config_error(run_with, stack_config):
    mocks = offline.OfflineMocks()
    mocks.user_accounts.add(stack_config("production")["githubOwner"])
    with pytest.raises(ConfigError, match=r"dreamscape-infra:dispatchTokenScope: 'organization' needs githubOwner"):
        run_with("production", mocks=mocks, dispatchTokenScope="organization")
    # The same owner with repository scope is fine: user accounts have repository secrets.
    plan = run_with("production", mocks=mocks, dispatchTokenScope="repository")
    assert len(_wired(plan, SECRET)) == 5


def test_organization_scope_on_the_free_plan_refuses_private_repositories(run_with, stack_config):
    mocks = offline.OfflineMocks()
    mocks.organization_plan = "free"
    with pytest.raises(ConfigError, match=r"not available to private repositories on GitHub Free"):
        run_with("production", mocks=mocks, dispatchTokenScope="organization")
    config = stack_config("production")
    owner = config["githubOwner"]
    mocks.public_repositories |= {f"{owner}/{r['name']}" for r in config["sourceRepositories"]}
    # The infra repository may stay private: it holds PIPELINE_TOKEN, not the organization secret.
    assert len(run_with("production", mocks=mocks, dispatchTokenScope="organization").of_type(ORG_SECRET)) == 1


# --- the token never shows ----------------------------------------------------------------------


def test_the_token_is_never_in_the_plan_output_or_its_json(tmp_path, capsys, run_with):
    sentinel = "ghp_" + "S3cr3tT0k3nThatMustNeverPrint" * 2
    pipeline = "github_pat_" + "An0th3rS3cr3tThatMustNeverPrint" * 2
    plan = run_with("production", secret={"dispatchToken": sentinel, "pipelineToken": pipeline})
    assert {r.plain("value") for r in _wired(plan, SECRET)} == {sentinel, pipeline}
    plan_tool.print_tree(plan, __import__("sys").stdout)
    text = json.dumps(plan_tool.as_json(plan))
    printed = capsys.readouterr().out
    for value in (sentinel, pipeline):
        assert value not in printed
        assert value not in text
    assert "[secret]" in text

    assert plan_tool.main(["--stack", "production", "--json", str(tmp_path / "plan.json")]) == 0
    printed = capsys.readouterr().out
    for key in ("dispatchToken", "pipelineToken"):
        placeholder = offline.PLACEHOLDER_PREFIX + key
        assert placeholder not in printed
        assert placeholder not in (tmp_path / "plan.json").read_text()


def test_plan_renders_eight_trigger_files(tmp_path, capsys):
    assert plan_tool.main(["--stack", "production", "--render-dir", str(tmp_path)]) == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    repos = ("dreamscape-docs", "dreamscape-frontend", "dreamscape-services", "dreamscape-tests")
    infra = [f"dreamscape-infra@main/{path}" for path in (central.PATH, central.DATA_PATH, compose.path("production"))]
    assert written == sorted(
        [
            f"{repo}@{branch}/.github/workflows/trigger-central-cicd.yml"
            for repo in repos
            for branch in ("develop", "main")
        ]
        + infra
        + ["oci/production-vm-instance/user-data.yaml"]
    )
    assert "Wrote 12 generated files" in capsys.readouterr().out


# --- the component on its own -----------------------------------------------------------------------


def _args(**changes) -> wiring.SharedWiringArgs:
    base = {
        "owner": "acme",
        "infra_repository": "infra",
        "source_repositories": (
            SourceRepository("web", "frontend", True, "true", "true", (RepoComponent("site", 80, "/"),)),
        ),
        "dispatch_token": pulumi.Output.secret("ghp_component"),
        "pipeline_token": pulumi.Output.secret("github_pat_component"),
        "dispatch_token_scope": "repository",
        "commit": Commit("ci: wiring", "bot", "bot@example.com"),
        "github": GithubFacts(
            infra=Repository("infra", 1, "main", "private"), sources={"web": Repository("web", 2, "trunk", "private")}
        ),
    }
    return wiring.SharedWiringArgs(**{**base, **changes})


def test_infra_files_go_to_the_infra_repository_default_branch():
    central = ".github/workflows/central-dispatch.yml"
    built: list[wiring.SharedWiring] = []

    def program():
        built.append(wiring.SharedWiring("w", _args(infra_files={central: "name: central\n"})))

    plan = offline.run_program(program)
    [infra_file] = [r for r in _wired(plan, FILE) if r.plain("repository") == "infra"]
    assert infra_file.plain("file") == central
    assert infra_file.plain("branch") == "main"  # the infra repository's default branch
    assert infra_file.plain("content") == "name: central\n"
    assert infra_file.plain("overwriteOnCreate") is True
    assert infra_file.parent_name == "w"
    assert built[0].workflow_files[-1] == f"infra@main:{central}"
    assert len(built[0].workflow_files) == 3


def test_an_unknown_token_scope_is_refused():
    def program():
        wiring.SharedWiring("w", _args(dispatch_token_scope="everywhere"))

    with pytest.raises(ValueError, match="unknown dispatch token scope"):
        offline.run_program(program)
