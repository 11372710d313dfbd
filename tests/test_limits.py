"""Every time and size limit the program enforces, in one inventory: docs/development.md,
"### Limits", names each limit, its value and the tests that pin it. This file checks the
inventory is whole (each limit constant of components/ and ci/, and each bound a call or a cut
there writes as a number, is in it) and true (each value is the code's, each test it names exists
and writes the value), and pins the limits no other test reaches.

The values are written as numbers here, never read back from the code they bound.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from ci import github, instances
from ci import oci as ci_oci
from components.environment import deploy_program
from tests.conftest import ROOT

DOCS = ROOT / "docs" / "development.md"
HEADING = "### Limits"
GOLDEN = ROOT / "tests" / "golden" / "production"
LIMIT_NAME = re.compile(
    r"^(MAX|MIN)_|_(MAX|MIN)$|_SECONDS$|_BYTES$|TIMEOUT|_LIMIT$|_MINUTES$|_LENGTH$|_ATTEMPTS$|_TTL|WAIT"
)
"""The names the code gives its limits (and a few intervals and units, listed as not limits)."""


class Inventory(NamedTuple):
    limits: dict[str, tuple[str, list[str]]]
    """Each named limit -> (its value, the tests that pin it)."""
    inline: list[tuple[str, str, list[str]]]
    """Each limit written inline: (the function whose call writes it, its value, the tests)."""
    others: dict[str, str]
    """Each constant named like a limit that is none -> what it is."""
    inline_others: set[tuple[str, str]]
    """Each number a call writes like a limit that is none: (the function, the number)."""


def inventory() -> Inventory:
    """The docs' two tables: limits (named, then written inline), and the names and numbers that
    look like limits but are none."""
    section = re.split(r"\n##", DOCS.read_text().split(HEADING, 1)[1], maxsplit=1)[0]
    found = Inventory({}, [], {}, set())
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        name = cells[0].strip("`") if cells else ""
        named = name.rpartition(".")[2].isupper()
        if len(cells) == 3 and cells[1].startswith("`") and "::" in cells[2]:
            value, tests = cells[1].strip("`"), re.findall(r"`(tests/[^`]+)`", cells[2])
            if named:
                found.limits[name] = (value, tests)
            else:
                found.inline.append((name, value, tests))
        elif len(cells) == 2 and named:
            found.others[name] = cells[1]
        elif len(cells) == 2:
            found.inline_others.add((name, cells[1].split("`")[1]))
    return found


@functools.cache
def modules() -> list[tuple[str, ast.Module]]:
    """Each module of components/ and ci/: its dotted name and its syntax tree."""
    return [
        (".".join(path.relative_to(ROOT).with_suffix("").parts), ast.parse(path.read_text()))
        for path in sorted([*(ROOT / "components").rglob("*.py"), *(ROOT / "ci").glob("*.py")])
    ]


@functools.cache
def constants() -> dict[str, str]:
    """`module.NAME` -> its value's source, for each module-level constant of components/ and
    ci/ whose value is written there (a name bound to another module's constant is that one)."""
    found = {}
    for module, tree in modules():
        for node in tree.body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
            if isinstance(node, ast.AnnAssign):
                target = node.target
            named = isinstance(target, ast.Name) and target.id.isupper()
            if named and node.value is not None and not isinstance(node.value, (ast.Name, ast.Attribute)):
                found[f"{module}.{target.id}"] = ast.unparse(node.value)
    return found


INLINE_PARAMETERS = ("timeout", "maxlen", "limit")
"""The arguments that bound a call in time or size, whatever function takes them."""

BOUNDING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _numeric(node: ast.expr) -> bool:
    return any(isinstance(leaf, ast.Constant) and type(leaf.value) in (int, float) for leaf in ast.walk(node))


def _written(node: ast.AST, parameters: dict[str, list[str]]) -> list[ast.expr]:
    """The numbers a call, a cut or a comparison writes as a limit: a `timeout`, `maxlen` or
    `limit` argument (by keyword, or by position to a function of the module whose parameter is
    named so), the size a `read`, `os.read`, `pread` or `recv` takes, the end of a `[:n]` cut of
    more than 2 (a shorter one is a prefix), a length compared with a number."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        cut = node.slice
        is_cut = cut.lower is None and cut.step is None and cut.upper is not None
        return [cut.upper] if is_cut and (_arithmetic(cut.upper) or 0) > 2 else []
    if isinstance(node, ast.Compare) and all(isinstance(op, BOUNDING) for op in node.ops):
        sides = [node.left, *node.comparators]
        if any(isinstance(side, ast.Call) and getattr(side.func, "id", None) == "len" for side in sides):
            return [side for side in sides if (_arithmetic(side) or 0) > 2]
        return []
    if not isinstance(node, ast.Call):
        return []
    named = parameters.get(getattr(node.func, "id", None), [])
    given = [(k.arg, k.value) for k in node.keywords] + list(zip(named, node.args, strict=False))
    found = [value for name, value in given if name in INLINE_PARAMETERS and _numeric(value)]
    method = getattr(node.func, "attr", None)
    of_os = isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", None) == "os"
    place = {"read": 1 if of_os else 0, "recv": 0, "pread": 1}.get(method or "")
    size = node.args[place] if place is not None and len(node.args) > place else None
    return found + ([size] if size is not None and _arithmetic(size) is not None else [])


@functools.cache
def inline_limits() -> list[tuple[str, str]]:
    """(`module.function`, the number as written) for each limit a call, a cut or a comparison
    in components/ and ci/ writes with a number (see `_written`); module-level code is named by
    its module, a nested function or class by its path."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, where: str, parameters: dict[str, list[str]]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, f"{where}.{child.name}", parameters)
                continue
            found.extend((where, ast.unparse(value)) for value in _written(child, parameters))
            visit(child, where, parameters)

    for module, tree in modules():
        functions = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        visit(tree, module, {f.name: [a.arg for a in f.args.args] for f in functions})
    return sorted(found)


def limit_constants() -> dict[str, str]:
    """The constants named like a limit, and the deploy program's options (each a bounded number)."""
    return {n: v for n, v in constants().items() if LIMIT_NAME.search(n.rpartition(".")[2]) or v.startswith("Option(")}


def _arithmetic(node: ast.expr) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.LShift)):
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        if left is None or right is None:
            return None
        return left * right if isinstance(node.op, ast.Mult) else left << right
    return None


