"""What GitHub must hold before `pulumi up` writes anything, and what the program's commits carry.

The offline engine plays the provider's answers for what is missing: `getRepository` with an
empty result, `getBranch` with no sha (both as the provider answers a 404), so these run the real
program and see what a user with such repositories would see.
"""

from __future__ import annotations

import re

import pytest

from components.settings import ConfigError
from tools import offline

FILE = "github:index/repositoryFile:RepositoryFile"
PROVIDER = "github-id"


def _owner(stack_config) -> str:
    return stack_config("production")["githubOwner"]


def _nothing_registered_but_the_provider(mocks: offline.OfflineMocks) -> None:
    """A provider registration writes nothing to GitHub; every other resource would."""
    assert list(mocks.created) == [PROVIDER]


# --- the program's own commits start nothing -----------------------------------------------------


def preflight_warnings(plan) -> list[str]:
    """The plan's warnings but the one about the shipped stand-in values (tests/test_plan.py)."""
    return [w for w in plan.warnings if not w.startswith("still at their example values")]


def test_every_file_the_program_writes_carries_a_skip_marker(plan_of):
    files = plan_of("production").of_type(FILE)
    assert len(files) == 11  # 8 triggers, the central pipeline and its data file, the compose file
    for f in files:
        assert "[skip ci]" in f.plain("commitMessage"), f.name


def test_a_configured_message_without_a_marker_gets_one(run_with, stack_config):
    commit = {**stack_config("production")["commit"], "message": "chore: platform files"}
    for f in run_with("production", commit=commit).of_type(FILE):
        assert f.plain("commitMessage") == "chore: platform files [skip ci]"


@pytest.mark.parametrize("marker", ["[ci skip]", "[no ci]", "[skip actions]", "[actions skip]"])
def test_a_message_with_another_marker_is_left_as_it_is(run_with, stack_config, marker):
    commit = {**stack_config("production")["commit"], "message": f"chore: platform files {marker}"}
    compose_file = [f for f in run_with("staging", commit=commit).of_type(FILE)]
    assert [f.plain("commitMessage") for f in compose_file] == [f"chore: platform files {marker}"]


# --- repositories the token cannot see ---------------------------------------------------------------


def test_a_missing_source_repository_is_refused_by_name_before_anything_is_written(run_with, stack_config):
    mocks = offline.OfflineMocks()
    owner = _owner(stack_config)
    mocks.missing_repositories.add(f"{owner}/dreamscape-tests")
    with pytest.raises(ConfigError) as error:
        run_with("production", mocks=mocks)
    message = str(error.value)
    assert message.startswith(
        f"dreamscape-infra:sourceRepositories[2].name: GitHub shows no repository {owner}/dreamscape-tests "
        "to the provider's token; check the name and githubOwner"
    )
    assert "\n" not in message
    _nothing_registered_but_the_provider(mocks)


@pytest.mark.parametrize("stack", ["dev", "production"])
def test_a_missing_infra_repository_is_refused_on_every_stack(run_with, stack_config, stack):
    mocks = offline.OfflineMocks()
    owner = _owner(stack_config)
    mocks.missing_repositories.add(f"{owner}/{stack_config(stack)['infraRepository']}")
    with pytest.raises(ConfigError, match=rf"^dreamscape-infra:infraRepository: GitHub shows no repository {owner}/"):
        run_with(stack, mocks=mocks)
    _nothing_registered_but_the_provider(mocks)


def test_the_organization_secret_gets_ids_from_the_same_lookup(run_with, stack_config):
    """No repository is looked up twice, and the secret names exactly the ids GitHub reported."""
    mocks = offline.OfflineMocks()
    plan = run_with("production", mocks=mocks, dispatchTokenScope="organization")
    looked_up = [args["fullName"] for token, args in mocks.calls if token.endswith("getRepository")]
    assert len(looked_up) == len(set(looked_up)) == 5
    [secret] = plan.of_type("github:index/actionsOrganizationSecret:ActionsOrganizationSecret")
    sources = [name for name in looked_up if not name.endswith("/dreamscape-infra")]
    assert len(sources) == 4
    assert sorted(secret.plain("selectedRepositoryIds")) == sorted(
        mocks._repository({"fullName": name})["repoId"] for name in sources
    )


def test_an_organization_problem_is_found_before_anything_is_written(run_with, stack_config):
    mocks = offline.OfflineMocks()
    mocks.organization_plan = "free"
    with pytest.raises(ConfigError, match=r"not available to private repositories on GitHub Free"):
        run_with("production", mocks=mocks, dispatchTokenScope="organization")
    _nothing_registered_but_the_provider(mocks)


# --- trigger branches that do not exist ----------------------------------------------------------------


def test_a_repository_without_develop_is_refused_naming_every_missing_branch(run_with):
    mocks = offline.OfflineMocks()
    mocks.missing_branches |= {"dreamscape-docs@develop", "dreamscape-tests@develop", "dreamscape-tests@main"}
    with pytest.raises(ConfigError) as error:
        run_with("production", mocks=mocks)
    message = str(error.value)
    assert re.match(
        r"dreamscape-infra:sourceRepositories: the trigger goes on main and develop of every source repository, "
        r"and \S+ has no dreamscape-tests@main, dreamscape-tests@develop, dreamscape-docs@develop; create each "
        r"from the default branch \(git push origin HEAD:refs/heads/<branch>\) or set createMissingBranches: true",
        message,
    ), message
    _nothing_registered_but_the_provider(mocks)


