"""How `pulumi up` delivers the files it writes into GitHub repositories (`fileDelivery`).

- `direct` (the default): each file is committed straight to its target branch (`main` and
  `develop` of a source repository, the infra repository's default branch).
- `pullRequest`: for a branch that requires pull requests. The files meant for one target
  branch of one repository are committed to a branch of the program's own, created from the
  target, and proposed in one pull request into the target. The same branch and the same
  pull request take every later change: a second `pulumi up` commits to the branch, and the
  pull request stays open and says what it now carries. The files act once someone merges it.

The program's branch is `dreamscape-infra/<target>` for the files of the stack that owns the
shared wiring (triggers, central pipeline, its compose file), and
`dreamscape-infra/<target>-<environment>` for those of every other stack (its compose file):
two stacks must never own the same branch or pull request, or each would undo the other's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi
import pulumi_github as github

if TYPE_CHECKING:  # settings reads MODES from here
    from components.settings import Commit

DIRECT = "direct"
PULL_REQUEST = "pullRequest"
MODES = (DIRECT, PULL_REQUEST)

BRANCH_PREFIX = "dreamscape-infra/"
"""Every branch the program creates starts with this: easy to tell from people's branches."""


def program_branch(target: str, environment: str | None = None) -> str:
    """The branch that carries the program's proposed files for `target`.

    `environment` names the stack when its files must not share the wiring owner's branch.
    """
    return f"{BRANCH_PREFIX}{target}" + (f"-{environment}" if environment else "")


def written_branch(target: str, proposal: Proposal | None) -> str:
    """The branch a file for `target` is committed to: the proposal's, or `target` itself."""
    return target if proposal is None else proposal.head


def repository_file(
    name: str,
    repository: str,
    branch: str,
    path: str,
    content: str,
    commit: Commit,
    parent: pulumi.Resource,
    create_branch_from: str | None = None,
    proposal: Proposal | None = None,
) -> github.RepositoryFile:
    """A file meant for `branch`, committed by `pulumi up` with the configured message and author.

    Direct: on `branch` itself (with `create_branch_from`, the write creates a missing `branch`
    from that one). With a `proposal` for `branch`: on the proposal's branch, once that branch
    exists, and the proposal's pull request lists it. An author left unset (None) is left to
    GitHub, which then signs the commit of a GitHub App.
    """
    if proposal is not None and (proposal.repository, proposal.target) != (repository, branch):
        raise ValueError(f"{name}: a file for {repository}@{branch} cannot join {proposal.name}")
    file = github.RepositoryFile(
        name,
        repository=repository,
        branch=written_branch(branch, proposal),
        file=path,
        content=content,
        commit_message=commit.message,
        commit_author=commit.author_name,
        commit_email=commit.author_email,
        # Adopt the copy the old hand setup (or a person) left there instead of failing on it.
        overwrite_on_create=True,
        autocreate_branch=True if create_branch_from and proposal is None else None,
        autocreate_branch_source_branch=create_branch_from if proposal is None else None,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[proposal.branch] if proposal is not None else None),
    )
    if proposal is not None:
        proposal.add(path, content, file)
    return file


def required_token_permissions() -> tuple[str, ...]:
    """What the credential `pulumi up` runs with needs for `pullRequest` delivery."""
    return (
        "repo (classic) / Contents: read and write (fine-grained): the program's branches "
        f"{BRANCH_PREFIX}*, created from each target branch, and the commits on them",
        "repo (classic) / Pull requests: read and write (fine-grained): open and update the pull requests "
        "of fileDelivery: pullRequest",
    )


