"""Mutation testing of the modules that decide security and money, with mutmut.

    make mutation                       # every scope (one to two hours on two cores)
    make mutation SCOPE=rules           # one scope: rules, settings, deploy, pipeline
    python tools/mutation.py --scope rules --max-children 2

mutmut makes small deliberate bugs (mutants) in a module's functions, one at a time, and runs
the tests that call the mutated function: a mutant the tests notice is killed, one they do not
notice survived. Each scope mutates its modules and runs only the tests that cover them
(SCOPES), in a copy of the tracked files under build/mutation/<scope>/, so the checkout is left
alone.

Every survivor must be explained, by one of two rules:
- `wording`: the mutant changes only the text of a message (a string inside a `raise`, or an
  argument of a function in MESSAGE_CALLS); tests pin each refusal by the phrase that names
  it, not word for word, so a reworded message passes them by design;
- `equivalent`: listed in docs/development.md, "Equivalent mutants", with the line the mutant
  writes and why no test can tell it from the original.
A survivor neither rule explains, and a mutant in a function no scoped test calls, fails the
run (exit 1) and is printed with its diff; build/mutation/report.md lists every survivor.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "mutation"
DOCS = ROOT / "docs" / "development.md"
EQUIVALENT_HEADING = "### Equivalent mutants"


@dataclass(frozen=True)
class Scope:
    files: tuple[str, ...]
    tests: tuple[str, ...]
    message_calls: tuple[str, ...] = ()
    """Calls whose string arguments are messages (beside every `raise`)."""
    message_arguments: tuple[tuple[str, str, int], ...] = ()
    """(call, keyword, position) of an argument that is only words: `_string`'s `what`."""
    deselect: tuple[str, ...] = ()
    """Tests of those files that run the code in another process: mutmut follows only its own."""
    functions: tuple[str, ...] = ()
    """Only these functions (`module.function`) when not empty; the others are out of scope."""

    def mutant_globs(self) -> list[str]:
        """mutmut's names for the mutants of `functions` (a method is `module.Class.method`)."""
        globs = []
        for function in self.functions:
            module, _, name = function.rpartition(".")
            owner, _, cls = module.rpartition(".")
            if cls.lstrip("_")[:1].isupper():
                globs.append(f"{owner}.xǁ{cls}ǁ{name}__mutmut_*")
            else:
                globs.append(f"{module}.x_{name}__mutmut_*")
        return globs


