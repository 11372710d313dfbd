"""What a job step tells the runner: outputs, the job summary, annotations (GitHub's file commands)."""

from __future__ import annotations

import os
from collections.abc import Mapping


def set_outputs(values: Mapping[str, str], env: Mapping[str, str] | None = None) -> None:
    """Append `name=value` lines to $GITHUB_OUTPUT; a value with a line break is refused, not written.

    Every output of the pipeline is one line; a line break would let a value set other outputs.
    """
    env = os.environ if env is None else env
    for name, value in values.items():
        if "\n" in name + value or "\r" in name + value or "=" in name:
            raise ValueError(f"output {name!r}: names and values are single lines, names without '='")
    with open(env["GITHUB_OUTPUT"], "a", encoding="utf-8") as output:
        output.write("".join(f"{name}={value}\n" for name, value in values.items()))


def add_summary(markdown: str, env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    with open(env["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
        summary.write(markdown)


def printable(text: str, limit: int | None = None) -> str:
    """The printable characters of `text` (a line break is none), the first `limit` of them: what
    a log line shows of an answer or a message the job did not write."""
    return "".join(c for c in text if c.isprintable())[:limit]


def _escape(text: str) -> str:
    """A workflow command's message on one line, as the runner decodes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def annotate(kind: str, title: str, message: str) -> None:
    """`::error title=...::message` (kind: error, warning or notice) on stdout."""
    title = _escape(title).replace(":", "%3A").replace(",", "%2C")
    print(f"::{kind} title={title}::{_escape(message)}", flush=True)
