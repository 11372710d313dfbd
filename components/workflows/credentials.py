"""The GitHub credentials the workflows hold: their secret names, where each lives, what it may do.

Two tokens, split so that what the source repositories hold is worth no more than starting
the pipeline (GitHub hands repository secrets to a workflow on any branch, so anyone who can
push a branch to a source repository can read them):

- DISPATCH_TOKEN, in every source repository: creates `repository_dispatch` events on the
  infra repository. It needs Contents: write there (GitHub's permission for dispatches), so a
  ruleset on the infra repository keeps its identity from creating, updating or deleting any
  branch or tag. No access to any source repository.
- PIPELINE_TOKEN, in the infra repository only: reads the source repositories (compare,
  checkout, branch heads) and posts their commit statuses. No job that runs source code holds it.
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
    permissions="every source repository: Contents read, Commit statuses read and write, Metadata read",
    if_stolen="read the source repositories and set their commit statuses; it cannot push or dispatch",
)
ALL = (DISPATCH, PIPELINE)
