"""One implementation per business rule (docs/architecture.md, "One implementation per business rule"), read from the source of models/ with `ast`:
exactly one function writes invoices' totals (subtotal_cents, total_cents, line_item_count),
one assigns invoice numbers, one inserts outbox rows (invoice_sync), one takes numbers from
invoice_number_sequences.

What counts as a write: SQL text (every string constant, f-string parts included) with an
`UPDATE invoices ... SET` or `INSERT INTO <table>` naming the column or table; an ORM attribute
assignment (`x.total_cents = ...`, `+=`); a keyword of a table constructor
(`tables.InvoiceSync(...)`, `tables.Invoice(total_cents=...)`). The last test proves the scanner
bites on a small tree of forbidden writes."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from settings import PROJECT_ROOT

TOTALS = ("subtotal_cents", "total_cents", "line_item_count")
_UPDATE_INVOICES = re.compile(
    r"\bUPDATE\s+invoices\b(?:\s+(?:AS\s+)?\w+)?\s+SET\b(.*)", re.I | re.S
)
_INSERT_INTO = re.compile(r"\bINSERT\s+INTO\s+(\w+)", re.I)


def _set_columns(sql: str) -> set[str]:
    """Columns assigned by an `UPDATE invoices ... SET` in this SQL text."""
    found = set()
    for m in _UPDATE_INVOICES.finditer(sql):
        # The SET list ends at FROM / WHERE / RETURNING (or the end of the text).
        assignments = re.split(r"\b(?:FROM|WHERE|RETURNING)\b", m.group(1), flags=re.I)[0]
        found |= {c for c in re.findall(r"(\w+)\s*=", assignments)}
    return found


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)]
    return []


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def writers(root: Path) -> dict[str, set[str]]:
    """What is written -> the places ("path:function") that write it."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(root.parent).as_posix()
        owners: dict[ast.AST, str] = {}
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for child in ast.walk(fn):
                    owners.setdefault(child, fn.name)

        def where(node: ast.AST, rel: str = rel, owners: dict[ast.AST, str] = owners) -> str:
            return f"{rel}:{owners.get(node, '<module>')}"

        for node in ast.walk(tree):
            for text in _strings(node):
                for column in _set_columns(text):
                    if column in TOTALS:
                        found["totals"].add(where(node))
                    if column == "number":
                        found["number"].add(where(node))
                for table in _INSERT_INTO.findall(text):
                    if table == "invoice_sync":
                        found["outbox"].add(where(node))
                    if table == "invoice_number_sequences":
                        found["sequence"].add(where(node))
                    if table == "invoices" and any(c in text for c in TOTALS):
                        found["totals"].add(where(node))
            if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Attribute):
                        if target.attr in TOTALS:
                            found["totals"].add(where(node))
                        if target.attr == "number":
                            found["number"].add(where(node))
            if isinstance(node, ast.Call):
                name = _name(node.func)
                if name == "InvoiceSync":
                    found["outbox"].add(where(node))
                if name == "Invoice" and any(k.arg in (*TOTALS, "number") for k in node.keywords):
                    found[
                        "totals" if any(k.arg in TOTALS for k in node.keywords) else "number"
                    ].add(where(node))
                if name == "setattr" and len(node.args) > 1:
                    attr = node.args[1]
                    if isinstance(attr, ast.Constant) and attr.value in (*TOTALS, "number"):
                        found["totals" if attr.value in TOTALS else "number"].add(where(node))
    return found


MODELS = PROJECT_ROOT / "models"


def test_one_function_writes_invoice_totals() -> None:
    assert writers(MODELS)["totals"] == {"models/invoices/totals.py:recompute"}


def test_one_function_assigns_invoice_numbers() -> None:
    assert writers(MODELS)["number"] == {"models/invoices/finalize.py:finalize_locked"}


def test_one_function_takes_numbers_from_the_sequences() -> None:
    assert writers(MODELS)["sequence"] == {"models/invoices/numbering.py:<module>"}


def test_one_function_inserts_outbox_rows() -> None:
    assert writers(MODELS)["outbox"] == {"models/sync_state/outbox.py:write_pending"}


def test_the_scanner_finds_each_kind_of_write(tmp_path: Path) -> None:
    pkg = tmp_path / "models"
    pkg.mkdir()
    (pkg / "a.py").write_text(
        "import sqlalchemy as sa\n"
        "def orm(inv):\n    inv.total_cents = 1\n    inv.number = 'X'\n"
        "def aug(inv):\n    inv.line_item_count += 1\n"
        "def sql(s):\n    s.execute(sa.text('UPDATE invoices i SET subtotal_cents = 0 '\n"
        "                           'WHERE i.id = 1'))\n"
        "def fsql(s, t):\n    s.execute(sa.text(f'UPDATE invoices SET number = {t} WHERE id = 1'))\n"
        "def outbox(s):\n    s.add(tables.InvoiceSync(invoice_id=1))\n"
        "def outbox_sql(s):\n    s.execute(sa.text('INSERT INTO invoice_sync (invoice_id) VALUES (1)'))\n"
        "def reads(s):\n    s.execute(sa.text('SELECT total_cents FROM invoices'))\n"
        "def other_table(s):\n    s.execute(sa.text('UPDATE invoice_monthly_rollups SET total_cents = 1'))\n"
    )
    found = writers(pkg)
    assert found["totals"] == {"models/a.py:orm", "models/a.py:aug", "models/a.py:sql"}
    assert found["number"] == {"models/a.py:orm", "models/a.py:fsql"}
    assert found["outbox"] == {"models/a.py:outbox", "models/a.py:outbox_sql"}
