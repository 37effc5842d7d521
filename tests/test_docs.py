"""The repository is its own reference: every file a source file or doc cites by path exists,
and no code cites the design notes that live outside the repository."""

from __future__ import annotations

import re
import subprocess

from settings import PROJECT_ROOT

CITED = re.compile(
    r"\b((?:docs|models|gql|sync|stripe_mock|devstack|demo|bench|tests|commands|client)/[\w./-]+\.(?:py|md|html|js|json))\b"
)
OUTSIDE = re.compile(r"\b(?:DESIGN|STYLE)\.md\b")


def _tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [p for p in out.splitlines() if p.endswith((".py", ".md", ".html", ".js", ".toml"))]


# Vendored assets cite their own projects' docs; the layering and one-place tests build made-up trees.
NOT_CITING = ("gql/graphiql_static/", "tests/test_layering.py", "tests/test_one_place.py")


def test_cited_files_exist() -> None:
    files = set(_tracked())
    missing = []
    for path in sorted(files):
        if path.startswith(NOT_CITING):
            continue
        text = (PROJECT_ROOT / path).read_text(errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            for cited in CITED.findall(line):
                target = cited.rstrip(".")
                if target not in files and not (PROJECT_ROOT / target).exists():
                    missing.append(f"{path}:{n}: {target}")
    assert missing == []


def test_nothing_cites_the_design_notes_outside_the_repository() -> None:
    offenders = [
        f"{path}:{n}"
        for path in _tracked()
        if not path.endswith(".md")
        for n, line in enumerate((PROJECT_ROOT / path).read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []
