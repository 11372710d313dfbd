"""A small, strict evaluator of GitHub Actions expressions (`${{ ... }}` and `if:`).

It supports what the rendered workflows use, with GitHub's semantics:
- literals: `null`, `true`, `false`, numbers, 'strings' ('' escapes a quote);
- contexts and property access: `github.event.before`, `steps.my-step.outputs.x` (names are
  case-insensitive, a missing property is null);
- operators: `==`, `!=` (loose: different types compare as numbers, strings ignore case),
  `&&`, `||` (they return an operand, not a boolean), `!`, parentheses;
- functions: `toJSON`, `fromJSON`, `format`, `contains`, `startsWith`, `endsWith`, `join`, and
  the status functions `success()`, `failure()`, `cancelled()`, `always()`.

Anything else (index syntax, `<`/`>`, object filters, `hashFiles`, an unknown context)
raises `ExpressionError`, so a workflow cannot quietly use something this harness would get
wrong.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

CONTEXTS = (
    "github",
    "env",
    "vars",
    "job",
    "jobs",
    "steps",
    "runner",
    "secrets",
    "strategy",
    "matrix",
    "needs",
    "inputs",
)
STATUS_FUNCTIONS = ("success", "failure", "cancelled", "always")


class ExpressionError(ValueError):
    """An expression the harness does not support, or that GitHub would reject."""


# --- tokens ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))
  | (?P<op>==|!=|&&|\|\||<=|>=|[!().,<>\[\]*])
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<end>}})
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str, start: int = 0, until_close: bool = False) -> tuple[list[_Tok], int]:
    """Tokens from `start`; with `until_close`, stops after `}}` and returns where it ended."""
    tokens: list[_Tok] = []
    pos = start
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ExpressionError(f"unexpected character {text[pos]!r} at {pos} in {text!r}")
        kind = m.lastgroup or ""
        pos = m.end()
        if kind == "space":
            continue
        if kind == "end":
            if until_close:
                return tokens, pos
            raise ExpressionError(f"unexpected '}}}}' in {text!r}")
        tokens.append(_Tok(kind, m.group(), m.start()))
    if until_close:
        raise ExpressionError(f"unterminated '${{{{' in {text!r}")
    return tokens, pos


# --- syntax tree -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Context:
    name: str


@dataclass(frozen=True)
class Property:
    target: Any
    name: str


@dataclass(frozen=True)
class Not:
    operand: Any


@dataclass(frozen=True)
class Binary:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]


class _Parser:
    def __init__(self, tokens: list[_Tok], source: str) -> None:
        self.tokens = tokens
        self.i = 0
        self.source = source

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, text: str | None = None, kind: str | None = None) -> _Tok:
        tok = self.peek()
        if tok is None or (text is not None and tok.text != text) or (kind is not None and tok.kind != kind):
            wanted = text or kind or "more"
            raise ExpressionError(f"expected {wanted} in {self.source!r}, got {tok.text if tok else 'the end'}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        node = self.or_()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek().text!r} in {self.source!r}")
        return node

    def or_(self) -> Any:
        node = self.and_()
        while self.peek() and self.peek().text == "||":
            self.take()
            node = Binary("||", node, self.and_())
        return node

    def and_(self) -> Any:
        node = self.equality()
        while self.peek() and self.peek().text == "&&":
            self.take()
            node = Binary("&&", node, self.equality())
        return node

    def equality(self) -> Any:
        node = self.unary()
        while self.peek() and self.peek().text in ("==", "!="):
            op = self.take().text
            node = Binary(op, node, self.unary())
        tok = self.peek()
        if tok and tok.text in ("<", "<=", ">", ">="):
            raise ExpressionError(f"the harness does not support {tok.text!r} (in {self.source!r})")
        return node

    def unary(self) -> Any:
        if self.peek() and self.peek().text == "!":
            self.take()
            return Not(self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        node = self.primary()
        while self.peek() and self.peek().text in (".", "["):
            if self.peek().text == "[":
                raise ExpressionError(f"the harness does not support index syntax (in {self.source!r})")
            self.take(".")
            tok = self.peek()
            if tok is not None and tok.text == "*":
                raise ExpressionError(f"the harness does not support object filters (in {self.source!r})")
            node = Property(node, self.take(kind="name").text)
        return node

    def primary(self) -> Any:
        tok = self.take()
        if tok.kind == "string":
            return Literal(tok.text[1:-1].replace("''", "'"))
        if tok.kind == "number":
            text = tok.text
            value = int(text, 16) if "0x" in text.lower() else float(text)
            return Literal(value)
        if tok.text == "(":
            node = self.or_()
            self.take(")")
            return node
        if tok.kind == "name":
            lowered = tok.text.lower()
            if lowered in ("true", "false"):
                return Literal(lowered == "true")
            if lowered == "null":
                return Literal(None)
            if self.peek() and self.peek().text == "(":
                self.take("(")
                args = []
                if not (self.peek() and self.peek().text == ")"):
                    args.append(self.or_())
                    while self.peek() and self.peek().text == ",":
                        self.take(",")
                        args.append(self.or_())
                self.take(")")
                return Call(lowered, tuple(args))
            if lowered not in CONTEXTS:
                raise ExpressionError(f"unknown context {tok.text!r} in {self.source!r}")
            return Context(lowered)
        raise ExpressionError(f"unexpected {tok.text!r} in {self.source!r}")


def parse(expression: str) -> Any:
    tokens, _ = _tokenize(expression)
    if not tokens:
        raise ExpressionError("empty expression")
    return _Parser(tokens, expression).parse()


def uses_status_function(node: Any) -> bool:
    if isinstance(node, Call):
        return node.name in STATUS_FUNCTIONS or any(uses_status_function(a) for a in node.args)
    if isinstance(node, Binary):
        return uses_status_function(node.left) or uses_status_function(node.right)
    if isinstance(node, Not):
        return uses_status_function(node.operand)
    if isinstance(node, Property):
        return uses_status_function(node.target)
    return False


# --- values ----------------------------------------------------------------------------------


def truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    return math.nan


def loose_equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    if isinstance(left, (dict, list)) or isinstance(right, (dict, list)):
        return left is right
    if type(left) is type(right) and not isinstance(left, float):
        return left == right
    a, b = _number(left), _number(right)
    return a == b  # NaN never equals anything


def to_string(value: Any) -> str:
    """How GitHub turns a value into text inside a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise ExpressionError("an object or array cannot be put in a string as is; use toJSON()")