def digest(content: str) -> str:
    """The short sha256 the offline plan prints for a file's content (tools/plan.py)."""
    return hashlib.sha256(content.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ProposalArgs:
    repository: str
    target: str
    """The branch the pull request merges into (it must exist)."""
    head: str
    """The program's branch, created from `target`."""
    stack: str
    """The stack whose `pulumi up` writes it, named in the pull request."""
    owner: str
    """The repositories' owner, for the `OWNER/REPO#N` reference in the stack output."""


@dataclass
class _Proposed:
    path: str
    content: str


class Proposal(pulumi.ComponentResource):
    """One repository's target branch: the program's branch, and the pull request into the target.

    Files join with `branch_for` (their commit goes on `head`, after the branch exists); `open`
    then registers the pull request, once every file of the branch is known and committed:
    GitHub refuses a pull request whose head has no commit the base lacks.
    """

    def __init__(self, name: str, args: ProposalArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("dreamscape:delivery:Proposal", name, None, opts)
        self.name = name
        self.args = args
        self.head = args.head
        self.target = args.target
        self.repository = args.repository
        self.branch = github.Branch(
            f"{name}-branch",
            repository=args.repository,
            branch=args.head,
            source_branch=args.target,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._files: list[_Proposed] = []
        self._resources: list[pulumi.Resource] = []
        self.pull_request: github.RepositoryPullRequest | None = None
        self.reference: pulumi.Output[str] | None = None

    def add(self, path: str, content: str, file: pulumi.Resource) -> None:
        """Record a file committed on `head` (the pull request waits for it and lists it)."""
        if self.pull_request is not None:
            raise RuntimeError(f"{self.name}: the pull request is open already; add files before open()")
        self._files.append(_Proposed(path, content))
        self._resources.append(file)

    def open(self) -> None:
        """The pull request from `head` into `target`, listing every file added."""
        if not self._files:
            raise RuntimeError(f"{self.name}: no file to propose")
        self.pull_request = github.RepositoryPullRequest(
            f"{self.name}-pull-request",
            base_repository=self.repository,
            base_ref=self.target,
            head_ref=self.head,
            title=title(self.target, self.args.stack),
            body=body(self.repository, self.target, self.head, self.args.stack, self._files),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.branch, *self._resources]),
        )
        number = self.pull_request.number
        state = self.pull_request.state
        prefix = f"{self.args.owner}/{self.repository}#"
        self.reference = pulumi.Output.all(number, state).apply(
            lambda v: f"{prefix}{v[0]}: {self.head} -> {self.target}" if v[1] == "open" else ""
        )
        self.register_outputs({"head": self.head, "target": self.target, "pullRequest": self.reference})


def pending(references: Sequence[pulumi.Output[str] | None]) -> pulumi.Output[list[str]]:
    """`OWNER/REPO#N: head -> target` of each open pull request, in registration order."""
    known = [r for r in references if r is not None]
    return pulumi.Output.all(*known).apply(lambda values: [v for v in values if v])


def title(target: str, stack: str) -> str:
    return f"dreamscape-infra: CI/CD files for {target} (pulumi up, stack {stack})"


def body(repository: str, target: str, head: str, stack: str, files: Sequence[_Proposed]) -> str:
    """What the pull request carries, who wrote it, and what merging it does."""
    listed = "\n".join(f"- `{f.path}` (sha256 `{digest(f.content)}`)" for f in sorted(files, key=lambda f: f.path))
    return (
        f"`pulumi up` on stack `{stack}` of dreamscape-infra wrote these files to `{head}`, for "
        f"`{target}` of `{repository}` (fileDelivery: pullRequest):\n\n{listed}\n\n"
        "Each digest is the one the offline plan prints for the file's content "
        "(`python tools/plan.py --stack " + stack + "`). The files take effect once this pull request is "
        f"merged into `{target}`. The next `pulumi up` that changes them commits to `{head}` again and "
        "updates this pull request; do not edit the branch by hand, the program overwrites it.\n\n"
        "The commits carry a skip marker, so GitHub starts no push or pull_request workflow for them, "
        f"and status checks that `{target}` requires are not reported here. The merge commit is yours: "
        "without a skip marker of its own it starts the push workflows of any merge."
    )
