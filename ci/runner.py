"""What a job step tells the runner: outputs, the job summary, annotations (GitHub's file commands)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping


def set_outputs(values: Mapping[str, str], env: Mapping[str, str] | None = None) -> None:
    """Append `name=value` lines to $GITHUB_OUTPUT (a multi-line value gets a random delimiter)."""
    env = os.environ if env is None else env
    lines = []
    for name, value in values.items():
        if "\n" in value:
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            lines += [f"{name}<<{delimiter}", value, delimiter]
        else:
            lines.append(f"{name}={value}")
    with open(env["GITHUB_OUTPUT"], "a", encoding="utf-8") as output:
        output.write("".join(f"{line}\n" for line in lines))


def add_summary(markdown: str, env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    with open(env["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
        summary.write(markdown)


def _escape(text: str) -> str:
    """A workflow command's message on one line, as the runner decodes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def annotate(kind: str, title: str, message: str) -> None:
    """`::error title=...::message` (kind: error, warning or notice) on stdout."""
    title = _escape(title).replace(":", "%3A").replace(",", "%2C")
    print(f"::{kind} title={title}::{_escape(message)}", flush=True)