SCOPES = {
    "rules": Scope(
        files=("components/rules.py",),
        tests=("tests/test_rules.py", "tests/test_settings.py", "tests/test_ci_config.py"),
    ),
    "settings": Scope(
        files=("components/settings.py",),
        tests=(
            "tests/test_settings.py",
            "tests/test_settings_refusals.py",
            "tests/test_settings_edges.py",
            "tests/test_settings_artifacts.py",
            "tests/test_actions_settings.py",
            "tests/test_app_secrets.py",
            "tests/test_container_platform.py",
            "tests/test_environment_shapes.py",
            "tests/test_pinned_security.py",
        ),
        message_calls=("_fail", "warnings.append", "problems.append"),
        # `what` says what a value should be; `path` (a check's second argument) where it is.
        message_arguments=(
            ("_string", "what", 1),
            ("_DEPLOY", "path", 1),
            ("_OCI", "path", 1),
            ("_object(_TOP, dict)", "path", 1),
            ("item", "path", 1),
        ),
        deselect=(
            "tests/test_environment_shapes.py::test_plan_of_a_paid_shape_says_what_it_costs",
            "tests/test_environment_shapes.py::test_plan_prints_usage_against_the_allowance_per_environment_and_total",
            "tests/test_app_secrets.py::test_a_config_secret_from_the_stack_file_is_planned_and_never_printed",
            "tests/test_app_secrets.py::test_a_plain_secret_value_in_a_stack_file_stops_the_plan",
            "tests/test_container_platform.py::test_no_secret_value_is_printed",
            "tests/test_container_platform.py::test_make_plan_of_a_container_instances_copy_shows_the_load_balancer_and_no_vm",
        ),
    ),
    "deploy": Scope(
        files=("components/environment/deploy/dreamscape_deploy.py",),
        tests=(
            "tests/test_deploy_program.py",
            "tests/test_deploy_program_refusals.py",
            "tests/test_deploy_program_edges.py",
            "tests/test_time_limits.py",
        ),
        message_calls=("console.say",),
        # What a frame is, in the messages about its length and its end.
        message_arguments=(("_length", "what", 2), ("_payload", "what", 2)),
        # What the program accepts (each refusal of its input) and what it makes of it (the
        # compose model it runs, the edge's sites and Caddyfile); the steps that run docker,
        # the lock and the release state are tested over sshd, in a process mutmut cannot follow.
        functions=tuple(
            f"components.environment.deploy.dreamscape_deploy.{name}"
            for name in (
                "Option.value",
                "matches",
                "image_variable",
                "is_image",
                "placeholder_image",
                "_shown",
                "_pair",
                "parse_command",
                "_length",
                "_payload",
                "read_frames",
                "_setting",
                "_seconds",
                "_fallback",
                "load_settings",
                "fence",
                "check_secrets",
                "child_environment",
                "resources_used",
                "without_services",
                "check_model",
                "accessories_of",
                "published_sites",
                "Site.upstream",
                "edge_domain",
                "slotted",
                "caddyfile",
                "_stdin_too_slow",
            )
        ),
        deselect=(
            # They read the program's text, which mutmut rewrites (its own imports, trampolines).
            "tests/test_deploy_program.py::test_program_is_python_standard_library_only",
            "tests/test_deploy_program.py::test_program_never_uses_a_shell",
        ),
    ),
    "pipeline": Scope(
        files=("ci/resolve.py", "ci/deploy_gate.py"),
        tests=("tests/test_pipeline_decisions.py",),
        # The decisions; `main`, `refuse`, `check_on_branch` and the deploy gate's `main` call the
        # GitHub API and are tested as workflow steps, in a process mutmut cannot follow.
        functions=(
            "ci.resolve.printable",
            "ci.resolve._text",
            "ci.resolve.check",
            "ci.resolve.production_branch",
            "ci.resolve.needs_ruleset",
            "ci.resolve.check_ruleset",
            "ci.resolve.plan_text",
            "ci.resolve.outputs",
            "ci.deploy_gate.decide",
        ),
    ),
}

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", None: "not run"}
STATUS |= dict.fromkeys((36, 24, -24, 152, 255), "timeout")
"""mutmut's exit codes per mutant (mutmut.stats); any other is reported as it is."""


@dataclass
class Mutant:
    name: str
    status: str
    diff: list[str] = field(default_factory=list)
    explanation: str = ""


def workspace(scope_name: str, scope: Scope) -> Path:
    """A copy of the working tree (tracked files and new ones git does not ignore), with
    mutmut's settings for this scope in its pyproject."""
    work = BUILD / scope_name
    shutil.rmtree(work, ignore_errors=True)
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    for name in tracked.decode().split("\0"):
        if not name or not (ROOT / name).is_file():
            continue
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    top = sorted({Path(name).parts[0] for name in tracked.decode().split("\0") if name})
    deselect = [arg for test in scope.deselect for arg in ("--deselect", test)]
    also_copy = [name for name in top if name not in ("components", "ci", "tests", "pyproject.toml")]
    with (work / "pyproject.toml").open("a") as pyproject:
        pyproject.write(
            "\n[tool.mutmut]\n"
            'source_paths = ["components", "ci"]\n'
            f"only_mutate = {json.dumps(list(scope.files))}\n"
            f"also_copy = {json.dumps(also_copy)}\n"
            f"pytest_add_cli_args_test_selection = {json.dumps([*scope.tests, *deselect])}\n"
            'pytest_add_cli_args = ["-p", "no:xdist", "-p", "no:cacheprovider"]\n'
        )
    return work