def _property(target: Any, name: str) -> Any:
    if isinstance(target, Mapping):
        for key, value in target.items():
            if key.lower() == name.lower():
                return value
    return None


def _format(template: str, *args: Any) -> str:
    out, i = [], 0
    while i < len(template):
        c = template[i]
        if template.startswith("{{", i):
            out.append("{")
            i += 2
        elif template.startswith("}}", i):
            out.append("}")
            i += 2
        elif c == "{":
            end = template.find("}", i)
            index = template[i + 1 : end] if end > i else ""
            if not index.isdigit() or int(index) >= len(args):
                raise ExpressionError(f"format: bad placeholder in {template!r}")
            out.append(to_string(args[int(index)]))
            i = end + 1
        elif c == "}":
            raise ExpressionError(f"format: unmatched '}}' in {template!r}")
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass
class Evaluator:
    """Evaluates against `contexts` (name -> value); `status` answers the status functions."""

    contexts: Mapping[str, Any]
    status: Callable[[str], bool] = lambda name: name == "always" or name == "success"

    def evaluate(self, node: Any) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Context):
            if node.name not in self.contexts:
                raise ExpressionError(f"the context {node.name!r} is not available here")
            return self.contexts[node.name]
        if isinstance(node, Property):
            return _property(self.evaluate(node.target), node.name)
        if isinstance(node, Not):
            return not truthy(self.evaluate(node.operand))
        if isinstance(node, Binary):
            left = self.evaluate(node.left)
            if node.op == "&&":
                return self.evaluate(node.right) if truthy(left) else left
            if node.op == "||":
                return left if truthy(left) else self.evaluate(node.right)
            right = self.evaluate(node.right)
            equal = loose_equal(left, right)
            return equal if node.op == "==" else not equal
        if isinstance(node, Call):
            return self._call(node)
        raise ExpressionError(f"cannot evaluate {node!r}")

    def _call(self, node: Call) -> Any:
        name, args = node.name, [self.evaluate(a) for a in node.args]
        arity = {
            "tojson": (1, 1),
            "fromjson": (1, 1),
            "format": (1, 99),
            "contains": (2, 2),
            "startswith": (2, 2),
            "endswith": (2, 2),
            "join": (1, 2),
            **{s: (0, 0) for s in STATUS_FUNCTIONS},
        }
        if name not in arity:
            raise ExpressionError(f"the harness does not support the function {node.name}()")
        low, high = arity[name]
        if not low <= len(args) <= high:
            raise ExpressionError(f"{node.name}() takes {low} to {high} arguments, got {len(args)}")
        if name in STATUS_FUNCTIONS:
            return self.status(name)
        if name == "tojson":
            return json.dumps(args[0], indent=2)
        if name == "fromjson":
            try:
                return json.loads(to_string(args[0]))
            except json.JSONDecodeError as error:
                raise ExpressionError(f"fromJSON: not JSON: {args[0]!r}") from error
        if name == "format":
            return _format(to_string(args[0]), *args[1:])
        if name == "contains":
            search, item = args
            if isinstance(search, list):
                return any(loose_equal(element, item) for element in search)
            return to_string(item).casefold() in to_string(search).casefold()
        if name == "startswith":
            return to_string(args[0]).casefold().startswith(to_string(args[1]).casefold())
        if name == "endswith":
            return to_string(args[0]).casefold().endswith(to_string(args[1]).casefold())
        separator = to_string(args[1]) if len(args) > 1 else ","
        if isinstance(args[0], list):
            return separator.join(to_string(v) for v in args[0])
        return to_string(args[0])

    # --- entry points ------------------------------------------------------------------------

    def expression(self, text: str) -> Any:
        return self.evaluate(parse(text))

    def template(self, text: Any) -> Any:
        """A workflow value with `${{ }}` parts replaced; non-strings are returned unchanged.

        A value that is exactly one `${{ expr }}` keeps the expression's type; otherwise the
        parts are turned into text.
        """
        if not isinstance(text, str) or "${{" not in text:
            return text
        parts: list[Any] = []
        pos = 0
        while True:
            start = text.find("${{", pos)
            if start < 0:
                parts.append(text[pos:])
                break
            parts.append(text[pos:start])
            tokens, end = _tokenize(text, start + 3, until_close=True)
            source = text[start + 3 : end - 2]
            if not tokens:
                raise ExpressionError(f"empty expression in {text!r}")
            parts.append(_Value(self.evaluate(_Parser(tokens, source).parse())))
            pos = end
        values = [p for p in parts if p != ""]
        if len(values) == 1 and isinstance(values[0], _Value):
            return values[0].value
        return "".join(p if isinstance(p, str) else to_string(p.value) for p in parts)

    def condition(self, text: Any) -> bool:
        """An `if:` value: implicit `success() &&` unless a status function is named."""
        if isinstance(text, bool):
            return text
        if text is None:
            return self.status("success")
        source = str(text).strip()
        if source.startswith("${{") and source.endswith("}}") and source.count("${{") == 1:
            source = source[3:-2]
        node = parse(source)
        if not uses_status_function(node):
            node = Binary("&&", Call("success", ()), node)
        return truthy(self.evaluate(node))


@dataclass(frozen=True)
class _Value:
    value: Any
