"""tools/mutation.py's rules for a surviving mutant: what counts as words only, and how the
docs' table of equivalent mutants is read. A rule too wide would hide a real gap."""

from __future__ import annotations

import ast
import textwrap

import pytest

from tools import mutation

SCOPE = mutation.Scope(
    files=("m.py",),
    tests=(),
    message_calls=("_fail",),
    message_arguments=(("_string", "what", 1),),
)


def function(source: str) -> ast.FunctionDef:
    (node,) = ast.parse(textwrap.dedent(source)).body
    assert isinstance(node, ast.FunctionDef)
    return node


ORIGINAL = """
def x_check__mutmut_orig(value, path):
    where = f"at {path}"
    limit = 10
    if len(value) > limit:
        raise ValueError(f"too long {where}")
    if not value:
        raise _fail(path, "a value", value)
    return _string(r"^[a-z]+$", "a name")(value, path)
"""


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        # The words of a message: wording.
        ('raise ValueError(f"too long {where}")', 'raise ValueError("XXtoo longXX")', True),
        ('raise ValueError(f"too long {where}")', "raise ValueError(None)", True),
        ('raise _fail(path, "a value", value)', "raise _fail(None, None, None)", True),
        ('raise _fail(path, "a value", value)', "raise _fail(path, value)", True),
        ('_string(r"^[a-z]+$", "a name")', '_string(r"^[a-z]+$", "XXa nameXX")', True),
        ('where = f"at {path}"', 'where = "XXatXX"', True),
        # Behaviour: never.
        ("if len(value) > limit:", "if len(value) >= limit:", False),
        ("limit = 10", "limit = 11", False),
        ('raise ValueError(f"too long {where}")', 'raise KeyError(f"too long {where}")', False),
        ('_string(r"^[a-z]+$", "a name")', '_string(r"^[a-zX]+$", "a name")', False),
        ("if not value:", "if value:", False),
        ("return _string(", "return _list(", False),
    ],
)
def test_only_a_change_to_the_words_of_a_message_is_wording(old: str, new: str, words: bool) -> None:
    mutant = ORIGINAL.replace(old, new).replace("mutmut_orig", "mutmut_1")
    assert mutation.is_wording(function(ORIGINAL), function(mutant), SCOPE) is words


def test_a_variable_that_also_decides_is_not_words() -> None:
    original = function(
        """
        def x_f__mutmut_orig(value):
            name = "port" if value else "path"
            if name == "port":
                return 1
            raise ValueError(name)
        """
    )
    mutant = function(ast.unparse(original).replace('"path"', '"XXpathXX"').replace("mutmut_orig", "mutmut_1"))
    assert not mutation.is_wording(original, mutant, SCOPE)


def test_the_equivalent_mutants_table_is_read_with_escaped_pipes() -> None:
    rows = mutation.equivalents()
    assert rows, "docs/development.md lists equivalent mutants"
    for function_name, line, reason in rows:
        assert function_name.count(".") >= 2 and " " not in function_name, function_name
        assert line and reason
        assert "\\|" not in line


def test_a_mutants_name_gives_its_function() -> None:
    assert mutation.function_of("components.rules.x_is_sha__mutmut_3") == "components.rules.is_sha"
    assert mutation.function_of("components.settings.x__fail__mutmut_12") == "components.settings._fail"
    assert mutation.function_of("components.settings.xǁCommitǁwith_skip_marker__mutmut_1") == (
        "components.settings.Commit.with_skip_marker"
    )


def test_a_scopes_functions_give_the_names_of_their_mutants() -> None:
    """The reverse of function_of, as mutmut's selection: each glob matches that function's mutants only."""
    import fnmatch

    scope = mutation.Scope(
        files=(),
        tests=(),
        functions=("ci.resolve.check", "components.settings._fail", "components.deploy.prog.Option.value"),
    )
    names = [
        "ci.resolve.x_check__mutmut_1",
        "ci.resolve.x_check_ruleset__mutmut_1",
        "components.settings.x__fail__mutmut_2",
        "components.deploy.prog.xǁOptionǁvalue__mutmut_3",
        "components.deploy.prog.xǁOptionǁfield__mutmut_1",
    ]
    matched = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in scope.mutant_globs())]
    assert matched == [names[0], names[2], names[3]]
    assert all(mutation.function_of(n) in scope.functions for n in matched)