def refresh_tests(work: Path) -> None:
    """The working tree's tests/ into the run's copy (and mutmut's), for `--resume`."""
    for target in (work / "tests", work / "mutants" / "tests"):
        if target.parent.exists():
            shutil.copytree(ROOT / "tests", target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))


def mutmut_run(work: Path, names: list[str], max_children: int) -> None:
    mutmut = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "PATH": f"{mutmut.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(mutmut), "run", "--max-children", str(max_children), *names]
    result = subprocess.run(command, cwd=work, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"mutation: mutmut exited {result.returncode} in {work}")


def fresh_processes(work: Path, names: list[str]) -> None:
    """From now on each mutant's worker imports the code afresh (mutmut's fork server, no
    warmup), and these mutants run every test of the scope: mutmut ties a test to a function it
    saw the test call, and a factory called at import is seen by the first test only."""
    pyproject = work / "pyproject.toml"
    if "process_isolation" not in pyproject.read_text():
        with pyproject.open("a") as file:
            file.write('process_isolation = "forkserver"\nforkserver_warmup = "none"\n')
    path = work / "mutants" / "mutmut-stats.json"
    stats = json.loads(path.read_text())
    every = sorted(stats["duration_by_test"])
    for name in names:
        stats["tests_by_mangled_function_name"][name.rsplit("__mutmut_", 1)[0]] = every
    path.write_text(json.dumps(stats))


def run_mutmut(work: Path, scope: Scope, max_children: int) -> None:
    """Two passes. The first forks each mutant's worker from a process that has imported the
    code and run the tests once (fast). A function the code calls while it is imported (the
    schema's validators are made by factories at import) keeps its original there, so every
    survivor runs again, each in a fresh process that imports the code with the mutant on,
    against every test of the scope."""
    mutmut_run(work, scope.mutant_globs(), max_children)
    survivors = [
        name
        for file in scope.files
        for name, code in json.loads((work / "mutants" / f"{file}.meta").read_text())["exit_code_by_key"].items()
        if code == 0 and (not scope.functions or function_of(name) in scope.functions)
    ]
    if survivors:
        fresh_processes(work, survivors)
        mutmut_run(work, survivors, max_children)


def rerun_unexplained(work: Path, scope: Scope, max_children: int) -> None:
    """`--resume`: the tests as they are now, against the last run's survivors that no rule
    explains, each in a fresh process; every other verdict of that run stands (tests added
    since can only kill more)."""
    refresh_tests(work)
    names = [m.name for m in collect(work, scope) if m.status == "survived" and not m.explanation]
    if names:
        fresh_processes(work, names)
        mutmut_run(work, names, max_children)


def functions(path: Path) -> dict[str, tuple[ast.FunctionDef, list[str]]]:
    """Each function mutmut wrote (original and mutants) by name, with its source lines."""
    text = path.read_text()
    lines = text.splitlines()
    found = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in node.name:
            # From the `def` line (a default may be mutated), the mutant's name put back.
            body = lines[node.lineno - 1 : node.end_lineno]
            body[0] = body[0].replace(node.name, node.name.rsplit("__mutmut_", 1)[0], 1)
            found[node.name] = (node, body)
    return found


def differences(a: ast.AST, b: ast.AST, parents: tuple[ast.AST, ...] = ()) -> list[tuple[ast.AST, ast.AST, tuple]]:
    """The smallest differing node pairs of two trees, each with its ancestors in `a`."""
    if type(a) is not type(b):
        return [(a, b, parents)]
    if isinstance(a, ast.Constant):
        return [] if (type(a.value), a.value) == (type(b.value), b.value) else [(a, b, parents)]
    found = []
    for name, value in ast.iter_fields(a):
        other = getattr(b, name, None)
        if isinstance(value, list):
            if not isinstance(other, list) or len(value) != len(other):
                return [(a, b, parents)]
            for x, y in zip(value, other, strict=True):
                if isinstance(x, ast.AST) and isinstance(y, ast.AST):
                    found += differences(x, y, (*parents, a))
                elif x != y:
                    return [(a, b, parents)]
        elif isinstance(value, ast.AST) and isinstance(other, ast.AST):
            found += differences(value, other, (*parents, a))
        elif value != other and name not in ("lineno", "end_lineno", "col_offset", "end_col_offset", "ctx"):
            return [(a, b, parents)]
    return found


