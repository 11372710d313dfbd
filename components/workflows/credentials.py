"""The GitHub credentials the workflows hold: their secret names, where each lives, what it may do.

Two modes (`githubAuth`). With `token`, the guide's, two long-lived tokens, split so that what
the source repositories hold is worth no more than starting the pipeline (GitHub hands
repository secrets to a workflow on any branch, so anyone who can push a branch to a source
repository can read them):

- DISPATCH_TOKEN, in every source repository: creates `repository_dispatch` events on the
  infra repository. It needs Contents: write there (GitHub's permission for dispatches), so a
  ruleset on the infra repository keeps its identity from creating, updating or deleting any
  branch or tag. No access to any source repository.
- PIPELINE_TOKEN, in the infra repository only: reads the source repositories (compare,
  checkout, branch heads, the rules of a hotfix branch) and posts their commit statuses. No job
  that runs source code holds it. Reading a branch's rules takes Metadata: read, which GitHub
  grants every fine-grained token and every App installation token without asking.

With `app`, two GitHub Apps take their places: each side holds its App's private key and mints
an installation token per run with `actions/create-github-app-token`, narrowed to one
repository and the permissions of the job. The trigger's token can write Contents of the infra
repository only (dispatches; the same ruleset refuses its ref writes); the pipeline's reads the
one source repository of the run and posts its statuses, in resolve, deploy and report only.
A token lives an hour at most and is revoked when its job ends, acts as the App (not as a
person), and the App's installation bounds what any key can mint.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Credential:
    secret: str
    """The Actions secret's name."""
    config_key: str
    """The stack config key (`pulumi config set --secret ...`) it comes from."""
    lives_in: str
    permissions: str
    """Fine-grained token permissions, as GitHub names them."""
    if_stolen: str
    """What a thief could do with it: the reason for where it lives."""


DISPATCH = Credential(
    secret="DISPATCH_TOKEN",  # noqa: S106 - the secret's name
    config_key="dispatchToken",
    lives_in="every source repository",
    permissions="the infra repository only: Contents read and write (dispatch events), Metadata read",
    if_stolen=(
        "start the pipeline with a payload resolve still checks (configured repository, a commit on "
        "its branch, the environment the branch means); the infra repository's ruleset refuses its "
        "pushes, and it reads no source repository"
    ),
)
PIPELINE = Credential(
    secret="PIPELINE_TOKEN",  # noqa: S106 - the secret's name
    config_key="pipelineToken",
    lives_in="the infra repository only (resolve, deploy's branch-head check, report)",
    permissions=(
        "every source repository: Contents read, Commit statuses read and write, Metadata read"
        " (every fine-grained token has it: resolve reads a hotfix branch's rules with it)"
    ),
    if_stolen="read the source repositories and set their commit statuses; it cannot push or dispatch",
)
DISPATCH_APP = Credential(
    secret="DISPATCH_APP_PRIVATE_KEY",  # noqa: S106 - the secret's name
    config_key="dispatchAppPrivateKey",
    lives_in="every source repository (the key of the dispatch App, installed on the infra repository only)",
    permissions=(
        "the App: Contents read and write, Metadata read; each run's token: the infra repository, Contents write"
    ),
    if_stolen=(
        "mint tokens for the infra repository with the App's permissions until the key is deleted: start "
        "the pipeline with a payload resolve still checks; the ruleset refuses its pushes"
    ),
)
PIPELINE_APP = Credential(
    secret="PIPELINE_APP_PRIVATE_KEY",  # noqa: S106 - the secret's name
    config_key="pipelineAppPrivateKey",
    lives_in="the infra repository only (the key of the pipeline App, installed on the source repositories)",
    permissions=(
        "the App: Contents read, Commit statuses read and write, Metadata read; each run's token: the run's "
        "source repository, Contents read and Commit statuses write (resolve, with the Metadata read every "
        "installation token has, for a hotfix branch's rules), Contents read (deploy), Commit statuses write (report)"
    ),
    if_stolen="mint tokens that read the source repositories and set their commit statuses; it cannot push or dispatch",
)
ALL = (DISPATCH, PIPELINE)
MODES = ("token", "app")


@dataclass(frozen=True)
class Auth:
    """How the workflows authenticate: `token` (the two secrets above) or `app` (two GitHub Apps)."""

    mode: str = "token"
    dispatch_client_id: str | None = None
    """The dispatch App's client id (`Iv...`), rendered into every trigger; app mode only."""
    pipeline_client_id: str | None = None
    """The pipeline App's client id, rendered into the central workflow; app mode only."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown githubAuth {self.mode!r}; expected one of {', '.join(MODES)}")
        if self.apps != (self.dispatch_client_id is not None and self.pipeline_client_id is not None):
            raise ValueError("app mode takes both client ids, token mode none")

    @property
    def apps(self) -> bool:
        return self.mode == "app"

    @property
    def dispatch(self) -> Credential:
        return DISPATCH_APP if self.apps else DISPATCH

    @property
    def pipeline(self) -> Credential:
        return PIPELINE_APP if self.apps else PIPELINE

    @property
    def credentials(self) -> tuple[Credential, Credential]:
        return (self.dispatch, self.pipeline)


TOKENS = Auth()
