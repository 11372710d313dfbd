"""`fileDelivery`: files committed straight to their branches, or proposed in pull requests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components import delivery
from components.settings import ConfigError
from tests.conftest import golden_dir, plan_with
from tests.test_golden import files_under
from tools import offline
from tools import plan as plan_tool

FILE = "github:index/repositoryFile:RepositoryFile"
BRANCH = "github:index/branch:Branch"
PULL_REQUEST = "github:index/repositoryPullRequest:RepositoryPullRequest"
STACKS = ("dev", "staging", "production")

_PLANS: dict[str, offline.Plan] = {}


def proposed(stack: str) -> offline.Plan:
    """The stack's offline plan with `fileDelivery: pullRequest`, run once per session."""
    if stack not in _PLANS:
        _PLANS[stack] = plan_with(stack, fileDelivery="pullRequest")
    return _PLANS[stack]


def _target_of(head: str, stack: str) -> str:
    """The target branch a program branch proposes into (the inverse of delivery.program_branch)."""
    assert head.startswith(delivery.BRANCH_PREFIX), head
    target = head[len(delivery.BRANCH_PREFIX) :]
    return target.removesuffix(f"-{stack}") if stack != "production" else target


@pytest.mark.parametrize("stack", STACKS)
def test_one_pull_request_per_repository_and_target_branch(stack):
    plan = proposed(stack)
    pulls = plan.of_type(PULL_REQUEST)
    pairs = [(p.plain("baseRepository"), p.plain("baseRef")) for p in pulls]
    assert len(pairs) == len(set(pairs)), pairs
    files = plan.of_type(FILE)
    targets = {(f.plain("repository"), _target_of(f.plain("branch"), stack)) for f in files}
    assert set(pairs) == targets
    if stack == "production":
        sources = ("dreamscape-services", "dreamscape-frontend", "dreamscape-tests", "dreamscape-docs")
        expected = {(r, b) for r in sources for b in ("main", "develop")} | {("dreamscape-infra", "main")}
    else:
        expected = {("dreamscape-infra", "main")}
    assert set(pairs) == expected
    branches = {(b.plain("repository"), b.plain("branch")): b for b in plan.of_type(BRANCH)}
    assert len(branches) == len(pulls)
    for pull in pulls:
        head = pull.plain("headRef")
        branch = branches[(pull.plain("baseRepository"), head)]
        assert branch.plain("sourceBranch") == pull.plain("baseRef"), "the program's branch starts from its target"
        assert branch.urn in pull.options["dependsOn"]
        # The pull request waits for every file on its branch: GitHub refuses one with no new commit.
        on_branch = [
            f for f in files if (f.plain("repository"), f.plain("branch")) == (branch.plain("repository"), head)
        ]
        assert on_branch and {f.urn for f in on_branch} <= set(pull.options["dependsOn"])


def test_the_wiring_owner_proposes_its_compose_file_with_the_central_pipeline():
    plan = proposed("production")
    [infra] = [p for p in plan.of_type(PULL_REQUEST) if p.plain("baseRepository") == "dreamscape-infra"]
    assert infra.plain("headRef") == "dreamscape-infra/main"
    body = infra.plain("body")
    for path in (
        ".github/workflows/central-dispatch.yml",
        ".github/dreamscape/central.json",
        "deploy/compose.production.yml",
    ):
        assert f"`{path}`" in body


def test_no_two_stacks_own_the_same_branch_or_pull_request():
    """Each stack's state owns its branches: two stacks on one branch would undo each other."""
    owned: dict[tuple[str, str], str] = {}
    for stack in STACKS:
        for pull in proposed(stack).of_type(PULL_REQUEST):
            key = (pull.plain("baseRepository"), pull.plain("headRef"))
            assert key not in owned, f"{key} proposed by {owned.get(key)} and {stack}"
            owned[key] = stack
    assert owned[("dreamscape-infra", "dreamscape-infra/main-dev")] == "dev"
    assert owned[("dreamscape-infra", "dreamscape-infra/main-staging")] == "staging"


@pytest.mark.parametrize("stack", STACKS)
def test_no_file_is_committed_to_its_target_branch(stack):
    plan = proposed(stack)
    branches = {b.plain("branch"): b for b in plan.of_type(BRANCH)}
    files = plan.of_type(FILE)
    assert files
    for f in files:
        assert f.plain("branch").startswith(delivery.BRANCH_PREFIX), (f.name, f.plain("branch"))
        assert f.plain("branch") not in ("main", "develop")
        assert f.plain("autocreateBranch") in (None, False), "the program's branch is a Branch resource"
        program_branch = [b for b in plan.of_type(BRANCH) if b.plain("repository") == f.plain("repository")]
        [own] = [b for b in program_branch if b.plain("branch") == f.plain("branch")]
        assert own.urn in f.options["dependsOn"], f"{f.name} is written before its branch exists"
    assert branches