def call_name(node: ast.Call) -> str:
    return ast.unparse(node.func)


def message_calls(tree: ast.AST, scope: Scope) -> list[ast.Call]:
    """The calls whose arguments are only words: each `raise`'s exception and each call in
    the scope's MESSAGE_CALLS."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            found.append(node.exc)
        elif isinstance(node, ast.Call) and call_name(node) in scope.message_calls:
            found.append(node)
    return found


def is_wording(original: ast.FunctionDef, mutant: ast.FunctionDef, scope: Scope) -> bool:
    """Every change is inside the arguments of a message call (or drops some of them): the
    same call still happens, the same exception is still raised, with other words."""
    found = differences(ast.Module(body=original.body, type_ignores=[]), ast.Module(body=mutant.body, type_ignores=[]))
    found += differences(original.args, mutant.args)
    if not found:
        return False
    calls = message_calls(original, scope)
    inside = {id(node) for call in calls for arg in (*call.args, *call.keywords) for node in ast.walk(arg)}
    for node in ast.walk(original):
        for name, keyword, position in scope.message_arguments:
            if isinstance(node, ast.Call) and call_name(node) == name:
                words = [k.value for k in node.keywords if k.arg == keyword] + node.args[position : position + 1]
                inside |= {id(part) for arg in words for part in ast.walk(arg)}
    own = original.name.removeprefix("x_").rsplit("__mutmut_", 1)[0]
    for name, keyword, _ in scope.message_arguments:
        if name == own:  # the function's own default for that argument
            defaults = dict(
                zip(reversed([a.arg for a in original.args.args]), reversed(original.args.defaults), strict=False)
            )
            if keyword in defaults:
                inside |= {id(part) for part in ast.walk(defaults[keyword])}
    words_only = message_variables(original, inside)
    for a, b, parents in found:
        same_call = isinstance(a, ast.Call) and isinstance(b, ast.Call) and call_name(a) == call_name(b)
        if id(a) in inside or (same_call and any(a is call for call in calls)):
            continue
        if any(isinstance(p, ast.Assign) and id(p) in words_only for p in parents):
            continue
        return False
    return True


def message_variables(function: ast.FunctionDef, inside: set[int]) -> set[int]:
    """The assignments (by id) to a local name that is read only inside message arguments."""
    reads: dict[str, list[ast.Name]] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            reads.setdefault(node.id, []).append(node)
    found = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            names = [t.id for t in node.targets]
            if all(reads.get(n) and all(id(r) in inside for r in reads[n]) for n in names):
                found.add(id(node))
    return found


def equivalents() -> list[tuple[str, str, str]]:
    """(function, the line the mutant writes, reason) from the docs' table of equivalent mutants."""
    text = DOCS.read_text()
    if EQUIVALENT_HEADING not in text:
        return []
    section = text.split(EQUIVALENT_HEADING, 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        row = line.strip().removeprefix("|").removesuffix("|")
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row)] if line.startswith("|") else []
        if len(cells) == 3 and cells[0].startswith("`") and cells[1].startswith("`"):
            rows.append((cells[0].strip("`"), cells[1].strip("`").replace("\\|", "|"), cells[2]))
    return rows


def function_of(name: str) -> str:
    """`components.rules.x_is_sha__mutmut_3` -> `components.rules.is_sha` (methods: `Class.method`)."""
    module, _, mangled = name.rpartition(".")
    mangled = mangled.rsplit("__mutmut_", 1)[0]
    if mangled.startswith("xǁ"):
        mangled = ".".join(mangled.removeprefix("xǁ").split("ǁ"))
    else:
        mangled = mangled.removeprefix("x_")
    return f"{module}.{mangled}"


