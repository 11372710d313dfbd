"""Pushed refs for the tests that hold rendered shell against `rules.classify_ref`.

The expected decision of every ref comes from `rules.classify_ref` itself: this corpus only
makes sure the comparison covers every rule, every near miss and the hostile cases a ref can
carry into a runner (shell metacharacters, command substitutions, control characters, look-
alike Unicode, extreme lengths). NUL is left out: neither a git ref nor an environment
variable can hold one. The trigger's tests and the central pipeline's tests both use it.
"""

from __future__ import annotations

HEADS = "refs/heads/"

_FEATURE_OK = (
    "x",
    "login",
    "a/b",
    "a/b/c/d",
    "JIRA-123",
    "v1.2.3",
    "_private",
    "a_b",
    "123",
    "a-b-c",
    "a.b.c",
    "x/y.z",
    "UPPER",
    "trailing-",
    "trailing.",
    "x/_y",
    "2026/q1/plan",
    "a/b-c/d_e/f.g",
    "x.lock",
    "a/9",
)

_HOTFIX_OK = ("x", "1.2.3", "CVE-2026-0001", "_a", "a-b", "urgent_fix", "v2", "Z")

_BAD_SUFFIXES = (
    "",
    "/",
    "-x",
    ".x",
    "x/",
    "x//y",
    "/x",
    "x/.y",
    "x/-y",
    "a..b",
    "a/../b",
    "...",
    "a b",
    " x",
    "x ",
    "a\tb",
    "a\nb",
    "x\n",
    "x\r",
    "$(id)",
    "`id`",
    "x;id",
    "a|b",
    "a&b",
    "a>b",
    "a<b",
    "$HOME",
    "${IFS}x",
    "'q'",
    '"q"',
    "a\\b",
    "a*b",
    "*",
    "a?b",
    "[ab]",
    "{a,b}",
    "~x",
    "a:b",
    "a^b",
    "@{x}",
    "!x",
    "#x",
    "%x",
    "a=b",
    "a+b",
    "a,b",
    "$'\\n'",
    "::error::x",
    "x\n::set-output name=environment::production",
    "caf\u00e9",
    "\u00df",
    "\U0001f680",
    "x\u200b",
    "\u202ex",
    "x\u00a0y",
    "e\u0301",
)

_NEAR_MISSES = (
    "main2",
    "Main",
    "MAIN",
    "main/",
    "/main",
    "main.",
    "mainx",
    "xmain",
    "main/x",
    "develop2",
    "Develop",
    "dev",
    "development",
    "develop/x",
    "master",
    "trunk",
    "release/1.0",
    "releases",
    "bugfix/x",
    "feat/x",
    "features/x",
    "Feature/x",
    "FEATURE/x",
    "feature",
    "featurex",
    "feature-x",
    "hotfixes/x",
    "Hotfix/x",
    "hot-fix/x",
    "hotfix",
    "hotfix-x",
    "HEAD",
    "refs/heads/main",
    "m\u0430in",  # Cyrillic a
    "de\u0432elop",  # Cyrillic ve
    "dev\u0435lop",  # Cyrillic ie
    "\u043cain",  # Cyrillic em
    "ma\u0131n",  # dotless i
    "m\u0251in",  # Latin alpha
    "\uff4d\uff41\uff49\uff4e",  # fullwidth main
    "feature\uff0fx",  # fullwidth solidus
    "hotfix\u2215x",  # division slash
    "feature\u29f8x",  # big solidus
    "ma\u200bin",  # zero-width space
    "main\u200d",  # zero-width joiner
    "\ufeffmain",  # byte order mark
    "feature/\u212a",  # Kelvin sign
    "d\u0435velop",  # Cyrillic ie
    "m\u1ea1in",  # a with dot below
)

_OTHER_REFS = (
    "",
    "main",
    "develop",
    "feature/x",
    "heads/main",
    "refs/heads",
    "refs/heads/",
    "refs/",
    "refs/tags/v1.0.0",
    "refs/tags/main",
    "refs/tags/feature/x",
    "refs/tags/hotfix/x",
    "refs/pull/1/merge",
    "refs/pull/1/head",
    "refs/remotes/origin/main",
    "refs/notes/commits",
    "refs/stash",
    "REFS/HEADS/main",
    "refs/Heads/main",
    "refs/heads//main",
    " refs/heads/main",
    "refs/heads/main ",
    "refs/heads/main\n",
    "\nrefs/heads/main",
    "refs/heads/main\r\n",
    "refs/heads/main\t",
    "refs/heads/ma in",
    "refs/heads/main$(touch /tmp/pwned)",
    "refs/heads/main`id`",
    "refs/heads/main;id",
    "refs/heads/main\nrefs/heads/main",
    "refs/heads/feature/*",
    "refs/heads/feature/**",
    "refs/heads/hotfix/*",
    "refs/heads/../main",
    "refs/heads/main/..",
    "refs/heads/feature/x/..",
    "refs/heads/feature/x..",
    "refs/heads/.main",
    "refs/heads/main.lock",
)


def _lengths() -> list[str]:
    """Around the length limit, in ASCII and in multi-byte characters."""
    out = []
    for prefix in (HEADS + "feature/", HEADS + "hotfix/", HEADS):
        for total in (199, 200, 201, 256, 300):
            out.append(prefix + "a" * (total - len(prefix)))
    out.append(HEADS + "feature/" + "/".join(["a"] * 90))  # 90 segments, 198 characters
    out.append(HEADS + "feature/" + "/".join(["a"] * 100))  # 218 characters
    out.append(HEADS + "feature/" + "a" * 170 + "..b")  # both '..' and near the limit
    out.append(HEADS + "feature/" + "\u00e9" * 100)  # 119 characters, 219 bytes
    out.append(HEADS + "feature/" + "\u0430" * 150)  # Cyrillic, 169 characters, 319 bytes
    out.append(HEADS + "hotfix/" + "\U0001f680" * 60)  # 78 characters, 258 bytes
    out.append(HEADS + "feature/" + "x" * 2000)
    return out


def _build() -> tuple[str, ...]:
    refs: list[str] = [HEADS + "main", HEADS + "develop"]
    refs += [HEADS + "feature/" + s for s in _FEATURE_OK]
    refs += [HEADS + "hotfix/" + s for s in _HOTFIX_OK]
    refs += [HEADS + "hotfix/a/b", HEADS + "hotfix/a/b/c", HEADS + "hotfix/x/"]
    for prefix in ("feature/", "hotfix/"):
        refs += [HEADS + prefix + s for s in _BAD_SUFFIXES]
    refs += [HEADS + s for s in _NEAR_MISSES]
    refs += list(_OTHER_REFS)
    refs += _lengths()
    unique = tuple(dict.fromkeys(refs))
    if any("\0" in r for r in unique):
        raise ValueError("a ref cannot hold NUL")
    return unique


REFS: tuple[str, ...] = _build()
"""Every ref of the corpus, in a stable order, without duplicates."""