@pytest.mark.parametrize("stack", STACKS)
def test_proposed_files_are_the_golden_files_byte_for_byte(stack, tmp_path: Path):
    """Only where the files go changes: what they say is what `direct` writes (tests/golden)."""
    plan_tool.render(proposed(stack), tmp_path)
    rendered = files_under(tmp_path)
    mapped: dict[str, str] = {}
    for name, text in rendered.items():
        if name.startswith("oci/"):
            mapped[name] = text
            continue
        repository, rest = name.split("@", 1)
        head_tail, _, path = rest.partition("/")
        # A program branch has a slash: `repo@dreamscape-infra/<target>/<path>`.
        assert head_tail + "/" == delivery.BRANCH_PREFIX, name
        target_part, _, path = path.partition("/")
        target = _target_of(delivery.BRANCH_PREFIX + target_part, stack)
        mapped[f"{repository}@{target}/{path}"] = text
    assert mapped == files_under(golden_dir() / stack)


def test_the_stack_output_lists_each_pull_request():
    plan = proposed("production")
    pulls = plan.of_type(PULL_REQUEST)
    expected = sorted(
        f"DREAMSCAPE-AI/{p.plain('baseRepository')}#{p.outputs['number']}: {p.plain('headRef')} -> {p.plain('baseRef')}"
        for p in pulls
    )
    assert sorted(plan.outputs["pendingPullRequests"]) == expected
    assert len(expected) == 9
    assert all(re.fullmatch(r"DREAMSCAPE-AI/[\w-]+#\d+: dreamscape-infra/\S+ -> \S+", e) for e in expected)
    assert proposed("dev").outputs["pendingPullRequests"] == [
        f"DREAMSCAPE-AI/dreamscape-infra#{proposed('dev').of_type(PULL_REQUEST)[0].outputs['number']}: "
        "dreamscape-infra/main-dev -> main"
    ]


def test_the_outputs_name_the_branches_the_files_went_to():
    plan = proposed("production")
    assert (
        "dreamscape-infra@dreamscape-infra/main:.github/workflows/central-dispatch.yml" in plan.outputs["workflowFiles"]
    )
    assert all("@dreamscape-infra/" in f for f in plan.outputs["workflowFiles"])
    assert proposed("dev").outputs["composeFile"] == "dreamscape-infra@dreamscape-infra/main-dev:deploy/compose.dev.yml"


def test_a_pull_request_says_what_it_carries_and_who_wrote_it():
    plan = proposed("production")
    files = {
        (f.plain("repository"), f.plain("branch"), f.plain("file")): f.plain("content") for f in plan.of_type(FILE)
    }
    for pull in plan.of_type(PULL_REQUEST):
        repository, head = pull.plain("baseRepository"), pull.plain("headRef")
        assert "stack production" in pull.plain("title") and pull.plain("baseRef") in pull.plain("title")
        body = pull.plain("body")
        assert "`pulumi up` on stack `production`" in body and f"merged into `{pull.plain('baseRef')}`" in body
        listed = dict(re.findall(r"- `([^`]+)` \(sha256 `([0-9a-f]{12})`\)", body))
        mine = {
            path: content for (repo, branch, path), content in files.items() if (repo, branch) == (repository, head)
        }
        assert listed == {path: delivery.digest(content) for path, content in mine.items()}
        # The same digest the offline plan prints for the file's content.
        for content in mine.values():
            assert delivery.digest(content) in plan_tool.summarize(content)


def test_the_plan_prints_the_pull_requests_that_wait_for_a_merge(monkeypatch, capsys):
    plan = proposed("production")
    monkeypatch.setattr(plan_tool.offline, "run", lambda stack: plan)
    assert plan_tool.main(["--stack", "production"]) == 0
    printed = capsys.readouterr().out
    section = printed.split("  pendingPullRequests:\n", 1)[1]
    listed = [line.strip()[2:] for line in section.splitlines() if line.startswith("    - ")]
    assert sorted(listed) == sorted(plan.outputs["pendingPullRequests"])
    assert (
        "github:index/repositoryPullRequest:RepositoryPullRequest  wiring-dreamscape-docs-main-pull-request" in printed
    )