def test_every_trigger_branch_is_looked_up_in_every_source_repository(run_with, stack_config):
    mocks = offline.OfflineMocks()
    run_with("production", mocks=mocks)
    asked = sorted((a["repository"], a["branch"]) for token, a in mocks.calls if token.endswith("getBranch"))
    repos = [r["name"] for r in stack_config("production")["sourceRepositories"]]
    assert asked == sorted((r, b) for r in repos for b in ("main", "develop"))


def test_stacks_without_the_wiring_look_up_no_branch(run_with):
    mocks = offline.OfflineMocks()
    mocks.missing_branches.add("dreamscape-docs@develop")
    plan = run_with("staging", mocks=mocks)  # the wiring is production's: staging writes no trigger
    assert not [token for token, _ in mocks.calls if token.endswith("getBranch")]
    assert plan.outputs["branchesCreated"] == []


def test_create_missing_branches_creates_them_from_the_default_branch_and_says_so(run_with):
    mocks = offline.OfflineMocks()
    mocks.missing_branches.add("dreamscape-docs@develop")
    answer = mocks.call_answers["github:index/getRepository:getRepository"]
    mocks.call_answers["github:index/getRepository:getRepository"] = lambda a: {
        **answer(a),
        **({"defaultBranch": "master"} if a["fullName"].endswith("/dreamscape-docs") else {}),
    }
    plan = run_with("production", mocks=mocks, createMissingBranches=True)
    assert plan.outputs["branchesCreated"] == ["dreamscape-docs@develop"]
    triggers = [f for f in plan.of_type(FILE) if f.plain("file").endswith("trigger-central-cicd.yml")]
    assert len(triggers) == 8
    for f in triggers:
        # Every trigger file may create its branch, so the inputs do not change once it exists.
        source = "master" if f.plain("repository") == "dreamscape-docs" else "main"
        assert (f.plain("autocreateBranch"), f.plain("autocreateBranchSourceBranch")) == (True, source), f.name
    infra = [f for f in plan.of_type(FILE) if not f.plain("file").endswith("trigger-central-cicd.yml")]
    assert all(f.plain("autocreateBranch") is None for f in infra)  # the infra default branch exists


def test_without_create_missing_branches_no_file_may_create_a_branch(plan_of):
    plan = plan_of("production")
    assert all(f.plain("autocreateBranch") is None for f in plan.of_type(FILE))
    assert plan.outputs["branchesCreated"] == []


# --- what the plan warns about ---------------------------------------------------------------------------------


def test_a_public_infra_repository_building_a_private_one_is_warned_about(run_with, stack_config, tmp_path):
    owner = _owner(stack_config)
    mocks = offline.OfflineMocks()
    mocks.public_repositories |= {f"{owner}/dreamscape-infra", f"{owner}/dreamscape-docs"}
    plan = run_with("production", mocks=mocks)
    [warning] = preflight_warnings(plan)
    assert warning.startswith(
        "the infra repository dreamscape-infra is public and builds private repositories "
        "(dreamscape-services, dreamscape-frontend, dreamscape-tests): anyone can read"
    )


def test_reviewers_github_will_not_enforce_are_warned_about(run_with, stack_config):
    """Production names reviewers; on a private infra repository GitHub holds deploys for them with Enterprise only."""
    [warning] = preflight_warnings(run_with("production"))  # every repository private, the organization on Team
    assert warning.startswith(
        "the production environment names reviewers or a wait timer, and the infra repository dreamscape-infra "
        "is private: GitHub enforces them there with GitHub Enterprise only"
    )
    enterprise = offline.OfflineMocks()
    enterprise.organization_plan = "enterprise"
    assert preflight_warnings(run_with("production", mocks=enterprise)) == []
    # A stack without reviewers or wait timer has nothing to be warned about.
    assert preflight_warnings(run_with("staging")) == []


def test_no_warning_when_the_infra_repository_is_private_or_everything_is_public(run_with, stack_config):
    owner = _owner(stack_config)
    assert (
        preflight_warnings(run_with("production", protection={"waiveReviewers": True})) == []
    )  # every repository private
    mocks = offline.OfflineMocks()
    mocks.public_repositories |= {f"{owner}/{r['name']}" for r in stack_config("production")["sourceRepositories"]}
    mocks.public_repositories.add(f"{owner}/dreamscape-infra")
    assert preflight_warnings(run_with("production", mocks=mocks)) == []


# --- the deploy job's OIDC subject ---------------------------------------------------------------


def test_the_owners_account_id_is_looked_up_for_workload_identity(run_with, stack_config):
    """The immutable subject of the deploy job's token names the owner's id: it is read from GitHub
    before anything is registered, and an owner GitHub does not show stops the run."""
    mocks = offline.OfflineMocks()
    run_with("dev", mocks=mocks)
    looked_up = [args["username"] for token, args in mocks.calls if token == "github:index/getUser:getUser"]
    assert looked_up == [_owner(stack_config)]

    def missing(args):
        raise offline.InvokeFailedError(f"GET https://api.github.com/users/{args['username']}: 404 Not Found []")

    mocks = offline.OfflineMocks()
    mocks.call_answers["github:index/getUser:getUser"] = missing
    with pytest.raises(
        ConfigError,
        match=r"githubOwner: GitHub shows no account 'DREAMSCAPE-AI' to the provider's token: .*404 Not Found.*; "
        r"the deploy job's OIDC subject names its id",
    ):
        run_with("dev", mocks=mocks)
    _nothing_registered_but_the_provider(mocks)
