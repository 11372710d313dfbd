"""The bash pieces of components/workflows/shell.py on their own, for every workflow that uses them."""

from __future__ import annotations

import subprocess

from components import rules
from components.workflows import shell
from tests.ref_corpus import REFS


def _bash(script: str, stdin: bytes = b"") -> bytes:
    result = subprocess.run(["bash", "-c", script], input=stdin, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_the_rendered_branch_decision_equals_the_rules():
    """One bash process decides every ref of the corpus (NUL-separated in, NUL-separated out)."""
    script = "\n".join(
        [
            shell.STRICT,
            "while IFS= read -r -d '' REF; do",
            shell.ref_decision("REF"),
            '  printf \'%s\\0%s\\0%s\\0\' "$environment" "$deploy" "$reason"',
            "done",
        ]
    )
    out = _bash(script, b"".join(r.encode() + b"\0" for r in REFS)).split(b"\0")[:-1]
    assert len(out) == 3 * len(REFS)
    for i, ref in enumerate(REFS):
        environment, deploy, reason = (v.decode() for v in out[3 * i : 3 * i + 3])
        expected = rules.classify_ref(ref)
        assert (environment or None, deploy == "true") == (expected.environment, expected.deploy), repr(ref)
        if len(ref.encode()) == len(ref):  # bash counts bytes, Python characters: same reason for ASCII
            assert reason == expected.reason, repr(ref)


def test_printable_leaves_only_safe_characters():
    script = "\n".join([shell.STRICT, shell.PRINTABLE, 'printable "$1"'])
    cases = {
        "refs/heads/feature/ok-1.2_x": "refs/heads/feature/ok-1.2_x",
        "x\n::error::$(id) `id`": "x???error????id???id?",
        "caf\u00e9": "caf??",  # one ? per byte
        "a" * 200: "a" * 120,
    }
    for value, shown in cases.items():
        result = subprocess.run(["bash", "-c", script, "bash", value], capture_output=True, timeout=10, check=True)
        assert result.stdout.decode() == shown


def test_the_component_list_pattern_accepts_what_config_allows():
    def matches(pattern: str, value: str) -> bool:
        script = f'{shell.STRICT}\npattern={shell.quote(pattern)}\n[[ "$1" =~ $pattern ]]'
        return subprocess.run(["bash", "-c", script, "bash", value], timeout=10, check=False).returncode == 0

    assert matches(shell.COMPONENT_LIST_PATTERN, "auth-service,user-service")
    assert matches(shell.COMPONENT_LIST_PATTERN, "site")
    for bad in ("", "a,,b", "a, b", "a,", "Auth", "a;id"):
        assert not matches(shell.COMPONENT_LIST_PATTERN, bad), bad