def spellings(value: str) -> list[list[str]]:
    """The ways a test may write `value`: its numbers as the code writes them, or the product
    they make (`16 * 1024`: 16 and 1024, or 16384)."""
    product = _arithmetic(ast.parse(value, mode="eval").body)
    written = re.findall(r"\d+(?:\.\d+)?", value)
    return [written] if product is None else [written, [str(product)]]


def written_numbers(path: Path) -> dict[str, set[str]]:
    """Each test function of `path` -> the numbers its code writes (number literals, and numbers
    inside its strings), with its decorators' (parametrize) and without its docstring."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        body = node.body[1:] if ast.get_docstring(node) is not None else node.body
        numbers: set[str] = set()
        for part in (*node.decorator_list, *body):
            for leaf in ast.walk(part):
                if isinstance(leaf, ast.Constant) and type(leaf.value) in (int, float):
                    numbers.add(str(leaf.value))
                elif isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
                    numbers |= set(re.findall(r"(?<![\d.])\d+(?:\.\d+)?", leaf.value))
        found[node.name] = numbers
    return found


NOT_LIMITS = {
    "ci.github.BASE_DELAY_SECONDS",
    "ci.oci.BASE_DELAY_SECONDS",
    "ci.oci.POLL_SECONDS",
    "ci.instances.POLL_SECONDS",
    "components.environment.deploy.dreamscape_deploy.DRAIN_SETTLE_SECONDS",
    "components.environment.instance.WEEK_SECONDS",
    "components.settings.GENERATED_SECRET_LENGTH",
}
"""The constants named like limits that are none (intervals, a unit, a generated length): a
limit moved to the docs' second table is a change this file shows."""


NOT_INLINE_LIMITS = {
    ("ci.oci.signer", "8"),
    ("ci.report.verdict", "12"),
    ("components.delivery.digest", "12"),
    ("components.environment.deploy.dreamscape_deploy.digest_of", "12"),
    ("components.environment.deploy.dreamscape_deploy.State.stage", "6"),
}
"""The numbers a call or cut writes like a limit that are none: the length of an id or a digest
shown, the digits a release's name starts with."""


def test_only_intervals_and_units_are_listed_as_no_limit() -> None:
    listed = inventory()
    assert set(listed.others) == NOT_LIMITS
    assert listed.inline_others == NOT_INLINE_LIMITS


def test_every_limit_of_the_code_is_in_the_inventory() -> None:
    listed = inventory()
    found = limit_constants()
    assert len(found) > 40, "the scan found the code's limits"
    missing = sorted(set(found) - set(listed.limits) - set(listed.others))
    assert missing == [], "a limit without an entry in docs/development.md"
    assert sorted(set(listed.limits) & set(listed.others)) == []
    assert sorted({*listed.limits, *listed.others} - set(constants())) == [], "an entry for a constant that is gone"


def test_every_limit_written_inline_is_in_the_inventory_as_the_code_writes_it() -> None:
    listed = inventory()
    found = inline_limits()
    assert len(found) >= 20, "the scan found the limits written inline"
    assert sorted([(where, value) for where, value, _ in listed.inline] + [*listed.inline_others]) == found


def test_document_limits_name_tests_that_exist_and_write_the_value() -> None:
    listed = inventory()
    sources = {
        f"tests/{path.name}::{name}": numbers
        for path in (ROOT / "tests").glob("test_*.py")
        for name, numbers in written_numbers(path).items()
    }
    rows = [(name, value, tests) for name, (value, tests) in listed.limits.items()] + listed.inline
    problems = []
    for limit, value, tests in rows:
        if not tests:
            problems.append(f"{limit}: no test named")
        for test in tests:
            if test not in sources:
                problems.append(f"{limit}: no test {test}")
        written = set().union(*(sources[t] for t in tests if t in sources))
        if not any(set(numbers) <= written for numbers in spellings(value)):
            problems.append(f"{limit}: none of {tests} writes {value}")
    assert problems == []