def collect(work: Path, scope: Scope) -> list[Mutant]:
    table = equivalents()
    mutants = []
    for file in scope.files:
        meta = json.loads((work / "mutants" / f"{file}.meta").read_text())
        defs = functions(work / "mutants" / file)
        for name, code in meta["exit_code_by_key"].items():
            if scope.functions and function_of(name) not in scope.functions:
                continue
            status = STATUS.get(code, f"exit {code}")
            mutant = Mutant(name=name, status=status)
            short = name.rpartition(".")[2]
            original = short.rsplit("__mutmut_", 1)[0] + "__mutmut_orig"
            if status == "survived" and short in defs and original in defs:
                (a, a_lines), (b, b_lines) = defs[original], defs[short]
                mutant.diff = [
                    line
                    for line in difflib.unified_diff(a_lines, b_lines, lineterm="", n=0)
                    if line[:1] in "+-" and not line.startswith(("+++", "---"))
                ]
                written = [line[1:].strip() for line in mutant.diff if line.startswith("+")]
                if is_wording(a, b, scope):
                    mutant.explanation = "wording"
                else:
                    for function, changed, reason in table:
                        if function == function_of(name) and changed in written:
                            mutant.explanation = f"equivalent: {reason}"
                            break
            mutants.append(mutant)
    return mutants


def report(results: dict[str, list[Mutant]]) -> tuple[str, int]:
    lines = [
        "# Mutation testing",
        "",
        "| scope | mutants | killed | survived: wording | survived: equivalent | unexplained | no tests | timeout "
        "| score |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    failing = 0
    details = []
    for scope_name, mutants in results.items():
        count = {key: 0 for key in ("killed", "wording", "equivalent", "unexplained", "no tests", "timeout", "other")}
        for mutant in mutants:
            if mutant.status == "survived":
                key = mutant.explanation.split(":")[0] if mutant.explanation else "unexplained"
            elif mutant.status in count:
                key = mutant.status
            else:
                key = "other"
            count[key] += 1
            if key in ("unexplained", "no tests", "other"):
                failing += 1
            if mutant.status == "survived":
                details.append(f"- `{mutant.name}` ({mutant.explanation or 'UNEXPLAINED'})")
                details += [f"      {line}" for line in mutant.diff]
            elif key in ("no tests", "other"):
                details.append(f"- `{mutant.name}` ({mutant.status})")
        total = len(mutants)
        tested = total - count["no tests"]
        score = f"{100 * (count['killed'] + count['timeout']) / tested:.1f}%" if tested else "-"
        lines.append(
            f"| {scope_name} | {total} | {count['killed']} | {count['wording']} | {count['equivalent']} "
            f"| {count['unexplained']} | {count['no tests']} | {count['timeout']} | {score} |"
        )
    return "\n".join([*lines, "", "## Survivors", "", *details, ""]), failing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scope", choices=sorted(SCOPES), action="append", help="default: every scope")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--report-only", action="store_true", help="read the last run's results again")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="run the last run's unexplained survivors again in its copy, against the tests as they are now "
        "(after adding tests; a changed or removed test needs a full run)",
    )
    args = parser.parse_args(argv)
    results = {}
    for name in args.scope or list(SCOPES):
        scope = SCOPES[name]
        work = BUILD / name
        if not args.report_only:
            if args.resume and work.exists():
                rerun_unexplained(work, scope, args.max_children)
            else:
                run_mutmut(workspace(name, scope), scope, args.max_children)
        results[name] = collect(work, scope)
    text, failing = report(results)
    (BUILD / "report.md").write_text(text)
    table_end = text.index("\n\n## Survivors")
    print(text[:table_end])
    if failing:
        unexplained = [line for line in text.splitlines() if "UNEXPLAINED" in line or "(no tests)" in line]
        print(f"\nmutation: {failing} mutants neither killed nor explained (build/mutation/report.md):")
        print("\n".join(unexplained[:200]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
