"""The YAML emitter: its faster literal-block path writes exactly what PyYAML would."""

from __future__ import annotations

import pytest
import yaml

from components.workflows import emit

TEXTS = [
    "echo one\n",
    "set -euo pipefail\n\nif true; then\n  echo 'two'\nfi\n",
    "line\n\n\nafter blank lines\n",
    "\ttab first\nnext\n",
    "x\n" * 500,
    "no final newline\nhere",
    "no final newline\n\nafter a blank line",
    "one line",
    "ends with a blank line then text\n\nx",
    "two final newlines\n\n",
    " leading space\n",
    "\nleading newline\n",
    "windows\r\nline\n",
]


class _Reference(emit._Dumper):
    """The same dumper with PyYAML's own literal writer."""

    def write_literal(self, text: str) -> None:
        yaml.SafeDumper.write_literal(self, text)


@pytest.mark.parametrize("text", TEXTS, ids=[repr(t)[:24] for t in TEXTS])
def test_literal_blocks_match_pyyaml(text: str) -> None:
    document = {"jobs": {"a": {"steps": [{"run": text, "env": {"X": "y"}}, {"run": text}]}}}
    ours = yaml.dump(document, Dumper=emit._Dumper, sort_keys=False, width=10_000, allow_unicode=True)
    reference = yaml.dump(document, Dumper=_Reference, sort_keys=False, width=10_000, allow_unicode=True)
    assert ours == reference
    assert yaml.safe_load(ours) == document


def test_trailing_blanks_are_refused() -> None:
    with pytest.raises(ValueError, match="trailing whitespace"):
        emit.dump({"run": "echo x   \n"}, "tests")
