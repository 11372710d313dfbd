"""The harnesses' argv guard inside Python, loaded through PYTHONPATH: every process this
interpreter starts is checked for a secret of the run in its arguments, whatever PATH or
environment it is given (ci/oci.py runs openssl and ssh-keygen with a PATH of its own, which no
guard script on the job's PATH can stand in front of).

The secrets are the lines of HARNESS_GUARD_DIR/guarded-values (the guard scripts' file, read at
each start); a refusal raises PermissionError in the caller and adds the program's name to
HARNESS_GUARD_DIR/trips, so a test sees it even where the caller turns the error into a failure
of its own. Each process that loads the hook says so in HARNESS_GUARD_DIR/loaded: `python3 -I`
(or -E, -S) skips this file, and a test must not take that for a clean run. Loaded first on the
path, it stands in for any other sitecustomize (Debian's only installs apport's hook).
"""

from __future__ import annotations

import os
import sys

_DIRECTORY = os.environ.get("HARNESS_GUARD_DIR", "")
_ARGUMENTS = {"subprocess.Popen": 1, "os.exec": 1, "os.posix_spawn": 1, "os.spawn": 2, "os.system": 0}
"""Audit event -> the position of its argument list (os.system's is one shell command line)."""


def _secrets() -> list[str]:
    try:
        with open(os.path.join(_DIRECTORY, "guarded-values"), encoding="utf-8") as file:
            return [line for line in file.read().splitlines() if line]
    except FileNotFoundError:
        return []


def _as_text(argument: object) -> str:
    return os.fsdecode(argument) if isinstance(argument, (str, bytes, os.PathLike)) else str(argument)


def _guard(event: str, args: tuple) -> None:
    position = _ARGUMENTS.get(event)
    if position is None:
        return
    argv = args[position]
    argv = [argv] if isinstance(argv, (str, bytes, os.PathLike)) else list(argv or ())
    texts = [_as_text(a) for a in argv]
    if any(secret in text for secret in _secrets() for text in texts):
        program = "sh" if event == "os.system" else os.path.basename(texts[0]) if texts else "?"
        with open(os.path.join(_DIRECTORY, "trips"), "a", encoding="utf-8") as trips:
            trips.write(f"{program}\n")
        raise PermissionError(f"harness: a secret of the run is on {program}'s command line")


if _DIRECTORY:
    sys.addaudithook(_guard)
    with open(os.path.join(_DIRECTORY, "loaded"), "a", encoding="utf-8") as loaded:
        loaded.write(f"{os.getpid()}\n")