def test_the_credential_needs_pull_requests_write():
    for stack in STACKS:
        needs = " ".join(proposed(stack).outputs["githubTokenNeeds"])
        assert "Pull requests: read and write" in needs, stack
        assert delivery.BRANCH_PREFIX in needs, stack


@pytest.mark.parametrize("stack", STACKS)
def test_direct_delivery_registers_no_pull_request_and_no_branch(plan_of, stack):
    plan = plan_of(stack)
    assert plan.of_type(PULL_REQUEST) == []
    assert plan.of_type(BRANCH) == []
    assert [r for r in plan.resources if r.type.startswith("dreamscape:delivery:")] == []
    assert plan.outputs["pendingPullRequests"] == []
    assert all(not f.plain("branch").startswith(delivery.BRANCH_PREFIX) for f in plan.of_type(FILE))
    assert "Pull requests" not in " ".join(plan.outputs["githubTokenNeeds"])
    assert plan_with(stack, fileDelivery="direct").outputs == plan.outputs


def test_an_unknown_delivery_is_refused_naming_the_key():
    with pytest.raises(
        ConfigError, match=r"dreamscape-infra:fileDelivery: expected one of direct, pullRequest, got 'pr'"
    ):
        plan_with("production", fileDelivery="pr")


def test_names_do_not_move_when_repositories_are_reordered(stack_config):
    repositories = stack_config("production")["sourceRepositories"]
    forward = plan_with("production", fileDelivery="pullRequest", sourceRepositories=repositories)
    backward = plan_with("production", fileDelivery="pullRequest", sourceRepositories=repositories[::-1])

    def delivered(plan):
        kinds = (FILE, BRANCH, PULL_REQUEST, "dreamscape:delivery:Proposal")
        return {
            r.urn: (r.plain("branch"), r.plain("headRef"), r.plain("baseRef"))
            for r in plan.resources
            if r.type in kinds
        }

    assert delivered(forward) == delivered(backward)
    assert len(delivered(forward)) == 9 * 3 + 11  # proposals, branches, pull requests; 11 files


def test_pull_requests_need_their_base_branch():
    mocks = offline.OfflineMocks()
    mocks.missing_branches.add("dreamscape-docs@develop")
    with pytest.raises(
        ConfigError, match=r"createMissingBranches: with fileDelivery: pullRequest .* dreamscape-docs@develop"
    ):
        plan_with("production", mocks=mocks, fileDelivery="pullRequest", createMissingBranches=True)
    # Direct delivery creates the branch with the trigger's own commit, as before.
    direct = plan_with("production", mocks=mocks, createMissingBranches=True)
    assert direct.outputs["branchesCreated"] == ["dreamscape-docs@develop"]


def test_the_offline_engine_refuses_what_github_refuses():
    """Strict answers: the plan cannot pass with a pull request GitHub would reject."""
    mocks = offline.OfflineMocks()
    with pytest.raises(ValueError, match="head 'nowhere' does not exist"):
        mocks._new_pull_request(
            _Args({"baseRepository": "r", "baseRef": "main", "headRef": "nowhere", "title": "t"}, "pr")
        )
    mocks._new_branch(_Args({"repository": "r", "branch": "dreamscape-infra/main", "sourceBranch": "main"}, "b"))
    args = _Args({"baseRepository": "r", "baseRef": "main", "headRef": "dreamscape-infra/main", "title": "t"}, "pr")
    assert mocks._new_pull_request(args)["state"] == "open"
    with pytest.raises(ValueError, match="A pull request already exists"):
        mocks._new_pull_request(args)
    with pytest.raises(ValueError, match="Reference already exists"):
        mocks._new_branch(_Args({"repository": "r", "branch": "dreamscape-infra/main", "sourceBranch": "main"}, "b"))


class _Args:
    def __init__(self, inputs: dict, name: str) -> None:
        self.inputs, self.name = inputs, name


def test_commits_without_an_author_are_left_to_github_to_sign(stack_config):
    """A GitHub App's commit is signed by GitHub only when it names no author (the SDK's note)."""
    message = stack_config("production")["commit"]["message"]
    plan = plan_with("production", fileDelivery="pullRequest", commit={"message": message})
    files = plan.of_type(FILE)
    assert files and all(f.plain("commitAuthor") is None and f.plain("commitEmail") is None for f in files)
    assert all("[skip ci]" in f.plain("commitMessage") for f in files)
    with pytest.raises(ConfigError, match=r"dreamscape-infra:commit.authorEmail: required with the other author"):
        plan_with("production", commit={"message": message, "authorName": "bot"})