def test_the_inventory_reads_what_the_code_says() -> None:
    """Each named limit's value in the table is the code's: the docs stay true."""
    code = constants()
    differ = {n: (v, code[n]) for n, (v, _) in inventory().limits.items() if v != code.get(n)}
    assert differ == {}


# --- limits no other test reaches ---------------------------------------------------------------------


def test_listing_container_instances_stops_after_20_pages() -> None:
    calls = []

    class Endless(instances.Api):
        def call(self, what, service, method, path, data=None, headers=None, client=None):
            calls.append(path)
            return {"items": [{"id": f"ocid1.i{len(calls)}"}]}, {"opc-next-page": f"p{len(calls)}"}

    with pytest.raises(ci_oci.OciError, match="List the container instances: more than 20 pages"):
        Endless("eu-frankfurt-1", None, None).instances("ocid1.compartment")
    assert len(calls) == 20 and calls[-1].endswith("&page=p19")


def test_an_oci_call_is_tried_4_times_within_30_seconds_each_and_once_within_5_when_cancelled(monkeypatch) -> None:
    sent: list[float] = []

    def send(method, url, headers, body, timeout):
        sent.append(timeout)
        return github.Answer(503)

    monkeypatch.setattr(ci_oci, "send", send)
    client = ci_oci.Client(sleep=lambda _: None)
    with pytest.raises(ci_oci.OciError, match="HTTP 503"):
        client.answer("Get", "GET", "https://example.invalid/", {})
    assert len(sent) == 4 and set(sent) == {30}
    sent.clear()
    with pytest.raises(ci_oci.OciError, match="HTTP 503"):
        client.last_chance().answer("Delete", "DELETE", "https://example.invalid/", {})
    assert sent == [5]


def test_a_github_request_waits_30_seconds_for_an_answer(monkeypatch) -> None:
    seen = []

    def urlopen(request, timeout):
        seen.append(timeout)
        raise OSError("no network here")

    monkeypatch.setattr(github.urllib.request, "urlopen", urlopen)
    assert github.send("GET", "https://example.invalid/", {}, None).status == 0
    assert seen == [30]


def test_each_job_has_its_time_limit() -> None:
    central = yaml.safe_load((GOLDEN / "dreamscape-infra@main/.github/workflows/central-dispatch.yml").read_text())
    minutes = {job: spec["timeout-minutes"] for job, spec in central["jobs"].items()}
    assert minutes == {
        "resolve": 10,
        "build-test": 45,
        "security-scan": 20,
        "publish": 15,
        "deploy": 36,
        "report": 5,
    }
    [deploy_step] = [s for s in central["jobs"]["deploy"]["steps"] if "timeout-minutes" in s]
    assert deploy_step["timeout-minutes"] == 31, "the deploy step: the longest deploy the settings allow"
    for trigger in GOLDEN.glob("*/.github/workflows/trigger-central-cicd.yml"):
        jobs = yaml.safe_load(trigger.read_text())["jobs"]
        assert [job["timeout-minutes"] for job in jobs.values()] == [10], trigger


def test_the_trigger_sends_every_component_when_the_comparison_reaches_300_files() -> None:
    text = (GOLDEN / "dreamscape-services@main/.github/workflows/trigger-central-cicd.yml").read_text()
    assert "if (( count >= 300 )); then" in text


def test_first_boot_fetches_the_deploy_program_with_10_retries_of_at_most_120_seconds_each() -> None:
    text = (GOLDEN / "oci/production-vm-instance/user-data.yaml").read_text()
    assert " --retry 10 --retry-all-errors --max-time 120 --output /usr/local/sbin/dreamscape-deploy.download " in text


def test_first_boot_waits_15_minutes_for_the_package_lock() -> None:
    assert "apt-get -o DPkg::Lock::Timeout=900 " in (GOLDEN / "oci/production-vm-instance/user-data.yaml").read_text()


def test_a_preview_comment_takes_12000_characters_of_each_stack_and_a_summary_60000_of_each_diff() -> None:
    workflows = {path.name: path.read_text() for path in (ROOT / ".github" / "workflows").glob("*.yml")}
    assert '"$artifacts/preview-production/preview.txt" 12000' in workflows["preview.yml"]
    assert "plans.diff 60000" in workflows["preview.yml"] and "files.diff 60000" in workflows["preview.yml"]


def test_the_deploy_programs_own_time_limits_by_default() -> None:
    """A pull may take 10 minutes, a draining release 30 s."""
    settings = deploy_program.load_program().load_settings({})
    assert (settings.pull_timeout, settings.drain_timeout) == (600, 30)
